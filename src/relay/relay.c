/* relay.c: socket <-> stream bridging; see relay.h. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "metrics/metrics.h"
#include "mux/mux.h"
#include "relay/relay.h"
#include "util/err.h"
#include "util/loop.h"
#include "util/xmalloc.h"

/* How much one read event may move before yielding to other sockets. */
#define RELAY_READ_BUDGET (256 * 1024)

struct relay {
	struct event_base *base;
	struct mux_stream *st;
	struct event *rev, *wev;
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
};

static struct relay *relay_init(struct relay *r, struct event_base *base,
    int fd, struct mux_stream *st, int flags);
static void relay_on_read(evutil_socket_t fd, short what, void *arg);
static void relay_on_write(evutil_socket_t fd, short what, void *arg);
static void relay_st_readable(struct mux_stream *st, void *arg);
static void relay_st_writable(struct mux_stream *st, void *arg);
static void relay_st_closed(struct mux_stream *st, void *arg);

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

/* Write what the stream has queued; shut the socket once FIN is through. */
static void
relay_flush(struct relay *r)
{
	ssize_t n;

	if (mux_stream_reset(r->st)) {
		/* the far end's socket failed: so does ours, at once, as a
		 * TCP reset would (what is queued is dropped) */
		r->failed = 1;
		r->reset = 1;
		return;
	}
	n = mux_stream_flush_to_fd(r->st, r->fd);
	if (n == MG_EIO) {
		r->failed = 1;
		r->reset = 1;
		r->abort = 1;
		return;
	}
	r->to_sock = mux_stream_delivered(r->st) - r->rx_base;
	relay_count_to(r);
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
	ssize_t n = mux_stream_send_from_fd(r->st, r->fd, RELAY_READ_BUDGET);

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

static void
relay_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;

	loop_note_io();
	r->busy = 1;
	relay_pump(r);
	r->busy = 0;
	if (r->dying)
		relay_destroy(r);
	else
		relay_check_done(r);
}

static void
relay_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;

	loop_note_io();
	r->busy = 1;
	relay_flush(r);
	r->busy = 0;
	if (r->dying)
		relay_destroy(r);
	else
		relay_check_done(r);
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
	r->busy = 0;
	if (r->dying)
		relay_destroy(r);
	else
		relay_check_done(r);
}

static void
relay_st_writable(struct mux_stream *st, void *arg)
{
	struct relay *r = arg;

	if (!r->rd_done)
		event_add(r->rev, NULL);
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
