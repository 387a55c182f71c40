/* test_policy.c: per-token policy: its value parsers, its matchers and
 * their messages, and the server file's tokens:/certs: policies as the
 * loader builds them (rotation, lookups, errors with their places). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "conf/policy.h"
#include "proto/ctrl.h"
#include "util/err.h"

static void
test_ports(void **state)
{
	struct conf_policy p;
	struct policy_range r;
	const char *err = NULL;
	char buf[200];

	(void)state;
	assert_int_equal(policy_parse_port("22022", &r, &err), 0);
	assert_int_equal(r.lo, 22022);
	assert_int_equal(r.hi, 22022);
	assert_int_equal(policy_parse_port("20000-20099", &r, &err), 0);
	assert_int_equal(r.lo, 20000);
	assert_int_equal(r.hi, 20099);
	assert_int_equal(policy_parse_port("20100-20000", &r, &err), -1);
	assert_string_equal(err, "the range ends before it starts");
	assert_int_equal(policy_parse_port("0", &r, &err), -1);
	assert_int_equal(policy_parse_port("65536", &r, &err), -1);
	assert_int_equal(policy_parse_port("1-", &r, &err), -1);
	assert_int_equal(policy_parse_port("-5", &r, &err), -1);
	assert_int_equal(policy_parse_port("80 ", &r, &err), -1);
	assert_int_equal(policy_parse_port("", &r, &err), -1);

	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "alice");
	assert_null(policy_check_port(&p, 30000, buf, sizeof(buf)));
	assert_null(policy_check_port(NULL, 30000, buf, sizeof(buf)));
	p.ports[0] = (struct policy_range){ 20000, 20099 };
	p.ports[1] = (struct policy_range){ 22022, 22022 };
	p.nports = 2;
	assert_string_equal(policy_format_ports(&p, buf, sizeof(buf)),
	    "20000-20099, 22022");
	assert_null(policy_check_port(&p, 20000, buf, sizeof(buf)));
	assert_null(policy_check_port(&p, 20099, buf, sizeof(buf)));
	assert_null(policy_check_port(&p, 22022, buf, sizeof(buf)));
	assert_string_equal(policy_check_port(&p, 30000, buf, sizeof(buf)),
	    "port 30000 is outside alice's ports 20000-20099, 22022");
	assert_non_null(policy_check_port(&p, 20100, buf, sizeof(buf)));
	/* a short buffer cuts, never overruns */
	assert_string_equal(policy_check_port(&p, 1, buf, 10), "port 1 is");
	assert_string_equal(policy_format_ports(&p, buf, 8), "20000-2");
}

