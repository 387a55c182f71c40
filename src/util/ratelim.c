/*
 * ratelim.c: token buckets in exact integer arithmetic, a keyed table of
 * them (a seeded hash with chains, an LRU list, eviction only of refilled
 * buckets), shapers (two chained buckets per direction, refcounted), and
 * rate parsing. See docs/internals/ratelim.md.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util/crypto.h"
#include "util/err.h"
#include "util/ratelim.h"
#include "util/xmalloc.h"

#define US 1000000ULL /* the level's fraction of a unit, microseconds/s */

/* ---- token bucket ---- */

static uint64_t
clamp_rate(uint64_t r)
{
	return r > TBUCKET_MAX_RATE ? TBUCKET_MAX_RATE : r;
}

static uint64_t
clamp_burst(uint64_t rate, uint64_t burst)
{
	if (burst == 0)
		burst = rate / 10;
	if (burst == 0)
		burst = 1;
	return burst > TBUCKET_MAX_BURST ? TBUCKET_MAX_BURST : burst;
}

/*
 * The level at now: level + rate x dt, capped at burst x 1e6. No product
 * overflows: cap <= 1e13 x 1e6 = 1e19 < 2^64, and rate x dt is computed
 * only when dt <= need / rate, so it is <= need <= cap.
 */
static uint64_t
level_at(const struct tbucket *b, uint64_t now_us)
{
	uint64_t cap = b->burst * US, need, dt;

	if (b->level >= cap)
		return cap;
	if (now_us <= b->last_us)
		return b->level;
	dt = now_us - b->last_us;
	need = cap - b->level;
	if (dt > need / b->rate)
		return cap;
	return b->level + dt * b->rate;
}

static void
settle(struct tbucket *b, uint64_t now_us)
{
	b->level = level_at(b, now_us);
	if (now_us > b->last_us)
		b->last_us = now_us;
}

void
tbucket_init(struct tbucket *b, uint64_t rate_per_s, uint64_t burst,
    uint64_t now_us)
{
	b->rate = clamp_rate(rate_per_s);
	b->burst = clamp_burst(b->rate, burst);
	b->level = b->burst * US;
	b->last_us = now_us;
}

void
tbucket_set_rate(struct tbucket *b, uint64_t rate_per_s, uint64_t burst,
    uint64_t now_us)
{
	uint64_t rate = clamp_rate(rate_per_s), cap;

	if (b->rate == 0) {
		tbucket_init(b, rate, burst, now_us);
		return;
	}
	settle(b, now_us);
	b->rate = rate;
	b->burst = clamp_burst(rate, burst);
	cap = b->burst * US;
	if (b->level > cap)
		b->level = cap;
}

uint64_t
tbucket_take(struct tbucket *b, uint64_t now_us, uint64_t want)
{
	uint64_t avail;

	if (b->rate == 0)
		return want;
	settle(b, now_us);
	avail = b->level / US;
	if (want > avail)
		want = avail;
	b->level -= want * US;
	return want;
}

uint64_t
tbucket_peek(const struct tbucket *b, uint64_t now_us)
{
	if (b->rate == 0)
		return UINT64_MAX;
	return level_at(b, now_us) / US;
}

void
tbucket_refund(struct tbucket *b, uint64_t n)
{
	uint64_t cap = b->burst * US;

	if (b->rate == 0)
		return;
	if (n >= b->burst || b->level + n * US >= cap)
		b->level = cap;
	else
		b->level += n * US;
}

uint64_t
tbucket_wait_us(const struct tbucket *b, uint64_t now_us, uint64_t want)
{
	uint64_t lvl, need;

	if (b->rate == 0 || want == 0)
		return 0;
	if (want > b->burst)
		want = b->burst;
	need = want * US;
	lvl = level_at(b, now_us);
	if (lvl >= need)
		return 0;
	return (need - lvl + b->rate - 1) / b->rate;
}

/* ---- shaper ---- */

struct shaper {
	struct tbucket b[2];    /* by enum shaper_dir */
	struct shaper *parent;
	unsigned refs;
};

