/* test_mux.c: the smux session (src/mux) against docs/protocol.md section 3. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "mux/mux.h"
#include "mux/xprt.h"
#include "proto/frame.h"
#include "util/err.h"

#define MAXST 16

/* ---- plumbing ---- */

static uint64_t
wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static void
make_pair(int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(fcntl(fds[i], F_SETFL,
		    fcntl(fds[i], F_GETFL) | O_NONBLOCK), 0);
}

/* Run the loop for about ms milliseconds (loopexit is the watchdog). */
static void
run_for(struct event_base *base, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_loop(base, 0);
}

/* Step the loop in 2 ms slices until pred(arg) or max_ms passes. */
static int
run_until(struct event_base *base, int (*pred)(void *), void *arg,
    unsigned max_ms)
{
	uint64_t end = wall_ms() + max_ms;

	while (!pred(arg)) {
		if (wall_ms() >= end)
			return 0;
		run_for(base, 2);
	}
	return 1;
}

/* Per-stream test state. */
struct sctx {
	struct mux_stream *st;
	struct evbuffer *got;   /* drained payload */
	int drain;              /* readable: take everything and credit it */
	int readable, writable, closed, eof;
	int nmsg;
	uint8_t *msg[4];
	size_t msglen[4];
	struct evbuffer *src;   /* writable: push this with send_buffer */
	int free_session_in;    /* 1: closed cb, 2: readable cb, 3: message */
	struct sctx *other;     /* closed: mux_stream_free(other->st) */
	int free_other_in_writable;
	int sink_fd;
};

/* Per-session test state. */
struct side {
	struct event_base *base;
	struct mux *m;
	int closed, err;
	int free_in_closed;
	int naccept;
	struct sctx s[MAXST];
	int drain;              /* default for accepted streams */
	int message_mode;
	int no_drain_id;        /* accepted stream with this id never drains */
	int sink_fd;            /* accepted streams get this sink, if >= 0 */
};

static void
sctx_push(struct sctx *c)
{
	while (c->st && c->src && evbuffer_get_length(c->src) > 0) {
		ssize_t n = mux_stream_send_buffer(c->st, c->src);
		if (n <= 0)
			break;
	}
}

static void
st_readable(struct mux_stream *st, void *arg)
{
	struct sctx *c = arg;

	c->readable++;
	if (c->free_session_in == 2) {
		mux_free(mux_stream_session(st));
		return;
	}
	if (c->drain) {
		size_t n = evbuffer_get_length(mux_stream_rx(st));
		evbuffer_remove_buffer(mux_stream_rx(st), c->got, n);
		mux_stream_consumed(st, n);
	}
	if (mux_stream_eof(st))
		c->eof = 1;
}

static void
st_writable(struct mux_stream *st, void *arg)
{
	struct sctx *c = arg;

	c->writable++;
	if (c->free_other_in_writable && c->other && c->other->st) {
		mux_stream_free(c->other->st);
		c->other->st = NULL;
	}
	sctx_push(c);
}

static void
st_message(struct mux_stream *st, const uint8_t *p, size_t len, void *arg)
{
	struct sctx *c = arg;

	if (c->nmsg < 4) {
		c->msg[c->nmsg] = malloc(len);
		memcpy(c->msg[c->nmsg], p, len);
		c->msglen[c->nmsg] = len;
	}
	c->nmsg++;
	if (c->free_session_in == 3)
		mux_free(mux_stream_session(st));
}

static void
st_closed(struct mux_stream *st, void *arg)
{
	struct sctx *c = arg;

	c->closed++;
	if (c->other && c->other->st && !c->other->closed) {
		mux_stream_free(c->other->st);
		c->other->st = NULL;
	}
	if (c->free_session_in == 1)
		mux_free(mux_stream_session(st));
}

static const struct mux_stream_cbs stream_cbs = {
	.readable = st_readable,
	.writable = st_writable,
	.message = NULL,
	.closed = st_closed,
};

static const struct mux_stream_cbs msg_cbs = {
	.readable = st_readable,
	.writable = st_writable,
	.message = st_message,
	.closed = st_closed,
};

static struct sctx *
sctx_attach(struct side *sd, struct mux_stream *st)
{
	struct sctx *c;

	assert_true(sd->naccept < MAXST);
	c = &sd->s[sd->naccept++];
	c->st = st;
	c->got = evbuffer_new();
	c->drain = sd->drain;
	if (sd->no_drain_id && mux_stream_id(st) == (uint32_t)sd->no_drain_id)
		c->drain = 0;
	mux_stream_set_cbs(st, sd->message_mode ? &msg_cbs : &stream_cbs, c);
	return c;
}

static void
on_accept(struct mux *m, struct mux_stream *st, void *arg)
{
	struct side *sd = arg;
	struct sctx *c = sctx_attach(sd, st);

	if (sd->sink_fd >= 0) {
		c->sink_fd = sd->sink_fd;
		mux_stream_set_sink(st, sd->sink_fd);
	}
}

static void
on_closed(struct mux *m, int err, void *arg)
{
	struct side *sd = arg;

	sd->closed++;
	sd->err = err;
	if (sd->free_in_closed) {
		mux_free(m);
		sd->m = NULL;
	}
}

static const struct mux_callbacks session_cbs = { on_accept, on_closed };

static void
side_init(struct side *sd, struct event_base *base)
{
	memset(sd, 0, sizeof(*sd));
	sd->base = base;
	sd->drain = 1;
	sd->sink_fd = -1;
}

static void
side_start(struct side *sd, int fd, int is_client,
    const struct mux_config *cfg)
{
	sd->m = mux_new(sd->base, fd, is_client, cfg, &session_cbs, sd);
	assert_non_null(sd->m);
}

static void
side_done(struct side *sd)
{
	mux_free(sd->m);
	sd->m = NULL;
	for (int i = 0; i < MAXST; i++) {
		if (sd->s[i].got)
			evbuffer_free(sd->s[i].got);
		if (sd->s[i].src)
			evbuffer_free(sd->s[i].src);
		for (int j = 0; j < 4; j++)
			free(sd->s[i].msg[j]);
	}
}

static int
pred_closed(void *arg)
{
	return ((struct side *)arg)->closed > 0;
}

static int
pred_accepted(void *arg)
{
	return ((struct side *)arg)->naccept > 0;
}

/* ---- the raw peer ---- */

static void
raw_write(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t end = wall_ms() + 3000;

	while (len > 0) {
		ssize_t n = write(fd, b, len);
		if (n < 0) {
			assert_true(errno == EAGAIN || errno == EINTR);
			assert_true(wall_ms() < end);
			usleep(200);
			continue;
		}
		b += n;
		len -= (size_t)n;
	}
}

static void
raw_frame(int fd, uint8_t ver, uint8_t cmd, uint32_t sid, const void *p,
    uint16_t len)
{
	uint8_t hdr[FRAME_HDR_LEN];
	struct frame_hdr h = { ver, cmd, len, sid };

	frame_encode(hdr, &h);
	raw_write(fd, hdr, sizeof(hdr));
	if (len)
		raw_write(fd, p, len);
}

static void
raw_upd(int fd, uint32_t sid, uint32_t consumed, uint32_t window)
{
	uint8_t p[FRAME_UPD_LEN];

	frame_upd_encode(p, consumed, window);
	raw_frame(fd, 2, FRAME_UPD, sid, p, sizeof(p));
}

/* Send len bytes of PSH on sid (pattern from off) while the mux's loop runs,
 * so that a mux that has to read first cannot deadlock the test. */
static void
raw_psh_bulk(struct event_base *base, int fd, uint32_t sid, size_t off,
    size_t len)
{
	struct evbuffer *out = evbuffer_new();
	uint8_t chunk[32768];
	uint64_t end = wall_ms() + 5000;

	while (len > 0) {
		size_t n = len > sizeof(chunk) ? sizeof(chunk) : len;
		uint8_t hdr[FRAME_HDR_LEN];
		struct frame_hdr h = { 2, FRAME_PSH, (uint16_t)n, sid };

		for (size_t i = 0; i < n; i++)
			chunk[i] = (uint8_t)((off + i) * 7 + 1);
		frame_encode(hdr, &h);
		evbuffer_add(out, hdr, sizeof(hdr));
		evbuffer_add(out, chunk, n);
		off += n;
		len -= n;
	}
	while (evbuffer_get_length(out) > 0 && wall_ms() < end) {
		if (evbuffer_write(out, fd) < 0)
			assert_true(errno == EAGAIN);
		run_for(base, 1);
	}
	assert_int_equal(evbuffer_get_length(out), 0);
	evbuffer_free(out);
}

/* Read whatever the socket has into buf. */
static void
raw_read(int fd, struct evbuffer *buf)
{
	for (;;) {
		int n = evbuffer_read(buf, fd, 65536);
		if (n <= 0)
			break;
	}
}

/* Take one whole frame from buf: 1 with *h and payload (into p if
 * p != NULL, up to cap), 0 if incomplete. Fails on a bad header. */
static int
raw_take(struct evbuffer *buf, struct frame_hdr *h, uint8_t *p, size_t cap)
{
	uint8_t hdr[FRAME_HDR_LEN];

	if (evbuffer_get_length(buf) < FRAME_HDR_LEN)
		return 0;
	evbuffer_copyout(buf, hdr, sizeof(hdr));
	assert_int_equal(frame_decode(hdr, sizeof(hdr), h), FRAME_HDR_LEN);
	if (evbuffer_get_length(buf) < FRAME_HDR_LEN + (size_t)h->len)
		return 0;
	evbuffer_drain(buf, FRAME_HDR_LEN);
	if (p != NULL && h->len <= cap)
		evbuffer_remove(buf, p, h->len);
	else
		evbuffer_drain(buf, h->len);
	return 1;
}

