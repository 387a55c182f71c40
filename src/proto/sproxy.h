/* sproxy.h: the 274-byte stream-proxy header (docs/protocol.md section 6). */
#ifndef MG_SPROXY_H
#define MG_SPROXY_H

#include <stddef.h>
#include <stdint.h>

#define SPROXY_HDR_LEN 274
#define SPROXY_VERSION "0.1.0"

struct sproxy_hdr {
	char host[256]; /* NUL-terminated, 0..255 bytes */
	uint16_t port;
};

/* sproxy_encode: build the header for host and port into out; 0, or
 * MG_EINVAL if host is longer than 255 bytes or port is 0 (which
 * sproxy_decode would refuse). */
int sproxy_encode(const char *host, uint16_t port,
    uint8_t out[SPROXY_HDR_LEN]);

/*
 * sproxy_decode: check and parse exactly 274 bytes. Returns 0, MG_EAGAIN if
 * len < 274, MG_EPROTO for a wrong version or a length field out of range
 * or a port that is not 1..65535 in decimal, MG_ECRC for a checksum mismatch.
 * Checked in that order: version, checksum, fields. Also MG_EPROTO for a NUL
 * inside the host (the C string would differ from what was sent). Only the
 * first 274 bytes are read when len is larger. Leading zeros in the port
 * ("08080") are accepted; padding bytes are covered by the checksum only.
 */
int sproxy_decode(const uint8_t *p, size_t len, struct sproxy_hdr *h);

#endif
