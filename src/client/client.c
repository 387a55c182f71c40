/* client.c: the client side of a tunnel: connect, authenticate (HMAC),
 * register, reconnect with backoff, and bridge data streams to local
 * services. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "client/agentid.h"
#include "client/client.h"
#include "client/probe.h"
#include "conf/conf.h"
#include "mux/mux.h"
#include "proto/ctrl.h"
#include "proto/sthdr.h"
#include "relay/dgram.h"
#include "relay/dial.h"
#include "relay/hrelay.h"
#include "relay/relay.h"
#include "tls/tls.h"
#include "util/crypto.h"
#include "util/err.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/mtime.h"
#include "util/net.h"
#include "util/xmalloc.h"

#define CLIENT_AGENT "mgrok/0.1.0"
#define CLIENT_CAPS \
	(CTRL_CAP_STREAM_EX | CTRL_CAP_UDP_FLOWS | CTRL_CAP_LEASES)
#define CONNECT_TIMEOUT_S 10
#define CF_SCRATCH (256 * 1024) /* at least DGRAM_MAX */
#define DIAL_TIMEOUT_S 10
#define AUTH_TIMEOUT_S 10 /* a listener that accepts and says nothing */
#define PROBE_TIMEOUT_S 3

enum client_state {
	CL_IDLE = 0,     /* waiting to (re)connect */
	CL_CONNECTING,
	CL_AUTH,
	CL_REGISTERING,
	CL_READY,
};

/*
 * A tunnel of this agent. Allocated one by one and counted: the agent's
 * table holds one reference, and so does everything that may outlive its
 * place there (a registration waiting for its answer, a stream being set
 * up, a relay, a UDP flow), so a tunnel that a reload removes is freed
 * when the last of them ends, never under them.
 */
struct cproxy {
	TAILQ_ENTRY(cproxy) reg_link; /* client->regq, awaiting its answer */
	struct local_spec spec;       /* a copy: the conf may be replaced */
	unsigned refs;
	int gone;                     /* removed from the table by a reload */
	int waiting;                  /* on regq */
	int registered;               /* RegisterOK came (this session) */
	int reloaded;                 /* added by a reload, not at start */
	struct addrinfo *ai;
	char name[CTRL_NAME_MAX + 1];  /* as the server named it */
	uint16_t remote_port;           /* asked for, then as assigned */
	char url[400];
	uint64_t streams_total, refused, bytes_in, bytes_out;
	unsigned active;
	struct dgram_stats dg;        /* UDP: in = from the public side */
	struct http_cstats hs;        /* HTTP */
	char host_rw[300];            /* --host-header rewrite: localhost:P */
	char assigned_host[256];      /* HTTP/TLS: the host we were given */
};

/* A UDP flow: one data stream and one connected socket to the local
 * service, so the service sees a distinct source port per remote peer. */
struct cflow {
	LIST_ENTRY(cflow) link;
	struct client *c;
	struct cproxy *px;
	struct mux_stream *st;
	struct event *ev;
	int fd;
	int gso; /* UDP GSO towards the local service (dgram_send) */
	uint64_t last_ms;
};
LIST_HEAD(cflow_list, cflow);

struct client {
	struct event_base *base;
	const struct client_conf *cf;
	struct mux *mux;
	struct mux_stream *ctrl;
	struct event *retry_ev, *hb_ev, *auth_ev;
	struct client_hooks hooks;
	int lock_fd;          /* flock on this agent's state file, or -1 */
	struct probe *probe;  /* finding out what listens at --server */
	const enum probe_kind *probe_plan; /* the probes still to run */
	int got_ctrl;         /* a control message came in this session */
	int ever_ready;       /* registered at least once in this run */
	struct dial *dial;
	struct addrinfo *server_ai;
	int conn_fd;          /* during the TLS handshake */
	enum client_state state;
	struct cproxy **px;   /* the table: the tunnels of the configuration */
	unsigned long long reloads, reload_failures;
	long long reload_time;
	int reload_ok;
	char reload_err[512];
	size_t npx;
	/* registrations sent, in order: the server answers each in order */
	TAILQ_HEAD(, cproxy) regq;
	uint8_t client_id[CTRL_ID_LEN];
	uint8_t client_nonce[CTRL_NONCE_LEN];
	unsigned attempts;
	unsigned heartbeat_s;
	int stopping;
	int exit_code;
	int server_leaving;   /* Goodbye code 8 received */
	char last_err[600];
	char server_host[256];
	uint16_t server_port;
	uint64_t started_ms, sessions;
	struct cflow_list flows;
	struct event *sweep_ev;
	struct tls_ctx *tls;
	struct tls_hs *hs;
	SSL *hs_ssl;
	uint8_t *udp_buf;
};

/* A data stream between its SYN and the local connection. */
struct cstream {
	struct client *c;
	struct mux_stream *st;
	struct cproxy *px;
	struct dial *dial;
};

static void client_connect(struct client *c);
static void client_schedule_retry(struct client *c);

/* The monotonic clock: a wall-clock step must not expire every UDP flow
 * at once (or never). */
static uint64_t
client_now_ms(struct client *c)
{
	/* monotonic, not libevent's cached time of day: see util/mtime.h */
	(void)c;
	return mtime_ms();
}

