/* test_sproxy.c: the 274-byte stream-proxy header (docs/protocol.md section 6). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "proto/sproxy.h"
#include "util/err.h"

/* A byte string that may hold NULs. */
struct bytes {
	const char *s;
	size_t n;
};
#define B(lit) { lit, sizeof(lit) - 1 }

/* The section 6 vector, laid out by hand from the offset table. */
static void
vector_bytes(uint8_t b[SPROXY_HDR_LEN])
{
	memset(b, 0, SPROXY_HDR_LEN);
	memcpy(b, "0.1.0", 5);
	b[8] = 9;
	memcpy(b + 9, "127.0.0.1", 9);
	b[264] = 4;
	memcpy(b + 265, "8080", 4);
	b[270] = 0x27;
	b[271] = 0x24;
	b[272] = 0x7B;
	b[273] = 0xD5;
}

/* reseal: recompute the checksum after a test edits the header, so the
 * field check under test is what rejects it. */
static void
reseal(uint8_t b[SPROXY_HDR_LEN])
{
	uint32_t c = (uint32_t)crc32(0L, b, 270);

	b[270] = (uint8_t)(c >> 24);
	b[271] = (uint8_t)(c >> 16);
	b[272] = (uint8_t)(c >> 8);
	b[273] = (uint8_t)c;
}

static void
test_vector_encode(void **state)
{
	uint8_t want[SPROXY_HDR_LEN], out[SPROXY_HDR_LEN];

	vector_bytes(want);
	memset(out, 0xA5, sizeof(out));
	assert_int_equal(sproxy_encode("127.0.0.1", 8080, out), 0);
	assert_memory_equal(out, want, SPROXY_HDR_LEN);
	assert_memory_equal(out + 270, "\x27\x24\x7b\xd5", 4);
}

static void
test_vector_decode(void **state)
{
	uint8_t b[SPROXY_HDR_LEN];
	struct sproxy_hdr h;

	vector_bytes(b);
	memset(&h, 0xEE, sizeof(h));
	assert_int_equal(sproxy_decode(b, sizeof(b), &h), 0);
	assert_string_equal(h.host, "127.0.0.1");
	assert_int_equal(h.port, 8080);
}

static void
test_short(void **state)
{
	uint8_t b[SPROXY_HDR_LEN];
	struct sproxy_hdr h;
	uint8_t *p;
	size_t n;

	vector_bytes(b);
	for (n = 0; n < SPROXY_HDR_LEN; n++) {
		p = malloc(n > 0 ? n : 1);
		assert_non_null(p);
		memcpy(p, b, n);
		assert_int_equal(sproxy_decode(p, n, &h), MG_EAGAIN);
		free(p);
	}
}

static void
test_extra_bytes(void **state)
{
	uint8_t b[SPROXY_HDR_LEN + 10];
	struct sproxy_hdr h;

	/* Relay data may already follow the header in the same read. */
	vector_bytes(b);
	memset(b + SPROXY_HDR_LEN, 'x', 10);
	assert_int_equal(sproxy_decode(b, sizeof(b), &h), 0);
	assert_int_equal(h.port, 8080);
}

static void
test_bad_crc(void **state)
{
	static const size_t at[] = { 8, 9, 17, 100, 263, 264, 265, 269, 270,
		273 };
	uint8_t b[SPROXY_HDR_LEN];
	struct sproxy_hdr h;
	size_t i;

	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		vector_bytes(b);
		b[at[i]] ^= 0x01;
		if (sproxy_decode(b, sizeof(b), &h) != MG_ECRC)
			fail_msg("bit flip at %zu not caught", at[i]);
	}
	/* A checksum stored little-endian is a mismatch. */
	vector_bytes(b);
	memcpy(b + 270, "\xd5\x7b\x24\x27", 4);
	assert_int_equal(sproxy_decode(b, sizeof(b), &h), MG_ECRC);
}

static void
test_bad_version(void **state)
{
	static const struct bytes bad[] = { B("0.1.1"), B("0.2.0"),
		B("1.1.0"), B("0.1.0\x01"), B("\0.1.0"), B("0.1.0\0\0x"),
		B("0.1.00") };
	uint8_t b[SPROXY_HDR_LEN];
	struct sproxy_hdr h;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vector_bytes(b);
		memset(b, 0, 8);
		memcpy(b, bad[i].s, bad[i].n);
		reseal(b);
		if (sproxy_decode(b, sizeof(b), &h) != MG_EPROTO)
			fail_msg("version %zu accepted", i);
	}
	/* Without resealing: still the version error. */
	vector_bytes(b);
	b[4] = '1';
	assert_int_equal(sproxy_decode(b, sizeof(b), &h), MG_EPROTO);
}

