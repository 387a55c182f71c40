/* test_counts.c: the cluster-wide counts' pure parts: the key of an
 * identity (any bytes, hashed), the script's argv, the parsing of its
 * answer (hand-built hiredis replies); and the node's part on a store
 * that is down: a check costs nothing, says "never read, store down",
 * the collect hook is called and untracked identities ignored,
 * everything freed (ASan's leak check). Against a
 * real Redis: tests/e2e/test_cluster_counts.py. */
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

#include "cluster/counts.h"
#include "cluster/rstore.h"
#include "util/err.h"

static void
test_key(void **state)
{
	char k[COUNTS_KEY_MAX];

	(void)state;
	assert_int_equal(counts_key("alice", k, sizeof(k)),
	    (int)strlen("mgrok:count:") + 64);
	assert_string_equal(k, "mgrok:count:2bd806c97f0e00af1a1fc3328fa763a9"
			       "269723c8db8fac4f93af71db186d6e90");
	/* any bytes: spaces, a newline, a byte past ASCII; the key is the
	 * same hex either way */
	assert_int_equal(counts_key("cert:CN=a b,O=\xff\n", k, sizeof(k)),
	    (int)sizeof(k) - 1);
	assert_string_equal(k, "mgrok:count:9efc2e71120bb6642f256938fa392cbd"
			       "543aa240f2ebd0ef3714fd19c0000571");
	assert_int_equal(counts_key("", k, sizeof(k)), MG_EINVAL);
	assert_int_equal(counts_key(NULL, k, sizeof(k)), MG_EINVAL);
	assert_int_equal(counts_key("alice", k, sizeof(k) - 1), MG_ENOSPC);
}

static void
test_argv(void **state)
{
	struct counts_argv a;
	struct counts_fig f = { 2, 17 };
	char k[COUNTS_KEY_MAX];

	(void)state;
	counts_key("alice", k, sizeof(k));
	assert_int_equal(counts_write_argv(&a, k, "n1:9100", &f, 6000), 0);
	assert_int_equal(a.nkeys, 1);
	assert_int_equal(a.argc, 5);
	assert_string_equal(a.argv[0], k);
	assert_string_equal(a.argv[1], "n1:9100");
	assert_string_equal(a.argv[2], "2");
	assert_string_equal(a.argv[3], "17");
	assert_string_equal(a.argv[4], "6000");
	for (int i = 0; i < a.argc; i++)
		assert_int_equal(a.len[i], strlen(a.argv[i]));
	/* the key is a copy */
	k[13] = 'x';
	assert_string_not_equal(a.argv[0], k);

	counts_key("alice", k, sizeof(k));
	/* refusals: a key not of counts_key, a bad node id, a bad ttl */
	assert_int_equal(counts_write_argv(&a, "mgrok:count:alice", "n1", &f,
	                     6000),
	    MG_EINVAL);
	assert_int_equal(counts_write_argv(&a, "mgrok:route:tcp:1", "n1", &f,
	                     6000),
	    MG_EINVAL);
	assert_int_equal(counts_write_argv(&a, NULL, "n1", &f, 6000),
	    MG_EINVAL);
	assert_int_equal(counts_write_argv(&a, k, "n 1", &f, 6000), MG_EINVAL);
	assert_int_equal(counts_write_argv(&a, k, "", &f, 6000), MG_EINVAL);
	assert_int_equal(counts_write_argv(&a, k, "n1", NULL, 6000),
	    MG_EINVAL);
	assert_int_equal(counts_write_argv(&a, k, "n1", &f, 0), MG_EINVAL);
	assert_int_equal(counts_write_argv(&a, k, "n1", &f,
	                     ((uint64_t)1 << 40) + 1),
	    MG_EINVAL);
	k[20] = 'G'; /* not hex */
	assert_int_equal(counts_write_argv(&a, k, "n1", &f, 6000), MG_EINVAL);
}

/* the script names only its KEYS, and splits a field at its last ':' (a
 * node id may hold ':') */
