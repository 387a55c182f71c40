/* muxpeer.c: a raw smux echo server and echo checker over the mux layer,
 * for interoperability tests against xtaci/smux (see muxpeer.h). */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "mux/mux.h"
#include "mux/muxpeer.h"
#include "util/crypto.h"
#include "util/err.h"
#include "util/log.h"
#include "util/net.h"
#include "util/xmalloc.h"

struct peer {
	struct event_base *base;
	struct mux_config cfg;
	unsigned streams_left;
	int failed;
	int raw_echo;
	size_t bytes;
};

/* ---- server: raw echo, or smuxpeer's request protocol ---- */

/*
 * The request protocol of tests/interop/smuxpeer: op u8 | length u64 BE;
 * 'E' echoes length bytes, 'U' discards them and answers length as u64,
 * 'D' sends length zero bytes. Requests repeat until the stream ends.
 */
struct srv_stream {
	struct mux_stream *st;
	struct evbuffer *tx;   /* echo and download bytes not yet sent */
	uint64_t left;         /* of the current request's body */
	uint64_t zeros;        /* download bytes not yet queued */
	uint64_t len;
	uint8_t op;            /* 0 = waiting for a request header */
	int raw;               /* --serve echo */
};

static void
srv_free(struct srv_stream *ss)
{
	evbuffer_free(ss->tx);
	mux_stream_free(ss->st);
	free(ss);
}

static void
srv_pump(struct srv_stream *ss)
{
	static const uint8_t zero[16384];
	struct evbuffer *rx = mux_stream_rx(ss->st);

	for (int guard = 0; guard < 1024; guard++) {
		size_t avail = evbuffer_get_length(rx);
		/* flush what is owed first: it bounds our buffering */
		while (ss->zeros && evbuffer_get_length(ss->tx) < 262144) {
			size_t k = ss->zeros < sizeof(zero) ? ss->zeros :
			    sizeof(zero);
			evbuffer_add(ss->tx, zero, k);
			ss->zeros -= k;
		}
		if (evbuffer_get_length(ss->tx))
			mux_stream_send_buffer(ss->st, ss->tx);
		if (evbuffer_get_length(ss->tx) >= 262144)
			return; /* writable brings us back */
		if (ss->raw || ss->op == 'E' || ss->op == 'U') {
			size_t k = avail;
			if (!ss->raw && k > ss->left)
				k = ss->left;
			if (k == 0 && !(ss->raw || ss->left == 0))
				break;
			if (ss->op == 'U')
				evbuffer_drain(rx, k);
			else
				evbuffer_remove_buffer(rx, ss->tx, k);
			mux_stream_consumed(ss->st, k);
			if (!ss->raw) {
				ss->left -= k;
				if (ss->left == 0 && ss->op == 'U') {
					uint8_t ack[8];
					for (int i = 0; i < 8; i++)
						ack[i] = (uint8_t)(ss->len >>
						    (56 - 8 * i));
					evbuffer_add(ss->tx, ack, 8);
				}
				if (ss->left == 0)
					ss->op = 0;
			}
			if (k == 0)
				break;
			continue;
		}
		if (ss->op == 'D') {
			ss->op = 0;
			continue;
		}
		if (avail < 9)
			break;
		{
			uint8_t *h = evbuffer_pullup(rx, 9);
			ss->op = h[0];
			ss->len = 0;
			for (int i = 1; i < 9; i++)
				ss->len = ss->len << 8 | h[i];
			evbuffer_drain(rx, 9);
			mux_stream_consumed(ss->st, 9);
			if (ss->op != 'E' && ss->op != 'U' && ss->op != 'D') {
				log_warn("mux-peer: stream %u: unknown op 0x%02x",
				    mux_stream_id(ss->st), ss->op);
				srv_free(ss);
				return;
			}
			ss->left = ss->len;
			if (ss->op == 'D')
				ss->zeros = ss->len;
		}
	}
	if (mux_stream_eof(ss->st) && evbuffer_get_length(ss->tx) == 0 &&
	    ss->zeros == 0) {
		mux_stream_shutdown(ss->st);
		srv_free(ss);
	}
}

