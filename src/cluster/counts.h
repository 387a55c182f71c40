/*
 * counts.h: limits that are counts (a token's tunnels, its visitors) held
 * cluster-wide. Each node writes its own figures per identity into Redis
 * (one hash per identity, a field pair per node, with an expiry per node),
 * and keeps the sum of the OTHER nodes' figures, read back by the same
 * script; a check adds this node's live figure to that cached sum, with
 * no round trip. It knows identities and numbers, never tunnels: the
 * server reports its figures through a hook. The key schema and the
 * script are in docs/internals/cluster-store.md ("Counts").
 */
#ifndef MG_COUNTS_H
#define MG_COUNTS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply;
struct rstore;
struct counts;

#define COUNTS_KEY_PREFIX "mgrok:count:"
/* the key: the prefix and the hex SHA-256 of the identity */
#define COUNTS_KEY_MAX (sizeof(COUNTS_KEY_PREFIX) + 64)
/* the local figures are looked at (and written when they changed) every
 * tick: at most one write per identity per tick, besides the beat's */
#define COUNTS_TICK_MS 100
/* an identity with nothing here and no check for this long is forgotten */
#define COUNTS_IDLE_MS 300000

/*
 * The script (KEYS and ARGV as counts_write_argv lays them out):
 *  KEYS count key; ARGV node, tunnels, visitors, ttl_ms. Sets this node's
 *  fields "NODE:tunnels", "NODE:visitors", "NODE:expires" (Redis's clock
 *  in ms plus ttl_ms), or deletes them when both figures are 0; deletes
 *  every node's fields whose expiry is past; PEXPIREs the key to the
 *  latest expiry; answers {tunnels, visitors} summed over the OTHER
 *  nodes whose record is current.
 */
extern const char counts_lua_write[];

/* a node's (or the others') figures for one identity */
struct counts_fig {
	uint64_t tunnels, visitors;
};

/* the script's arguments for rstore_eval(r, s, cb, arg, a.nkeys, a.argc,
 * a.argv, a.len); they point into a itself and the node id given */
struct counts_argv {
	int nkeys, argc;
	const char *argv[5];
	size_t len[5];
	char key[COUNTS_KEY_MAX];
	char num[3][24];
};

/*
 * counts_key: the key of identity's counts, "mgrok:count:" and the 64 hex
 * digits of the SHA-256 of its bytes (an identity may hold any byte a
 * token's name may), into out (cap bytes). Returns the length, or
 * MG_EINVAL (NULL or empty identity), MG_ENOSPC.
 */
int counts_key(const char *identity, char *out, size_t cap);

/*
 * counts_write_argv: fill *a for counts_lua_write. key from counts_key,
 * node a valid id (routes_id_ok), ttl_ms 1..2^40. Returns 0 or MG_EINVAL.
 */
int counts_write_argv(struct counts_argv *a, const char *key,
    const char *node, const struct counts_fig *mine, uint64_t ttl_ms);

/*
 * counts_parse: the script's answer (the others' sums) into *out. Returns
 * 0, or MG_EPROTO for an answer of another shape (a Redis error, a
 * negative figure) with *out zeroed.
 */
int counts_parse(const struct redisReply *rep, struct counts_fig *out);

/*
 * The server's part: collect(arg, c) is called at every tick and beat and
 * calls counts_local(c, identity, tunnels, visitors) for each of its
 * tunnels (figures add up per identity; identities counts does not track
 * are ignored, so it may report every tunnel). read(arg, identity), when
 * set, is called when a read of an identity whose figures were never
 * read ends, whether it made them known or failed (counts_others tells
 * which): what waited for it (counts_reading) may go on. Either hook may
 * call counts_others, counts_reading and counts_track, never counts_free.
 */
struct counts_hooks {
	void (*collect)(void *arg, struct counts *c);
	void *arg;
	void (*read)(void *arg, const char *identity);
};

/* counts_stats: for logs and metrics */
struct counts_stats {
	uint64_t writes;     /* scripts answered */
	uint64_t errors;     /* failed: Redis error, timeout, lost */
	uint32_t identities; /* tracked now */
};

/*
 * counts_new: counts on the store rs (owned by the caller, which keeps it
 * alive until counts_free; counts_free may come before or after
 * rstore_free) for node (an id, routes_id_ok), its figures written every
 * beat_ms with a record lasting ttl_ms (3 beats), on base. hooks is
 * copied. Returns the object (free it with counts_free), or NULL when
 * node is not a valid id or beat_ms/ttl_ms is 0.
 */
struct counts *counts_new(struct event_base *base, struct rstore *rs,
    const char *node, uint64_t beat_ms, uint64_t ttl_ms,
    const struct counts_hooks *hooks);

/* counts_free: stops the timers; answers still due find nothing. NULL is
 * fine. Never from inside the collect hook. */
void counts_free(struct counts *c);

/*
 * counts_track: keep identity's figures from now on (this node's written,
 * the others' read): a read goes out at once when it is new. An
 * identity is tracked while this node reports figures for it and for
 * COUNTS_IDLE_MS after its last check or figure.
 */
void counts_track(struct counts *c, const char *identity);

/*
 * counts_local: from the collect hook only: add tunnels and visitors to
 * identity's figures of this node for this tick (ignored when identity
 * is not tracked).
 */
void counts_local(struct counts *c, const char *identity, uint64_t tunnels,
    uint64_t visitors);

/*
 * counts_others: the other nodes' figures for identity as last read into
 * *out, with no round trip; tracks identity (counts_track). Returns 1
 * when they were read at least once; 0 when never, because the store is
 * down (*out zero: the caller enforces with what it has); MG_EAGAIN when
 * never, and a read is on its way (within a tick and Redis's answer).
 */
int counts_others(struct counts *c, const char *identity,
    struct counts_fig *out);

/*
 * counts_reading: whether identity's figures were never read and a read
 * of them is on its way (within Redis's answer or the store's command
 * timeout); tracks identity, and sends its read now if none is in flight
 * and the store is up (not within a beat of a failed one). Returns 1:
 * the read hook will be called for identity when it ends; 0: wait for
 * nothing (the figures are known, or no read can go out now:
 * counts_others tells which).
 */
int counts_reading(struct counts *c, const char *identity);

/* counts_stats: the figures now into *st */
void counts_stats(const struct counts *c, struct counts_stats *st);

#endif