static void
cfg_v2(struct mux_config *c)
{
	mux_config_default(c);
	c->keepalive_ms = 0;
	c->dead_ms = 0;
}

/* ---- 1. ids and protocol errors ---- */

static void
test_client_ids(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	struct evbuffer *in = evbuffer_new();
	static const uint8_t want[24] = {
		0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
	};
	uint8_t got[24];
	uint32_t ids[3];
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	side_init(&cl, base);
	side_start(&cl, fds[0], 1, &cfg);
	assert_int_equal(mux_version(cl.m), 2);
	for (int i = 0; i < 3; i++) {
		struct mux_stream *st = mux_stream_open(cl.m);
		assert_non_null(st);
		ids[i] = mux_stream_id(st);
	}
	assert_int_equal(ids[0], 3);
	assert_int_equal(ids[1], 5);
	assert_int_equal(ids[2], 7);
	assert_int_equal(mux_nstreams(cl.m), 3);
	run_for(base, 10);
	raw_read(fds[1], in);
	assert_int_equal(evbuffer_get_length(in), 24);
	evbuffer_remove(in, got, sizeof(got));
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(cl.closed, 0);

	side_done(&cl);
	close(fds[1]);
	evbuffer_free(in);
	event_base_free(base);
}

static void
test_server_ids(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side sv;
	struct evbuffer *in = evbuffer_new();
	static const uint8_t want[16] = {
		0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
	};
	uint8_t got[16];
	struct mux_stream *a, *b;
	int fds[2];

	cfg_v2(&cfg);
	cfg.version = 1; /* ignored by a server */
	make_pair(fds);
	side_init(&sv, base);
	side_start(&sv, fds[0], 0, &cfg);
	assert_int_equal(mux_version(sv.m), 0);
	/* no version yet: a server cannot open */
	assert_null(mux_stream_open(sv.m));

	raw_frame(fds[1], 2, FRAME_SYN, 3, NULL, 0);
	assert_true(run_until(base, pred_accepted, &sv, 2000));
	assert_int_equal(mux_version(sv.m), 2);
	assert_int_equal(mux_stream_id(sv.s[0].st), 3);

	a = mux_stream_open(sv.m);
	b = mux_stream_open(sv.m);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(mux_stream_id(a), 2);
	assert_int_equal(mux_stream_id(b), 4);
	run_for(base, 10);
	raw_read(fds[1], in);
	assert_int_equal(evbuffer_get_length(in), 16);
	evbuffer_remove(in, got, sizeof(got));
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(sv.closed, 0);

	side_done(&sv);
	close(fds[1]);
	evbuffer_free(in);
	event_base_free(base);
}

struct bad_case {
	const char *what;
	int is_client;          /* the mux under test */
	uint8_t bytes[64];
	size_t len;
};

/* Each is a protocol error that must close the session with MG_EPROTO. */
static const struct bad_case bad_cases[] = {
	{ "even SYN to a server", 0,
	    { 2, 0, 0, 0, 2, 0, 0, 0 }, 8 },
	{ "SYN id 0 to a server", 0,
	    { 2, 0, 0, 0, 0, 0, 0, 0 }, 8 },
	{ "odd SYN to a client", 1,
	    { 2, 0, 0, 0, 3, 0, 0, 0 }, 8 },
	{ "unknown command 5", 0,
	    { 2, 0, 0, 0, 3, 0, 0, 0, 2, 5, 0, 0, 3, 0, 0, 0 }, 16 },
	{ "version 3", 0,
	    { 3, 0, 0, 0, 3, 0, 0, 0 }, 8 },
	{ "version 3 mid-session", 0,
	    { 2, 0, 0, 0, 3, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0 }, 16 },
	{ "NOP with a payload", 0,
	    { 2, 0, 0, 0, 3, 0, 0, 0, 2, 3, 1, 0, 0, 0, 0, 0, 0x55 }, 17 },
	{ "FIN with a payload", 0,
	    { 2, 0, 0, 0, 3, 0, 0, 0, 2, 1, 1, 0, 3, 0, 0, 0, 0x55 }, 17 },
	{ "UPD of length 4", 0,
	    { 2, 0, 0, 0, 3, 0, 0, 0, 2, 4, 4, 0, 3, 0, 0, 0, 1, 0, 0, 0 },
	    20 },
	{ "UPD in version 1", 0,
	    { 1, 0, 0, 0, 3, 0, 0, 0, 1, 4, 8, 0, 3, 0, 0, 0,
		1, 0, 0, 0, 0, 0, 4, 0 }, 24 },
	{ "SYN for an open id", 0,
	    { 2, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0 }, 16 },
	{ "version changes 2 -> 1", 0,
	    { 2, 0, 0, 0, 3, 0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0 }, 16 },
	{ "version changes 1 -> 2", 0,
	    { 1, 0, 0, 0, 3, 0, 0, 0, 2, 2, 1, 0, 3, 0, 0, 0, 0x41 }, 17 },
	{ "client: version changes from its own", 1,
	    { 1, 3, 0, 0, 0, 0, 0, 0 }, 8 },
};

/* A batched stream hears of a burst once per read; others once per frame. */
static int
pred_burst(void *arg)
{
	struct side *sd = arg;

	return sd->naccept >= 2 && evbuffer_get_length(sd->s[0].got) == 40 &&
	    evbuffer_get_length(sd->s[1].got) == 12;
}

static void
test_batched_readable(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side sv;
	struct evbuffer *burst = evbuffer_new();
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	side_init(&sv, base);
	side_start(&sv, fds[0], 0, &cfg);
	raw_frame(fds[1], 2, FRAME_SYN, 3, NULL, 0);
	raw_frame(fds[1], 2, FRAME_SYN, 5, NULL, 0);
	assert_true(run_until(base, pred_accepted, &sv, 2000));
	run_for(base, 20);
	assert_int_equal(sv.naccept, 2);
	mux_stream_set_batched(sv.s[0].st);
	/* ten frames on 3 and three on 5, interleaved, in one write */
	for (int i = 0; i < 10; i++) {
		uint8_t hdr[FRAME_HDR_LEN];
		struct frame_hdr h = { 2, FRAME_PSH, 4, 3 };

		frame_encode(hdr, &h);
		evbuffer_add(burst, hdr, sizeof(hdr));
		evbuffer_add(burst, "abcd", 4);
		if (i % 3 == 0 && i < 9) {
			h.sid = 5;
			frame_encode(hdr, &h);
			evbuffer_add(burst, hdr, sizeof(hdr));
			evbuffer_add(burst, "wxyz", 4);
		}
	}
	raw_write(fds[1], evbuffer_pullup(burst, -1),
	    evbuffer_get_length(burst));
	assert_true(run_until(base, pred_burst, &sv, 2000));
	assert_int_equal(sv.s[0].readable, 1);
	assert_int_equal(sv.s[1].readable, 3);
	/* a FIN after data, in one read: the data first, then the end */
	raw_frame(fds[1], 2, FRAME_PSH, 3, "efgh", 4);
	raw_frame(fds[1], 2, FRAME_FIN, 3, NULL, 0);
	run_for(base, 50);
	assert_int_equal(evbuffer_get_length(sv.s[0].got), 44);
	assert_int_equal(sv.s[0].eof, 1);
	evbuffer_free(burst);
	side_done(&sv);
	close(fds[1]);
	event_base_free(base);
}

static void
test_protocol_errors(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *bc = &bad_cases[i];
		struct event_base *base = event_base_new();
		struct mux_config cfg;
		struct side sd;
		int fds[2];

		cfg_v2(&cfg);
		make_pair(fds);
		side_init(&sd, base);
		side_start(&sd, fds[0], bc->is_client, &cfg);
		raw_write(fds[1], bc->bytes, bc->len);
		if (!run_until(base, pred_closed, &sd, 2000) ||
		    sd.err != MG_EPROTO)
			fail_msg("%s: closed %d err %d", bc->what, sd.closed,
			    sd.err);
		assert_int_equal(sd.closed, 1);
		side_done(&sd);
		close(fds[1]);
		event_base_free(base);
	}
}

/*
 * SYN for id 0xffffffff (odd, so the right parity from a client). idmap
 * uses UINT32_MAX as its tombstone, so the mux must either refuse the id
 * as a protocol error or track the stream like any other: when the
 * session dies the stream's closed callback must run (mux.h).
 */
static void
test_syn_id_max(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side sv;
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	side_init(&sv, base);
	side_start(&sv, fds[0], 0, &cfg);
	raw_frame(fds[1], 2, FRAME_SYN, UINT32_MAX, NULL, 0);
	run_for(base, 20);
	if (sv.closed) {
		assert_int_equal(sv.err, MG_EPROTO);
		assert_int_equal(sv.naccept, 0);
	} else {
		assert_int_equal(sv.naccept, 1);
		assert_int_equal(mux_nstreams(sv.m), 1);
		close(fds[1]); /* the session dies: MG_ECLOSED */
		fds[1] = -1;
		assert_true(run_until(base, pred_closed, &sv, 2000));
		assert_int_equal(sv.err, MG_ECLOSED);
		if (sv.s[0].closed != 1)
			fail_msg("stream 0xffffffff: closed callback ran %d "
			    "times, want 1 (stream leaked by mux_die)",
			    sv.s[0].closed);
	}
	side_done(&sv);
	if (fds[1] >= 0)
		close(fds[1]);
	event_base_free(base);
}