static void
test_hosts(void **state)
{
	struct conf_policy p;
	const char *err = NULL;
	char buf[300], pat[256];

	(void)state;
	assert_int_equal(policy_parse_subdomain("Alice-*", pat, &err), 0);
	assert_string_equal(pat, "alice-*");
	assert_int_equal(policy_parse_subdomain("a.b", pat, &err), -1);
	assert_int_equal(policy_parse_subdomain("a**", pat, &err), -1);
	assert_int_equal(policy_parse_subdomain("a_b", pat, &err), -1);
	assert_int_equal(policy_parse_subdomain("", pat, &err), -1);
	assert_int_equal(policy_parse_hostname("*.Alice.example.org", pat,
	    &err), 0);
	assert_string_equal(pat, "*.alice.example.org");
	assert_int_equal(policy_parse_hostname("foo.*.org", pat, &err), -1);
	assert_int_equal(policy_parse_hostname("*", pat, &err), -1);
	assert_int_equal(policy_parse_hostname("*.", pat, &err), -1);
	assert_int_equal(policy_parse_hostname("a..b", pat, &err), -1);
	assert_int_equal(policy_parse_hostname("a.b.", pat, &err), -1);
	assert_int_equal(policy_parse_hostname("*a.b", pat, &err), -1);

	/* * is one or more characters of one label */
	assert_true(policy_match_subdomain("alice-*", "alice-1"));
	assert_true(policy_match_subdomain("alice-*", "alice-web-2"));
	assert_false(policy_match_subdomain("alice-*", "alice-"));
	assert_false(policy_match_subdomain("alice-*", "alice"));
	assert_false(policy_match_subdomain("alice-*", "alice-x.evil"));
	assert_true(policy_match_subdomain("*-dev-*", "a-dev-b"));
	assert_false(policy_match_subdomain("*-dev-*", "-dev-b"));
	assert_true(policy_match_subdomain("demo", "demo"));
	assert_false(policy_match_subdomain("demo", "demo2"));
	assert_true(policy_match_subdomain("*", "x"));
	assert_false(policy_match_subdomain("*", ""));
	/* *. is one or more whole labels */
	assert_true(policy_match_hostname("*.alice.example.org",
	    "www.alice.example.org"));
	assert_true(policy_match_hostname("*.alice.example.org",
	    "a.b.alice.example.org"));
	assert_false(policy_match_hostname("*.alice.example.org",
	    "alice.example.org"));
	assert_false(policy_match_hostname("*.alice.example.org",
	    "evilalice.example.org"));
	assert_false(policy_match_hostname("*.alice.example.org",
	    ".alice.example.org"));
	assert_true(policy_match_hostname("www.example.org",
	    "www.example.org"));
	assert_false(policy_match_hostname("www.example.org",
	    "wwww.example.org"));

	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "alice");
	assert_null(policy_check_host(&p, "any", "any.example", buf,
	    sizeof(buf)));
	snprintf(p.subdomains[0], 64, "alice-*");
	snprintf(p.subdomains[1], 64, "demo");
	p.nsubdomains = 2;
	assert_null(policy_check_host(&p, "alice-web", NULL, buf, sizeof(buf)));
	assert_null(policy_check_host(&p, "DEMO", "", buf, sizeof(buf)));
	assert_null(policy_check_host(&p, NULL, NULL, buf, sizeof(buf)));
	assert_string_equal(policy_check_host(&p, "bob", NULL, buf,
	    sizeof(buf)), "subdomain \"bob\" does not match alice's "
	    "subdomains alice-*, demo");
	/* subdomains given, no hostnames: no custom domain */
	assert_string_equal(policy_check_host(&p, NULL, "x.example.org", buf,
	    sizeof(buf)), "hostname \"x.example.org\" is not allowed: alice "
	    "may only use subdomains");
	snprintf(p.hostnames[0], 256, "*.alice.example.org");
	p.nhostnames = 1;
	assert_null(policy_check_host(&p, NULL, "Www.Alice.example.org", buf,
	    sizeof(buf)));
	assert_string_equal(policy_check_host(&p, NULL, "bob.example.org",
	    buf, sizeof(buf)), "hostname \"bob.example.org\" does not match "
	    "alice's hostnames *.alice.example.org");
	p.nsubdomains = 0;
	assert_string_equal(policy_check_host(&p, "demo", NULL, buf,
	    sizeof(buf)), "subdomain \"demo\" is not allowed: alice may only "
	    "use hostnames");
}

static void
test_types(void **state)
{
	struct conf_policy p;
	const char *err = NULL;
	char buf[200];
	uint8_t t;

	(void)state;
	assert_int_equal(policy_parse_type("UDP", &t, &err), 0);
	assert_int_equal(t, PROXY_UDP);
	assert_int_equal(policy_parse_type("https", &t, &err), 0);
	assert_int_equal(t, PROXY_HTTPS);
	assert_int_equal(policy_parse_type("ftp", &t, &err), -1);
	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "alice");
	assert_null(policy_check_type(&p, PROXY_UDP, buf, sizeof(buf)));
	p.types = 1u << PROXY_TCP | 1u << PROXY_HTTP;
	assert_null(policy_check_type(&p, PROXY_TCP, buf, sizeof(buf)));
	assert_string_equal(policy_check_type(&p, PROXY_UDP, buf, sizeof(buf)),
	    "type udp is not among alice's types tcp, http");
	assert_non_null(policy_check_type(&p, 200, buf, sizeof(buf)));
}

