/* test_ratelim.c: token buckets over simulated time (accuracy, reloads,
 * huge rates, still and 1 us clocks, exact waits), the keyed limiter
 * (limits, refill, bounded memory, eviction that forgets nothing, reloads)
 * rate parsing, and shapers (chained buckets: rates, sharing, waits,
 * refunds, retuning, references). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/err.h"
#include "util/ratelim.h"

#define SEC 1000000ULL

static uint64_t rng = 88172645463325252ULL;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* a greedy sender at 1 MB/s for 5 s, irregular steps (0 to 2 ms): it
 * moves exactly the rate's 5 MB plus the burst it started with (a bucket
 * left full loses what would overflow it: the sender starts at once) */
static void
test_bucket_accuracy(void **state)
{
	struct tbucket b;
	uint64_t t = 1000, moved = 0, burst = 65536;

	(void)state;
	tbucket_init(&b, 1000000, burst, t);
	moved = tbucket_take(&b, t, 1 << 20);
	while (t < 1000 + 5 * SEC) {
		uint64_t step = rnd() % 2001;

		if (t + step > 1000 + 5 * SEC)
			step = 1000 + 5 * SEC - t;
		t += step;
		moved += tbucket_take(&b, t, 1 << 20);
	}
	assert_int_equal(moved, 5000000 + burst);

	/* a sender pacing itself by tbucket_wait_us in 16 KiB chunks */
	tbucket_init(&b, 1000000, burst, 0);
	t = 0;
	moved = 0;
	while (moved < 5000000) {
		uint64_t n = tbucket_take(&b, t, 16384);

		moved += n;
		if (n < 16384)
			t += tbucket_wait_us(&b, t, 16384 - n);
	}
	/* the first burst was free, the rest came at the rate */
	assert_true(t >= (5000000 - burst) - 1);
	assert_true(t <= 5000000 - burst + 16384 + 1);

	/* a slow visitor (1 byte every 10 ms) is never held up */
	tbucket_init(&b, 1000000, burst, 0);
	for (t = 0; t < SEC; t += 10000)
		assert_int_equal(tbucket_take(&b, t, 1), 1);
}

/* sub-unit rates over 1 us steps and a still clock: no drift */
static void
test_bucket_tiny_steps(void **state)
{
	struct tbucket b;
	uint64_t t, moved = 0;

	(void)state;
	/* (burst 2: taking 1 whenever there is 1, the bucket never fills
	 * and loses nothing) */
	tbucket_init(&b, 7, 2, 0);
	for (t = 0; t <= 10 * SEC; t++)
		moved += tbucket_take(&b, t, 1);
	assert_int_equal(moved, 2 + 70);

	/* the clock does not move: nothing comes */
	tbucket_init(&b, 1000000, 10, 5);
	assert_int_equal(tbucket_take(&b, 5, 100), 10);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(tbucket_take(&b, 5, 100), 0);
	/* 1 us at 1 MB/s is 1 byte */
	assert_int_equal(tbucket_take(&b, 6, 100), 1);
	/* a clock going back counts as still */
	assert_int_equal(tbucket_take(&b, 3, 100), 0);
	assert_int_equal(tbucket_take(&b, 7, 100), 1);

	/* 3 units/s taken 1 us at a time for 1 s */
	tbucket_init(&b, 3, 2, 0);
	moved = tbucket_take(&b, 0, 5);
	for (t = 1; t <= SEC; t++)
		moved += tbucket_take(&b, t, 5);
	assert_int_equal(moved, 2 + 3);
}