/* The client's own voice on stderr: one line, "mgrok: ...". */
static void
client_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
client_say(const char *fmt, ...)
{
	va_list ap;

	log_flush(); /* request lines gathered so far come first */
	fputs("mgrok: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
client_stop(struct client *c, int code)
{
	c->stopping = 1;
	c->exit_code = code;
	if (c->mux)
		mux_close(c->mux, MG_ECLOSED); /* closed cb ends the loop */
	else
		event_base_loopexit(c->base, NULL);
}

static int
client_send(struct client *c, const struct ctrl_msg *m)
{
	uint8_t buf[1024];
	int n = ctrl_encode(m, buf, sizeof(buf));

	if (n < 0 || c->ctrl == NULL)
		return n < 0 ? n : MG_ECLOSED;
	return mux_stream_send_msg(c->ctrl, buf, (size_t)n);
}

/* ---- data streams ---- */

static void cs_readable(struct mux_stream *st, void *arg);
static void cs_closed(struct mux_stream *st, void *arg);

static const struct mux_stream_cbs cs_cbs = {
	.readable = cs_readable,
	.closed = cs_closed,
};

/* ---- tunnels ---- */

static struct cproxy *
px_ref(struct cproxy *px)
{
	px->refs++;
	return px;
}

static void
px_unref(struct cproxy *px)
{
	if (px == NULL || --px->refs > 0)
		return;
	if (px->ai)
		freeaddrinfo(px->ai);
	free(px);
}

static void
px_hrelay_done(void *arg)
{
	px_unref(arg);
}

/* A tunnel for spec, its local address resolved; NULL after saying why. */
static struct cproxy *
px_new(const struct local_spec *spec)
{
	struct cproxy *px = xcalloc(1, sizeof(*px));
	struct addrinfo hints;
	char port[8];
	int rc;

	px->spec = *spec;
	px->refs = 1; /* the table's */
	px->remote_port = px->spec.remote_port;
	if (px->spec.host_rewrite)
		snprintf(px->host_rw, sizeof(px->host_rw), "localhost:%u",
		    px->spec.port);
	snprintf(px->name, sizeof(px->name), "%s", px->spec.name);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = px->spec.type == PROXY_UDP ? SOCK_DGRAM :
	    SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", px->spec.port);
	rc = getaddrinfo(px->spec.host, port, &hints, &px->ai);
	if (rc != 0) {
		client_say("cannot resolve local host %s: %s", px->spec.host,
		    gai_strerror(rc));
		free(px);
		return NULL;
	}
	return px;
}

static void
cs_free(struct cstream *cs)
{
	dial_cancel(cs->dial);
	px_unref(cs->px);
	free(cs);
}

static void
cs_reject(struct cstream *cs, uint8_t code, const char *why)
{
	struct client *c = cs->c;
	struct ctrl_msg m;

	memset(&m, 0, sizeof(m));
	m.type = CTRL_STREAM_REJECT;
	m.u.reject.stream_id = mux_stream_id(cs->st);
	m.u.reject.code = code;
	m.u.reject.text.p = (const uint8_t *)why;
	m.u.reject.text.len = strlen(why);
	client_send(c, &m);
	if (cs->px)
		cs->px->refused++;
	mux_stream_free(cs->st);
	cs_free(cs);
}

static void
cs_relay_done(void *arg, uint64_t from_sock, uint64_t to_sock, int refused)
{
	struct cproxy *px = arg;

	px->active--;
	px->bytes_in += to_sock;
	px->bytes_out += from_sock;
	px_unref(px);
}

static void
cs_dial_failed(struct cstream *cs, int err)
{
	char why[400];

	snprintf(why, sizeof(why), "cannot reach %s:%u: %s",
	    cs->px->spec.host, cs->px->spec.port,
	    strerror(err ? err : ECONNREFUSED));
	log_warn("stream %u for \"%s\": %s", mux_stream_id(cs->st),
	    cs->px->name, why);
	cs_reject(cs, CODE_UNREACHABLE, why);
}

static void
cs_on_dialed(int fd, int err, const struct sockaddr *sa, void *arg)
{
	struct cstream *cs = arg;

	cs->dial = NULL;
	if (fd < 0) {
		cs_dial_failed(cs, err);
		return;
	}
	cs->px->streams_total++;
	if (cs->px->spec.type == PROXY_HTTP) {
		hrelay_new(cs->c->base, fd, cs->st, cs->px->host_rw[0] ?
		    cs->px->host_rw : NULL, &cs->px->hs, px_hrelay_done,
		    px_ref(cs->px));
	} else {
		cs->px->active++;
		relay_new(cs->c->base, fd, cs->st, 0, cs_relay_done,
		    px_ref(cs->px));
	}
	cs->st = NULL;
	cs_free(cs);
}

/* ---- UDP flows ---- */

static void cf_readable(struct mux_stream *st, void *arg);
static void cf_closed(struct mux_stream *st, void *arg);

static const struct mux_stream_cbs cf_cbs = {
	.readable = cf_readable,
	.closed = cf_closed,
};

static void
cf_free(struct cflow *f)
{
	LIST_REMOVE(f, link);
	f->px->active--;
	if (f->ev)
		event_free(f->ev);
	if (f->fd >= 0)
		close(f->fd);
	mux_stream_free(f->st);
	px_unref(f->px);
	free(f);
}

#define CF_BATCH 64

/* Datagrams from the server, to the local service, in batches of one
 * sendmmsg. */
static void
cf_readable(struct mux_stream *st, void *arg)
{
	struct cflow *f = arg;
	struct client *c = f->c;
	struct evbuffer *rx = mux_stream_rx(st);
	struct iovec iov[CF_BATCH];
	int n = 0;

	if (c->udp_buf == NULL)
		c->udp_buf = xmalloc(CF_SCRATCH);
	for (;;) { /* bounded: the queue is bounded by the window */
		size_t consumed = 0;
		int sent;
		n = dgram_take(rx, c->udp_buf, CF_SCRATCH, iov, CF_BATCH,
		    &consumed);
		if (n <= 0)
			break;
		/* ECONNREFUSED: an ICMP port unreachable from an earlier
		 * datagram; the service is not there (yet): drop, go on */
		sent = dgram_send(f->fd, NULL, 0, iov, n, &f->gso,
		    &f->px->dg.bytes_in);
		f->px->dg.pkts_in += (uint64_t)sent;
		f->px->dg.drops_in += (uint64_t)(n - sent);
		evbuffer_drain(rx, consumed);
		mux_stream_consumed(st, consumed);
		f->last_ms = client_now_ms(c);
	}
	if (n == MG_EPROTO || (mux_stream_fin_received(st) &&
	    mux_stream_queued(st) > 0 && n == 0)) {
		log_warn("bad datagram length on UDP flow %u: closing the "
			 "session",
		    mux_stream_id(st));
		mux_close(c->mux, MG_EPROTO);
		return; /* the flow went with the session */
	}
	if (mux_stream_eof(st))
		cf_free(f);
}

static void
cf_closed(struct mux_stream *st, void *arg)
{
	struct cflow *f = arg;

	f->st = NULL;
	cf_free(f);
}

/* Datagrams from the local service, back to the flow's stream. */
static void
cf_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct cflow *f = arg;
	struct client *c = f->c;

	loop_note_io();
	if (c->udp_buf == NULL)
		c->udp_buf = xmalloc(CF_SCRATCH);
	mux_cork(c->mux);
	for (int i = 0; i < 64; i++) {
		ssize_t n = recv(fd, c->udp_buf, 65536, MSG_DONTWAIT);
		if (n < 0 && errno == ECONNREFUSED) {
			f->px->dg.drops_in++; /* nothing listens there */
			continue;
		}
		if (n <= 0)
			break;
		f->last_ms = client_now_ms(c);
		if (mux_stream_send_datagram(f->st, c->udp_buf, (size_t)n) <
		    0) {
			f->px->dg.drops_out++;
			continue;
		}
		f->px->dg.pkts_out++;
		f->px->dg.bytes_out += (uint64_t)n;
	}
	mux_uncork(c->mux);
}

static void
cf_start(struct client *c, struct mux_stream *st, struct cproxy *px)
{
	struct cflow *f = xcalloc(1, sizeof(*f));
	struct addrinfo *ai = px->ai;

	f->c = c;
	f->px = px_ref(px);
	f->st = st;
	f->fd = -1;
	f->gso = dgram_gso_supported();
	f->last_ms = client_now_ms(c);
	LIST_INSERT_HEAD(&c->flows, f, link);
	px->active++;
	px->streams_total++;
	mux_stream_set_cbs(st, &cf_cbs, f);
	/* datagrams never wait here: see udp.c on the server */
	mux_stream_set_window(st, 16 * 1024 * 1024);
	/* a burst of datagrams (one frame each) goes out in one send */
	mux_stream_set_batched(st);
	for (; ai != NULL; ai = ai->ai_next) {
		f->fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (f->fd >= 0 && connect(f->fd, ai->ai_addr,
		    ai->ai_addrlen) == 0)
			break;
		if (f->fd >= 0)
			close(f->fd);
		f->fd = -1;
	}
	if (f->fd < 0) {
		log_warn("udp flow %u: no socket towards %s:%u: %s",
		    mux_stream_id(st), px->spec.host, px->spec.port,
		    strerror(errno));
		cf_free(f);
		return;
	}
	f->ev = event_new(c->base, f->fd, EV_READ | EV_PERSIST, cf_on_read, f);
	event_add(f->ev, NULL);
	/* datagrams that came with the header */
	cf_readable(st, f);
}

static void
client_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	uint64_t now = client_now_ms(c);
	uint64_t idle = (uint64_t)c->cf->udp_idle_s * 1000;
	struct cflow *f, *next;

	for (f = LIST_FIRST(&c->flows); f != NULL; f = next) {
		next = LIST_NEXT(f, link);
		if (now - f->last_ms >= idle) {
			log_debug("udp flow %u idle for %u s: closed",
			    mux_stream_id(f->st), c->cf->udp_idle_s);
			cf_free(f);
		}
	}
}

