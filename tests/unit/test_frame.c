/* test_frame.c: smux frame header codec against docs/protocol.md section 7. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto/frame.h"
#include "util/err.h"

struct vector {
	const char *what;
	struct frame_hdr h;
	uint8_t bytes[16];
	size_t len; /* header plus payload */
};

/* Section 7, byte for byte. */
static const struct vector vectors[] = {
	{ "v1 SYN sid 3", { 1, FRAME_SYN, 0, 3 },
	    { 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00 }, 8 },
	{ "v1 PSH hi sid 3", { 1, FRAME_PSH, 2, 3 },
	    { 0x01, 0x02, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x68, 0x69 },
	    10 },
	{ "v1 FIN sid 3", { 1, FRAME_FIN, 0, 3 },
	    { 0x01, 0x01, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00 }, 8 },
	{ "v2 UPD sid 3", { 2, FRAME_UPD, 8, 3 },
	    { 0x02, 0x04, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x01, 0x00 },
	    16 },
};

static void
test_vectors_encode(void **state)
{
	uint8_t out[FRAME_HDR_LEN];
	size_t i;

	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		memset(out, 0xAA, sizeof(out));
		frame_encode(out, &vectors[i].h);
		assert_memory_equal(out, vectors[i].bytes, FRAME_HDR_LEN);
	}
}

static void
test_vectors_decode(void **state)
{
	struct frame_hdr h;
	size_t i;

	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		memset(&h, 0xAA, sizeof(h));
		/* The whole frame is given: only the header is consumed. */
		assert_int_equal(frame_decode(vectors[i].bytes, vectors[i].len,
		    &h), FRAME_HDR_LEN);
		assert_int_equal(h.ver, vectors[i].h.ver);
		assert_int_equal(h.cmd, vectors[i].h.cmd);
		assert_int_equal(h.len, vectors[i].h.len);
		assert_int_equal(h.sid, vectors[i].h.sid);
		assert_int_equal(vectors[i].len - FRAME_HDR_LEN, h.len);
	}
	/* The PSH payload is the two bytes after the header. */
	assert_memory_equal(vectors[1].bytes + FRAME_HDR_LEN, "hi", 2);
}

static void
test_upd_vector(void **state)
{
	const uint8_t *pl = vectors[3].bytes + FRAME_HDR_LEN;
	uint8_t out[FRAME_UPD_LEN];
	uint32_t consumed = 0, window = 0;

	assert_int_equal(frame_upd_decode(pl, FRAME_UPD_LEN, &consumed,
	    &window), 0);
	assert_int_equal(consumed, 2);
	assert_int_equal(window, 65536);
	frame_upd_encode(out, 2, 65536);
	assert_memory_equal(out, pl, FRAME_UPD_LEN);
}

static void
test_upd_bad_len(void **state)
{
	static const uint8_t buf[16];
	uint32_t consumed = 7, window = 9;
	size_t n;

	for (n = 0; n < sizeof(buf); n++) {
		if (n == FRAME_UPD_LEN)
			continue;
		assert_int_equal(frame_upd_decode(buf, n, &consumed, &window),
		    MG_EPROTO);
	}
	assert_int_equal(consumed, 7);
	assert_int_equal(window, 9);
}

static void
test_upd_little_endian(void **state)
{
	uint8_t out[FRAME_UPD_LEN];
	uint32_t c, w;
	static const uint8_t want[FRAME_UPD_LEN] = { 0x04, 0x03, 0x02, 0x01,
		0xFF, 0xFE, 0xFD, 0xFC };

	frame_upd_encode(out, 0x01020304, 0xFCFDFEFF);
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(frame_upd_decode(out, sizeof(out), &c, &w), 0);
	assert_int_equal(c, 0x01020304);
	assert_int_equal(w, 0xFCFDFEFF);
}

static void
test_short(void **state)
{
	struct frame_hdr h = { 9, 9, 9, 9 };
	size_t n;

	for (n = 0; n < FRAME_HDR_LEN; n++)
		assert_int_equal(frame_decode(vectors[0].bytes, n, &h),
		    MG_EAGAIN);
	assert_int_equal(h.ver, 9);
	assert_int_equal(frame_decode(NULL, 0, &h), MG_EAGAIN);
}

/* decode_raw: decode a header built from its fields. */
static int
decode_raw(uint8_t ver, uint8_t cmd, uint16_t len, uint32_t sid,
    struct frame_hdr *h)
{
	uint8_t b[FRAME_HDR_LEN] = { ver, cmd, (uint8_t)len,
		(uint8_t)(len >> 8), (uint8_t)sid, (uint8_t)(sid >> 8),
		(uint8_t)(sid >> 16), (uint8_t)(sid >> 24) };

	return frame_decode(b, sizeof(b), h);
}

