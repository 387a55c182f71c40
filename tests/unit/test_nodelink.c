/* test_nodelink.c: the links between the nodes of a cluster
 * (src/cluster/nodelink) in one process: two or three sets on one event
 * base, listening on loopback ports, with streams both ways, the handshake's
 * refusals (a wrong secret, a wrong node), peers that send nothing or
 * garbage, the statuses, and the teardown with opens waiting and streams
 * held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "cluster/nodelink.h"
#include "mux/mux.h"
#include "util/err.h"
#include "util/log.h"

#define SECRET "0123456789abcdef-test-secret"
#define SECRET2 "fedcba9876543210-test-secret"
#define MAXACC 256

/* ---- plumbing ---- */

static uint64_t
wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

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

/* a free loopback port: bound, read back and released (net_listen_tcp
 * binds it again with SO_REUSEADDR right after) */
static void
free_addr(char *out, size_t cap)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(out, cap, "127.0.0.1:%u", ntohs(sin.sin_port));
	close(fd);
}

/* a raw TCP connection to addr (127.0.0.1:PORT), non-blocking */
static int
raw_connect(const char *addr)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)atoi(strchr(addr, ':') + 1));
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK),
	    0);
	return fd;
}

/* ---- streams ---- */

/* one end of a stream: what it got, what it sends */
struct sc {
	struct mux_stream *st;
	struct evbuffer *got;
	struct evbuffer *src;  /* pushed as the mux allows */
	int shut_when_sent;    /* FIN once src is empty */
	int shut, eof, closed, reset;
};

static struct sc *
sc_new(void)
{
	struct sc *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->got = evbuffer_new();
	c->src = evbuffer_new();
	return c;
}

static void
sc_free(struct sc *c)
{
	if (c == NULL)
		return;
	if (c->st != NULL)
		mux_stream_free(c->st);
	evbuffer_free(c->got);
	evbuffer_free(c->src);
	free(c);
}

static void
sc_push(struct sc *c)
{
	while (c->st != NULL && evbuffer_get_length(c->src) > 0) {
		ssize_t n = mux_stream_send_buffer(c->st, c->src);
		if (n <= 0)
			return; /* MG_ELIMIT: writable follows */
	}
	if (c->st != NULL && c->shut_when_sent && !c->shut &&
	    evbuffer_get_length(c->src) == 0) {
		c->shut = 1;
		mux_stream_shutdown(c->st);
	}
}

static void
sc_readable(struct mux_stream *st, void *arg)
{
	struct sc *c = arg;
	size_t n = mux_stream_queued(st);

	evbuffer_remove_buffer(mux_stream_rx(st), c->got, n);
	mux_stream_consumed(st, n);
	if (mux_stream_reset(st))
		c->reset = 1;
	if (mux_stream_eof(st))
		c->eof = 1;
}

static void
sc_writable(struct mux_stream *st, void *arg)
{
	(void)st;
	sc_push(arg);
}

static void
sc_closed(struct mux_stream *st, void *arg)
{
	struct sc *c = arg;

	(void)st;
	c->closed = 1;
	c->st = NULL;
}

static const struct mux_stream_cbs sc_cbs = {
	.readable = sc_readable,
	.writable = sc_writable,
	.closed = sc_closed,
};

static void
sc_attach(struct sc *c, struct mux_stream *st)
{
	c->st = st;
	mux_stream_set_cbs(st, &sc_cbs, c);
	if (mux_stream_queued(st) > 0)
		sc_readable(st, c);
	sc_push(c);
}

/* ---- nodes ---- */

struct node {
	struct nodelink_set *ls;
	char id[16];
	char addr[32];
	int naccept;
	int refuse;             /* abort accepted streams */
	/* what to send back on accepted streams */
	size_t reply_len;
	uint8_t reply_seed;
	struct sc *acc[MAXACC];
	char from[MAXACC][64];
	uint8_t hdr[MAXACC][64];
	size_t hlen[MAXACC];
};

