/* sthdr.c: the NewStream / NewStreamEx header at the start of a stream. */
#include "proto/sthdr.h"

#include <string.h>

#include "util/err.h"

/* Offsets of the fixed part shared by both headers. */
#define STHDR_OFF_NAMELEN 7
#define STHDR_OFF_NAME 8

static size_t
sthdr_addr_len(uint8_t af)
{
	return af == 4 ? 4 : 16;
}

int
sthdr_decode(const uint8_t *p, size_t len, struct sthdr *h)
{
	size_t need, alen;
	uint8_t nlen, af;

	/*
	 * Judge each byte as soon as it is there, so a bad type or af is
	 * reported at once instead of waiting for bytes that may never come.
	 */
	if (len < 1)
		return MG_EAGAIN;
	if (p[0] != STHDR_NEWSTREAM && p[0] != STHDR_NEWSTREAM_EX)
		return MG_EPROTO;
	if (len < STHDR_OFF_NAME)
		return MG_EAGAIN;
	nlen = p[STHDR_OFF_NAMELEN];
	need = STHDR_OFF_NAME + (size_t)nlen;
	if (p[0] == STHDR_NEWSTREAM_EX) {
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
	if (len < need)
		return MG_EAGAIN;

	memset(h, 0, sizeof(*h));
	h->type = p[0];
	h->stream_id = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 8 | (uint32_t)p[4];
	h->remote_port = (uint16_t)(p[5] << 8 | p[6]);
	h->name_len = nlen;
	memcpy(h->name, p + STHDR_OFF_NAME, nlen);
	h->name[nlen] = '\0';
	if (af != 0) {
		h->af = af;
		memcpy(h->addr, p + STHDR_OFF_NAME + nlen + 1, alen);
		h->port = (uint16_t)(p[need - 2] << 8 | p[need - 1]);
	}
	return (int)need;
}

int
sthdr_encode(const struct sthdr *h, uint8_t *out, size_t cap)
{
	size_t need, alen = 0;
	uint8_t *q;

	if (h->type != STHDR_NEWSTREAM && h->type != STHDR_NEWSTREAM_EX)
		return MG_EINVAL;
	need = STHDR_OFF_NAME + (size_t)h->name_len;
	if (h->type == STHDR_NEWSTREAM_EX) {
		if (h->af != 4 && h->af != 6)
			return MG_EINVAL;
		alen = sthdr_addr_len(h->af);
		need += 1 + alen + 2;
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
	if (h->type == STHDR_NEWSTREAM_EX) {
		q = out + STHDR_OFF_NAME + h->name_len;
		*q++ = h->af;
		memcpy(q, h->addr, alen);
		q += alen;
		*q++ = (uint8_t)(h->port >> 8);
		*q = (uint8_t)h->port;
	}
	return (int)need;
}
