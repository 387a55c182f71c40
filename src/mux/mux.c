/* mux.c: smux sessions and streams; see mux.h and docs/internals/mux.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mux/mux.h"
#include "mux/xprt.h"
#include "proto/frame.h"
#include "util/err.h"
#include "util/idmap.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/mtime.h"
#include "util/xmalloc.h"

#define MUX_INITIAL_WINDOW 262144u
/* One read from the session socket: 256 KiB less libevent's chain header,
 * so that the chain allocation is exactly 256 KiB. */
#define MUX_READ_SIZE (262144 - 64)
#define MUX_MAX_IOV 16
#define MUX_LIGHT_FLOW 65536 /* in flight: a flow this light is not a flood */

struct mux_stream {
	struct mux *m;
	const struct mux_stream_cbs *cbs;
	void *arg;
	struct evbuffer *rx;    /* inbound queue, allocated when needed */
	TAILQ_ENTRY(mux_stream) wait_link;
	TAILQ_ENTRY(mux_stream) pend_link; /* on m->pending */
	uint32_t id;
	int sink_fd;
	struct mux_sink_gate gate; /* the sink's budget; take NULL: none */
	uint32_t rx_queued;     /* received, not yet consumed */
	uint32_t rx_consumed;   /* total consumed (wraps) */
	uint32_t rx_last_upd;   /* rx_consumed in our last UPD */
	uint32_t rx_window;     /* advertised window; 0 = the session's */
	uint32_t rx_limit;      /* consumed + window of our last UPD */
	uint32_t rx_limit_prev; /* the same for the UPD before it */
	uint32_t tx_sent;       /* total sent (wraps) */
	uint64_t delivered;     /* consumed payload, for statistics */
	uint32_t peer_consumed;
	uint32_t peer_window;
	unsigned fin_sent : 1;
	unsigned fin_recv : 1;
	unsigned orphan : 1;    /* the user let go; waiting for the peer FIN */
	unsigned waiting : 1;   /* on m->waiters */
	unsigned upd_sent : 1;
	unsigned bulk : 1;      /* the last read filled its reservation */
	unsigned dead : 1;      /* in its closed callback */
	unsigned batched : 1;   /* readable once per read (set_batched) */
	unsigned pending : 1;   /* on m->pending */
	unsigned win_fixed : 1; /* set_window: no growth */
	unsigned rx_slow : 1;   /* since our last UPD, data waited in rx */
	unsigned rst_recv : 1;  /* the peer aborted the stream (empty PSH) */
};

TAILQ_HEAD(stream_list, mux_stream);

struct mux {
	struct event_base *base;
	int fd;
	int is_client;
	uint8_t version;
	struct mux_config cfg;
	struct mux_callbacks cbs;
	void *arg;
	const struct mux_xprt_ops *xo; /* the transport (xprt.h) */
	void *xctx;             /* its context, ours to close */
	struct event *rev, *wev, *timer, *kick;
	struct evbuffer *in, *out;
	struct idmap streams;
	struct stream_list waiters;
	struct stream_list pending; /* batched streams with news this read */
	uint32_t next_id;
	uint32_t peer_max_id;
	unsigned nstreams;
	size_t rx_queued_total;
	size_t win_grown_total; /* sum of the streams' stream_grown */
	uint64_t last_rx_ms, last_tx_ms;
	uint64_t tx_bytes, rx_bytes;
	int depth;              /* > 0 while inside our own event callbacks */
	int write_err;          /* a write failed: die from the loop */
	int corked;
	unsigned read_wants_write : 1;  /* retry the read when writable */
	unsigned write_wants_read : 1;  /* retry the write when readable */
	unsigned dead : 1;
	unsigned free_pending : 1;
	unsigned read_paused : 1;
	unsigned shut : 1;      /* the transport's shutdown ran */
	unsigned rx_seen : 1;   /* a frame came in since the last tick */
	unsigned tx_seen : 1;   /* bytes went out since the last tick */
};

static void mux_on_read(evutil_socket_t fd, short what, void *arg);
static void mux_on_write(evutil_socket_t fd, short what, void *arg);
static void mux_on_timer(evutil_socket_t fd, short what, void *arg);
static void mux_on_kick(evutil_socket_t fd, short what, void *arg);
static void mux_die(struct mux *m, int err);
static void mux_destroy(struct mux *m);

void
mux_config_default(struct mux_config *c)
{
	memset(c, 0, sizeof(*c));
	c->version = 2;
	c->stream_window = 1024 * 1024;
	c->stream_window_max = 8 * 1024 * 1024;
	c->window_growth_max = 64 * 1024 * 1024;
	/* a frame and its header fill one 32 KiB evbuffer chain exactly */
	c->frame_size = 32768 - 64;
	c->session_rx_max = 8 * 1024 * 1024;
	c->out_high = 512 * 1024;
	c->out_hard = 16 * 1024 * 1024;
	c->keepalive_ms = 10000;
	c->dead_ms = 30000;
	c->max_streams = 0;
}

struct mux *
mux_new(struct event_base *base, int fd, int is_client,
    const struct mux_config *cfg, const struct mux_callbacks *cbs, void *arg)
{
	return mux_new_xprt(base, fd, &mux_xprt_plain, NULL, is_client, cfg,
	    cbs, arg);
}

/* Whether input may wait inside the transport, unseen by readiness. */
static int
xprt_buffered(const struct mux *m)
{
	return m->xo->buffered != NULL && m->xo->buffered(m->xctx);
}