static void
fill(struct evbuffer *b, size_t len, uint8_t seed)
{
	uint8_t chunk[4096];
	uint32_t x = seed * 2654435761u + 1;

	while (len > 0) {
		size_t n = len < sizeof(chunk) ? len : sizeof(chunk);
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			chunk[i] = (uint8_t)(x >> 16);
		}
		evbuffer_add(b, chunk, n);
		len -= n;
	}
}

static void
on_accept(void *arg, const char *from, struct mux_stream *st,
    const uint8_t *hdr, size_t len)
{
	struct node *n = arg;
	int i = n->naccept++;
	struct sc *c;

	if (n->refuse || i >= MAXACC) {
		mux_stream_abort(st);
		return;
	}
	snprintf(n->from[i], sizeof(n->from[i]), "%s", from);
	n->hlen[i] = len < sizeof(n->hdr[i]) ? len : sizeof(n->hdr[i]);
	memcpy(n->hdr[i], hdr, n->hlen[i]);
	c = sc_new();
	n->acc[i] = c;
	if (n->reply_len > 0) {
		fill(c->src, n->reply_len, n->reply_seed);
		c->shut_when_sent = 1;
	}
	sc_attach(c, st);
}

static void
node_start(struct node *n, struct event_base *base, const char *id,
    const char *secret, int listen)
{
	struct nodelink_hooks h = { on_accept, n };
	char err[256] = "";

	memset(n, 0, sizeof(*n));
	snprintf(n->id, sizeof(n->id), "%s", id);
	if (listen)
		free_addr(n->addr, sizeof(n->addr));
	n->ls = nodelink_new(base, id, n->addr, secret, &h, err, sizeof(err));
	if (n->ls == NULL)
		fail_msg("nodelink_new %s: %s", id, err);
}

static void
node_stop(struct node *n)
{
	nodelink_free(n->ls);
	n->ls = NULL;
	for (int i = 0; i < MAXACC; i++) {
		sc_free(n->acc[i]);
		n->acc[i] = NULL;
	}
}

static struct nodelink_stats
stats(const struct node *n)
{
	struct nodelink_stats s;

	nodelink_stats(n->ls, &s);
	return s;
}

/* an open's answer */
struct op {
	int done;
	struct mux_stream *st;
	char err[256];
	struct sc *c;           /* attached once it is up, when set */
};

static void
on_open(void *arg, struct mux_stream *st, const char *err)
{
	struct op *o = arg;

	o->done++;
	o->st = st;
	snprintf(o->err, sizeof(o->err), "%s", err ? err : "");
	if (st != NULL && o->c != NULL)
		sc_attach(o->c, st);
}

static void
open_to(struct node *from, const struct node *to, const char *want,
    const char *hdr, struct op *o)
{
	nodelink_open(from->ls, want ? want : to->id, to->addr,
	    (const uint8_t *)hdr, strlen(hdr), on_open, o);
}

struct wait_n {
	int *p;
	int n;
};

static int
reached(void *arg)
{
	struct wait_n *w = arg;

	return *w->p >= w->n;
}

static void
wait_int(struct event_base *base, int *p, int n, unsigned ms)
{
	struct wait_n w = { p, n };

	if (!run_until(base, reached, &w, ms))
		fail_msg("waited %u ms for %d, have %d", ms, n, *p);
}

static struct event_base *
new_base(void)
{
	struct event_base *b = event_base_new();

	assert_non_null(b);
	return b;
}

/* ---- tests ---- */

/* a stream with a header arrives with it and the sender's id; MiBs both
 * ways in order; FIN is EOF; a second open and the other direction take
 * the same link */