/* 100 Gbit/s and the largest values: long gaps do not overflow */
static void
test_bucket_big(void **state)
{
	struct tbucket b;
	uint64_t r = 12500000000ULL, t; /* 100 Gbit/s in bytes */

	(void)state;
	tbucket_init(&b, r, r, 0);
	assert_int_equal(tbucket_take(&b, 0, UINT64_MAX), r);
	assert_int_equal(tbucket_take(&b, SEC / 2, UINT64_MAX), r / 2);
	/* 30 years idle: full, not wrapped */
	t = SEC / 2 + 30ULL * 365 * 86400 * SEC;
	assert_int_equal(tbucket_peek(&b, t), r);
	assert_int_equal(tbucket_take(&b, UINT64_MAX, UINT64_MAX), r);
	assert_int_equal(tbucket_take(&b, UINT64_MAX, 1), 0);

	/* clamped to the largest rate and burst */
	tbucket_init(&b, UINT64_MAX, UINT64_MAX, 0);
	assert_int_equal(b.rate, TBUCKET_MAX_RATE);
	assert_int_equal(b.burst, TBUCKET_MAX_BURST);
	assert_int_equal(tbucket_take(&b, 0, UINT64_MAX), TBUCKET_MAX_BURST);
	assert_int_equal(tbucket_take(&b, 1, UINT64_MAX), TBUCKET_MAX_RATE /
	    SEC);
	assert_int_equal(tbucket_wait_us(&b, 1, UINT64_MAX), 10 * SEC);
	assert_int_equal(tbucket_peek(&b, UINT64_MAX), TBUCKET_MAX_BURST);
	for (t = 2; t < 1000; t += 7)
		assert_true(tbucket_take(&b, UINT64_MAX - 1000 + t, 1) <= 1);

	/* rate 0: unlimited */
	tbucket_init(&b, 0, 0, 0);
	assert_int_equal(tbucket_take(&b, 0, UINT64_MAX), UINT64_MAX);
	assert_int_equal(tbucket_wait_us(&b, 0, 1000), 0);
	assert_int_equal(tbucket_peek(&b, 0), UINT64_MAX);

	/* burst 0: a tenth of the rate, at least 1 */
	tbucket_init(&b, 1000, 0, 0);
	assert_int_equal(b.burst, 100);
	tbucket_init(&b, 5, 0, 0);
	assert_int_equal(b.burst, 1);
}

/* a reload lowers the rate mid-way: the rest goes at the new rate */
static void
test_bucket_set_rate(void **state)
{
	struct tbucket b;
	uint64_t t, moved = 0;

	(void)state;
	tbucket_init(&b, 1000000, 100000, 0);
	for (t = 0; t <= 2 * SEC; t += 1000)
		moved += tbucket_take(&b, t, 1 << 30);
	assert_int_equal(moved, 100000 + 2000000);
	tbucket_set_rate(&b, 100000, 10000, t - 1000);
	for (; t <= 5 * SEC; t += 1000)
		moved += tbucket_take(&b, t, 1 << 30);
	assert_int_equal(moved, 100000 + 2000000 + 300000);

	/* tokens kept, capped at the new burst */
	tbucket_init(&b, 1000, 1000, 0);
	tbucket_set_rate(&b, 10, 5, 0);
	assert_int_equal(tbucket_peek(&b, 0), 5);
	tbucket_init(&b, 1000, 1000, 0);
	assert_int_equal(tbucket_take(&b, 0, 997), 997);
	tbucket_set_rate(&b, 2000, 2000, 0);
	assert_int_equal(tbucket_peek(&b, 0), 3);
	/* what came at the old rate before the reload stays */
	tbucket_set_rate(&b, 1, 2000, 500000);
	assert_int_equal(tbucket_peek(&b, 500000), 3 + 1000);
	/* from unlimited: full */
	tbucket_init(&b, 0, 0, 0);
	tbucket_set_rate(&b, 100, 50, 7);
	assert_int_equal(tbucket_take(&b, 7, 1000), 50);
	/* to unlimited */
	tbucket_set_rate(&b, 0, 0, 7);
	assert_int_equal(tbucket_take(&b, 7, 1000), 1000);

	/* refund */
	tbucket_init(&b, 100, 50, 0);
	assert_int_equal(tbucket_take(&b, 0, 50), 50);
	tbucket_refund(&b, 20);
	assert_int_equal(tbucket_peek(&b, 0), 20);
	tbucket_refund(&b, UINT64_MAX);
	assert_int_equal(tbucket_peek(&b, 0), 50);
}

