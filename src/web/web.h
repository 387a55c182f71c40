/*
 * web.h: the HTTP listener of the admin API (server) and the inspector
 * (agent), on libevent's evhttp and the process's event loop: routes,
 * operator auth (Bearer token and/or client certificates), JSON replies
 * with jansson, Server-Sent Events fed by an event feed, and the static
 * pages embedded in the binary (src/web/assets, built into webassets.c).
 */
#ifndef MG_WEB_H
#define MG_WEB_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct evhttp_request;
struct evbuffer;
struct evfeed;
struct web;

struct web_conf {
	const char *what;         /* "admin" or "inspector", for messages */
	const char *addr;         /* HOST:PORT to listen on */
	const char *token;        /* Bearer token required, or NULL */
	/* TLS: when cert and key are set the listener speaks HTTPS; with
	 * client_ca it requires a client certificate signed by it (mTLS) */
	const char *cert, *key, *client_ca;
	/* refuse to start on a non-loopback address without a token or a
	 * client CA (the admin listener); the error says so */
	int require_auth_off_loopback;
	unsigned max_conns;       /* connections at once (0: 64) */
	unsigned max_sse;         /* SSE streams at once (0: 16) */
	size_t max_body;          /* request body (0: 1 MiB) */
	unsigned timeout_s;       /* idle/read timeout (0: 30) */
	/* a whole request within this of the accept or the last answer, or
	 * the connection ends (0: 15); event streams and requests being
	 * answered are exempt */
	unsigned request_timeout_s;
	/* asset set served under "/" ("dashboard" or "inspect"), or NULL */
	const char *assets;
};

/* web_new: listen on cf->addr. NULL with a message in err when the
 * address is bad or busy, TLS files fail to load, or auth is required
 * and missing. The strings of cf are copied. */
struct web *web_new(struct event_base *base, const struct web_conf *cf,
    char *err, size_t errcap);
/* web_free: closes the listener and every connection, SSE streams too */
void web_free(struct web *w);
/* the port it listens on (useful with port 0) and "HOST:PORT" */
uint16_t web_port(const struct web *w);
const char *web_addr(const struct web *w);

/*
 * Routes. methods: a mask of EVHTTP_REQ_* (other methods get 405 with
 * Allow). path: an exact path ("/api/v1/info"), or a prefix ending in
 * '/' that matches everything under it ("/api/v1/tunnels/"); the longest
 * match wins. handler(req, arg) replies (web_reply_* or web_sse), before
 * it returns or later from the loop (the inspector's replay answers once
 * the local service did; evhttp keeps req until then, and a reply to a
 * request whose connection closed meanwhile is dropped by evhttp). Auth,
 * Host checks (DNS rebinding) and the same-origin check of
 * POST/PUT/DELETE run before the handler.
 */
typedef void (*web_handler)(struct evhttp_request *req, void *arg);
void web_route(struct web *w, int methods, const char *path,
    web_handler handler, void *arg);

/* request helpers */
/* the decoded path, without the query ("/api/v1/tunnels/7") */
const char *web_path(struct web *w, struct evhttp_request *req);
/* the query parameter key, or NULL; valid during the handler */
const char *web_query(struct web *w, struct evhttp_request *req,
    const char *key);
/* the request body as JSON (an object); NULL and 400 already sent with a
 * message naming the problem when it is not */
json_t *web_body_json(struct evhttp_request *req);

/* replies */
/* web_reply_json: takes j (decref'd); Content-Type application/json */
void web_reply_json(struct evhttp_request *req, int code, json_t *j);
/* web_reply_error: {"error": msg} with code */
void web_reply_error(struct evhttp_request *req, int code, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
/* web_reply_buf: body (drained) with content type */
void web_reply_buf(struct evhttp_request *req, int code, const char *ctype,
    struct evbuffer *body);

/*
 * web_sse: turn req into a Server-Sent Events stream of feed's events:
 * first the kept events after Last-Event-ID (or after ?since=N, or all
 * kept), then each new one as "id: SEQ\nevent: TYPE\ndata: JSON\n\n";
 * a comment every 15 s keeps it alive. Refused with 503 past max_sse.
 * The stream ends when the peer goes, or at web_free.
 */
void web_sse(struct web *w, struct evhttp_request *req, struct evfeed *feed);

/* figures for the owner's metrics */
struct web_stats {
	uint64_t requests, unauthorized, refused;
	unsigned conns, sse;
};
void web_stats(const struct web *w, struct web_stats *out);

#endif
