/* hrelay.c: the client end of an HTTP tunnel's stream: bytes between the
 * stream and the local web service, parsed on the way (http_track) to log
 * one line per request with its latency to the first response byte, and
 * to rewrite Host when asked. Upgrades (websockets) become raw bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "http/http.h"
#include "metrics/metrics.h"
#include "mux/mux.h"
#include "relay/hrelay.h"
#include "util/err.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/mtime.h"
#include "util/xmalloc.h"

#define HR_BUF_MAX (256 * 1024)

struct hrelay {
	struct mux_stream *st;
	struct event *rev, *wev;
	struct evbuffer *down;      /* to the local service */
	struct evbuffer *up;        /* from it, to the stream */
	struct evbuffer *fresh;     /* the last read, being parsed */
	struct http_track *rq, *rs;
	struct hrelay_conf hc;
	const struct hrelay_obs *obs; /* hc.obs, or NULL */
	const char *why;            /* the reason it ends, for obs->close */
	int fd;
	int raw_req, raw_resp;      /* upgraded: no more parsing */
	int req_open;               /* a request awaits its response head */
	int head_no_body;
	unsigned req_body : 1;      /* obs: a request head was reported */
	unsigned resp_body : 1;     /* obs: a response head was reported */
	unsigned resp_interim : 1;  /* a 1xx head, not reported */
	unsigned sock_eof : 1, st_eof : 1, shut_sock : 1, shut_st : 1;
	unsigned busy : 1, dead : 1;
	unsigned sock_err : 1;      /* the socket failed: abort the stream */
	unsigned can_read : 1;      /* the socket may have bytes: try a read */
	uint64_t t_req, t_first;
	char method[24], url[256];
};

static void hr_pump(struct hrelay *r);