struct mux *
mux_new_xprt(struct event_base *base, int fd, const struct mux_xprt_ops *xo,
    void *xctx, int is_client, const struct mux_config *cfg,
    const struct mux_callbacks *cbs, void *arg)
{
	struct mux *m = xcalloc(1, sizeof(*m));
	struct timeval tv;

	m->base = base;
	m->fd = fd;
	m->xo = xo;
	m->xctx = xctx;
	m->is_client = is_client;
	m->cfg = *cfg;
	if (m->cfg.stream_window < MUX_INITIAL_WINDOW)
		m->cfg.stream_window = MUX_INITIAL_WINDOW;
	if (m->cfg.stream_window_max > 1U << 30)
		m->cfg.stream_window_max = 1U << 30;
	if (m->cfg.frame_size == 0 || m->cfg.frame_size > FRAME_MAX_PAYLOAD)
		m->cfg.frame_size = 32768 - 64;
	m->version = is_client ? cfg->version : 0;
	m->cbs = *cbs;
	m->arg = arg;
	m->in = evbuffer_new();
	m->out = evbuffer_new();
	if (m->in == NULL || m->out == NULL)
		abort();
	idmap_init(&m->streams);
	TAILQ_INIT(&m->waiters);
	TAILQ_INIT(&m->pending);
	m->next_id = is_client ? 3 : 2;
	m->rev = event_new(base, fd, EV_READ | EV_PERSIST, mux_on_read, m);
	m->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, mux_on_write, m);
	m->timer = event_new(base, -1, EV_PERSIST, mux_on_timer, m);
	m->kick = event_new(base, -1, 0, mux_on_kick, m);
	if (m->rev == NULL || m->wev == NULL || m->timer == NULL ||
	    m->kick == NULL)
		abort();
	event_add(m->rev, NULL);
	/* a TLS handshake may have read our first records already */
	if (xprt_buffered(m))
		event_active(m->rev, EV_READ, 1);
	if (m->cfg.keepalive_ms) {
		unsigned t = m->cfg.keepalive_ms / 2;
		tv.tv_sec = t / 1000;
		tv.tv_usec = (t % 1000) * 1000;
		event_add(m->timer, &tv);
	}
	m->last_rx_ms = m->last_tx_ms = mtime_ms();
	return m;
}

const char *
mux_tls_error(const struct mux *m)
{
	const char *w;

	if (m->xo->error == NULL)
		return NULL;
	w = m->xo->error(m->xctx);
	return w && w[0] ? w : NULL;
}

const char *
mux_tls_params(const struct mux *m, char *buf, size_t cap)
{
	if (m->xo->describe == NULL || cap == 0)
		return NULL;
	return m->xo->describe(m->xctx, buf, cap);
}

int
mux_version(const struct mux *m)
{
	return m->version;
}

unsigned
mux_nstreams(const struct mux *m)
{
	return m->nstreams;
}

size_t
mux_output_len(const struct mux *m)
{
	return evbuffer_get_length(m->out);
}

void
mux_stats(const struct mux *m, uint64_t *tx, uint64_t *rx)
{
	*tx = m->tx_bytes;
	*rx = m->rx_bytes;
}

/* ---- output ---- */

static void
emit(struct mux *m, uint8_t cmd, uint32_t sid, const void *p, uint16_t len)
{
	uint8_t hdr[FRAME_HDR_LEN];
	struct frame_hdr h = { m->version, cmd, len, sid };

	frame_encode(hdr, &h);
	evbuffer_add(m->out, hdr, sizeof(hdr));
	if (len)
		evbuffer_add(m->out, p, len);
}

static void
mux_wake_waiters(struct mux *m)
{
	struct mux_stream *st;
	size_t n = 0;

	if (TAILQ_EMPTY(&m->waiters) ||
	    evbuffer_get_length(m->out) > m->cfg.out_high / 2)
		return;
	/* wake those waiting now, on the list itself: a callback may free
	 * any stream (which unlinks it), and one still blocked re-queues at
	 * the tail, beyond the count */
	TAILQ_FOREACH(st, &m->waiters, wait_link)
		n++;
	while (n-- > 0 && !m->dead &&
	    (st = TAILQ_FIRST(&m->waiters)) != NULL) {
		TAILQ_REMOVE(&m->waiters, st, wait_link);
		st->waiting = 0;
		if (st->cbs && st->cbs->writable)
			st->cbs->writable(st, st->arg);
	}
}

/* Bytes not yet on the socket: the output, and what the transport holds
 * (TLS records batched). */
static size_t
out_pending(const struct mux *m)
{
	return evbuffer_get_length(m->out) +
	    (m->xo->pending != NULL ? m->xo->pending(m->xctx) : 0);
}

/* Read the socket again after a pause. The transport may hold input
 * already read from the socket (TLS records), which a readiness event
 * would never report: read once from the loop as well. */
static void
mux_resume_read(struct mux *m)
{
	m->read_paused = 0;
	event_add(m->rev, NULL);
	if (xprt_buffered(m))
		event_active(m->rev, EV_READ, 1);
}

/* Write what the transport takes of m->out: bytes, or -1 with errno (EAGAIN
 * when it would block). There is something to write (out_pending). */
static ssize_t
mux_io_write(struct mux *m)
{
	int want_read = 0;
	ssize_t n;

	n = m->xo->write(m->xctx, m->fd, m->out, &want_read);
	if (n < 0 && errno == EAGAIN && want_read)
		m->write_wants_read = 1; /* the read event is always on */
	if (n > 0)
		m->tx_seen = 1;
	return n;
}

/* Try to write the output now; leave the rest to the write event. */
static void
mux_flush(struct mux *m)
{
	int n;

	if (m->dead || m->write_err || m->corked || out_pending(m) == 0)
		return;
	/* the keepalive clock counts queued output as sent: a NOP would
	 * only queue behind it */
	m->tx_seen = 1;
	if (event_pending(m->wev, EV_WRITE, NULL))
		return; /* the socket was full: wait for it */
	n = mux_io_write(m);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		/* die from the loop: our caller may be in the middle of
		 * using a stream, and closed callbacks would pull it away */
		m->write_err = MG_EIO;
		event_active(m->kick, EV_TIMEOUT, 1);
		return;
	}
	if (out_pending(m) > 0)
		event_add(m->wev, NULL);
	else if (!TAILQ_EMPTY(&m->waiters))
		/* all written at once: wake the waiters from the loop, not
		 * from inside the producer that called us */
		event_active(m->kick, EV_TIMEOUT, 1);
}

void
mux_cork(struct mux *m)
{
	m->corked++;
}

void
mux_uncork(struct mux *m)
{
	if (m->corked > 0 && --m->corked == 0)
		mux_flush(m);
}

/* Leave our own call chain; the last one out frees a session that
 * mux_free was asked to free meanwhile. m may be gone afterwards. */
