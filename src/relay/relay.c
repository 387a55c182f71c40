/* relay.c: socket <-> stream bridging; see relay.h. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "metrics/metrics.h"
#include "mux/mux.h"
#include "relay/relay.h"
#include "util/err.h"
#include "util/loop.h"
#include "util/mtime.h"
#include "util/ratelim.h"
#include "util/xmalloc.h"

/* How much one read event may move before yielding to other sockets. */
#define RELAY_READ_BUDGET (256 * 1024)
/* A paced direction sleeps until this much (or what it wants, if less)
 * may go: at 1 MB/s a wake-up every 16 ms, not one per byte. */
#define RELAY_PACE_CHUNK 16384

struct relay {
	struct event_base *base;
	struct mux_stream *st;
	struct event *rev, *wev;
	struct event *pace[2];  /* by enum shaper_dir; with o.shaper only */
	struct relay_opts o;    /* relay_start's */
	uint64_t from_sock, to_sock;
	uint64_t to_counted;  /* to_sock already added to o.to_sock */
	uint64_t rx_base;     /* bytes the stream delivered before us */
	int fd;
	int flags;
	unsigned rd_done : 1; /* socket EOF seen, FIN sent */
	unsigned wr_done : 1; /* stream FIN seen, socket shut for writing */
	unsigned busy : 1;    /* inside our own handler */
	unsigned dying : 1;   /* free when the handler unwinds */
	unsigned failed : 1;
	unsigned reset : 1;   /* end fd with RST: the session died, fd
				 failed, or the peer aborted (relay.h) */
	unsigned abort : 1;   /* fd failed: abort the stream, so that the
				 far end resets its socket too */
	unsigned lost : 1;    /* the session died */
	unsigned paused_in : 1;  /* no tokens to read the socket: pace[] */
	unsigned paused_out : 1; /* no tokens to write it: pace[] */
};

static struct relay *relay_init(struct relay *r, struct event_base *base,
    int fd, struct mux_stream *st, int flags);
static void relay_on_read(evutil_socket_t fd, short what, void *arg);
static void relay_on_write(evutil_socket_t fd, short what, void *arg);
static void relay_st_readable(struct mux_stream *st, void *arg);
static void relay_st_writable(struct mux_stream *st, void *arg);
static void relay_st_closed(struct mux_stream *st, void *arg);
static void relay_on_pace_in(evutil_socket_t fd, short what, void *arg);
static void relay_on_pace_out(evutil_socket_t fd, short what, void *arg);

static const struct mux_stream_cbs relay_stream_cbs = {
	.readable = relay_st_readable,
	.writable = relay_st_writable,
	.message = NULL,
	.closed = relay_st_closed,
};

const char *
relay_end_name(enum relay_end why)
{
	switch (why) {
	case RELAY_END_CLOSED:
		return "closed";
	case RELAY_END_RESET:
		return "reset";
	case RELAY_END_REFUSED:
		return "refused";
	case RELAY_END_SESSION_LOST:
		return "session lost";
	}
	return "reset";
}

/* Add what reached the socket since the last count to o.to_sock. */
static void
relay_count_to(struct relay *r)
{
	if (r->o.to_sock && r->to_sock > r->to_counted) {
		met_add(r->o.to_sock, r->to_sock - r->to_counted);
		r->to_counted = r->to_sock;
	}
}

/* Free the relay and tell its owner (o.end), whichever way it ended: the
 * owner counts relays, and one that never hears of an end waits for it. */