static void
test_stream_both_ways(void **state)
{
	struct event_base *base = new_base();
	struct node a, b;
	struct op o1 = { 0 }, o2 = { 0 }, o3 = { 0 };
	struct evbuffer *want;
	struct sc *c;

	(void)state;
	node_start(&a, base, "node-a", SECRET, 1);
	node_start(&b, base, "node-b", SECRET, 1);
	b.reply_len = 2 * 1024 * 1024 + 333;
	b.reply_seed = 7;

	o1.c = c = sc_new();
	fill(c->src, 3 * 1024 * 1024 + 17, 3);
	c->shut_when_sent = 1;
	open_to(&a, &b, NULL, "hello-header", &o1);
	wait_int(base, &o1.done, 1, 3000);
	assert_non_null(o1.st);
	assert_string_equal(o1.err, "");
	wait_int(base, &b.naccept, 1, 3000);
	assert_string_equal(b.from[0], "node-a");
	assert_int_equal(b.hlen[0], 12);
	assert_memory_equal(b.hdr[0], "hello-header", 12);

	wait_int(base, &c->eof, 1, 10000);
	wait_int(base, &b.acc[0]->eof, 1, 10000);
	want = evbuffer_new();
	fill(want, 3 * 1024 * 1024 + 17, 3);
	assert_int_equal(evbuffer_get_length(b.acc[0]->got),
	    evbuffer_get_length(want));
	assert_memory_equal(evbuffer_pullup(b.acc[0]->got, -1),
	    evbuffer_pullup(want, -1), evbuffer_get_length(want));
	evbuffer_drain(want, evbuffer_get_length(want));
	fill(want, 2 * 1024 * 1024 + 333, 7);
	assert_int_equal(evbuffer_get_length(c->got),
	    evbuffer_get_length(want));
	assert_memory_equal(evbuffer_pullup(c->got, -1),
	    evbuffer_pullup(want, -1), evbuffer_get_length(want));
	evbuffer_free(want);
	assert_int_equal(stats(&a).links_up, 1);
	assert_int_equal(stats(&b).links_up, 1);
	assert_int_equal(stats(&a).opened, 1);
	assert_int_equal(stats(&b).accepted, 1);

	/* a second open: the same link */
	b.reply_len = 0;
	open_to(&a, &b, NULL, "second", &o2);
	wait_int(base, &o2.done, 1, 3000);
	assert_non_null(o2.st);
	wait_int(base, &b.naccept, 2, 3000);
	assert_memory_equal(b.hdr[1], "second", 6);
	assert_int_equal(stats(&a).links_up, 1);
	assert_int_equal(stats(&a).links, 1);

	/* b to a: the link a made */
	open_to(&b, &a, NULL, "back", &o3);
	wait_int(base, &o3.done, 1, 3000);
	assert_non_null(o3.st);
	wait_int(base, &a.naccept, 1, 3000);
	assert_string_equal(a.from[0], "node-b");
	assert_memory_equal(a.hdr[0], "back", 4);
	assert_int_equal(stats(&a).links_up, 1);
	assert_int_equal(stats(&b).links_up, 1);
	assert_int_equal(stats(&b).links, 1);
	assert_int_equal(stats(&a).auth_failures, 0);
	assert_int_equal(stats(&b).auth_failures, 0);

	mux_stream_free(o2.st);
	mux_stream_free(o3.st);
	sc_free(c);
	node_stop(&a);
	node_stop(&b);
	event_base_free(base);
}

/* 200 streams at once, each with its header and its bytes */
static void
test_many_streams(void **state)
{
	struct event_base *base = new_base();
	struct node a, b;
	static struct op o[200];
	int eofs;

	(void)state;
	memset(o, 0, sizeof(o));
	node_start(&a, base, "node-a", SECRET, 1);
	node_start(&b, base, "node-b", SECRET, 1);
	for (int i = 0; i < 200; i++) {
		char h[32];
		o[i].c = sc_new();
		evbuffer_add_printf(o[i].c->src, "payload of stream %d", i);
		o[i].c->shut_when_sent = 1;
		snprintf(h, sizeof(h), "s%d", i);
		open_to(&a, &b, NULL, h, &o[i]);
	}
	wait_int(base, &b.naccept, 200, 5000);
	for (int i = 0; i < 200; i++)
		assert_int_equal(o[i].done, 1);
	for (uint64_t end = wall_ms() + 5000;;) {
		eofs = 0;
		for (int i = 0; i < 200; i++)
			eofs += b.acc[i]->eof;
		if (eofs == 200)
			break;
		if (wall_ms() > end)
			fail_msg("%d of 200 streams ended", eofs);
		run_for(base, 5);
	}
	for (int i = 0; i < 200; i++) {
		char h[32], p[64];
		int k;
		assert_int_equal(sscanf((char *)b.hdr[i], "s%d", &k), 1);
		snprintf(h, sizeof(h), "s%d", k);
		assert_int_equal(b.hlen[i], strlen(h));
		snprintf(p, sizeof(p), "payload of stream %d", k);
		assert_int_equal(evbuffer_get_length(b.acc[i]->got), strlen(p));
		assert_memory_equal(evbuffer_pullup(b.acc[i]->got, -1), p,
		    strlen(p));
	}
	assert_int_equal(stats(&a).opened, 200);
	assert_int_equal(stats(&b).accepted, 200);
	assert_int_equal(stats(&a).links_up, 1);
	for (int i = 0; i < 200; i++)
		sc_free(o[i].c);
	node_stop(&a);
	node_stop(&b);
	event_base_free(base);
}