static void
mux_end_callback(struct mux *m)
{
	if (--m->depth == 0 && m->free_pending)
		mux_destroy(m);
}

/* Deferred work of mux_flush: a write error, or waiters to wake. */
static void
mux_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct mux *m = arg;

	if (m->dead)
		return;
	m->depth++;
	if (m->write_err)
		mux_die(m, m->write_err);
	else
		mux_wake_waiters(m);
	mux_end_callback(m);
}

static void
mux_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct mux *m = arg;
	int n;

	loop_note_io();
	m->depth++;
	/* evbuffer_write of an empty buffer returns -1 with a stale errno */
	if (m->read_wants_write) {
		m->read_wants_write = 0;
		event_active(m->rev, EV_READ, 1);
	}
	n = out_pending(m) ? mux_io_write(m) : 0;
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		mux_die(m, MG_EIO);
		goto out;
	}
	if (out_pending(m) == 0)
		event_del(m->wev);
	if (m->read_paused && evbuffer_get_length(m->out) < m->cfg.out_hard &&
	    m->rx_queued_total < m->cfg.session_rx_max)
		mux_resume_read(m);
	mux_wake_waiters(m);
out:
	mux_end_callback(m);
}

/* ---- streams ---- */

static uint32_t
stream_rx_window(const struct mux_stream *st)
{
	return st->rx_window ? st->rx_window : st->m->cfg.stream_window;
}

/* How far growth took st's window beyond the session's starting window. */
static uint32_t
stream_grown(const struct mux_stream *st)
{
	return st->win_fixed || st->rx_window == 0 ? 0 :
	    st->rx_window - st->m->cfg.stream_window;
}

static struct mux_stream *
stream_new(struct mux *m, uint32_t id)
{
	struct mux_stream *st = xcalloc(1, sizeof(*st));

	st->m = m;
	st->id = id;
	st->sink_fd = -1;
	st->peer_window = MUX_INITIAL_WINDOW;
	/* what the peer may send before our first UPD */
	st->rx_limit = st->rx_limit_prev = MUX_INITIAL_WINDOW;
	idmap_put(&m->streams, id, st);
	m->nstreams++;
	return st;
}

static void
stream_destroy(struct mux_stream *st)
{
	struct mux *m = st->m;

	if (st->waiting)
		TAILQ_REMOVE(&m->waiters, st, wait_link);
	if (st->pending)
		TAILQ_REMOVE(&m->pending, st, pend_link);
	if (st->rx) {
		m->rx_queued_total -= st->rx_queued;
		evbuffer_free(st->rx);
	}
	m->win_grown_total -= stream_grown(st);
	idmap_del(&m->streams, st->id);
	m->nstreams--;
	free(st);
}

struct mux_stream *
mux_stream_open(struct mux *m)
{
	struct mux_stream *st;

	if (m->dead || m->version == 0)
		return NULL;
	if (m->cfg.max_streams && m->nstreams >= m->cfg.max_streams)
		return NULL;
	if (m->next_id > UINT32_MAX - 2)
		return NULL; /* ids are never reused */
	st = stream_new(m, m->next_id);
	m->next_id += 2;
	emit(m, FRAME_SYN, st->id, NULL, 0);
	mux_flush(m);
	return st;
}

void
mux_stream_set_cbs(struct mux_stream *st, const struct mux_stream_cbs *cbs,
    void *arg)
{
	st->cbs = cbs;
	st->arg = arg;
}

uint32_t
mux_stream_id(const struct mux_stream *st)
{
	return st->id;
}

struct mux *
mux_stream_session(const struct mux_stream *st)
{
	return st->m;
}

void
mux_stream_set_window(struct mux_stream *st, uint32_t window)
{
	st->m->win_grown_total -= stream_grown(st);
	st->rx_window = window < MUX_INITIAL_WINDOW ? MUX_INITIAL_WINDOW :
	    window;
	st->win_fixed = 1;
	st->upd_sent = 0; /* tell the peer at the next consumption */
}

void
mux_stream_set_sink(struct mux_stream *st, int fd)
{
	st->sink_fd = fd;
}

void
mux_stream_set_sink_gate(struct mux_stream *st,
    const struct mux_sink_gate *g)
{
	if (g != NULL)
		st->gate = *g;
	else
		memset(&st->gate, 0, sizeof(st->gate));
}

struct evbuffer *
mux_stream_rx(struct mux_stream *st)
{
	if (st->rx == NULL && (st->rx = evbuffer_new()) == NULL)
		abort();
	return st->rx;
}

size_t
mux_stream_queued(const struct mux_stream *st)
{
	return st->rx ? evbuffer_get_length(st->rx) : 0;
}

int
mux_stream_fin_received(const struct mux_stream *st)
{
	return st->fin_recv;
}

int
mux_stream_eof(const struct mux_stream *st)
{
	return st->fin_recv && (st->rx == NULL ||
	    evbuffer_get_length(st->rx) == 0);
}

/*
 * Window growth. The sender cuts its last frame at the limit our UPDs
 * granted, so a consumption that ends exactly on one of the last two limits
 * means the sender ran out of window and waited; if no data waited in our
 * queue since the last UPD (rx_slow), the consumer was not what held it
 * back: the window was smaller than the rate times the time our UPD takes
 * to reach the sender and its data to come back, which on a busy machine
 * includes the wait for a CPU. The window then doubles, up to
 * cfg.stream_window_max and while the session's growth stays within
 * cfg.window_growth_max. A stream whose consumer is slow never grows, so
 * memory stays where the slow consumer put it.
 */
static int
stream_grow(struct mux_stream *st)
{
	struct mux *m = st->m;
	uint32_t w = stream_rx_window(st), nw;

	if (st->win_fixed || st->orphan || st->rx_slow || st->rx_queued != 0 ||
	    w >= m->cfg.stream_window_max ||
	    (st->rx_consumed != st->rx_limit &&
	     st->rx_consumed != st->rx_limit_prev))
		return 0;
	nw = w > m->cfg.stream_window_max / 2 ? m->cfg.stream_window_max :
	    w * 2;
	if (m->win_grown_total + (nw - w) > m->cfg.window_growth_max)
		return 0;
	m->win_grown_total += nw - w;
	st->rx_window = nw;
	log_debug("mux fd %d: stream %u: receive window %u KiB (the sender "
	    "waited on it)", m->fd, st->id, nw / 1024);
	return 1;
}