static void
test_expires(void **state)
{
	struct conf_policy p;
	const char *err = NULL;
	char buf[200];
	int64_t t;

	(void)state;
	/* a date: to the end of that day, UTC */
	assert_int_equal(policy_parse_expires("2027-06-30", &t, &err), 0);
	assert_int_equal(t, 1814400000); /* 2027-07-01T00:00:00Z */
	assert_int_equal(policy_parse_expires("1970-01-01", &t, &err), 0);
	assert_int_equal(t, 86400);
	assert_int_equal(policy_parse_expires("2028-02-29", &t, &err), 0);
	assert_int_equal(policy_parse_expires("2027-02-29", &t, &err), -1);
	assert_string_equal(err, "no such date");
	assert_int_equal(policy_parse_expires("2027-13-01", &t, &err), -1);
	assert_int_equal(policy_parse_expires("2027-6-30", &t, &err), -1);
	assert_int_equal(policy_parse_expires("tomorrow", &t, &err), -1);
	assert_int_equal(policy_parse_expires("2027-06-30x", &t, &err), -1);
	/* RFC 3339 */
	assert_int_equal(policy_parse_expires("2027-06-30T18:00:00Z", &t,
	    &err), 0);
	assert_int_equal(t, 1814313600 + 18 * 3600);
	assert_int_equal(policy_parse_expires("2027-06-30T20:00:00.123+02:00",
	    &t, &err), 0);
	assert_int_equal(t, 1814313600 + 18 * 3600);
	assert_int_equal(policy_parse_expires("2027-06-30t13:00:00-05:00", &t,
	    &err), 0);
	assert_int_equal(t, 1814313600 + 18 * 3600);
	assert_int_equal(policy_parse_expires("2027-06-30T18:00:00", &t,
	    &err), -1);
	assert_int_equal(policy_parse_expires("2027-06-30T24:00:00Z", &t,
	    &err), -1);
	assert_int_equal(policy_parse_expires("2027-06-30T18:00:00+2:00", &t,
	    &err), -1);

	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "alice");
	assert_null(policy_expired(&p, 4000000000LL, buf, sizeof(buf)));
	assert_int_equal(policy_parse_expires("2027-06-30", &p.expires, &err),
	    0);
	snprintf(p.expires_text, sizeof(p.expires_text), "2027-06-30");
	assert_null(policy_expired(&p, p.expires - 1, buf, sizeof(buf)));
	assert_string_equal(policy_expired(&p, p.expires, buf, sizeof(buf)),
	    "token alice expired on 2027-06-30");
	p.is_cert = 1;
	snprintf(p.name, sizeof(p.name), "CN=edge-1");
	assert_string_equal(policy_expired(&p, p.expires + 5, buf,
	    sizeof(buf)), "certificate \"CN=edge-1\" expired on 2027-06-30");
}

static void
test_rates(void **state)
{
	const char *err = NULL;
	uint64_t v;

	(void)state;
	assert_int_equal(policy_parse_rate("10MB/s", 1, &v, &err), 0);
	assert_int_equal(v, 10000000);
	assert_int_equal(policy_parse_rate("10M/s", 1, &v, &err), 0);
	assert_int_equal(v, 10 << 20);
	assert_int_equal(policy_parse_rate("512KiB/s", 1, &v, &err), 0);
	assert_int_equal(v, 512 << 10);
	assert_int_equal(policy_parse_rate("1000/s", 1, &v, &err), 0);
	assert_int_equal(v, 1000);
	assert_int_equal(policy_parse_rate("10MB", 1, &v, &err), -1);
	assert_int_equal(policy_parse_rate("10XB/s", 1, &v, &err), -1);
	assert_int_equal(policy_parse_rate("/s", 1, &v, &err), -1);
	assert_int_equal(policy_parse_rate("50/s", 0, &v, &err), 0);
	assert_int_equal(v, 50);
	assert_int_equal(policy_parse_rate("50/m", 0, &v, &err), -1);
	assert_int_equal(policy_parse_rate("5K/s", 0, &v, &err), -1);
	assert_int_equal(policy_parse_rate("-5/s", 0, &v, &err), -1);
	assert_int_equal(policy_parse_rate("99999999999999999999/s", 0, &v,
	    &err), -1);
	assert_int_equal(policy_parse_rate("99999999999999999999/s", 1, &v,
	    &err), -1);
	assert_int_equal(policy_parse_rate("0/s", 0, &v, &err), 0);
	assert_int_equal(v, 0);
}

