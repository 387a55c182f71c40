/* hproxy.c: the HTTP(S) front of the server: --http-addr and --https-addr
 * listeners, routing each request by its Host to an HTTP tunnel (per
 * request, on keep-alive connections too), X-Forwarded-* headers, basic
 * auth, readable error pages, HTTPS termination, and SNI passthrough to
 * TLS tunnels. docs/internals/http.md explains the state machine. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "http/http.h"
#include "metrics/metrics.h"
#include "mux/mux.h"
#include "proto/proxyproto.h"
#include "proto/sthdr.h"
#include "relay/relay.h"
#include "server/accept.h"
#include "server/forward.h"
#include "server/group.h"
#include "server/hproxy.h"
#include "server/server_int.h"
#include "tls/certdir.h"
#include "tls/tls.h"
#include "util/acl.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mtime.h"
#include "util/loop.h"
#include "util/net.h"
#include "util/ratelim.h"
#include "util/xmalloc.h"

#define H_HEAD_TIMEOUT_S 10
/* a request under way (body, response, websocket) with no byte either way
 * for this long, or --http-idle-timeout if longer, ends */
#define H_ACTIVE_TIMEOUT_S 300
#define H_CLOSING_TIMEOUT_S 10    /* to write the last bytes out */
#define H_BUF_MAX (256 * 1024)
#define H_PEEK_MAX (16384 + 5)

enum hstate {
	H_HEAD = 0,     /* waiting for a request head */
	H_BODY,         /* forwarding the request's body */
	H_WAIT_RESP,    /* request sent; the response is not complete */
	H_WAIT_CLIENT,  /* the tunnel's client is away (lease grace) */
	H_RAW,          /* upgraded (websocket): bytes both ways */
	H_CLOSING,      /* flush out, then close */
};

/*
 * A public HTTP(S) connection. It keeps the id of the tunnel its current
 * request was routed to, never a pointer (the tunnel may end between two
 * requests of a keep-alive connection): hc_px looks it up. Only while it
 * waits for the tunnel's client is it on that tunnel's list (wait_px).
 */
struct hconn {
	LIST_ENTRY(hconn) wait_link;  /* wait_px->hwait, in H_WAIT_CLIENT */
	LIST_ENTRY(hconn) all_link;   /* srv->hconns */
	struct server *srv;
	SSL *ssl;
	int fd;
	int https;
	struct event *rev, *wev, *timer;
	struct event *pace;           /* a bandwidth wait (made when needed) */
	struct shaper *sh;            /* its tunnel's limit, held; NULL: none */
	int in_paused, out_paused;    /* waiting for tokens to read the
					 visitor / to take from the stream */
	int tls_more;                 /* TLS may hold more of the visitor's
					 bytes than the last read took */
	struct evbuffer *in, *out, *up;
	struct http_track *rq, *rs;
	struct mux_stream *st;
	uint32_t px_id;               /* the tunnel of the current request */
	struct proxy *wait_px;        /* the tunnel whose hwait holds us */
	struct http_head req;
	enum hstate state;
	int req_done, resp_done, resp_started, resp_keep;
	int in_eof, busy, dead;
	int reset;                    /* end with RST, no close_notify */
	int retried;                  /* this request went to a second group
					 member already */
	int head_timer;               /* the timer counts a head's arrival */
	unsigned nreq;                /* requests routed on this connection */
	uint64_t last_io_ms;          /* bytes moved either way (monotonic) */
	int interim;                  /* a 1xx response is being relayed */
	uint64_t t_req_us, t_first_us;
	struct smet_conn rec;         /* figures of its current tunnel */
	uint64_t unrouted[2];         /* bytes while routed to none */
	uint64_t msg_bytes[2];        /* the current request's and its
					 response's bytes (for its event) */
	struct sockaddr_storage peer_sa; /* the visitor (see lb) */
	char peer_ip[64];
	char peer[NET_ADDRSTR_MAX];
	/* a --trusted-proxies peer: it may start with a PROXY protocol
	 * header (pp_wait until the first bytes tell); without one it is
	 * an HTTP proxy (lb) whose X-Forwarded-For names each request's
	 * visitor; lb_sa is its own address */
	int pp_wait, lb;
	struct sockaddr_storage lb_sa;
	/* another node of the cluster forwarded it here: it is never
	 * forwarded again (hc_hand_off) */
	int fwd_in;
};

static void hc_process(struct hconn *hc);
static int hc_proxy_header(struct hconn *hc);
static int hc_retry(struct hconn *hc);
static void hc_lb_visitor(struct hconn *hc);
static void hc_arm_timer(struct hconn *hc);
static int hc_flush(struct hconn *hc);
static void hc_arm(struct hconn *hc);

/* ---- life cycle ---- */

/* The tunnel of the current request, or NULL (none yet, or it ended). */
static struct proxy *
hc_px(const struct hconn *hc)
{
	return registry_get(&hc->srv->reg, hc->px_id);
}

/* Route the connection to px (NULL: to none), keeping each tunnel's count
 * of connections. */
static void
hc_set_px(struct hconn *hc, struct proxy *px)
{
	struct proxy *old = hc_px(hc);

	if (old == px && (px == NULL || hc->rec.px_id == px->id))
		return;
	if (old)
		old->nhconns--;
	smet_conn_end(hc->srv, &hc->rec, "closed");
	/* the limit of the tunnel it is routed to; kept if that tunnel ends
	 * under an exchange (the tunnel's shaper outlives it) */
	if (px == NULL || px->shaper != hc->sh) {
		shaper_unref(hc->sh);
		hc->sh = px ? shaper_ref(px->shaper) : NULL;
	}
	if (px) {
		px->nhconns++;
		smet_conn_begin(&hc->rec, px, (struct sockaddr *)&hc->peer_sa);
		/* what came before the route (the head) is this tunnel's */
		for (int d = 0; d < 2; d++) {
			smet_conn_bytes(&hc->rec, (enum smet_dir)d,
			    hc->unrouted[d]);
			hc->unrouted[d] = 0;
		}
	}
	hc->px_id = px ? px->id : 0;
}

/* n bytes in (d SMET_IN) from the visitor or out to it */
static void
hc_count(struct hconn *hc, enum smet_dir d, uint64_t n)
{
	if (hc->rec.active)
		smet_conn_bytes(&hc->rec, d, n);
	else
		hc->unrouted[d] += n;
}

static void
hc_unwait(struct hconn *hc)
{
	if (hc->wait_px) {
		LIST_REMOVE(hc, wait_link);
		hc->wait_px->nhwait--;
		hc->wait_px = NULL;
	}
}

static void
hc_destroy(struct hconn *hc)
{
	hc_unwait(hc);
	smet_conn_end(hc->srv, &hc->rec, hc->reset ? "reset" : "closed");
	hc_set_px(hc, NULL);
	smet_unrouted(hc->srv, SMET_IN, hc->unrouted[SMET_IN]);
	smet_unrouted(hc->srv, SMET_OUT, hc->unrouted[SMET_OUT]);
	LIST_REMOVE(hc, all_link);
	if (hc->st)
		mux_stream_free(hc->st);
	event_free(hc->rev);
	event_free(hc->wev);
	event_free(hc->timer);
	if (hc->pace)
		event_free(hc->pace);
	shaper_unref(hc->sh);
	evbuffer_free(hc->in);
	evbuffer_free(hc->out);
	evbuffer_free(hc->up);
	http_track_free(hc->rq);
	http_track_free(hc->rs);
	if (hc->ssl) {
		if (!hc->reset)
			tls_shutdown(hc->ssl);
		SSL_free(hc->ssl);
	}
	if (hc->fd < 0)
		; /* handed to another node (hc_hand_off) */
	else if (hc->reset)
		proxy_reset_close(hc->fd);
	else
		close(hc->fd);
	hc->srv->nhconns--;
	free(hc);
}

/* Close now, or when our own handler unwinds. */
static void
hc_close(struct hconn *hc)
{
	if (hc->busy)
		hc->dead = 1;
	else
		hc_destroy(hc);
}

/* A response cut short (the session died, the service reset): the visitor
 * must see a reset, never an orderly end that looks complete. */
static void
hc_reset(struct hconn *hc)
{
	log_info("http %s: response cut short by the tunnel: connection reset",
	    hc->peer);
	hc->reset = 1;
	hc_close(hc);
}