struct fails {
	const struct node *n;
	uint64_t want;
};

static int
auth_failed(void *arg)
{
	struct fails *f = arg;

	return stats(f->n).auth_failures >= f->want;
}

/* a wrong secret: refused, counted on both sides, nothing accepted */
static void
test_wrong_secret(void **state)
{
	struct event_base *base = new_base();
	struct node a, c;
	struct op o = { 0 };
	struct fails f;

	(void)state;
	node_start(&a, base, "node-a", SECRET, 1);
	node_start(&c, base, "node-c", SECRET2, 1);
	open_to(&a, &c, NULL, "hdr", &o);
	wait_int(base, &o.done, 1, 3000);
	assert_null(o.st);
	if (strstr(o.err, "secret") == NULL)
		fail_msg("error without the secret: %s", o.err);
	f.n = &c;
	f.want = 1;
	assert_true(run_until(base, auth_failed, &f, 2000));
	assert_int_equal(stats(&a).auth_failures, 1);
	assert_int_equal(stats(&a).open_failures, 1);
	assert_int_equal(stats(&a).links_up, 0);
	assert_int_equal(stats(&c).links_up, 0);
	run_for(base, 50);
	assert_int_equal(c.naccept, 0);
	assert_int_equal(a.naccept, 0);

	/* and the other way */
	memset(&o, 0, sizeof(o));
	open_to(&c, &a, NULL, "hdr", &o);
	wait_int(base, &o.done, 1, 3000);
	assert_null(o.st);
	if (strstr(o.err, "secret") == NULL)
		fail_msg("error without the secret: %s", o.err);
	f.n = &a;
	f.want = 2;
	assert_true(run_until(base, auth_failed, &f, 2000));
	assert_int_equal(stats(&c).auth_failures, 2);
	assert_int_equal(c.naccept + a.naccept, 0);
	node_stop(&a);
	node_stop(&c);
	event_base_free(base);
}

/* the right address, the wrong node id */
static void
test_wrong_node(void **state)
{
	struct event_base *base = new_base();
	struct node a, b;
	struct op o = { 0 };

	(void)state;
	node_start(&a, base, "node-a", SECRET, 1);
	node_start(&b, base, "node-b", SECRET, 1);
	open_to(&a, &b, "node-z", "hdr", &o);
	wait_int(base, &o.done, 1, 3000);
	assert_null(o.st);
	if (strstr(o.err, "this is node node-b, not node-z") == NULL)
		fail_msg("unexpected error: %s", o.err);
	assert_int_equal(stats(&a).auth_failures, 1);
	assert_int_equal(stats(&a).open_failures, 1);
	assert_int_equal(stats(&a).links_up, 0);
	run_for(base, 50);
	/* the refusing side counts it too */
	assert_int_equal(stats(&b).auth_failures, 1);
	assert_int_equal(stats(&b).links_up, 0);
	assert_int_equal(b.naccept, 0);
	node_stop(&a);
	node_stop(&b);
	event_base_free(base);
}

struct rawc {
	int fd;
	int closed;
};

static int
raw_closed(void *arg)
{
	struct rawc *r = arg;
	char buf[4096];
	ssize_t n;

	while ((n = read(r->fd, buf, sizeof(buf))) > 0)
		;
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		r->closed = 1;
	return r->closed;
}

/* a peer that connects and says nothing is dropped after the handshake's
 * time; one that sends garbage at once; the set keeps serving */