/* Credit n consumed bytes; UPD after the first read, every half window, and
 * when the window grows. */
static void
stream_credit(struct mux_stream *st, size_t n)
{
	struct mux *m = st->m;
	uint8_t upd[FRAME_UPD_LEN];
	uint32_t w;

	st->rx_consumed += (uint32_t)n;
	if (m->version != 2 || m->dead)
		return;
	if (!stream_grow(st) && st->upd_sent &&
	    st->rx_consumed - st->rx_last_upd < stream_rx_window(st) / 2)
		return;
	w = stream_rx_window(st);
	frame_upd_encode(upd, st->rx_consumed, w);
	emit(m, FRAME_UPD, st->id, upd, sizeof(upd));
	st->rx_last_upd = st->rx_consumed;
	st->rx_limit_prev = st->rx_limit;
	st->rx_limit = st->rx_consumed + w;
	st->rx_slow = 0;
	st->upd_sent = 1;
}

static void
stream_unqueue(struct mux_stream *st, size_t n)
{
	struct mux *m = st->m;

	st->rx_queued -= (uint32_t)n;
	m->rx_queued_total -= n;
	if (m->read_paused && !m->dead &&
	    m->rx_queued_total < m->cfg.session_rx_max / 2 &&
	    evbuffer_get_length(m->out) < m->cfg.out_hard)
		mux_resume_read(m);
}

uint64_t
mux_stream_delivered(const struct mux_stream *st)
{
	return st->delivered;
}

void
mux_stream_consumed(struct mux_stream *st, size_t n)
{
	if (n == 0)
		return;
	st->delivered += n;
	stream_unqueue(st, n);
	stream_credit(st, n);
	mux_flush(st->m);
}

ssize_t
mux_stream_flush_to_fd(struct mux_stream *st, int fd)
{
	int n;

	if (st->rx == NULL || evbuffer_get_length(st->rx) == 0)
		return 0;
	n = evbuffer_write(st->rx, fd);
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? MG_EAGAIN : MG_EIO;
	mux_stream_consumed(st, (size_t)n);
	return n;
}

static int
stream_can_send(const struct mux_stream *st)
{
	return !st->m->dead && !st->fin_sent && !st->orphan;
}

int
mux_stream_write(struct mux_stream *st, const void *p, size_t len)
{
	struct mux *m = st->m;
	const uint8_t *b = p;

	if (!stream_can_send(st))
		return MG_ECLOSED;
	while (len > 0) {
		size_t n = len > m->cfg.frame_size ? m->cfg.frame_size : len;
		emit(m, FRAME_PSH, st->id, b, (uint16_t)n);
		st->tx_sent += (uint32_t)n;
		m->tx_bytes += n;
		b += n;
		len -= n;
	}
	mux_flush(m);
	return 0;
}

int
mux_stream_send_msg(struct mux_stream *st, const void *p, size_t len)
{
	if (len == 0 || len > FRAME_MAX_PAYLOAD)
		return MG_EINVAL;
	if (!stream_can_send(st))
		return MG_ECLOSED;
	emit(st->m, FRAME_PSH, st->id, p, (uint16_t)len);
	st->tx_sent += (uint32_t)len;
	mux_flush(st->m);
	return 0;
}

/* Unsigned throughout: a window of 2^31 or more is valid, and read as a
 * signed number it would be negative and stall the stream for good. */
static uint32_t
stream_window_avail(const struct mux_stream *st)
{
	uint32_t inflight;

	if (st->m->version != 2)
		return UINT32_MAX;
	inflight = st->tx_sent - st->peer_consumed; /* wraps, as on the wire */
	return inflight < st->peer_window ? st->peer_window - inflight : 0;
}

static void
stream_wait(struct mux_stream *st)
{
	if (!st->waiting) {
		st->waiting = 1;
		TAILQ_INSERT_TAIL(&st->m->waiters, st, wait_link);
	}
}

/* Frames per read in bulk: four 32 KiB frames fill one 128 KiB chain. */
#define MUX_READ_FRAMES 4

ssize_t
mux_stream_send_from_fd(struct mux_stream *st, int fd, size_t max)
{
	struct mux *m = st->m;
	const size_t fs = m->cfg.frame_size;
	struct evbuffer_iovec v;
	struct iovec iov[MUX_READ_FRAMES];
	ssize_t total = 0, n;
	int err = 0;

	if (!stream_can_send(st))
		return MG_ECLOSED;
	while ((size_t)total < max) {
		uint32_t avail = stream_window_avail(st);
		size_t want, left, nf, used;
		uint8_t *base;

		if (evbuffer_get_length(m->out) > m->cfg.out_high ||
		    avail == 0) {
			stream_wait(st);
			if (total == 0)
				err = MG_ELIMIT;
			break;
		}
		/* one frame at a time until a read fills it: small messages
		 * then cost one small chain, bulk transfers one readv of
		 * several frames whose headers sit between the payloads */
		want = st->bulk ? fs * MUX_READ_FRAMES : fs;
		if (want > avail)
			want = avail;
		if (want > max - (size_t)total) {
			/* no short tail read: one more system call for a
			 * fraction of a batch; the socket is still readable */
			if (total > 0)
				break;
			want = max - (size_t)total;
		}
		nf = (want + fs - 1) / fs;
		if (evbuffer_reserve_space(m->out, nf * FRAME_HDR_LEN + want,
		    &v, 1) != 1)
			abort();
		base = v.iov_base;
		left = want;
		for (size_t i = 0; i < nf; i++) {
			iov[i].iov_base = base + i * (FRAME_HDR_LEN + fs) +
			    FRAME_HDR_LEN;
			iov[i].iov_len = left < fs ? left : fs;
			left -= iov[i].iov_len;
		}
		n = readv(fd, iov, (int)nf);
		if (n <= 0) {
			evbuffer_commit_space(m->out, NULL, 0);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				err = MG_EIO;
			else if (n < 0)
				err = MG_EAGAIN;
			/* EOF: report the bytes first, then 0 on the next call */
			break;
		}
		left = (size_t)n;
		used = 0;
		for (size_t i = 0; i < nf && left > 0; i++) {
			struct frame_hdr h;
			size_t len = left < fs ? left : fs;
			h.ver = m->version;
			h.cmd = FRAME_PSH;
			h.len = (uint16_t)len;
			h.sid = st->id;
			frame_encode(base + i * (FRAME_HDR_LEN + fs), &h);
			used = i * (FRAME_HDR_LEN + fs) + FRAME_HDR_LEN + len;
			left -= len;
		}
		v.iov_len = used;
		evbuffer_commit_space(m->out, &v, 1);
		st->tx_sent += (uint32_t)n;
		m->tx_bytes += (uint64_t)n;
		total += n;
		st->bulk = (size_t)n == want;
		if ((size_t)n < want)
			break; /* the socket is drained for now */
	}
	mux_flush(m);
	if (total > 0)
		return total;
	return err;
}