/* wait_us is the smallest wait after which take gives what was asked */
static void
test_bucket_wait_exact(void **state)
{
	static const uint64_t rates[] = { 1, 3, 7, 1000, 999983, 1000000,
		12500000000ULL };

	(void)state;
	for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]); k++)
		for (int i = 0; i < 300; i++) {
			struct tbucket b, c;
			uint64_t burst = 1 + rnd() % 100000, t = rnd() % SEC;
			uint64_t want, w;

			tbucket_init(&b, rates[k], burst, t);
			tbucket_take(&b, t, rnd() % (burst + 1));
			t += rnd() % 1000;
			want = rnd() % (burst + 10);
			w = tbucket_wait_us(&b, t, want);
			if (want > burst)
				want = burst;
			c = b;
			assert_int_equal(tbucket_take(&c, t + w, want), want);
			if (w > 0) {
				c = b;
				assert_true(tbucket_take(&c, t + w - 1, want) <
				    want);
			}
		}
}

/* a token's bucket shared by three tunnels, each taking one slice per
 * wakeup in the loop's turn (a served user goes to the back, as libevent
 * runs ready events in order): together they get the token's rate, each
 * is held to its own, and the others share the rest about equally */
static void
test_bucket_shared(void **state)
{
	struct tbucket tok, tun[3];
	uint64_t got[3] = { 0 }, t, d;
	int q[3] = { 0, 1, 2 };

	(void)state;
	tbucket_init(&tok, 1000000, 50000, 0);
	for (int i = 0; i < 3; i++)
		tbucket_init(&tun[i], i == 0 ? 100000 : 0, 10000, 0);
	for (t = 0; t <= 4 * SEC; t += 1000) {
		int nq[3], served[3], nn = 0, ns = 0;

		for (int j = 0; j < 3; j++) {
			int i = q[j];
			uint64_t n = tbucket_peek(&tun[i], t);

			if (n > 16384)
				n = 16384;
			n = tbucket_take(&tok, t, n);
			tbucket_take(&tun[i], t, n);
			got[i] += n;
			if (n > 0)
				served[ns++] = i;
			else
				nq[nn++] = i;
		}
		for (int j = 0; j < ns; j++)
			nq[nn++] = served[j];
		memcpy(q, nq, sizeof(q));
	}
	assert_int_equal(got[0] + got[1] + got[2], 50000 + 4000000);
	/* tunnel 0 is held to its own 100 KB/s (and its burst) */
	assert_true(got[0] >= 400000 && got[0] <= 410000);
	/* about equally: the turns are not exact (here 1.62 MB and 2.02 MB
	 * of the 3.64 MB, as tunnel 0's turn takes from the one after it) */
	d = got[1] > got[2] ? got[1] - got[2] : got[2] - got[1];
	assert_true(got[1] > 1500000 && got[2] > 1500000);
	assert_true(d < 3640000 / 5);
}

static void
test_keyed_basic(void **state)
{
	struct ratelim *rl = ratelim_new(10, 10, 100);
	uint8_t a[4] = { 127, 0, 0, 1 }, b[16] = { 0 };
	uint64_t ra = 99;
	int i;

	(void)state;
	for (i = 0; i < 10; i++) {
		assert_int_equal(ratelim_allow(rl, a, 4, 0, &ra), 1);
		assert_int_equal(ra, 0);
	}
	assert_int_equal(ratelim_allow(rl, a, 4, 0, &ra), 0);
	assert_int_equal(ra, 100);
	assert_int_equal(ratelim_allow(rl, a, 4, 40000, &ra), 0);
	assert_int_equal(ra, 60);
	assert_int_equal(ratelim_allow(rl, a, 4, 99999, &ra), 0);
	assert_int_equal(ra, 1);
	/* another key is not held */
	b[15] = 1;
	assert_int_equal(ratelim_allow(rl, b, 16, 0, NULL), 1);
	/* a prefix makes another key */
	assert_int_equal(ratelim_allow(rl, b, 15, 0, NULL), 1);
	/* refill */
	assert_int_equal(ratelim_allow(rl, a, 4, 100000, &ra), 1);
	assert_int_equal(ratelim_allow(rl, a, 4, 100000, &ra), 0);
	for (i = 0; i < 10; i++)
		assert_int_equal(ratelim_allow(rl, a, 4, 2 * SEC, NULL), 1);
	assert_int_equal(ratelim_allow(rl, a, 4, 2 * SEC, NULL), 0);
	/* bad keys */
	assert_int_equal(ratelim_allow(rl, a, 0, 0, NULL), MG_EINVAL);
	assert_int_equal(ratelim_allow(rl, b, RATELIM_KEY_MAX + 1, 0, NULL),
	    MG_EINVAL);
	ratelim_free(rl);
	ratelim_free(NULL);
}

