/*
 * rstore.h: a small Redis client on the server's libevent loop (hiredis and
 * its libevent adapter): one connection for commands and Lua scripts, one
 * for pub/sub, both reconnected with back-off forever, every command bounded
 * in time and in number. The contract is in docs/internals/cluster-store.md.
 */
#ifndef MG_RSTORE_H
#define MG_RSTORE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply; /* <hiredis/hiredis.h> to look inside */
struct rstore;
struct rstore_script;

/* RSTORE_TIMEOUT_MS, RSTORE_MAX_INFLIGHT: the defaults of rstore_set_limits. */
#define RSTORE_TIMEOUT_MS 2000
#define RSTORE_MAX_INFLIGHT 10000
/* the reconnect back-off: from 0.5 s, doubled per failure up to 10 s,
 * each delay with +-20 % jitter; reset once a connection is up. */
#define RSTORE_BACKOFF_MIN_MS 500
#define RSTORE_BACKOFF_MAX_MS 10000

/*
 * The owner's hooks (any may be NULL). up: the command connection is
 * connected, authenticated, on its database and has every script loaded;
 * commands are accepted from now on. down: it was lost or could not be made
 * (reason: a short static or transient text, valid during the call);
 * commands are refused until the next up. Scripts and subscriptions are
 * redone by the store itself; cached state of the owner may be stale.
 * A hook may call any rstore function, rstore_free included.
 */
struct rstore_hooks {
	void (*up)(void *arg);
	void (*down)(void *arg, const char *reason);
	void *arg;
};

/*
 * A command's answer, called exactly once per command that rstore_cmd (or
 * rstore_cmdargv, rstore_eval) accepted, never from inside that call.
 * err is NULL on success, reply then being Redis's answer. Otherwise err
 * says why: "timeout" (no answer within the timeout; the connection is then
 * redone), "connection lost: ...", "closing" (rstore_free), or Redis's own
 * error text, reply then being that error reply (REDIS_REPLY_ERROR).
 * reply (NULL when there is none) and err are valid only during the call:
 * hiredis frees the reply when the callback returns.
 */
typedef void (*rstore_reply_fn)(
    void *arg, const struct redisReply *reply, const char *err);

/*
 * A pub/sub message: channel (NUL-terminated) and msg[0..len) (also
 * NUL-terminated). msg is NULL on each (re)subscription, which the store
 * does after every reconnect: messages published while it was away are
 * lost, so a subscriber drops what it caches from them at that call.
 */
typedef void (*rstore_msg_fn)(
    void *arg, const char *channel, const char *msg, size_t len);

/* rstore_stats: figures for metrics (mgrok_cluster_redis_*). */
struct rstore_stats {
	uint64_t
	    commands;    /* commands answered (with success or a Redis error) */
	uint64_t errors; /* commands failed: Redis error, timeout, lost */
	uint64_t reconnects; /* connections made after the first one */
	uint64_t timeouts;   /* commands that timed out */
	uint32_t in_flight;  /* commands accepted and not yet answered */
	int up;              /* the command connection is up */
	int sub_up;          /* the pub/sub connection is subscribed */
	uint64_t rtt_us_avg; /* smoothed round trip (1/8 weight per answer) */
	uint64_t rtt_us_last;
};

/* a parsed redis:// URL */
struct rstore_url {
	char host[256]; /* a name, an IPv4 or an IPv6 address (no brackets) */
	int port;       /* 6379 when absent */
	char user[128]; /* "" when none (AUTH with the password alone) */
	char pass[256]; /* "" when none (no AUTH) */
	int db;         /* 0 when absent */
};

/*
 * rstore_url_parse: url is redis://[[USER]:PASSWORD@]HOST[:PORT][/DB],
 * HOST a name, an IPv4 address or [IPv6]; PORT 1-65535; DB 0-999999; USER
 * and PASSWORD may hold %XX escapes. Returns 0 with *out filled, or
 * MG_EINVAL with a message naming what was wrong (the scheme, the host,
 * the port, the database number, ...) in err (errcap bytes).
 */
int rstore_url_parse(
    const char *url, struct rstore_url *out, char *err, size_t errcap);

/*
 * rstore_new: a store for url (see rstore_url_parse) on base; it starts
 * connecting at once, and hooks->up is called when it is ready. hooks is
 * copied. Returns the store (free it with rstore_free), or NULL with a
 * message in err when url is not valid. The host name is resolved with a
 * blocking lookup at each connect (hiredis): give an address.
 */
struct rstore *rstore_new(struct event_base *base, const char *url,
    const struct rstore_hooks *hooks, char *err, size_t errcap);

/*
 * rstore_free: closes both connections; every command still in flight is
 * answered with "closing" before it returns, and no callback or hook runs
 * after it. May be called from any callback or hook of the store. NULL is
 * fine.
 */
void rstore_free(struct rstore *r);

/* rstore_set_limits: the command timeout (ms, > 0) and the most commands in
 * flight (> 0); they apply to commands sent from now on. */
void rstore_set_limits(
    struct rstore *r, unsigned timeout_ms, unsigned max_inflight);

/*
 * rstore_cmd: sends a command, fmt as hiredis's (e.g. "SET %s %b"); cb
 * (not NULL) gets the answer once. Returns 0; MG_ECLOSED when the store is
 * not up (a down hook told why), MG_ELIMIT when max_inflight commands are
 * in flight, MG_EINVAL for a format hiredis refuses or a command that
 * changes the connection's mode ((P|S)(UN)SUBSCRIBE, MONITOR: use
 * rstore_subscribe): then cb is never called.
 */
int rstore_cmd(
    struct rstore *r, rstore_reply_fn cb, void *arg, const char *fmt, ...);

/* rstore_cmdargv: the same with argc arguments argv[i] of argvlen[i] bytes
 * (argvlen NULL: NUL-terminated); they are copied before it returns. */
int rstore_cmdargv(struct rstore *r, rstore_reply_fn cb, void *arg, int argc,
    const char **argv, const size_t *argvlen);

/*
 * rstore_script_add: registers the Lua script lua (copied) with the store,
 * which loads it (SCRIPT LOAD) on every connection before calling up, and
 * at once if up now. Returns the handle, owned by the store and valid
 * until rstore_free.
 */
const struct rstore_script *rstore_script_add(
    struct rstore *r, const char *lua);

/*
 * rstore_eval: runs script s with nkeys keys then the other arguments
 * (argv as rstore_cmdargv: KEYS first, then ARGV): EVALSHA, and on a
 * NOSCRIPT answer (a Redis that restarted empty, or a script flush) once
 * more with EVAL, so cb sees the script's answer either way. At most 60
 * arguments (MG_EINVAL beyond). Returns as rstore_cmd.
 */
int rstore_eval(struct rstore *r, const struct rstore_script *s,
    rstore_reply_fn cb, void *arg, int nkeys, int argc, const char **argv,
    const size_t *argvlen);

/*
 * rstore_subscribe: fn(arg, ...) gets every message on channel, for as long
 * as the store lives, over the store's pub/sub connection (made on the
 * first subscription, redone with back-off like the other). Returns 0,
 * MG_EINUSE if channel has a subscription already (one per channel), or
 * MG_EINVAL for an empty channel or one longer than 255 bytes.
 */
int rstore_subscribe(
    struct rstore *r, const char *channel, rstore_msg_fn fn, void *arg);

/* rstore_stats: the figures now into *st. */
void rstore_stats(const struct rstore *r, struct rstore_stats *st);

/* rstore_is_up: 1 if commands are accepted now. */
int rstore_is_up(const struct rstore *r);

#endif