/* Answer with an error page and close once it is written. */
static void
hc_fail(struct hconn *hc, int status, const char *detail, const char *extra)
{
	struct proxy *px = hc_px(hc);
	char m[64], u[512];

	if (hc->state == H_CLOSING)
		return;
	log_info("http %s: %s %s -> %d (%s)", hc->peer,
	    hc->req.method[0] ? log_esc(hc->req.method,
	    strlen(hc->req.method), m, sizeof(m)) : "-",
	    hc->req.url[0] ? log_esc(hc->req.url, strlen(hc->req.url), u,
	    sizeof(u)) : "-", status, detail);
	http_error_response(hc->out, status, detail, extra, 0);
	smet_http_request(hc->srv, px, hc->req.method[0] ? hc->req.method :
	    "-", hc->req.url, status, 0, (struct sockaddr *)&hc->peer_sa,
	    0, 0);
	hc->state = H_CLOSING;
	hc_arm_timer(hc);
	if (hc->st) {
		mux_stream_free(hc->st);
		hc->st = NULL;
	}
	hc_flush(hc);
}

/* ---- bandwidth ---- */

static void hc_on_pace(evutil_socket_t fd, short what, void *arg);

/* Direction dir (SHAPER_IN: reading the visitor; SHAPER_OUT: taking the
 * response from the stream) is out of tokens: it stops (hc_arm and
 * hc_up_readable look at the flags) until the pace timer, when want bytes
 * (at most 16 KiB) may go. */
static void
hc_pace(struct hconn *hc, enum shaper_dir dir, uint64_t now, size_t want)
{
	uint64_t w = shaper_wait_us(hc->sh, dir, now, want < 16384 ? want :
	    16384);
	struct timeval tv;

	if (w == 0)
		w = 1;
	tv.tv_sec = (time_t)(w / 1000000);
	tv.tv_usec = (suseconds_t)(w % 1000000);
	if (dir == SHAPER_IN)
		hc->in_paused = 1;
	else
		hc->out_paused = 1;
	smet_bw_throttled(hc_px(hc), (enum smet_dir)dir);
	if (hc->pace == NULL && (hc->pace = evtimer_new(hc->srv->base,
	    hc_on_pace, hc)) == NULL)
		abort();
	evtimer_add(hc->pace, &tv);
}

/* ---- public side I/O ---- */

static ssize_t
hc_read(struct hconn *hc)
{
	struct evbuffer_iovec v[2];
	struct iovec iov[2];
	size_t want = 65536, room;
	int lim = shaper_limited(hc->sh, SHAPER_IN), nv, ww = 0;
	ssize_t n;

	if (lim) {
		uint64_t now = mtime_us();
		want = shaper_take(hc->sh, SHAPER_IN, now, want);
		if (want < 16384) { /* not worth a read: wait for more */
			shaper_refund(hc->sh, SHAPER_IN, want);
			hc_pace(hc, SHAPER_IN, now, 65536);
			errno = EAGAIN;
			return -1;
		}
	}
	nv = evbuffer_reserve_space(hc->in, (ev_ssize_t)want, v, 2);
	room = want;
	for (int i = 0; i < nv; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len < room ? v[i].iov_len : room;
		room -= iov[i].iov_len;
	}
	n = hc->ssl ? tls_readv(hc->ssl, iov, nv, &ww) : readv(hc->fd, iov, nv);
	/* a read that filled its room may have left records in TLS's
	 * read-ahead, which no socket event announces: hc_arm reads again */
	hc->tls_more = hc->ssl != NULL && n > 0 && (size_t)n == want;
	if (lim)
		shaper_refund(hc->sh, SHAPER_IN, n > 0 ? want - (size_t)n :
		    want);
	if (n <= 0) {
		int saved = errno;
		evbuffer_commit_space(hc->in, NULL, 0);
		errno = saved;
		return n;
	}
	{
		ssize_t left = n;
		for (int i = 0; i < nv; i++) {
			size_t k = (size_t)left < v[i].iov_len ? (size_t)left :
			    v[i].iov_len;
			v[i].iov_len = k;
			left -= (ssize_t)k;
		}
	}
	evbuffer_commit_space(hc->in, v, nv);
	hc_count(hc, SMET_IN, (uint64_t)n);
	return n;
}

/* Write what the public side takes; 0 when hc is gone (closed). */
static int
hc_flush(struct hconn *hc)
{
	while (evbuffer_get_length(hc->out) > 0) {
		int wr = 0;
		ssize_t n = hc->ssl ? tls_write_evbuffer(hc->ssl, hc->out, &wr) :
		    evbuffer_write(hc->out, hc->fd);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0) {
			int busy = hc->busy;
			hc_close(hc);
			return busy; /* when busy, it goes once unwound */
		}
		hc_count(hc, SMET_OUT, (uint64_t)n);
	}
	if (evbuffer_get_length(hc->out) == 0 && hc->state == H_CLOSING) {
		int busy = hc->busy;
		hc_close(hc);
		return busy;
	}
	hc_arm(hc);
	return 1;
}

static void
hc_arm(struct hconn *hc)
{
	int want_read = !hc->in_eof && hc->state != H_CLOSING &&
	    !hc->in_paused && evbuffer_get_length(hc->in) < H_BUF_MAX &&
	    evbuffer_get_length(hc->up) < H_BUF_MAX;

	if (want_read) {
		event_add(hc->rev, NULL);
		/* cleared by the next read that does not fill its room */
		if (hc->tls_more)
			event_active(hc->rev, EV_READ, 1);
	} else
		event_del(hc->rev);
	/* a response left on the stream (the out buffer was full) goes on
	 * from hc_on_write once there is room */
	if (evbuffer_get_length(hc->out) > 0 || (hc->st != NULL &&
	    hc->state != H_CLOSING && !hc->out_paused &&
	    mux_stream_queued(hc->st) > 0))
		event_add(hc->wev, NULL);
	else
		event_del(hc->wev);
}

/* ---- the upstream (the tunnel's stream) ---- */

static void
hc_push_up(struct hconn *hc)
{
	if (hc->st && evbuffer_get_length(hc->up) > 0)
		mux_stream_send_buffer(hc->st, hc->up);
}

static void
hc_log_response(struct hconn *hc)
{
	struct proxy *px = hc_px(hc);
	char eh[HTTP_HOST_MAX * 4 + 4], em[100], er[260], eu[1024];
	uint64_t lat = (hc->t_first_us ? hc->t_first_us : mtime_us()) -
	    hc->t_req_us;
	const struct http_head *h = &hc->req;

	smet_http_request(hc->srv, px, h->method, h->url, hc->req.status, lat,
	    (struct sockaddr *)&hc->peer_sa, hc->msg_bytes[0],
	    hc->msg_bytes[1]);
	hc->msg_bytes[0] = hc->msg_bytes[1] = 0;
	log_info_later("http %s %s %s %s %d %s %.1fms", hc->peer,
	    log_esc(h->host, strlen(h->host), eh, sizeof(eh)),
	    log_esc(h->method, strlen(h->method), em, sizeof(em)),
	    log_esc(h->url, strlen(h->url), eu, sizeof(eu)), hc->req.status,
	    log_esc(hc->req.reason, strlen(hc->req.reason), er, sizeof(er)),
	    (double)lat / 1000.0);
}

/* The current request and its response are both complete. */
static void
hc_exchange_done(struct hconn *hc)
{
	hc_log_response(hc);
	if (!hc->req.keep_alive || !hc->resp_keep) {
		hc->state = H_CLOSING;
		hc_flush(hc);
		return;
	}
	hc->state = H_HEAD;
	hc->head_timer = 0; /* idle until the next request starts */
	hc_arm_timer(hc);
	hc->req_done = hc->resp_done = hc->resp_started = 0;
	/* a fresh request parser: the last request may have asked for an
	 * upgrade that the service refused */
	http_track_free(hc->rq);
	hc->rq = http_track_new(1);
	hc->req.method[0] = hc->req.url[0] = '\0';
	hc_process(hc); /* a pipelined request may be waiting */
}

/* The first contiguous piece of buf (len bytes in all) for a tracker:
 * the trackers are incremental, so the queue is never pulled up into one
 * block (a copy of up to a whole window per round). */
static const uint8_t *
hc_chunk(struct evbuffer *buf, size_t len, size_t *clen)
{
	struct evbuffer_iovec v;

	*clen = 0;
	if (len == 0)
		return (const uint8_t *)"";
	if (evbuffer_peek(buf, -1, NULL, &v, 1) >= 1 && v.iov_len > 0) {
		*clen = v.iov_len < len ? v.iov_len : len;
		return v.iov_base;
	}
	*clen = len;
	return evbuffer_pullup(buf, (ev_ssize_t)len);
}

