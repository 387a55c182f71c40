/* test_rstore.c: the cluster store's URL parsing (each refusal and its
 * message), the route keys, the scripts' argv and the parsing of their
 * answers (hand-built hiredis replies); the store against a real Redis is
 * tests/e2e/test_rstore.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "cluster/routes.h"
#include "cluster/rstore.h"
#include "util/err.h"

static void
test_url_good(void **state)
{
	struct rstore_url u;
	char err[256];

	(void)state;
	assert_int_equal(
	    rstore_url_parse("redis://10.0.0.5:6380/2", &u, err, sizeof(err)),
	    0);
	assert_string_equal(u.host, "10.0.0.5");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 2);
	assert_string_equal(u.pass, "");
	assert_string_equal(u.user, "");

	/* defaults: port 6379, db 0 */
	assert_int_equal(
	    rstore_url_parse("redis://localhost", &u, err, sizeof(err)), 0);
	assert_string_equal(u.host, "localhost");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_int_equal(
	    rstore_url_parse("REDIS://h/", &u, err, sizeof(err)), 0);
	assert_int_equal(u.db, 0);

	/* a password alone, a user and a password, %-escapes, an @ inside */
	assert_int_equal(rstore_url_parse("redis://:s3cret@127.0.0.1:7000/15",
	                     &u, err, sizeof(err)),
	    0);
	assert_string_equal(u.pass, "s3cret");
	assert_string_equal(u.user, "");
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 7000);
	assert_int_equal(u.db, 15);
	assert_int_equal(rstore_url_parse("redis://bob:a%3Ab%40c@h:1/0", &u,
	                     err, sizeof(err)),
	    0);
	assert_string_equal(u.user, "bob");
	assert_string_equal(u.pass, "a:b@c");
	assert_int_equal(
	    rstore_url_parse("redis://:x@y@h:1", &u, err, sizeof(err)), 0);
	assert_string_equal(u.pass, "x@y");
	assert_string_equal(u.host, "h");

	/* IPv6 */
	assert_int_equal(
	    rstore_url_parse("redis://[::1]:6390/1", &u, err, sizeof(err)), 0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 6390);
	assert_int_equal(u.db, 1);
	assert_int_equal(
	    rstore_url_parse("redis://[fe80::1]", &u, err, sizeof(err)), 0);
	assert_int_equal(u.port, 6379);
}