/* ---- 2. data and half-close ---- */

struct pair {
	struct event_base *base;
	struct side cl, sv;
	int fds[2];
};

static void
pair_start(struct pair *p, const struct mux_config *ccfg,
    const struct mux_config *scfg)
{
	p->base = event_base_new();
	make_pair(p->fds);
	side_init(&p->cl, p->base);
	side_init(&p->sv, p->base);
	side_start(&p->cl, p->fds[0], 1, ccfg);
	side_start(&p->sv, p->fds[1], 0, scfg);
}

static void
pair_done(struct pair *p)
{
	side_done(&p->cl);
	side_done(&p->sv);
	event_base_free(p->base);
}

struct got_len {
	struct sctx *c;
	size_t want;
};

static int
pred_got(void *arg)
{
	struct got_len *g = arg;

	return g->c->got && evbuffer_get_length(g->c->got) >= g->want;
}

static int
pred_eof(void *arg)
{
	return ((struct sctx *)arg)->eof;
}

static void
test_data_half_close(void **state)
{
	struct mux_config cfg;
	struct pair p;
	struct sctx *a, *b;
	struct got_len g;
	char buf[64];

	cfg_v2(&cfg);
	pair_start(&p, &cfg, &cfg);
	a = sctx_attach(&p.cl, mux_stream_open(p.cl.m));
	assert_int_equal(mux_stream_write(a->st, "hello, ", 7), 0);
	assert_int_equal(mux_stream_write(a->st, "world", 5), 0);
	assert_true(run_until(p.base, pred_accepted, &p.sv, 2000));
	b = &p.sv.s[0];
	g.c = b;
	g.want = 12;
	assert_true(run_until(p.base, pred_got, &g, 2000));
	assert_int_equal(evbuffer_get_length(b->got), 12);
	evbuffer_remove(b->got, buf, 12);
	assert_memory_equal(buf, "hello, world", 12);
	assert_false(mux_stream_eof(b->st));
	assert_int_equal(mux_stream_delivered(b->st), 12);

	/* FIN after data; the reader sees eof only once drained */
	p.sv.s[0].drain = 0;
	assert_int_equal(mux_stream_write(a->st, "tail", 4), 0);
	mux_stream_shutdown(a->st);
	assert_int_equal(mux_stream_write(a->st, "x", 1), MG_ECLOSED);
	assert_true(run_until(p.base, pred_eof, b, 300) == 0);
	assert_int_equal(mux_stream_queued(b->st), 4);
	assert_false(mux_stream_eof(b->st));
	evbuffer_remove(mux_stream_rx(b->st), buf, 4);
	mux_stream_consumed(b->st, 4);
	assert_memory_equal(buf, "tail", 4);
	assert_true(mux_stream_eof(b->st));

	/* half-close: the side that got FIN still writes, and it arrives */
	assert_int_equal(mux_stream_write(b->st, "reply", 5), 0);
	g.c = a;
	g.want = 5;
	assert_true(run_until(p.base, pred_got, &g, 2000));
	evbuffer_remove(a->got, buf, 5);
	assert_memory_equal(buf, "reply", 5);
	assert_false(mux_stream_eof(a->st));
	mux_stream_shutdown(b->st);
	assert_true(run_until(p.base, pred_eof, a, 2000));
	assert_int_equal(p.cl.closed + p.sv.closed, 0);

	/* both FINs seen and both freed: the stream is gone on both sides */
	mux_stream_free(a->st);
	mux_stream_free(b->st);
	run_for(p.base, 20);
	assert_int_equal(mux_nstreams(p.cl.m), 0);
	assert_int_equal(mux_nstreams(p.sv.m), 0);
	pair_done(&p);
}

/* ---- 3. flow control, version 2 ---- */

static int
pred_queued(void *arg)
{
	struct got_len *g = arg;

	return mux_stream_queued(g->c->st) >= g->want;
}

static void
test_flow_receive_window(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side sv;
	struct evbuffer *in = evbuffer_new();
	struct frame_hdr h;
	uint8_t pl[16];
	uint32_t consumed, window;
	struct got_len g;
	int fds[2], nupd = 0;

	cfg_v2(&cfg);
	cfg.stream_window = 524288;
	make_pair(fds);
	side_init(&sv, base);
	sv.drain = 0;
	side_start(&sv, fds[0], 0, &cfg);
	raw_frame(fds[1], 2, FRAME_SYN, 3, NULL, 0);
	assert_true(run_until(base, pred_accepted, &sv, 2000));

	/* 262144 bytes before any UPD: accepted */
	raw_psh_bulk(base, fds[1], 3, 0, 262144);
	g.c = &sv.s[0];
	g.want = 262144;
	assert_true(run_until(base, pred_queued, &g, 2000));
	assert_int_equal(mux_stream_queued(sv.s[0].st), 262144);
	assert_int_equal(sv.closed, 0);
	assert_true(sv.s[0].readable > 0);
	/* nothing consumed yet: no UPD */
	raw_read(fds[1], in);
	assert_int_equal(evbuffer_get_length(in), 0);

	/* the consumer reads: UPD(consumed, our configured window) */
	evbuffer_drain(mux_stream_rx(sv.s[0].st), 1000);
	mux_stream_consumed(sv.s[0].st, 1000);
	run_for(base, 10);
	raw_read(fds[1], in);
	while (raw_take(in, &h, pl, sizeof(pl))) {
		assert_int_equal(h.ver, 2);
		assert_int_equal(h.cmd, FRAME_UPD);
		assert_int_equal(h.sid, 3);
		assert_int_equal(frame_upd_decode(pl, h.len, &consumed,
		    &window), 0);
		assert_int_equal(consumed, 1000);
		assert_int_equal(window, 524288);
		nupd++;
	}
	assert_int_equal(nupd, 1);

	/* exactly the window in flight is fine */
	raw_psh_bulk(base, fds[1], 3, 262144, 524288 - 261144);
	g.want = 524288;
	assert_true(run_until(base, pred_queued, &g, 2000));
	assert_int_equal(sv.closed, 0);

	/* one byte more than the window: protocol error */
	raw_frame(fds[1], 2, FRAME_PSH, 3, "!", 1);
	assert_true(run_until(base, pred_closed, &sv, 2000));
	assert_int_equal(sv.err, MG_EPROTO);
	assert_int_equal(sv.s[0].closed, 1);

	side_done(&sv);
	close(fds[1]);
	evbuffer_free(in);
	event_base_free(base);
}

/*
 * A raw peer that, like a sender waiting on its window, sends exactly up to
 * the limit our UPDs granted, rounds times (or until the window reaches
 * stop_at). Records the windows the UPDs carried. consume: the side drains
 * each delivery (0: the test drains everything only after each round).
 */
struct win_probe {
	struct event_base *base;
	struct side *sv;
	int fd;
	uint32_t sent, limit, maxwin, nwin;
	uint32_t windows[32];
};

static void
win_probe_take_upds(struct win_probe *wp, struct evbuffer *in)
{
	struct frame_hdr h;
	uint8_t pl[16];
	uint32_t consumed, window;

	raw_read(wp->fd, in);
	while (raw_take(in, &h, pl, sizeof(pl))) {
		if (h.cmd != FRAME_UPD)
			continue;
		assert_int_equal(frame_upd_decode(pl, h.len, &consumed,
		    &window), 0);
		if (consumed + window - wp->limit < 0x80000000u)
			wp->limit = consumed + window;
		if (window > wp->maxwin) {
			wp->maxwin = window;
			if (wp->nwin < 32)
				wp->windows[wp->nwin++] = window;
		}
	}
}

static void
win_probe_rounds(struct win_probe *wp, int rounds, int consume)
{
	struct evbuffer *in = evbuffer_new();
	struct got_len g;

	for (int r = 0; r < rounds; r++) {
		raw_psh_bulk(wp->base, wp->fd, 3, wp->sent,
		    wp->limit - wp->sent);
		wp->sent = wp->limit;
		g.c = &wp->sv->s[0];
		if (consume) {
			g.want = wp->sent;
			assert_true(run_until(wp->base, pred_got, &g, 5000));
		} else {
			struct mux_stream *st = wp->sv->s[0].st;
			size_t q;
			g.want = wp->sent - evbuffer_get_length(g.c->got);
			assert_true(run_until(wp->base, pred_queued, &g, 5000));
			q = mux_stream_queued(st);
			evbuffer_remove_buffer(mux_stream_rx(st), g.c->got, q);
			mux_stream_consumed(st, q);
		}
		run_for(wp->base, 5);
		win_probe_take_upds(wp, in);
	}
	evbuffer_free(in);
}

/* The window doubles while the sender waits on it and the consumer keeps
 * up, and stops at stream_window_max. */
static void
test_flow_window_grows(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side sv;
	struct win_probe wp;
	int fds[2];

	cfg_v2(&cfg);
	cfg.stream_window = 262144;
	cfg.stream_window_max = 1048576;
	make_pair(fds);
	side_init(&sv, base);
	side_start(&sv, fds[0], 0, &cfg);
	raw_frame(fds[1], 2, FRAME_SYN, 3, NULL, 0);
	assert_true(run_until(base, pred_accepted, &sv, 2000));
	memset(&wp, 0, sizeof(wp));
	wp.base = base;
	wp.sv = &sv;
	wp.fd = fds[1];
	wp.limit = 262144; /* before any UPD */
	win_probe_rounds(&wp, 8, 1);
	/* 256 KiB, then 512 KiB and 1 MiB, and never more */
	assert_int_equal(wp.nwin, 3);
	assert_int_equal(wp.windows[0], 262144);
	assert_int_equal(wp.windows[1], 524288);
	assert_int_equal(wp.windows[2], 1048576);
	assert_int_equal(sv.closed, 0);
	assert_int_equal(evbuffer_get_length(sv.s[0].got), wp.sent);
	side_done(&sv);
	close(fds[1]);
	event_base_free(base);
}