static struct cproxy *
client_find_proxy(struct client *c, const struct sthdr *h)
{
	for (size_t i = 0; i < c->npx; i++)
		if (strcmp(c->px[i]->name, h->name) == 0)
			return c->px[i];
	for (size_t i = 0; i < c->npx; i++)
		if (c->px[i]->remote_port == h->remote_port)
			return c->px[i];
	return NULL;
}

static void
cs_readable(struct mux_stream *st, void *arg)
{
	struct cstream *cs = arg;
	struct evbuffer *rx = mux_stream_rx(st);
	size_t avail = evbuffer_get_length(rx);
	struct sthdr h;
	int n;

	if (cs->px != NULL)
		return; /* dialing: data waits on the stream, bounded by its
			   window */
	n = sthdr_decode(evbuffer_pullup(rx, avail < STHDR_MAX_LEN ? avail :
	    STHDR_MAX_LEN), avail < STHDR_MAX_LEN ? avail : STHDR_MAX_LEN,
	    &h);
	if (n == MG_EAGAIN && !mux_stream_eof(st))
		return;
	if (n < 0) {
		log_warn("stream %u: bad stream header", mux_stream_id(st));
		cs_reject(cs, CODE_PROTOCOL, "bad stream header");
		return;
	}
	evbuffer_drain(rx, (size_t)n);
	mux_stream_consumed(st, (size_t)n);
	if ((cs->px = client_find_proxy(cs->c, &h)) != NULL)
		px_ref(cs->px);
	if (cs->px == NULL) {
		log_warn("stream %u: no proxy named \"%s\" or on port %u",
		    mux_stream_id(st), h.name, h.remote_port);
		cs_reject(cs, CODE_UNREACHABLE, "no such proxy on this client");
		return;
	}
	if (cs->px->spec.type == PROXY_UDP) {
		struct client *c = cs->c;
		struct cproxy *px = px_ref(cs->px);
		cs->st = NULL;
		cs_free(cs);
		cf_start(c, st, px);
		px_unref(px);
		return;
	}
	cs->dial = dial_start(cs->c->base, cs->px->ai, SOCK_STREAM,
	    DIAL_TIMEOUT_S, NULL, cs_on_dialed, cs);
	if (cs->dial == NULL)
		cs_dial_failed(cs, errno);
}

static void
cs_closed(struct mux_stream *st, void *arg)
{
	cs_free(arg);
}

static void
client_mux_accept(struct mux *m, struct mux_stream *st, void *arg)
{
	struct client *c = arg;
	struct cstream *cs = xcalloc(1, sizeof(*cs));

	cs->c = c;
	cs->st = st;
	mux_stream_set_cbs(st, &cs_cbs, cs);
}

/* ---- control ---- */

/* Drop the registrations still waiting for an answer (the session that
 * would have answered is gone). */
static void
client_regq_clear(struct client *c)
{
	struct cproxy *px;

	while ((px = TAILQ_FIRST(&c->regq)) != NULL) {
		TAILQ_REMOVE(&c->regq, px, reg_link);
		px->waiting = 0;
		px_unref(px);
	}
}

static void
client_register_one(struct client *c, struct cproxy *px)
{
	struct ctrl_msg m;

	memset(&m, 0, sizeof(m));
	m.type = CTRL_REGISTER_EX;
	m.u.reg.ex = 1;
	m.u.reg.proxy_type = px->spec.type;
	m.u.reg.remote_port = px->remote_port;
	m.u.reg.local_port = px->spec.port;
	m.u.reg.name.p = (const uint8_t *)px->name;
	m.u.reg.name.len = strlen(px->name);
	if (px->spec.subdomain[0]) {
		m.u.reg.subdomain.p = (const uint8_t *)px->spec.subdomain;
		m.u.reg.subdomain.len = strlen(px->spec.subdomain);
	} else if (px->spec.hostname[0] || px->assigned_host[0]) {
		/* keep a random name we were given across a server restart
		 * too */
		const char *h = px->spec.hostname[0] ? px->spec.hostname :
		    px->assigned_host;
		m.u.reg.hostname.p = (const uint8_t *)h;
		m.u.reg.hostname.len = strlen(h);
	}
	if (px->spec.basic_auth[0]) {
		m.u.reg.basic_auth.p = (const uint8_t *)px->spec.basic_auth;
		m.u.reg.basic_auth.len = strlen(px->spec.basic_auth);
	}
	if (client_send(c, &m) < 0)
		return;
	px_ref(px); /* not inside the macro: it evaluates it more than once */
	TAILQ_INSERT_TAIL(&c->regq, px, reg_link);
	px->waiting = 1;
	c->state = CL_REGISTERING;
}

static void
client_register_all(struct client *c)
{
	client_regq_clear(c);
	c->state = CL_REGISTERING;
	for (size_t i = 0; i < c->npx; i++)
		client_register_one(c, c->px[i]);
	if (c->npx == 0)
		c->state = CL_READY;
}