static void
relay_destroy(struct relay *r)
{
	int refused;

	if (r->st)
		r->to_sock = mux_stream_delivered(r->st) - r->rx_base;
	refused = r->to_sock == 0 && r->wr_done;

	event_free(r->rev);
	event_free(r->wev);
	if (r->pace[0])
		event_free(r->pace[0]);
	if (r->pace[1])
		event_free(r->pace[1]);
	if (r->st)
		mux_stream_set_sink_gate(r->st, NULL);
	/* nothing moved either way and the socket is whole: the far end
	 * refused (FIN or reset before a byte) or its session died */
	if (r->fd >= 0 && r->o.refused && r->from_sock == 0 &&
	    r->to_sock == 0 && !r->rd_done && !r->abort &&
	    r->o.refused(r->o.arg, r->fd))
		r->fd = -1; /* untouched: another way took it */
	if (r->fd >= 0) {
		if (r->reset ||
		    ((r->flags & RELAY_RST_IF_REFUSED) && refused)) {
			struct linger lg = { 1, 0 };
			setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &lg,
			    sizeof(lg));
		}
		close(r->fd);
	}
	if (r->abort)
		mux_stream_abort(r->st);
	else
		mux_stream_free(r->st);
	relay_count_to(r);
	met_release(r->o.from_sock);
	met_release(r->o.to_sock);
	met_release(r->o.throttled[0]);
	met_release(r->o.throttled[1]);
	shaper_unref(r->o.shaper);
	if (r->o.end) {
		enum relay_end why = RELAY_END_CLOSED;
		if (r->lost)
			why = RELAY_END_SESSION_LOST;
		else if (refused && (r->flags & RELAY_RST_IF_REFUSED))
			why = RELAY_END_REFUSED;
		else if (r->reset || r->abort || r->failed)
			why = RELAY_END_RESET;
		r->o.end(r->o.arg, r->from_sock, r->to_sock, why);
	}
	free(r);
}

/* End the relay, now or when our handler unwinds. */
static void
relay_finish(struct relay *r)
{
	if (r->busy)
		r->dying = 1;
	else
		relay_destroy(r);
}

static void
relay_check_done(struct relay *r)
{
	if (r->failed || (r->rd_done && r->wr_done))
		relay_finish(r);
}

/*
 * Direction dir is out of tokens: stop reading its source (the socket's
 * read event, or the stream's queue by not writing it) and sleep until
 * want bytes (at most a chunk) may go.
 */
static void
relay_pace(struct relay *r, enum shaper_dir dir, uint64_t now, size_t want)
{
	uint64_t w = shaper_wait_us(r->o.shaper, dir, now,
	    want < RELAY_PACE_CHUNK ? want : RELAY_PACE_CHUNK);
	struct timeval tv;

	if (w == 0)
		w = 1;
	tv.tv_sec = (time_t)(w / 1000000);
	tv.tv_usec = (suseconds_t)(w % 1000000);
	if (dir == SHAPER_IN) {
		event_del(r->rev);
		r->paused_in = 1;
	} else {
		event_del(r->wev);
		r->paused_out = 1;
	}
	if (r->o.throttled[dir])
		met_inc(r->o.throttled[dir]);
	evtimer_add(r->pace[dir], &tv);
}

/*
 * The stream's queue to the socket within the shaper's SHAPER_OUT tokens:
 * bytes written, MG_EAGAIN or MG_EIO as mux_stream_flush_to_fd; *paced
 * set when the rest waits for tokens (the pace timer writes it).
 */
static ssize_t
relay_flush_paced(struct relay *r, int *paced)
{
	size_t q = mux_stream_queued(r->st), g;
	uint64_t now;
	int n = 0;

	if (r->paused_out) {
		*paced = 1;
		return 0;
	}
	if (q == 0)
		return 0;
	now = mtime_us();
	g = shaper_take(r->o.shaper, SHAPER_OUT, now, q);
	if (g < q && g < RELAY_PACE_CHUNK) {
		/* a few bytes gathered since the last turn: wait for more */
		shaper_refund(r->o.shaper, SHAPER_OUT, g);
		g = 0;
	}
	if (g > 0) {
		n = evbuffer_write_atmost(mux_stream_rx(r->st), r->fd,
		    (ev_ssize_t)g);
		if (n < 0) {
			shaper_refund(r->o.shaper, SHAPER_OUT, g);
			return (errno == EAGAIN || errno == EINTR) ?
			    MG_EAGAIN : MG_EIO;
		}
		mux_stream_consumed(r->st, (size_t)n);
		if ((size_t)n < g) {
			/* the socket is full: its write event goes on */
			shaper_refund(r->o.shaper, SHAPER_OUT, g - (size_t)n);
			return n;
		}
	}
	if (g < q) {
		relay_pace(r, SHAPER_OUT, now, q - g);
		*paced = 1;
	}
	return n;
}