struct shaper *
shaper_new(struct shaper *parent)
{
	struct shaper *s = xcalloc(1, sizeof(*s));

	tbucket_init(&s->b[SHAPER_IN], 0, 0, 0);
	tbucket_init(&s->b[SHAPER_OUT], 0, 0, 0);
	s->parent = shaper_ref(parent);
	s->refs = 1;
	return s;
}

struct shaper *
shaper_ref(struct shaper *s)
{
	if (s != NULL)
		s->refs++;
	return s;
}

void
shaper_unref(struct shaper *s)
{
	if (s == NULL || --s->refs > 0)
		return;
	shaper_unref(s->parent);
	free(s);
}

struct shaper *
shaper_parent(const struct shaper *s)
{
	return s->parent;
}

void
shaper_set_rate(struct shaper *s, enum shaper_dir dir, uint64_t rate,
    uint64_t now_us)
{
	uint64_t burst = rate / 10;

	if (rate > TBUCKET_MAX_RATE)
		rate = TBUCKET_MAX_RATE;
	if (s->b[dir].rate == rate)
		return;
	if (burst < SHAPER_MIN_BURST)
		burst = SHAPER_MIN_BURST;
	tbucket_set_rate(&s->b[dir], rate, burst, now_us);
}

uint64_t
shaper_rate(const struct shaper *s, enum shaper_dir dir)
{
	return s->b[dir].rate;
}

uint64_t
shaper_effective(const struct shaper *s, enum shaper_dir dir)
{
	uint64_t a = s->b[dir].rate, p = s->parent ? s->parent->b[dir].rate :
	    0;

	if (a == 0 || (p != 0 && p < a))
		return p;
	return a;
}

int
shaper_limited(const struct shaper *s, enum shaper_dir dir)
{
	return s != NULL && (s->b[dir].rate != 0 ||
	    (s->parent != NULL && s->parent->b[dir].rate != 0));
}

size_t
shaper_take(struct shaper *s, enum shaper_dir dir, uint64_t now_us,
    size_t want)
{
	uint64_t g = tbucket_take(&s->b[dir], now_us, want), g2;

	if (s->parent != NULL && g > 0) {
		g2 = tbucket_take(&s->parent->b[dir], now_us, g);
		if (g2 < g)
			tbucket_refund(&s->b[dir], g - g2);
		g = g2;
	}
	return (size_t)g;
}

void
shaper_refund(struct shaper *s, enum shaper_dir dir, size_t n)
{
	if (n == 0)
		return;
	tbucket_refund(&s->b[dir], n);
	if (s->parent != NULL)
		tbucket_refund(&s->parent->b[dir], n);
}

uint64_t
shaper_wait_us(const struct shaper *s, enum shaper_dir dir, uint64_t now_us,
    size_t want)
{
	uint64_t w = tbucket_wait_us(&s->b[dir], now_us, want), w2;

	if (s->parent != NULL) {
		w2 = tbucket_wait_us(&s->parent->b[dir], now_us, want);
		if (w2 > w)
			w = w2;
	}
	return w;
}

/* ---- keyed limiter ---- */

#define NIL UINT32_MAX
#define RL_MAX_KEYS ((size_t)1 << 26)

struct rl_ent {
	uint64_t level;   /* as in struct tbucket */
	uint64_t last_us;
	uint32_t prev;    /* LRU list: towards the most recent */
	uint32_t next;    /* towards the least recent */
	uint32_t hnext;   /* hash chain */
	uint32_t hash;
	uint8_t keylen;
	uint8_t key[RATELIM_KEY_MAX];
};

struct ratelim {
	struct tbucket conf;     /* rate and burst of every key */
	struct tbucket overflow; /* keys that found no room */
	uint64_t k0, k1;         /* the hash's secret key */
	struct rl_ent *ent;      /* ent[0..count) live */
	size_t count, nent, max_keys;
	uint32_t *heads;         /* chains, NIL-terminated */
	size_t nheads;           /* power of two >= nent */
	uint32_t mru, lru;
	uint64_t evicted, overflowed;
};

/* SipHash-1-3 (Aumasson and Bernstein), written from the paper: keys are
 * source addresses a peer may choose, so the table's hash is keyed. */
