/*
 * ratelim.h: rate limiting building blocks, pure (the caller passes the
 * time, as monotonic microseconds from mtime_us; no libevent, no globals):
 *   - struct tbucket, a token bucket (bandwidth of a tunnel or a token:
 *     bytes per second; or any count per second);
 *   - struct ratelim, a token bucket per key (a source address, maybe with
 *     a tunnel id before it) in a table of bounded size;
 *   - struct shaper, a tunnel's bandwidth limit both ways, chained to its
 *     token's shared one, held by each connection that relays through it;
 *   - rate parsing for the config file and flags ("10MB/s", "50/s").
 * docs/internals/ratelim.md has the arithmetic, the fairness of a shared
 * bucket and the eviction trade-off.
 */
#ifndef MG_RATELIM_H
#define MG_RATELIM_H

#include <stddef.h>
#include <stdint.h>

/* The largest rate and burst a bucket takes (larger values are clamped):
 * 1e12 units/s is 8 Tbit/s of bytes; with these, every product in the
 * arithmetic fits in 64 bits whatever the time step. */
#define TBUCKET_MAX_RATE 1000000000000ULL
#define TBUCKET_MAX_BURST 10000000000000ULL

/*
 * A token bucket: up to `burst` units may go at once, `rate` more become
 * available each second. The level is kept in millionths of a unit (one
 * unit per second for one microsecond), so refilling is exact integer
 * arithmetic: no drift, whatever the steps of the clock (0 or 1 us too).
 * A small value type to embed; its fields are the module's.
 */
struct tbucket {
	uint64_t rate;    /* units per second; 0 = unlimited */
	uint64_t burst;   /* units, >= 1 when rate > 0 */
	uint64_t level;   /* available units x 1e6, <= burst x 1e6 */
	uint64_t last_us; /* the time level was computed for */
};

/* tbucket_init: a full bucket of rate units/s (0 = unlimited) holding at
 * most burst units (0 = a tenth of the rate, at least 1), as of now_us. */
void tbucket_init(struct tbucket *b, uint64_t rate_per_s, uint64_t burst,
    uint64_t now_us);

/* tbucket_set_rate: a new rate and burst (as in tbucket_init) from now_us
 * on, e.g. at a reload: the units gathered at the old rate until now_us
 * are kept, capped at the new burst; a bucket that was unlimited starts
 * full. A user slowed down by the old rate waits by the new one. */
void tbucket_set_rate(struct tbucket *b, uint64_t rate_per_s, uint64_t burst,
    uint64_t now_us);

/* tbucket_take: how many of want units may go at now_us (0..want), taken
 * from the bucket. An unlimited bucket gives want. A time before the last
 * one seen counts as no time passing. */
uint64_t tbucket_take(struct tbucket *b, uint64_t now_us, uint64_t want);

/* tbucket_peek: how many units are available at now_us (want is capped
 * at it; UINT64_MAX for an unlimited bucket); nothing is taken. */
uint64_t tbucket_peek(const struct tbucket *b, uint64_t now_us);

/* tbucket_refund: give back n units taken but not used (a read that
 * returned less than it was allowed), up to the burst. */
void tbucket_refund(struct tbucket *b, uint64_t n);

/* tbucket_wait_us: microseconds from now_us until want units (or the
 * burst, if smaller) are available: the smallest wait after which
 * tbucket_take gives them; 0 when they are available now, when want is 0
 * or when the bucket is unlimited. */
uint64_t tbucket_wait_us(const struct tbucket *b, uint64_t now_us,
    uint64_t want);

/*
 * A shaper: the bandwidth limit of a tunnel, one token bucket per
 * direction, optionally chained to a parent shaper (the limit its owner's
 * token shares across all its tunnels): a byte passes only when both
 * have a token for it. Reference counted: the tunnel holds one, and each
 * connection relaying through it holds one, so a connection that
 * outlives its tunnel keeps a valid shaper, and a new rate set on the
 * shared object (a reload) reaches every open connection at once.
 * Pure like tbucket: the caller passes the time. Single-threaded.
 */
enum shaper_dir {
	SHAPER_IN = 0,   /* visitor to agent (read from the public side) */
	SHAPER_OUT = 1,  /* agent to visitor (written to the public side) */
};

/* The least burst of a shaper's bucket: it covers a few reads, so a low
 * limit still moves whole reads and the wake-ups stay few. */
#define SHAPER_MIN_BURST 16384

struct shaper;

/* shaper_new: an unlimited shaper (both rates 0) whose takes also go
 * through parent (NULL: none; a reference on it is taken and held until
 * the shaper is freed). One reference for the caller: shaper_unref. */
struct shaper *shaper_new(struct shaper *parent);

/* shaper_ref: one more reference (s may be NULL); returns s. */
struct shaper *shaper_ref(struct shaper *s);

/* shaper_unref: drop a reference (NULL is fine); the last one frees s
 * and drops its reference on its parent. */
void shaper_unref(struct shaper *s);

/* shaper_parent: s's parent, or NULL; borrowed. */
struct shaper *shaper_parent(const struct shaper *s);

/* shaper_set_rate: s's own rate of dir in bytes per second (0 = none),
 * from now_us on; the burst is a tenth of a second of it, at least
 * SHAPER_MIN_BURST. Tokens gathered so far are kept up to the new burst
 * (tbucket_set_rate); setting the rate it has changes nothing. */
