/*
 * http.h: HTTP/1.x pieces for HTTP tunnels, over Debian's http-parser:
 * an incremental message tracker (one per direction of a connection) that
 * finds where each head and message ends and what routing needs, request
 * head rewriting (X-Forwarded-*, Host), basic auth, error pages, and the
 * SNI of a TLS ClientHello. No I/O; buffers are evbuffers or ptr+len.
 */
#ifndef MG_HTTP_H
#define MG_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define HTTP_HEAD_MAX 16384   /* a longer request head gets 431 */
#define HTTP_HOST_MAX 255

/* What the head of one message said. */
struct http_head {
	int is_request;
	char method[24];          /* requests */
	char url[2048];           /* requests, cut if longer (logs only) */
	int status;               /* responses */
	char reason[64];          /* responses, e.g. "OK" */
	char host_header[HTTP_HOST_MAX + 8]; /* the Host value as sent (port
						included), for X-Forwarded-Host */
	char host[HTTP_HOST_MAX + 1]; /* Host without port, lower case;
					 an IPv6 literal keeps its [] */
	char authorization[512];  /* the Authorization header, or "" (also
				     when repeated or longer than this) */
	int http_major, http_minor;
	int keep_alive;           /* http_should_keep_alive after the head */
	int upgrade;              /* Connection: upgrade + Upgrade header */
	size_t head_len;          /* bytes of the head (through CRLFCRLF) */
};

/* One direction of a connection: feed it every byte in order. */
struct http_track;

/* http_track_new: a tracker for requests (is_request) or responses.
 * Free with http_track_free. */
struct http_track *http_track_new(int is_request);
void http_track_free(struct http_track *t);

/* The response tracker must know when a response answers HEAD (no body)
 * or CONNECT (a 2xx answer ends HTTP: HTTP_T_UPGRADE): call before feeding
 * that response. Either applies to the next final (non-1xx) response. */
void http_track_expect_no_body(struct http_track *t);
void http_track_expect_connect(struct http_track *t);

enum http_track_ev {
	HTTP_T_MORE = 0,   /* all of the input belongs to the current message;
			      feed more */
	HTTP_T_HEAD,       /* a head is complete: *h is filled; *used bytes
			      (the whole head) were consumed */
	HTTP_T_DONE,       /* the current message ended after *used bytes;
			      what follows belongs to the next message */
	HTTP_T_UPGRADE,    /* after *used bytes the connection is no longer
			      HTTP (101 Switching Protocols / CONNECT /
			      an Upgrade request). Usually in place of
			      HTTP_T_HEAD: *h and the head bytes are filled
			      and *used is the head. Only an Upgrade
			      request with a body reports HTTP_T_HEAD
			      first and HTTP_T_UPGRADE at the body's end
			      (*h untouched then) */
	HTTP_T_ERROR,      /* malformed; http_track_error says why */
	HTTP_T_TOO_LONG,   /* a head longer than HTTP_HEAD_MAX */
};

/*
 * http_track_feed: feed p[0..len). Returns an event and sets *used to the
 * bytes consumed by it. The caller feeds the rest (p + *used) again after
 * acting on the event. A head is reported only once it is complete; while
 * it is incomplete the tracker keeps the partial head internally (bounded
 * by HTTP_HEAD_MAX) and reports HTTP_T_MORE with *used = len.
 * Empty lines before a head (allowed between messages) are consumed and
 * counted in *used but are not part of the head (h->head_len).
 * A message without a body reports HTTP_T_HEAD and then, on the next
 * feed, HTTP_T_DONE with *used = 0. A request that is not a proper
 * request for routing (two Host headers, a Host that is not a host name,
 * obsolete line folding) is HTTP_T_ERROR.
 * *h is written only with HTTP_T_HEAD and HTTP_T_UPGRADE. Interim 1xx
 * responses (100 Continue) are messages of their own: HEAD and DONE, then
 * the final response follows.
 * After HTTP_T_UPGRADE every feed answers HTTP_T_UPGRADE again with
 * *used = 0 (nothing more is HTTP); after HTTP_T_ERROR or
 * HTTP_T_TOO_LONG every feed answers HTTP_T_ERROR with *used = 0.
 */
