/*
 * routes.h: the cluster's route records in Redis: the key schema, the Lua
 * scripts that claim, refresh and release a route as one compare-and-set
 * (with a fencing epoch), the node heartbeat, the argv that runs each
 * through rstore_eval, and the parsing of their answers. Pure: no I/O.
 * docs/internals/cluster-store.md describes the schema and the scripts.
 */
#ifndef MG_ROUTES_H
#define MG_ROUTES_H

#include <stddef.h>
#include <stdint.h>

struct redisReply;

#define ROUTES_KEY_PREFIX "mgrok:route:"
#define ROUTES_NODE_PREFIX "mgrok:node:"
#define ROUTES_EPOCH_KEY "mgrok:epoch"
#define ROUTES_CHANNEL "mgrok:routes"

/* the longest route name (a host name), node id and session id */
#define ROUTES_NAME_MAX 255
#define ROUTES_ID_MAX 63
/* room for a route key: prefix, kind, ':' and the name */
#define ROUTES_KEY_MAX (sizeof(ROUTES_KEY_PREFIX) + 5 + ROUTES_NAME_MAX + 1)

enum route_kind { ROUTE_TCP = 1, ROUTE_UDP, ROUTE_HOST };

/*
 * The Lua scripts (KEYS and ARGV as the routes_*_argv builders lay them
 * out; the answers as routes_*_parse read them). Register each once with
 * rstore_script_add.
 *  claim:   KEYS route, epoch counter; ARGV node, session, ttl_ms, channel.
 *           Free, or the same session's (from this node: a refresh, the
 *           same epoch; from another node: the owner moved, a lease taken
 *           over, a new epoch that fences the old node): set, PEXPIRE,
 *           publish "claim KEY NODE EPOCH" when new; {1, epoch}. Another
 *           session's: {0, owner node, owner session, owner epoch}.
 *  refresh: KEYS route; ARGV node, epoch, ttl_ms. Ours by node and epoch:
 *           PEXPIRE, 1; else 0.
 *  release: KEYS route; ARGV node, epoch, channel. Ours: DEL, publish
 *           "release KEY", 1; else 0.
 *  node:    KEYS node key; ARGV addr, load, started, ttl_ms, sessions,
 *           tunnels. HSET addr, load, started, sessions, tunnels,
 *           PEXPIRE; 1. (load is sessions, for readers of the first
 *           schema; the new fields come last so that ttl_ms stays ARGV[4].)
 */
extern const char routes_lua_claim[];
extern const char routes_lua_refresh[];
extern const char routes_lua_release[];
extern const char routes_lua_node[];

/* a script's arguments for rstore_eval(r, script, cb, arg, a.nkeys,
 * a.argc, a.argv, a.len); they point into a itself and the strings given */
struct routes_argv {
	int nkeys, argc;
	const char *argv[8];
	size_t len[8];
	char key[ROUTES_KEY_MAX];
	char num[4][24];
};

/* the owner of a route as a claim answers it */
struct route_claim {
	int ok;         /* 1: ours now; 0: a conflict, owned as below */
	uint64_t epoch; /* ours (ok) or the owner's */
	char node[ROUTES_ID_MAX + 1];
	char session[ROUTES_ID_MAX + 1];
};

/* routes_kind_name: "tcp", "udp", "host"; NULL for another value. */
const char *routes_kind_name(enum route_kind kind);

/*
 * routes_key: "mgrok:route:KIND:NAME" into out (cap bytes). name: 1-255
 * bytes of printable ASCII without space (a host name is lower-cased by
 * the caller). Returns the length, or MG_EINVAL (a bad kind or name),
 * MG_ENOSPC.
 */
int routes_key(enum route_kind kind, const char *name, char *out, size_t cap);

/* routes_id_ok: 1 if s is a valid node or session id: 1-63 bytes of
 * [A-Za-z0-9._:-] (they appear in keys and in space-separated messages). */
int routes_id_ok(const char *s);

/*
 * The argv builders: fill *a for the script of their name. key is a
 * route key (routes_key), node and session ids (routes_id_ok), ttl_ms
 * 1..2^40. Return 0, or MG_EINVAL naming nothing (the caller's inputs
 * are its own).
 */
int routes_claim_argv(struct routes_argv *a, const char *key, const char *node,
    const char *session, uint64_t ttl_ms);
int routes_refresh_argv(struct routes_argv *a, const char *key,
    const char *node, uint64_t epoch, uint64_t ttl_ms);
int routes_release_argv(
    struct routes_argv *a, const char *key, const char *node, uint64_t epoch);
/* node: the node's id, its address for node links (ADDR:PORT), its
 * sessions and tunnels (counts; load is written as the sessions) and its
 * start time (unix seconds) */
int routes_node_argv(struct routes_argv *a, const char *node, const char *addr,
    uint64_t sessions, uint64_t tunnels, uint64_t started, uint64_t ttl_ms);

/*
 * routes_claim_parse: the claim script's answer into *out. Returns 0, or
 * MG_EPROTO for an answer of another shape (a Redis error included).
 */
int routes_claim_parse(const struct redisReply *rep, struct route_claim *out);

/* routes_bool_parse: refresh's, release's and node's answer: 1 or 0, or
 * MG_EPROTO. */
int routes_bool_parse(const struct redisReply *rep);

#endif
