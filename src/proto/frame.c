/* frame.c: encode and check the 8-byte smux frame header. */
#include "proto/frame.h"

#include "util/err.h"

static uint16_t
frame_get16le(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static uint32_t
frame_get32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static void
frame_put16le(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void
frame_put32le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

void
frame_encode(uint8_t out[FRAME_HDR_LEN], const struct frame_hdr *h)
{
	out[0] = h->ver;
	out[1] = h->cmd;
	frame_put16le(out + 2, h->len);
	frame_put32le(out + 4, h->sid);
}

int
frame_decode(const uint8_t *p, size_t len, struct frame_hdr *h)
{
	struct frame_hdr t;

	if (len < FRAME_HDR_LEN)
		return MG_EAGAIN;
	t.ver = p[0];
	t.cmd = p[1];
	t.len = frame_get16le(p + 2);
	t.sid = frame_get32le(p + 4);

	if (t.ver != 1 && t.ver != 2)
		return MG_EPROTO;
	switch (t.cmd) {
	case FRAME_SYN:
	case FRAME_FIN:
	case FRAME_NOP:
		if (t.len != 0)
			return MG_EPROTO;
		break;
	case FRAME_PSH:
		break;
	case FRAME_UPD:
		if (t.ver != 2 || t.len != FRAME_UPD_LEN)
			return MG_EPROTO;
		break;
	default:
		return MG_EPROTO;
	}
	/* Only a valid header reaches the caller's struct. */
	*h = t;
	return FRAME_HDR_LEN;
}

void
frame_upd_encode(uint8_t out[FRAME_UPD_LEN], uint32_t consumed,
    uint32_t window)
{
	frame_put32le(out, consumed);
	frame_put32le(out + 4, window);
}

int
frame_upd_decode(const uint8_t *p, size_t len, uint32_t *consumed,
    uint32_t *window)
{
	if (len != FRAME_UPD_LEN)
		return MG_EPROTO;
	*consumed = frame_get32le(p);
	*window = frame_get32le(p + 4);
	return 0;
}
