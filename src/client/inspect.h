/*
 * inspect.h: the agent's inspector (docs/api.md, "The agent"): a bounded
 * store of the HTTP requests that went through the agent's HTTP tunnels
 * (heads and the first bytes of each body, secrets redacted), replay of a
 * captured request to the local service, HAR export, records of TCP, TLS
 * and UDP connections, and the JSON API over them, served by a struct web
 * (src/web). Design and bounds: docs/internals/inspect.md.
 *
 * The capture is fed by an hrelay observer (relay/hrelay.h): the relay
 * knows nothing of the inspector, the client wires them.
 */
#ifndef MG_INSPECT_H
#define MG_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct evbuffer;
struct evfeed;
struct hrelay_obs;
struct metrics;
struct web;
struct addrinfo;
struct inspect;
struct inspect_conn;

struct inspect_conf {
	size_t body_max;          /* bytes of each body kept */
	size_t max_bytes;         /* bytes of all captures kept */
	unsigned max_requests;    /* requests kept */
	unsigned max_conns;       /* connection records kept */
	int capture_secrets;      /* keep Authorization/Cookie values */
};

/*
 * inspect_new: an empty store with the bounds of cf (copied). It
 * registers mgrok_inspect_requests, mgrok_inspect_bytes and
 * mgrok_inspect_dropped_total in m and emits "request" and
 * "connection_closed" events on feed; both must outlive it. Never NULL.
 * Free with inspect_free.
 */
struct inspect *inspect_new(struct event_base *base,
    const struct inspect_conf *cf, struct metrics *m, struct evfeed *feed);
/* inspect_free: cancels replays in flight (their API requests get no
 * answer: the web listener must be freed first); NULL is fine */
void inspect_free(struct inspect *ins);
/* inspect_set_conf: new bounds (a reload); the store shrinks at once */
void inspect_set_conf(struct inspect *ins, const struct inspect_conf *cf);

/* ---- HTTP capture ---- */

/* The observer of every captured HTTP connection: pass it to hrelay_new
 * with the argument inspect_http_open returns. */
const struct hrelay_obs *inspect_http_obs(void);
/*
 * inspect_http_open: the capture of one connection of tunnel (copied),
 * from the visitor at remote_addr (copied; NULL: unknown). The result is
 * the observer's argument; the observer's close callback frees it.
 */
void *inspect_http_open(struct inspect *ins, const char *tunnel,
    const char *remote_addr);

/* ---- connection records (TCP, TLS, UDP) ---- */

/*
 * inspect_conn_open: a record of an active connection (type "tcp", "tls"
 * or "udp") of tunnel from remote_addr (NULL: unknown), strings copied.
 * The caller holds it until inspect_conn_close, which takes the final
 * byte counts (bytes_in: from the visitor) and the close reason (a static
 * string: "closed", "reset", "refused", "idle", "session lost") and emits
 * connection_closed. Never NULL.
 */
struct inspect_conn *inspect_conn_open(struct inspect *ins,
    const char *tunnel, const char *type, const char *remote_addr);
/* inspect_conn_set_sni: the server name a TLS connection's ClientHello
 * asked for (the agent peeks at the stream's first bytes) */
void inspect_conn_set_sni(struct inspect_conn *ic, const char *sni);
void inspect_conn_close(struct inspect_conn *ic, uint64_t bytes_in,
    uint64_t bytes_out, const char *reason);

/* ---- the API ---- */

/* What the agent says of one of its tunnels (strings valid during the
 * call that fills it). */
struct inspect_tunnel {
	const char *name, *type, *public_url, *status, *error;
	const char *local_host;
	uint16_t local_port;
	/* its addresses, resolved when the tunnel was made (a replay
	 * copies them: no lookup on the loop) */
	const struct addrinfo *local_ai;
	const char *host_rewrite;  /* replay rewrites Host to this, or NULL */
	uint64_t bytes_in, bytes_out, connections, connections_active,
	    requests;
	/* its health check: health_state NULL when it has none; else "up",
	 * "down" or "unknown", the last failure's reason ("" none) and the
	 * checks done */
	const char *health_state, *health_reason;
	uint64_t health_checks;
};

/* The agent behind the API, by callbacks (the client). */
struct inspect_source {
	size_t (*ntunnels)(void *arg);
	void (*tunnel)(void *arg, size_t i, struct inspect_tunnel *out);
	/* 1 when connected and every tunnel registered; else 0 and why */
	int (*ready)(void *arg, char *why, size_t cap);
	struct metrics *metrics;   /* for GET /metrics */
	struct evfeed *feed;       /* for GET /api/events */
	void *arg;
};

/* inspect_routes: serve the inspector API (docs/api.md) on w, answering
 * from ins and src (copied; it and w must outlive ins's use of them:
 * free w before ins). */
void inspect_routes(struct inspect *ins, struct web *w,
    const struct inspect_source *src);

/* figures: entries kept and the bytes they account for */
size_t inspect_nrequests(const struct inspect *ins);
size_t inspect_bytes(const struct inspect *ins);

/* inspect_requests_json: {"requests": [...]} newest first, at most limit
 * (0: the default 50), only tunnel's when tunnel is not NULL; for the API
 * and tests. New reference. */
json_t *inspect_requests_json(struct inspect *ins, size_t limit,
    const char *tunnel);
/* inspect_har_json: the captured requests as a HAR 1.2 log. New
 * reference. */
json_t *inspect_har_json(struct inspect *ins);
/* inspect_connections_json: {"connections": [...]}, newest first */
json_t *inspect_connections_json(struct inspect *ins, size_t limit,
    const char *tunnel);
/* inspect_clear: forget every captured request (those in flight finish
 * unrecorded) */
void inspect_clear(struct inspect *ins);

/* ---- replay input (a pure function, fuzzed) ---- */

/* A captured request, as replay sees it. */
struct inspect_req_view {
	const char *method, *uri, *proto;
	size_t nheaders;
	const char *const *names, *const *values;
	const unsigned char *redacted;   /* per header: the value was cut */
	const uint8_t *body;
	size_t body_len;                 /* bytes captured */
	uint64_t body_size;              /* bytes the request had */
	int truncated;
	const char *host_rewrite;        /* or NULL */
};

#define INSPECT_REPLAY_BODY_MAX (8u << 20)
#define INSPECT_REPLAY_HEADERS_MAX 128

/*
 * inspect_replay_parse: the replay request of docs/api.md: json[0..len)
 * is the POST body ({"id": ..., "method", "uri", "headers", "body",
 * "body_base64"}, each modification optional), orig the captured request
 * (orig_id its "rN" for messages). Appends the request's bytes to out and
 * returns 0; or returns -1 with *code 400 (bad input) or 409 (a truncated
 * body replayed unmodified) and a message in err, out untouched. Pure: no
 * I/O, no state.
 */
int inspect_replay_parse(const char *json, size_t len,
    const struct inspect_req_view *orig, const char *orig_id,
    struct evbuffer *out, int *code, char *err, size_t errcap);

#endif