void shaper_set_rate(struct shaper *s, enum shaper_dir dir, uint64_t rate,
    uint64_t now_us);

/* shaper_rate: s's own rate of dir (0 = none), its parent ignored. */
uint64_t shaper_rate(const struct shaper *s, enum shaper_dir dir);

/* shaper_effective: the rate of dir a byte through s gets: the lower of
 * s's and its parent's that are set; 0 when neither is. */
uint64_t shaper_effective(const struct shaper *s, enum shaper_dir dir);

/* shaper_limited: 1 when dir has a rate in s or its parent (then the
 * caller reads the clock and takes), 0 when every byte may pass (s NULL
 * too). Two loads: cheap enough for every read. */
int shaper_limited(const struct shaper *s, enum shaper_dir dir);

/* shaper_take: how many of want bytes of dir may go at now_us (0..want),
 * taken from s's bucket and its parent's; want itself when unlimited. */
size_t shaper_take(struct shaper *s, enum shaper_dir dir, uint64_t now_us,
    size_t want);

/* shaper_refund: give back n bytes taken by shaper_take but not moved
 * (the socket took fewer), to both buckets. */
void shaper_refund(struct shaper *s, enum shaper_dir dir, size_t n);

/* shaper_wait_us: microseconds from now_us until want bytes (or a burst,
 * if smaller) may go through s and its parent; 0 when they may now. A
 * paced reader sleeps this long instead of polling. */
uint64_t shaper_wait_us(const struct shaper *s, enum shaper_dir dir,
    uint64_t now_us, size_t want);

/* The longest key of a keyed limiter: a 16-byte address with up to 16
 * bytes of prefix (a tunnel id). */
#define RATELIM_KEY_MAX 32

struct ratelim;

/* Counters of a keyed limiter, for metrics and tests. */
struct ratelim_stats {
	size_t keys;        /* keys tracked now (<= max_keys) */
	size_t slots;       /* entries allocated (<= max_keys) */
	size_t bytes;       /* memory held by the limiter */
	uint64_t evicted;   /* keys dropped to make room (their buckets were
	                     * full: nothing forgotten) */
	uint64_t overflow;  /* calls charged to the shared overflow bucket
	                     * because the table was full of busy keys */
};

/* ratelim_new: a limiter that allows each key rate_per_s calls per second
 * with bursts of burst (rate 0 = unlimited; burst 0 = a tenth of the
 * rate, at least 1), tracking at most max_keys keys (at least 1). Memory
 * grows with the keys seen, up to max_keys entries, and is then reused:
 * no allocation per call in the steady state. Free with ratelim_free. */
struct ratelim *ratelim_new(uint64_t rate_per_s, uint64_t burst,
    size_t max_keys);

/* ratelim_free: release rl (NULL is fine). */
void ratelim_free(struct ratelim *rl);

/*
 * ratelim_allow: one call by key (keylen bytes, 1..RATELIM_KEY_MAX,
 * copied) at now_us. Returns 1 if allowed (a unit is taken from the key's
 * bucket), 0 if refused, with *retry_after_ms (may be NULL) set to the
 * milliseconds until one unit is available (>= 1 when refused, 0 when
 * allowed); MG_EINVAL for a bad key length.
 * A key not in a full table replaces the least recently used key if that
 * one's bucket has refilled (so nothing is forgotten); otherwise it is
 * charged to one overflow bucket that all such keys share.
 */
int ratelim_allow(struct ratelim *rl, const void *key, size_t keylen,
    uint64_t now_us, uint64_t *retry_after_ms);

/* ratelim_set: a new rate and burst at a reload, for every key tracked
 * (each keeps what it has gathered until now_us, capped at the new burst;
 * O(keys)). max_keys stays: a new table size means a new limiter. */
void ratelim_set(struct ratelim *rl, uint64_t rate_per_s, uint64_t burst,
    uint64_t now_us);

/* ratelim_stats: rl's counters into *st. */
void ratelim_stats(const struct ratelim *rl, struct ratelim_stats *st);

/*
 * ratelim_parse_rate: a rate: a number (a decimal fraction is fine: 1.5MB/s),
 * an optional unit and "/s" or "/min":
 *   "50/s"                          50 per second (a count)
 *   "10KB/s" "10MB/s" "1GB/s"       decimal bytes (like conf_parse_bytes)
 *   "10K/s" "5M/s" "5MiB/s" "1GiB/s" binary bytes ("B/s" is bytes too)
 *   "100kbit/s" "10Mbit/s" "100Gbit/s"  bits, decimal, converted to bytes
 *   "600/min" "1GB/min"             divided by 60
 * into *per_s (units per second, 1..TBUCKET_MAX_RATE). A rate that is not
 * a whole number per second is rounded to the nearest when it is 100/s or
 * more, refused below (the limiters count whole units per second).
 * Returns 0, or MG_EINVAL with *why (may be NULL) a static English reason.
 */
int ratelim_parse_rate(const char *s, uint64_t *per_s, const char **why);

/* ratelim_parse_count: as ratelim_parse_rate but a count only ("50/s",
 * "600/min"): a byte or bit unit is refused (new connections, requests). */
int ratelim_parse_count(const char *s, uint64_t *per_s, const char **why);

#endif