static void
test_silent_and_garbage(void **state)
{
	struct event_base *base = new_base();
	struct node a, b;
	struct rawc silent = { -1, 0 }, junk = { -1, 0 };
	struct op o = { 0 };
	uint64_t t0, dt;
	static const char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	(void)state;
	node_start(&a, base, "node-a", SECRET, 1);
	node_start(&b, base, "node-b", SECRET, 1);
	silent.fd = raw_connect(b.addr);
	junk.fd = raw_connect(b.addr);
	t0 = wall_ms();
	assert_int_equal(write(junk.fd, garbage, sizeof(garbage) - 1),
	    (ssize_t)sizeof(garbage) - 1);
	assert_true(run_until(base, raw_closed, &junk, 2000));

	/* a good open while the silent one waits */
	o.c = sc_new();
	evbuffer_add(o.c->src, "ok", 2);
	open_to(&a, &b, NULL, "after-garbage", &o);
	wait_int(base, &o.done, 1, 3000);
	assert_non_null(o.st);
	wait_int(base, &b.naccept, 1, 3000);
	assert_memory_equal(b.hdr[0], "after-garbage", 13);

	assert_true(run_until(base, raw_closed, &silent,
	    NODELINK_AUTH_TIMEOUT_MS + 3000));
	dt = wall_ms() - t0;
	if (dt < NODELINK_AUTH_TIMEOUT_MS - 500)
		fail_msg("a silent peer dropped after %llu ms only",
		    (unsigned long long)dt);
	/* the good link lives on */
	assert_int_equal(stats(&b).links, 1);
	assert_int_equal(stats(&a).links, 1);
	close(silent.fd);
	close(junk.fd);
	sc_free(o.c);
	node_stop(&a);
	node_stop(&b);
	event_base_free(base);
}

struct reach {
	const struct node *n;
	unsigned want, heard;
};

static int
reach_is(void *arg)
{
	struct reach *r = arg;
	unsigned heard;

	return nodelink_peers_reach_store(r->n->ls, &heard) == r->want &&
	    heard == r->heard;
}

/* statuses: a peer's store_up seen within a status period and a half */
static void
test_status(void **state)
{
	struct event_base *base = new_base();
	struct node a, b;
	struct reach r;
	unsigned heard = 9;

	(void)state;
	node_start(&a, base, "node-a", SECRET, 1);
	node_start(&b, base, "node-b", SECRET, 1);
	assert_int_equal(nodelink_peers_reach_store(a.ls, &heard), 0);
	assert_int_equal(heard, 0);
	nodelink_touch(a.ls, b.id, b.addr);
	nodelink_touch(a.ls, a.id, a.addr); /* itself: nothing */
	r.n = &a;
	r.want = 0;
	r.heard = 1;
	assert_true(run_until(base, reach_is, &r, 1500));
	nodelink_set_store_up(b.ls, 1);
	r.want = 1;
	assert_true(run_until(base, reach_is, &r, 1500));
	/* and b hears a (store down) */
	r.n = &b;
	r.want = 0;
	assert_true(run_until(base, reach_is, &r, 1500));
	nodelink_set_store_up(b.ls, 0);
	r.n = &a;
	r.want = 0;
	assert_true(run_until(base, reach_is, &r, 1500));
	nodelink_set_store_up(b.ls, 1);
	r.want = 1;
	assert_true(run_until(base, reach_is, &r, 1500));
	assert_int_equal(stats(&a).links_up, 1);

	/* b goes away: no longer counted */
	node_stop(&b);
	r.want = 0;
	r.heard = 0;
	assert_true(run_until(base, reach_is, &r, 1500));
	assert_int_equal(stats(&a).links, 0);
	node_stop(&a);
	event_base_free(base);
}