/* The answer to the oldest registration: its tunnel, a reference the
 * caller drops (px->gone: a reload removed it meanwhile). */
static struct cproxy *
client_regq_pop(struct client *c)
{
	struct cproxy *px = TAILQ_FIRST(&c->regq);

	if (px != NULL) {
		TAILQ_REMOVE(&c->regq, px, reg_link);
		px->waiting = 0;
	}
	return px;
}

static void
client_send_unregister(struct client *c, const char *name)
{
	struct ctrl_msg m;

	memset(&m, 0, sizeof(m));
	m.type = CTRL_UNREGISTER;
	m.u.name.p = (const uint8_t *)name;
	m.u.name.len = strlen(name);
	client_send(c, &m);
}

static void
client_on_auth_ok(struct client *c, const struct ctrl_msg *m)
{
	struct timeval tv;

	event_del(c->auth_ev);
	c->heartbeat_s = m->u.auth_ok.heartbeat_s ? m->u.auth_ok.heartbeat_s :
	    10;
	tv.tv_sec = c->heartbeat_s;
	tv.tv_usec = 0;
	event_add(c->hb_ev, &tv);
	{
		char tp[96], ag[LOG_ESC_MAX];
		const char *t = mux_tls_params(c->mux, tp, sizeof(tp));

		log_info("authenticated to %s:%u (server %s%s%s)",
		    c->server_host, c->server_port,
		    log_esc(m->u.auth_ok.agent.p, m->u.auth_ok.agent.len, ag,
		    sizeof(ag)), t ? ", " : "", t ? t : "");
	}
	client_register_all(c);
}

/* Text the server sent, safe for a log line or the terminal. */
static const char *
esc(const struct ctrl_str *s, char *buf, size_t cap)
{
	return log_esc(s->p, s->len, buf, cap);
}

static void
client_on_register_ok(struct client *c, const struct ctrl_msg *m)
{
	struct cproxy *px;
	char url[400];

	if ((px = client_regq_pop(c)) == NULL) {
		log_warn("unexpected RegisterOK");
		return;
	}
	if (px->gone) {
		/* a reload removed it while the answer was on its way */
		char n[LOG_ESC_MAX];
		log_esc(m->u.reg_ok.name.p, m->u.reg_ok.name.len, n,
		    sizeof(n));
		client_send_unregister(c, n);
		px_unref(px);
		return;
	}
	snprintf(px->name, sizeof(px->name), "%.*s",
	    (int)m->u.reg_ok.name.len, (const char *)m->u.reg_ok.name.p);
	px->remote_port = m->u.reg_ok.remote_port;
	log_esc(m->u.reg_ok.url.p, m->u.reg_ok.url.len, url, sizeof(url));
	if (strcmp(url, px->url) != 0) {
		char *save = NULL, *one, copy[400];
		if (px->url[0])
			log_warn("proxy \"%s\" moved from %s to %s", px->name,
			    px->url, url);
		snprintf(px->url, sizeof(px->url), "%s", url);
		snprintf(copy, sizeof(copy), "%s", url);
		/* an HTTP tunnel may have several URLs (http and https) */
		for (one = strtok_r(copy, " ", &save); one != NULL;
		     one = strtok_r(NULL, " ", &save))
			if (c->hooks.forwarding)
				c->hooks.forwarding(c->hooks.arg, one,
				    px->spec.host, px->spec.port, px->name);
		if (px->spec.type == PROXY_HTTP ||
		    px->spec.type == PROXY_TLS) {
			const char *h = strstr(url, "://");
			size_t n = h ? strcspn(h + 3, ":/ ") : 0;
			if (h && n < sizeof(px->assigned_host)) {
				memcpy(px->assigned_host, h + 3, n);
				px->assigned_host[n] = '\0';
			}
		}
	} else {
		log_info("proxy \"%s\" back at %s", px->name, url);
	}
	px->registered = 1;
	px_unref(px);
	if (TAILQ_EMPTY(&c->regq)) {
		c->state = CL_READY;
		c->attempts = 0;
		c->ever_ready = 1;
	}
}

/* A tunnel leaves the table (a reload removed it, or the server refused
 * it on a reload): its public side is released at the server. */
static void
client_drop_tunnel(struct client *c, size_t i)
{
	struct cproxy *px = c->px[i];

	if (px->registered && c->state >= CL_REGISTERING)
		client_send_unregister(c, px->name);
	px->gone = 1;
	memmove(&c->px[i], &c->px[i + 1], (c->npx - i - 1) * sizeof(*c->px));
	c->npx--;
	px_unref(px);
}

static void
client_on_msg(struct mux_stream *st, const uint8_t *p, size_t len, void *arg)
{
	struct client *c = arg;
	struct ctrl_msg m;
	char e1[LOG_ESC_MAX], e2[LOG_ESC_MAX];
	int rc = ctrl_decode(p, len, &m);

	c->got_ctrl = 1;
	if (rc < 0 && !(rc == MG_EUNSUPP || rc == MG_ETOOLONG)) {
		log_warn("malformed control message from the server");
		mux_close(c->mux, MG_EPROTO);
		return;
	}
	switch (m.type) {
	case CTRL_CHALLENGE: {
		struct ctrl_msg r;
		if (c->state != CL_AUTH)
			break;
		memset(&r, 0, sizeof(r));
		r.type = CTRL_AUTH_PROOF;
		if (c->cf->token == NULL)
			break;
		ctrl_auth_mac((const uint8_t *)c->cf->token,
		    strlen(c->cf->token), c->client_nonce, m.u.server_nonce,
		    c->client_id, r.u.mac);
		client_send(c, &r);
		break;
	}
	case CTRL_AUTH_OK:
		client_on_auth_ok(c, &m);
		break;
	case CTRL_AUTH_ERR:
		client_say("authentication failed: %s (code %u)",
		    esc(&m.u.err.text, e1, sizeof(e1)), m.u.err.code);
		client_stop(c, 1);
		break;
	case CTRL_REGISTER_OK:
		client_on_register_ok(c, &m);
		break;
	case CTRL_REGISTER_ERR: {
		struct cproxy *px = client_regq_pop(c);

		client_say("cannot register %s: %s (code %u)",
		    m.u.reg_err.name.len ? esc(&m.u.reg_err.name, e2,
		    sizeof(e2)) : "proxy", esc(&m.u.reg_err.text, e1,
		    sizeof(e1)), m.u.reg_err.code);
		if (px != NULL && px->reloaded) {
			/* added by a reload: that tunnel is dropped, the
			 * others go on */
			for (size_t i = 0; i < c->npx; i++)
				if (c->px[i] == px) {
					client_drop_tunnel(c, i);
					break;
				}
			px_unref(px);
			if (TAILQ_EMPTY(&c->regq))
				c->state = CL_READY;
			break;
		}
		px_unref(px);
		client_stop(c, 1);
		break;
	}
	case CTRL_HEARTBEAT:
		break;
	case CTRL_GOODBYE:
		if (m.u.err.code == CODE_REPLACED) {
			client_say("replaced by a newer session of the same "
				   "client; exiting");
			client_stop(c, 1);
			break;
		}
		log_warn("server says goodbye (code %u): %s; will reconnect",
		    m.u.err.code, esc(&m.u.err.text, e1, sizeof(e1)));
		c->server_leaving = 1;
		break;
	case CTRL_ERROR:
		esc(&m.u.err.text, e1, sizeof(e1));
		log_error("server error (code %u): %s", m.u.err.code, e1);
		snprintf(c->last_err, sizeof(c->last_err), "server error: %.500s",
		    e1);
		break;
	default:
		log_warn("unexpected %s from the server",
		    ctrl_type_name(m.type));
		break;
	}
}