static void
test_bad_version(void **state)
{
	static const uint8_t bad[] = { 0, 3, 4, 0x7F, 0x80, 0xFF };
	struct frame_hdr h;
	size_t i;

	for (i = 0; i < sizeof(bad); i++) {
		assert_int_equal(decode_raw(bad[i], FRAME_PSH, 1, 3, &h),
		    MG_EPROTO);
		assert_int_equal(decode_raw(bad[i], FRAME_SYN, 0, 3, &h),
		    MG_EPROTO);
	}
}

static void
test_bad_command(void **state)
{
	struct frame_hdr h;
	unsigned cmd, ver;

	for (ver = 1; ver <= 2; ver++)
		for (cmd = 5; cmd <= 0xFF; cmd++)
			assert_int_equal(decode_raw((uint8_t)ver, (uint8_t)cmd,
			    0, 3, &h), MG_EPROTO);
}

static void
test_upd_in_v1(void **state)
{
	struct frame_hdr h;

	assert_int_equal(decode_raw(1, FRAME_UPD, 8, 3, &h), MG_EPROTO);
	assert_int_equal(decode_raw(1, FRAME_UPD, 0, 3, &h), MG_EPROTO);
}

static void
test_upd_wrong_len(void **state)
{
	static const uint16_t lens[] = { 0, 1, 7, 9, 16, 0xFFFF };
	struct frame_hdr h;
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		assert_int_equal(decode_raw(2, FRAME_UPD, lens[i], 3, &h),
		    MG_EPROTO);
	assert_int_equal(decode_raw(2, FRAME_UPD, 8, 3, &h), FRAME_HDR_LEN);
}

static void
test_payload_on_empty_cmds(void **state)
{
	static const uint8_t cmds[] = { FRAME_SYN, FRAME_FIN, FRAME_NOP };
	static const uint16_t lens[] = { 1, 2, 8, 0x100, 0xFFFF };
	struct frame_hdr h;
	size_t i, j;
	unsigned ver;

	for (ver = 1; ver <= 2; ver++)
		for (i = 0; i < sizeof(cmds); i++) {
			for (j = 0; j < sizeof(lens) / sizeof(lens[0]); j++)
				assert_int_equal(decode_raw((uint8_t)ver,
				    cmds[i], lens[j], 3, &h), MG_EPROTO);
			assert_int_equal(decode_raw((uint8_t)ver, cmds[i], 0,
			    3, &h), FRAME_HDR_LEN);
		}
}

static void
test_error_leaves_hdr(void **state)
{
	struct frame_hdr h = { 0x11, 0x22, 0x3344, 0x55667788 };

	assert_int_equal(decode_raw(3, FRAME_PSH, 5, 7, &h), MG_EPROTO);
	assert_int_equal(h.ver, 0x11);
	assert_int_equal(h.cmd, 0x22);
	assert_int_equal(h.len, 0x3344);
	assert_int_equal(h.sid, 0x55667788);
}

static void
test_round_trip(void **state)
{
	static const uint32_t sids[] = { 0, 2, 3, 0x01020304, 0xFFFFFFFF };
	static const uint16_t plens[] = { 0, 1, 32768, 65535 };
	struct frame_hdr in, out;
	uint8_t b[FRAME_HDR_LEN];
	size_t i, j;

	for (i = 0; i < sizeof(sids) / sizeof(sids[0]); i++)
		for (j = 0; j < sizeof(plens) / sizeof(plens[0]); j++) {
			in.ver = (uint8_t)(1 + j % 2);
			in.cmd = FRAME_PSH;
			in.len = plens[j];
			in.sid = sids[i];
			frame_encode(b, &in);
			memset(&out, 0, sizeof(out));
			assert_int_equal(frame_decode(b, sizeof(b), &out),
			    FRAME_HDR_LEN);
			assert_int_equal(out.ver, in.ver);
			assert_int_equal(out.cmd, in.cmd);
			assert_int_equal(out.len, in.len);
			assert_int_equal(out.sid, in.sid);
		}
	/* Little-endian on the wire. */
	in.ver = 2;
	in.cmd = FRAME_PSH;
	in.len = 0x0102;
	in.sid = 0x0A0B0C0D;
	frame_encode(b, &in);
	assert_int_equal(b[2], 0x02);
	assert_int_equal(b[3], 0x01);
	assert_int_equal(b[4], 0x0D);
	assert_int_equal(b[7], 0x0A);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_encode),
		cmocka_unit_test(test_vectors_decode),
		cmocka_unit_test(test_upd_vector),
		cmocka_unit_test(test_upd_bad_len),
		cmocka_unit_test(test_upd_little_endian),
		cmocka_unit_test(test_short),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_bad_command),
		cmocka_unit_test(test_upd_in_v1),
		cmocka_unit_test(test_upd_wrong_len),
		cmocka_unit_test(test_payload_on_empty_cmds),
		cmocka_unit_test(test_error_leaves_hdr),
		cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
