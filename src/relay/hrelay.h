/* hrelay.h: the client end of an HTTP tunnel's data stream (hrelay.c). */
#ifndef MG_HRELAY_H
#define MG_HRELAY_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct http_head;
struct met_series;
struct mux_stream;
struct hrelay;

/*
 * An observer of the HTTP messages a relay carries (the inspector): each
 * callback gets obs_arg. Requests are reported in order, responses in
 * order; the nth response answers the nth request (pipelining keeps the
 * order). Body bytes are as on the wire (a chunked body keeps its
 * chunking), passed in place: the observer copies what it keeps. Interim
 * 1xx responses (100 Continue) are not reported; a 101 is a head followed
 * at once by resp_end (the rest is not HTTP). Any callback may be NULL.
 * None of them may free the relay.
 */
struct hrelay_obs {
	/* a request head: h as parsed, head/hlen its raw bytes as the
	 * visitor sent them (before a Host rewrite) */
	void (*req_head)(void *arg, const struct http_head *h,
	    const uint8_t *head, size_t hlen);
	void (*req_body)(void *arg, const uint8_t *p, size_t n);
	void (*req_end)(void *arg);
	void (*resp_head)(void *arg, const struct http_head *h,
	    const uint8_t *head, size_t hlen);
	void (*resp_body)(void *arg, const uint8_t *p, size_t n);
	void (*resp_end)(void *arg);
	/* the relay ends: why is NULL after an orderly end, else a short
	 * reason ("the local service reset the connection"); last call */
	void (*close)(void *arg, const char *why);
};

struct hrelay_conf {
	/* replaces each request's Host, or NULL; must outlive the relay */
	const char *host_rewrite;
	/* counters the relay adds to as it moves bytes (NULL: none): bytes
	 * written to the local service, and read from it. The relay holds
	 * a reference (met_ref) until it ends. */
	struct met_series *bytes_in, *bytes_out;
	/* once per final response head: the request's method, the status,
	 * the latency to the first response byte; may be NULL */
	void (*request)(void *arg, const char *method, int status,
	    uint64_t latency_us);
	/* called last as the relay ends, after its last use of arg and
	 * host_rewrite (their owner may free them then); may be NULL */
	void (*done)(void *arg);
	void *arg;
	/* an observer, or NULL (then the relay copies nothing) */
	const struct hrelay_obs *obs;
	void *obs_arg;
};

/*
 * hrelay_new: relay between fd (connected to the local web service; the
 * relay owns it) and st (the relay takes it), logging "METHOD URL STATUS
 * REASON LATENCY" per request, with the settings of hc (copied). The relay
 * frees itself when both directions are done or either fails; when a side
 * fails or the session dies, it resets fd (RST) rather than closing it in
 * order.
 */
struct hrelay *hrelay_new(struct event_base *base, int fd,
    struct mux_stream *st, const struct hrelay_conf *hc);

#endif
