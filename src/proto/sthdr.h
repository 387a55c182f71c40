/* sthdr.h: the header that starts every data stream (docs/protocol.md section 5). */
#ifndef MG_STHDR_H
#define MG_STHDR_H

#include <stddef.h>
#include <stdint.h>

#define STHDR_NEWSTREAM 0x02
#define STHDR_NEWSTREAM_EX 0x06
#define STHDR_MAX_LEN (1 + 4 + 2 + 1 + 255 + 1 + 16 + 2)

struct sthdr {
	uint8_t type;          /* STHDR_NEWSTREAM or STHDR_NEWSTREAM_EX */
	uint32_t stream_id;
	uint16_t remote_port;
	uint8_t name_len;
	char name[256];        /* NUL-terminated copy */
	/* NewStreamEx only: the public peer */
	uint8_t af;            /* 4 or 6 */
	uint8_t addr[16];      /* 4 or 16 bytes used */
	uint16_t port;
};

/*
 * sthdr_decode: parse a header from the first bytes of a stream.
 * Returns the number of bytes consumed (> 0), MG_EAGAIN if p[0..len) is a
 * valid but incomplete prefix, MG_EPROTO for an unknown first byte or an
 * af other than 4 or 6 (reported as soon as that byte is in p). *h is
 * written only on success.
 */
int sthdr_decode(const uint8_t *p, size_t len, struct sthdr *h);

/* sthdr_encode: write h; returns its length, or MG_ENOSPC / MG_EINVAL. */
int sthdr_encode(const struct sthdr *h, uint8_t *out, size_t cap);

#endif
