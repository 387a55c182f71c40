/* sthdr.c: the NewStream / NewStreamEx / NewStreamEx2 header at the start
 * of a stream. */
#include "proto/sthdr.h"

#include <stddef.h>
#include <string.h>

#include "util/err.h"

/* Offsets of the fixed part shared by all headers. */
#define STHDR_OFF_NAMELEN 7
#define STHDR_OFF_NAME 8
#define STHDR_TLV_HDR 3 /* type u8 | len u16 */

static size_t
sthdr_addr_len(uint8_t af)
{
	return af == 4 ? 4 : 16;
}

static int
sthdr_type_ok(uint8_t t)
{
	return t == STHDR_NEWSTREAM || t == STHDR_NEWSTREAM_EX ||
	    t == STHDR_NEWSTREAM_EX2;
}

int
sthdr_meta_next(const uint8_t *meta, size_t len, size_t *off, uint8_t *type,
    const uint8_t **value, size_t *vlen)
{
	size_t o = *off, n;

	if (o >= len)
		return 0;
	if (len - o < STHDR_TLV_HDR)
		return MG_EPROTO;
	n = (size_t)meta[o + 1] << 8 | meta[o + 2];
	if (n > len - o - STHDR_TLV_HDR)
		return MG_EPROTO;
	*type = meta[o];
	*value = meta + o + STHDR_TLV_HDR;
	*vlen = n;
	*off = o + STHDR_TLV_HDR + n;
	return 1;
}

int
sthdr_decode(const uint8_t *p, size_t len, struct sthdr *h)
{
	size_t need, alen, mlen = 0, moff = 0, off = 0, vl;
	const uint8_t *v;
	uint8_t nlen, af, t;
	int rc;

	/*
	 * Judge each byte as soon as it is there, so a bad type, af or
	 * meta_len is reported at once instead of waiting for bytes that may
	 * never come.
	 */
	if (len < 1)
		return MG_EAGAIN;
	if (!sthdr_type_ok(p[0]))
		return MG_EPROTO;
	if (len < STHDR_OFF_NAME)
		return MG_EAGAIN;
	nlen = p[STHDR_OFF_NAMELEN];
	need = STHDR_OFF_NAME + (size_t)nlen;
	if (p[0] != STHDR_NEWSTREAM) {
		if (len < need + 1)
			return MG_EAGAIN;
		af = p[need];
		if (af != 4 && af != 6)
			return MG_EPROTO;
		alen = sthdr_addr_len(af);
		need += 1 + alen + 2;
	} else {
		af = 0;
		alen = 0;
	}
	if (p[0] == STHDR_NEWSTREAM_EX2) {
		if (len < need + 2)
			return MG_EAGAIN;
		mlen = (size_t)p[need] << 8 | p[need + 1];
		if (mlen > STHDR_META_MAX)
			return MG_EPROTO;
		moff = need + 2;
		need = moff + mlen;
	}
	if (len < need)
		return MG_EAGAIN;
	/* the metadata is whole TLVs, checked once here so that a reader
	 * can walk it without care */
	while ((rc = sthdr_meta_next(p + moff, mlen, &off, &t, &v, &vl)) > 0)
		;
	if (rc < 0)
		return MG_EPROTO;

	/* meta[] beyond meta_len is not part of the header: not cleared */
	memset(h, 0, offsetof(struct sthdr, meta));
	h->type = p[0];
	h->stream_id = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 8 | (uint32_t)p[4];
	h->remote_port = (uint16_t)(p[5] << 8 | p[6]);
	h->name_len = nlen;
	memcpy(h->name, p + STHDR_OFF_NAME, nlen);
	h->name[nlen] = '\0';
	if (af != 0) {
		const uint8_t *q = p + STHDR_OFF_NAME + nlen + 1;
		h->af = af;
		memcpy(h->addr, q, alen);
		h->port = (uint16_t)(q[alen] << 8 | q[alen + 1]);
	}
	if (moff != 0) {
		h->meta_len = (uint16_t)mlen;
		memcpy(h->meta, p + moff, mlen);
	}
	return (int)need;
}

int
sthdr_encode(const struct sthdr *h, uint8_t *out, size_t cap)
{
	size_t need, alen = 0;
	uint8_t *q;

	if (!sthdr_type_ok(h->type))
		return MG_EINVAL;
	need = STHDR_OFF_NAME + (size_t)h->name_len;
	if (h->type != STHDR_NEWSTREAM) {
		if (h->af != 4 && h->af != 6)
			return MG_EINVAL;
		alen = sthdr_addr_len(h->af);
		need += 1 + alen + 2;
	}
	if (h->type == STHDR_NEWSTREAM_EX2) {
		if (h->meta_len > STHDR_META_MAX)
			return MG_EINVAL;
		need += 2 + (size_t)h->meta_len;
	}
	if (cap < need)
		return MG_ENOSPC;

	out[0] = h->type;
	out[1] = (uint8_t)(h->stream_id >> 24);
	out[2] = (uint8_t)(h->stream_id >> 16);
	out[3] = (uint8_t)(h->stream_id >> 8);
	out[4] = (uint8_t)h->stream_id;
	out[5] = (uint8_t)(h->remote_port >> 8);
	out[6] = (uint8_t)h->remote_port;
	out[STHDR_OFF_NAMELEN] = h->name_len;
	memcpy(out + STHDR_OFF_NAME, h->name, h->name_len);
	if (h->type != STHDR_NEWSTREAM) {
		q = out + STHDR_OFF_NAME + h->name_len;
		*q++ = h->af;
		memcpy(q, h->addr, alen);
		q += alen;
		*q++ = (uint8_t)(h->port >> 8);
		*q++ = (uint8_t)h->port;
		if (h->type == STHDR_NEWSTREAM_EX2) {
			*q++ = (uint8_t)(h->meta_len >> 8);
			*q++ = (uint8_t)h->meta_len;
			memcpy(q, h->meta, h->meta_len);
		}
	}
	return (int)need;
}

int
sthdr_meta_add(struct sthdr *h, uint8_t type, const void *value, size_t len)
{
	uint8_t *q;
	size_t room;

	if (h->meta_len > STHDR_META_MAX)
		return MG_ENOSPC;
	room = (size_t)STHDR_META_MAX - h->meta_len;
	if (room < STHDR_TLV_HDR || len > room - STHDR_TLV_HDR)
		return MG_ENOSPC;
	q = h->meta + h->meta_len;
	q[0] = type;
	q[1] = (uint8_t)(len >> 8);
	q[2] = (uint8_t)len;
	if (len > 0)
		memcpy(q + STHDR_TLV_HDR, value, len);
	h->meta_len = (uint16_t)(h->meta_len + STHDR_TLV_HDR + len);
	return 0;
}