/* A consumer that lets data wait (here: takes it only after each round)
 * keeps the window where it started, however the sender waits. So does a
 * stream whose window was set, and a session out of growth budget. */
static void
test_flow_window_stays(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side sv;
	struct win_probe wp;
	int fds[2];

	for (int mode = 0; mode < 3; mode++) {
		cfg_v2(&cfg);
		cfg.stream_window = 262144;
		cfg.stream_window_max = 1048576;
		if (mode == 2)
			cfg.window_growth_max = 262143; /* less than a step */
		make_pair(fds);
		side_init(&sv, base);
		if (mode == 0)
			sv.drain = 0;
		side_start(&sv, fds[0], 0, &cfg);
		raw_frame(fds[1], 2, FRAME_SYN, 3, NULL, 0);
		assert_true(run_until(base, pred_accepted, &sv, 2000));
		if (mode == 1)
			mux_stream_set_window(sv.s[0].st, 262144);
		memset(&wp, 0, sizeof(wp));
		wp.base = base;
		wp.sv = &sv;
		wp.fd = fds[1];
		wp.limit = 262144;
		win_probe_rounds(&wp, 6, mode != 0);
		assert_int_equal(wp.nwin, 1);
		assert_int_equal(wp.maxwin, 262144);
		assert_true(wp.sent >= 6 * 131072);
		assert_int_equal(sv.closed, 0);
		assert_int_equal(evbuffer_get_length(sv.s[0].got), wp.sent);
		side_done(&sv);
		close(fds[1]);
	}
	event_base_free(base);
}

struct psh_count {
	struct event_base *base;
	int fd;
	struct evbuffer *in;
	struct evbuffer *data; /* PSH payload for sid 3, in order */
	size_t want;
	int nupd, nother;
};

static int
pred_psh(void *arg)
{
	struct psh_count *pc = arg;
	struct frame_hdr h;
	static uint8_t pl[65536];

	raw_read(pc->fd, pc->in);
	while (raw_take(pc->in, &h, pl, sizeof(pl))) {
		if (h.cmd == FRAME_PSH && h.sid == 3)
			evbuffer_add(pc->data, pl, h.len);
		else if (h.cmd == FRAME_UPD)
			pc->nupd++;
		else if (h.cmd != FRAME_SYN || h.sid != 3)
			pc->nother++;
	}
	return evbuffer_get_length(pc->data) >= pc->want;
}

static void
test_flow_send_window(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	struct psh_count pc;
	struct sctx *a;
	uint8_t *pat, *chk;
	size_t total = 700000;
	ssize_t n;
	int fds[2], nwr;

	cfg_v2(&cfg);
	make_pair(fds);
	side_init(&cl, base);
	side_start(&cl, fds[0], 1, &cfg);
	a = sctx_attach(&cl, mux_stream_open(cl.m));
	a->src = evbuffer_new();
	pat = malloc(total);
	chk = malloc(total);
	for (size_t i = 0; i < total; i++)
		pat[i] = (uint8_t)(i * 13 + i / 251);
	evbuffer_add(a->src, pat, total);

	n = mux_stream_send_buffer(a->st, a->src);
	assert_int_equal(n, 262144);
	assert_int_equal(evbuffer_get_length(a->src), total - 262144);
	assert_int_equal(mux_stream_send_buffer(a->st, a->src), MG_ELIMIT);
	assert_int_equal(evbuffer_get_length(a->src), total - 262144);

	memset(&pc, 0, sizeof(pc));
	pc.base = base;
	pc.fd = fds[1];
	pc.in = evbuffer_new();
	pc.data = evbuffer_new();
	pc.want = 262144;
	assert_true(run_until(base, pred_psh, &pc, 2000));
	/* and no more: the window is full */
	pc.want = 262145;
	assert_false(run_until(base, pred_psh, &pc, 100));
	assert_int_equal(evbuffer_get_length(pc.data), 262144);
	/* (writable may have run already, when the session output drained;
	 * the stream then found no window and waited again) */
	nwr = a->writable;

	/* a partial credit lets exactly that much more through */
	raw_upd(fds[1], 3, 100000, 262144);
	pc.want = 362144;
	assert_true(run_until(base, pred_psh, &pc, 2000));
	assert_true(a->writable > nwr);
	pc.want = 362145;
	assert_false(run_until(base, pred_psh, &pc, 100));
	assert_int_equal(evbuffer_get_length(pc.data), 362144);

	/* full credit, then the rest flows */
	raw_upd(fds[1], 3, 362144, 262144);
	pc.want = 362144 + 262144;
	assert_true(run_until(base, pred_psh, &pc, 2000));
	raw_upd(fds[1], 3, 362144 + 262144, 262144);
	pc.want = total;
	assert_true(run_until(base, pred_psh, &pc, 2000));
	assert_int_equal(evbuffer_get_length(pc.data), total);
	evbuffer_remove(pc.data, chk, total);
	assert_memory_equal(chk, pat, total);
	assert_int_equal(pc.nother, 0);
	assert_int_equal(cl.closed, 0);

	free(pat);
	free(chk);
	evbuffer_free(pc.in);
	evbuffer_free(pc.data);
	side_done(&cl);
	close(fds[1]);
	event_base_free(base);
}

/* ---- 4. a slow stream never stalls another ---- */

static void
test_slow_reader_no_stall(void **state)
{
	struct mux_config cfg;
	struct pair p;
	struct sctx *a, *b, *ra = NULL, *rb = NULL;
	struct got_len g;
	size_t big = 8u << 20;
	uint8_t *blk = malloc(65536);

	cfg_v2(&cfg);
	pair_start(&p, &cfg, &cfg);
	p.sv.no_drain_id = 3;
	a = sctx_attach(&p.cl, mux_stream_open(p.cl.m));
	b = sctx_attach(&p.cl, mux_stream_open(p.cl.m));
	assert_int_equal(mux_stream_id(a->st), 3);
	a->src = evbuffer_new();
	b->src = evbuffer_new();
	memset(blk, 0xa5, 65536);
	for (size_t i = 0; i < (1u << 20); i += 65536)
		evbuffer_add(a->src, blk, 65536);
	for (size_t i = 0; i < big; i += 65536) {
		for (size_t j = 0; j < 65536; j++)
			blk[j] = (uint8_t)((i + j) % 251);
		evbuffer_add(b->src, blk, 65536);
	}
	sctx_push(a);
	sctx_push(b);
	g.want = big;
	for (uint64_t end = wall_ms() + 8000; wall_ms() < end;) {
		if (p.sv.naccept == 2 && rb == NULL) {
			ra = mux_stream_id(p.sv.s[0].st) == 3 ? &p.sv.s[0] :
			    &p.sv.s[1];
			rb = ra == &p.sv.s[0] ? &p.sv.s[1] : &p.sv.s[0];
			g.c = rb;
		}
		if (rb && pred_got(&g))
			break;
		run_for(p.base, 5);
	}
	assert_non_null(rb);
	assert_int_equal(evbuffer_get_length(rb->got), big);
	for (size_t i = 0; i < big; i += 65536) {
		evbuffer_remove(rb->got, blk, 65536);
		for (size_t j = 0; j < 65536; j++)
			if (blk[j] != (uint8_t)((i + j) % 251))
				fail_msg("stream B byte %zu differs", i + j);
	}
	/* A is stuck at the initial window, its bytes all queued */
	assert_int_equal(mux_stream_queued(ra->st), 262144);
	assert_int_equal(evbuffer_get_length(a->src), (1u << 20) - 262144);
	assert_int_equal(p.cl.closed + p.sv.closed, 0);
	free(blk);
	pair_done(&p);
}

/* ---- 5. keepalive ---- */

static void
test_keepalive_dead(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	struct evbuffer *in = evbuffer_new();
	static const uint8_t nop[8] = { 2, 3, 0, 0, 0, 0, 0, 0 };
	uint8_t f[8];
	uint64_t t0;
	int fds[2], nnop = 0;

	mux_config_default(&cfg);
	cfg.keepalive_ms = 100;
	cfg.dead_ms = 300;
	make_pair(fds);
	side_init(&cl, base);
	t0 = wall_ms();
	side_start(&cl, fds[0], 1, &cfg);
	assert_true(run_until(base, pred_closed, &cl, 2000));
	assert_int_equal(cl.err, MG_ETIMEDOUT);
	assert_in_range(wall_ms() - t0, 250, 1000);
	raw_read(fds[1], in);
	assert_true(evbuffer_get_length(in) >= 8);
	assert_int_equal(evbuffer_get_length(in) % 8, 0);
	while (evbuffer_remove(in, f, 8) == 8) {
		assert_memory_equal(f, nop, 8);
		nnop++;
	}
	/* one NOP per keepalive interval at least, and not a flood */
	assert_in_range(nnop, 2, 8);

	side_done(&cl);
	close(fds[1]);
	evbuffer_free(in);
	event_base_free(base);
}