static void
echo_readable(struct mux_stream *st, void *arg)
{
	srv_pump(arg);
}

static void
echo_writable(struct mux_stream *st, void *arg)
{
	srv_pump(arg);
}

static void
echo_st_closed(struct mux_stream *st, void *arg)
{
	struct srv_stream *ss = arg;

	ss->st = NULL;
	srv_free(ss);
}

static const struct mux_stream_cbs echo_cbs = {
	.readable = echo_readable,
	.writable = echo_writable,
	.closed = echo_st_closed,
};

static void
echo_accept(struct mux *m, struct mux_stream *st, void *arg)
{
	struct peer *p = arg;
	struct srv_stream *ss = xcalloc(1, sizeof(*ss));

	ss->st = st;
	ss->raw = p->raw_echo;
	if ((ss->tx = evbuffer_new()) == NULL)
		abort();
	mux_stream_set_cbs(st, &echo_cbs, ss);
}

static void
echo_closed(struct mux *m, int err, void *arg)
{
	log_info("mux-peer: session closed: %s", mg_strerror(err));
	mux_free(m);
}

static const struct mux_callbacks echo_mux_cbs = {
	.accept = echo_accept,
	.closed = echo_closed,
};

static void
peer_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct peer *p = arg;

	net_sock_tune(fd);
	mux_new(p->base, fd, 0, &p->cfg, &echo_mux_cbs, p);
}

/* ---- client: send, read back, compare ---- */

struct check {
	struct peer *p;
	struct mux_stream *st;
	struct evbuffer *tx;
	uint8_t *want;
	size_t got;
};

static void
check_done(struct check *ck, int ok)
{
	struct peer *p = ck->p;

	if (!ok)
		p->failed = 1;
	evbuffer_free(ck->tx);
	free(ck->want);
	mux_stream_free(ck->st);
	free(ck);
	if (--p->streams_left == 0 || !ok)
		event_base_loopexit(p->base, NULL);
}

static void
check_send(struct check *ck)
{
	if (evbuffer_get_length(ck->tx) == 0)
		return;
	mux_stream_send_buffer(ck->st, ck->tx);
	if (evbuffer_get_length(ck->tx) == 0)
		mux_stream_shutdown(ck->st);
}

static void
check_readable(struct mux_stream *st, void *arg)
{
	struct check *ck = arg;
	struct evbuffer *rx = mux_stream_rx(st);
	size_t n = evbuffer_get_length(rx);

	if (ck->got + n > ck->p->bytes) {
		log_error("mux-peer: stream %u: echo longer than sent",
		    mux_stream_id(st));
		check_done(ck, 0);
		return;
	}
	if (n) {
		uint8_t *q = evbuffer_pullup(rx, n);
		if (memcmp(q, ck->want + ck->got, n) != 0) {
			log_error("mux-peer: stream %u: echo differs at byte "
				  "%zu",
			    mux_stream_id(st), ck->got);
			check_done(ck, 0);
			return;
		}
		ck->got += n;
		evbuffer_drain(rx, n);
		mux_stream_consumed(st, n);
	}
	if (mux_stream_eof(st)) {
		if (ck->got != ck->p->bytes)
			log_error("mux-peer: stream %u: echo ended after %zu "
				  "of %zu bytes",
			    mux_stream_id(st), ck->got, ck->p->bytes);
		check_done(ck, ck->got == ck->p->bytes);
	}
}

static void
check_writable(struct mux_stream *st, void *arg)
{
	check_send(arg);
}

static void
check_closed(struct mux_stream *st, void *arg)
{
	struct check *ck = arg;

	ck->st = NULL;
	log_error("mux-peer: session died with stream open");
	check_done(ck, 0);
}

static const struct mux_stream_cbs check_cbs = {
	.readable = check_readable,
	.writable = check_writable,
	.closed = check_closed,
};

static void
check_accept(struct mux *m, struct mux_stream *st, void *arg)
{
	mux_stream_free(st);
}

