/* test_sthdr.c: NewStream / NewStreamEx headers (docs/protocol.md section 5)
 * and NewStreamEx2 (docs/internals/protocol-ext.md). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/sthdr.h"
#include "util/err.h"

#define W(lit) (const uint8_t *)(lit), sizeof(lit) - 1
#define GUARD 0xA5

#define NS_WIRE "\x02\x00\x00\x00\x02\x27\x10\x03" "web"
#define NSX4_WIRE                                                       \
	"\x06\x00\x00\x00\x04\x1f\x90\x03" "web"                        \
	"\x04\xc0\xa8\x01\x02\xd4\x31"
#define NSX6_WIRE                                                       \
	"\x06\x01\x02\x03\x04\x00\x00\x00"                              \
	"\x06\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" \
	"\x01\xbb"

/* NewStreamEx2: AUTHORITY "a.b", then mgrok's token name "alice" */
#define NSX2_WIRE                                                       \
	"\x0b\x00\x00\x00\x04\x1f\x90\x03" "web"                        \
	"\x04\xc0\xa8\x01\x02\xd4\x31"                                    \
	"\x00\x0e" "\x02\x00\x03" "a.b" "\xe0\x00\x05" "alice"
/* NewStreamEx2 without metadata, over IPv6 */
#define NSX2E_WIRE                                                      \
	"\x0b\x01\x02\x03\x04\x00\x00\x00"                              \
	"\x06\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" \
	"\x01\xbb\x00\x00"

static const uint8_t v6addr[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 1 };

static void
build_ns(struct sthdr *h)
{
	memset(h, 0, sizeof(*h));
	h->type = STHDR_NEWSTREAM;
	h->stream_id = 2;
	h->remote_port = 10000;
	h->name_len = 3;
	memcpy(h->name, "web", 4);
}

static void
build_nsx4(struct sthdr *h)
{
	memset(h, 0, sizeof(*h));
	h->type = STHDR_NEWSTREAM_EX;
	h->stream_id = 4;
	h->remote_port = 8080;
	h->name_len = 3;
	memcpy(h->name, "web", 4);
	h->af = 4;
	memcpy(h->addr, "\xc0\xa8\x01\x02", 4);
	h->port = 54321;
}

static void
build_nsx6(struct sthdr *h)
{
	memset(h, 0, sizeof(*h));
	h->type = STHDR_NEWSTREAM_EX;
	h->stream_id = 0x01020304;
	h->remote_port = 0;
	h->name_len = 0;
	h->af = 6;
	memcpy(h->addr, v6addr, 16);
	h->port = 443;
}

static void
build_nsx2(struct sthdr *h)
{
	build_nsx4(h);
	h->type = STHDR_NEWSTREAM_EX2;
	assert_int_equal(sthdr_meta_add(h, 0x02, "a.b", 3), 0);
	assert_int_equal(sthdr_meta_add(h, 0xe0, "alice", 5), 0);
}

static void
build_nsx2e(struct sthdr *h)
{
	build_nsx6(h);
	h->type = STHDR_NEWSTREAM_EX2;
}

static const struct {
	const char *what;
	const uint8_t *b;
	size_t len;
	void (*build)(struct sthdr *);
} vecs[] = {
	{ "NewStream", W(NS_WIRE), build_ns },
	{ "NewStreamEx v4", W(NSX4_WIRE), build_nsx4 },
	{ "NewStreamEx v6", W(NSX6_WIRE), build_nsx6 },
	{ "NewStreamEx2 v4 meta", W(NSX2_WIRE), build_nsx2 },
	{ "NewStreamEx2 v6 empty", W(NSX2E_WIRE), build_nsx2e },
};
#define NVECS (sizeof(vecs) / sizeof(vecs[0]))

static void
assert_hdr(const struct sthdr *a, const struct sthdr *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->stream_id, b->stream_id);
	assert_int_equal(a->remote_port, b->remote_port);
	assert_int_equal(a->name_len, b->name_len);
	assert_memory_equal(a->name, b->name, a->name_len);
	assert_int_equal(a->name[a->name_len], '\0');
	assert_int_equal(a->af, b->af);
	if (a->af != 0) {
		assert_memory_equal(a->addr, b->addr, a->af == 4 ? 4 : 16);
		assert_int_equal(a->port, b->port);
	}
	assert_int_equal(a->meta_len, b->meta_len);
	assert_memory_equal(a->meta, b->meta, a->meta_len);
}