static void
test_keepalive_alive(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	uint64_t t0, last = 0;
	int fds[2];

	mux_config_default(&cfg);
	cfg.keepalive_ms = 100;
	cfg.dead_ms = 300;
	make_pair(fds);
	side_init(&cl, base);
	side_start(&cl, fds[0], 1, &cfg);
	t0 = wall_ms();
	while (wall_ms() - t0 < 700) {
		if (wall_ms() - last >= 50) {
			raw_frame(fds[1], 2, FRAME_NOP, 0, NULL, 0);
			last = wall_ms();
		}
		run_for(base, 5);
		assert_int_equal(cl.closed, 0);
	}
	/* the peer goes quiet: dead after ~300 ms */
	t0 = wall_ms();
	assert_true(run_until(base, pred_closed, &cl, 2000));
	assert_int_equal(cl.err, MG_ETIMEDOUT);
	assert_in_range(wall_ms() - t0, 200, 1000);

	side_done(&cl);
	close(fds[1]);
	event_base_free(base);
}

/* ---- 6. PSH and FIN for unknown streams ---- */

static void
test_unknown_stream_dropped(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side sv;
	uint8_t junk[1000];
	struct got_len g;
	char buf[2];
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	side_init(&sv, base);
	side_start(&sv, fds[0], 0, &cfg);
	memset(junk, 0x5a, sizeof(junk));
	raw_frame(fds[1], 2, FRAME_SYN, 3, NULL, 0);
	raw_frame(fds[1], 2, FRAME_PSH, 9, junk, sizeof(junk));
	raw_frame(fds[1], 2, FRAME_FIN, 11, NULL, 0);
	raw_upd(fds[1], 13, 5, 262144);
	raw_frame(fds[1], 2, FRAME_PSH, 3, "ok", 2);
	assert_true(run_until(base, pred_accepted, &sv, 2000));
	g.c = &sv.s[0];
	g.want = 2;
	assert_true(run_until(base, pred_got, &g, 2000));
	assert_int_equal(evbuffer_get_length(sv.s[0].got), 2);
	evbuffer_remove(sv.s[0].got, buf, 2);
	assert_memory_equal(buf, "ok", 2);
	assert_int_equal(sv.closed, 0);
	assert_int_equal(sv.naccept, 1);
	assert_int_equal(mux_nstreams(sv.m), 1);

	side_done(&sv);
	close(fds[1]);
	event_base_free(base);
}

/* ---- 7. message mode ---- */

static void
test_message_mode(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side sv;
	static uint8_t big[65535];
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	side_init(&sv, base);
	sv.message_mode = 1;
	side_start(&sv, fds[0], 0, &cfg);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i ^ (i >> 8));
	raw_frame(fds[1], 2, FRAME_SYN, 3, NULL, 0);
	raw_frame(fds[1], 2, FRAME_PSH, 3, "one", 3);
	raw_frame(fds[1], 2, FRAME_PSH, 3, "second message", 14);
	raw_frame(fds[1], 2, FRAME_PSH, 3, big, sizeof(big));
	raw_frame(fds[1], 2, FRAME_PSH, 3, "z", 1);
	run_for(base, 50);
	assert_int_equal(sv.naccept, 1);
	assert_int_equal(sv.s[0].nmsg, 4);
	assert_int_equal(sv.s[0].msglen[0], 3);
	assert_memory_equal(sv.s[0].msg[0], "one", 3);
	assert_int_equal(sv.s[0].msglen[1], 14);
	assert_memory_equal(sv.s[0].msg[1], "second message", 14);
	assert_int_equal(sv.s[0].msglen[2], sizeof(big));
	assert_memory_equal(sv.s[0].msg[2], big, sizeof(big));
	assert_int_equal(sv.s[0].msglen[3], 1);
	assert_memory_equal(sv.s[0].msg[3], "z", 1);
	assert_int_equal(sv.s[0].readable, 0);
	assert_int_equal(mux_stream_queued(sv.s[0].st), 0);
	assert_int_equal(sv.closed, 0);

	/* send_msg: one PSH with exactly the message */
	{
		struct evbuffer *in = evbuffer_new();
		struct frame_hdr h;
		uint8_t pl[16];

		assert_int_equal(mux_stream_send_msg(sv.s[0].st, "pong", 4),
		    0);
		assert_int_equal(mux_stream_send_msg(sv.s[0].st, "x", 0),
		    MG_EINVAL);
		run_for(base, 10);
		raw_read(fds[1], in);
		/* the UPD after the first read may come first */
		while (raw_take(in, &h, pl, sizeof(pl)) && h.cmd == FRAME_UPD)
			;
		assert_int_equal(h.cmd, FRAME_PSH);
		assert_int_equal(h.sid, 3);
		assert_int_equal(h.len, 4);
		assert_memory_equal(pl, "pong", 4);
		evbuffer_free(in);
	}

	side_done(&sv);
	close(fds[1]);
	event_base_free(base);
}

/* ---- 8. version 1 between two muxes, through a tap ---- */

struct tap {
	int c_fd, s_fd;         /* our ends towards the client and server */
	struct evbuffer *c2s, *s2c, *pc2s, *ps2c;
	int bad;                /* frames that are not version 1, or UPD */
	int frames;
};

static void
tap_parse(struct tap *t, struct evbuffer *p, const uint8_t *b, size_t n)
{
	struct frame_hdr h;

	evbuffer_add(p, b, n);
	while (raw_take(p, &h, NULL, 0)) {
		t->frames++;
		if (h.ver != 1 || h.cmd == FRAME_UPD)
			t->bad++;
	}
}

static void
tap_move(struct tap *t, int from, int to, struct evbuffer *q,
    struct evbuffer *parse)
{
	uint8_t b[65536];
	ssize_t n;

	while ((n = read(from, b, sizeof(b))) > 0) {
		tap_parse(t, parse, b, (size_t)n);
		evbuffer_add(q, b, (size_t)n);
	}
	while (evbuffer_get_length(q) > 0 && evbuffer_write(q, to) > 0)
		;
}

static void
tap_pump(struct tap *t)
{
	tap_move(t, t->c_fd, t->s_fd, t->c2s, t->pc2s);
	tap_move(t, t->s_fd, t->c_fd, t->s2c, t->ps2c);
}

static void
test_v1_no_upd(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl, sv;
	struct tap t;
	struct sctx *a, *b;
	int cfds[2], sfds[2];
	size_t n = 3u << 20;
	int done = 0;

	cfg_v2(&cfg);
	cfg.version = 1;
	cfg.session_rx_max = 512 * 1024;
	make_pair(cfds);
	make_pair(sfds);
	memset(&t, 0, sizeof(t));
	t.c_fd = cfds[1];
	t.s_fd = sfds[1];
	t.c2s = evbuffer_new();
	t.s2c = evbuffer_new();
	t.pc2s = evbuffer_new();
	t.ps2c = evbuffer_new();
	side_init(&cl, base);
	side_init(&sv, base);
	side_start(&cl, cfds[0], 1, &cfg);
	side_start(&sv, sfds[0], 0, &cfg);
	assert_int_equal(mux_version(cl.m), 1);

	a = sctx_attach(&cl, mux_stream_open(cl.m));
	a->src = evbuffer_new();
	{
		uint8_t *blk = calloc(1, n);
		evbuffer_add(a->src, blk, n);
		free(blk);
	}
	/* v1 has no window: only the session's output mark limits this */
	sctx_push(a);
	assert_true(evbuffer_get_length(a->src) < n);
	for (uint64_t end = wall_ms() + 5000; wall_ms() < end && !done;) {
		tap_pump(&t);
		run_for(base, 2);
		if (sv.naccept == 1) {
			b = &sv.s[0];
			if (evbuffer_get_length(b->got) == n && b->src == NULL) {
				/* and back the other way */
				b->src = evbuffer_new();
				evbuffer_add_buffer(b->src, b->got);
				sctx_push(b);
			}
			if (b->src && evbuffer_get_length(a->got) == n)
				done = 1;
		}
	}
	assert_true(done);
	assert_int_equal(mux_version(sv.m), 1);
	assert_true(t.frames > 2 * (int)(n / 65535));
	assert_int_equal(t.bad, 0);
	assert_int_equal(cl.closed + sv.closed, 0);

	side_done(&cl);
	side_done(&sv);
	close(cfds[1]);
	close(sfds[1]);
	evbuffer_free(t.c2s);
	evbuffer_free(t.s2c);
	evbuffer_free(t.pc2s);
	evbuffer_free(t.ps2c);
	event_base_free(base);
}

/* ---- 9. sink ---- */