static void
bad(const char *url, const char *msg)
{
	struct rstore_url u;
	char err[256];

	err[0] = '\0';
	assert_int_equal(
	    rstore_url_parse(url, &u, err, sizeof(err)), MG_EINVAL);
	if (strcmp(err, msg) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", url, err, msg);
}

static void
test_url_bad(void **state)
{
	(void)state;
	bad("", "redis URL is empty");
	bad("10.0.0.5:6379", "redis URL: no scheme (redis://HOST:PORT/DB)");
	bad("http://h:1/0",
	    "redis URL: the scheme must be redis:// (got \"http://\")");
	/* the password never shows in a message */
	bad("unix://:hunter2@h",
	    "redis URL: the scheme must be redis:// (got \"unix://\")");
	bad("rediss://h:6379", "redis URL: TLS (rediss://) is not supported");
	bad("redis://", "redis URL: no host");
	bad("redis://:6379/0", "redis URL: no host");
	bad("redis://h:0", "redis URL: bad port \"0\" (1-65535)");
	bad("redis://h:65536/0", "redis URL: bad port \"65536\" (1-65535)");
	bad("redis://h:http/0", "redis URL: bad port \"http\" (1-65535)");
	bad("redis://h:/0", "redis URL: bad port \"\" (1-65535)");
	bad("redis://h:-1", "redis URL: bad port \"-1\" (1-65535)");
	bad("redis://h:6379/x",
	    "redis URL: bad database number \"x\" (0-999999)");
	bad("redis://h:6379/-1",
	    "redis URL: bad database number \"-1\" (0-999999)");
	bad("redis://h:6379/1000000",
	    "redis URL: bad database number \"1000000\" (0-999999)");
	bad("redis://h/0?timeout=1",
	    "redis URL: bad database number \"0?timeout=1\" (0-999999)");
	bad("redis://secret@h", "redis URL: the user info must be "
	                        "[USER]:PASSWORD@");
	bad("redis://:@h", "redis URL: the password is empty");
	bad("redis://:a%zz@h", "redis URL: bad password (a bad %-escape, or "
	                       "too long)");
	bad("redis://:a%4@h", "redis URL: bad password (a bad %-escape, or "
	                      "too long)");
	bad("redis://:a%00b@h", "redis URL: bad password (a bad %-escape, or "
	                        "too long)");
	bad("redis://[::1:6379", "redis URL: missing ] after an IPv6 address");
	bad("redis://[::1]x:1", "redis URL: junk after the IPv6 address");
	bad("redis://h\x01st:1", "redis URL: bad host \"h\\x01st\"");
	bad("redis://a b:1", "redis URL: bad host \"a b\"");
}

static void
test_new_bad_url(void **state)
{
	struct event_base *base = event_base_new();
	char err[256] = "";

	(void)state;
	assert_null(
	    rstore_new(base, "redis://h:99999", NULL, err, sizeof(err)));
	assert_string_equal(err, "redis URL: bad port \"99999\" (1-65535)");
	rstore_free(NULL);
	event_base_free(base);
}

/* nothing to connect to (a closed port): rstore_free answers nothing,
 * runs no hook, frees everything (ASan's leak check) */
static int downs;

static void
count_down(void *arg, const char *reason)
{
	(void)arg;
	(void)reason;
	downs++;
}

static void
test_new_free(void **state)
{
	struct event_base *base = event_base_new();
	struct rstore_hooks h = {NULL, count_down, NULL};
	struct rstore_stats st;
	struct rstore *r;
	char err[256];
	struct timeval tv = {0, 300000};

	(void)state;
	r = rstore_new(base, "redis://127.0.0.1:1/0", &h, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(rstore_is_up(r), 0);
	assert_int_equal(rstore_cmd(r, NULL, NULL, "PING"), MG_ECLOSED);
	rstore_script_add(r, "return 1");
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_true(downs >= 1); /* connection refused, told */
	rstore_stats(r, &st);
	assert_int_equal(st.up, 0);
	assert_int_equal(st.in_flight, 0);
	rstore_free(r);
	event_base_free(base);
}

static void
test_keys(void **state)
{
	char k[ROUTES_KEY_MAX];
	char name[300];

	(void)state;
	assert_int_equal(routes_key(ROUTE_TCP, "8080", k, sizeof(k)),
	    (int)strlen("mgrok:route:tcp:8080"));
	assert_string_equal(k, "mgrok:route:tcp:8080");
	assert_true(routes_key(ROUTE_HOST, "shop.tunnel.example.com", k,
	                sizeof(k)) > 0);
	assert_string_equal(k, "mgrok:route:host:shop.tunnel.example.com");
	assert_true(routes_key(ROUTE_UDP, "5353", k, sizeof(k)) > 0);
	assert_string_equal(k, "mgrok:route:udp:5353");
	assert_int_equal(routes_key(ROUTE_TCP, "", k, sizeof(k)), MG_EINVAL);
	assert_int_equal(routes_key(ROUTE_TCP, "a b", k, sizeof(k)), MG_EINVAL);
	assert_int_equal(
	    routes_key((enum route_kind)9, "a", k, sizeof(k)), MG_EINVAL);
	assert_int_equal(routes_key(ROUTE_TCP, "8080", k, 10), MG_ENOSPC);
	memset(name, 'a', 255);
	name[255] = '\0';
	assert_true(routes_key(ROUTE_HOST, name, k, sizeof(k)) > 0);
	name[255] = 'a';
	name[256] = '\0';
	assert_int_equal(routes_key(ROUTE_HOST, name, k, sizeof(k)), MG_EINVAL);

	assert_true(routes_id_ok("node-1.eu:a_b"));
	assert_false(routes_id_ok(""));
	assert_false(routes_id_ok("a b"));
	assert_false(routes_id_ok("a\nb"));
	memset(name, 'n', 64);
	name[64] = '\0';
	assert_false(routes_id_ok(name));
	name[63] = '\0';
	assert_true(routes_id_ok(name));
}

static void
test_argv(void **state)
{
	struct routes_argv a;

	(void)state;
	assert_int_equal(
	    routes_claim_argv(&a, "mgrok:route:tcp:8080", "n1", "s1", 30000),
	    0);
	assert_int_equal(a.nkeys, 2);
	assert_int_equal(a.argc, 6);
	assert_string_equal(a.argv[0], "mgrok:route:tcp:8080");
	assert_string_equal(a.argv[1], ROUTES_EPOCH_KEY);
	assert_string_equal(a.argv[2], "n1");
	assert_string_equal(a.argv[3], "s1");
	assert_string_equal(a.argv[4], "30000");
	assert_string_equal(a.argv[5], ROUTES_CHANNEL);
	assert_int_equal(a.len[4], 5);
	assert_int_equal(
	    routes_claim_argv(&a, "mgrok:route:tcp:8080", "n 1", "s1", 1),
	    MG_EINVAL);
	assert_int_equal(
	    routes_claim_argv(&a, "mgrok:route:tcp:8080", "n1", "s1", 0),
	    MG_EINVAL);
	assert_int_equal(
	    routes_claim_argv(&a, "other:key", "n1", "s1", 1), MG_EINVAL);

	assert_int_equal(routes_refresh_argv(&a, "mgrok:route:host:x", "n1",
	                     18446744073709551615ull, 5000),
	    0);
	assert_int_equal(a.nkeys, 1);
	assert_int_equal(a.argc, 4);
	assert_string_equal(a.argv[2], "18446744073709551615");
	assert_string_equal(a.argv[3], "5000");

	assert_int_equal(
	    routes_release_argv(&a, "mgrok:route:udp:53", "n2", 7), 0);
	assert_int_equal(a.argc, 4);
	assert_string_equal(a.argv[1], "n2");
	assert_string_equal(a.argv[2], "7");
	assert_string_equal(a.argv[3], ROUTES_CHANNEL);

	assert_int_equal(
	    routes_node_argv(&a, "n1", "10.0.0.11:9100", 12, 5, 1700000000,
	        15000),
	    0);
	assert_int_equal(a.nkeys, 1);
	assert_int_equal(a.argc, 7);
	assert_string_equal(a.argv[0], "mgrok:node:n1");
	assert_string_equal(a.argv[1], "10.0.0.11:9100");
	assert_string_equal(a.argv[2], "12"); /* load: the sessions */
	assert_string_equal(a.argv[3], "1700000000");
	assert_string_equal(a.argv[4], "15000");
	assert_string_equal(a.argv[5], "12"); /* sessions */
	assert_string_equal(a.argv[6], "5");  /* tunnels */
	assert_int_equal(a.len[5], 2);
	assert_int_equal(routes_node_argv(&a, "", "a", 1, 1, 1, 1), MG_EINVAL);
	assert_int_equal(
	    routes_node_argv(&a, "n1", "", 1, 1, 1, 1), MG_EINVAL);
	assert_int_equal(
	    routes_node_argv(&a, "n1", "a:1", 1, 1, 1, 0), MG_EINVAL);
}

/* hand-built hiredis answers */
static redisReply *
r_int(long long v)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_INTEGER;
	r->integer = v;
	return r;
}

static redisReply *
r_str(const char *s)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = REDIS_REPLY_STRING;
	r->str = strdup(s);
	r->len = strlen(s);
	return r;
}