/* 1e6 distinct keys through a table of 1000: memory stays bounded */
static void
test_keyed_bound(void **state)
{
	struct ratelim *rl = ratelim_new(10, 5, 1000);
	struct ratelim_stats st;
	uint8_t k[16] = { 0x20, 0x01 };
	size_t bytes = 0;
	uint64_t t = 0;

	(void)state;
	for (uint32_t i = 0; i < 1000000; i++) {
		memcpy(k + 12, &i, 4);
		t += 1000; /* 1 ms: the oldest of 1000 keys has refilled */
		assert_int_equal(ratelim_allow(rl, k, 16, t, NULL), 1);
		if (i == 1000) {
			ratelim_stats(rl, &st);
			bytes = st.bytes;
		}
	}
	ratelim_stats(rl, &st);
	assert_int_equal(st.keys, 1000);
	assert_int_equal(st.slots, 1000);
	assert_int_equal(st.bytes, bytes);
	assert_int_equal(st.evicted, 1000000 - 1000);
	assert_int_equal(st.overflow, 0);
	ratelim_free(rl);
}

/* a flood of 1e6 new keys in 10 s cannot push out a busy key to reset
 * it (only refilled keys are evicted); the newcomers that find no room
 * share one overflow bucket; memory stays at 1000 keys */
static void
test_keyed_hostile(void **state)
{
	struct ratelim *rl = ratelim_new(10, 5, 1000);
	struct ratelim_stats st;
	uint8_t x[4] = { 10, 0, 0, 1 }, k[16] = { 0xfe, 0x80 };
	uint64_t ra, flood = 0, xs = 0, t = 0;
	int i;

	(void)state;
	for (i = 0; i < 5; i++)
		assert_int_equal(ratelim_allow(rl, x, 4, 0, NULL), 1);
	assert_int_equal(ratelim_allow(rl, x, 4, 0, &ra), 0);
	for (uint32_t j = 0; j < 1000000; j++) {
		t = 1000 + (uint64_t)j * 10;
		memcpy(k + 12, &j, 4);
		flood += ratelim_allow(rl, k, 16, t, NULL);
		if (j % 100 == 0)
			xs += ratelim_allow(rl, x, 4, t, NULL);
	}
	/* x got its rate over the 10 s, never a fresh burst */
	assert_true(xs >= 99 && xs <= 101);
	ratelim_stats(rl, &st);
	assert_int_equal(st.keys, 1000);
	assert_int_equal(st.slots, 1000);
	assert_true(st.overflow > 800000);
	/* new keys get in as fast as old ones refill: about 1000 per
	 * 100 ms, plus the overflow's 10/s */
	assert_true(flood < 110000);
	/* the flood stops; a second later a new key finds room */
	memcpy(k + 12, "new!", 4);
	assert_int_equal(ratelim_allow(rl, k, 16, t + SEC, NULL), 1);
	ratelim_stats(rl, &st);
	assert_int_equal(st.keys, 1000);
	ratelim_free(rl);
}

static void
test_keyed_set(void **state)
{
	struct ratelim *rl = ratelim_new(10, 10, 100);
	uint8_t a[4] = { 127, 0, 0, 2 };
	uint64_t ra;
	int i;

	(void)state;
	for (i = 0; i < 8; i++)
		assert_int_equal(ratelim_allow(rl, a, 4, 0, NULL), 1);
	/* lowered: 2 left, capped at the new burst of 1 */
	ratelim_set(rl, 1, 1, 0);
	assert_int_equal(ratelim_allow(rl, a, 4, 0, NULL), 1);
	assert_int_equal(ratelim_allow(rl, a, 4, 0, &ra), 0);
	assert_int_equal(ra, 1000);
	/* unlimited */
	ratelim_set(rl, 0, 0, 10);
	for (i = 0; i < 1000; i++)
		assert_int_equal(ratelim_allow(rl, a, 4, 10, &ra), 1);
	/* limited again: full buckets */
	ratelim_set(rl, 2, 2, 20);
	assert_int_equal(ratelim_allow(rl, a, 4, 20, NULL), 1);
	assert_int_equal(ratelim_allow(rl, a, 4, 20, NULL), 1);
	assert_int_equal(ratelim_allow(rl, a, 4, 20, &ra), 0);
	assert_int_equal(ra, 500);
	/* raised: the new rate refills */
	ratelim_set(rl, 1000, 1000, 20);
	assert_int_equal(ratelim_allow(rl, a, 4, 1020, NULL), 1);
	assert_int_equal(ratelim_allow(rl, a, 4, 1020, &ra), 0);
	assert_int_equal(ra, 1);
	ratelim_free(rl);
}