static void
test_sink(void **state)
{
	struct mux_config cfg;
	struct pair p;
	struct sctx *a, *r;
	int sk[2];
	char buf[16];
	size_t n = 2u << 20, got = 0;
	uint8_t *blk = malloc(n), *out = malloc(n);
	ssize_t w;

	cfg_v2(&cfg);
	make_pair(sk);
	pair_start(&p, &cfg, &cfg);
	p.sv.sink_fd = sk[0];
	p.sv.drain = 0;
	a = sctx_attach(&p.cl, mux_stream_open(p.cl.m));

	/* the sink takes it directly: nothing queued, readable not called */
	assert_int_equal(mux_stream_write(a->st, "hello", 5), 0);
	assert_true(run_until(p.base, pred_accepted, &p.sv, 2000));
	r = &p.sv.s[0];
	run_for(p.base, 20);
	assert_int_equal(read(sk[1], buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(mux_stream_queued(r->st), 0);
	assert_int_equal(r->readable, 0);
	assert_int_equal(mux_stream_delivered(r->st), 5);

	/* the sink fills: the rest queues and readable is called */
	for (size_t i = 0; i < n; i++)
		blk[i] = (uint8_t)(i * 31 + (i >> 12));
	a->src = evbuffer_new();
	evbuffer_add(a->src, blk, n);
	sctx_push(a);
	run_for(p.base, 200);
	assert_true(r->readable > 0);
	assert_true(mux_stream_queued(r->st) > 0);
	assert_true(mux_stream_delivered(r->st) > 5);
	assert_true(mux_stream_delivered(r->st) < 5 + n);
	/* the sink is full: flushing stops with MG_EAGAIN, data still queued */
	for (int i = 0; i < 100 && (w = mux_stream_flush_to_fd(r->st,
	    sk[0])) > 0; i++)
		;
	assert_int_equal(w, MG_EAGAIN);
	assert_true(mux_stream_queued(r->st) > 0);

	/* drain the sink and flush the queue into it until all arrived */
	for (uint64_t end = wall_ms() + 5000; wall_ms() < end && got < n;) {
		ssize_t k;
		while (got < n && (k = read(sk[1], out + got, n - got)) > 0)
			got += (size_t)k;
		w = mux_stream_flush_to_fd(r->st, sk[0]);
		assert_true(w >= 0 || w == MG_EAGAIN);
		run_for(p.base, 2);
	}
	assert_int_equal(got, n);
	assert_memory_equal(out, blk, n);
	assert_int_equal(mux_stream_queued(r->st), 0);
	assert_int_equal(mux_stream_delivered(r->st), 5 + n);
	assert_int_equal(p.cl.closed + p.sv.closed, 0);

	free(blk);
	free(out);
	pair_done(&p);
	close(sk[0]);
	close(sk[1]);
}

/* ---- 10. mux_free from inside callbacks ---- */

static void
test_free_in_session_closed(void **state)
{
	struct mux_config cfg;
	struct pair p;
	struct sctx *a;

	cfg_v2(&cfg);
	pair_start(&p, &cfg, &cfg);
	p.sv.free_in_closed = 1;
	a = sctx_attach(&p.cl, mux_stream_open(p.cl.m));
	assert_int_equal(mux_stream_write(a->st, "x", 1), 0);
	assert_true(run_until(p.base, pred_accepted, &p.sv, 2000));
	/* the client goes away: the server's closed callback frees it */
	mux_free(p.cl.m);
	p.cl.m = NULL;
	assert_true(run_until(p.base, pred_closed, &p.sv, 2000));
	/* a close, or a reset when the client's socket still held bytes
	 * from the server (its window update) as it was closed: the
	 * kernel's choice, not ours */
	assert_true(p.sv.err == MG_ECLOSED || p.sv.err == MG_EIO);
	assert_int_equal(p.sv.s[0].closed, 1);
	assert_null(p.sv.m);
	run_for(p.base, 10); /* the deferred free runs */
	pair_done(&p);
}

static void
test_free_in_stream_callbacks(void **state)
{
	static const int where[] = { 1, 2, 3 };

	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		struct mux_config cfg;
		struct pair p;
		struct sctx *a;

		cfg_v2(&cfg);
		pair_start(&p, &cfg, &cfg);
		a = sctx_attach(&p.cl, mux_stream_open(p.cl.m));
		a->free_session_in = where[i];
		if (where[i] == 3)
			mux_stream_set_cbs(a->st, &msg_cbs, a);
		assert_true(run_until(p.base, pred_accepted, &p.sv, 2000));
		/* server replies with data, then closes */
		assert_int_equal(mux_stream_write(p.sv.s[0].st, "data", 4), 0);
		run_for(p.base, 20);
		if (where[i] == 1) {
			assert_int_equal(a->readable, 1);
			mux_free(p.sv.m);
			p.sv.m = NULL;
			run_for(p.base, 20);
			assert_int_equal(a->closed, 1);
		} else if (where[i] == 2) {
			assert_int_equal(a->readable, 1);
		} else {
			assert_int_equal(a->nmsg, 1);
		}
		/* the client session was freed from its own callback */
		p.cl.m = NULL;
		run_for(p.base, 20);
		pair_done(&p);
	}
}

/*
 * Three streams wait for the session output; the first one's writable
 * callback lets the last one go (mux_stream_free). The other two must
 * still be woken until they have sent everything.
 */
static void in_child(void (*fn)(void), unsigned secs, const char *what);

struct drain_raw {
	int fd;
	struct sctx *a, *b;
	struct mux *m;
	size_t bytes;
};

static int
pred_drained(void *arg)
{
	struct drain_raw *d = arg;
	uint8_t buf[65536];
	ssize_t n;

	while ((n = read(d->fd, buf, sizeof(buf))) > 0)
		d->bytes += (size_t)n;
	return evbuffer_get_length(d->a->src) == 0 &&
	    evbuffer_get_length(d->b->src) == 0 && mux_output_len(d->m) == 0;
}

static void
child_writable_frees_other_waiter(void)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side *cl = calloc(1, sizeof(*cl));
	struct sctx *a, *b, *c;
	struct drain_raw d;
	uint8_t *blk = calloc(1, 1u << 20);
	int fds[2];

	cfg_v2(&cfg);
	cfg.version = 1; /* no window: only the session output limits */
	cfg.out_high = 64 * 1024;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
		_exit(2);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	side_init(cl, base);
	cl->m = mux_new(base, fds[0], 1, &cfg, &session_cbs, cl);
	a = sctx_attach(cl, mux_stream_open(cl->m));
	b = sctx_attach(cl, mux_stream_open(cl->m));
	c = sctx_attach(cl, mux_stream_open(cl->m));
	a->src = evbuffer_new();
	b->src = evbuffer_new();
	c->src = evbuffer_new();
	evbuffer_add(a->src, blk, 1u << 20);
	evbuffer_add(b->src, blk, 1u << 20);
	evbuffer_add(c->src, blk, 1u << 20);
	/* the raw peer does not read yet: all three end up waiting */
	sctx_push(a);
	sctx_push(b);
	sctx_push(c);
	if (evbuffer_get_length(a->src) == 0 ||
	    evbuffer_get_length(b->src) != 1u << 20 ||
	    evbuffer_get_length(c->src) != 1u << 20)
		_exit(3);
	a->other = c;
	a->free_other_in_writable = 1;

	memset(&d, 0, sizeof(d));
	d.fd = fds[1];
	d.a = a;
	d.b = b;
	d.m = cl->m;
	if (!run_until(base, pred_drained, &d, 1500)) {
		fprintf(stderr, "stalled: a has %zu, b has %zu bytes left, %zu "
		    "queued; writable ran a %d b %d times\n",
		    evbuffer_get_length(a->src), evbuffer_get_length(b->src),
		    mux_output_len(cl->m), a->writable, b->writable);
		_exit(4);
	}
	if (c->st != NULL || cl->closed)
		_exit(5);
}

static void
test_writable_frees_other_waiter(void **state)
{
	in_child(child_writable_frees_other_waiter, 3,
	    "a writable callback frees another waiting stream");
}

/*
 * A stream waits for the session output while a single send drained it
 * completely into the socket; then another stream queues a lot before the
 * loop runs. All of it must reach the peer once the peer reads.
 */
struct count_raw {
	int fd;
	size_t bytes, want;
};

static int
pred_count(void *arg)
{
	struct count_raw *cr = arg;
	uint8_t buf[65536];
	ssize_t n;

	while ((n = read(cr->fd, buf, sizeof(buf))) > 0)
		cr->bytes += (size_t)n;
	return cr->bytes >= cr->want;
}

static void
test_output_no_stall_after_wake(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	struct sctx *a, *b;
	struct count_raw cr;
	size_t big = 1u << 20, sent_a;
	uint8_t *blk = calloc(1, big);
	ssize_t n;
	int fds[2];

	cfg_v2(&cfg);
	cfg.version = 1;
	cfg.out_high = 64 * 1024;
	make_pair(fds);
	side_init(&cl, base);
	side_start(&cl, fds[0], 1, &cfg);
	a = sctx_attach(&cl, mux_stream_open(cl.m));
	b = sctx_attach(&cl, mux_stream_open(cl.m));
	run_for(base, 5);
	a->src = evbuffer_new();
	evbuffer_add(a->src, blk, 100000);
	/* past out_high in one call: a waits, and the socket takes it all */
	n = mux_stream_send_buffer(a->st, a->src);
	assert_true(n > 0);
	sent_a = (size_t)n;
	assert_true(evbuffer_get_length(a->src) > 0);
	assert_int_equal(mux_output_len(cl.m), 0);
	/* more output before the loop runs: more than the socket takes */
	assert_int_equal(mux_stream_write(b->st, blk, big), 0);
	memset(&cr, 0, sizeof(cr));
	cr.fd = fds[1];
	/* two SYNs, a's first frames, all of b's: at least this much */
	cr.want = sent_a + big;
	if (!run_until(base, pred_count, &cr, 2000))
		fail_msg("stalled after %zu of %zu bytes, %zu still queued",
		    cr.bytes, cr.want, mux_output_len(cl.m));
	assert_int_equal(cl.closed, 0);

	free(blk);
	side_done(&cl);
	close(fds[1]);
	event_base_free(base);
}

/* ---- the peer is gone while the user calls in (found by review) ---- */

