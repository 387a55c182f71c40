/* frame.h: the 8-byte smux frame header (docs/protocol.md section 3), pure codec. */
#ifndef MG_FRAME_H
#define MG_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HDR_LEN 8
#define FRAME_UPD_LEN 8
#define FRAME_MAX_PAYLOAD 65535

enum frame_cmd {
	FRAME_SYN = 0,
	FRAME_FIN = 1,
	FRAME_PSH = 2,
	FRAME_NOP = 3,
	FRAME_UPD = 4,
};

struct frame_hdr {
	uint8_t ver;  /* 1 or 2 */
	uint8_t cmd;  /* enum frame_cmd */
	uint16_t len; /* payload length (little-endian on the wire) */
	uint32_t sid; /* stream id (little-endian on the wire) */
};

/* frame_encode: write h as 8 bytes to out. */
void frame_encode(uint8_t out[FRAME_HDR_LEN], const struct frame_hdr *h);

/*
 * frame_decode: parse a header from p[0..len).
 * Returns FRAME_HDR_LEN when a header was parsed into *h, MG_EAGAIN when
 * len < 8, MG_EPROTO when the header is invalid on its own: a version other
 * than 1 or 2, an unknown command, UPD in version 1, SYN/FIN/NOP with a
 * payload, UPD whose length is not 8. (Session-level checks, such as the
 * version matching the session's, are the caller's.) *h is written only
 * when a valid header was parsed.
 */
int frame_decode(const uint8_t *p, size_t len, struct frame_hdr *h);

/* frame_upd_encode: the 8-byte UPD payload (both fields little-endian). */
void frame_upd_encode(uint8_t out[FRAME_UPD_LEN], uint32_t consumed,
    uint32_t window);

/* frame_upd_decode: parse an UPD payload; 0, or MG_EPROTO if len != 8. */
int frame_upd_decode(const uint8_t *p, size_t len, uint32_t *consumed,
    uint32_t *window);

#endif