static void
sa4(struct sockaddr_storage *ss, const char *a)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	in->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, a, &in->sin_addr), 1);
}

static void
sa6(struct sockaddr_storage *ss, const char *a)
{
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	in6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, a, &in6->sin6_addr), 1);
}

static void
test_cidrs(void **state)
{
	struct conf_policy p;
	struct sockaddr_storage ss;
	const char *err = NULL;
	char buf[300];

	(void)state;
	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "alice");
	assert_int_equal(policy_parse_cidr("10.0.0.0/8", &p.cidrs[0], &err), 0);
	assert_int_equal(policy_parse_cidr("::1/128", &p.cidrs[1], &err), 0);
	assert_int_equal(policy_parse_cidr("127.0.0.1", &p.cidrs[2], &err), 0);
	assert_int_equal(p.cidrs[2].prefix, 32);
	p.ncidrs = 3;
	assert_int_equal(policy_parse_cidr("10.1.0.0/16", &p.deny_cidrs[0],
	    &err), 0);
	p.ndeny_cidrs = 1;
	assert_int_equal(policy_parse_cidr("10.0.0.1/8", &p.deny_cidrs[1],
	    &err), -1);
	assert_int_equal(policy_parse_cidr("10.0.0.0/33", &p.deny_cidrs[1],
	    &err), -1);
	assert_int_equal(policy_parse_cidr("example.org", &p.deny_cidrs[1],
	    &err), -1);
	assert_int_equal(policy_parse_cidr("[::1]/128", &p.deny_cidrs[1],
	    &err), -1);
	assert_int_equal(policy_parse_cidr("fd00::/8", &p.deny_cidrs[1],
	    &err), 0);
	assert_int_equal(policy_parse_cidr("fd00::1/8", &p.deny_cidrs[1],
	    &err), -1);

	sa4(&ss, "10.2.3.4");
	assert_null(policy_allows_addr(&p, (struct sockaddr *)&ss, buf,
	    sizeof(buf)));
	sa4(&ss, "127.0.0.1");
	assert_null(policy_allows_addr(&p, (struct sockaddr *)&ss, buf,
	    sizeof(buf)));
	sa6(&ss, "::1");
	assert_null(policy_allows_addr(&p, (struct sockaddr *)&ss, buf,
	    sizeof(buf)));
	/* IPv4-mapped IPv6 is read as IPv4 */
	sa6(&ss, "::ffff:10.9.9.9");
	assert_null(policy_allows_addr(&p, (struct sockaddr *)&ss, buf,
	    sizeof(buf)));
	sa6(&ss, "::ffff:10.1.2.3");
	assert_string_equal(policy_allows_addr(&p, (struct sockaddr *)&ss, buf,
	    sizeof(buf)), "address 10.1.2.3 is in alice's deny_cidrs "
	    "(10.1.0.0/16)");
	sa4(&ss, "127.0.0.2");
	assert_string_equal(policy_allows_addr(&p, (struct sockaddr *)&ss, buf,
	    sizeof(buf)), "address 127.0.0.2 is not in alice's cidrs "
	    "10.0.0.0/8, ::1/128, 127.0.0.1/32");
	sa6(&ss, "::2");
	assert_non_null(policy_allows_addr(&p, (struct sockaddr *)&ss, buf,
	    sizeof(buf)));
	/* deny alone: everyone else may */
	p.ncidrs = 0;
	sa4(&ss, "192.0.2.1");
	assert_null(policy_allows_addr(&p, (struct sockaddr *)&ss, buf,
	    sizeof(buf)));
	assert_null(policy_allows_addr(NULL, (struct sockaddr *)&ss, buf,
	    sizeof(buf)));
}

