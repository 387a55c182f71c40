/* test_proxyproto.c: PROXY protocol v1/v2 encoders and the decoder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cmocka.h>

#include "proto/proxyproto.h"
#include "util/err.h"

#define W(lit) (const uint8_t *)(lit), sizeof(lit) - 1
#define SIG "\r\n\r\n\0\r\nQUIT\n"

/* what haproxy 2.6 sent with `send-proxy-v2 proxy-v2-options
 * crc32c,unique-id` for 127.0.0.6:32975 -> 127.0.0.1:24102 */
static const uint8_t haproxy_v2[] =
    "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\x2b"
    "\x7f\x00\x00\x06\x7f\x00\x00\x01\x80\xcf\x5e\x26\x03\x00\x04\x02"
    "\x38\x8d\x71\x05\x00\x15\x6d\x67\x72\x6f\x6b\x2d\x31\x32\x37\x2e"
    "\x30\x2e\x30\x2e\x36\x2d\x33\x32\x39\x37\x35";

static struct sockaddr_storage
sa4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	s->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
	s->sin_port = htons(port);
	return ss;
}

static struct sockaddr_storage
sa6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	s->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
	s->sin6_port = htons(port);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* same family, address and port */
static void
assert_sa(const struct sockaddr_storage *got, const struct sockaddr_storage *want)
{
	assert_int_equal(got->ss_family, want->ss_family);
	if (want->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)got, *b = (const void *)want;

		assert_memory_equal(&a->sin_addr, &b->sin_addr, 4);
		assert_int_equal(a->sin_port, b->sin_port);
	} else if (want->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)got, *b = (const void *)want;

		assert_memory_equal(&a->sin6_addr, &b->sin6_addr, 16);
		assert_int_equal(a->sin6_port, b->sin6_port);
	}
}

/* parse p[0..len) from a heap copy of exactly len bytes (so a sanitizer
 * sees any read past it) */
static int
parse_exact(const uint8_t *p, size_t len, struct proxyproto_hdr *h,
    const char **why)
{
	uint8_t *c = malloc(len ? len : 1);
	int rc;

	assert_non_null(c);
	if (len)
		memcpy(c, p, len);
	rc = proxyproto_parse(c, len, h, why);
	free(c);
	return rc;
}

/* every proper prefix of a valid header is MG_EAGAIN and leaves *h alone */
static void
assert_prefixes(const uint8_t *p, size_t n)
{
	struct proxyproto_hdr h;
	const char *why;
	size_t k;

	for (k = 0; k < n; k++) {
		memset(&h, 0xA5, sizeof(h));
		why = NULL;
		assert_int_equal(parse_exact(p, k, &h, &why), MG_EAGAIN);
		assert_null(why);
		assert_int_equal(h.version, (int)0xA5A5A5A5);
	}
}

static void
assert_refused(const uint8_t *p, size_t len, const char *reason)
{
	struct proxyproto_hdr h;
	const char *why = NULL;
	int rc;

	rc = parse_exact(p, len, &h, &why);
	if (rc != MG_EPROTO || why == NULL || strcmp(why, reason) != 0)
		fail_msg("%.*s: rc %d, why \"%s\", want \"%s\"", (int)len,
		    (const char *)p, rc, why ? why : "(null)", reason);
}

static void
test_crc32c(void **state)
{
	(void)state;
	assert_int_equal(proxyproto_crc32c(0, "123456789", 9), 0xe3069283);
	assert_int_equal(proxyproto_crc32c(proxyproto_crc32c(0, "1234", 4),
	    "56789", 5), 0xe3069283);
	assert_int_equal(proxyproto_crc32c(0, "", 0), 0);
}