enum http_track_ev http_track_feed(struct http_track *t, const uint8_t *p,
    size_t len, size_t *used, struct http_head *h);

/* http_track_error: a short reason for HTTP_T_ERROR ("invalid header"). */
const char *http_track_error(const struct http_track *t);

/* The raw bytes of the last complete head (valid until the next feed). */
const uint8_t *http_track_head_bytes(const struct http_track *t,
    size_t *len);

struct http_rewrite {
	const char *client_ip;    /* the visitor's address, for
				     X-Forwarded-For (NULL: the lines are
				     left as they are) */
	const char *proto;        /* X-Forwarded-Proto: "http" or "https" */
	const char *fwd_host;     /* X-Forwarded-Host (the original Host
				     header value, port included) or NULL */
	const char *new_host;     /* replace Host with this, or NULL */
	int drop_authorization;   /* remove Authorization (basic auth was
				     ours) */
	int xff_trusted;          /* the peer is a trusted proxy: keep the
				     X-Forwarded-For lines it sent (their
				     last entry is the visitor) and add
				     client_ip only when there are none;
				     0: remove them, add client_ip alone */
};

/*
 * http_rewrite_head: write head (a complete request head, as returned by
 * http_track_head_bytes) to out with: X-Forwarded-For set as xff_trusted
 * says, X-Forwarded-Proto and X-Forwarded-Host set (replacing earlier
 * ones), Host replaced when new_host is set. Header names compare case-
 * insensitively; other headers and their order are kept byte for byte.
 * 0, or MG_EPROTO if head is not a request head.
 */
int http_rewrite_head(const uint8_t *head, size_t len,
    const struct http_rewrite *rw, struct evbuffer *out);

/*
 * http_xff_last: the last entry of the last X-Forwarded-For line of head
 * (a request head) into out (cut: -1), spaces trimmed: what the nearest
 * proxy saw. 0, or -1 when there is none. The text is the peer's: check it
 * before use.
 */
int http_xff_last(const uint8_t *head, size_t len, char *out, size_t cap);

/*
 * http_basic_auth_ok: does an Authorization header value ("Basic
 * base64(user:pass)") carry exactly user_pass ("user:pass")? Compared in
 * constant time for equal lengths.
 */
int http_basic_auth_ok(const char *authorization, const char *user_pass);

/*
 * http_error_response: append a complete small response to out: status
 * line, Content-Type text/html, Content-Length, Connection: close (or
 * keep-alive when keep_alive), extra headers (e.g. "WWW-Authenticate:
 * Basic realm=\"mgrok\"\r\n", may be NULL), and a short HTML page with
 * the title and detail (HTML-escaped).
 */
void http_error_response(struct evbuffer *out, int status,
    const char *detail, const char *extra_headers, int keep_alive);

/* http_status_text: "Not Found" for 404, ...; "Unknown" otherwise. */
const char *http_status_text(int status);

/*
 * http_sni_peek: look at the start of a TLS connection: returns 0 with the
 * SNI host name (lower case, "" when the ClientHello has none) in out,
 * MG_EAGAIN when more bytes are needed (a ClientHello up to 16 KiB plus
 * the record header), MG_EPROTO when it is not a TLS ClientHello.
 */
int http_sni_peek(const uint8_t *p, size_t len, char *out, size_t cap);

/*
 * http_hello_peek: http_sni_peek that also gives the ALPN protocols the
 * ClientHello offers, as the extension lists them (RFC 7301: each one
 * `len u8 | name`, without the list's own u16 length), in
 * alpn[0..*alpn_len): as many whole entries as fit in alpn_cap. A
 * malformed ALPN extension gives none (*alpn_len 0) and is not an error;
 * the return value is that of http_sni_peek. alpn may be NULL (cap 0).
 */
int http_hello_peek(const uint8_t *p, size_t len, char *out, size_t cap,
    uint8_t *alpn, size_t alpn_cap, size_t *alpn_len);

#endif