static const struct mux_stream_cbs ctrl_cbs = {
	.message = client_on_msg,
};

/* ---- finding out what listens at --server ---- */

/* After a plain session failed before the server said anything: is it a
 * TLS server, or an HTTP one? After a TLS handshake failed: a plain mgrok
 * server, or an HTTP one? */
static const enum probe_kind plan_plain[] = { PROBE_TLS, PROBE_HTTP,
	PROBE_SILENT };
static const enum probe_kind plan_tls[] = { PROBE_MGROK, PROBE_HTTP,
	PROBE_SILENT };

static void client_probe_next(struct client *c);

/* A finding that no retry mends: say it and stop, unless this run has
 * been registered before (then the server may come back as it was). */
static void
client_fail_config(struct client *c)
{
	if (!c->ever_ready) {
		client_say("%s", c->last_err);
		client_stop(c, 1);
		return;
	}
	log_warn("%s", c->last_err);
	client_schedule_retry(c);
}

static void
client_on_probe(enum probe_kind k, void *arg)
{
	struct client *c = arg;

	c->probe = NULL;
	switch (k) {
	case PROBE_TLS:
		if (c->tls)
			break; /* we spoke TLS to it: not the cause */
		snprintf(c->last_err, sizeof(c->last_err),
		    "--server %s:%u: the server speaks TLS: add --tls (with "
		    "--tls-ca CA.pem or --tls-pin sha256:..., which mgrok "
		    "certs printed)", c->server_host, c->server_port);
		client_fail_config(c);
		return;
	case PROBE_HTTP:
		snprintf(c->last_err, sizeof(c->last_err),
		    "--server %s:%u: this is an HTTP server, not the mgrok "
		    "control port: give the port of the server's --addr (9000 "
		    "by default)", c->server_host, c->server_port);
		client_fail_config(c);
		return;
	case PROBE_MGROK:
		if (!c->tls)
			break;
		snprintf(c->last_err, sizeof(c->last_err),
		    "TLS with %s:%u: the server does not speak TLS (it "
		    "answers as a plain mgrok server): drop --tls and the "
		    "--tls-* options, or run the server with --tls",
		    c->server_host, c->server_port);
		client_fail_config(c);
		return;
	default:
		break;
	}
	client_probe_next(c);
}

static void
client_probe_next(struct client *c)
{
	const uint8_t *req;
	size_t len;

	for (; *c->probe_plan != PROBE_SILENT; c->probe_plan++) {
		req = probe_request(*c->probe_plan, &len);
		c->probe = probe_start(c->base, c->server_ai, req, len,
		    PROBE_TIMEOUT_S, client_on_probe, c);
		if (c->probe != NULL) {
			c->probe_plan++;
			return;
		}
	}
	/* nothing conclusive: the reason we had stands; retry */
	log_warn("%s", c->last_err);
	client_schedule_retry(c);
}

static void
client_probe_start(struct client *c, const enum probe_kind *plan)
{
	c->probe_plan = plan;
	client_probe_next(c);
}

static void
client_mux_closed(struct mux *m, int err, void *arg)
{
	struct client *c = arg;
	char tls_why_buf[300];
	const char *tls_why_s = NULL;
	enum client_state was = c->state;

	if (mux_tls_error(m)) {
		snprintf(tls_why_buf, sizeof(tls_why_buf), "%s",
		    mux_tls_error(m));
		tls_why_s = tls_why_buf;
	}
	event_del(c->hb_ev);
	event_del(c->auth_ev);
	c->ctrl = NULL;
	mux_free(c->mux);
	c->mux = NULL;
	client_regq_clear(c);
	for (size_t i = 0; i < c->npx; i++)
		c->px[i]->registered = 0;
	if (c->stopping) {
		event_base_loopexit(c->base, NULL);
		return;
	}
	c->state = CL_IDLE;
	if (tls_why_s && tls_why_s[0] && was == CL_AUTH &&
	    (strstr(tls_why_s, "alert") || strstr(tls_why_s, "certificate"))) {
		/* TLS 1.3: a refused client certificate shows only now (a
		 * reset or a close is no verdict on it: see below) */
		client_say("TLS with %s:%u: %s", c->server_host, c->server_port,
		    tls_why_s);
		client_stop(c, 1);
		return;
	}
	if (c->last_err[0] == '\0' || was == CL_READY)
		snprintf(c->last_err, sizeof(c->last_err), "connection lost: %s",
		    err == MG_ETIMEDOUT ? "heartbeat timeout" :
		    err == MG_EPROTO ? "protocol error" :
		    err == MG_ECLOSED ? "closed by the server" :
					"I/O error");
	if (was == CL_AUTH && !c->got_ctrl && c->tls == NULL &&
	    (err == MG_EPROTO || err == MG_ECLOSED || err == MG_EIO)) {
		/* not one mgrok message came back: what is over there? */
		snprintf(c->last_err, sizeof(c->last_err), "--server %s:%u "
		    "%s before authenticating: is it an mgrok server's control "
		    "port (its --addr)? The server's log says why",
		    c->server_host, c->server_port, err == MG_EPROTO ?
		    "answered with bytes that are not mgrok's" :
		    "closed the connection");
		client_probe_start(c, plan_plain);
		return;
	}
	if (was == CL_AUTH && !c->got_ctrl && c->tls != NULL &&
	    (err == MG_EPROTO || err == MG_ECLOSED || err == MG_EIO)) {
		/* inside TLS a probe cannot tell more: an HTTPS server (a
		 * web server's port 443) is the likely other end */
		snprintf(c->last_err, sizeof(c->last_err), "--server %s:%u "
		    "%s after the TLS handshake, before authenticating: is it "
		    "an mgrok server's control port (its --addr), not an HTTPS "
		    "server? The server's log says why", c->server_host,
		    c->server_port, err == MG_EPROTO ? "answered with bytes "
		    "that are not mgrok's" : err == MG_EIO ? "reset the "
		    "connection" : "closed the connection");
	}
	log_warn("%s", c->last_err);
	client_schedule_retry(c);
}