static void
hc_up_readable(struct mux_stream *st, void *arg)
{
	struct hconn *hc = arg;
	struct evbuffer *rx = mux_stream_rx(st);
	size_t moved = 0, want = 0, left = SIZE_MAX;
	int lim = shaper_limited(hc->sh, SHAPER_OUT);
	uint64_t now = 0;

	int after_head = 0;

	/* a bandwidth limit: take from the stream only what it allows (the
	 * rest waits in the stream's queue, whose window holds the agent) */
	if (lim) {
		want = evbuffer_get_length(rx);
		if (want > H_BUF_MAX)
			want = H_BUF_MAX;
		left = 0;
		if (!hc->out_paused && want > 0) {
			now = mtime_us();
			left = shaper_take(hc->sh, SHAPER_OUT, now, want);
			if (left < want && left < 16384) {
				/* a few bytes: wait for a chunk */
				shaper_refund(hc->sh, SHAPER_OUT, left);
				left = 0;
			}
		}
	}
	hc->busy = 1;
	/* after a head, feed once more even with nothing left: a response
	 * without a body (HEAD, 204, 304) ends right there */
	while (((evbuffer_get_length(rx) > 0 && left > 0) || after_head) &&
	    evbuffer_get_length(hc->out) < H_BUF_MAX && !hc->dead) {
		size_t len = evbuffer_get_length(rx) < left ?
		    evbuffer_get_length(rx) : left, used = len;
		struct http_head rh;
		enum http_track_ev ev = HTTP_T_MORE;

		after_head = 0;
		if (hc->state != H_RAW && !hc->resp_done) {
			size_t cl;
			const uint8_t *cp = hc_chunk(rx, len, &cl);

			ev = http_track_feed(hc->rs, cp, cl, &used, &rh);
			after_head = ev == HTTP_T_HEAD;
		} else if (hc->state != H_RAW) {
			/* bytes after a complete response, before the next
			 * request: not HTTP we asked for; drop the stream */
			hc_fail(hc, 502, "the local service sent bytes after "
			    "its response", NULL);
			break;
		}
		if (!hc->resp_started && (used > 0 || ev != HTTP_T_MORE)) {
			struct proxy *m = hc_px(hc);
			hc->resp_started = 1;
			hc->t_first_us = mtime_us();
			if (m != NULL && m->group_id)
				group_result(m, 0);
		}
		evbuffer_remove_buffer(rx, hc->out, used);
		hc->msg_bytes[1] += used;
		moved += used;
		if (lim)
			left -= used;
		if (used)
			hc->last_io_ms = mtime_ms();
		if (ev == HTTP_T_HEAD && rh.status >= 100 && rh.status < 200 &&
		    rh.status != 101) {
			hc->interim = 1; /* 100 Continue: the answer follows */
		} else if (ev == HTTP_T_HEAD) {
			hc->interim = 0;
			hc->req.status = rh.status;
			snprintf(hc->req.reason, sizeof(hc->req.reason), "%s",
			    rh.reason);
			hc->resp_keep = rh.keep_alive;
		} else if (ev == HTTP_T_DONE && hc->interim) {
			hc->interim = 0;
			http_track_free(hc->rs);
			hc->rs = http_track_new(0);
			continue;
		} else if (ev == HTTP_T_DONE) {
			hc->resp_done = 1;
		} else if (ev == HTTP_T_UPGRADE) {
			hc->state = H_RAW;
			hc_log_response(hc);
		} else if (ev == HTTP_T_ERROR || ev == HTTP_T_TOO_LONG) {
			log_warn("http %s: bad response from the tunnel: %s",
			    hc->peer, http_track_error(hc->rs));
			if (hc->resp_started && evbuffer_get_length(hc->out))
				hc->state = H_CLOSING;
			else
				hc_fail(hc, 502, "the local service sent an "
				    "invalid response", NULL);
			break;
		}
		if (hc->resp_done) {
			http_track_free(hc->rs);
			hc->rs = http_track_new(0);
			break;
		}
	}
	if (moved && hc->st)
		mux_stream_consumed(st, moved);
	if (lim && !hc->out_paused && want > 0) {
		int more = hc->st == st && evbuffer_get_length(rx) > 0;
		shaper_refund(hc->sh, SHAPER_OUT, left);
		if (more && left == 0 && !hc->dead)
			hc_pace(hc, SHAPER_OUT, now, evbuffer_get_length(rx));
	}
	if (!hc->dead && mux_stream_eof(st) && hc->st == st) {
		/* the local side closed */
		int reset = mux_stream_reset(st);

		hc->st = NULL;
		mux_stream_free(st);
		if (reset && hc->resp_started && (!hc->resp_done ||
		    hc->state == H_RAW))
			hc_reset(hc);
		else if (!hc->resp_started && hc_retry(hc))
			; /* another member has the request now */
		else if (!hc->resp_started)
			hc_fail(hc, 502, "the tunnel's local service is "
			    "unreachable", NULL);
		else if (!hc->resp_done && hc->state != H_CLOSING) {
			hc->state = H_CLOSING; /* close-delimited body */
		}
	}
	if (!hc->dead && hc->resp_done && hc->req_done &&
	    hc->state == H_WAIT_RESP)
		hc_exchange_done(hc);
	else if (!hc->dead && hc->state == H_RAW &&
	    evbuffer_get_length(hc->in) > 0)
		hc_process(hc); /* sent before the 2xx/101 arrived */
	hc->busy = 0;
	if (hc->dead) {
		hc_destroy(hc);
		return;
	}
	if (hc->st == st && mux_stream_queued(st) > 0 &&
	    evbuffer_get_length(hc->out) >= H_BUF_MAX)
		event_add(hc->wev, NULL); /* resumed from hc_on_write */
	hc_flush(hc);
}

static void
hc_up_writable(struct mux_stream *st, void *arg)
{
	struct hconn *hc = arg;

	hc_push_up(hc);
	hc_arm(hc);
}

static void
hc_up_closed(struct mux_stream *st, void *arg)
{
	struct hconn *hc = arg;

	/* the session died: this stream goes with it */
	hc->st = NULL;
	if (!hc->resp_started && hc_retry(hc))
		hc_flush(hc);
	else if (!hc->resp_started)
		hc_fail(hc, 502, "the tunnel went offline", NULL);
	else if (!hc->resp_done || hc->state == H_RAW)
		hc_reset(hc);
	else {
		hc->state = H_CLOSING;
		hc_flush(hc);
	}
}

static const struct mux_stream_cbs hc_up_cbs = {
	.readable = hc_up_readable,
	.writable = hc_up_writable,
	.closed = hc_up_closed,
};

static int
hc_open_stream(struct hconn *hc, struct proxy *px)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct mux_stream *st;

	if (getpeername(hc->fd, (struct sockaddr *)&ss, &sl) < 0)
		ss.ss_family = AF_UNSPEC;
	if (px->proxy_protocol == 2) {
		/* metadata for an agent that passes it on: the Host, or the
		 * SNI and the protocol negotiated here */
		struct stream_info si = { hc->req.host, NULL, 0 };
		uint8_t alpn[256];
		if (hc->ssl != NULL) {
			const char *sn = SSL_get_servername(hc->ssl,
			    TLSEXT_NAMETYPE_host_name);
			const unsigned char *a = NULL;
			unsigned al = 0;
			if (sn != NULL)
				si.authority = sn;
			SSL_get0_alpn_selected(hc->ssl, &a, &al);
			if (al > 0 && al < sizeof(alpn)) {
				alpn[0] = (uint8_t)al;
				memcpy(alpn + 1, a, al);
				si.alpn = alpn;
				si.alpn_len = al + 1;
			}
		}
		st = proxy_stream_open_info(px, (struct sockaddr *)&ss, &si);
	} else
		st = proxy_stream_open(px, (struct sockaddr *)&ss);
	if (st == NULL)
		return MG_ELIMIT;
	mux_stream_set_cbs(st, &hc_up_cbs, hc);
	hc->st = st;
	return 0;
}

/* ---- requests ---- */

static struct proxy *
hc_route(struct server *srv, const char *host, int https)
{
	struct proxy *px = registry_by_host(&srv->reg, host);

	if (px && (px->type == PROXY_HTTP || (px->type == PROXY_HTTPS &&
	    https)))
		return px;
	return NULL;
}

