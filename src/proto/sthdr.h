/* sthdr.h: the header that starts every data stream (docs/protocol.md
 * section 5; NewStreamEx2 in docs/internals/protocol-ext.md). */
#ifndef MG_STHDR_H
#define MG_STHDR_H

#include <stddef.h>
#include <stdint.h>

#define STHDR_NEWSTREAM 0x02
#define STHDR_NEWSTREAM_EX 0x06
#define STHDR_NEWSTREAM_EX2 0x0B /* extension: NewStreamEx + metadata */
/* the most metadata bytes a NewStreamEx2 may carry; a longer meta_len is
 * refused as soon as it is read */
#define STHDR_META_MAX 1024
/* the longest NewStream / NewStreamEx */
#define STHDR_EX_MAX_LEN (1 + 4 + 2 + 1 + 255 + 1 + 16 + 2)
/* the longest header of any type (a NewStreamEx2 with full metadata) */
#define STHDR_MAX_LEN (STHDR_EX_MAX_LEN + 2 + STHDR_META_MAX)

struct sthdr {
	uint8_t type;          /* STHDR_NEWSTREAM, _EX or _EX2 */
	uint32_t stream_id;
	uint16_t remote_port;
	uint8_t name_len;
	char name[256];        /* NUL-terminated copy */
	/* NewStreamEx and NewStreamEx2: the public peer */
	uint8_t af;            /* 4 or 6 */
	uint8_t addr[16];      /* 4 or 16 bytes used */
	uint16_t port;
	/* NewStreamEx2 only: metadata, PROXY-v2-format TLVs
	 * (type u8 | len u16 | value), meta_len bytes of them */
	uint16_t meta_len;
	uint8_t meta[STHDR_META_MAX];
};

/*
 * sthdr_decode: parse a header from the first bytes of a stream.
 * Returns the number of bytes consumed (> 0), MG_EAGAIN if p[0..len) is a
 * valid but incomplete prefix, MG_EPROTO for an unknown first byte, an af
 * other than 4 or 6 or a meta_len above STHDR_META_MAX (each reported as
 * soon as its bytes are in p), or metadata that is not a sequence of whole
 * TLVs (once all of it is there). *h is written only on success, and
 * then h->meta only up to h->meta_len.
 */
int sthdr_decode(const uint8_t *p, size_t len, struct sthdr *h);

/* sthdr_encode: write h; returns its length, or MG_ENOSPC / MG_EINVAL
 * (an unknown type, a bad af, meta_len above STHDR_META_MAX). The meta
 * bytes of a NewStreamEx2 are written as they are. */
int sthdr_encode(const struct sthdr *h, uint8_t *out, size_t cap);

/*
 * sthdr_meta_add: append one TLV (type, value[0..len)) to h's metadata.
 * Returns 0, or MG_ENOSPC if it does not fit in STHDR_META_MAX (h is then
 * unchanged). Does not change h->type.
 */
int sthdr_meta_add(struct sthdr *h, uint8_t type, const void *value,
    size_t len);

/*
 * sthdr_meta_next: walk the TLVs of meta[0..len) (which sthdr_decode
 * checked): start with *off = 0; each call sets *type, *value (a pointer
 * into meta) and *vlen and advances *off. Returns 1 while there is a TLV,
 * 0 at the end, MG_EPROTO for a TLV that does not fit.
 */
int sthdr_meta_next(const uint8_t *meta, size_t len, size_t *off,
    uint8_t *type, const uint8_t **value, size_t *vlen);

#endif