static const struct mux_callbacks client_mux_cbs = {
	.accept = client_mux_accept,
	.closed = client_mux_closed,
};

static void
client_start_session(struct client *c, int fd, SSL *ssl)
{
	struct ctrl_hello h;
	uint8_t buf[512];
	int n;

	net_sock_tune(fd);
	c->sessions++;
	c->server_leaving = 0;
	c->got_ctrl = 0;
	c->last_err[0] = '\0';
	{
		struct timeval tv = { AUTH_TIMEOUT_S, 0 };
		event_add(c->auth_ev, &tv);
	}
	c->mux = mux_new_tls(c->base, fd, ssl, 1, &c->cf->mux,
	    &client_mux_cbs, c);
	c->ctrl = mux_stream_open(c->mux);
	mux_stream_set_cbs(c->ctrl, &ctrl_cbs, c);
	crypto_random(c->client_nonce, sizeof(c->client_nonce));
	memset(&h, 0, sizeof(h));
	if (c->cf->token == NULL) {
		/* a client certificate and no token: the MTLS method */
		h.method = CTRL_METHOD_MTLS;
		memcpy(h.client_id, c->client_id, CTRL_ID_LEN);
		n = ctrl_hello_encode(&h, buf, sizeof(buf));
		c->state = CL_AUTH;
		mux_stream_send_msg(c->ctrl, buf, (size_t)n);
		return;
	}
	h.method = CTRL_METHOD_HMAC;
	h.hmac_ver = 1;
	memcpy(h.client_nonce, c->client_nonce, CTRL_NONCE_LEN);
	memcpy(h.client_id, c->client_id, CTRL_ID_LEN);
	h.caps = CLIENT_CAPS;
	h.agent.p = (const uint8_t *)CLIENT_AGENT;
	h.agent.len = strlen(CLIENT_AGENT);
	n = ctrl_hello_encode(&h, buf, sizeof(buf));
	c->state = CL_AUTH;
	mux_stream_send_msg(c->ctrl, buf, (size_t)n);
}

static void
client_on_handshake(SSL *ssl, int err, const char *why, void *arg)
{
	struct client *c = arg;
	int fd = c->conn_fd;

	c->hs = NULL;
	c->hs_ssl = NULL;
	c->conn_fd = -1;
	if (err == 0) {
		client_start_session(c, fd, ssl);
		return;
	}
	snprintf(c->last_err, sizeof(c->last_err), "TLS with %s:%u: %s",
	    c->server_host, c->server_port, why);
	SSL_free(ssl);
	close(fd);
	if (err == MG_EAUTH) {
		/* a certificate problem does not mend itself by retrying */
		client_say("%s", c->last_err);
		client_stop(c, 1);
		return;
	}
	c->state = CL_IDLE;
	/* a plain mgrok server (or an HTTP one) fails a handshake too */
	client_probe_start(c, plan_tls);
}

static void
client_dial_failed(struct client *c, int err)
{
	snprintf(c->last_err, sizeof(c->last_err),
	    "cannot reach server %s:%u: %s", c->server_host, c->server_port,
	    strerror(err ? err : ECONNREFUSED));
	log_warn("%s", c->last_err);
	c->state = CL_IDLE;
	client_schedule_retry(c);
}

static void
client_on_dialed(int fd, int err, const struct sockaddr *sa, void *arg)
{
	struct client *c = arg;

	c->dial = NULL;
	if (fd < 0) {
		client_dial_failed(c, err);
		return;
	}
	if (c->tls) {
		SSL *ssl = tls_ssl_new(c->tls, fd);
		c->conn_fd = fd;
		if (ssl == NULL || (c->hs = tls_handshake_start(c->base, ssl, 0,
		    CONNECT_TIMEOUT_S, client_on_handshake, c)) == NULL) {
			client_say("cannot start TLS");
			if (ssl)
				SSL_free(ssl);
			client_stop(c, 1);
			return;
		}
		c->hs_ssl = ssl;
		return;
	}
	client_start_session(c, fd, NULL);
}

/* Resolve the server again and dial its addresses in turn. */
static void
client_connect(struct client *c)
{
	struct addrinfo hints;
	char port[8];
	int rc;

	c->state = CL_CONNECTING;
	if (c->server_ai)
		freeaddrinfo(c->server_ai);
	c->server_ai = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", c->server_port);
	log_debug("connecting to %s:%u", c->server_host, c->server_port);
	rc = getaddrinfo(c->server_host, port, &hints, &c->server_ai);
	if (rc != 0) {
		snprintf(c->last_err, sizeof(c->last_err),
		    "cannot resolve server %s: %s", c->server_host,
		    gai_strerror(rc));
		log_warn("%s", c->last_err);
		c->state = CL_IDLE;
		client_schedule_retry(c);
		return;
	}
	c->dial = dial_start(c->base, c->server_ai, SOCK_STREAM,
	    CONNECT_TIMEOUT_S, NULL, client_on_dialed, c);
	if (c->dial == NULL)
		client_dial_failed(c, errno);
}

static void
client_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	client_connect(c);
}

static void
client_schedule_retry(struct client *c)
{
	static const unsigned waits[] = { 1, 2, 4, 8, 16, 30 };
	const struct client_conf *cf = c->cf;
	struct timeval tv;
	uint32_t r = 0;
	double s;

	if (cf->no_reconnect) {
		client_say("%s (not reconnecting: --no-reconnect)",
		    c->last_err);
		client_stop(c, 1);
		return;
	}
	c->attempts++;
	if (cf->reconnect_attempts && c->attempts > cf->reconnect_attempts) {
		client_say("giving up after %u attempts: %s",
		    cf->reconnect_attempts, c->last_err);
		client_stop(c, 1);
		return;
	}
	s = waits[c->attempts - 1 < 5 ? c->attempts - 1 : 5];
	crypto_random(&r, sizeof(r));
	s *= 0.8 + 0.4 * (r / 4294967296.0); /* +-20 % jitter */
	tv.tv_sec = (time_t)s;
	tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
	log_info("reconnecting in %.1f s (attempt %u%s)", s, c->attempts,
	    cf->reconnect_attempts ? "" : ", no limit");
	evtimer_add(c->retry_ev, &tv);
}