#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND() do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

static uint64_t
siphash13(uint64_t k0, uint64_t k1, const uint8_t *p, size_t n)
{
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
	uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
	uint64_t v3 = k1 ^ 0x7465646279746573ULL;
	uint64_t m, b = (uint64_t)n << 56;
	size_t i, j;

	for (i = 0; i + 8 <= n; i += 8) {
		m = 0;
		for (j = 0; j < 8; j++)
			m |= (uint64_t)p[i + j] << (8 * j);
		v3 ^= m;
		SIPROUND();
		v0 ^= m;
	}
	for (j = 0; i + j < n; j++)
		b |= (uint64_t)p[i + j] << (8 * j);
	v3 ^= b;
	SIPROUND();
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND();
	SIPROUND();
	SIPROUND();
	return v0 ^ v1 ^ v2 ^ v3;
}

static void
lru_unlink(struct ratelim *rl, uint32_t i)
{
	struct rl_ent *e = &rl->ent[i];

	if (e->prev != NIL)
		rl->ent[e->prev].next = e->next;
	else
		rl->mru = e->next;
	if (e->next != NIL)
		rl->ent[e->next].prev = e->prev;
	else
		rl->lru = e->prev;
}

static void
lru_push(struct ratelim *rl, uint32_t i)
{
	struct rl_ent *e = &rl->ent[i];

	e->prev = NIL;
	e->next = rl->mru;
	if (rl->mru != NIL)
		rl->ent[rl->mru].prev = i;
	else
		rl->lru = i;
	rl->mru = i;
}

static void
chain_add(struct ratelim *rl, uint32_t i)
{
	uint32_t *h = &rl->heads[rl->ent[i].hash & (rl->nheads - 1)];

	rl->ent[i].hnext = *h;
	*h = i;
}

static void
chain_del(struct ratelim *rl, uint32_t i)
{
	uint32_t *p = &rl->heads[rl->ent[i].hash & (rl->nheads - 1)];

	while (*p != i)
		p = &rl->ent[*p].hnext;
	*p = rl->ent[i].hnext;
}

/* more entries (doubling, up to max_keys), the chains rebuilt */
static void
rl_grow(struct ratelim *rl)
{
	size_t n = rl->nent ? rl->nent * 2 : 16, nh;

	if (n > rl->max_keys)
		n = rl->max_keys;
	rl->ent = xrealloc(rl->ent, n * sizeof(*rl->ent));
	rl->nent = n;
	for (nh = rl->nheads ? rl->nheads : 16; nh < n; nh *= 2)
		;
	if (nh != rl->nheads) {
		free(rl->heads);
		rl->heads = xmalloc(nh * sizeof(*rl->heads));
		rl->nheads = nh;
		memset(rl->heads, 0xff, nh * sizeof(*rl->heads));
		for (size_t i = 0; i < rl->count; i++)
			chain_add(rl, (uint32_t)i);
	}
}

struct ratelim *
ratelim_new(uint64_t rate_per_s, uint64_t burst, size_t max_keys)
{
	struct ratelim *rl = xcalloc(1, sizeof(*rl));
	uint64_t k[2];

	tbucket_init(&rl->conf, rate_per_s, burst, 0);
	tbucket_init(&rl->overflow, rate_per_s, burst, 0);
	crypto_random(k, sizeof(k));
	rl->k0 = k[0];
	rl->k1 = k[1];
	rl->max_keys = max_keys < 1 ? 1 :
	    max_keys > RL_MAX_KEYS ? RL_MAX_KEYS : max_keys;
	rl->mru = rl->lru = NIL;
	return rl;
}

void
ratelim_free(struct ratelim *rl)
{
	if (rl == NULL)
		return;
	free(rl->ent);
	free(rl->heads);
	free(rl);
}

/* one unit from b at now: 1, or 0 with the wait in ms */
static int
take_one(struct tbucket *b, uint64_t now_us, uint64_t *retry_after_ms)
{
	uint64_t w;

	if (tbucket_take(b, now_us, 1) == 1) {
		if (retry_after_ms)
			*retry_after_ms = 0;
		return 1;
	}
	w = tbucket_wait_us(b, now_us, 1);
	if (retry_after_ms)
		*retry_after_ms = w ? (w + 999) / 1000 : 1;
	return 0;
}