ssize_t
mux_stream_send_buffer(struct mux_stream *st, struct evbuffer *src)
{
	struct mux *m = st->m;
	ssize_t total = 0;

	if (!stream_can_send(st))
		return MG_ECLOSED;
	while (evbuffer_get_length(src) > 0) {
		size_t n = evbuffer_get_length(src);
		uint32_t avail = stream_window_avail(st);
		uint8_t hdr[FRAME_HDR_LEN];
		struct frame_hdr h;

		if (evbuffer_get_length(m->out) > m->cfg.out_high ||
		    avail == 0) {
			stream_wait(st);
			break;
		}
		if (n > m->cfg.frame_size)
			n = m->cfg.frame_size;
		if (n > avail)
			n = avail;
		h.ver = m->version;
		h.cmd = FRAME_PSH;
		h.len = (uint16_t)n;
		h.sid = st->id;
		frame_encode(hdr, &h);
		evbuffer_add(m->out, hdr, sizeof(hdr));
		evbuffer_remove_buffer(src, m->out, n);
		st->tx_sent += (uint32_t)n;
		m->tx_bytes += n;
		total += (ssize_t)n;
	}
	mux_flush(m);
	if (total == 0 && evbuffer_get_length(src) > 0)
		return MG_ELIMIT;
	return total;
}

int
mux_stream_send_datagram(struct mux_stream *st, const void *p, size_t len)
{
	struct mux *m = st->m;
	const uint8_t *b = p;
	uint8_t pre[2];
	size_t total = len + 2, first = 1;

	if (len > 65535)
		return MG_EINVAL;
	if (!stream_can_send(st))
		return MG_ECLOSED;
	if (stream_window_avail(st) < total)
		return MG_ELIMIT;
	/* A busy output drops the datagrams of flows that have much in
	 * flight (a flood) before those of light flows, which keep headroom
	 * above the heavy ones' ceiling: one source must not silence the
	 * others, and a lone fast flow still rides out a short stall. */
	{
		size_t out = evbuffer_get_length(m->out);
		int heavy = m->version == 2 &&
		    st->tx_sent - st->peer_consumed > MUX_LIGHT_FLOW;
		if (out > (heavy ? 8 : 12) * m->cfg.out_high)
			return MG_ELIMIT;
	}
	pre[0] = (uint8_t)(len >> 8);
	pre[1] = (uint8_t)len;
	while (total > 0) {
		size_t n = total > m->cfg.frame_size ? m->cfg.frame_size : total;
		uint8_t hdr[FRAME_HDR_LEN];
		struct frame_hdr h = { m->version, FRAME_PSH, (uint16_t)n,
			st->id };
		frame_encode(hdr, &h);
		evbuffer_add(m->out, hdr, sizeof(hdr));
		if (first) {
			evbuffer_add(m->out, pre, 2);
			evbuffer_add(m->out, b, n - 2);
			b += n - 2;
			first = 0;
		} else {
			evbuffer_add(m->out, b, n);
			b += n;
		}
		total -= n;
	}
	st->tx_sent += (uint32_t)(len + 2);
	m->tx_bytes += len + 2;
	mux_flush(m);
	return 0;
}

void
mux_stream_shutdown(struct mux_stream *st)
{
	if (st->fin_sent || st->m->dead)
		return;
	st->fin_sent = 1;
	emit(st->m, FRAME_FIN, st->id, NULL, 0);
	mux_flush(st->m);
}

void
mux_stream_abort(struct mux_stream *st)
{
	if (st == NULL || st->orphan || st->dead)
		return;
	if (stream_can_send(st))
		emit(st->m, FRAME_PSH, st->id, NULL, 0);
	mux_stream_free(st); /* the FIN, after the mark */
}

int
mux_stream_reset(const struct mux_stream *st)
{
	return st->rst_recv;
}

void
mux_stream_set_batched(struct mux_stream *st)
{
	st->batched = 1;
}

void
mux_stream_free(struct mux_stream *st)
{
	struct mux *m;
	size_t queued;

	if (st == NULL || st->orphan || st->dead)
		return;
	m = st->m;
	st->orphan = 1;
	st->cbs = NULL;
	st->sink_fd = -1;
	if (st->waiting) {
		TAILQ_REMOVE(&m->waiters, st, wait_link);
		st->waiting = 0;
	}
	if (st->pending) {
		TAILQ_REMOVE(&m->pending, st, pend_link);
		st->pending = 0;
	}
	queued = st->rx ? evbuffer_get_length(st->rx) : 0;
	if (st->rx) {
		evbuffer_free(st->rx);
		st->rx = NULL;
	}
	if (queued) {
		stream_unqueue(st, queued);
		stream_credit(st, queued);
	}
	mux_stream_shutdown(st);
	if (st->fin_recv || m->dead)
		stream_destroy(st);
}

/* ---- input ---- */

static void
mux_proto_error(struct mux *m, const char *what, uint32_t sid)
{
	log_warn("mux fd %d: protocol error: %s (stream %u)", m->fd, what,
	    sid);
	mux_die(m, MG_EPROTO);
}