static void
test_vec_sizes(void **state)
{
	assert_int_equal(vecs[0].len, 11);
	assert_int_equal(vecs[1].len, 18);
	assert_int_equal(vecs[2].len, 27);
	assert_int_equal(vecs[3].len, 18 + 2 + 14);
	assert_int_equal(vecs[4].len, 29);
}

static void
test_decode(void **state)
{
	struct sthdr got, want;
	size_t i;

	for (i = 0; i < NVECS; i++) {
		vecs[i].build(&want);
		memset(&got, 0xEE, sizeof(got));
		assert_int_equal(sthdr_decode(vecs[i].b, vecs[i].len, &got),
		    (int)vecs[i].len);
		assert_hdr(&got, &want);
	}
	assert_string_equal(got.name, "");
	sthdr_decode(W(NS_WIRE), &got);
	assert_string_equal(got.name, "web");
	assert_int_equal(got.af, 0);
}

static void
test_decode_with_data(void **state)
{
	uint8_t buf[64];
	struct sthdr h;
	size_t i;

	/* Stream data follows the header; only the header is consumed. */
	for (i = 0; i < NVECS; i++) {
		memcpy(buf, vecs[i].b, vecs[i].len);
		memset(buf + vecs[i].len, 0x06, sizeof(buf) - vecs[i].len);
		assert_int_equal(sthdr_decode(buf, sizeof(buf), &h),
		    (int)vecs[i].len);
	}
}

static void
test_encode(void **state)
{
	uint8_t out[STHDR_MAX_LEN + 1];
	struct sthdr h;
	size_t i;

	for (i = 0; i < NVECS; i++) {
		vecs[i].build(&h);
		memset(out, GUARD, sizeof(out));
		assert_int_equal(sthdr_encode(&h, out, sizeof(out)),
		    (int)vecs[i].len);
		assert_memory_equal(out, vecs[i].b, vecs[i].len);
		assert_int_equal(out[vecs[i].len], GUARD);
	}
}

/* Every strict prefix is "need more", in a buffer of exactly that size. */
static void
test_prefixes(void **state)
{
	struct sthdr h;
	uint8_t *buf;
	size_t i, n;

	for (i = 0; i < NVECS; i++)
		for (n = 0; n < vecs[i].len; n++) {
			buf = malloc(n > 0 ? n : 1);
			assert_non_null(buf);
			memcpy(buf, vecs[i].b, n);
			if (sthdr_decode(buf, n, &h) != MG_EAGAIN)
				fail_msg("%s: prefix %zu", vecs[i].what, n);
			free(buf);
		}
}

static void
test_max_name(void **state)
{
	uint8_t out[STHDR_MAX_LEN];
	struct sthdr h, d;
	size_t n;

	memset(&h, 0, sizeof(h));
	h.type = STHDR_NEWSTREAM_EX;
	h.stream_id = 0xFFFFFFFE;
	h.remote_port = 65535;
	h.name_len = 255;
	memset(h.name, 'z', 255);
	h.af = 6;
	memcpy(h.addr, v6addr, 16);
	h.port = 65535;
	assert_int_equal(sthdr_encode(&h, out, sizeof(out)),
	    STHDR_EX_MAX_LEN);
	for (n = 0; n < STHDR_EX_MAX_LEN; n++)
		assert_int_equal(sthdr_decode(out, n, &d), MG_EAGAIN);
	memset(&d, 0, sizeof(d));
	assert_int_equal(sthdr_decode(out, STHDR_EX_MAX_LEN, &d),
	    STHDR_EX_MAX_LEN);
	assert_hdr(&d, &h);
	assert_int_equal(strlen(d.name), 255);

	/* the longest of all: NewStreamEx2 with STHDR_META_MAX bytes */
	h.type = STHDR_NEWSTREAM_EX2;
	assert_int_equal(sthdr_meta_add(&h, 0xe1, NULL, 0), 0);
	{
		static uint8_t big[STHDR_META_MAX];
		memset(big, 'q', sizeof(big));
		assert_int_equal(sthdr_meta_add(&h, 0x02, big,
		    STHDR_META_MAX - 6 + 1), MG_ENOSPC);
		assert_int_equal(h.meta_len, 3);
		assert_int_equal(sthdr_meta_add(&h, 0x02, big,
		    STHDR_META_MAX - 6), 0);
		assert_int_equal(h.meta_len, STHDR_META_MAX);
		assert_int_equal(sthdr_meta_add(&h, 0x04, NULL, 0),
		    MG_ENOSPC);
	}
	assert_int_equal(sthdr_encode(&h, out, sizeof(out)), STHDR_MAX_LEN);
	for (n = 0; n < STHDR_MAX_LEN; n++)
		assert_int_equal(sthdr_decode(out, n, &d), MG_EAGAIN);
	memset(&d, 0, sizeof(d));
	assert_int_equal(sthdr_decode(out, STHDR_MAX_LEN, &d), STHDR_MAX_LEN);
	assert_hdr(&d, &h);
}