static void
client_on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct ctrl_msg m = { .type = CTRL_HEARTBEAT };
	struct timeval tv = { c->heartbeat_s, 0 };

	if (c->ctrl)
		client_send(c, &m);
	evtimer_add(c->hb_ev, &tv);
}

static void
client_on_auth_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	if (c->mux == NULL || c->state != CL_AUTH)
		return;
	snprintf(c->last_err, sizeof(c->last_err), "--server %s:%u accepted "
	    "the connection but %s within %d s: is it an mgrok server's "
	    "control port (its --addr)?", c->server_host, c->server_port,
	    c->got_ctrl ? "did not finish authenticating" : "sent nothing",
	    AUTH_TIMEOUT_S);
	mux_close(c->mux, MG_ETIMEDOUT);
}

void
client_shutdown(struct client *c)
{
	if (c->stopping) {
		event_base_loopexit(c->base, NULL);
		return;
	}
	log_info("closing the session");
	if (c->ctrl) {
		struct ctrl_msg m;
		memset(&m, 0, sizeof(m));
		m.type = CTRL_GOODBYE;
		m.u.err.code = 0;
		m.u.err.text.p = (const uint8_t *)"client exiting";
		m.u.err.text.len = strlen("client exiting");
		client_send(c, &m);
	}
	client_stop(c, 0);
}

/* ---- life cycle ---- */

struct client *
client_new(struct event_base *base, const struct client_conf *cf,
    const struct client_hooks *hooks)
{
	struct client *c = xcalloc(1, sizeof(*c));
	const char *err;

	c->base = base;
	c->cf = cf;
	if (hooks)
		c->hooks = *hooks;
	c->conn_fd = -1;
	c->lock_fd = -1;
	TAILQ_INIT(&c->regq);
	c->started_ms = client_now_ms(c);
	if (net_split_hostport(cf->server, c->server_host,
	    sizeof(c->server_host), &c->server_port, &err)) {
		client_say("--server %s: %s", cf->server, err);
		goto fail;
	}
	if (cf->tls) {
		struct tls_client_opts to;
		char terr[512];
		memset(&to, 0, sizeof(to));
		to.ca = cf->tls_ca;
		to.cert = cf->tls_cert;
		to.key = cf->tls_key;
		to.server_name = cf->tls_server_name ? cf->tls_server_name :
		    c->server_host;
		to.pin = cf->tls_pin;
		if (tls_client_ctx_new(&to, &c->tls, terr, sizeof(terr)) < 0) {
			client_say("TLS: %s", terr);
			goto fail;
		}
	}
	if (cf->have_client_id) {
		/* an explicit id keeps PROTOCOL 4.6: a newer session with it
		 * replaces an older one, so no lock */
		memcpy(c->client_id, cf->client_id, CTRL_ID_LEN);
	} else {
		char why[4400];
		long pid;
		int rc = agentid_acquire(cf, c->client_id, &c->lock_fd, &pid,
		    why, sizeof(why));

		if (rc == MG_EINUSE) {
			char ps[32] = "unknown";
			if (pid > 0)
				snprintf(ps, sizeof(ps), "%ld", pid);
			client_say("another mgrok agent with the same tunnels and "
			    "server is running (pid %s): stop it first, or give "
			    "this one its own identity with --client-id HEX "
			    "(lock: %s)", ps, why);
			goto fail;
		}
		if (rc != 0)
			log_warn("cannot keep this agent's identity (%s): its "
			    "public addresses will not survive a restart", why);
	}
	c->npx = cf->nlocals;
	c->px = xcalloc(c->npx ? c->npx : 1, sizeof(*c->px));
	for (size_t i = 0; i < cf->nlocals; i++)
		if ((c->px[i] = px_new(&cf->locals[i])) == NULL) {
			c->npx = i;
			goto fail;
		}
	LIST_INIT(&c->flows);
	{
		unsigned ms = cf->udp_idle_s * 1000 / 4;
		struct timeval tv;
		ms = ms < 250 ? 250 : ms > 5000 ? 5000 : ms;
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		c->sweep_ev = event_new(base, -1, EV_PERSIST, client_on_sweep,
		    c);
		event_add(c->sweep_ev, &tv);
	}
	c->retry_ev = evtimer_new(base, client_on_retry, c);
	c->hb_ev = evtimer_new(base, client_on_heartbeat, c);
	c->auth_ev = evtimer_new(base, client_on_auth_timeout, c);
	client_connect(c);
	return c;
fail:
	client_free(c);
	return NULL;
}

int
client_exit_code(const struct client *c)
{
	return c->exit_code;
}

uint64_t
client_uptime_ms(const struct client *c)
{
	return client_now_ms((struct client *)c) - c->started_ms;
}

uint64_t
client_sessions(const struct client *c)
{
	return c->sessions;
}

size_t
client_ntunnels(const struct client *c)
{
	return c->npx;
}

void
client_tunnel_stats(const struct client *c, size_t i,
    struct client_tunnel_stats *out)
{
	const struct cproxy *px = c->px[i];

	memset(out, 0, sizeof(*out));
	out->type = px->spec.type;
	out->url = px->url;
	out->name = px->name;
	out->local_host = px->spec.host;
	out->local_port = px->spec.port;
	out->streams = px->streams_total;
	out->refused = px->refused;
	out->active = px->active;
	out->bytes_in = px->bytes_in;
	out->bytes_out = px->bytes_out;
	out->dg = px->dg;
	out->http = px->hs;
	if (px->spec.type == PROXY_HTTP) {
		out->bytes_in = px->hs.bytes_in;
		out->bytes_out = px->hs.bytes_out;
		out->active = px->hs.active;
	} else if (px->spec.type == PROXY_UDP) {
		out->bytes_in = px->dg.bytes_in;
		out->bytes_out = px->dg.bytes_out;
	}
}

void
client_free(struct client *c)
{
	if (c == NULL)
		return;
	if (c->mux) {
		c->stopping = 1;
		mux_free(c->mux);
	}
	if (c->hs) {
		tls_handshake_cancel(c->hs);
		SSL_free(c->hs_ssl);
	}
	tls_ctx_free(c->tls);
	dial_cancel(c->dial);
	if (c->conn_fd >= 0)
		close(c->conn_fd);
	if (c->retry_ev)
		event_free(c->retry_ev);
	if (c->sweep_ev)
		event_free(c->sweep_ev);
	free(c->udp_buf);
	if (c->hb_ev)
		event_free(c->hb_ev);
	if (c->auth_ev)
		event_free(c->auth_ev);
	probe_cancel(c->probe);
	if (c->lock_fd >= 0)
		close(c->lock_fd); /* releases the agent's lock */
	if (c->server_ai)
		freeaddrinfo(c->server_ai);
	client_regq_clear(c);
	for (size_t i = 0; c->px && i < c->npx; i++)
		px_unref(c->px[i]);
	free(c->px);
	free(c);
}