/* Queue len payload bytes at the head of m->in (header gone) on st. */
static void
stream_enqueue(struct mux_stream *st, size_t len)
{
	struct mux *m = st->m;
	struct evbuffer *rx = mux_stream_rx(st);

	evbuffer_remove_buffer(m->in, rx, len);
	if (st->rx_queued > 0)
		st->rx_slow = 1; /* earlier data still waits */
	st->rx_queued += (uint32_t)len;
	m->rx_queued_total += len;
	if (m->version == 1 && m->rx_queued_total > m->cfg.session_rx_max &&
	    !m->read_paused) {
		m->read_paused = 1;
		event_del(m->rev);
	}
}

#define MUX_RUN_FRAMES 16

/*
 * The fast path: st has a sink and nothing queued. Take the run of complete
 * PSH frames for st at the head of m->in (the first one is h), write all
 * their payloads to the sink in one sendmsg straight from the input
 * chains, and queue only what the sink did not take.
 */
static void
stream_sink_run(struct mux_stream *st, const struct frame_hdr *h)
{
	struct mux *m = st->m;
	size_t lens[MUX_RUN_FRAMES], off, avail = evbuffer_get_length(m->in);
	struct evbuffer_iovec v[MUX_MAX_IOV * 2];
	struct iovec iov[MUX_MAX_IOV * 2];
	struct msghdr msg;
	int nf = 0, nv, ni = 0;
	size_t pos = 0, w = 0, queued = 0, granted = 0;
	ssize_t n;

	lens[nf++] = h->len;
	off = FRAME_HDR_LEN + h->len;
	while (nf < MUX_RUN_FRAMES && avail >= off + FRAME_HDR_LEN) {
		struct evbuffer_ptr ptr;
		uint8_t raw[FRAME_HDR_LEN];
		struct frame_hdr nh;
		if (evbuffer_ptr_set(m->in, &ptr, off, EVBUFFER_PTR_SET) < 0 ||
		    evbuffer_copyout_from(m->in, &ptr, raw, sizeof(raw)) !=
			sizeof(raw) ||
		    frame_decode(raw, sizeof(raw), &nh) < 0 ||
		    nh.ver != m->version || nh.cmd != FRAME_PSH ||
		    nh.sid != st->id || nh.len == 0 ||
		    avail < off + FRAME_HDR_LEN + nh.len)
			break;
		lens[nf++] = nh.len;
		off += FRAME_HDR_LEN + nh.len;
	}
	/* payload ranges of the region, headers skipped */
	nv = evbuffer_peek(m->in, (ev_ssize_t)off, NULL, v, MUX_MAX_IOV * 2);
	if (nv > MUX_MAX_IOV * 2)
		nv = MUX_MAX_IOV * 2;
	{
		size_t fstart = 0;
		int fi = 0;
		for (int i = 0; i < nv && fi < nf; i++) {
			uint8_t *b = v[i].iov_base;
			size_t vlen = v[i].iov_len, vpos = 0;
			while (vpos < vlen && fi < nf) {
				size_t at = pos + vpos; /* region offset */
				size_t pstart = fstart + FRAME_HDR_LEN;
				size_t pend = pstart + lens[fi];
				if (at < pstart) {
					vpos += pstart - at < vlen - vpos ?
					    pstart - at : vlen - vpos;
					continue;
				}
				{
					size_t take = pend - at < vlen - vpos ?
					    pend - at : vlen - vpos;
					if (ni > 0 &&
					    (uint8_t *)iov[ni - 1].iov_base +
						iov[ni - 1].iov_len == b + vpos)
						iov[ni - 1].iov_len += take;
					else if (ni < MUX_MAX_IOV * 2) {
						iov[ni].iov_base = b + vpos;
						iov[ni++].iov_len = take;
					} else {
						/* out of vectors: stop here */
						fi = nf;
						break;
					}
					vpos += take;
				}
				if (pos + vpos == pend) {
					fstart = pend;
					fi++;
				}
			}
			pos += vlen;
		}
	}
	if (st->gate.take != NULL && ni > 0) {
		/* a bandwidth limit: write only what it allows now */
		size_t tot = 0, acc = 0;
		int k = 0;
		for (int i = 0; i < ni; i++)
			tot += iov[i].iov_len;
		granted = st->gate.take(st->gate.arg, tot);
		while (k < ni && acc + iov[k].iov_len <= granted)
			acc += iov[k++].iov_len;
		if (k < ni && granted > acc)
			iov[k++].iov_len = granted - acc;
		ni = k;
	}
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = (size_t)ni;
	n = ni ? sendmsg(st->sink_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
	if (n > 0)
		w = (size_t)n;
	if (st->gate.take != NULL && w < granted)
		st->gate.put(st->gate.arg, granted - w);
	m->rx_seen = 1;
	for (int i = 0; i < nf; i++) {
		size_t take = w < lens[i] ? w : lens[i];
		evbuffer_drain(m->in, FRAME_HDR_LEN);
		m->rx_bytes += lens[i];
		if (take) {
			evbuffer_drain(m->in, take);
			st->delivered += take;
			stream_credit(st, take);
			w -= take;
		}
		if (take < lens[i]) {
			if (m->version == 2 && (uint64_t)st->rx_queued +
			    (lens[i] - take) > stream_rx_window(st)) {
				mux_proto_error(m, "peer overran the stream "
				    "window", st->id);
				return;
			}
			stream_enqueue(st, lens[i] - take);
			st->rx_slow = 1; /* the sink is full */
			queued += lens[i] - take;
		}
	}
	if (queued && st->cbs && st->cbs->readable)
		st->cbs->readable(st, st->arg);
}

/* Deliver a PSH payload of len bytes at the head of m->in (header gone). */
static void
stream_deliver(struct mux_stream *st, size_t len)
{
	struct mux *m = st->m;

	if (m->version == 2 &&
	    (uint64_t)st->rx_queued + len > stream_rx_window(st)) {
		mux_proto_error(m, "peer overran the stream window", st->id);
		return;
	}
	m->rx_bytes += len;
	stream_enqueue(st, len);
	if (st->batched) {
		if (!st->pending) {
			TAILQ_INSERT_TAIL(&m->pending, st, pend_link);
			st->pending = 1;
		}
		return; /* readable comes at the end of the read */
	}
	if (st->cbs && st->cbs->readable)
		st->cbs->readable(st, st->arg);
}

/* The batched streams that received data during this read hear of it. */
static void
mux_run_pending(struct mux *m)
{
	struct mux_stream *st;

	/* bounded: each round takes one off; a callback only removes (a
	 * stream it frees), deliveries come from the read alone */
	while (!m->dead && (st = TAILQ_FIRST(&m->pending)) != NULL) {
		TAILQ_REMOVE(&m->pending, st, pend_link);
		st->pending = 0;
		if (st->cbs && st->cbs->readable)
			st->cbs->readable(st, st->arg);
	}
}

/* Handle one complete frame at the head of m->in. */
static void
mux_handle_frame(struct mux *m, const struct frame_hdr *h)
{
	struct mux_stream *st = idmap_get(&m->streams, h->sid);
	uint8_t buf[FRAME_UPD_LEN];

	switch (h->cmd) {
	case FRAME_NOP:
		evbuffer_drain(m->in, FRAME_HDR_LEN);
		break;
	case FRAME_SYN:
		evbuffer_drain(m->in, FRAME_HDR_LEN);
		/* UINT32_MAX is the id map's tombstone, and never a valid id */
		if (h->sid == 0 || h->sid == UINT32_MAX ||
		    (h->sid & 1) != (m->is_client ? 0 : 1)) {
			mux_proto_error(m, "SYN with an id of the wrong parity",
			    h->sid);
			return;
		}
		if (st != NULL || (h->sid < m->peer_max_id &&
		    m->peer_max_id - h->sid > 4096)) {
			mux_proto_error(m, "SYN for an id already used",
			    h->sid);
			return;
		}
		if (h->sid > m->peer_max_id)
			m->peer_max_id = h->sid;
		st = stream_new(m, h->sid);
		if (m->cfg.max_streams && m->nstreams > m->cfg.max_streams) {
			log_warn("mux fd %d: stream %u refused: %u streams open",
			    m->fd, h->sid, m->nstreams - 1);
			mux_stream_free(st);
			return;
		}
		m->cbs.accept(m, st, m->arg);
		break;
	case FRAME_FIN:
		evbuffer_drain(m->in, FRAME_HDR_LEN);
		if (st == NULL || st->fin_recv)
			break;
		st->fin_recv = 1;
		if (st->orphan) {
			if (st->fin_sent)
				stream_destroy(st);
		} else if (st->cbs && st->cbs->readable) {
			st->cbs->readable(st, st->arg);
		}
		break;
	case FRAME_UPD:
		evbuffer_drain(m->in, FRAME_HDR_LEN);
		evbuffer_remove(m->in, buf, sizeof(buf));
		if (st == NULL)
			break;
		frame_upd_decode(buf, sizeof(buf), &st->peer_consumed,
		    &st->peer_window);
		if (st->waiting && stream_window_avail(st) > 0 &&
		    evbuffer_get_length(m->out) <= m->cfg.out_high) {
			TAILQ_REMOVE(&m->waiters, st, wait_link);
			st->waiting = 0;
			if (st->cbs && st->cbs->writable)
				st->cbs->writable(st, st->arg);
		}
		break;
	case FRAME_PSH:
		if (st != NULL && !st->fin_recv && !st->orphan && h->len &&
		    st->sink_fd >= 0 && (st->cbs == NULL ||
		    st->cbs->message == NULL) && mux_stream_queued(st) == 0) {
			stream_sink_run(st, h);
			break;
		}
		evbuffer_drain(m->in, FRAME_HDR_LEN);
		if (st == NULL || st->fin_recv) {
			/* late data for a closed stream is read and dropped */
			evbuffer_drain(m->in, h->len);
			break;
		}
		if (h->len == 0) {
			/* the reset mark of mux_stream_abort; no other
			 * sender makes an empty PSH, and they ignore one */
			if (!st->orphan && !st->rst_recv) {
				st->rst_recv = 1;
				if (st->cbs && st->cbs->readable)
					st->cbs->readable(st, st->arg);
			}
			break;
		}
		if (st->orphan) {
			evbuffer_drain(m->in, h->len);
			stream_credit(st, h->len);
		} else if (st->cbs && st->cbs->message) {
			const uint8_t *p = evbuffer_pullup(m->in, h->len);
			m->rx_bytes += h->len;
			st->cbs->message(st, p, h->len, st->arg);
			/* the callback may have killed the session */
			if (!m->dead) {
				evbuffer_drain(m->in, h->len);
				st = idmap_get(&m->streams, h->sid);
				if (st)
					stream_credit(st, h->len);
			}
		} else {
			stream_deliver(st, h->len);
		}
		break;
	}
}

static void
mux_process_input(struct mux *m)
{
	uint8_t raw[FRAME_HDR_LEN];
	struct frame_hdr h;
	size_t avail;

	while (!m->dead && !m->free_pending) {
		avail = evbuffer_get_length(m->in);
		if (avail < FRAME_HDR_LEN)
			break;
		evbuffer_copyout(m->in, raw, sizeof(raw));
		if (frame_decode(raw, sizeof(raw), &h) < 0) {
			mux_proto_error(m, "invalid frame header", 0);
			return;
		}
		if (m->version == 0) {
			m->version = h.ver; /* the client's first frame */
		} else if (h.ver != m->version) {
			mux_proto_error(m, "frame version changed", h.sid);
			return;
		}
		if (avail < FRAME_HDR_LEN + (size_t)h.len)
			break;
		m->rx_seen = 1;
		mux_handle_frame(m, &h);
	}
	if (!TAILQ_EMPTY(&m->pending) && !m->free_pending)
		mux_run_pending(m);
}

/* Read from the transport into m->in: bytes (> 0), 0 at EOF, -1 with errno
 * (EAGAIN: nothing now). Reads until the transport holds nothing (TLS),
 * since the socket may show nothing while records wait inside it. */
static ssize_t
mux_io_read(struct mux *m, int *more)
{
	struct evbuffer_iovec v[2];
	struct iovec iov[2];
	ssize_t n, total = 0;
	int nv;

	*more = 0;
	for (;;) {
		int want_write = 0;
		nv = evbuffer_reserve_space(m->in, MUX_READ_SIZE, v, 2);
		for (int i = 0; i < nv; i++) {
			iov[i].iov_base = v[i].iov_base;
			iov[i].iov_len = v[i].iov_len;
		}
		n = m->xo->readv(m->xctx, m->fd, iov, nv, &want_write);
		if (n <= 0) {
			int saved = errno;
			evbuffer_commit_space(m->in, NULL, 0);
			if (n < 0 && saved == EAGAIN && want_write) {
				m->read_wants_write = 1;
				event_add(m->wev, NULL);
			}
			errno = saved;
			return total > 0 ? total : n;
		}
		total += n;
		for (int i = 0; i < nv; i++) {
			size_t take = (size_t)n < v[i].iov_len ?
			    (size_t)n : v[i].iov_len;
			v[i].iov_len = take;
			n -= (ssize_t)take;
		}
		evbuffer_commit_space(m->in, v, nv);
		if (!xprt_buffered(m))
			return total; /* the socket is drained */
		if (total >= 4 * MUX_READ_SIZE) {
			*more = 1; /* yield; come back from the loop */
			return total;
		}
	}
}

static void
mux_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct mux *m = arg;
	ssize_t n;
	int more;

	loop_note_io();
	m->depth++;
	n = mux_io_read(m, &more);
	if (n <= 0) {
		if (n == 0)
			mux_die(m, MG_ECLOSED);
		else if (errno != EAGAIN && errno != EINTR)
			mux_die(m, MG_EIO);
		else if (out_pending(m) > 0)
			mux_flush(m); /* a KeyUpdate answer, say, from the read */
		goto out;
	}
	mux_process_input(m);
	if (!m->dead && !m->free_pending) {
		if (m->write_wants_read) {
			m->write_wants_read = 0;
			if (evbuffer_get_length(m->out))
				event_active(m->wev, EV_WRITE, 1);
		}
		mux_flush(m);
		if (!m->read_paused &&
		    evbuffer_get_length(m->out) > m->cfg.out_hard) {
			/* the peer makes us write but does not read */
			m->read_paused = 1;
			event_del(m->rev);
		} else if (more && !m->read_paused) {
			event_active(m->rev, EV_READ, 1);
		}
	}
out:
	mux_end_callback(m);
}