/* Send the request head to the tunnel (the client is there). */
static void
hc_forward_head(struct hconn *hc, struct proxy *px)
{
	struct http_rewrite rw;
	const uint8_t *head;
	size_t hl;

	if (hc->st == NULL && hc_open_stream(hc, px) < 0) {
		hc_fail(hc, 502, "the tunnel has too many open streams", NULL);
		return;
	}
	memset(&rw, 0, sizeof(rw));
	rw.client_ip = hc->peer_ip;
	rw.proto = hc->https ? "https" : "http";
	rw.fwd_host = hc->req.host_header[0] ? hc->req.host_header :
	    hc->req.host;
	rw.drop_authorization = px->basic_auth[0] != '\0';
	rw.xff_trusted = hc->lb;
	head = http_track_head_bytes(hc->rq, &hl);
	if (http_rewrite_head(head, hl, &rw, hc->up) < 0) {
		hc_fail(hc, 400, "malformed request head", NULL);
		return;
	}
	if (strcmp(hc->req.method, "HEAD") == 0)
		http_track_expect_no_body(hc->rs);
	else if (strcmp(hc->req.method, "CONNECT") == 0)
		http_track_expect_connect(hc->rs); /* a 2xx makes it raw */
	hc->state = hc->req_done ? H_WAIT_RESP : H_BODY;
	hc_push_up(hc);
}

/* the value of the request's header name (lower case), trimmed; NULL
 * when it has none */
static const char *
hc_header(struct hconn *hc, const char *name, size_t *len)
{
	size_t hl, nl = strlen(name);
	const uint8_t *h = http_track_head_bytes(hc->rq, &hl), *p, *e, *lim;

	if (h == NULL)
		return NULL;
	lim = h + hl;
	for (p = h; p < lim; p = e + 1) {
		const uint8_t *v;
		if ((e = memchr(p, '\n', (size_t)(lim - p))) == NULL)
			break;
		if ((size_t)(e - p) <= nl || p[nl] != ':' ||
		    strncasecmp((const char *)p, name, nl) != 0)
			continue;
		v = p + nl + 1;
		while (v < e && (*v == ' ' || *v == '\t'))
			v++;
		while (e > v && (e[-1] == '\r' || e[-1] == ' ' ||
		    e[-1] == '\t'))
			e--;
		*len = (size_t)(e - v);
		return (const char *)v;
	}
	return NULL;
}

/* the member of group g for this request (not exclude) */
static struct proxy *
hc_pick(struct hconn *hc, struct proxy *g, uint32_t exclude)
{
	const char *hv = NULL;
	size_t hvl = 0;

	if (g->lb == LB_HASH_HEADER)
		hv = hc_header(hc, g->lb_header, &hvl);
	return group_pick(g, (struct sockaddr *)&hc->peer_sa, hc->req.host, hv,
	    hvl, exclude);
}

/*
 * The request's member refused it before a byte of an answer: try it once
 * on another member of the group, when the request is whole and has no
 * body (so it can be sent again as it was). 1 when it went there.
 */
static int
hc_retry(struct hconn *hc)
{
	struct proxy *m = hc_px(hc), *g, *n;
	size_t hl;

	if (m == NULL || m->group_id == 0)
		return 0;
	group_result(m, 1);
	if (hc->retried || !hc->req_done ||
	    http_track_head_bytes(hc->rq, &hl) == NULL ||
	    hc->msg_bytes[0] != hl ||
	    (g = registry_get(&hc->srv->reg, m->group_id)) == NULL ||
	    (n = hc_pick(hc, g, m->id)) == NULL)
		return 0;
	hc->retried = 1;
	smet_group_retry(hc->srv);
	if (hc->st) {
		mux_stream_free(hc->st);
		hc->st = NULL;
	}
	evbuffer_drain(hc->up, evbuffer_get_length(hc->up));
	hc_set_px(hc, n);
	hc_forward_head(hc, n);
	return !hc->dead;
}

/*
 * The first request of a connection is for a host another node may serve
 * (none here): the whole connection goes to the cluster's forwarding,
 * with the bytes read so far (the head, as the tracker kept it, and what
 * followed); hc ends without closing the socket.
 */
static void
hc_hand_off(struct hconn *hc)
{
	struct evbuffer *pre = evbuffer_new();
	const uint8_t *head;
	size_t hl;
	int fd = hc->fd;

	head = http_track_head_bytes(hc->rq, &hl);
	evbuffer_add(pre, head, hl);
	evbuffer_add_buffer(pre, hc->in);
	event_del(hc->rev);
	event_del(hc->wev);
	hc->fd = -1;
	forward_visitor(hc->srv, FWD_HTTP, hc->req.host, 0, fd,
	    (struct sockaddr *)&hc->peer_sa, pre);
	evbuffer_free(pre);
	hc_close(hc); /* (called under busy: ends as the handler unwinds) */
}

static void
hc_on_head(struct hconn *hc)
{
	struct proxy *px = hc_route(hc->srv, hc->req.host, hc->https);
	char detail[900];

	if (hc->lb)
		hc_lb_visitor(hc);
	hc->t_req_us = mtime_us();
	hc->t_first_us = 0;
	hc->retried = 0;
	if (px == NULL && hc->nreq == 0 && !hc->fwd_in && hc->ssl == NULL &&
	    hc->req.host[0] && forward_on(hc->srv)) {
		hc_hand_off(hc);
		return;
	}
	if (px != NULL && forward_fenced(hc->srv, px)) {
		snprintf(detail, sizeof(detail), "%s is not served by this "
		    "node now: it is cut off from the cluster's state.",
		    hc->req.host);
		hc_fail(hc, 503, detail, "Retry-After: 5\r\n");
		return;
	}
	if (px == NULL) {
		snprintf(detail, sizeof(detail), "No tunnel is serving %s.",
		    hc->req.host[0] ? hc->req.host : "this address (no Host)");
		hc_fail(hc, 404, detail, NULL);
		return;
	}
	if (px->is_group || px->health < 0) {
		/* a group: the member for this request; a tunnel whose
		 * service is down: none */
		struct proxy *m = px->is_group ? hc_pick(hc, px, 0) : NULL;
		if (m == NULL) {
			smet_visitor_refused(hc->srv, px, SMET_REF_DOWN,
			    (struct sockaddr *)&hc->peer_sa, px->is_group ?
			    "no member of the group is up" : px->health_reason);
			if (px->is_group)
				snprintf(detail, sizeof(detail), "No member of "
				    "group %s, which serves %s, is up: their "
				    "agents report their services down, or are "
				    "away.", px->name, hc->req.host);
			else
				snprintf(detail, sizeof(detail), "The service "
				    "behind %s is down (its agent's health "
				    "check: %s).", hc->req.host,
				    px->health_reason[0] ? px->health_reason :
				    "failing");
			hc_fail(hc, 503, detail, "Retry-After: 5\r\n");
			return;
		}
		px = m;
	}
	if (hc->st && hc->px_id != px->id) {
		/* another tunnel than the last request's (or the same name
		 * registered anew): that stream belongs to the old one */
		mux_stream_free(hc->st);
		hc->st = NULL;
	}
	if (hc->px_id != px->id &&
	    px->nhconns >= hc->srv->cf->http_max_conns_tunnel) {
		smet_refused(hc->srv, SMET_REF_TUNNEL_CAP);
		hc_fail(hc, 503, "This tunnel has too many open connections; "
		    "try again shortly.", "Retry-After: 1\r\n");
		return;
	}
	if (proxy_visitor_allowed(px, (struct sockaddr *)&hc->peer_sa) < 0) {
		hc_fail(hc, 403, "This tunnel does not accept visitors from "
		    "your address.", NULL);
		return;
	}
	{
		unsigned retry;
		char ra[40];
		if (proxy_rate_ok(px, 1, (struct sockaddr *)&hc->peer_sa,
		    &retry) < 0) {
			snprintf(ra, sizeof(ra), "Retry-After: %u\r\n", retry);
			hc_fail(hc, 429, "Too many requests from your address "
			    "to this tunnel; try again shortly.", ra);
			return;
		}
		/* a connection new to this tunnel counts as a visitor */
		if (hc->px_id != px->id && proxy_visitors_ok(px) < 0) {
			hc_fail(hc, 429, "This tunnel's owner has too many "
			    "visitors at once; try again shortly.",
			    "Retry-After: 1\r\n");
			return;
		}
	}
	hc_set_px(hc, px);
	hc->nreq++;
	if (px->basic_auth[0] && !http_basic_auth_ok(hc->req.authorization,
	    px->basic_auth)) {
		hc_fail(hc, 401, "This tunnel is password protected.",
		    "WWW-Authenticate: Basic realm=\"mgrok\"\r\n");
		return;
	}
	if (px->sess == NULL) {
		/* the client is away: wait for it, bounded in time by the
		 * grace and in number like waiting TCP connections */
		if (px->nhwait >= hc->srv->cf->max_pending) {
			hc_fail(hc, 502, "The tunnel is offline.", NULL);
			return;
		}
		px->nhwait++;
		hc->state = H_WAIT_CLIENT;
		hc->wait_px = px;
		LIST_INSERT_HEAD(&px->hwait, hc, wait_link);
		return;
	}
	hc_forward_head(hc, px);
}