/* ------------------------------------------------------------ the file */

static char *
tmpfile_with(const char *text)
{
	static char path[64];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "/tmp/mgrok-test-policy-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int
load(const char *text, struct server_conf *c, struct conf_diag *d)
{
	char *path = tmpfile_with(text);
	char *argv[] = { "server", "--config", path, NULL };
	int rc;

	unsetenv("MGROK_TOKEN");
	conf_diag_init(d);
	rc = conf_server_load(c, 3, argv, d);
	unlink(path);
	return rc;
}

static const char good[] =
    "tokens:\n"
    "  - name: alice\n"
    "    secret: [old-secret, new-secret]\n"
    "    expires: 2027-06-30\n"
    "    allow:\n"
    "      ports: [20000-20099, 22022]\n"
    "      subdomains: [\"alice-*\", demo]\n"
    "      hostnames: [\"*.alice.example.org\"]\n"
    "      types: [tcp, http]\n"
    "      cidrs: [10.0.0.0/8, \"::1/128\"]\n"
    "      deny_cidrs: 10.1.0.0/16\n"
    "    limits:\n"
    "      tunnels: 5\n"
    "      visitors: 200\n"
    "      bandwidth: {in: 10MB/s, out: 1MiB/s}\n"
    "      new_connections: 50/s\n"
    "      http_requests: 100/s\n"
    "  - name: bob\n"
    "    secret: bob-secret\n"
    "  - plain-secret\n"
    "certs:\n"
    "  - subject: \"CN=edge-1\"\n"
    "    allow: {ports: 30000, types: tcp}\n"
    "    limits: {bandwidth: 2MB/s}\n";

static void
test_file_model(void **state)
{
	struct server_conf c;
	struct conf_diag d;
	const struct conf_policy *a, *e;
	char buf[200];

	(void)state;
	assert_int_equal(load(good, &c, &d), 0);
	assert_int_equal(d.nerrors, 0);
	/* two secrets of alice (rotation), bob's, an unnamed one */
	assert_int_equal(c.ntokens, 4);
	assert_string_equal(c.tokens[0], "old-secret");
	assert_string_equal(c.tokens[1], "new-secret");
	assert_string_equal(c.token_names[0], "alice");
	assert_string_equal(c.token_names[1], "alice");
	a = policy_for_token(&c, 0);
	assert_non_null(a);
	assert_ptr_equal(a, policy_for_token(&c, 1));
	assert_null(policy_for_token(&c, 2)); /* bob: unrestricted */
	assert_null(policy_for_token(&c, 3));
	assert_null(policy_for_token(&c, 9));
	assert_string_equal(a->name, "alice");
	assert_int_equal(a->expires, 1814400000);
	assert_string_equal(policy_format_ports(a, buf, sizeof(buf)),
	    "20000-20099, 22022");
	assert_int_equal(a->nsubdomains, 2);
	assert_int_equal(a->nhostnames, 1);
	assert_int_equal(a->types, 1u << PROXY_TCP | 1u << PROXY_HTTP);
	assert_int_equal(a->ncidrs, 2);
	assert_int_equal(a->ndeny_cidrs, 1);
	assert_int_equal(a->limits.tunnels, 5);
	assert_int_equal(a->limits.visitors, 200);
	assert_int_equal(a->limits.bw_in, 10000000);
	assert_int_equal(a->limits.bw_out, 1 << 20);
	assert_int_equal(a->limits.new_conns, 50);
	assert_int_equal(a->limits.http_requests, 100);
	e = policy_for_subject(&c, "CN=edge-1");
	assert_non_null(e);
	assert_true(e->is_cert);
	assert_int_equal(e->limits.bw_in, 2000000);
	assert_int_equal(e->limits.bw_out, 2000000);
	assert_string_equal(policy_check_port(e, 1, buf, sizeof(buf)),
	    "port 1 is outside CN=edge-1's ports 30000");
	assert_null(policy_for_subject(&c, "CN=edge-2"));
	conf_diag_free(&d);
	conf_server_free(&c);
	assert_int_equal(c.npolicies, 0);
	assert_null(c.policies);
}

/* one message of d contains want */
static void
has(struct conf_diag *d, const char *want)
{
	for (size_t i = 0; i < d->n; i++)
		if (strstr(d->v[i].text, want))
			return;
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "  %s\n", d->v[i].text);
	fail_msg("no message has \"%s\"", want);
}