static void
ok_rate(const char *s, uint64_t want)
{
	uint64_t v = 0;
	const char *why = "x";

	if (ratelim_parse_rate(s, &v, &why) != 0)
		fail_msg("%s: %s", s, why);
	assert_null(why);
	if (v != want)
		fail_msg("%s: %llu, not %llu", s, (unsigned long long)v,
		    (unsigned long long)want);
}

static void
bad_rate(const char *s, const char *why_part)
{
	uint64_t v = 12345;
	const char *why = NULL;

	if (ratelim_parse_rate(s, &v, &why) != MG_EINVAL)
		fail_msg("%s accepted", s);
	assert_int_equal(v, 12345);
	assert_non_null(why);
	if (strstr(why, why_part) == NULL)
		fail_msg("%s: '%s' lacks '%s'", s, why, why_part);
}

static void
test_parse(void **state)
{
	uint64_t v;
	const char *why;

	(void)state;
	ok_rate("50/s", 50);
	ok_rate("600/min", 10);
	ok_rate("1/s", 1);
	ok_rate("60/min", 1);
	ok_rate("10MB/s", 10000000);
	ok_rate("10 MB/s", 10000000);
	ok_rate("5MiB/s", 5 << 20);
	ok_rate("5M/s", 5 << 20);
	ok_rate("64K/s", 65536);
	ok_rate("64KiB/s", 65536);
	ok_rate("64KB/s", 64000);
	ok_rate("64kB/s", 64000);
	ok_rate("1GB/s", 1000000000);
	ok_rate("1G/s", 1ULL << 30);
	ok_rate("1GiB/s", 1ULL << 30);
	ok_rate("100B/s", 100);
	ok_rate("1.5MB/s", 1500000);
	ok_rate("0.5KB/s", 500);
	ok_rate("100Gbit/s", 12500000000ULL);
	ok_rate("1Gbit/s", 125000000);
	ok_rate("10Mbit/s", 1250000);
	ok_rate("8bit/s", 1);
	ok_rate("100kbit/s", 12500);
	ok_rate("1GB/min", 16666667);     /* rounded: large enough */
	ok_rate("6001/min", 100);         /* 100.0167 */
	ok_rate("1000000000000/s", TBUCKET_MAX_RATE);

	bad_rate("", "expected a rate such as 10MB/s or 50/s");
	bad_rate("fast", "expected a rate such as 10MB/s or 50/s");
	bad_rate("-5/s", "expected a rate such as");
	bad_rate("1./s", "expected a rate such as");
	bad_rate("10MB", "unit of time, /s or /min");
	bad_rate("50", "unit of time, /s or /min");
	bad_rate("10MB/h", "unit of time is /s or /min");
	bad_rate("10MB/s ", "unit of time is /s or /min");
	bad_rate("10XB/s", "unknown unit");
	bad_rate("10mb/s", "unknown unit");
	bad_rate("0/s", "at least 1/s");
	bad_rate("0.0MB/s", "at least 1/s");
	bad_rate("1.5/s", "whole number per second");
	bad_rate("50/min", "whole number per second");
	bad_rate("4bit/s", "whole number per second");
	bad_rate("1000000000001/s", "above 1e12");
	bad_rate("9Tbit/s", "unknown unit");
	bad_rate("10000Gbit/s", "above 1e12");
	bad_rate("9999999999999999999999/s", "above 1e12");
	bad_rate("1.0000000001MB/s", "9 digits");

	/* counts only */
	assert_int_equal(ratelim_parse_count("50/s", &v, &why), 0);
	assert_int_equal(v, 50);
	assert_int_equal(ratelim_parse_count("120/min", &v, NULL), 0);
	assert_int_equal(v, 2);
	assert_int_equal(ratelim_parse_count("50B/s", &v, &why), MG_EINVAL);
	assert_non_null(strstr(why, "count such as 50/s"));
	assert_int_equal(ratelim_parse_count("5MB/s", &v, &why), MG_EINVAL);
	assert_non_null(strstr(why, "without a unit"));
	assert_int_equal(ratelim_parse_count("5x/s", &v, &why), MG_EINVAL);
	assert_non_null(strstr(why, "without a unit"));
	assert_int_equal(ratelim_parse_rate("nope", &v, NULL), MG_EINVAL);
}

