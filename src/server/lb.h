/*
 * lb.h: choosing the member of a load-balancing group for a new visitor:
 * the strategies (round robin and least connections, both weighted;
 * rendezvous hashing of the source address, the host or a header) as pure
 * functions over an array the caller fills. No server state here.
 */
#ifndef MG_LB_H
#define MG_LB_H

#include <stddef.h>
#include <stdint.h>

enum lb_strategy {
	LB_ROUND_ROBIN = 0,     /* the default */
	LB_LEAST_CONN,
	LB_HASH_SOURCE,         /* hash:source_ip */
	LB_HASH_HOST,           /* hash:host (HTTP, TLS: the name asked for) */
	LB_HASH_HEADER,         /* hash:header:NAME (HTTP) */
};

#define LB_HEADER_MAX 64     /* a header name's bytes, NUL included */
#define LB_WEIGHT_MAX 1000

/*
 * lb_parse_strategy: "round_robin", "least_conn", "hash:source_ip",
 * "hash:host", "hash:header:NAME" (s[0..n), not NUL-terminated) into *st
 * and, for a header, its name (a token, lower-cased) into header[]. 0, or
 * -1 with *err (static text).
 */
int lb_parse_strategy(const char *s, size_t n, enum lb_strategy *st,
    char header[LB_HEADER_MAX], const char **err);

/* lb_strategy_str: the strategy as lb_parse_strategy reads it; buf */
const char *lb_strategy_str(enum lb_strategy st, const char *header,
    char *buf, size_t cap);

/* One member as lb_pick sees it. */
struct lb_member {
	uint64_t ident;         /* stable across reconnects (hash of its
				   owner and name): the hash strategies */
	unsigned weight;        /* 1..LB_WEIGHT_MAX */
	int64_t current;        /* smooth weighted round robin state: kept
				   by the caller between picks, 0 at first */
	unsigned active;        /* open connections (least_conn) */
	int usable;             /* up, not ejected, not draining */
};

/*
 * lb_pick: the index in m[0..n) of the member for one new connection, or
 * -1 when none is usable. Round robin is the smooth weighted kind (over
 * any window, member i gets weight_i / sum of weights of the picks, spread
 * evenly); least_conn takes the lowest active/weight, ties by round robin;
 * the hash strategies take the member with the highest weighted
 * rendezvous score of (key, ident), so one key stays on one member while
 * it is usable and only the keys of a member that leaves move. A hash
 * strategy without a key (key NULL) falls back to round robin. Updates
 * m[].current.
 */
int lb_pick(enum lb_strategy st, struct lb_member *m, size_t n,
    const void *key, size_t klen);

/* lb_hash: a 64-bit hash of p[0..n) with a seed (not cryptographic). */
uint64_t lb_hash(const void *p, size_t n, uint64_t seed);

#endif