static void
hr_destroy(struct hrelay *r)
{
	event_free(r->rev);
	event_free(r->wev);
	evbuffer_free(r->down);
	evbuffer_free(r->up);
	evbuffer_free(r->fresh);
	http_track_free(r->rq);
	http_track_free(r->rs);
	if (r->dead) {
		/* the session died or a side failed: the service must see a
		 * reset, not an orderly end that makes a cut transfer look
		 * complete (relay.h) */
		struct linger lg = { 1, 0 };
		setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(r->fd);
	if (r->sock_err)
		mux_stream_abort(r->st); /* the far end resets, too */
	else
		mux_stream_free(r->st);
	if (r->obs && r->obs->close)
		r->obs->close(r->hc.obs_arg, r->dead ? (r->why ? r->why :
		    "the relay failed") : NULL);
	met_release(r->hc.bytes_in);
	met_release(r->hc.bytes_out);
	if (r->hc.done)
		r->hc.done(r->hc.arg); /* last: arg and host_rewrite are its */
	free(r);
}

/* Stream -> down, parsing requests. */
static void
hr_from_stream(struct hrelay *r)
{
	struct evbuffer *rx = mux_stream_rx(r->st);
	size_t moved = 0;

	while (evbuffer_get_length(rx) > 0 &&
	    evbuffer_get_length(r->down) < HR_BUF_MAX) {
		size_t len = evbuffer_get_length(rx), used = len;
		const uint8_t *p = NULL;
		struct http_head h;
		enum http_track_ev ev = HTTP_T_MORE;

		if (!r->raw_req) {
			p = evbuffer_pullup(rx, (ev_ssize_t)len);
			ev = http_track_feed(r->rq, p, len, &used, &h);
		}
		if (ev == HTTP_T_HEAD) {
			const uint8_t *head;
			size_t hl;
			struct http_rewrite rw;
			memset(&rw, 0, sizeof(rw));
			rw.new_host = r->hc.host_rewrite;
			head = http_track_head_bytes(r->rq, &hl);
			if (r->obs) {
				if (r->obs->req_head)
					r->obs->req_head(r->hc.obs_arg, &h,
					    head, hl);
				r->req_body = 1;
			}
			if (r->hc.host_rewrite == NULL ||
			    http_rewrite_head(head, hl, &rw, r->down) < 0)
				evbuffer_add(r->down, head, hl);
			evbuffer_drain(rx, used);
			moved += used;
			snprintf(r->method, sizeof(r->method), "%s", h.method);
			snprintf(r->url, sizeof(r->url), "%.250s", h.url);
			r->head_no_body = strcmp(h.method, "HEAD") == 0;
			r->req_open = 1;
			r->t_req = mtime_us();
			r->t_first = 0;
			continue;
		}
		if (r->obs && r->req_body && p != NULL && used > 0 &&
		    r->obs->req_body && (ev == HTTP_T_MORE ||
		    ev == HTTP_T_DONE || ev == HTTP_T_UPGRADE))
			r->obs->req_body(r->hc.obs_arg, p, used);
		evbuffer_remove_buffer(rx, r->down, used);
		moved += used;
		if (ev == HTTP_T_DONE) {
			http_track_free(r->rq);
			r->rq = http_track_new(1);
			if (r->obs && r->req_body && r->obs->req_end)
				r->obs->req_end(r->hc.obs_arg);
			r->req_body = 0;
		} else if (ev == HTTP_T_UPGRADE) {
			r->raw_req = 1;
			if (r->obs && !r->req_body && r->obs->req_head) {
				/* an Upgrade request without a body: its
				 * head went out as it came */
				const uint8_t *head;
				size_t hl;
				head = http_track_head_bytes(r->rq, &hl);
				r->obs->req_head(r->hc.obs_arg, &h, head, hl);
				r->req_body = 1;
			}
			if (r->obs && r->req_body && r->obs->req_end)
				r->obs->req_end(r->hc.obs_arg);
			r->req_body = 0;
		} else if (ev == HTTP_T_ERROR || ev == HTTP_T_TOO_LONG) {
			/* not ours to judge: pass the rest through */
			log_debug("http: unparsable request on stream %u: %s",
			    mux_stream_id(r->st), http_track_error(r->rq));
			r->raw_req = 1;
		}
	}
	if (moved)
		mux_stream_consumed(r->st, moved);
	if (mux_stream_eof(r->st))
		r->st_eof = 1;
}

/* A final response head answered the open request: figures and a line. */
static void
hr_answered(struct hrelay *r, const struct http_head *h)
{
	uint64_t lat = (r->t_first ? r->t_first : mtime_us()) - r->t_req;

	r->req_open = 0;
	r->t_first = 0;
	if (r->hc.request)
		r->hc.request(r->hc.arg, r->method, h->status, lat);
	log_info_later("%s %s %d %s %.1fms", r->method, r->url, h->status,
	    h->reason, (double)lat / 1000.0);
}

/* Parse the response bytes in fresh (just read), before they join up. */
static void
hr_parse_up(struct hrelay *r, struct evbuffer *fresh)
{
	size_t len = evbuffer_get_length(fresh), from = 0;
	/* a fresh read is one or two chains: this rarely copies */
	uint8_t *base = evbuffer_pullup(fresh, -1);

	while (len > 0 && !r->raw_resp) {
		size_t used = len;
		struct http_head h;
		enum http_track_ev ev;

		if (r->head_no_body && r->req_open)
			http_track_expect_no_body(r->rs);
		ev = http_track_feed(r->rs, base + from, len, &used, &h);
		if (ev == HTTP_T_HEAD && h.status >= 100 && h.status < 200 &&
		    h.status != 101) {
			/* 100 Continue: the latency counts from here, the
			 * line waits for the final answer */
			if (r->req_open && r->t_first == 0)
				r->t_first = mtime_us();
			r->resp_interim = 1;
		} else if (ev == HTTP_T_HEAD || ev == HTTP_T_UPGRADE) {
			if (r->req_open)
				hr_answered(r, &h);
			if (r->obs) {
				const uint8_t *head;
				size_t hl;
				head = http_track_head_bytes(r->rs, &hl);
				if (r->obs->resp_head)
					r->obs->resp_head(r->hc.obs_arg, &h,
					    head, hl);
				r->resp_body = 1;
				if (ev == HTTP_T_UPGRADE) {
					if (r->obs->resp_end)
						r->obs->resp_end(
						    r->hc.obs_arg);
					r->resp_body = 0;
				}
			}
			if (ev == HTTP_T_UPGRADE)
				r->raw_resp = 1;
		} else {
			if (r->resp_body && used > 0 && r->obs->resp_body &&
			    (ev == HTTP_T_MORE || ev == HTTP_T_DONE))
				r->obs->resp_body(r->hc.obs_arg, base + from,
				    used);
			if (ev == HTTP_T_DONE) {
				http_track_free(r->rs);
				r->rs = http_track_new(0);
				if (r->resp_interim)
					r->resp_interim = 0;
				else if (r->resp_body && r->obs->resp_end)
					r->obs->resp_end(r->hc.obs_arg);
				if (!r->resp_interim)
					r->resp_body = 0;
			} else if (ev == HTTP_T_ERROR ||
			    ev == HTTP_T_TOO_LONG) {
				r->raw_resp = 1;
			}
		}
		from += used;
		len -= used;
	}
}

/* One read of up to HR_READ_MAX bytes from the local service into fresh. */
#define HR_READ_MAX (65536 - 64)
static ssize_t
hr_read(struct hrelay *r, struct evbuffer *fresh)
{
	struct evbuffer_iovec v;
	ssize_t n;

	if (evbuffer_reserve_space(fresh, HR_READ_MAX, &v, 1) != 1)
		abort();
	n = read(r->fd, v.iov_base, v.iov_len);
	if (n <= 0) {
		int saved = errno;
		evbuffer_commit_space(fresh, NULL, 0);
		errno = saved;
		return n;
	}
	/* a short read emptied the socket: wait for the read event rather
	 * than try again for an EAGAIN */
	if ((size_t)n < v.iov_len)
		r->can_read = 0;
	v.iov_len = (size_t)n;
	evbuffer_commit_space(fresh, &v, 1);
	return n;
}

static void
hr_pump(struct hrelay *r)
{
	for (int round = 0; round < 8 && !r->dead; round++) {
		int progress = 0;

		if (r->st && mux_stream_reset(r->st)) {
			r->dead = 1; /* the far end's socket failed */
			r->why = "the visitor's connection failed";
			break;
		}
		if (!r->st_eof && r->st) {
			size_t before = evbuffer_get_length(r->down);
			hr_from_stream(r);
			progress |= evbuffer_get_length(r->down) != before;
		}
		if (evbuffer_get_length(r->down) > 0) {
			int n = evbuffer_write(r->down, r->fd);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				r->dead = 1;
				r->sock_err = 1;
				r->why = "cannot write to the local service";
				break;
			}
			if (n > 0 && r->hc.bytes_in)
				met_add(r->hc.bytes_in, (uint64_t)n);
			progress |= n > 0;
		}
		if (r->st_eof && !r->shut_sock &&
		    evbuffer_get_length(r->down) == 0) {
			shutdown(r->fd, SHUT_WR);
			r->shut_sock = 1;
		}
		if (!r->sock_eof && r->can_read &&
		    evbuffer_get_length(r->up) < HR_BUF_MAX) {
			ssize_t n = hr_read(r, r->fresh);
			if (n < 0 && errno == EAGAIN)
				r->can_read = 0; /* until the read event */
			if (n == 0) {
				r->sock_eof = 1;
				/* a body that ends with the connection */
				if (r->resp_body && r->obs->resp_end)
					r->obs->resp_end(r->hc.obs_arg);
				r->resp_body = 0;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				r->dead = 1;
				r->sock_err = 1;
				r->why = "the local service reset the connection";
				break;
			}
			if (n > 0) {
				if (r->hc.bytes_out)
					met_add(r->hc.bytes_out, (uint64_t)n);
				hr_parse_up(r, r->fresh);
				evbuffer_add_buffer(r->up, r->fresh);
				progress = 1;
			}
		}
		if (r->st && evbuffer_get_length(r->up) > 0) {
			ssize_t n = mux_stream_send_buffer(r->st, r->up);
			if (n == MG_ECLOSED) {
				r->dead = 1;
				r->why = "the visitor's stream closed";
				break;
			}
			progress |= n > 0;
		}
		if (r->sock_eof && !r->shut_st && r->st &&
		    evbuffer_get_length(r->up) == 0) {
			mux_stream_shutdown(r->st);
			r->shut_st = 1;
		}
		if (!progress)
			break;
	}
	if (r->dead || (r->shut_sock && r->shut_st))
		return;
	if (!r->sock_eof && evbuffer_get_length(r->up) < HR_BUF_MAX)
		event_add(r->rev, NULL);
	else
		event_del(r->rev);
	if (evbuffer_get_length(r->down) > 0)
		event_add(r->wev, NULL);
	else
		event_del(r->wev);
}