/* ---- shaper ---- */

/* unlimited both ways: every take is granted whole, no clock needed */
static void
test_shaper_unlimited(void **state)
{
	struct shaper *s = shaper_new(NULL);

	(void)state;
	assert_int_equal(shaper_limited(s, SHAPER_IN), 0);
	assert_int_equal(shaper_limited(s, SHAPER_OUT), 0);
	assert_int_equal(shaper_limited(NULL, SHAPER_IN), 0);
	assert_int_equal(shaper_take(s, SHAPER_IN, 0, 1 << 30), 1 << 30);
	assert_int_equal(shaper_wait_us(s, SHAPER_IN, 0, 1 << 30), 0);
	assert_int_equal(shaper_effective(s, SHAPER_OUT), 0);
	/* one direction limited, the other not */
	shaper_set_rate(s, SHAPER_OUT, 1000000, 0);
	assert_int_equal(shaper_limited(s, SHAPER_OUT), 1);
	assert_int_equal(shaper_limited(s, SHAPER_IN), 0);
	assert_int_equal(shaper_take(s, SHAPER_IN, 0, 5000000), 5000000);
	/* the burst: a tenth of a second */
	assert_int_equal(shaper_take(s, SHAPER_OUT, 0, 5000000), 100000);
	assert_int_equal(shaper_take(s, SHAPER_OUT, 0, 1), 0);
	shaper_unref(s);
}

/* a greedy reader through a shaper for 5 s moves the rate (plus the
 * burst it started with), through the lower of the child's and the
 * parent's rates; the minimum burst applies to low rates */
static void
test_shaper_chain_rate(void **state)
{
	struct shaper *tok = shaper_new(NULL), *tun = shaper_new(tok);
	uint64_t t = 0, moved = 0;

	(void)state;
	shaper_set_rate(tun, SHAPER_IN, 1000000, 0);
	shaper_set_rate(tok, SHAPER_IN, 500000, 0);
	assert_int_equal(shaper_effective(tun, SHAPER_IN), 500000);
	assert_int_equal(shaper_effective(tok, SHAPER_IN), 500000);
	assert_ptr_equal(shaper_parent(tun), tok);
	while (t <= 5 * SEC) {
		moved += shaper_take(tun, SHAPER_IN, t, 65536);
		t += rnd() % 3000;
	}
	/* 5 s x 500 kB/s + the token's burst (50 kB) */
	assert_true(moved >= 2500000 + 50000 - 65536);
	assert_true(moved <= 2500000 + 50000 + 500);
	/* a low rate still has a 16 KiB burst */
	shaper_set_rate(tok, SHAPER_IN, 1000, t);
	shaper_set_rate(tun, SHAPER_IN, 0, t);
	assert_int_equal(shaper_effective(tun, SHAPER_IN), 1000);
	t += 100 * SEC;
	assert_int_equal(shaper_take(tun, SHAPER_IN, t, 1 << 20),
	    SHAPER_MIN_BURST);
	shaper_unref(tun);
	shaper_unref(tok);
}

/* two tunnels of one token share its bucket: together they get the
 * token's rate; each alone is held to its own */
static void
test_shaper_shared(void **state)
{
	struct shaper *tok = shaper_new(NULL);
	struct shaper *a = shaper_new(tok), *b = shaper_new(tok);
	uint64_t t = 0, ma = 0, mb = 0;

	(void)state;
	shaper_set_rate(tok, SHAPER_OUT, 2000000, 0);
	shaper_set_rate(a, SHAPER_OUT, 500000, 0);
	while (t <= 10 * SEC) {
		ma += shaper_take(a, SHAPER_OUT, t, 16384);
		mb += shaper_take(b, SHAPER_OUT, t, 16384);
		t += 1000 + rnd() % 1000;
	}
	/* a: its own 500 kB/s; b: the rest of the token's 2 MB/s */
	assert_true(ma >= 5000000 && ma <= 5000000 + 50000 + 16384);
	assert_true(ma + mb >= 20000000 && ma + mb <= 20000000 + 200000 +
	    32768);
	shaper_unref(a);
	shaper_unref(b);
	shaper_unref(tok);
}