/* meta_len above the cap: refused as soon as its two bytes are there */
static void
test_meta_too_long(void **state)
{
	uint8_t buf[sizeof(NSX2_WIRE) + 8];
	struct sthdr h;
	unsigned ml;

	memcpy(buf, NSX2_WIRE, sizeof(NSX2_WIRE) - 1);
	for (ml = STHDR_META_MAX + 1; ml <= 0xFFFF; ml += 997) {
		buf[18] = (uint8_t)(ml >> 8);
		buf[19] = (uint8_t)ml;
		assert_int_equal(sthdr_decode(buf, 19, &h), MG_EAGAIN);
		assert_int_equal(sthdr_decode(buf, 20, &h), MG_EPROTO);
		assert_int_equal(sthdr_decode(buf, sizeof(buf), &h),
		    MG_EPROTO);
	}
	build_nsx2(&h);
	h.meta_len = STHDR_META_MAX + 1;
	assert_int_equal(sthdr_encode(&h, buf, sizeof(buf)), MG_EINVAL);
}

/* metadata that is not whole TLVs: refused once it is all there */
static void
test_meta_bad_tlvs(void **state)
{
	static const uint8_t trunc_hdr[] =
	    "\x0b\x00\x00\x00\x04\x1f\x90\x00\x04\x7f\x00\x00\x01\x00\x50"
	    "\x00\x05" "\x02\x00\x01" "a" "\x05";
	static const uint8_t over[] =
	    "\x0b\x00\x00\x00\x04\x1f\x90\x00\x04\x7f\x00\x00\x01\x00\x50"
	    "\x00\x04" "\x02\x00\x02" "a";
	static const uint8_t ok_data[] =
	    "\x0b\x00\x00\x00\x04\x1f\x90\x00\x04\x7f\x00\x00\x01\x00\x50"
	    "\x00\x04" "\x02\x00\x01" "a" "DATA";
	struct sthdr h;

	assert_int_equal(sthdr_decode(trunc_hdr, sizeof(trunc_hdr) - 2, &h),
	    MG_EAGAIN);
	assert_int_equal(sthdr_decode(trunc_hdr, sizeof(trunc_hdr) - 1, &h),
	    MG_EPROTO);
	assert_int_equal(sthdr_decode(over, sizeof(over) - 1, &h),
	    MG_EPROTO);
	/* a TLV that would run into the stream's data is the same error */
	{
		uint8_t b[sizeof(over) + 4];
		memcpy(b, over, sizeof(over) - 1);
		memcpy(b + sizeof(over) - 1, "DATA", 4);
		assert_int_equal(sthdr_decode(b, sizeof(b) - 1, &h),
		    MG_EPROTO);
	}
	assert_int_equal(sthdr_decode(ok_data, sizeof(ok_data) - 1, &h), 21);
	assert_int_equal(h.meta_len, 4);
}