static int
spec_same(const struct local_spec *a, const struct local_spec *b)
{
	return a->type == b->type && a->port == b->port &&
	    a->remote_port == b->remote_port &&
	    a->host_rewrite == b->host_rewrite &&
	    strcmp(a->host, b->host) == 0 && strcmp(a->name, b->name) == 0 &&
	    strcmp(a->subdomain, b->subdomain) == 0 &&
	    strcmp(a->hostname, b->hostname) == 0 &&
	    strcmp(a->basic_auth, b->basic_auth) == 0;
}

static int
opt_differs(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") != 0;
}

#define SWAP(a, b)                                                             \
	do {                                                                   \
		__typeof__(a) t_ = (a);                                        \
		(a) = (b);                                                     \
		(b) = t_;                                                      \
	} while (0)

int
client_apply(struct client *c, struct client_conf *ncf, char *err,
    size_t errcap)
{
	struct client_conf *ocf = (struct client_conf *)c->cf;
	struct cproxy **table, **fresh;
	unsigned added = 0, removed = 0, changed = 0, same = 0;
	char restart[256] = "";
	int *kept, *isnew;

	c->reloads++;
	c->reload_time = (long long)time(NULL);

	/* the connection's own settings stay as they are until a restart:
	 * the new configuration takes the running values, and the caller
	 * frees the unused ones with the old configuration */
	if (strcmp(ncf->server, ocf->server) != 0 ||
	    opt_differs(ncf->token, ocf->token) || ncf->tls != ocf->tls ||
	    opt_differs(ncf->tls_ca, ocf->tls_ca) ||
	    opt_differs(ncf->tls_cert, ocf->tls_cert) ||
	    opt_differs(ncf->tls_key, ocf->tls_key) ||
	    opt_differs(ncf->tls_server_name, ocf->tls_server_name) ||
	    opt_differs(ncf->tls_pin, ocf->tls_pin) ||
	    ncf->have_client_id != ocf->have_client_id ||
	    memcmp(ncf->client_id, ocf->client_id, sizeof(ncf->client_id)))
		snprintf(restart, sizeof(restart), "; the server, token, TLS "
		    "and identity settings need a restart (the running ones "
		    "stay)");
	if (ncf->busy_poll_us != ocf->busy_poll_us) {
		size_t l = strlen(restart);
		snprintf(restart + l, sizeof(restart) - l, "; --busy-poll "
		    "needs a restart");
	}

	/* the new table: unchanged tunnels carry over (their address, their
	 * connections), the rest is made anew */
	fresh = xcalloc(ncf->nlocals ? ncf->nlocals : 1, sizeof(*fresh));
	isnew = xcalloc(ncf->nlocals ? ncf->nlocals : 1, sizeof(*isnew));
	kept = xcalloc(c->npx ? c->npx : 1, sizeof(*kept));
	for (size_t i = 0; i < ncf->nlocals; i++) {
		for (size_t j = 0; j < c->npx; j++)
			if (!kept[j] && spec_same(&c->px[j]->spec,
			    &ncf->locals[i])) {
				kept[j] = 1;
				fresh[i] = c->px[j];
				same++;
				break;
			}
		if (fresh[i] != NULL)
			continue;
		if ((fresh[i] = px_new(&ncf->locals[i])) == NULL) {
			snprintf(err, errcap, "cannot resolve the local address "
			    "of tunnel %zu (%s)", i + 1, ncf->locals[i].host);
			for (size_t k = 0; k < i; k++)
				if (isnew[k])
					px_unref(fresh[k]);
			free(fresh);
			free(isnew);
			free(kept);
			client_reload_failed(c, err);
			return MG_EINVAL; /* nothing changed */
		}
		isnew[i] = 1;
		fresh[i]->reloaded = 1; /* new: a refusal drops only it */
		added++;
	}
	/* nothing can fail from here on: the connection settings stay */
	memcpy(ncf->server, ocf->server, sizeof(ncf->server));
	SWAP(ncf->token, ocf->token);
	ncf->tls = ocf->tls;
	SWAP(ncf->tls_ca, ocf->tls_ca);
	SWAP(ncf->tls_cert, ocf->tls_cert);
	SWAP(ncf->tls_key, ocf->tls_key);
	SWAP(ncf->tls_server_name, ocf->tls_server_name);
	SWAP(ncf->tls_pin, ocf->tls_pin);
	ncf->have_client_id = ocf->have_client_id;
	memcpy(ncf->client_id, ocf->client_id, sizeof(ncf->client_id));
	/* what leaves the table is unregistered; a tunnel whose name stays
	 * but whose settings changed counts as changed */
	for (size_t j = 0; j < c->npx; j++) {
		struct cproxy *px = c->px[j];
		int renamed = 0;
		if (kept[j])
			continue;
		for (size_t i = 0; i < ncf->nlocals; i++)
			if (px->spec.name[0] &&
			    strcmp(px->spec.name, ncf->locals[i].name) == 0)
				renamed = 1;
		if (renamed) {
			changed++;
			added--; /* counted as new above */
		} else {
			removed++;
		}
		log_info("reload: tunnel \"%s\" %s", px->name, renamed ?
		    "changed: registered anew" : "removed");
		if (px->registered && c->state >= CL_REGISTERING)
			client_send_unregister(c, px->name);
		px->gone = 1;
		px_unref(px);
	}
	table = c->px;
	c->px = fresh;
	c->npx = ncf->nlocals;
	free(table);
	free(isnew);
	free(kept);
	c->cf = ncf;
	log_set_level(ncf->log_level);
	/* the new ones are registered now if the session is up, else with
	 * the others when it is */
	for (size_t i = 0; i < c->npx; i++)
		if (c->px[i]->reloaded && !c->px[i]->waiting &&
		    !c->px[i]->registered &&
		    (c->state == CL_READY || c->state == CL_REGISTERING))
			client_register_one(c, c->px[i]);
	log_info("reload: tunnels %u added, %u removed, %u changed, %u "
		 "unchanged%s",
	    added, removed, changed, same, restart);
	c->reload_ok = 1;
	c->reload_err[0] = '\0';
	return 0;
}

void
client_reload_failed(struct client *c, const char *why)
{
	c->reload_failures++;
	c->reload_ok = 0;
	snprintf(c->reload_err, sizeof(c->reload_err), "%s", why);
}

void
client_reload_status(const struct client *c,
    struct client_reload_status *st)
{
	st->reloads = c->reloads;
	st->failures = c->reload_failures;
	st->last_time = c->reload_time;
	st->last_ok = c->reload_ok;
	snprintf(st->last_err, sizeof(st->last_err), "%s", c->reload_err);
}