static void
hc_process(struct hconn *hc)
{
	if (hc->pp_wait && !hc_proxy_header(hc))
		return;
	for (int guard = 0; guard < 1024 && !hc->dead; guard++) {
		size_t len = evbuffer_get_length(hc->in), used = 0;
		enum http_track_ev ev;

		if (hc->state == H_RAW) {
			evbuffer_add_buffer(hc->up, hc->in);
			hc_push_up(hc);
			break;
		}
		if (hc->state != H_HEAD && hc->state != H_BODY)
			break;
		if (hc->state == H_HEAD && len == 0)
			break;
		{
			size_t cl;
			const uint8_t *cp = hc_chunk(hc->in, len, &cl);

			ev = http_track_feed(hc->rq, cp, cl, &used, &hc->req);
		}
		hc->msg_bytes[0] += used;
		if (hc->state == H_HEAD) {
			evbuffer_drain(hc->in, used);
			if (ev == HTTP_T_MORE) {
				if (!hc->head_timer) {
					/* a head started: it has 10 s */
					hc->head_timer = 1;
					hc_arm_timer(hc);
				}
				if (evbuffer_get_length(hc->in) > 0)
					continue; /* the next piece */
				break;
			}
			hc->head_timer = 0;
			if (ev == HTTP_T_TOO_LONG) {
				hc_fail(hc, 431, "The request head is larger "
				    "than 16 KiB.", NULL);
				break;
			}
			if (ev == HTTP_T_ERROR) {
				hc_fail(hc, 400, http_track_error(hc->rq),
				    NULL);
				break;
			}
			/* HTTP_T_HEAD (a bodiless request may report DONE
			 * only on the next feed) */
			hc->req_done = 0;
			hc->resp_done = 0;
			hc->resp_started = 0;
			hc->state = H_BODY; /* until hc_on_head decides */
			hc_on_head(hc);
			hc_arm_timer(hc);
			if (hc->state == H_WAIT_CLIENT)
				break;
			continue;
		}
		/* H_BODY */
		if (used > 0)
			evbuffer_remove_buffer(hc->in, hc->up, used);
		if (ev == HTTP_T_DONE) {
			hc->req_done = 1;
			hc->state = H_WAIT_RESP;
			http_track_free(hc->rq);
			hc->rq = http_track_new(1);
		} else if (ev == HTTP_T_UPGRADE) {
			hc->req_done = 1;
			hc->state = H_WAIT_RESP; /* raw once the 101 comes */
		} else if (ev == HTTP_T_ERROR || ev == HTTP_T_TOO_LONG) {
			hc_fail(hc, 400, http_track_error(hc->rq), NULL);
			break;
		}
		hc_push_up(hc);
		if (ev == HTTP_T_MORE && evbuffer_get_length(hc->in) == 0)
			break;
	}
	if (!hc->dead && hc->state == H_WAIT_RESP && hc->resp_done &&
	    hc->req_done)
		hc_exchange_done(hc);
}

/* Requests that waited for the tunnel's client go on (it is back) or get
 * 502 (the tunnel ends). */
static void
hproxy_release_waiting(struct proxy *px, int serve)
{
	struct hconn *hc;

	while ((hc = LIST_FIRST(&px->hwait)) != NULL) {
		hc_unwait(hc);
		hc->busy = 1;
		if (serve && px->sess) {
			hc_forward_head(hc, px);
			hc_arm_timer(hc); /* it waited with none */
		} else
			hc_fail(hc, 502, "The tunnel is offline.", NULL);
		if (!hc->dead)
			hc_process(hc);
		hc->busy = 0;
		if (hc->dead)
			hc_destroy(hc);
		else
			hc_flush(hc);
	}
}

static void
hproxy_serve_waiting(struct proxy *px)
{
	hproxy_release_waiting(px, 1);
}

static void
hproxy_tunnel_stop(struct proxy *px)
{
	/* keep-alive connections routed here hold only its id: their next
	 * request finds it gone; only those waiting are on its list */
	hproxy_release_waiting(px, 0);
}

static void
hproxy_tunnel_log(const struct proxy *px)
{
	uint64_t by[6], n = 0;

	for (int c = 0; c < 6; c++)
		n += by[c] = met_value(px->m_http[c]);
	if (px->type == PROXY_TLS || n == 0)
		return;
	log_info("%s %s: %llu requests, %llu 2xx, %llu 3xx, %llu 4xx, %llu "
		 "5xx; latency avg %.1f ms; %llu bytes in, %llu out",
	    proxy_type_name(px->type), px->host, (unsigned long long)n,
	    (unsigned long long)by[2], (unsigned long long)by[3],
	    (unsigned long long)by[4], (unsigned long long)by[5],
	    px->http_lat_n ? px->http_lat_sum_us / 1000.0 /
	    (double)px->http_lat_n : 0.0,
	    (unsigned long long)smet_px_bytes(px, SMET_IN),
	    (unsigned long long)smet_px_bytes(px, SMET_OUT));
}

const struct proxy_ops hproxy_ops = {
	.serve_waiting = hproxy_serve_waiting,
	.stop = hproxy_tunnel_stop,
	.log = hproxy_tunnel_log,
};

static void
hc_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *hc = arg;
	ssize_t n = hc_read(hc);

	loop_note_io();
	hc->busy = 1;
	if (n > 0)
		hc->last_io_ms = mtime_ms();
	if (n == 0) {
		hc->in_eof = 1;
		if (hc->state == H_HEAD && evbuffer_get_length(hc->in) == 0)
			hc->state = H_CLOSING;
		else if (hc->st && (hc->state == H_RAW ||
		    hc->state == H_BODY))
			mux_stream_shutdown(hc->st);
	} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
		hc->dead = 1;
	}
	if (!hc->dead)
		hc_process(hc);
	hc->busy = 0;
	if (hc->dead) {
		hc_destroy(hc);
		return;
	}
	hc_flush(hc);
}

static void
hc_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *hc = arg;

	loop_note_io();
	hc->last_io_ms = mtime_ms();
	if (!hc_flush(hc))
		return;
	/* the response waited on the stream while out was full: go on */
	if (hc->st != NULL && evbuffer_get_length(hc->out) < H_BUF_MAX &&
	    mux_stream_queued(hc->st) > 0)
		hc_up_readable(hc->st, hc);
}

/* Tokens again: take the response from the stream, read the visitor. */
static void
hc_on_pace(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *hc = arg;
	int out = hc->out_paused;

	hc->in_paused = hc->out_paused = 0;
	hc_arm(hc);
	if (out && hc->st != NULL && mux_stream_queued(hc->st) > 0)
		hc_up_readable(hc->st, hc); /* flushes and arms */
}

/* How long the current state may last without a byte either way. */
static unsigned
hc_timeout_s(const struct hconn *hc)
{
	unsigned idle = hc->srv->cf->http_idle_s;

	switch (hc->state) {
	case H_HEAD:
		return hc->head_timer ? H_HEAD_TIMEOUT_S : idle;
	case H_WAIT_CLIENT:
		return 0; /* bounded by the lease's grace period */
	case H_CLOSING:
		return H_CLOSING_TIMEOUT_S;
	default:
		return idle > H_ACTIVE_TIMEOUT_S ? idle : H_ACTIVE_TIMEOUT_S;
	}
}

/* One timer per connection: it fires at the current state's limit after
 * the last byte; bytes only stamp last_io_ms (no timer work per read),
 * and a timer that finds bytes moved since waits out the rest. */
