/* test_lb.c: the group strategies: weighted round robin gives exact shares
 * spread evenly, least_conn follows the open connections, the hashes keep
 * a key on its member and move only a leaving member's keys, weights
 * shape the hashed shares; parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/lb.h"

static void
members(struct lb_member *m, size_t n, const unsigned *w)
{
	memset(m, 0, n * sizeof(*m));
	for (size_t i = 0; i < n; i++) {
		m[i].ident = lb_hash(&i, sizeof(i), 1);
		m[i].weight = w[i];
		m[i].usable = 1;
	}
}

static void
test_round_robin(void **state)
{
	struct lb_member m[3];
	unsigned w[3] = { 1, 2, 3 }, got[3] = { 0 };
	int last = -1, run = 0, maxrun = 0;

	(void)state;
	members(m, 3, w);
	for (int i = 0; i < 600; i++) {
		int k = lb_pick(LB_ROUND_ROBIN, m, 3, NULL, 0);
		assert_true(k >= 0 && k < 3);
		got[k]++;
		run = k == last ? run + 1 : 1;
		maxrun = run > maxrun ? run : maxrun;
		last = k;
	}
	/* exact shares, and smooth: never three in a row */
	assert_int_equal(got[0], 100);
	assert_int_equal(got[1], 200);
	assert_int_equal(got[2], 300);
	assert_true(maxrun <= 2);
	/* an unusable member gets none; the others share its part */
	m[2].usable = 0;
	memset(got, 0, sizeof(got));
	for (int i = 0; i < 300; i++)
		got[lb_pick(LB_ROUND_ROBIN, m, 3, NULL, 0)]++;
	assert_int_equal(got[2], 0);
	assert_int_equal(got[0], 100);
	assert_int_equal(got[1], 200);
	m[0].usable = m[1].usable = 0;
	assert_int_equal(lb_pick(LB_ROUND_ROBIN, m, 3, NULL, 0), -1);
	assert_int_equal(lb_pick(LB_LEAST_CONN, m, 3, NULL, 0), -1);
	assert_int_equal(lb_pick(LB_HASH_SOURCE, m, 3, "k", 1), -1);
}

static void
test_least_conn(void **state)
{
	struct lb_member m[3];
	unsigned w[3] = { 1, 1, 2 }, got[3] = { 0 };

	(void)state;
	members(m, 3, w);
	m[0].active = 5;
	m[1].active = 1;
	m[2].active = 4; /* 4/2 = 2 > 1/1 */
	assert_int_equal(lb_pick(LB_LEAST_CONN, m, 3, NULL, 0), 1);
	m[1].active = 2; /* 2/1 == 4/2: a tie, taken in turn by weight */
	for (int i = 0; i < 30; i++)
		got[lb_pick(LB_LEAST_CONN, m, 3, NULL, 0)]++;
	assert_int_equal(got[0], 0);
	assert_int_equal(got[1], 10);
	assert_int_equal(got[2], 20);
	/* a simulated load: each pick opens one, so they stay level */
	memset(m, 0, sizeof(m));
	members(m, 3, w);
	for (int i = 0; i < 400; i++)
		m[lb_pick(LB_LEAST_CONN, m, 3, NULL, 0)].active++;
	assert_int_equal(m[0].active, 100);
	assert_int_equal(m[1].active, 100);
	assert_int_equal(m[2].active, 200);
}

static void
test_hash(void **state)
{
	struct lb_member m[3];
	unsigned w[3] = { 1, 1, 1 }, got[3] = { 0 };
	int first[1000];
	char key[32];

	(void)state;
	members(m, 3, w);
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(key, sizeof(key), "10.0.%d.%d", i / 256,
		    i % 256);
		first[i] = lb_pick(LB_HASH_SOURCE, m, 3, key, (size_t)n);
		/* the same key, the same member */
		assert_int_equal(lb_pick(LB_HASH_SOURCE, m, 3, key, (size_t)n),
		    first[i]);
		got[first[i]]++;
	}
	/* about a third each */
	for (int k = 0; k < 3; k++)
		assert_true(got[k] > 270 && got[k] < 400);
	/* member 1 leaves: only its keys move */
	m[1].usable = 0;
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(key, sizeof(key), "10.0.%d.%d", i / 256,
		    i % 256);
		int k = lb_pick(LB_HASH_SOURCE, m, 3, key, (size_t)n);
		assert_true(k != 1);
		if (first[i] != 1)
			assert_int_equal(k, first[i]);
	}
	/* weights shape the shares: 1:3 */
	m[1].usable = 1;
	m[2].usable = 0;
	m[0].weight = 1;
	m[1].weight = 3;
	memset(got, 0, sizeof(got));
	for (int i = 0; i < 4000; i++) {
		int n = snprintf(key, sizeof(key), "host-%d", i);
		got[lb_pick(LB_HASH_HOST, m, 3, key, (size_t)n)]++;
	}
	assert_true(got[0] > 850 && got[0] < 1150);
	assert_true(got[1] > 2850 && got[1] < 3150);
	/* no key: round robin */
	memset(got, 0, sizeof(got));
	for (int i = 0; i < 40; i++)
		got[lb_pick(LB_HASH_HEADER, m, 3, NULL, 0)]++;
	assert_int_equal(got[0], 10);
	assert_int_equal(got[1], 30);
}

static void
test_parse(void **state)
{
	enum lb_strategy st;
	char h[LB_HEADER_MAX], buf[100];
	const char *err;

	(void)state;
	assert_int_equal(lb_parse_strategy("", 0, &st, h, &err), 0);
	assert_int_equal(st, LB_ROUND_ROBIN);
	assert_int_equal(lb_parse_strategy("least_conn", 10, &st, h, &err), 0);
	assert_int_equal(st, LB_LEAST_CONN);
	assert_int_equal(lb_parse_strategy("hash:source_ip", 14, &st, h, &err),
	    0);
	assert_int_equal(st, LB_HASH_SOURCE);
	assert_int_equal(lb_parse_strategy("hash:header:X-User", 18, &st, h,
	    &err), 0);
	assert_int_equal(st, LB_HASH_HEADER);
	assert_string_equal(h, "x-user");
	assert_string_equal(lb_strategy_str(st, h, buf, sizeof(buf)),
	    "hash:header:x-user");
	assert_int_equal(lb_parse_strategy("hash:header:", 12, &st, h, &err),
	    -1);
	assert_int_equal(lb_parse_strategy("hash:header:a b", 15, &st, h,
	    &err), -1);
	assert_int_equal(lb_parse_strategy("random", 6, &st, h, &err), -1);
	assert_non_null(strstr(err, "round_robin"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_robin),
		cmocka_unit_test(test_least_conn),
		cmocka_unit_test(test_hash),
		cmocka_unit_test(test_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