static void
test_meta_walk(void **state)
{
	struct sthdr h;
	size_t off = 0, vl;
	const uint8_t *v;
	uint8_t t;

	assert_int_equal(sthdr_decode(W(NSX2_WIRE), &h), 34);
	assert_int_equal(sthdr_meta_next(h.meta, h.meta_len, &off, &t, &v,
	    &vl), 1);
	assert_int_equal(t, 0x02);
	assert_int_equal(vl, 3);
	assert_memory_equal(v, "a.b", 3);
	assert_int_equal(sthdr_meta_next(h.meta, h.meta_len, &off, &t, &v,
	    &vl), 1);
	assert_int_equal(t, 0xe0);
	assert_int_equal(vl, 5);
	assert_memory_equal(v, "alice", 5);
	assert_int_equal(sthdr_meta_next(h.meta, h.meta_len, &off, &t, &v,
	    &vl), 0);
	off = 0;
	assert_int_equal(sthdr_meta_next(h.meta, 2, &off, &t, &v, &vl),
	    MG_EPROTO);
	off = 0;
	assert_int_equal(sthdr_meta_next(h.meta, 5, &off, &t, &v, &vl),
	    MG_EPROTO);
}

static void
test_name_with_nul(void **state)
{
	static const uint8_t b[] = "\x02\x00\x00\x00\x02\x00\x50\x03" "a\0b";
	struct sthdr h;

	assert_int_equal(sthdr_decode(b, sizeof(b) - 1, &h), 11);
	assert_int_equal(h.name_len, 3);
	assert_memory_equal(h.name, "a\0b\0", 4);
}

static void
test_bad_type(void **state)
{
	uint8_t buf[32];
	struct sthdr h;
	unsigned t;

	memcpy(buf, NSX4_WIRE, 18);
	for (t = 0; t <= 0xFF; t++) {
		if (t == STHDR_NEWSTREAM || t == STHDR_NEWSTREAM_EX ||
		    t == STHDR_NEWSTREAM_EX2)
			continue;
		buf[0] = (uint8_t)t;
		/* Known to be wrong from the first byte on. */
		assert_int_equal(sthdr_decode(buf, 1, &h), MG_EPROTO);
		assert_int_equal(sthdr_decode(buf, 18, &h), MG_EPROTO);
	}
}

static void
test_bad_af(void **state)
{
	static const uint8_t bad[] = { 0, 1, 5, 7, 16, 0xFF };
	uint8_t buf[40];
	struct sthdr h;
	size_t i;

	memcpy(buf, NSX4_WIRE, 18);
	memset(buf + 18, 0, sizeof(buf) - 18);
	for (i = 0; i < sizeof(bad); i++) {
		buf[11] = bad[i];
		/* As soon as the af byte is there. */
		assert_int_equal(sthdr_decode(buf, 12, &h), MG_EPROTO);
		assert_int_equal(sthdr_decode(buf, sizeof(buf), &h),
		    MG_EPROTO);
	}
	/* A v6 af over a v4-sized rest is merely incomplete. */
	buf[11] = 6;
	assert_int_equal(sthdr_decode(buf, 18, &h), MG_EAGAIN);
	assert_int_equal(sthdr_decode(buf, 30, &h), 30);
	assert_int_equal(h.af, 6);
}

static void
test_encode_errors(void **state)
{
	uint8_t out[STHDR_MAX_LEN + 1];
	struct sthdr h;
	size_t i, cap;

	for (i = 0; i < NVECS; i++) {
		vecs[i].build(&h);
		for (cap = 0; cap < vecs[i].len; cap++) {
			memset(out, GUARD, sizeof(out));
			assert_int_equal(sthdr_encode(&h, out, cap),
			    MG_ENOSPC);
			assert_int_equal(out[cap], GUARD);
		}
	}
	build_nsx4(&h);
	h.af = 5;
	assert_int_equal(sthdr_encode(&h, out, sizeof(out)), MG_EINVAL);
	h.af = 0;
	assert_int_equal(sthdr_encode(&h, out, sizeof(out)), MG_EINVAL);
	/* af is ignored for the legacy header. */
	h.type = STHDR_NEWSTREAM;
	assert_int_equal(sthdr_encode(&h, out, sizeof(out)), 11);
	h.type = 0x03;
	assert_int_equal(sthdr_encode(&h, out, sizeof(out)), MG_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vec_sizes),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_decode_with_data),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_max_name),
		cmocka_unit_test(test_name_with_nul),
		cmocka_unit_test(test_bad_type),
		cmocka_unit_test(test_bad_af),
		cmocka_unit_test(test_encode_errors),
		cmocka_unit_test(test_meta_too_long),
		cmocka_unit_test(test_meta_bad_tlvs),
		cmocka_unit_test(test_meta_walk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