static void
test_v1_spec_examples(void **state)
{
	static const char *const ok[] = {
		"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
		"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		"PROXY UNKNOWN\r\n",
		/* 107 bytes, the longest there is */
		"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
		"PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n",
		"PROXY TCP6 ::ffff:10.1.2.3 2001:DB8::1 1 65535\r\n",
	};
	struct proxyproto_hdr h;
	struct sockaddr_storage want;
	const char *why = NULL;
	size_t i, n;
	int rc;

	(void)state;
	assert_int_equal(strlen(ok[3]), PROXYPROTO_V1_MAX);
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		n = strlen(ok[i]);
		rc = parse_exact((const uint8_t *)ok[i], n, &h, &why);
		if (rc != (int)n)
			fail_msg("%s: rc %d (%s)", ok[i], rc, why);
		assert_int_equal(h.version, 1);
		assert_int_equal(h.command, PP_PROXY);
		assert_int_equal(h.ntlvs, 0);
		assert_prefixes((const uint8_t *)ok[i], n);
	}

	rc = parse_exact(W("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
	    "GET / HTTP/1.1\r\n"), &h, &why);
	assert_int_equal(rc, 47);
	assert_int_equal(h.family, AF_INET);
	assert_int_equal(h.transport, PP_STREAM);
	want = sa4("192.168.0.1", 56324);
	assert_sa(&h.src, &want);
	want = sa4("192.168.0.11", 443);
	assert_sa(&h.dst, &want);

	rc = parse_exact(W("PROXY UNKNOWN\r\nxyz"), &h, &why);
	assert_int_equal(rc, 15);
	assert_int_equal(h.family, AF_UNSPEC);
	assert_int_equal(h.transport, PP_UNSPEC);
}