/* the wait is exact: after it, the bytes are there; a refund reaches
 * both buckets */
static void
test_shaper_wait_refund(void **state)
{
	struct shaper *tok = shaper_new(NULL), *tun = shaper_new(tok);
	uint64_t t = 1000, w;

	(void)state;
	shaper_set_rate(tun, SHAPER_OUT, 1000000, t);
	shaper_set_rate(tok, SHAPER_OUT, 200000, t);
	/* drain both (the token's burst is 20 kB: less than the tunnel's) */
	assert_int_equal(shaper_take(tun, SHAPER_OUT, t, 1 << 20), 20000);
	assert_int_equal(shaper_take(tun, SHAPER_OUT, t, 1), 0);
	/* the token's bucket decides: 16384 bytes at 200 kB/s */
	w = shaper_wait_us(tun, SHAPER_OUT, t, 16384);
	assert_int_equal(w, (16384 * SEC + 199999) / 200000);
	assert_int_equal(shaper_take(tun, SHAPER_OUT, t + w - 1, 16384),
	    16383);
	shaper_refund(tun, SHAPER_OUT, 16383);
	assert_int_equal(shaper_take(tun, SHAPER_OUT, t + w, 16384), 16384);
	/* a refund of bytes not moved is there at once, in both */
	shaper_refund(tun, SHAPER_OUT, 1000);
	assert_int_equal(shaper_wait_us(tun, SHAPER_OUT, t + w, 1000), 0);
	assert_int_equal(shaper_take(tun, SHAPER_OUT, t + w, 5000), 1000);
	shaper_unref(tun);
	shaper_unref(tok);
}

/* a reload retunes the shared object: a holder sees the new rate at
 * once; the parent lives while a child holds it */
static void
test_shaper_retune_and_refs(void **state)
{
	struct shaper *tok = shaper_new(NULL), *tun = shaper_new(tok);
	struct shaper *conn = shaper_ref(tun);
	uint64_t t = 0, moved = 0;

	(void)state;
	shaper_set_rate(tok, SHAPER_OUT, 4000000, 0);
	for (; t < 2 * SEC; t += 1000)
		moved += shaper_take(conn, SHAPER_OUT, t, 65536);
	assert_true(moved >= 8000000 && moved <= 8000000 + 400000 + 65536);
	/* the tunnel and the token's entry go; the connection stays */
	shaper_unref(tun);
	shaper_set_rate(tok, SHAPER_OUT, 1000000, t);
	shaper_unref(tok);
	shaper_set_rate(tok, SHAPER_OUT, 1000000, t); /* no change */
	moved = 0;
	for (uint64_t end = t + 2 * SEC; t < end; t += 1000)
		moved += shaper_take(conn, SHAPER_OUT, t, 65536);
	/* what it had gathered (capped at the new 100 kB burst) + 2 MB */
	assert_true(moved >= 2000000 - 65536 && moved <= 2000000 + 100000);
	assert_int_equal(shaper_effective(conn, SHAPER_OUT), 1000000);
	shaper_unref(conn); /* frees it and the token's */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_accuracy),
		cmocka_unit_test(test_bucket_tiny_steps),
		cmocka_unit_test(test_bucket_big),
		cmocka_unit_test(test_bucket_set_rate),
		cmocka_unit_test(test_bucket_wait_exact),
		cmocka_unit_test(test_bucket_shared),
		cmocka_unit_test(test_keyed_basic),
		cmocka_unit_test(test_keyed_bound),
		cmocka_unit_test(test_keyed_hostile),
		cmocka_unit_test(test_keyed_set),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_shaper_unlimited),
		cmocka_unit_test(test_shaper_chain_rate),
		cmocka_unit_test(test_shaper_shared),
		cmocka_unit_test(test_shaper_wait_refund),
		cmocka_unit_test(test_shaper_retune_and_refs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