/* Run fn in a child process; the test fails if the child crashes. */
static void
in_child(void (*fn)(void), unsigned secs, const char *what)
{
	pid_t pid;
	int status = 0;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* cmocka's handlers would resume the test run in the child */
		static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE,
			SIGABRT, SIGSYS };
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		alarm(secs);
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		fail_msg("%s: child killed by signal %d", what,
		    WTERMSIG(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("%s: child exited %d", what, WEXITSTATUS(status));
}

static int child_closed;

static void
child_on_accept(struct mux *m, struct mux_stream *st, void *arg)
{
}

static void
child_on_closed(struct mux *m, int err, void *arg)
{
	child_closed++;
}

static const struct mux_callbacks child_cbs = { child_on_accept,
	child_on_closed };

static void
child_free_after_peer_gone(void)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct mux *m;
	struct mux_stream *st;
	int fds[2];

	cfg_v2(&cfg);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
		_exit(2);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	m = mux_new(base, fds[0], 1, &cfg, &child_cbs, NULL);
	st = mux_stream_open(m);
	if (st == NULL)
		_exit(3);
	close(fds[1]);
	/* FIN cannot be written (EPIPE): the session dies inside */
	mux_stream_free(st);
	mux_free(m);
	event_base_free(base);
}

static void
test_stream_free_peer_gone(void **state)
{
	in_child(child_free_after_peer_gone, 3,
	    "mux_stream_free when the FIN write fails");
}

static void
test_stream_open_peer_gone(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	struct mux_stream *st;
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	side_init(&cl, base);
	side_start(&cl, fds[0], 1, &cfg);
	close(fds[1]);
	/* the SYN write fails with EPIPE: the session dies in open, and must
	 * not hand back the stream it just freed */
	st = mux_stream_open(cl.m);
	if (cl.closed)
		assert_null(st);
	assert_true(run_until(base, pred_closed, &cl, 2000));
	assert_true(cl.err == MG_EIO || cl.err == MG_ECLOSED);
	side_done(&cl);
	event_base_free(base);
}

static struct sctx child_a, child_b;

static void
child_closed_frees_other(void)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct mux *m;
	int fds[2];

	cfg_v2(&cfg);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
		_exit(2);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	m = mux_new(base, fds[0], 1, &cfg, &child_cbs, NULL);
	child_a.st = mux_stream_open(m);
	child_b.st = mux_stream_open(m);
	child_a.other = &child_b;
	child_b.other = &child_a;
	mux_stream_set_cbs(child_a.st, &stream_cbs, &child_a);
	mux_stream_set_cbs(child_b.st, &stream_cbs, &child_b);
	close(fds[1]);
	for (int i = 0; i < 50 && !child_closed; i++)
		run_for(base, 5);
	if (!child_closed)
		_exit(4);
	/* exactly one of them got its callback: the other was let go */
	if (child_a.closed + child_b.closed != 1)
		_exit(5);
	mux_free(m);
	event_base_free(base);
}

static void
test_stream_closed_cb_frees_other(void **state)
{
	in_child(child_closed_frees_other, 3,
	    "a stream's closed callback frees another stream");
}

/* ---- 9. the transport: faults injected under the session ---- */

/* A plain socket whose reads and writes fail, stall or come short on
 * command: the mux must meet each fault with the right end (or none). */
struct fx {
	size_t read_total;
	size_t read_fail_at;  /* after this many bytes read: fail (0: never) */
	int read_errno;       /* ... with this errno; 0: the end (EOF) */
	size_t read_max;      /* short reads: at most this per call (0: any) */
	int read_eagain_every; /* every Nth read: EAGAIN though data waits */
	size_t write_total;
	size_t write_fail_at; /* after this many bytes written: fail */
	int write_errno;
	size_t write_max;     /* short writes: at most this per call */
	int write_eagain_every;
	int reads, writes, eagains;
	int shutdowns, closes;
};

static ssize_t
fx_readv(void *ctx, int fd, struct iovec *iov, int n, int *want_write)
{
	struct fx *x = ctx;
	size_t cap = x->read_max ? x->read_max : SIZE_MAX;
	struct iovec v[4];
	int nv = 0;
	ssize_t r;

	*want_write = 0;
	x->reads++;
	if (x->read_eagain_every && x->reads % x->read_eagain_every == 0) {
		x->eagains++;
		errno = EAGAIN;
		return -1;
	}
	if (x->read_fail_at) {
		if (x->read_total >= x->read_fail_at) {
			if (x->read_errno == 0)
				return 0;
			errno = x->read_errno;
			return -1;
		}
		if (cap > x->read_fail_at - x->read_total)
			cap = x->read_fail_at - x->read_total;
	}
	for (int i = 0; i < n && i < 4 && cap > 0; i++) {
		v[nv].iov_base = iov[i].iov_base;
		v[nv].iov_len = iov[i].iov_len < cap ? iov[i].iov_len : cap;
		cap -= v[nv++].iov_len;
	}
	r = readv(fd, v, nv);
	if (r > 0)
		x->read_total += (size_t)r;
	return r;
}

static ssize_t
fx_write(void *ctx, int fd, struct evbuffer *out, int *want_read)
{
	struct fx *x = ctx;
	size_t cap = x->write_max ? x->write_max : evbuffer_get_length(out);
	int r;

	*want_read = 0;
	x->writes++;
	if (x->write_eagain_every && x->writes % x->write_eagain_every == 0) {
		x->eagains++;
		errno = EAGAIN;
		return -1;
	}
	if (x->write_fail_at && x->write_total >= x->write_fail_at) {
		errno = x->write_errno;
		return -1;
	}
	r = evbuffer_write_atmost(out, fd, (ev_ssize_t)cap);
	if (r > 0)
		x->write_total += (size_t)r;
	return r;
}

static void
fx_shutdown(void *ctx, int fd)
{
	((struct fx *)ctx)->shutdowns++;
	shutdown(fd, SHUT_RDWR);
}

static void
fx_close(void *ctx)
{
	((struct fx *)ctx)->closes++;
}

static const struct mux_xprt_ops fx_ops = {
	.readv = fx_readv,
	.write = fx_write,
	.shutdown = fx_shutdown,
	.close = fx_close,
};

static void
side_start_fx(struct side *sd, int fd, int is_client,
    const struct mux_config *cfg, struct fx *x)
{
	sd->m = mux_new_xprt(sd->base, fd, &fx_ops, x, is_client, cfg,
	    &session_cbs, sd);
	assert_non_null(sd->m);
}

/* A server session over fx: the raw peer opens streams 3 and 5 and sends
 * half of a PSH frame before the transport fails (errno err, or the end of
 * the connection): the session closes with want, both streams hear of it
 * first, and the transport is shut down and closed exactly once. */
static void
fx_read_fault(int err, int want)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side sv;
	struct fx x;
	uint8_t pl[1000];
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	memset(&x, 0, sizeof(x));
	memset(pl, 'p', sizeof(pl));
	/* two SYNs, a whole PSH, then the header and 500 bytes of another */
	x.read_fail_at = 8 + 8 + (8 + sizeof(pl)) + 8 + 500;
	x.read_errno = err;
	x.read_max = 300; /* and in short reads up to there */
	side_init(&sv, base);
	side_start_fx(&sv, fds[1], 0, &cfg, &x);
	raw_frame(fds[0], 2, FRAME_SYN, 3, NULL, 0);
	raw_frame(fds[0], 2, FRAME_SYN, 5, NULL, 0);
	raw_frame(fds[0], 2, FRAME_PSH, 3, pl, sizeof(pl));
	raw_frame(fds[0], 2, FRAME_PSH, 5, pl, sizeof(pl));
	assert_true(run_until(base, pred_closed, &sv, 2000));
	assert_int_equal(sv.err, want);
	assert_int_equal(sv.naccept, 2);
	assert_int_equal(evbuffer_get_length(sv.s[0].got), sizeof(pl));
	assert_int_equal(evbuffer_get_length(sv.s[1].got), 0);
	assert_int_equal(sv.s[0].closed, 1);
	assert_int_equal(sv.s[1].closed, 1);
	assert_int_equal(x.read_total, x.read_fail_at);
	assert_int_equal(x.shutdowns, 1);
	assert_int_equal(x.closes, 0);
	side_done(&sv);
	assert_int_equal(x.shutdowns, 1);
	assert_int_equal(x.closes, 1);
	close(fds[0]);
	event_base_free(base);
}

static void
test_xprt_read_error_mid_frame(void **state)
{
	fx_read_fault(ECONNRESET, MG_EIO);
}

static void
test_xprt_eof_mid_frame(void **state)
{
	fx_read_fault(0, MG_ECLOSED);
}

/* Short writes, short reads and storms of EAGAIN from a transport that is
 * in fact ready are no faults: 600 KB each way arrive whole, in order, and
 * the session stays up. */