static void
test_file_errors(void **state)
{
	struct server_conf c;
	struct conf_diag d;

	(void)state;
	assert_int_equal(load(
	    "tokens:\n"
	    "  - name: alice\n"
	    "    secret: s1\n"
	    "    expires: 2027-02-30\n"
	    "    allow:\n"
	    "      ports: [22, 20100-20000]\n"
	    "      prots: [1]\n"
	    "      types: []\n"
	    "    limits: {tunnels: 0, visitors: 2, bandwidth: 0/s,\n"
	    "             new_connection: 5/s}\n"
	    "  - name: alice\n"
	    "    secret: s2\n"
	    "  - name: carol\n"
	    "    secret: [a, b, c]\n"
	    "  - secret: x\n"
	    "    limits: {tunnels: 1}\n"
	    "  - name: dan\n"
	    "    secret_sha256: 9f86d0\n"
	    "    secret: d\n"
	    "certs:\n"
	    "  - subject: CN=e\n"
	    "  - {subject: CN=e}\n"
	    "  - limits: {tunnels: 1}\n", &c, &d), MG_EINVAL);
	has(&d, ":4:14: tokens[0].expires: \"2027-02-30\": no such date");
	has(&d, ":6:19: tokens[0].allow.ports: \"20100-20000\": the range "
	    "ends before it starts");
	has(&d, ":7:7: tokens[0].allow.prots: unknown key (did you mean "
	    "ports?)");
	has(&d, ":8:14: tokens[0].allow.types: an empty list would allow "
	    "nothing");
	has(&d, "tokens[0].limits.tunnels: \"0\": 0 would refuse every tunnel");
	has(&d, "tokens[0].limits.bandwidth: \"0/s\": 0 would stop all "
	    "traffic");
	has(&d, ":10:14: tokens[0].limits.new_connection: unknown key (did "
	    "you mean new_connections?)");
	has(&d, ":12:13: tokens[1].secret: two tokens have this name");
	has(&d, ":14:13: tokens[2].secret: expected one secret, or two");
	has(&d, ":15:5: tokens[3]: a token with expires, allow or limits "
	    "needs a name");
	has(&d, ":18:20: tokens[4].secret_sha256: expected the SHA-256 of "
	    "the secret as 64 hex digits");
	has(&d, ":22:15: certs[1]: \"CN=e\": this subject is listed twice "
	    "(first at line 21)");
	has(&d, ":23:5: certs[2]: a cert entry needs its subject");
	conf_diag_free(&d);
	conf_server_free(&c);

	/* certs in a client file, a typo of certs in a server file */
	conf_diag_init(&d);
	assert_int_equal(conf_check_buf("c.yml", "server: x:1\ncerts: []\n",
	    22, 0, &d), MG_EINVAL);
	has(&d, "c.yml:2:1: certs: unknown key (it belongs in a server file");
	conf_diag_free(&d);
	conf_diag_init(&d);
	assert_int_equal(conf_check_buf("s.yml", "tokens: [a]\ncert: []\n",
	    21, 1, &d), MG_EINVAL);
	has(&d, "s.yml:2:1: cert: unknown key (did you mean certs?)");
	conf_diag_free(&d);
}