/* the key's bucket, in a struct tbucket for the arithmetic */
static int
take_ent(struct ratelim *rl, struct rl_ent *e, uint64_t now_us,
    uint64_t *retry_after_ms)
{
	struct tbucket b = rl->conf;
	int r;

	b.level = e->level;
	b.last_us = e->last_us;
	r = take_one(&b, now_us, retry_after_ms);
	e->level = b.level;
	e->last_us = b.last_us;
	return r;
}

int
ratelim_allow(struct ratelim *rl, const void *key, size_t keylen,
    uint64_t now_us, uint64_t *retry_after_ms)
{
	uint32_t h, i;
	struct rl_ent *e;
	struct tbucket b;

	if (keylen == 0 || keylen > RATELIM_KEY_MAX)
		return MG_EINVAL;
	if (rl->conf.rate == 0) {
		if (retry_after_ms)
			*retry_after_ms = 0;
		return 1;
	}
	h = (uint32_t)siphash13(rl->k0, rl->k1, key, keylen);
	if (rl->nheads) {
		for (i = rl->heads[h & (rl->nheads - 1)]; i != NIL;
		     i = rl->ent[i].hnext) {
			e = &rl->ent[i];
			if (e->hash == h && e->keylen == keylen &&
			    memcmp(e->key, key, keylen) == 0) {
				if (i != rl->mru) {
					lru_unlink(rl, i);
					lru_push(rl, i);
				}
				return take_ent(rl, e, now_us,
				    retry_after_ms);
			}
		}
	}
	/* a new key: a free entry, a refilled one, or the overflow */
	if (rl->count == rl->nent && rl->nent < rl->max_keys)
		rl_grow(rl);
	if (rl->count < rl->nent) {
		i = (uint32_t)rl->count++;
	} else {
		i = rl->lru;
		b = rl->conf;
		b.level = rl->ent[i].level;
		b.last_us = rl->ent[i].last_us;
		if (tbucket_peek(&b, now_us) < b.burst) {
			rl->overflowed++;
			return take_one(&rl->overflow, now_us,
			    retry_after_ms);
		}
		rl->evicted++;
		chain_del(rl, i);
		lru_unlink(rl, i);
	}
	e = &rl->ent[i];
	e->hash = h;
	e->keylen = (uint8_t)keylen;
	memcpy(e->key, key, keylen);
	e->level = rl->conf.burst * US;
	e->last_us = now_us;
	chain_add(rl, i);
	lru_push(rl, i);
	return take_ent(rl, e, now_us, retry_after_ms);
}

void
ratelim_set(struct ratelim *rl, uint64_t rate_per_s, uint64_t burst,
    uint64_t now_us)
{
	struct tbucket b;

	for (size_t i = 0; i < rl->count; i++) {
		b = rl->conf;
		b.level = rl->ent[i].level;
		b.last_us = rl->ent[i].last_us;
		tbucket_set_rate(&b, rate_per_s, burst, now_us);
		rl->ent[i].level = b.level;
		rl->ent[i].last_us = b.last_us;
	}
	tbucket_set_rate(&rl->overflow, rate_per_s, burst, now_us);
	tbucket_init(&rl->conf, rate_per_s, burst, 0);
}

void
ratelim_stats(const struct ratelim *rl, struct ratelim_stats *st)
{
	st->keys = rl->count;
	st->slots = rl->nent;
	st->bytes = sizeof(*rl) + rl->nent * sizeof(*rl->ent) +
	    rl->nheads * sizeof(*rl->heads);
	st->evicted = rl->evicted;
	st->overflow = rl->overflowed;
}

/* ---- parsing ---- */

static const char rate_example[] =
    "expected a rate such as 10MB/s or 50/s";