static void
check_mux_closed(struct mux *m, int err, void *arg)
{
	struct peer *p = arg;

	if (p->streams_left) {
		log_error("mux-peer: session closed: %s", mg_strerror(err));
		p->failed = 1;
	}
	event_base_loopexit(p->base, NULL);
}

static const struct mux_callbacks check_mux_cbs = {
	.accept = check_accept,
	.closed = check_mux_closed,
};

static int
dial(const char *addr)
{
	char host[256], port[8];
	uint16_t pn;
	const char *err;
	struct addrinfo hints, *res, *ai;
	int fd = -1;

	if (net_split_hostport(addr, host, sizeof(host), &pn, &err))
		return -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", pn);
	if (getaddrinfo(host[0] ? host : "127.0.0.1", port, &hints, &res))
		return -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0) {
		net_set_nonblock(fd);
		net_sock_tune(fd);
	}
	return fd;
}

int
muxpeer_run(const struct muxpeer_opts *o, char *err, size_t errcap)
{
	struct peer p;
	struct timeval tv;
	int rc = MG_EIO;

	memset(&p, 0, sizeof(p));
	err[0] = '\0';
	mux_config_default(&p.cfg);
	p.cfg.version = o->version ? o->version : 2;
	p.bytes = o->bytes;
	p.raw_echo = o->raw_echo;
	if ((o->listen_at == NULL) == (o->connect_to == NULL) ||
	    o->nstreams == 0 || (p.cfg.version != 1 && p.cfg.version != 2)) {
		snprintf(err, errcap, "give --listen or --connect (one), "
		    "--streams >= 1, --smuxver 1 or 2");
		return MG_EINVAL;
	}
	p.base = event_base_new();
	tv.tv_sec = o->max_time_s;
	tv.tv_usec = 0;
	event_base_loopexit(p.base, &tv);
	if (o->listen_at) {
		char host[256], buf[NET_ADDRSTR_MAX];
		uint16_t port;
		const char *e;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct evconnlistener *l;
		int fd;
		if (net_split_hostport(o->listen_at, host, sizeof(host), &port,
		    &e) || (fd = net_listen_tcp(host, port, 128)) < 0) {
			snprintf(err, errcap, "cannot listen on %s",
			    o->listen_at);
			goto out;
		}
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		l = evconnlistener_new(p.base, peer_on_accept, &p,
		    LEV_OPT_CLOSE_ON_FREE, -1, fd);
		log_info("mux-peer listening on %s",
		    net_addr_str((struct sockaddr *)&ss, buf, sizeof(buf)));
		event_base_dispatch(p.base);
		evconnlistener_free(l);
		rc = 0;
	} else {
		int fd = dial(o->connect_to);
		struct mux *m;
		if (fd < 0) {
			snprintf(err, errcap, "cannot connect to %s",
			    o->connect_to);
			goto out;
		}
		m = mux_new(p.base, fd, 1, &p.cfg, &check_mux_cbs, &p);
		p.streams_left = o->nstreams;
		for (unsigned i = 0; i < o->nstreams; i++) {
			struct check *ck = xcalloc(1, sizeof(*ck));
			ck->p = &p;
			ck->st = mux_stream_open(m);
			ck->tx = evbuffer_new();
			ck->want = xmalloc(p.bytes);
			crypto_random(ck->want, p.bytes);
			evbuffer_add(ck->tx, ck->want, p.bytes);
			mux_stream_set_cbs(ck->st, &check_cbs, ck);
			check_send(ck);
		}
		event_base_dispatch(p.base);
		if (p.streams_left == 0 && !p.failed) {
			rc = 0;
		} else {
			snprintf(err, errcap, "%s (%u streams unfinished)",
			    p.failed ? "echo check failed" : "timed out",
			    p.streams_left);
			rc = p.failed ? MG_EPROTO : MG_ETIMEDOUT;
		}
		mux_free(m);
	}
out:
	event_base_free(p.base);
	return rc;
}