/* Write what the stream has queued; shut the socket once FIN is through. */
static void
relay_flush(struct relay *r)
{
	ssize_t n;
	int paced = 0;

	if (mux_stream_reset(r->st)) {
		/* the far end's socket failed: so does ours, at once, as a
		 * TCP reset would (what is queued is dropped) */
		r->failed = 1;
		r->reset = 1;
		return;
	}
	if (shaper_limited(r->o.shaper, SHAPER_OUT))
		n = relay_flush_paced(r, &paced);
	else
		n = mux_stream_flush_to_fd(r->st, r->fd);
	if (n == MG_EIO) {
		r->failed = 1;
		r->reset = 1;
		r->abort = 1;
		return;
	}
	r->to_sock = mux_stream_delivered(r->st) - r->rx_base;
	relay_count_to(r);
	if (paced) {
		event_del(r->wev); /* the pace timer writes the rest */
		return;
	}
	if (mux_stream_queued(r->st) > 0) {
		event_add(r->wev, NULL);
		return;
	}
	event_del(r->wev);
	if (mux_stream_eof(r->st) && !r->wr_done) {
		r->wr_done = 1;
		if ((r->flags & RELAY_RST_IF_REFUSED) && r->to_sock == 0) {
			r->failed = 1; /* refused: reset, in relay_destroy */
			return;
		}
		shutdown(r->fd, SHUT_WR);
	}
}

static void
relay_pump(struct relay *r)
{
	size_t max = RELAY_READ_BUDGET;
	int lim = shaper_limited(r->o.shaper, SHAPER_IN);
	ssize_t n;

	if (lim) {
		/* less than a chunk is not worth a read: reading the few
		 * bytes gathered since the last loop turn is polling */
		uint64_t now = mtime_us();
		max = shaper_take(r->o.shaper, SHAPER_IN, now, max);
		if (max < RELAY_PACE_CHUNK) {
			shaper_refund(r->o.shaper, SHAPER_IN, max);
			relay_pace(r, SHAPER_IN, now, RELAY_READ_BUDGET);
			return;
		}
	}
	n = mux_stream_send_from_fd(r->st, r->fd, max);
	if (lim)
		shaper_refund(r->o.shaper, SHAPER_IN, n > 0 ? max - (size_t)n :
		    max);
	if (n > 0) {
		r->from_sock += (uint64_t)n;
		if (r->o.from_sock)
			met_add(r->o.from_sock, (uint64_t)n);
	} else if (n == 0) {
		r->rd_done = 1;
		event_del(r->rev);
		mux_stream_shutdown(r->st);
	} else if (n == MG_ELIMIT) {
		event_del(r->rev); /* writable brings it back */
	} else if (n == MG_EIO) {
		r->failed = 1;
		r->reset = 1;
		r->abort = 1;
	} else if (n != MG_EAGAIN) {
		r->failed = 1; /* the stream cannot send (MG_ECLOSED) */
	}
}

/* a handler is done with r: end it if it ended meanwhile or is done */
static void
relay_unwind(struct relay *r)
{
	r->busy = 0;
	if (r->dying)
		relay_destroy(r);
	else
		relay_check_done(r);
}

static void
relay_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;

	loop_note_io();
	r->busy = 1;
	relay_pump(r);
	relay_unwind(r);
}