static void
hr_run(struct hrelay *r)
{
	if (r->busy)
		return; /* re-entered from the mux: the outer run continues */
	r->busy = 1;
	hr_pump(r);
	r->busy = 0;
	if (r->dead || (r->shut_sock && r->shut_st))
		hr_destroy(r);
}

static void
hr_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct hrelay *r = arg;

	loop_note_io();
	if (what & EV_READ)
		r->can_read = 1;
	hr_run(r);
}

static void
hr_st_event(struct mux_stream *st, void *arg)
{
	hr_run(arg);
}

static void
hr_st_closed(struct mux_stream *st, void *arg)
{
	struct hrelay *r = arg;

	r->st = NULL;
	r->dead = 1;
	r->why = "the session to the server ended";
	if (!r->busy)
		hr_destroy(r);
}

static const struct mux_stream_cbs hr_cbs = {
	.readable = hr_st_event,
	.writable = hr_st_event,
	.closed = hr_st_closed,
};

struct hrelay *
hrelay_new(struct event_base *base, int fd, struct mux_stream *st,
    const struct hrelay_conf *hc)
{
	struct hrelay *r = xcalloc(1, sizeof(*r));

	r->hc = *hc;
	r->obs = hc->obs;
	met_ref(r->hc.bytes_in);
	met_ref(r->hc.bytes_out);
	r->st = st;
	r->fd = fd;
	r->down = evbuffer_new();
	r->up = evbuffer_new();
	r->fresh = evbuffer_new();
	r->rq = http_track_new(1);
	r->rs = http_track_new(0);
	r->rev = event_new(base, fd, EV_READ | EV_PERSIST, hr_on_event, r);
	r->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, hr_on_event, r);
	r->can_read = 1;
	mux_stream_set_cbs(st, &hr_cbs, r);
	/* start from the loop: bytes may wait on the stream already */
	event_active(r->wev, EV_WRITE, 1);
	return r;
}