static void
test_script_text(void **state)
{
	(void)state;
	assert_null(strstr(counts_lua_write, "mgrok:"));
	assert_non_null(strstr(counts_lua_write, "'^(.*):(%a+)$'"));
	assert_non_null(strstr(counts_lua_write, "PEXPIRE', KEYS[1]"));
	assert_non_null(strstr(counts_lua_write, "node ~= me"));
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
r_str(int type, const char *s)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = type;
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
parse_bad(redisReply *r)
{
	struct counts_fig f = { 9, 9 };

	assert_int_equal(counts_parse(r, &f), MG_EPROTO);
	assert_int_equal(f.tunnels, 0);
	assert_int_equal(f.visitors, 0);
	if (r)
		freeReplyObject(r);
}

static void
test_parse(void **state)
{
	struct counts_fig f;
	redisReply *r;

	(void)state;
	r = r_arr(2, r_int(3), r_int(120));
	assert_int_equal(counts_parse(r, &f), 0);
	assert_int_equal(f.tunnels, 3);
	assert_int_equal(f.visitors, 120);
	freeReplyObject(r);
	r = r_arr(2, r_int(0), r_int(0));
	assert_int_equal(counts_parse(r, &f), 0);
	assert_int_equal(f.tunnels + f.visitors, 0);
	freeReplyObject(r);

	parse_bad(NULL);
	parse_bad(r_int(1));
	parse_bad(r_str(REDIS_REPLY_ERROR, "NOSCRIPT No matching script"));
	parse_bad(r_arr(0));
	parse_bad(r_arr(1, r_int(1)));
	parse_bad(r_arr(3, r_int(1), r_int(2), r_int(3)));
	parse_bad(r_arr(2, r_int(-1), r_int(2)));
	parse_bad(r_arr(2, r_int(1), r_int(-2)));
	parse_bad(r_arr(2, r_str(REDIS_REPLY_STRING, "1"), r_int(2)));
	parse_bad(r_arr(2, r_int(1), r_arr(0)));
}

/* the node's part with nothing to connect to */
static int collects;

static void
collect(void *arg, struct counts *c)
{
	(void)arg;
	collects++;
	counts_local(c, "alice", 1, 4);
	counts_local(c, "alice", 1, 1);
	counts_local(c, "nobody", 1, 1); /* not tracked: ignored */
}

static void
test_node_store_down(void **state)
{
	struct event_base *base = event_base_new();
	struct counts_hooks h = { collect, NULL, NULL };
	struct counts_fig o = { 7, 7 };
	struct counts_stats st;
	struct rstore *r;
	struct counts *c;
	char err[256];
	struct timeval tv = { 0, 350000 };

	(void)state;
	r = rstore_new(base, "redis://127.0.0.1:1/0", NULL, err, sizeof(err));
	assert_non_null(r);
	assert_null(counts_new(base, r, "bad id", 2000, 6000, &h));
	assert_null(counts_new(base, r, "n1", 0, 6000, &h));
	assert_null(counts_new(base, r, "n1", 2000, 0, &h));
	c = counts_new(base, r, "n1", 2000, 6000, &h);
	assert_non_null(c);

	/* nothing tracked: no tick, no collect */
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(collects, 0);

	/* a check: never read, the store is down: zero, and now tracked */
	assert_int_equal(counts_others(c, "alice", &o), 0);
	assert_int_equal(o.tunnels + o.visitors, 0);
	counts_track(c, "alice");
	counts_track(c, "");
	counts_stats(c, &st);
	assert_int_equal(st.identities, 1);
	/* ticks call the hook (one at once, then every 100 ms) */
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_true(collects >= 3);
	counts_stats(c, &st);
	assert_int_equal(st.identities, 1); /* "nobody" was not added */
	assert_int_equal(st.writes, 0);
	assert_int_equal(counts_others(c, "alice", &o), 0);
	/* no read can go out: nothing to wait for */
	assert_int_equal(counts_reading(c, "alice"), 0);
	assert_int_equal(counts_reading(c, "bob"), 0);
	assert_int_equal(counts_reading(NULL, "alice"), 0);
	counts_free(c);
	counts_free(NULL);
	rstore_free(r);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key),
	    cmocka_unit_test(test_argv),
	    cmocka_unit_test(test_script_text),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_node_store_down),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