static void
mux_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct mux *m = arg;
	uint64_t now = mtime_ms();

	m->depth++;
	/* the data path only sets flags; the clock is read here, once a
	 * tick, and it is the monotonic one: a wall-clock step neither kills
	 * the session nor wraps the interval */
	if (m->rx_seen || m->read_paused)
		m->last_rx_ms = now; /* paused: we stopped reading, not the
					peer */
	if (m->tx_seen)
		m->last_tx_ms = now;
	m->rx_seen = m->tx_seen = 0;
	if (m->cfg.dead_ms && now - m->last_rx_ms >= m->cfg.dead_ms) {
		log_warn("mux fd %d: no frame from the peer for %u ms", m->fd,
		    m->cfg.dead_ms);
		mux_die(m, MG_ETIMEDOUT);
		goto out;
	}
	if (m->version && now - m->last_tx_ms >= m->cfg.keepalive_ms / 2) {
		emit(m, FRAME_NOP, 0, NULL, 0);
		mux_flush(m);
	}
out:
	mux_end_callback(m);
}

/* ---- teardown ---- */

static void
mux_die(struct mux *m, int err)
{
	uint32_t *ids;
	size_t n = 0;

	if (m->dead)
		return;
	m->dead = 1;
	m->depth++;
	event_del(m->rev);
	event_del(m->timer);
	/* one last non-blocking try, so an Error or Goodbye gets out */
	if (out_pending(m))
		(void)mux_io_write(m);
	event_del(m->wev);
	m->xo->shutdown(m->xctx, m->fd);
	m->shut = 1;

	ids = xcalloc(m->streams.count + 1, sizeof(*ids));
	for (size_t i = 0; i < m->streams.cap; i++) {
		uint32_t k = m->streams.keys[i];
		if (k != 0 && k != UINT32_MAX)
			ids[n++] = k;
	}
	for (size_t i = 0; i < n; i++) {
		/* a callback may have freed a later stream: look it up again */
		struct mux_stream *st = idmap_get(&m->streams, ids[i]);
		if (st == NULL)
			continue;
		if (!st->orphan && st->cbs && st->cbs->closed) {
			st->dead = 1;
			st->cbs->closed(st, st->arg);
		}
		stream_destroy(st);
	}
	free(ids);
	if (m->cbs.closed)
		m->cbs.closed(m, err, m->arg);
	mux_end_callback(m);
}