static void
hc_arm_timer(struct hconn *hc)
{
	unsigned s = hc_timeout_s(hc);
	struct timeval tv = { (time_t)s, 0 };

	hc->last_io_ms = mtime_ms();
	if (s == 0)
		evtimer_del(hc->timer);
	else
		evtimer_add(hc->timer, &tv);
}

static void
hc_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *hc = arg;
	uint64_t limit = (uint64_t)hc_timeout_s(hc) * 1000,
		 since = mtime_ms() - hc->last_io_ms;

	if (limit == 0)
		return;
	if (since < limit && hc->state != H_HEAD) {
		struct timeval tv = { (time_t)((limit - since) / 1000),
			(suseconds_t)((limit - since) % 1000) * 1000 };
		evtimer_add(hc->timer, &tv);
		return;
	}
	if (hc->state == H_HEAD && hc->head_timer) {
		hc_fail(hc, 408, "The request head did not arrive within 10 "
		    "s.", NULL);
		return;
	}
	if (hc->state == H_HEAD || hc->state == H_CLOSING) {
		/* an idle keep-alive connection, or a peer that does not
		 * read its last bytes: just close */
		log_debug("http %s: closed after %u s %s", hc->peer,
		    hc_timeout_s(hc), hc->state == H_HEAD ? "idle" :
		    "without reading the response");
		hc_destroy(hc);
		return;
	}
	log_info("http %s: no bytes either way for %u s: closed", hc->peer,
	    hc_timeout_s(hc));
	if (!hc->resp_started && hc->state != H_RAW)
		hc_fail(hc, 504, "The tunnel's service did not answer in time.",
		    NULL);
	else
		hc_destroy(hc);
}

/* Is there room for one more public HTTP(S) connection? */
static int
hproxy_room(struct server *srv)
{
	uint64_t n;

	if (srv->nhconns + srv->npeeks < srv->cf->http_max_conns)
		return 1;
	n = smet_refused(srv, SMET_REF_HTTP_CAP);
	if (n == 1 || n % 1000 == 0)
		log_warn("http: %u connections open, the limit "
			 "(--http-max-conns); new ones are refused (%llu so "
			 "far)",
		    srv->cf->http_max_conns, (unsigned long long)n);
	return 0;
}

/* the visitor is sa: for every rule, log line and X-Forwarded-For */
static void
hc_set_peer(struct hconn *hc, const struct sockaddr *sa)
{
	char *colon;

	memcpy(&hc->peer_sa, sa, sa->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	net_addr_str(sa, hc->peer, sizeof(hc->peer));
	snprintf(hc->peer_ip, sizeof(hc->peer_ip), "%s", hc->peer);
	if ((colon = strrchr(hc->peer_ip, ':')) != NULL)
		*colon = '\0';
	if (hc->peer_ip[0] == '[') {
		memmove(hc->peer_ip, hc->peer_ip + 1, strlen(hc->peer_ip));
		hc->peer_ip[strlen(hc->peer_ip) - 1] = '\0';
	}
}

/*
 * A trusted proxy's connection may start with a PROXY protocol header (an
 * HTTP request never starts like one). 1: go on with HTTP (the header, if
 * any, consumed and its visitor taken); 0: wait for more bytes (the head
 * timer bounds the wait), or hc failed.
 */
static int
hc_proxy_header(struct hconn *hc)
{
	static const uint8_t v2sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00,
		0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
	size_t len = evbuffer_get_length(hc->in), k;
	struct proxyproto_hdr h;
	const uint8_t *p;
	const char *why = "bad PROXY protocol header";
	char e[LOG_ESC_MAX];
	int rc;

	if (len == 0)
		return 0;
	k = len < sizeof(v2sig) ? len : sizeof(v2sig);
	p = evbuffer_pullup(hc->in, (ev_ssize_t)k);
	if (memcmp(p, "PROXY ", k < 6 ? k : 6) != 0 &&
	    memcmp(p, v2sig, k) != 0) {
		hc->pp_wait = 0; /* HTTP: the peer is an HTTP proxy */
		return 1;
	}
	k = len < 16 + PROXYPROTO_V2_MAX_LEN ? len : 16 + PROXYPROTO_V2_MAX_LEN;
	p = evbuffer_pullup(hc->in, (ev_ssize_t)k);
	rc = proxyproto_parse(p, k, &h, &why);
	if (rc == MG_EAGAIN)
		return 0;
	if (rc < 0) {
		log_info("http load balancer %s: connection refused: %s",
		    hc->peer, log_esc(why, strlen(why), e, sizeof(e)));
		smet_visitor_refused(hc->srv, NULL, SMET_REF_PROXY_HEADER,
		    (struct sockaddr *)&hc->peer_sa, why);
		hc->reset = 1;
		hc_close(hc);
		return 0;
	}
	evbuffer_drain(hc->in, (size_t)rc);
	hc->pp_wait = 0;
	/* the visitor's own X-Forwarded-For is not believed; a LOCAL
	 * header (a health check) keeps the balancer's address */
	hc->lb = 0;
	if (h.family == AF_INET || h.family == AF_INET6)
		hc_set_peer(hc, (struct sockaddr *)&h.src);
	return 1;
}

/* A trusted HTTP proxy's request: the last X-Forwarded-For entry is the
 * visitor it saw; without one (or not an address), the proxy itself. */
static void
hc_lb_visitor(struct hconn *hc)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	const uint8_t *head;
	char ip[64];
	size_t hl;

	memset(&ss, 0, sizeof(ss));
	head = http_track_head_bytes(hc->rq, &hl);
	if (http_xff_last(head, hl, ip, sizeof(ip)) == 0) {
		if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			hc_set_peer(hc, (struct sockaddr *)&ss);
			return;
		}
		if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			hc_set_peer(hc, (struct sockaddr *)&ss);
			return;
		}
	}
	hc_set_peer(hc, (struct sockaddr *)&hc->lb_sa);
}

static struct hconn *
hc_start(struct server *srv, int fd, SSL *ssl, const struct sockaddr *sa)
{
	struct hconn *hc = xcalloc(1, sizeof(*hc));

	hc->srv = srv;
	hc->fd = fd;
	hc->ssl = ssl;
	hc->https = ssl != NULL;
	hc_set_peer(hc, sa);
	hc->in = evbuffer_new();
	hc->out = evbuffer_new();
	hc->up = evbuffer_new();
	hc->rq = http_track_new(1);
	hc->rs = http_track_new(0);
	hc->rev = event_new(srv->base, fd, EV_READ | EV_PERSIST, hc_on_read,
	    hc);
	hc->wev = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, hc_on_write,
	    hc);
	hc->timer = evtimer_new(srv->base, hc_on_timer, hc);
	srv->nhconns++;
	LIST_INSERT_HEAD(&srv->hconns, hc, all_link);
	event_add(hc->rev, NULL);
	hc->head_timer = 1; /* the first request has 10 s to arrive */
	hc_arm_timer(hc);
	if (ssl)
		/* the handshake may have read the request already */
		event_active(hc->rev, EV_READ, 1);
	return hc;
}

/* ---- listeners ---- */

static void
hproxy_on_http_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct server *srv = arg;
	const struct server_conf *cf = srv->cf;
	struct hconn *hc;
	int lb = 0;

	loop_note_io();
	if (cf->ntrusted) {
		if (!acl_match_addr(cf->trusted, cf->ntrusted, sa, 0)) {
			smet_visitor_refused(srv, NULL, SMET_REF_UNTRUSTED,
			    sa, "not a trusted proxy");
			proxy_reset_close(fd);
			return;
		}
		lb = 1;
	}
	if (!hproxy_room(srv)) {
		close(fd);
		return;
	}
	net_sock_tune(fd);
	hc = hc_start(srv, fd, NULL, sa);
	if (lb) {
		hc->pp_wait = hc->lb = 1;
		memcpy(&hc->lb_sa, &hc->peer_sa, sizeof(hc->lb_sa));
	}
}

/*
 * An HTTPS connection before it is an hconn: peeking at its ClientHello
 * (SNI passthrough to a TLS tunnel, or a certificate to terminate with),
 * then in its TLS handshake. On srv->peeks, bounded by --max-handshakes
 * with the other HTTP(S) connections by --http-max-conns, freed with the
 * server. One event per connection: the peek waits edge-triggered for
 * more bytes, so a ClientHello trickled a byte at a time costs no timer
 * churn, and the whole wait is bounded by one deadline.
 */