/* a --token flag replaces the file's tokens and leaves no policy behind
 * on them */
static void
test_flag_replaces(void **state)
{
	struct server_conf c;
	struct conf_diag d;
	char *path = tmpfile_with(good);
	char *argv[] = { "server", "--config", path, "--token", "t", NULL };

	(void)state;
	conf_diag_init(&d);
	assert_int_equal(conf_server_load(&c, 5, argv, &d), 0);
	unlink(path);
	assert_int_equal(c.ntokens, 1);
	assert_null(policy_for_token(&c, 0));
	assert_non_null(policy_for_subject(&c, "CN=edge-1"));
	conf_diag_free(&d);
	conf_server_free(&c);
}

/* secret_sha256: alone, as a rotating pair, and mixed with a clear
 * secret (kept in the file's order, the first being the old one) */
static void
test_hashed_secrets(void **state)
{
	struct server_conf c;
	struct conf_diag d;
	uint8_t h[CONF_SHA256_LEN];

	(void)state;
	assert_int_equal(load(
	    "tokens:\n"
	    "  - name: hashed\n"
	    "    secret_sha256: b4d87524393b45e7793e23f192e6a85a10bae6fb2679e996a7acb8ca60b4c88d\n"
	    "    limits: {tunnels: 1}\n"
	    "  - name: mixed\n"
	    "    secret_sha256: 60a8476a0e58815b61bbcdcdb8db2c1ec1b4f339897f4af2a0401b4115f5d662\n"
	    "    secret: a-secret\n"
	    "  - {name: pair, secret_sha256: [b4d87524393b45e7793e23f192e6a85a10bae6fb2679e996a7acb8ca60b4c88d, 60a8476a0e58815b61bbcdcdb8db2c1ec1b4f339897f4af2a0401b4115f5d662]}\n", &c, &d), 0);
	assert_int_equal(c.ntokens, 5);
	assert_null(c.tokens[0]);
	assert_int_equal(conf_hex_sha256("b4d87524393b45e7793e23f192e6a85a10bae6fb2679e996a7acb8ca60b4c88d", h), 0);
	assert_memory_equal(c.token_sha256[0], h, sizeof(h));
	assert_non_null(policy_for_token(&c, 0));
	/* mixed: the hashed one comes first in the file */
	assert_null(c.tokens[1]);
	assert_string_equal(c.token_names[1], "mixed");
	assert_string_equal(c.tokens[2], "a-secret");
	assert_string_equal(c.token_names[2], "mixed");
	/* a clear secret has its hash too: the same as the hashed entry's */
	assert_memory_equal(c.token_sha256[2], c.token_sha256[0], sizeof(h));
	assert_null(c.tokens[3]);
	assert_null(c.tokens[4]);
	assert_string_equal(c.token_names[4], "pair");
	conf_diag_free(&d);
	conf_server_free(&c);

	assert_int_equal(load(
	    "tokens:\n"
	    "  - name: three\n"
	    "    secret: [a, b]\n"
	    "    secret_sha256: b4d87524393b45e7793e23f192e6a85a10bae6fb2679e996a7acb8ca60b4c88d\n"
	    "  - name: upper\n"
	    "    secret_sha256: B4D87524393B45E7793E23F192E6A85A10BAE6FB2679E996A7ACB8CA60B4C88D\n", &c, &d), MG_EINVAL);
	has(&d, ":2:5: tokens[0]: at most two secrets at once");
	assert_int_equal(d.nerrors, 1); /* upper case hex is fine */
	conf_diag_free(&d);
	conf_server_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_hosts),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_expires),
		cmocka_unit_test(test_rates),
		cmocka_unit_test(test_cidrs),
		cmocka_unit_test(test_file_model),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_hashed_secrets),
		cmocka_unit_test(test_flag_replaces),
	};

	setenv("MGROK_SERVER_CONFIG", "/nonexistent/mgrok-server.yml", 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