static void
test_bad_lengths(void **state)
{
	static const uint8_t plens[] = { 0, 6, 7, 255 };
	uint8_t b[SPROXY_HDR_LEN];
	struct sproxy_hdr h;
	size_t i;

	for (i = 0; i < sizeof(plens); i++) {
		vector_bytes(b);
		b[264] = plens[i];
		reseal(b);
		assert_int_equal(sproxy_decode(b, sizeof(b), &h), MG_EPROTO);
	}
	/* Host length past the text: the padding NUL lands in the host. */
	vector_bytes(b);
	b[8] = 10;
	reseal(b);
	assert_int_equal(sproxy_decode(b, sizeof(b), &h), MG_EPROTO);
	/* Host length short of the text: a shorter host, well-formed. */
	vector_bytes(b);
	b[8] = 3;
	reseal(b);
	assert_int_equal(sproxy_decode(b, sizeof(b), &h), 0);
	assert_string_equal(h.host, "127");
	/* Port length short of the text: "80". */
	vector_bytes(b);
	b[264] = 2;
	reseal(b);
	assert_int_equal(sproxy_decode(b, sizeof(b), &h), 0);
	assert_int_equal(h.port, 80);
}

static void
test_bad_port_text(void **state)
{
	static const struct bytes bad[] = { B("0"), B("00000"), B("65536"),
		B("99999"), B("80a0"), B(" 80"), B("-1"), B("+80"), B("8 80"),
		B("0x50"), B("8\0" "80") };
	uint8_t b[SPROXY_HDR_LEN];
	struct sproxy_hdr h;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vector_bytes(b);
		memset(b + 265, 0, 5);
		memcpy(b + 265, bad[i].s, bad[i].n);
		b[264] = (uint8_t)bad[i].n;
		reseal(b);
		if (sproxy_decode(b, sizeof(b), &h) != MG_EPROTO)
			fail_msg("port text %zu accepted", i);
	}
}

static void
test_good_port_text(void **state)
{
	static const struct {
		const char *text;
		uint16_t port;
	} good[] = { { "1", 1 }, { "65535", 65535 }, { "08080", 8080 },
		{ "00001", 1 }, { "443", 443 } };
	uint8_t b[SPROXY_HDR_LEN];
	struct sproxy_hdr h;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		vector_bytes(b);
		memset(b + 265, 0, 5);
		memcpy(b + 265, good[i].text, strlen(good[i].text));
		b[264] = (uint8_t)strlen(good[i].text);
		reseal(b);
		assert_int_equal(sproxy_decode(b, sizeof(b), &h), 0);
		assert_int_equal(h.port, good[i].port);
	}
}

static void
test_host_with_nul(void **state)
{
	uint8_t b[SPROXY_HDR_LEN];
	struct sproxy_hdr h;

	vector_bytes(b);
	b[12] = '\0'; /* "127\0.0.1" */
	reseal(b);
	assert_int_equal(sproxy_decode(b, sizeof(b), &h), MG_EPROTO);
}

static void
test_encode_bounds(void **state)
{
	static const uint16_t ports[] = { 1, 9, 10, 80, 65535 };
	char host[257];
	uint8_t b[SPROXY_HDR_LEN];
	struct sproxy_hdr h;
	size_t i;

	memset(host, 'h', 256);
	host[256] = '\0';
	assert_int_equal(sproxy_encode(host, 80, b), MG_EINVAL);
	host[255] = '\0';
	assert_int_equal(sproxy_encode(host, 80, b), 0);
	assert_int_equal(b[8], 255);
	assert_int_equal(sproxy_decode(b, sizeof(b), &h), 0);
	assert_string_equal(h.host, host);

	assert_int_equal(sproxy_encode("", 80, b), 0);
	assert_int_equal(sproxy_decode(b, sizeof(b), &h), 0);
	assert_string_equal(h.host, "");

	assert_int_equal(sproxy_encode("example.com", 0, b), MG_EINVAL);
	for (i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		assert_int_equal(sproxy_encode("example.com", ports[i], b), 0);
		assert_int_equal(sproxy_decode(b, sizeof(b), &h), 0);
		assert_int_equal(h.port, ports[i]);
		assert_string_equal(h.host, "example.com");
	}
	/* Digits most significant first, no padding. */
	assert_int_equal(sproxy_encode("x", 65535, b), 0);
	assert_int_equal(b[264], 5);
	assert_memory_equal(b + 265, "65535", 5);
	assert_int_equal(sproxy_encode("x", 9, b), 0);
	assert_int_equal(b[264], 1);
	assert_memory_equal(b + 265, "9\0\0\0\0", 5);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector_encode),
		cmocka_unit_test(test_vector_decode),
		cmocka_unit_test(test_short),
		cmocka_unit_test(test_extra_bytes),
		cmocka_unit_test(test_bad_crc),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_bad_lengths),
		cmocka_unit_test(test_bad_port_text),
		cmocka_unit_test(test_good_port_text),
		cmocka_unit_test(test_host_with_nul),
		cmocka_unit_test(test_encode_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