struct hs_pending {
	LIST_ENTRY(hs_pending) link;  /* srv->peeks */
	struct server *srv;
	struct event *ev;
	struct tls_hs *hs;            /* once the handshake started */
	SSL *ssl;
	struct sockaddr_storage peer;
	uint64_t deadline_ms;
	unsigned poll_ms;             /* 0: edge-triggered; else a timer */
	int fd;
	int pp;                       /* a trusted proxy's PROXY protocol
					 header comes first */
	int fwd_in;                   /* forwarded by another node */
};

static void
hs_free(struct hs_pending *p, int close_fd)
{
	LIST_REMOVE(p, link);
	p->srv->npeeks--;
	if (p->ev)
		event_free(p->ev);
	if (p->hs)
		tls_handshake_cancel(p->hs);
	if (p->ssl)
		SSL_free(p->ssl);
	if (close_fd && p->fd >= 0)
		close(p->fd);
	free(p);
}

static void
hs_on_handshake(SSL *ssl, int err, const char *why, void *arg)
{
	struct hs_pending *p = arg;
	struct server *srv = p->srv;
	char buf[NET_ADDRSTR_MAX];
	struct sockaddr_storage peer = p->peer;
	int fd = p->fd;

	/* the handshake is over and frees itself: not ours to cancel */
	p->hs = NULL;
	p->ssl = NULL;
	p->fd = -1;
	hs_free(p, 0);
	smet_tls(srv, SMET_TLS_HTTPS, err ? why : NULL);
	if (err) {
		log_info("https %s: TLS handshake failed: %s",
		    net_addr_str((struct sockaddr *)&peer, buf, sizeof(buf)),
		    why);
		SSL_free(ssl);
		close(fd);
		return;
	}
	hc_start(srv, fd, ssl, (struct sockaddr *)&peer);
}

static struct proxy *
sni_route(struct server *srv, const char *sni)
{
	struct proxy *px = registry_by_host(&srv->reg, sni);

	return px && px->type == PROXY_TLS ? px : NULL;
}

static void hs_on_peek(evutil_socket_t fd, short what, void *arg);

/* Wait for more of the ClientHello, until the deadline. The event is
 * persistent and edge-triggered: adding it again only moves its timeout
 * (re-arming an edge-triggered epoll event would report the unread bytes
 * at once). Without edge-triggered events it is a timer that looks again
 * every 20 ms. */
static int
hs_wait(struct hs_pending *p)
{
	uint64_t now = mtime_ms(), left;
	struct timeval tv;

	if (now >= p->deadline_ms)
		return MG_ETIMEDOUT;
	left = p->deadline_ms - now;
	if (p->poll_ms && left > p->poll_ms)
		left = p->poll_ms;
	tv.tv_sec = (time_t)(left / 1000);
	tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
	event_add(p->ev, &tv);
	return 0;
}

/*
 * A trusted load balancer's PROXY protocol header before the ClientHello:
 * peeked until whole, then consumed; its address becomes the visitor's.
 * 1: go on to the ClientHello; 0: waiting; -1: refused (p is freed).
 */