static void
test_v1_malformed(void **state)
{
	static const struct {
		const char *in;
		const char *why;
	} bad[] = {
		{ "GET / HTTP/1.1\r\n", "not a PROXY protocol header" },
		{ "PROXZ", "not a PROXY protocol header" },
		{ "PROXY\r\n", "v1: no space after PROXY" },
		{ "PROXY  TCP4", "v1: empty field" },
		{ "PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
		    "v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)" },
		{ "PROXY tcp4", "v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)" },
		{ "PROXY UNKNOWNX\r\n",
		    "v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)" },
		{ "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "v1: bad source address" },
		{ "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "v1: bad source address" },
		{ "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "v1: bad source address" },
		{ "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "v1: bad source address" },
		{ "PROXY TCP4 ::1 ::1 1 2\r\n", "v1: bad source address" },
		{ "PROXY TCP4 1.2.3.4x", "v1: bad source address" },
		{ "PROXY TCP4 1234567890123456", "v1: bad source address" },
		{ "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "v1: bad source address" },
		{ "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "v1: bad source address" },
		{ "PROXY TCP6 ::1 :::1 1 2\r\n", "v1: bad destination address" },
		{ "PROXY TCP6 ::1 g::1", "v1: bad destination address" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "v1: bad source port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "v1: bad source port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "v1: bad source port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 123456", "v1: bad source port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 00", "v1: bad source port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
		    "v1: bad destination port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2x", "v1: bad destination port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "v1: empty field" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1: missing fields" },
		{ "PROXY TCP4\r\n", "v1: missing fields" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
		    "v1: extra field after the ports" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
		    "v1: extra field after the ports" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "v1: CR not followed by LF" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1: bad destination port" },
		{ "PROXY TCP4\t1.2.3.4", "v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)" },
	};
	struct proxyproto_hdr h;
	char longline[200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_refused((const uint8_t *)bad[i].in, strlen(bad[i].in),
		    bad[i].why);

	/* no CRLF within 107 bytes: UNKNOWN's ignored tail, 106 bytes in */
	memset(longline, 'x', sizeof(longline));
	memcpy(longline, "PROXY UNKNOWN ", 14);
	assert_int_equal(parse_exact((const uint8_t *)longline, 105, &h, NULL),
	    MG_EAGAIN);
	assert_refused((const uint8_t *)longline, 106,
	    "v1: no CRLF within 107 bytes");
	/* a CR at index 106 comes too late */
	longline[106] = '\r';
	longline[107] = '\n';
	assert_refused((const uint8_t *)longline, 108,
	    "v1: no CRLF within 107 bytes");
	/* at 105 it fits: 107 bytes */
	longline[105] = '\r';
	longline[106] = '\n';
	assert_int_equal(parse_exact((const uint8_t *)longline, 108, &h, NULL),
	    PROXYPROTO_V1_MAX);
	assert_int_equal(h.family, AF_UNSPEC);
}

static void
test_v1_encode(void **state)
{
	static const struct {
		const char *s, *d;
		const char *want;
	} cases[] = {
		{ "192.0.2.1", "198.51.100.7", "PROXY TCP4 192.0.2.1 198.51.100.7 1234 443\r\n" },
		{ "2001:db8::1", "2001:db8::2", "PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n" },
		/* both mapped: IPv4 */
		{ "::ffff:192.0.2.1", "::ffff:10.0.0.1", "PROXY TCP4 192.0.2.1 10.0.0.1 1234 443\r\n" },
		/* mapped and IPv4: IPv4 */
		{ "::ffff:192.0.2.1", "10.0.0.1", "PROXY TCP4 192.0.2.1 10.0.0.1 1234 443\r\n" },
		/* mapped and IPv6: IPv6 */
		{ "::ffff:192.0.2.1", "2001:db8::2", "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1234 443\r\n" },
		/* IPv4 and IPv6 */
		{ "192.0.2.1", "2001:db8::2", "PROXY UNKNOWN\r\n" },
	};
	struct sockaddr_storage s, d;
	struct sockaddr_un su;
	struct proxyproto_hdr h;
	char out[PROXYPROTO_V1_MAX];
	size_t i, n, k;
	int rc;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s = strchr(cases[i].s, ':') ? sa6(cases[i].s, 1234) : sa4(cases[i].s, 1234);
		d = strchr(cases[i].d, ':') ? sa6(cases[i].d, 443) : sa4(cases[i].d, 443);
		n = strlen(cases[i].want);
		rc = proxyproto_v1(SA(s), SA(d), out, sizeof(out));
		assert_int_equal(rc, (int)n);
		assert_memory_equal(out, cases[i].want, n);
		for (k = 0; k < n; k++)
			assert_int_equal(proxyproto_v1(SA(s), SA(d), out, k), MG_ENOSPC);
		/* and back */
		assert_int_equal(parse_exact((uint8_t *)out, n, &h, NULL), (int)n);
		if (h.family == AF_INET6) {
			assert_sa(&h.src, &s);
			assert_sa(&h.dst, &d);
		}
	}
	s = sa6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	assert_int_equal(proxyproto_v1(SA(s), SA(s), out, sizeof(out)), 104);

	assert_int_equal(proxyproto_v1(NULL, NULL, out, sizeof(out)), 15);
	assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
	memset(&su, 0, sizeof(su));
	su.sun_family = AF_UNIX;
	assert_int_equal(proxyproto_v1((struct sockaddr *)&su,
	    (struct sockaddr *)&su, out, sizeof(out)), 15);
	assert_int_equal(proxyproto_v1(NULL, NULL, NULL, 0), MG_EINVAL);
}

static void
test_v2_haproxy(void **state)
{
	struct proxyproto_hdr h;
	struct sockaddr_storage want;
	const uint8_t *v;
	size_t n = sizeof(haproxy_v2) - 1, vl;
	uint8_t bad[sizeof(haproxy_v2)];

	(void)state;
	assert_int_equal(parse_exact(haproxy_v2, n, &h, NULL), (int)n);
	assert_int_equal(h.version, 2);
	assert_int_equal(h.command, PP_PROXY);
	assert_int_equal(h.transport, PP_STREAM);
	assert_int_equal(h.family, AF_INET);
	assert_true(h.has_crc);
	want = sa4("127.0.0.6", 32975);
	assert_sa(&h.src, &want);
	want = sa4("127.0.0.1", 24102);
	assert_sa(&h.dst, &want);
	v = proxyproto_tlv_find(&h, haproxy_v2, PP2_TYPE_UNIQUE_ID, &vl);
	assert_non_null(v);
	assert_int_equal(vl, 21);
	assert_memory_equal(v, "mgrok-127.0.0.6-32975", 21);
	assert_null(proxyproto_tlv_find(&h, haproxy_v2, PP2_TYPE_CRC32C, NULL));
	assert_prefixes(haproxy_v2, n);

	/* one bit anywhere: refused by the CRC or by the structure */
	for (size_t i = PROXYPROTO_V2_FIXED; i < n; i++) {
		memcpy(bad, haproxy_v2, n);
		bad[i] ^= 0x10;
		/* but 0x03 -> 0x13 turns the CRC32C TLV into an unknown one */
		if (i == 28) {
			assert_int_equal(parse_exact(bad, n, &h, NULL), (int)n);
			assert_false(h.has_crc);
			continue;
		}
		assert_int_equal(parse_exact(bad, n, &h, NULL), MG_EPROTO);
	}
	memcpy(bad, haproxy_v2, n);
	bad[20] ^= 1;  /* the destination address */
	assert_refused(bad, n, "v2: CRC32C mismatch");
}

static void
check_v2_round(int cmd, int tr, const struct sockaddr_storage *s,
    const struct sockaddr_storage *d, int want_family,
    const struct proxyproto_tlv *t, size_t nt, int want_len)
{
	uint8_t out[1024];
	struct proxyproto_hdr h;
	const uint8_t *v;
	size_t i, vl;
	int n, k;

	n = proxyproto_v2(cmd, tr, (const struct sockaddr *)s,
	    (const struct sockaddr *)d, t, nt, out, sizeof(out));
	assert_int_equal(n, want_len);
	for (k = 0; k < n; k++)
		assert_int_equal(proxyproto_v2(cmd, tr,
		    (const struct sockaddr *)s, (const struct sockaddr *)d, t,
		    nt, out, (size_t)k), MG_ENOSPC);
	assert_int_equal(parse_exact(out, (size_t)n, &h, NULL), n);
	assert_int_equal(h.version, 2);
	assert_int_equal(h.command, cmd & 0xf);
	assert_int_equal(h.family, want_family);
	assert_int_equal(h.has_crc, (cmd & PP_CRC32C) != 0);
	if (want_family == AF_INET || want_family == AF_INET6) {
		assert_int_equal(h.transport, tr);
		if (s->ss_family == want_family) {
			assert_sa(&h.src, s);
			assert_sa(&h.dst, d);
		}
	}
	for (i = 0; i < nt; i++) {
		v = proxyproto_tlv_find(&h, out, t[i].type, &vl);
		assert_non_null(v);
		assert_int_equal(vl, t[i].len);
		assert_memory_equal(v, t[i].value, vl);
	}
	assert_prefixes(out, (size_t)n);
}

static void
test_v2_round_trips(void **state)
{
	struct sockaddr_storage s4 = sa4("192.0.2.1", 40000), d4 = sa4("198.51.100.1", 443);
	struct sockaddr_storage s6 = sa6("2001:db8::1", 40000), d6 = sa6("2001:db8::2", 443);
	struct sockaddr_storage m1 = sa6("::ffff:192.0.2.1", 40000), m2 = sa6("::ffff:198.51.100.1", 443);
	struct sockaddr_storage su;
	struct sockaddr_un *u = (struct sockaddr_un *)&su;
	struct proxyproto_hdr h;
	uint8_t out[600];
	struct proxyproto_tlv t[] = {
		{ PP2_TYPE_ALPN, "h2", 2 },
		{ PP2_TYPE_AUTHORITY, "demo.example.org", 16 },
		{ PP2_TYPE_UNIQUE_ID, "conn-7", 6 },
		{ PP2_TYPE_MGROK_TOKEN, "alice", 5 },
		{ PP2_TYPE_MGROK_SUBJECT, "CN=edge-1", 9 },
		{ PP2_TYPE_NETNS, "", 0 },
	};
	int n;

	(void)state;
	check_v2_round(PP_PROXY, PP_STREAM, &s4, &d4, AF_INET, NULL, 0, 28);
	check_v2_round(PP_PROXY, PP_DGRAM, &s4, &d4, AF_INET, NULL, 0, 28);
	check_v2_round(PP_PROXY, PP_STREAM, &s6, &d6, AF_INET6, NULL, 0, 52);
	check_v2_round(PP_PROXY, PP_DGRAM, &s6, &d6, AF_INET6, t, 6, 52 + 56);
	check_v2_round(PP_PROXY, PP_STREAM, &m1, &m2, AF_INET, NULL, 0, 28);
	check_v2_round(PP_PROXY, PP_STREAM, &m1, &d4, AF_INET, NULL, 0, 28);
	check_v2_round(PP_PROXY, PP_STREAM, &m1, &d6, AF_INET6, NULL, 0, 52);
	check_v2_round(PP_PROXY, PP_STREAM, &s4, &d6, AF_UNSPEC, NULL, 0, 16);
	check_v2_round(PP_PROXY, PP_STREAM, NULL, NULL, AF_UNSPEC, NULL, 0, 16);
	check_v2_round(PP_LOCAL, PP_STREAM, &s4, &d4, AF_UNSPEC, NULL, 0, 16);
	check_v2_round(PP_LOCAL | PP_CRC32C, PP_STREAM, NULL, NULL, AF_UNSPEC,
	    t, 2, 16 + 24 + 7);
	check_v2_round(PP_PROXY | PP_CRC32C, PP_STREAM, &s4, &d4, AF_INET,
	    t, 6, 28 + 56 + 7);
	check_v2_round(PP_PROXY | PP_CRC32C, PP_DGRAM, &s6, &d6, AF_INET6,
	    t, 6, 52 + 56 + 7);

	/* the mapped pair arrives as IPv4 */
	n = proxyproto_v2(PP_PROXY, PP_STREAM, SA(m1), SA(m2), NULL, 0, out,
	    sizeof(out));
	assert_int_equal(parse_exact(out, (size_t)n, &h, NULL), n);
	assert_sa(&h.src, &s4);
	assert_sa(&h.dst, &d4);
	assert_int_equal(out[13], 0x11);

	/* AF_UNIX */
	memset(&su, 0, sizeof(su));
	u->sun_family = AF_UNIX;
	strcpy(u->sun_path, "/run/mgrok.sock");
	n = proxyproto_v2(PP_PROXY, PP_STREAM, SA(su), SA(su), NULL, 0, out,
	    sizeof(out));
	assert_int_equal(n, 16 + 216);
	assert_int_equal(out[13], 0x31);
	assert_int_equal(parse_exact(out, (size_t)n, &h, NULL), n);
	assert_int_equal(h.family, AF_UNIX);
	assert_string_equal(((struct sockaddr_un *)&h.dst)->sun_path,
	    "/run/mgrok.sock");

	/* bad arguments */
	assert_int_equal(proxyproto_v2(2, PP_STREAM, NULL, NULL, NULL, 0, out,
	    sizeof(out)), MG_EINVAL);
	assert_int_equal(proxyproto_v2(PP_PROXY, PP_UNSPEC, NULL, NULL, NULL, 0,
	    out, sizeof(out)), MG_EINVAL);
	t[0].type = PP2_TYPE_CRC32C;
	t[0].len = 4;
	assert_int_equal(proxyproto_v2(PP_PROXY, PP_STREAM, NULL, NULL, t, 1,
	    out, sizeof(out)), MG_EINVAL);
	{
		uint8_t big[200] = { 0 };
		struct proxyproto_tlv u1 = { PP2_TYPE_UNIQUE_ID, big, 129 };
		struct proxyproto_tlv u2 = { PP2_TYPE_UNIQUE_ID, big, 128 };

		assert_int_equal(proxyproto_v2(PP_PROXY, PP_STREAM, NULL, NULL,
		    &u1, 1, out, sizeof(out)), MG_EINVAL);
		assert_int_equal(proxyproto_v2(PP_PROXY, PP_STREAM, NULL, NULL,
		    &u2, 1, out, sizeof(out)), 16 + 131);
	}
}

static void
test_v2_ssl(void **state)
{
	struct sockaddr_storage s = sa4("192.0.2.1", 40000), d = sa4("198.51.100.1", 443);
	struct proxyproto_tlv sub[] = {
		{ PP2_SUBTYPE_SSL_VERSION, "TLSv1.3", 7 },
		{ PP2_SUBTYPE_SSL_CN, "edge-1", 6 },
	};
	struct proxyproto_tlv t[2];
	struct proxyproto_hdr h;
	uint8_t val[64], out[256];
	const uint8_t *v;
	size_t vl;
	int vn, n;

	(void)state;
	vn = proxyproto_ssl_value(PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN, 0, sub,
	    2, val, sizeof(val));
	assert_int_equal(vn, 5 + 10 + 9);
	assert_int_equal(proxyproto_ssl_value(0, 0, sub, 2, val, 10), MG_ENOSPC);
	t[0] = (struct proxyproto_tlv){ PP2_TYPE_SSL, val, (uint16_t)vn };
	t[1] = (struct proxyproto_tlv){ PP2_TYPE_MGROK_TOKEN, "bob", 3 };
	n = proxyproto_v2(PP_PROXY | PP_CRC32C, PP_STREAM, SA(s), SA(d), t, 2,
	    out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal(parse_exact(out, (size_t)n, &h, NULL), n);
	v = proxyproto_ssl_find(&h, out, PP2_SUBTYPE_SSL_CN, &vl);
	assert_non_null(v);
	assert_int_equal(vl, 6);
	assert_memory_equal(v, "edge-1", 6);
	v = proxyproto_tlv_find(&h, out, PP2_TYPE_SSL, &vl);
	assert_non_null(v);
	assert_int_equal(vl, vn);
	assert_int_equal(v[0], PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN);
	/* a sub-TLV is not a top-level one, nor the other way round */
	assert_null(proxyproto_tlv_find(&h, out, PP2_SUBTYPE_SSL_CN, NULL));
	assert_null(proxyproto_ssl_find(&h, out, PP2_TYPE_MGROK_TOKEN, NULL));
	v = proxyproto_tlv_find(&h, out, PP2_TYPE_MGROK_TOKEN, &vl);
	assert_non_null(v);
	assert_memory_equal(v, "bob", 3);
	assert_prefixes(out, (size_t)n);
}

/* build SIG | ver_cmd | fam | len | body */
static size_t
v2(uint8_t *out, uint8_t vc, uint8_t fam, uint16_t len, const void *body,
    size_t blen)
{
	memcpy(out, SIG, 12);
	out[12] = vc;
	out[13] = fam;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	if (blen)
		memcpy(out + 16, body, blen);
	return 16 + blen;
}

static void
test_v2_malformed(void **state)
{
	static const uint8_t a4[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2 };
	struct proxyproto_hdr h;
	uint8_t b[5000], body[4200];
	size_t n;

	(void)state;
	assert_refused(W("\r\n\r\n\0\r\nQUIT\r"), "not a PROXY protocol header");
	assert_refused(W("\r\r"), "not a PROXY protocol header");
	assert_refused(W("\x16\x03\x01"), "not a PROXY protocol header");
	assert_refused(W("\0"), "not a PROXY protocol header");
	assert_refused(W(SIG "\x11"), "v2: version is not 2");
	assert_refused(W(SIG "\x31"), "v2: version is not 2");
	assert_refused(W(SIG "\x22"), "v2: command is neither LOCAL nor PROXY");
	assert_refused(W(SIG "\x2f"), "v2: command is neither LOCAL nor PROXY");
	assert_refused(W(SIG "\x21\x41"), "v2: unknown address family");
	assert_refused(W(SIG "\x21\x13"), "v2: bad transport for the address family");
	assert_refused(W(SIG "\x21\x10"), "v2: bad transport for the address family");
	assert_refused(W(SIG "\x21\x01"), "v2: bad transport for the address family");
	assert_refused(W(SIG "\x21\x11\x00\x0b"),
	    "v2: length too short for AF_INET addresses");
	assert_refused(W(SIG "\x21\x21\x00\x14"),
	    "v2: length too short for AF_INET6 addresses");
	assert_refused(W(SIG "\x21\x31\x00\xd7"),
	    "v2: length too short for AF_UNIX addresses");
	assert_refused(W(SIG "\x21\x11\x10\x01"),
	    "v2: declared length above the 4096-byte cap");
	assert_refused(W(SIG "\x21\x11\xff\xff"),
	    "v2: declared length above the 4096-byte cap");

	/* TLVs */
	memcpy(body, a4, 12);
	memcpy(body + 12, "\x02\x00\x05" "abc", 6);
	n = v2(b, 0x21, 0x11, 18, body, 18);
	assert_refused(b, n, "v2: a TLV runs past the header");
	memcpy(body + 12, "\x04\x00", 2);
	n = v2(b, 0x21, 0x11, 14, body, 14);
	assert_refused(b, n, "v2: a TLV header runs past the header");
	memcpy(body + 12, "\x03\x00\x03" "abc", 6);
	n = v2(b, 0x21, 0x11, 18, body, 18);
	assert_refused(b, n, "v2: CRC32C TLV is not 4 bytes");
	memcpy(body + 12, "\x03\x00\x04" "\0\0\0\0" "\x03\x00\x04" "\0\0\0\0", 14);
	n = v2(b, 0x21, 0x11, 26, body, 26);
	assert_refused(b, n, "v2: two CRC32C TLVs");
	memcpy(body + 12, "\x03\x00\x04" "\0\0\0\0", 7);
	n = v2(b, 0x21, 0x11, 19, body, 19);
	assert_refused(b, n, "v2: CRC32C mismatch");
	body[12] = PP2_TYPE_UNIQUE_ID;
	body[13] = 0;
	body[14] = 129;
	memset(body + 15, 'u', 129);
	n = v2(b, 0x21, 0x11, 12 + 3 + 129, body, 12 + 3 + 129);
	assert_refused(b, n, "v2: UNIQUE_ID longer than 128 bytes");
	body[14] = 128;
	n = v2(b, 0x21, 0x11, 12 + 3 + 128, body, 12 + 3 + 128);
	assert_int_equal(parse_exact(b, n, &h, NULL), (int)n);
	memcpy(body + 12, "\x20\x00\x04" "\x01\0\0\0", 7);
	n = v2(b, 0x21, 0x11, 19, body, 19);
	assert_refused(b, n, "v2: SSL TLV shorter than 5 bytes");
	memcpy(body + 12, "\x20\x00\x07" "\x01\0\0\0\0" "\x22\x00", 10);
	n = v2(b, 0x21, 0x11, 22, body, 22);
	assert_refused(b, n, "v2: an SSL sub-TLV runs past the SSL TLV");
	memcpy(body + 12, "\x20\x00\x09" "\x01\0\0\0\0" "\x22\x00\x02" "x", 12);
	n = v2(b, 0x21, 0x11, 24, body, 24);
	assert_refused(b, n, "v2: an SSL sub-TLV runs past the SSL TLV");
	/* too many TLVs (NOOPs do not count) */
	for (n = 0; n <= PROXYPROTO_MAX_TLVS; n++)
		memcpy(body + 12 + 3 * n, "\xe5\x00\x00", 3);
	n = v2(b, 0x21, 0x11, (uint16_t)(12 + 3 * (PROXYPROTO_MAX_TLVS + 1)),
	    body, 12 + 3 * (PROXYPROTO_MAX_TLVS + 1));
	assert_refused(b, n, "v2: too many TLVs");
	for (n = 0; n <= PROXYPROTO_MAX_TLVS; n++)
		body[12 + 3 * n] = PP2_TYPE_NOOP;
	n = v2(b, 0x21, 0x11, (uint16_t)(12 + 3 * (PROXYPROTO_MAX_TLVS + 1)),
	    body, 12 + 3 * (PROXYPROTO_MAX_TLVS + 1));
	assert_int_equal(parse_exact(b, n, &h, NULL), (int)n);
	assert_int_equal(h.ntlvs, 0);
}

static void
test_v2_cap_and_local(void **state)
{
	static const uint8_t a4[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2 };
	uint8_t b[16 + PROXYPROTO_V2_MAX_LEN + 8], body[PROXYPROTO_V2_MAX_LEN];
	struct proxyproto_hdr h;
	const uint8_t *v;
	size_t n, vl;

	(void)state;
	/* exactly the cap: one NOOP padding the rest */
	memset(body, 0, sizeof(body));
	memcpy(body, a4, 12);
	body[12] = PP2_TYPE_NOOP;
	body[13] = (uint8_t)((PROXYPROTO_V2_MAX_LEN - 15) >> 8);
	body[14] = (uint8_t)(PROXYPROTO_V2_MAX_LEN - 15);
	n = v2(b, 0x21, 0x12, PROXYPROTO_V2_MAX_LEN, body, sizeof(body));
	memcpy(b + n, "data", 4);
	assert_int_equal(parse_exact(b, n - 1, &h, NULL), MG_EAGAIN);
	assert_int_equal(parse_exact(b, n + 4, &h, NULL), (int)n);
	assert_int_equal(h.transport, PP_DGRAM);
	assert_int_equal(h.ntlvs, 0);

	/* LOCAL: any family, addresses skipped, the connection's own used */
	n = v2(b, 0x20, 0x00, 0, NULL, 0);
	assert_int_equal(parse_exact(b, n, &h, NULL), 16);
	assert_int_equal(h.command, PP_LOCAL);
	assert_int_equal(h.family, AF_UNSPEC);
	n = v2(b, 0x20, 0x11, 12, a4, 12);
	assert_int_equal(parse_exact(b, n, &h, NULL), 28);
	assert_int_equal(h.family, AF_UNSPEC);
	assert_int_equal(h.src.ss_family, AF_UNSPEC);
	n = v2(b, 0x20, 0xff, 3, "abc", 3);
	assert_int_equal(parse_exact(b, n, &h, NULL), 19);
	assert_int_equal(h.ntlvs, 0);
	n = v2(b, 0x20, 0x21, 5, "abcde", 5);   /* too short for IPv6: skipped */
	assert_int_equal(parse_exact(b, n, &h, NULL), 21);
	/* LOCAL with a known family still has its TLVs read and checked */
	memcpy(body, a4, 12);
	memcpy(body + 12, "\x02\x00\x01" "h", 4);
	n = v2(b, 0x20, 0x11, 16, body, 16);
	assert_int_equal(parse_exact(b, n, &h, NULL), 32);
	v = proxyproto_tlv_find(&h, b, PP2_TYPE_AUTHORITY, &vl);
	assert_non_null(v);
	assert_int_equal(vl, 1);
	n = v2(b, 0x20, 0x11, 15, body, 15);
	assert_refused(b, n, "v2: a TLV runs past the header");

	/* PROXY with UNSPEC: accepted, no addresses, TLVs read */
	n = v2(b, 0x21, 0x00, 4, "\xe0\x00\x01" "a", 4);
	assert_int_equal(parse_exact(b, n, &h, NULL), 20);
	assert_int_equal(h.family, AF_UNSPEC);
	assert_int_equal(h.transport, PP_UNSPEC);
	assert_non_null(proxyproto_tlv_find(&h, b, PP2_TYPE_MGROK_TOKEN, NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_v1_spec_examples),
		cmocka_unit_test(test_v1_malformed),
		cmocka_unit_test(test_v1_encode),
		cmocka_unit_test(test_v2_haproxy),
		cmocka_unit_test(test_v2_round_trips),
		cmocka_unit_test(test_v2_ssl),
		cmocka_unit_test(test_v2_malformed),
		cmocka_unit_test(test_v2_cap_and_local),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