static int
parse(const char *s, int count_only, uint64_t *per_s, const char **why)
{
	static const struct {
		const char *sfx;
		uint64_t num, den;
	} units[] = {
		{ "", 1, 1 }, { "B", 1, 1 },
		{ "K", 1024, 1 }, { "KiB", 1024, 1 }, { "KB", 1000, 1 },
		{ "kB", 1000, 1 },
		{ "M", 1 << 20, 1 }, { "MiB", 1 << 20, 1 },
		{ "MB", 1000000, 1 },
		{ "G", 1 << 30, 1 }, { "GiB", 1 << 30, 1 },
		{ "GB", 1000000000, 1 },
		{ "bit", 1, 8 }, { "kbit", 1000, 8 }, { "Kbit", 1000, 8 },
		{ "Mbit", 1000000, 8 }, { "Gbit", 1000000000, 8 },
	};
	unsigned __int128 num, den;
	uint64_t ip = 0, fp = 0, fden = 1, v;
	const char *p = s, *u;
	size_t ul, k, nd = 0;
	int r = MG_EINVAL;

	*why = rate_example;
	if (!isdigit((unsigned char)*p))
		goto out;
	for (; isdigit((unsigned char)*p); p++, nd++) {
		if (nd >= 15) {
			*why = "a rate above 1e12 units/s is not supported";
			goto out;
		}
		ip = ip * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			goto out;
		for (nd = 0; isdigit((unsigned char)*p); p++, nd++) {
			if (nd >= 9) {
				*why = "at most 9 digits after the point";
				goto out;
			}
			fp = fp * 10 + (uint64_t)(*p - '0');
			fden *= 10;
		}
	}
	while (*p == ' ')
		p++;
	u = p;
	while (*p && *p != '/')
		p++;
	ul = (size_t)(p - u);
	if (*p != '/') {
		*why = "a rate needs a unit of time, /s or /min (as in "
		    "10MB/s or 50/s)";
		goto out;
	}
	if (strcmp(p, "/s") == 0)
		den = 1;
	else if (strcmp(p, "/min") == 0)
		den = 60;
	else {
		*why = "a rate's unit of time is /s or /min (as in 10MB/s "
		    "or 600/min)";
		goto out;
	}
	for (k = 0; k < sizeof(units) / sizeof(units[0]); k++)
		if (strlen(units[k].sfx) == ul &&
		    strncmp(units[k].sfx, u, ul) == 0)
			break;
	if (k == sizeof(units) / sizeof(units[0])) {
		*why = count_only ? "expected a count such as 50/s or "
		    "600/min, without a unit" : "unknown unit: expected "
		    "B, K/KiB, KB, M/MiB, MB, G/GiB, GB (bytes) or kbit, "
		    "Mbit, Gbit (bits) before /s";
		goto out;
	}
	if (count_only && k != 0) {
		*why = "expected a count such as 50/s or 600/min, without "
		    "a unit";
		goto out;
	}
	/* the exact rate is num / den units per second */
	num = ((unsigned __int128)ip * fden + fp) * units[k].num;
	den *= (unsigned __int128)fden * units[k].den;
	if (num == 0) {
		*why = "a rate must be at least 1/s (leave the limit out "
		    "for none)";
		goto out;
	}
	if (num / den > TBUCKET_MAX_RATE) {
		*why = "a rate above 1e12 units/s (8 Tbit/s) is not "
		    "supported";
		goto out;
	}
	if (num % den != 0 && num < 100 * den) {
		*why = "a rate below 100/s must be a whole number per "
		    "second (as 1/s, or 60/min)";
		goto out;
	}
	v = (uint64_t)((num + den / 2) / den);
	if (v > TBUCKET_MAX_RATE) {
		*why = "a rate above 1e12 units/s (8 Tbit/s) is not "
		    "supported";
		goto out;
	}
	*per_s = v;
	*why = NULL;
	r = 0;
out:
	return r;
}

int
ratelim_parse_rate(const char *s, uint64_t *per_s, const char **why)
{
	const char *w;

	return parse(s, 0, per_s, why ? why : &w);
}

int
ratelim_parse_count(const char *s, uint64_t *per_s, const char **why)
{
	const char *w;

	return parse(s, 1, per_s, why ? why : &w);
}
