/*
 * cluster.h: this node's part of a cluster (docs/internals/cluster.md):
 * its Redis store, its node record kept alive by a heartbeat, and the
 * claim, refresh and release of the routes (public ports and host names)
 * it serves. It knows keys, sessions and epochs, never tunnels: the server
 * decides what to claim and what a lost claim means, through the hooks.
 */
#ifndef MG_CLUSTER_H
#define MG_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct cluster;

#define CLUSTER_HEARTBEAT_MS 2000
#define CLUSTER_TTL_MS 6000      /* node records and routes: 3 beats */

struct cluster_hooks {
	void (*up)(void *arg);              /* the store is usable (again) */
	void (*down)(void *arg, const char *why);
	void (*beat)(void *arg);            /* every heartbeat: refresh */
	/* every heartbeat, for the node record: the node's authenticated
	 * sessions and its tunnels now (NULL: both 0) */
	void (*load)(void *arg, uint64_t *sessions, uint64_t *tunnels);
	void *arg;
};

/* cluster_new: connect to the store at url as node (an id), reachable at
 * addr (may be ""); NULL with err when url is bad */
struct cluster *cluster_new(struct event_base *base, const char *url,
    const char *node, const char *addr, const struct cluster_hooks *h,
    char *err, size_t errcap);
/* cluster_free: every callback still due is called (err "closing")
 * before it returns */
void cluster_free(struct cluster *cl);

/* cluster_up: 1 when claims can be made now */
int cluster_up(const struct cluster *cl);
const char *cluster_node(const struct cluster *cl);
/* cluster_down_why: why the store is unreachable ("connecting" before
 * its first up), valid until the next call into cl; "" when it is up */
const char *cluster_down_why(const struct cluster *cl);
/* cluster_store: the Redis store (cluster/rstore.h), for modules that
 * read or write their own keys (the cluster view, counts, forwarding);
 * owned by cl */
struct rstore;
struct rstore *cluster_store(const struct cluster *cl);

/*
 * cluster_claim: claim key for session (an id). cb(arg, ok, epoch,
 * owner, err) once: ok 1 (ours, epoch), ok 0 (owner: the node that has
 * it), or err (the store's trouble: nothing is known). 0, or -1 when the
 * store is down (cb is not called).
 */
typedef void (*cluster_claim_fn)(void *arg, int ok, uint64_t epoch,
    const char *owner, const char *err);
int cluster_claim(struct cluster *cl, const char *key, const char *session,
    cluster_claim_fn cb, void *arg);

/* cluster_refresh: keep key ours a TTL longer; cb(arg, ours, err): ours 0
 * when another node's epoch has it now (we lost it) */
typedef void (*cluster_refresh_fn)(void *arg, int ours, const char *err);
int cluster_refresh(struct cluster *cl, const char *key, uint64_t epoch,
    cluster_refresh_fn cb, void *arg);

/* cluster_release: let key go if it is still ours (no answer) */
void cluster_release(struct cluster *cl, const char *key, uint64_t epoch);

/*
 * cluster_route_session: who holds key now: cb(arg, session, err) once,
 * session the claim session of its record ("" when there is none, or
 * err the store's trouble). 0, or -1 when the store is down (cb is not
 * called).
 */
typedef void (*cluster_session_fn)(void *arg, const char *session,
    const char *err);
int cluster_route_session(struct cluster *cl, const char *key,
    cluster_session_fn cb, void *arg);

struct cluster_stats {
	uint64_t claims_ok, claims_conflict, claims_failed, refresh_lost;
	uint64_t commands, errors;
	uint64_t rtt_us;
	int up;
};
void cluster_stats(const struct cluster *cl, struct cluster_stats *st);

#endif