/* a link both ways at once (each dials the other): one peer, counted once */
static void
test_crossed_links(void **state)
{
	struct event_base *base = new_base();
	struct node a, b;
	struct op o1 = { 0 }, o2 = { 0 };
	struct reach r;

	(void)state;
	node_start(&a, base, "node-a", SECRET, 1);
	node_start(&b, base, "node-b", SECRET, 1);
	nodelink_set_store_up(a.ls, 1);
	nodelink_set_store_up(b.ls, 1);
	open_to(&a, &b, NULL, "x", &o1);
	open_to(&b, &a, NULL, "y", &o2);
	wait_int(base, &o1.done, 1, 3000);
	wait_int(base, &o2.done, 1, 3000);
	assert_non_null(o1.st);
	assert_non_null(o2.st);
	wait_int(base, &a.naccept, 1, 3000);
	wait_int(base, &b.naccept, 1, 3000);
	assert_string_equal(a.from[0], "node-b");
	assert_string_equal(b.from[0], "node-a");
	r.n = &a;
	r.want = 1;
	r.heard = 1;
	assert_true(run_until(base, reach_is, &r, 1500));
	mux_stream_free(o1.st);
	mux_stream_free(o2.st);
	node_stop(&a);
	node_stop(&b);
	event_base_free(base);
}

/* nodelink_free with opens waiting: their callbacks, with an error */
static void
test_free_with_waiting(void **state)
{
	struct event_base *base = new_base();
	struct node a;
	struct op o[3];
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	char addr[32];
	int lfd;

	(void)state;
	memset(o, 0, sizeof(o));
	node_start(&a, base, "node-a", SECRET, 0);
	/* a listener that never answers: the connect succeeds, no Chal */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 8), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
	for (int i = 0; i < 3; i++)
		nodelink_open(a.ls, "mute", addr, (const uint8_t *)"h", 1,
		    on_open, &o[i]);
	/* a bad address, no address, a bad header: at once */
	{
		struct op e[3];
		memset(e, 0, sizeof(e));
		nodelink_open(a.ls, "x", "nowhere", (const uint8_t *)"h", 1,
		    on_open, &e[0]);
		nodelink_open(a.ls, "y", "", (const uint8_t *)"h", 1,
		    on_open, &e[1]);
		nodelink_open(a.ls, "mute", addr, (const uint8_t *)"h", 0,
		    on_open, &e[2]);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(e[i].done, 1);
			assert_null(e[i].st);
		}
		if (strstr(e[1].err, "--node-addr") == NULL)
			fail_msg("%s", e[1].err);
		assert_int_equal(stats(&a).open_failures, 3);
	}
	/* at most NODELINK_MAX_WAIT opens wait for one link */
	{
		static struct op more[NODELINK_MAX_WAIT];
		memset(more, 0, sizeof(more));
		for (int i = 0; i < NODELINK_MAX_WAIT; i++)
			nodelink_open(a.ls, "mute", addr,
			    (const uint8_t *)"h", 1, on_open, &more[i]);
		for (int i = 0; i < NODELINK_MAX_WAIT - 3; i++)
			assert_int_equal(more[i].done, 0);
		for (int i = NODELINK_MAX_WAIT - 3; i < NODELINK_MAX_WAIT;
		    i++) {
			assert_int_equal(more[i].done, 1);
			if (strstr(more[i].err, "too many") == NULL)
				fail_msg("%s", more[i].err);
		}
		run_for(base, 200);
		for (int i = 0; i < 3; i++)
			assert_int_equal(o[i].done, 0);
		nodelink_free(a.ls);
		for (int i = 0; i < NODELINK_MAX_WAIT; i++)
			assert_int_equal(more[i].done, 1);
	}
	for (int i = 0; i < 3; i++) {
		assert_int_equal(o[i].done, 1);
		assert_null(o[i].st);
		if (strstr(o[i].err, "closing") == NULL)
			fail_msg("%s", o[i].err);
	}
	close(lfd);
	event_base_free(base);
}

/* nobody listens at the node's address */
static void
test_dial_refused(void **state)
{
	struct event_base *base = new_base();
	struct node a, b;
	struct op o = { 0 };

	(void)state;
	node_start(&a, base, "node-a", SECRET, 1);
	memset(&b, 0, sizeof(b));
	snprintf(b.id, sizeof(b.id), "node-b");
	free_addr(b.addr, sizeof(b.addr));
	open_to(&a, &b, NULL, "h", &o);
	wait_int(base, &o.done, 1, 3000);
	assert_null(o.st);
	if (strstr(o.err, "cannot connect") == NULL)
		fail_msg("%s", o.err);
	assert_int_equal(stats(&a).open_failures, 1);
	assert_int_equal(stats(&a).links, 0);
	node_stop(&a);
	event_base_free(base);
}

