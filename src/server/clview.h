/*
 * clview.h: a snapshot of the whole cluster read from its Redis store, for
 * GET /api/v1/cluster (docs/api.md): every node record and every route
 * record (SCAN, then HGETALL and PTTL of each key) as one JSON object,
 * bounded in keys, in commands in flight and in time. Asynchronous and
 * safe against its asker going away (clview_cancel) and against the store
 * going down or being freed while it reads.
 */
#ifndef MG_CLVIEW_H
#define MG_CLVIEW_H

#include <stddef.h>

#include <jansson.h>

struct event_base;
struct rstore;
struct clview_fetch;

#define CLVIEW_MAX_NODES 1000
#define CLVIEW_MAX_ROUTES 10000
#define CLVIEW_TIMEOUT_MS 5000 /* the whole fetch */
#define CLVIEW_WINDOW 64       /* HGETALL/PTTL commands in flight at once */
#define CLVIEW_SCAN_COUNT 256  /* SCAN's COUNT hint */

/* the bounds of one fetch; a field left 0 takes its default above */
struct clview_limits {
	unsigned max_nodes, max_routes, timeout_ms;
};

/*
 * The answer, called once per fetch that clview_fetch started and that
 * was not cancelled, later, never from inside clview_fetch. Success: j is
 * the view (the caller owns it), err NULL:
 *   {"node": self, "store": {"up", "rtt_us"}, "truncated": bool,
 *    "nodes": [{"id", "addr", "sessions", "tunnels", "started", "age_s",
 *               "ttl_ms", "self"}],
 *    "routes": [{"key", "kind", "name", "node", "epoch", "ttl_ms"}],
 *    "sessions_by_node": {id: n}}
 * nodes sorted by id, routes by key. Failure: j NULL and err saying why
 * (the store went down, a command timed out, the whole fetch took longer
 * than its timeout), valid during the call.
 */
typedef void (*clview_fn)(void *arg, json_t *j, const char *err);

/*
 * clview_fetch: start reading the cluster's records from rs (the node's
 * store, cluster_store) on base; self is this node's id (copied), lim may
 * be NULL. Returns the fetch, whose cb is then called exactly once unless
 * clview_cancel comes first; or NULL with the reason in err (errcap
 * bytes) when the store refuses commands now (down, at its cap), and cb
 * is never called. The fetch frees itself after its answer (or its
 * cancel) once the store has answered every command it sent.
 */
struct clview_fetch *clview_fetch(struct event_base *base, struct rstore *rs,
    const char *self, const struct clview_limits *lim, clview_fn cb,
    void *arg, char *err, size_t errcap);

/*
 * clview_cancel: the asker goes away: cb is never called. Only before cb
 * was called (the fetch is not valid after). Commands still in flight
 * are answered by the store later (or with "closing" by rstore_free);
 * the fetch's memory goes with the last of them.
 */
void clview_cancel(struct clview_fetch *f);

#endif