static redisReply *
r_arr(size_t n, ...)
{
	redisReply *r = calloc(1, sizeof(*r));
	va_list ap;

	r->type = REDIS_REPLY_ARRAY;
	r->elements = n;
	r->element = calloc(n ? n : 1, sizeof(*r->element));
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

static void
test_claim_parse(void **state)
{
	struct route_claim c;
	redisReply *r;
	char longid[80];

	(void)state;
	r = r_arr(2, r_int(1), r_int(42));
	assert_int_equal(routes_claim_parse(r, &c), 0);
	assert_int_equal(c.ok, 1);
	assert_int_equal(c.epoch, 42);
	freeReplyObject(r);

	r = r_arr(4, r_int(0), r_str("node-2"), r_str("sess-9"), r_int(41));
	assert_int_equal(routes_claim_parse(r, &c), 0);
	assert_int_equal(c.ok, 0);
	assert_int_equal(c.epoch, 41);
	assert_string_equal(c.node, "node-2");
	assert_string_equal(c.session, "sess-9");
	freeReplyObject(r);

	/* shapes that are not a claim's answer */
	assert_int_equal(routes_claim_parse(NULL, &c), MG_EPROTO);
	r = r_int(1);
	assert_int_equal(routes_claim_parse(r, &c), MG_EPROTO);
	freeReplyObject(r);
	r = r_arr(1, r_int(1));
	assert_int_equal(routes_claim_parse(r, &c), MG_EPROTO);
	freeReplyObject(r);
	r = r_arr(2, r_int(1), r_str("42"));
	assert_int_equal(routes_claim_parse(r, &c), MG_EPROTO);
	freeReplyObject(r);
	r = r_arr(2, r_int(1), r_int(0));
	assert_int_equal(routes_claim_parse(r, &c), MG_EPROTO);
	freeReplyObject(r);
	r = r_arr(3, r_int(0), r_str("n"), r_str("s"));
	assert_int_equal(routes_claim_parse(r, &c), MG_EPROTO);
	freeReplyObject(r);
	r = r_arr(4, r_int(2), r_str("n"), r_str("s"), r_int(1));
	assert_int_equal(routes_claim_parse(r, &c), MG_EPROTO);
	freeReplyObject(r);
	memset(longid, 'x', 64);
	longid[64] = '\0';
	r = r_arr(4, r_int(0), r_str(longid), r_str("s"), r_int(1));
	assert_int_equal(routes_claim_parse(r, &c), MG_EPROTO);
	assert_string_equal(c.node, "");
	freeReplyObject(r);
	r = r_arr(4, r_int(0), r_int(5), r_str("s"), r_int(1));
	assert_int_equal(routes_claim_parse(r, &c), MG_EPROTO);
	freeReplyObject(r);
}

static void
test_bool_parse(void **state)
{
	redisReply *r;

	(void)state;
	r = r_int(1);
	assert_int_equal(routes_bool_parse(r), 1);
	freeReplyObject(r);
	r = r_int(0);
	assert_int_equal(routes_bool_parse(r), 0);
	freeReplyObject(r);
	r = r_int(2);
	assert_int_equal(routes_bool_parse(r), MG_EPROTO);
	freeReplyObject(r);
	r = r_str("1");
	assert_int_equal(routes_bool_parse(r), MG_EPROTO);
	freeReplyObject(r);
	assert_int_equal(routes_bool_parse(NULL), MG_EPROTO);
}

/* the scripts name only their KEYS (a Redis Cluster could route them) and
 * publish on the channel passed in */
static void
test_scripts_text(void **state)
{
	(void)state;
	assert_non_null(strstr(routes_lua_claim, "INCR', KEYS[2]"));
	assert_non_null(strstr(routes_lua_claim, "PUBLISH', ARGV[4]"));
	assert_null(strstr(routes_lua_claim, "mgrok:"));
	assert_null(strstr(routes_lua_refresh, "mgrok:"));
	assert_null(strstr(routes_lua_release, "mgrok:"));
	assert_null(strstr(routes_lua_node, "mgrok:"));
	assert_non_null(strstr(routes_lua_node, "'sessions', ARGV[5]"));
	assert_non_null(strstr(routes_lua_node, "'tunnels', ARGV[6]"));
	assert_non_null(strstr(routes_lua_node, "PEXPIRE', KEYS[1], ARGV[4]"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_url_good),
	    cmocka_unit_test(test_url_bad),
	    cmocka_unit_test(test_new_bad_url),
	    cmocka_unit_test(test_new_free),
	    cmocka_unit_test(test_keys),
	    cmocka_unit_test(test_argv),
	    cmocka_unit_test(test_claim_parse),
	    cmocka_unit_test(test_bool_parse),
	    cmocka_unit_test(test_scripts_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