/* freeing a set while its links are up and streams are held: the held
 * streams' closed callbacks run (their owners let go), on both sides */
static void
test_free_with_streams(void **state)
{
	struct event_base *base = new_base();
	struct node a, b;
	struct op o = { 0 };

	(void)state;
	node_start(&a, base, "node-a", SECRET, 1);
	node_start(&b, base, "node-b", SECRET, 1);
	o.c = sc_new();
	fill(o.c->src, 4 * 1024 * 1024, 1); /* more than the window: held */
	open_to(&a, &b, NULL, "held", &o);
	wait_int(base, &b.naccept, 1, 3000);
	run_for(base, 20);
	assert_non_null(o.c->st);
	assert_non_null(b.acc[0]->st);
	/* b's end is held by its owner when the set goes */
	nodelink_free(b.ls);
	b.ls = NULL;
	assert_int_equal(b.acc[0]->closed, 1);
	assert_null(b.acc[0]->st);
	/* a's link sees the end */
	wait_int(base, &o.c->closed, 1, 3000);
	assert_int_equal(stats(&a).links, 0);
	node_stop(&b);
	sc_free(o.c);
	/* a set freed with a link up and no stream held */
	node_start(&b, base, "node-b", SECRET, 1);
	memset(&o, 0, sizeof(o));
	open_to(&a, &b, NULL, "y", &o);
	wait_int(base, &o.done, 1, 3000);
	assert_non_null(o.st);
	wait_int(base, &b.naccept, 1, 3000);
	assert_int_equal(stats(&a).links_up, 2);
	mux_stream_free(o.st);
	node_stop(&a);
	node_stop(&b);
	event_base_free(base);
}

/* a stream the accept hook refuses: the opener sees the reset mark; the
 * link lives */
static void
test_refused_stream(void **state)
{
	struct event_base *base = new_base();
	struct node a, b;
	struct op o = { 0 }, p = { 0 };

	(void)state;
	node_start(&a, base, "node-a", SECRET, 1);
	node_start(&b, base, "node-b", SECRET, 1);
	b.refuse = 1;
	p.c = sc_new();
	open_to(&a, &b, NULL, "refused", &p);
	wait_int(base, &b.naccept, 1, 3000);
	/* the hook aborted it: the opener sees the reset mark and EOF */
	wait_int(base, &p.c->eof, 1, 3000);
	assert_int_equal(p.c->reset, 1);
	b.refuse = 0;
	open_to(&a, &b, NULL, "fine", &o);
	wait_int(base, &b.naccept, 2, 3000);
	assert_memory_equal(b.hdr[1], "fine", 4);
	assert_int_equal(stats(&a).links_up, 1);
	mux_stream_free(o.st);
	sc_free(p.c);
	node_stop(&a);
	node_stop(&b);
	event_base_free(base);
}

static void
test_new_errors(void **state)
{
	struct event_base *base = new_base();
	struct nodelink_hooks h = { on_accept, NULL };
	char err[256];

	(void)state;
	err[0] = '\0';
	assert_null(nodelink_new(base, "n", "", "short", &h, err,
	    sizeof(err)));
	assert_non_null(strstr(err, "secret"));
	err[0] = '\0';
	assert_null(nodelink_new(base, "n", "not-an-address", SECRET, &h, err,
	    sizeof(err)));
	assert_non_null(strstr(err, "--node-addr"));
	nodelink_free(NULL);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_errors),
		cmocka_unit_test(test_stream_both_ways),
		cmocka_unit_test(test_many_streams),
		cmocka_unit_test(test_wrong_secret),
		cmocka_unit_test(test_wrong_node),
		cmocka_unit_test(test_refused_stream),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_crossed_links),
		cmocka_unit_test(test_dial_refused),
		cmocka_unit_test(test_free_with_waiting),
		cmocka_unit_test(test_free_with_streams),
		cmocka_unit_test(test_silent_and_garbage),
	};

	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