static void
test_xprt_short_io_and_eagain_storms(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl, sv;
	struct fx x;
	struct sctx *a, *b;
	struct got_len g;
	size_t total = 600000;
	uint8_t *pat = malloc(total), *chk = malloc(total);
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	memset(&x, 0, sizeof(x));
	x.write_max = 997;   /* never a whole frame in one write */
	x.read_max = 1013;
	x.write_eagain_every = 3;
	x.read_eagain_every = 2;
	for (size_t i = 0; i < total; i++)
		pat[i] = (uint8_t)(i * 31 + i / 997);
	side_init(&cl, base);
	side_init(&sv, base);
	side_start_fx(&cl, fds[0], 1, &cfg, &x);
	side_start(&sv, fds[1], 0, &cfg);
	a = sctx_attach(&cl, mux_stream_open(cl.m));
	a->src = evbuffer_new();
	evbuffer_add(a->src, pat, total);
	sctx_push(a);
	assert_true(run_until(base, pred_accepted, &sv, 2000));
	g.c = &sv.s[0];
	g.want = total;
	assert_true(run_until(base, pred_got, &g, 10000));
	assert_int_equal(evbuffer_get_length(sv.s[0].got), total);
	evbuffer_remove(sv.s[0].got, chk, total);
	assert_memory_equal(chk, pat, total);

	/* and back, through the short and stalling reads */
	b = &sv.s[0];
	b->src = evbuffer_new();
	evbuffer_add(b->src, pat, total);
	sctx_push(b);
	g.c = a;
	assert_true(run_until(base, pred_got, &g, 10000));
	evbuffer_remove(a->got, chk, total);
	assert_memory_equal(chk, pat, total);
	assert_true(x.eagains > 100);
	assert_int_equal(cl.closed, 0);
	assert_int_equal(sv.closed, 0);
	assert_int_equal(x.shutdowns, 0);

	side_done(&cl);
	assert_int_equal(x.shutdowns, 1);
	assert_int_equal(x.closes, 1);
	side_done(&sv);
	free(pat);
	free(chk);
	event_base_free(base);
}

/* A write fails mid-transfer (the peer went away): the session dies from
 * the loop with MG_EIO, never inside the producer's call, and its stream
 * hears of it. */
static void
test_xprt_write_error(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	struct fx x;
	struct sctx *a;
	uint8_t buf[100000];
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	memset(&x, 0, sizeof(x));
	memset(buf, 'w', sizeof(buf));
	x.write_fail_at = 20000;
	x.write_errno = EPIPE;
	x.write_max = 4096;
	side_init(&cl, base);
	side_start_fx(&cl, fds[0], 1, &cfg, &x);
	a = sctx_attach(&cl, mux_stream_open(cl.m));
	assert_int_equal(mux_stream_write(a->st, buf, sizeof(buf)), 0);
	assert_int_equal(cl.closed, 0); /* not from inside the write */
	assert_true(run_until(base, pred_closed, &cl, 2000));
	assert_int_equal(cl.err, MG_EIO);
	assert_int_equal(a->closed, 1);
	assert_int_equal(x.shutdowns, 1);
	side_done(&cl);
	assert_int_equal(x.closes, 1);
	close(fds[1]);
	event_base_free(base);
}

/* The peer shuts the connection down (FIN) with streams open: MG_ECLOSED,
 * every stream's closed callback, one shutdown of our side. */
static void
test_xprt_peer_shutdown(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	struct fx x;
	struct sctx *a, *b;
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	memset(&x, 0, sizeof(x));
	side_init(&cl, base);
	side_start_fx(&cl, fds[0], 1, &cfg, &x);
	a = sctx_attach(&cl, mux_stream_open(cl.m));
	b = sctx_attach(&cl, mux_stream_open(cl.m));
	run_for(base, 5);
	shutdown(fds[1], SHUT_WR);
	assert_true(run_until(base, pred_closed, &cl, 2000));
	assert_int_equal(cl.err, MG_ECLOSED);
	assert_int_equal(a->closed, 1);
	assert_int_equal(b->closed, 1);
	assert_int_equal(x.shutdowns, 1);
	side_done(&cl);
	assert_int_equal(x.closes, 1);
	close(fds[1]);
	event_base_free(base);
}

/* ---- 10. windows of 2^31 and more; frees after the loop ---- */

/* A window of 2^31 or more is valid (u32 on the wire); read as a signed
 * number it is negative, and the stream would never send again. */
static void
test_window_2g(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	struct sctx *a;
	static uint8_t buf[300000];
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	side_init(&cl, base);
	side_start(&cl, fds[0], 1, &cfg);
	a = sctx_attach(&cl, mux_stream_open(cl.m));
	a->src = evbuffer_new();
	raw_upd(fds[1], 3, 0, 0x80000000u);
	run_for(base, 20);
	evbuffer_add(a->src, buf, sizeof(buf));
	/* beyond the 256 KiB a sender assumes before an UPD */
	assert_int_equal(mux_stream_send_buffer(a->st, a->src),
	    (ssize_t)sizeof(buf));
	raw_upd(fds[1], 3, 0, 0xfffffff0u);
	run_for(base, 20);
	evbuffer_add(a->src, buf, sizeof(buf));
	assert_int_equal(mux_stream_send_buffer(a->st, a->src),
	    (ssize_t)sizeof(buf));
	assert_int_equal(cl.closed, 0);
	side_done(&cl);
	close(fds[1]);
	event_base_free(base);
}

/* At shutdown the owner closes a session after its loop has stopped, and
 * frees it from the closed callback: it must be gone when mux_close
 * returns (its socket closed), not wait for a loop that never runs. */
static void
test_free_after_loop(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	struct sctx *a;
	int fds[2];

	cfg_v2(&cfg);
	make_pair(fds);
	side_init(&cl, base);
	cl.free_in_closed = 1;
	side_start(&cl, fds[0], 1, &cfg);
	a = sctx_attach(&cl, mux_stream_open(cl.m));
	run_for(base, 5); /* the loop has stopped */
	mux_close(cl.m, MG_ECLOSED);
	assert_int_equal(cl.closed, 1);
	assert_int_equal(a->closed, 1);
	assert_null(cl.m);
	errno = 0;
	assert_int_equal(fcntl(fds[0], F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	side_done(&cl);
	close(fds[1]);
	event_base_free(base);
}

/* ---- 11. a stream's reset carried across (mux_stream_abort) ---- */

/* On the wire: the data, an empty PSH, then FIN; the mgrok peer sees the
 * data, then mux_stream_reset, then the end. */
static void
test_stream_abort(void **state)
{
	struct event_base *base = event_base_new();
	struct mux_config cfg;
	struct side cl;
	struct evbuffer *in = evbuffer_new();
	struct frame_hdr h;
	uint8_t pl[64];
	int fds[2], seen[3] = { 0, 0, 0 };
	struct mux_stream *st;
	struct pair p;
	struct sctx *a, *b;
	struct got_len g;

	/* the frames */
	cfg_v2(&cfg);
	make_pair(fds);
	side_init(&cl, base);
	side_start(&cl, fds[0], 1, &cfg);
	st = mux_stream_open(cl.m);
	assert_int_equal(mux_stream_write(st, "abc", 3), 0);
	mux_stream_abort(st);
	run_for(base, 10);
	raw_read(fds[1], in);
	while (raw_take(in, &h, pl, sizeof(pl))) {
		if (h.sid != 3)
			continue;
		if (h.cmd == FRAME_PSH && h.len == 3)
			seen[0] = 1;
		else if (h.cmd == FRAME_PSH && h.len == 0 && seen[0])
			seen[1] = 1;
		else if (h.cmd == FRAME_FIN && seen[1])
			seen[2] = 1;
	}
	assert_true(seen[0] && seen[1] && seen[2]);
	side_done(&cl);
	close(fds[1]);
	evbuffer_free(in);
	event_base_free(base);

	/* between two sessions */
	cfg_v2(&cfg);
	pair_start(&p, &cfg, &cfg);
	a = sctx_attach(&p.cl, mux_stream_open(p.cl.m));
	assert_int_equal(mux_stream_write(a->st, "hello", 5), 0);
	assert_true(run_until(p.base, pred_accepted, &p.sv, 2000));
	b = &p.sv.s[0];
	g.c = b;
	g.want = 5;
	assert_true(run_until(p.base, pred_got, &g, 2000));
	assert_false(mux_stream_reset(b->st));
	mux_stream_abort(a->st);
	a->st = NULL;
	assert_true(run_until(p.base, pred_eof, b, 2000));
	assert_true(mux_stream_reset(b->st));
	assert_int_equal(evbuffer_get_length(b->got), 5);
	assert_int_equal(p.cl.closed + p.sv.closed, 0);
	pair_done(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_ids),
		cmocka_unit_test(test_server_ids),
		cmocka_unit_test(test_batched_readable),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_syn_id_max),
		cmocka_unit_test(test_data_half_close),
		cmocka_unit_test(test_flow_receive_window),
		cmocka_unit_test(test_flow_send_window),
		cmocka_unit_test(test_flow_window_grows),
		cmocka_unit_test(test_flow_window_stays),
		cmocka_unit_test(test_slow_reader_no_stall),
		cmocka_unit_test(test_keepalive_dead),
		cmocka_unit_test(test_keepalive_alive),
		cmocka_unit_test(test_unknown_stream_dropped),
		cmocka_unit_test(test_message_mode),
		cmocka_unit_test(test_v1_no_upd),
		cmocka_unit_test(test_sink),
		cmocka_unit_test(test_free_in_session_closed),
		cmocka_unit_test(test_free_in_stream_callbacks),
		cmocka_unit_test(test_output_no_stall_after_wake),
		cmocka_unit_test(test_writable_frees_other_waiter),
		cmocka_unit_test(test_stream_open_peer_gone),
		cmocka_unit_test(test_stream_free_peer_gone),
		cmocka_unit_test(test_stream_closed_cb_frees_other),
		cmocka_unit_test(test_xprt_read_error_mid_frame),
		cmocka_unit_test(test_xprt_eof_mid_frame),
		cmocka_unit_test(test_xprt_short_io_and_eagain_storms),
		cmocka_unit_test(test_xprt_write_error),
		cmocka_unit_test(test_xprt_peer_shutdown),
		cmocka_unit_test(test_window_2g),
		cmocka_unit_test(test_free_after_loop),
		cmocka_unit_test(test_stream_abort),
	};

	signal(SIGPIPE, SIG_IGN); /* as mgrok's main() does */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