static void
relay_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;

	loop_note_io();
	r->busy = 1;
	relay_flush(r);
	relay_unwind(r);
}

static void
relay_st_readable(struct mux_stream *st, void *arg)
{
	struct relay *r = arg;

	if (r->busy) {
		/* we are inside our own call into the mux: just note it */
		event_add(r->wev, NULL);
		return;
	}
	r->busy = 1;
	relay_flush(r);
	relay_unwind(r);
}

static void
relay_st_writable(struct mux_stream *st, void *arg)
{
	struct relay *r = arg;

	if (!r->rd_done && !r->paused_in)
		event_add(r->rev, NULL);
}

/* Tokens to read the socket again: its read event brings the bytes. */
static void
relay_on_pace_in(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;

	r->paused_in = 0;
	if (!r->rd_done)
		event_add(r->rev, NULL);
}

/* Tokens to write the stream's queue again. */
static void
relay_on_pace_out(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;

	r->paused_out = 0;
	r->busy = 1;
	relay_flush(r);
	relay_unwind(r);
}

/* The sink (the mux writing the socket directly) within the tokens. */
static size_t
relay_gate_take(void *arg, size_t want)
{
	struct relay *r = arg;

	if (!shaper_limited(r->o.shaper, SHAPER_OUT))
		return want;
	if (r->paused_out)
		return 0;
	return shaper_take(r->o.shaper, SHAPER_OUT, mtime_us(), want);
}

static void
relay_gate_put(void *arg, size_t n)
{
	struct relay *r = arg;

	shaper_refund(r->o.shaper, SHAPER_OUT, n);
}

static void
relay_st_closed(struct mux_stream *st, void *arg)
{
	struct relay *r = arg;

	/* the session died: the stream goes with it, and what the socket
	 * got so far is not the whole of it */
	r->to_sock = mux_stream_delivered(st) - r->rx_base;
	r->st = NULL;
	r->failed = 1;
	r->reset = 1;
	r->lost = 1;
	relay_finish(r);
}

struct relay *
relay_start(struct event_base *base, int fd, struct mux_stream *st,
    const struct relay_opts *o)
{
	struct relay *r = xcalloc(1, sizeof(*r));

	r->o = *o;
	met_ref(r->o.from_sock);
	met_ref(r->o.to_sock);
	met_ref(r->o.throttled[0]);
	met_ref(r->o.throttled[1]);
	shaper_ref(r->o.shaper);
	return relay_init(r, base, fd, st, o->flags);
}

static struct relay *
relay_init(struct relay *r, struct event_base *base, int fd,
    struct mux_stream *st, int flags)
{
	r->base = base;
	r->fd = fd;
	r->st = st;
	r->flags = flags;
	r->rx_base = mux_stream_delivered(st);
	r->rev = event_new(base, fd, EV_READ | EV_PERSIST, relay_on_read, r);
	r->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, relay_on_write, r);
	if (r->rev == NULL || r->wev == NULL)
		abort();
	mux_stream_set_cbs(st, &relay_stream_cbs, r);
	mux_stream_set_sink(st, fd);
	if (r->o.shaper) {
		/* a limit may come with a reload: the gate asks each time */
		struct mux_sink_gate g = { relay_gate_take, relay_gate_put, r };
		r->pace[SHAPER_IN] = evtimer_new(base, relay_on_pace_in, r);
		r->pace[SHAPER_OUT] = evtimer_new(base, relay_on_pace_out, r);
		if (r->pace[0] == NULL || r->pace[1] == NULL)
			abort();
		mux_stream_set_sink_gate(st, &g);
	}
	event_add(r->rev, NULL);
	/* bytes or a FIN that arrived before us */
	r->busy = 1;
	relay_flush(r);
	r->busy = 0;
	if (r->dying || r->failed || (r->rd_done && r->wr_done)) {
		relay_destroy(r);
		return NULL;
	}
	return r;
}