void
mux_close(struct mux *m, int err)
{
	mux_die(m, err);
}

static void
mux_destroy(struct mux *m)
{
	struct mux_stream **all;
	size_t n = 0;

	all = xcalloc(m->streams.count + 1, sizeof(*all));
	for (size_t i = 0; i < m->streams.cap; i++) {
		uint32_t k = m->streams.keys[i];
		if (k != 0 && k != UINT32_MAX)
			all[n++] = m->streams.vals[i];
	}
	for (size_t i = 0; i < n; i++)
		stream_destroy(all[i]);
	free(all);
	idmap_free(&m->streams);
	event_free(m->rev);
	event_free(m->wev);
	event_free(m->timer);
	event_free(m->kick);
	evbuffer_free(m->in);
	evbuffer_free(m->out);
	if (!m->shut)
		m->xo->shutdown(m->xctx, m->fd);
	if (m->xo->close != NULL)
		m->xo->close(m->xctx);
	if (m->fd >= 0)
		close(m->fd);
	free(m);
}

/*
 * Inside our own call chain (depth > 0) the free waits until the chain has
 * unwound, in mux_end_callback, not for a deferred event: a session closed
 * after its loop stopped (mux_close at shutdown, whose closed callback
 * frees it) would otherwise wait for a loop that never runs again.
 */
void
mux_free(struct mux *m)
{
	if (m == NULL || m->free_pending)
		return;
	m->free_pending = 1;
	if (m->depth == 0) {
		mux_destroy(m);
		return;
	}
	m->dead = 1;
	event_del(m->rev);
	event_del(m->wev);
	event_del(m->timer);
	event_del(m->kick);
}