static int
hs_proxy_header(struct hs_pending *p, short what)
{
	uint8_t buf[16 + PROXYPROTO_V2_MAX_LEN];
	struct proxyproto_hdr h;
	const char *why = "closed before its PROXY protocol header";
	char a[NET_ADDRSTR_MAX], e[LOG_ESC_MAX];
	ssize_t n = recv(p->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	int rc = MG_EPROTO;

	if (n > 0)
		rc = proxyproto_parse(buf, (size_t)n, &h, &why);
	else if (n < 0 && (errno == EAGAIN || errno == EINTR))
		rc = MG_EAGAIN;
	if (rc == MG_EAGAIN && !(what & EV_CLOSED)) {
		if (hs_wait(p) == 0)
			return 0;
		why = "no whole PROXY protocol header in time";
		rc = MG_EPROTO;
	} else if (rc == MG_EAGAIN)
		rc = MG_EPROTO;
	if (rc > 0 && recv(p->fd, buf, (size_t)rc, 0) != rc) {
		rc = MG_EPROTO;
		why = "the PROXY protocol header could not be read";
	}
	if (rc <= 0) {
		log_info("https load balancer %s: connection refused: %s",
		    net_addr_str((struct sockaddr *)&p->peer, a, sizeof(a)),
		    log_esc(why, strlen(why), e, sizeof(e)));
		smet_visitor_refused(p->srv, NULL, SMET_REF_PROXY_HEADER,
		    (struct sockaddr *)&p->peer, why);
		hs_free(p, 1);
		return -1;
	}
	p->pp = 0;
	if (h.family == AF_INET || h.family == AF_INET6)
		memcpy(&p->peer, &h.src, sizeof(p->peer));
	return 1;
}

/* Peek at the ClientHello: SNI of a TLS tunnel -> passthrough; else
 * terminate TLS here. Peeking leaves the bytes in the socket for either. */
static void
hs_on_peek(evutil_socket_t fd, short what, void *arg)
{
	struct hs_pending *p = arg;
	struct server *srv = p->srv;
	uint8_t buf[H_PEEK_MAX];
	char sni[256], a[NET_ADDRSTR_MAX];
	ssize_t n;
	int rc;
	struct proxy *px;
	struct tls_ctx *ctx;
	SSL *ssl;

	loop_note_io();
	if (p->pp && hs_proxy_header(p, what) <= 0)
		return;
	n = recv(p->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		rc = http_sni_peek(buf, (size_t)n, sni, sizeof(sni));
	else if (n < 0 && (errno == EAGAIN || errno == EINTR))
		rc = MG_EAGAIN;
	else
		rc = MG_ECLOSED; /* closed or reset before a ClientHello */
	if (rc == MG_EAGAIN && (size_t)n == sizeof(buf))
		rc = MG_EPROTO; /* no end in sight */
	if (rc == MG_EAGAIN && (what & EV_CLOSED))
		rc = MG_ECLOSED; /* the rest will never come */
	if (rc == MG_EAGAIN) {
		/* not all there yet: the next segment raises a new edge */
		if (hs_wait(p) == 0)
			return;
		rc = MG_ETIMEDOUT;
	}
	net_addr_str((struct sockaddr *)&p->peer, a, sizeof(a));
	if (rc == 0 && !p->fwd_in && forward_on(srv) &&
	    registry_by_host(&srv->reg, sni) == NULL) {
		/* no tunnel here has this name: another node's, maybe; the
		 * ClientHello is still in the socket */
		int pfd = p->fd;
		struct sockaddr_storage peer = p->peer;

		p->fd = -1;
		hs_free(p, 0);
		forward_visitor(srv, FWD_HTTPS, sni, 0, pfd,
		    (struct sockaddr *)&peer, NULL);
		return;
	}
	if (rc == 0 && (px = sni_route(srv, sni)) != NULL) {
		int pfd = p->fd;
		struct sockaddr_storage peer = p->peer;

		p->fd = -1;
		hs_free(p, 0);
		if (forward_fenced(srv, px)) {
			proxy_reset_close(pfd);
			return;
		}
		if (px->is_group || px->health < 0) {
			struct proxy *m = px->is_group ? group_pick(px,
			    (struct sockaddr *)&peer, sni, NULL, 0, 0) : NULL;
			if (m == NULL) {
				smet_visitor_refused(srv, px, SMET_REF_DOWN,
				    (struct sockaddr *)&peer, px->is_group ?
				    "no member of the group is up" :
				    px->health_reason);
				proxy_reset_close(pfd);
				return;
			}
			px = m;
		}
		{
			unsigned retry;
			if (proxy_visitor_allowed(px, (struct sockaddr *)&peer) <
			    0 || proxy_rate_ok(px, 0, (struct sockaddr *)&peer,
			    &retry) < 0 || proxy_visitors_ok(px) < 0) {
				proxy_reset_close(pfd);
				return;
			}
		}
		/* the ClientHello is still in the socket (we only peeked) */
		if (px->proxy_protocol == 2) {
			/* the agent passes the SNI and the ALPN offer on */
			uint8_t alpn[256];
			struct stream_info si = { sni, alpn, 0 };
			char sni2[256];
			http_hello_peek(buf, (size_t)n, sni2, sizeof(sni2),
			    alpn, sizeof(alpn), &si.alpn_len);
			proxy_open_stream_info(px, pfd,
			    (struct sockaddr *)&peer, &si);
		} else
			proxy_open_stream(px, pfd, (struct sockaddr *)&peer);
		return;
	}
	ctx = rc == 0 ? tls_certdir_find(srv->https_certs, sni) : NULL;
	if (ctx == NULL)
		ctx = srv->https_tls;
	if (rc < 0 || ctx == NULL) {
		char e[LOG_ESC_MAX];
		log_info("https %s: %s%s%s", a, rc == MG_ETIMEDOUT ?
		    "no complete ClientHello within 10 s" :
		    rc == MG_ECLOSED ? "closed before the end of its "
		    "ClientHello" :
		    rc < 0 ? "not a TLS ClientHello" :
		    "no tunnel and no certificate for ", rc == 0 ? log_esc(sni,
		    strlen(sni), e, sizeof(e)) : "", "");
		hs_free(p, 1);
		return;
	}
	event_free(p->ev);
	p->ev = NULL;
	if ((ssl = tls_ssl_new(ctx, p->fd)) == NULL) {
		hs_free(p, 1);
		return;
	}
	p->ssl = ssl;
	if ((p->hs = tls_handshake_start(srv->base, ssl, 1, H_HEAD_TIMEOUT_S,
	    hs_on_handshake, p)) == NULL)
		hs_free(p, 1);
}

/* an HTTPS connection: peek at its ClientHello (hs_on_peek) */
static void
hs_begin(struct server *srv, int fd, const struct sockaddr *sa, int fwd_in)
{
	struct hs_pending *p;
	int feat = event_base_get_features(srv->base);
	short et = feat & EV_FEATURE_ET ? EV_ET : 0;
	short rdhup = feat & EV_FEATURE_EARLY_CLOSE ? EV_CLOSED : 0;

	if (!hproxy_room(srv) || srv->npeeks >= srv->cf->max_handshakes) {
		if (srv->npeeks >= srv->cf->max_handshakes)
			smet_refused(srv, SMET_REF_HANDSHAKE_CAP);
		close(fd);
		return;
	}
	net_sock_tune(fd);
	p = xcalloc(1, sizeof(*p));
	p->srv = srv;
	p->fd = fd;
	memcpy(&p->peer, sa, sa->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	p->deadline_ms = mtime_ms() + H_HEAD_TIMEOUT_S * 1000;
	p->pp = !fwd_in && srv->cf->ntrusted > 0;
	p->fwd_in = fwd_in;
	LIST_INSERT_HEAD(&srv->peeks, p, link);
	srv->npeeks++;
	/* edge-triggered: peeked bytes stay unread, so a level-triggered
	 * read event would fire again at once */
	if (et)
		p->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST | et |
		    rdhup, hs_on_peek, p);
	else {
		p->poll_ms = 20;
		p->ev = evtimer_new(srv->base, hs_on_peek, p);
	}
	hs_wait(p);
}

static void
hproxy_on_https_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct server *srv = arg;

	loop_note_io();
	if (srv->cf->ntrusted && !acl_match_addr(srv->cf->trusted,
	    srv->cf->ntrusted, sa, 0)) {
		smet_visitor_refused(srv, NULL, SMET_REF_UNTRUSTED, sa,
		    "not a trusted proxy");
		proxy_reset_close(fd);
		return;
	}
	hs_begin(srv, fd, sa, 0);
}

void
hproxy_inject_https(struct server *srv, struct proxy *px, int fd,
    const struct sockaddr *sa, struct evbuffer *prefix)
{
	(void)px;
	(void)prefix; /* the ClientHello is still in fd */
	hs_begin(srv, fd, sa, 1);
}

void
hproxy_inject_http(struct server *srv, struct proxy *px, int fd,
    const struct sockaddr *sa, struct evbuffer *prefix)
{
	struct hconn *hc;

	(void)px;
	if (!hproxy_room(srv)) {
		close(fd);
		return;
	}
	net_sock_tune(fd);
	hc = hc_start(srv, fd, NULL, sa);
	hc->fwd_in = 1;
	if (prefix != NULL && evbuffer_get_length(prefix) > 0) {
		evbuffer_add_buffer(hc->in, prefix);
		event_active(hc->rev, EV_READ, 1);
	}
}

static struct evconnlistener *
hproxy_listen(struct server *srv, const char *addr, evconnlistener_cb cb,
    uint16_t *port_out, char *err, size_t errcap)
{
	char host[256];
	uint16_t port;
	const char *why;
	int fd;
	struct evconnlistener *l;

	if (net_split_hostport(addr, host, sizeof(host), &port, &why)) {
		snprintf(err, errcap, "%s: %s", addr, why);
		return NULL;
	}
	if ((fd = net_listen_tcp(host, port, 1024)) < 0) {
		snprintf(err, errcap, "cannot listen on %s: %s", addr,
		    strerror(errno));
		return NULL;
	}
	*port_out = net_local_port(fd);
	if ((l = accept_listen(srv, fd, cb, srv, 1)) == NULL)
		snprintf(err, errcap, "cannot listen on %s", addr);
	return l;
}

void
hproxy_discard(struct hproxy_next *n)
{
	if (n->http_lst)
		evconnlistener_free(n->http_lst);
	if (n->https_lst)
		evconnlistener_free(n->https_lst);
	tls_ctx_free(n->https_tls);
	tls_certdir_free(n->https_certs);
	memset(n, 0, sizeof(*n));
}

int
hproxy_prepare(struct server *srv, const struct server_conf *ncf,
    struct hproxy_next *n, char *err, size_t errcap)
{
	const struct server_conf *ocf = srv->cf;
	int started = srv->http_lst != NULL || srv->https_lst != NULL;

	memset(n, 0, sizeof(*n));
	/* certificates first: read again even from the same paths, so a
	 * reload picks up renewed files */
	if (ncf->https_cert) {
		struct tls_server_opts to = { ncf->https_cert, ncf->https_key,
			NULL, 0 };
		if (tls_server_ctx_new(&to, &n->https_tls, err, errcap) < 0)
			goto fail;
	}
	if (ncf->https_cert_dir && tls_certdir_load(ncf->https_cert_dir,
	    &n->https_certs, err, errcap) < 0)
		goto fail;
	/* listeners that move: the new address is bound while the old one
	 * still serves */
	n->http_move = !started || strcmp(ncf->http_addr, ocf->http_addr) != 0;
	n->https_move = !started ||
	    strcmp(ncf->https_addr, ocf->https_addr) != 0;
	if (n->http_move && ncf->http_addr[0] && (n->http_lst =
	    hproxy_listen(srv, ncf->http_addr, hproxy_on_http_accept,
		&n->http_port, err, errcap)) == NULL)
		goto fail;
	if (n->https_move && ncf->https_addr[0] && (n->https_lst =
	    hproxy_listen(srv, ncf->https_addr, hproxy_on_https_accept,
		&n->https_port, err, errcap)) == NULL)
		goto fail;
	return 0;
fail:
	hproxy_discard(n);
	return MG_EINVAL;
}

void
hproxy_commit(struct server *srv, struct hproxy_next *n)
{
	tls_ctx_free(srv->https_tls);
	tls_certdir_free(srv->https_certs);
	srv->https_tls = n->https_tls;
	srv->https_certs = n->https_certs;
	if (n->http_move) {
		if (srv->http_lst)
			evconnlistener_free(srv->http_lst);
		srv->http_lst = n->http_lst;
		srv->http_port = n->http_port;
		if (srv->http_lst)
			log_info("http listening on port %u", srv->http_port);
	}
	if (n->https_move) {
		if (srv->https_lst)
			evconnlistener_free(srv->https_lst);
		srv->https_lst = n->https_lst;
		srv->https_port = n->https_port;
	}
	if (n->https_move && srv->https_lst)
		log_info("https listening on port %u (%s)", srv->https_port,
		    srv->https_tls || srv->https_certs ? "TLS terminated "
		    "here, SNI passthrough for tls tunnels" :
		    "SNI passthrough only");
	memset(n, 0, sizeof(*n));
}

void
hproxy_stop(struct server *srv)
{
	while (!LIST_EMPTY(&srv->hconns))
		hc_destroy(LIST_FIRST(&srv->hconns));
	while (!LIST_EMPTY(&srv->peeks))
		hs_free(LIST_FIRST(&srv->peeks), 1);
	if (srv->http_lst)
		evconnlistener_free(srv->http_lst);
	if (srv->https_lst)
		evconnlistener_free(srv->https_lst);
	srv->http_lst = srv->https_lst = NULL;
	tls_ctx_free(srv->https_tls);
	srv->https_tls = NULL;
	tls_certdir_free(srv->https_certs);
	srv->https_certs = NULL;
}
