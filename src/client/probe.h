/* probe.h: after a session to the server failed before authenticating,
 * find out what listens at --server (a TLS server, an HTTP server, a plain
 * mgrok server, nothing that answers) so the user is told the cause and
 * the fix instead of "protocol error". */
#ifndef MG_PROBE_H
#define MG_PROBE_H

#include <stddef.h>
#include <stdint.h>

struct addrinfo;
struct event_base;
struct probe;

enum probe_kind {
	PROBE_SILENT = 0,  /* connected, nothing came back in time */
	PROBE_CLOSED,      /* closed (or reset) without a byte */
	PROBE_TLS,         /* a TLS record: a TLS server */
	PROBE_HTTP,        /* "HTTP/": an HTTP server */
	PROBE_MGROK,       /* an smux frame header: a plain mgrok server */
	PROBE_OTHER,       /* some other bytes */
	PROBE_UNREACHABLE, /* could not connect */
};

/* probe_request: the bytes that make each kind of server answer: TLS
 * (a ClientHello), HTTP (a GET) or MGROK (an smux SYN and a handshake
 * that a plain mgrok server answers with its challenge). *len set. */
const uint8_t *probe_request(enum probe_kind kind, size_t *len);

/* probe_classify: what the first n bytes a server sent say about it
 * (n == 0: PROBE_CLOSED). Pure; reads at most n bytes. */
enum probe_kind probe_classify(const uint8_t *p, size_t n);

/* probe_kind_name: "a TLS server", "an HTTP server", ... */
const char *probe_kind_name(enum probe_kind k);

typedef void (*probe_done_fn)(enum probe_kind kind, void *arg);

/*
 * probe_start: connect to ai (which must outlive the probe), send req,
 * read the first bytes for up to timeout_s and call done once with what
 * they say. NULL when it cannot start (done is then never called). The
 * probe frees itself after done; probe_cancel stops it before that.
 */
struct probe *probe_start(struct event_base *base, const struct addrinfo *ai,
    const uint8_t *req, size_t len, unsigned timeout_s, probe_done_fn done,
    void *arg);

/* probe_cancel: stop without calling done; NULL is fine. */
void probe_cancel(struct probe *p);

#endif
