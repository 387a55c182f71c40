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
#include <arpa/inet.h>
#include <event2/http.h>
#include <openssl/ssl.h>

#include "client/agentid.h"
#include "client/client.h"
#include "client/health.h"
#include "client/inspect.h"
#include "client/probe.h"
#include "conf/conf.h"
#include "http/http.h"
#include "metrics/events.h"
#include "metrics/jtext.h"
#include "metrics/metrics.h"
#include "mux/mux.h"
#include "proto/ctrl.h"
#include "proto/proxyproto.h"
#include "proto/sthdr.h"
#include "relay/dgram.h"
#include "relay/dial.h"
#include "relay/proxydial.h"
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
#include "web/web.h"

#define CLIENT_AGENT "mgrok/0.1.0"
#define CLIENT_CAPS \
	(CTRL_CAP_STREAM_EX | CTRL_CAP_UDP_FLOWS | CTRL_CAP_LEASES | \
	CTRL_CAP_HASHED_SECRET | CTRL_CAP_STREAM_META | CTRL_CAP_HEALTH | \
	CTRL_CAP_CLUSTER)
#define CONNECT_TIMEOUT_S 10
#define CF_SCRATCH (256 * 1024) /* at least DGRAM_MAX */
#define DIAL_TIMEOUT_S 10
#define AUTH_TIMEOUT_S 10 /* a listener that accepts and says nothing */
#define PROBE_TIMEOUT_S 3
#define EVENTS_KEEP 1000
#define INSPECT_PORT_LAST 4049 /* the default port falls back up to this */

/* The methods of mgrok_tunnel_http_requests_total; the rest are OTHER. */
static const char *const http_methods[] = { "GET", "HEAD", "POST", "PUT",
	"DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER" };
#define NMETHODS (sizeof(http_methods) / sizeof(http_methods[0]))
static const char *const http_classes[] = { "other", "1xx", "2xx", "3xx",
	"4xx", "5xx" };

/* The agent's families (docs/api.md: the same names as the server's
 * where they mean the same thing). */
struct client_fams {
	struct met_family *bytes, *conns, *active, *refused, *http_req,
	    *http_dur, *udp_dg, *udp_drops, *sessions, *session_up,
	    *reloads, *health, *health_checks;
};

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
	/* its series (labelled with label, the name they were made with):
	 * held until the tunnel is freed */
	const struct client_fams *fam;
	char label[CTRL_NAME_MAX + 1];
	struct met_series *m_in, *m_out, *m_conns, *m_active, *m_dur;
	struct met_series *m_dg_in, *m_dg_out;
	struct met_series *m_drop_in_send, *m_drop_in_unreach, *m_drop_out;
	struct met_series *m_req[NMETHODS][6]; /* made on first use */
	uint64_t lat_min_us, lat_max_us;
	const char *reg_err;          /* "refused" status: why */
	char reg_err_buf[300];
	char host_rw[300];            /* --host-header rewrite: localhost:P */
	char assigned_host[256];      /* HTTP/TLS: the host we were given */
	char old_name[CTRL_NAME_MAX + 1]; /* its name at a server going
					 away, until unregistered there */
	unsigned learnt_at;           /* 1 + the index of the server that
					 gave name, remote_port and
					 assigned_host; 0: none yet */
	int learnt_cluster;           /* that server shares state with the
					 others (CTRL_CAP_CLUSTER) */
	int moved;                    /* registering at another server than
					 the one that gave them */
	int carried;                  /* and asking for them there (both
					 servers share state) */
	/* its health check (spec.health; NULL: none or stopped) and its
	 * series: the state (1 up, 0 down, -1 unknown) and the results */
	struct client *c;
	struct health *hc;
	int health_sent;              /* the last state sent, or unknown */
	struct met_series *m_health, *m_hc_ok, *m_hc_fail;
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
	uint8_t *pp;  /* --proxy-protocol v2: the header of each datagram */
	size_t pp_len;
	uint64_t last_ms;
	uint64_t bytes_in, bytes_out; /* payload, for its record */
	struct inspect_conn *ic;
	const char *end_reason;       /* how it ended, for its record */
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
	/* reaching the server through a proxy (--proxy, HTTPS_PROXY, ...) */
	int use_proxy;
	struct proxy_url proxy;
	struct pxdial *pxdial;
	int conn_fd;          /* during the TLS handshake */
	enum client_state state;
	struct cproxy **px;   /* the table: the tunnels of the configuration */
	long long reload_time;
	int reload_ok;
	char reload_err[512];
	size_t npx;
	/* registrations sent, in order: the server answers each in order */
	TAILQ_HEAD(, cproxy) regq;
	uint8_t client_id[CTRL_ID_LEN];
	uint8_t client_nonce[CTRL_NONCE_LEN];
	uint32_t caps;        /* the session's, from AuthOK */
	unsigned attempts;
	unsigned heartbeat_s;
	int stopping;
	int exit_code;
	int server_leaving;   /* Goodbye code 8 received */
	/* the session of a server going away (Goodbye code 8), kept while
	 * its streams end: make-before-break (client_leave_server) */
	struct event *rereg_ev;       /* registrations to try again */
	struct mux *old_mux;
	struct mux_stream *old_ctrl;
	struct event *old_ev;
	uint64_t old_deadline_ms;
	int old_unregistered;
	char last_err[600];
	char server_host[256];  /* the server tried now: servers[server_idx] */
	uint16_t server_port;
	/* --server a,b,...: tried in turn; round_left counts the servers
	 * still to try at once before a back-off */
	char servers[CONF_MAX_SERVERS][300];
	unsigned nservers, server_idx, round_left;
	uint64_t started_ms, sessions;
	struct cflow_list flows;
	struct event *sweep_ev;
	struct tls_ctx *tls;
	struct tls_hs *hs;
	SSL *hs_ssl;
	uint8_t *udp_buf;
	/* figures, events and the inspector */
	struct metrics *metrics;
	struct evfeed *feed;
	struct client_fams fam;
	struct met_series *m_sessions, *m_up, *m_reload_ok, *m_reload_failed;
	struct met_series *m_ref_unreach, *m_ref_notunnel, *m_ref_header;
	struct inspect *ins;
	struct web *web;
	int session_up;       /* session_connected emitted, not yet lost */
};

/* A data stream between its SYN and the local connection. */
struct cstream {
	struct client *c;
	struct mux_stream *st;
	struct cproxy *px;
	struct dial *dial;
	char remote[NET_ADDRSTR_MAX]; /* the visitor, "" when not told */
	struct sockaddr_storage peer; /* the same (family 0 when not told) */
	uint8_t *meta;                /* NewStreamEx2's TLVs, for PROXY v2 */
	size_t meta_len;
};

/* A TCP or TLS connection being relayed: its tunnel and its record. */
struct cconn {
	struct cproxy *px;
	struct inspect_conn *ic;
};

static void client_connect(struct client *c);
static void client_leave_server(struct client *c);
static void client_old_gone(struct client *c);
static void client_break_old(struct client *c);
static int client_send_on(struct mux_stream *ctrl, const struct ctrl_msg *m);
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
	if (c->old_mux) /* a server being left: its streams end now too */
		mux_close(c->old_mux, MG_ECLOSED); /* client_old_gone */
	if (c->mux)
		mux_close(c->mux, MG_ECLOSED); /* closed cb ends the loop */
	else
		event_base_loopexit(c->base, NULL);
}

/* a control message on ctrl (NULL: dropped) */
static int
client_send_on(struct mux_stream *ctrl, const struct ctrl_msg *m)
{
	uint8_t buf[1024];
	int n = ctrl_encode(m, buf, sizeof(buf));

	if (n < 0 || ctrl == NULL)
		return n < 0 ? n : MG_ECLOSED;
	return mux_stream_send_msg(ctrl, buf, (size_t)n);
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

/* ---- events ---- */

static const char *
px_type_name(uint8_t type)
{
	switch (type) {
	case PROXY_TCP:
		return "tcp";
	case PROXY_UDP:
		return "udp";
	case PROXY_HTTP:
		return "http";
	case PROXY_TLS:
		return "tls";
	default:
		return "unknown";
	}
}

static void
client_emit(struct client *c, const char *type, json_t *data)
{
	if (data != NULL)
		evfeed_emit(c->feed, type, data);
}

static void
client_emit_tunnel_down(struct client *c, const char *name, uint8_t type,
    const char *reason)
{
	client_emit(c, "tunnel_down", json_pack("{sosossss}", "tunnel",
	    jtext(name), "name", jtext(name), "tunnel_type",
	    px_type_name(type),
	    "reason", reason));
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

/* Let go of the tunnel's series (they leave the exposition with their
 * last holder: a relay may still count into them). */
static void
px_series_release(struct cproxy *px)
{
	struct met_series **all[] = { &px->m_in, &px->m_out, &px->m_conns,
		&px->m_active, &px->m_dur, &px->m_dg_in, &px->m_dg_out,
		&px->m_drop_in_send, &px->m_drop_in_unreach, &px->m_drop_out,
		&px->m_health, &px->m_hc_ok, &px->m_hc_fail };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		met_release(*all[i]);
		*all[i] = NULL;
	}
	for (size_t i = 0; i < NMETHODS; i++)
		for (size_t k = 0; k < 6; k++) {
			met_release(px->m_req[i][k]);
			px->m_req[i][k] = NULL;
		}
}

/* Hold the tunnel's series under its current name. */
static void
px_series_bind(struct cproxy *px)
{
	const struct client_fams *f = px->fam;
	const char *n = px->name;
	/* connections open under the old name end under the new one: the
	 * gauge carries them over */
	int64_t active = met_gauge_value(px->m_active);
	/* and the checks counted before the server named the tunnel */
	uint64_t hc_ok = met_value(px->m_hc_ok);
	uint64_t hc_fail = met_value(px->m_hc_fail);

	px_series_release(px);
	snprintf(px->label, sizeof(px->label), "%s", n);
	px->m_in = met_hold2(f->bytes, n, "in");
	px->m_out = met_hold2(f->bytes, n, "out");
	px->m_conns = met_hold1(f->conns, n);
	px->m_active = met_hold1(f->active, n);
	met_gauge_add(px->m_active, active);
	if (px->spec.type == PROXY_HTTP)
		px->m_dur = met_hold1(f->http_dur, n);
	if (px->spec.type == PROXY_UDP) {
		const char *v[3] = { n, "in", "send_failed" };
		px->m_dg_in = met_hold2(f->udp_dg, n, "in");
		px->m_dg_out = met_hold2(f->udp_dg, n, "out");
		px->m_drop_in_send = met_hold(f->udp_drops, v);
		v[2] = "unreachable";
		px->m_drop_in_unreach = met_hold(f->udp_drops, v);
		v[1] = "out";
		v[2] = "stream_full";
		px->m_drop_out = met_hold(f->udp_drops, v);
	}
	if (px->spec.health.type != HEALTH_OFF) {
		px->m_health = met_hold1(f->health, n);
		met_set(px->m_health, px->hc ? health_state(px->hc) :
		    HEALTH_UNKNOWN);
		px->m_hc_ok = met_hold2(f->health_checks, n, "ok");
		px->m_hc_fail = met_hold2(f->health_checks, n, "fail");
		met_add(px->m_hc_ok, hc_ok);
		met_add(px->m_hc_fail, hc_fail);
	}
}

static void
px_unref(struct cproxy *px)
{
	if (px == NULL || --px->refs > 0)
		return;
	health_free(px->hc);
	px_series_release(px);
	if (px->ai)
		freeaddrinfo(px->ai);
	free(px);
}

/* An HTTP relay ended. */
static void
px_hrelay_done(void *arg)
{
	struct cproxy *px = arg;

	met_gauge_add(px->m_active, -1);
	px_unref(px);
}

/* One answered request of an HTTP tunnel (hrelay's request callback). */
static void
px_http_request(void *arg, const char *method, int status,
    uint64_t latency_us)
{
	struct cproxy *px = arg;
	size_t m = NMETHODS - 1, k = status >= 100 && status < 600 ?
	    (size_t)status / 100 : 0;

	for (size_t i = 0; i + 1 < NMETHODS; i++)
		if (strcmp(method, http_methods[i]) == 0) {
			m = i;
			break;
		}
	if (px->m_req[m][k] == NULL) {
		const char *v[3] = { px->label, http_methods[m],
			http_classes[k] };
		px->m_req[m][k] = met_hold(px->fam->http_req, v);
	}
	met_inc(px->m_req[m][k]);
	met_observe(px->m_dur, (double)latency_us / 1e6);
	if (px->lat_min_us == 0 || latency_us < px->lat_min_us)
		px->lat_min_us = latency_us;
	if (latency_us > px->lat_max_us)
		px->lat_max_us = latency_us;
}

/* The figures of the summary and the API, from the series. */
static void
px_http_stats(const struct cproxy *px, struct http_cstats *hs)
{
	memset(hs, 0, sizeof(*hs));
	for (size_t i = 0; i < NMETHODS; i++)
		for (size_t k = 0; k < 6; k++)
			if (px->m_req[i][k]) {
				uint64_t n = met_value(px->m_req[i][k]);
				hs->requests += n;
				hs->by_class[k] += n;
			}
	if (px->m_dur)
		hs->lat_sum_us = (uint64_t)(met_hist_sum(px->m_dur) * 1e6);
	hs->lat_min_us = px->lat_min_us;
	hs->lat_max_us = px->lat_max_us;
}

/* ---- health checks (client/health.h) ---- */

/* Tell the server the tunnel's health (HealthReport, capability 5):
 * only a known state, only on a session that agreed to it, only for a
 * registered tunnel (the server forgets it with the session). */
static void
px_health_send(struct client *c, struct cproxy *px, int st, const char *why)
{
	struct ctrl_msg m;
	size_t wl;

	if (!px->registered || c->ctrl == NULL ||
	    !(c->caps & CTRL_CAP_HEALTH) || st == HEALTH_UNKNOWN)
		return;
	why = st == HEALTH_DOWN ? why : "";
	wl = strlen(why);
	if (wl > CTRL_HEALTH_REASON_MAX) {
		/* cut at a character's start, not inside a UTF-8 one */
		wl = CTRL_HEALTH_REASON_MAX;
		while (wl > 0 && ((unsigned char)why[wl] & 0xC0) == 0x80)
			wl--;
	}
	memset(&m, 0, sizeof(m));
	m.type = CTRL_HEALTH_REPORT;
	m.u.health.state = st == HEALTH_UP;
	m.u.health.name.p = (const uint8_t *)px->name;
	m.u.health.name.len = strlen(px->name);
	m.u.health.reason.p = (const uint8_t *)why;
	m.u.health.reason.len = wl;
	if (client_send(c, &m) < 0)
		log_debug("tunnel \"%s\": health report not sent", px->name);
	else
		px->health_sent = st;
}

static void
px_health_report(struct client *c, struct cproxy *px)
{
	if (px->hc != NULL)
		px_health_send(c, px, health_state(px->hc),
		    health_reason(px->hc));
}

static void
px_health_result(void *arg, int ok, const char *reason)
{
	struct cproxy *px = arg;

	met_inc(ok ? px->m_hc_ok : px->m_hc_fail);
	if (!ok)
		log_debug("tunnel \"%s\": health check failed: %s", px->name,
		    reason);
}

static void
px_health_change(void *arg, int state, const char *reason, unsigned streak)
{
	struct cproxy *px = arg;
	struct client *c = px->c;
	char n[LOG_ESC_MAX];

	log_esc(px->name, strlen(px->name), n, sizeof(n));
	if (state == HEALTH_DOWN)
		log_warn("tunnel %s: health down (%s, %u in a row)", n, reason,
		    streak);
	else
		log_info("tunnel %s: health up (%u in a row)", n, streak);
	met_set(px->m_health, state);
	client_emit(c, "tunnel_health", json_pack("{sossso}", "tunnel",
	    jtext(px->name), "state", health_state_name(state), "reason",
	    jtext(state == HEALTH_DOWN ? reason : "")));
	px_health_report(c, px);
}

/* Start the tunnel's check, if it has one (a failure is logged: the
 * tunnel runs unchecked, which the server takes as up). */
static void
px_health_start(struct cproxy *px)
{
	struct health_target t;
	struct health_cbs cbs = { px_health_result, px_health_change };
	char err[300];

	if (px->spec.health.type == HEALTH_OFF || px->hc != NULL)
		return;
	memset(&t, 0, sizeof(t));
	t.ai = px->ai;
	t.host = px->spec.host;
	t.port = px->spec.port;
	t.sni = px->spec.hostname[0] ? px->spec.hostname : NULL;
	px->hc = health_new(px->c->base, &px->spec.health, &t, &cbs, px, err,
	    sizeof(err));
	if (px->hc == NULL)
		log_warn("tunnel \"%s\": no health check: %s", px->name, err);
	met_set(px->m_health, HEALTH_UNKNOWN);
}

/* Stop it (the tunnel leaves the table, or its check changes). */
static void
px_health_stop(struct cproxy *px)
{
	health_free(px->hc);
	px->hc = NULL;
}

static int
health_spec_same(const struct health_spec *a, const struct health_spec *b)
{
	return a->type == b->type && strcmp(a->path, b->path) == 0 &&
	    strcmp(a->expect, b->expect) == 0 &&
	    a->interval_ms == b->interval_ms &&
	    a->timeout_ms == b->timeout_ms && a->rise == b->rise &&
	    a->fall == b->fall;
}

/* A reload changed a kept tunnel's check: the new one starts from
 * unknown; a tunnel whose check went away is up for the server again. */
static void
px_health_reconf(struct client *c, struct cproxy *px,
    const struct health_spec *h)
{
	if (health_spec_same(&px->spec.health, h))
		return;
	px_health_stop(px);
	px->spec.health = *h;
	px_series_bind(px);
	/* the server still holds what it was told last */
	if (h->type == HEALTH_OFF && px->health_sent == HEALTH_DOWN)
		px_health_send(c, px, HEALTH_UP, "");
	px_health_start(px);
	log_info("reload: tunnel \"%s\": health check %s", px->name,
	    h->type == HEALTH_OFF ? "removed" : "changed");
}

/* A tunnel for spec, its local address resolved; NULL after saying why. */
static struct cproxy *
px_new(struct client *c, const struct local_spec *spec)
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
	px->fam = &c->fam;
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
	px->c = c;
	px->health_sent = HEALTH_UNKNOWN;
	px_series_bind(px);
	px_health_start(px);
	return px;
}

static void
cs_free(struct cstream *cs)
{
	dial_cancel(cs->dial);
	px_unref(cs->px);
	free(cs->meta);
	free(cs);
}

static void
cs_reject(struct cstream *cs, uint8_t code, const char *why,
    struct met_series *reason)
{
	struct client *c = cs->c;
	struct ctrl_msg m;

	memset(&m, 0, sizeof(m));
	m.type = CTRL_STREAM_REJECT;
	m.u.reject.stream_id = mux_stream_id(cs->st);
	m.u.reject.code = code;
	m.u.reject.text.p = (const uint8_t *)why;
	m.u.reject.text.len = strlen(why);
	if (c->old_mux != NULL && mux_stream_session(cs->st) == c->old_mux)
		client_send_on(c->old_ctrl, &m);
	else
		client_send(c, &m);
	met_inc(reason);
	mux_stream_free(cs->st);
	cs_free(cs);
}

static void
cs_relay_end(void *arg, uint64_t from_sock, uint64_t to_sock,
    enum relay_end why)
{
	struct cconn *cc = arg;

	met_gauge_add(cc->px->m_active, -1);
	if (cc->ic)
		inspect_conn_close(cc->ic, to_sock, from_sock,
		    relay_end_name(why));
	px_unref(cc->px);
	free(cc);
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
	cs_reject(cs, CODE_UNREACHABLE, why, cs->c->m_ref_unreach);
}

/*
 * The destination of a PROXY protocol header: the tunnel's public address
 * when its URL names one by IP, else fd's peer (the local service).
 */
static void
px_pp_dst(const struct cproxy *px, int fd, struct sockaddr_storage *dst)
{
	socklen_t dl = sizeof(*dst);
	char host[256];
	const char *h0, *h1;

	memset(dst, 0, sizeof(*dst));
	/* the public side: tcp://HOST:PORT or tls://HOST... */
	if ((h0 = strstr(px->url, "://")) != NULL) {
		h0 += 3;
		h1 = h0 + strcspn(h0, ":/ ");
		if (*h0 == '[') {
			h0++;
			h1 = strchr(h0, ']') ? strchr(h0, ']') : h0;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(h1 - h0), h0);
		if (inet_pton(AF_INET, host, &((struct sockaddr_in *)(void *)
		    dst)->sin_addr) == 1) {
			((struct sockaddr_in *)(void *)dst)->sin_family =
			    AF_INET;
			((struct sockaddr_in *)(void *)dst)->sin_port =
			    htons(px->remote_port);
		} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)
		    (void *)dst)->sin6_addr) == 1) {
			((struct sockaddr_in6 *)(void *)dst)->sin6_family =
			    AF_INET6;
			((struct sockaddr_in6 *)(void *)dst)->sin6_port =
			    htons(px->remote_port);
		}
	}
	if (dst->ss_family == 0 && getpeername(fd, (struct sockaddr *)dst,
	    &dl) < 0)
		memset(dst, 0, sizeof(*dst));
}

#define PP_TLVS_MAX 16

/*
 * The TLVs of a PROXY v2 header: those of the server's metadata
 * (NewStreamEx2) of the types the agent passes on (ALPN, AUTHORITY,
 * UNIQUE_ID within its cap, SSL, mgrok's 0xE0-0xEF; a server's other
 * types are dropped, so nothing the local service would misread gets
 * through), then uid as UNIQUE_ID if the server sent none. The values
 * point into meta and uid. Returns how many, at most PP_TLVS_MAX.
 */
static size_t
pp_tlvs(const uint8_t *meta, size_t mlen, const char *uid,
    struct proxyproto_tlv *t)
{
	size_t n = 0, off = 0, vl;
	const uint8_t *v;
	uint8_t ty;
	int has_uid = 0;

	while (n < PP_TLVS_MAX - 1 &&
	    sthdr_meta_next(meta, mlen, &off, &ty, &v, &vl) > 0) {
		if (ty != PP2_TYPE_ALPN && ty != PP2_TYPE_AUTHORITY &&
		    ty != PP2_TYPE_UNIQUE_ID && ty != PP2_TYPE_SSL &&
		    (ty < 0xE0 || ty > 0xEF))
			continue;
		if (ty == PP2_TYPE_UNIQUE_ID && (vl > PP2_UNIQUE_ID_MAX ||
		    has_uid))
			continue;
		has_uid |= ty == PP2_TYPE_UNIQUE_ID;
		t[n].type = ty;
		t[n].value = v;
		t[n++].len = (uint16_t)vl;
	}
	if (!has_uid) {
		t[n].type = PP2_TYPE_UNIQUE_ID;
		t[n].value = uid;
		t[n++].len = (uint16_t)strlen(uid);
	}
	return n;
}

/*
 * The PROXY protocol header (--proxy-protocol) for a visitor from peer,
 * written to the local service before any of the visitor's bytes (its
 * destination: px_pp_dst). v2 carries the server's metadata (pp_tlvs)
 * and a unique id of the connection (the server's, or the session's and
 * the stream's numbers). The socket was just connected, so its send
 * buffer takes these few bytes whole; anything else ends the stream as
 * refused. 0, or -1.
 */
static int
cs_write_proxy_header(struct cstream *cs, int fd)
{
	struct sockaddr_storage dst;
	uint8_t hdr[PROXYPROTO_V2_FIXED + 36 + STHDR_META_MAX + 64];
	struct proxyproto_tlv t[PP_TLVS_MAX];
	char uid[40];
	size_t nt;
	int n = -1;

	px_pp_dst(cs->px, fd, &dst);
	if (cs->px->spec.proxy_protocol == 1) {
		n = proxyproto_v1(cs->peer.ss_family ?
		    (struct sockaddr *)&cs->peer : NULL,
		    (struct sockaddr *)&dst, (char *)hdr, sizeof(hdr));
	} else {
		snprintf(uid, sizeof(uid), "mgrok-%llu-%u",
		    (unsigned long long)cs->c->sessions, mux_stream_id(cs->st));
		nt = pp_tlvs(cs->meta, cs->meta_len, uid, t);
		n = proxyproto_v2(PP_PROXY, PP_STREAM, cs->peer.ss_family ?
		    (struct sockaddr *)&cs->peer : NULL,
		    (struct sockaddr *)&dst, t, nt, hdr, sizeof(hdr));
	}
	if (n <= 0 || send(fd, hdr, (size_t)n, MSG_NOSIGNAL) != n)
		return -1;
	return 0;
}

/* The server name of a TLS tunnel's connection, for its record: its
 * ClientHello is usually on the stream by the time the local service
 * answered the dial; when it is not all there yet, the tunnel's own name,
 * which the server routed it by (SNI routing is by the exact name). */
static void
cs_peek_sni(struct mux_stream *st, struct inspect_conn *ic,
    const struct cproxy *px)
{
	struct evbuffer *rx = mux_stream_rx(st);
	size_t n = evbuffer_get_length(rx);
	char sni[256];

	if (n > HTTP_HEAD_MAX + 5)
		n = HTTP_HEAD_MAX + 5;
	if (n > 0 && http_sni_peek(evbuffer_pullup(rx, (ssize_t)n), n, sni,
	    sizeof(sni)) == 0 && sni[0] != '\0')
		inspect_conn_set_sni(ic, sni);
	else if (px->spec.hostname[0] || px->assigned_host[0])
		inspect_conn_set_sni(ic, px->spec.hostname[0] ?
		    px->spec.hostname : px->assigned_host);
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
	met_inc(cs->px->m_conns);
	met_gauge_add(cs->px->m_active, 1);
	if (cs->px->spec.type == PROXY_HTTP) {
		struct hrelay_conf hc;
		memset(&hc, 0, sizeof(hc));
		hc.host_rewrite = cs->px->host_rw[0] ? cs->px->host_rw : NULL;
		hc.bytes_in = cs->px->m_in;
		hc.bytes_out = cs->px->m_out;
		hc.request = px_http_request;
		hc.done = px_hrelay_done;
		hc.arg = px_ref(cs->px);
		if (cs->c->ins) {
			hc.obs = inspect_http_obs();
			hc.obs_arg = inspect_http_open(cs->c->ins,
			    cs->px->name, cs->remote[0] ? cs->remote : NULL);
		}
		hrelay_new(cs->c->base, fd, cs->st, &hc);
	} else {
		struct relay_opts ro;
		struct cconn *cc;

		if (cs->px->spec.proxy_protocol &&
		    cs_write_proxy_header(cs, fd) < 0) {
			log_warn("stream %u for \"%s\": cannot write the PROXY "
			    "protocol header to the local service",
			    mux_stream_id(cs->st), cs->px->name);
			close(fd);
			met_gauge_add(cs->px->m_active, -1);
			cs_reject(cs, CODE_UNREACHABLE, "the local service took "
			    "no PROXY protocol header", cs->c->m_ref_unreach);
			return;
		}
		cc = xcalloc(1, sizeof(*cc));
		cc->px = px_ref(cs->px);
		if (cs->c->ins)
			cc->ic = inspect_conn_open(cs->c->ins, cs->px->name,
			    cs->px->spec.type == PROXY_TLS ? "tls" : "tcp",
			    cs->remote[0] ? cs->remote : NULL);
		if (cc->ic && cs->px->spec.type == PROXY_TLS)
			cs_peek_sni(cs->st, cc->ic, cs->px);
		memset(&ro, 0, sizeof(ro));
		ro.end = cs_relay_end;
		ro.arg = cc;
		ro.from_sock = cs->px->m_out;
		ro.to_sock = cs->px->m_in;
		relay_start(cs->c->base, fd, cs->st, &ro);
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
	met_gauge_add(f->px->m_active, -1);
	if (f->ic)
		inspect_conn_close(f->ic, f->bytes_in, f->bytes_out,
		    f->end_reason ? f->end_reason : "closed");
	if (f->ev)
		event_free(f->ev);
	if (f->fd >= 0)
		close(f->fd);
	free(f->pp);
	mux_stream_free(f->st);
	px_unref(f->px);
	free(f);
}

#define CF_BATCH 64

/*
 * --proxy-protocol v2: the datagrams iov[0..n) to the local service, each
 * behind the flow's PROXY header, in one sendmmsg (no GSO: every datagram
 * is its own message). As dgram_send: returns how many the kernel took,
 * adds their payload bytes to *bytes; the others are dropped.
 */
static int
cf_send_pp(struct cflow *f, const struct iovec *iov, int n, uint64_t *bytes)
{
	struct mmsghdr msgs[CF_BATCH];
	struct iovec v[CF_BATCH][2];
	int done = 0, sent = 0;

	memset(msgs, 0, sizeof(msgs[0]) * (size_t)n);
	for (int i = 0; i < n; i++) {
		v[i][0].iov_base = f->pp;
		v[i][0].iov_len = f->pp_len;
		v[i][1] = iov[i];
		msgs[i].msg_hdr.msg_iov = v[i];
		msgs[i].msg_hdr.msg_iovlen = 2;
	}
	/* bounded: each round takes or drops at least one, or stops */
	while (done < n) {
		int r = sendmmsg(f->fd, msgs + done, (unsigned)(n - done),
		    MSG_DONTWAIT);
		if (r > 0) {
			for (int i = done; i < done + r; i++)
				*bytes += iov[i].iov_len;
			sent += r;
			done += r;
		} else if (r < 0 && (errno == ECONNREFUSED ||
		    errno == EMSGSIZE))
			done++; /* this one only: drop it, go on */
		else
			break; /* a full buffer...: drop the rest */
	}
	return sent;
}

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
		{
			uint64_t b = 0;
			sent = f->pp != NULL ? cf_send_pp(f, iov, n, &b) :
			    dgram_send(f->fd, NULL, 0, iov, n, &f->gso, &b);
			f->bytes_in += b;
			met_add(f->px->m_in, b);
		}
		met_add(f->px->m_dg_in, (uint64_t)sent);
		if (n > sent)
			met_add(f->px->m_drop_in_send, (uint64_t)(n - sent));
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
	if (mux_stream_eof(st)) {
		f->end_reason = "closed";
		cf_free(f);
	}
}

static void
cf_closed(struct mux_stream *st, void *arg)
{
	struct cflow *f = arg;

	f->st = NULL;
	if (f->end_reason == NULL)
		f->end_reason = "session lost";
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
			/* nothing listens there */
			met_inc(f->px->m_drop_in_unreach);
			continue;
		}
		if (n <= 0)
			break;
		f->last_ms = client_now_ms(c);
		if (mux_stream_send_datagram(f->st, c->udp_buf, (size_t)n) <
		    0) {
			met_inc(f->px->m_drop_out);
			continue;
		}
		met_inc(f->px->m_dg_out);
		met_add(f->px->m_out, (uint64_t)n);
		f->bytes_out += (uint64_t)n;
	}
	mux_uncork(c->mux);
}

/* --proxy-protocol v2: the header in front of each of f's datagrams
 * (command PROXY, DGRAM, from the visitor peer to px_pp_dst), with the
 * server's metadata meta[0..mlen) (pp_tlvs). 0, or -1. */
static int
cf_pp_header(struct cflow *f, const struct sockaddr_storage *peer,
    const uint8_t *meta, size_t mlen)
{
	struct sockaddr_storage dst;
	uint8_t hdr[PROXYPROTO_V2_FIXED + 36 + STHDR_META_MAX + 64];
	struct proxyproto_tlv t[PP_TLVS_MAX];
	char uid[40];
	size_t nt;
	int n;

	px_pp_dst(f->px, f->fd, &dst);
	snprintf(uid, sizeof(uid), "mgrok-%llu-%u",
	    (unsigned long long)f->c->sessions, mux_stream_id(f->st));
	nt = pp_tlvs(meta, mlen, uid, t);
	n = proxyproto_v2(PP_PROXY, PP_DGRAM, peer->ss_family ?
	    (const struct sockaddr *)peer : NULL,
	    (struct sockaddr *)&dst, t, nt, hdr, sizeof(hdr));
	if (n <= 0)
		return -1;
	f->pp = xmalloc((size_t)n);
	memcpy(f->pp, hdr, (size_t)n);
	f->pp_len = (size_t)n;
	return 0;
}

static void
cf_start(struct client *c, struct mux_stream *st, struct cproxy *px,
    const char *remote, const struct sockaddr_storage *peer,
    const uint8_t *meta, size_t mlen)
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
	met_gauge_add(px->m_active, 1);
	met_inc(px->m_conns);
	if (c->ins)
		f->ic = inspect_conn_open(c->ins, px->name, "udp",
		    remote[0] ? remote : NULL);
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
		f->end_reason = "refused";
		cf_free(f);
		return;
	}
	if (px->spec.proxy_protocol == 2 && cf_pp_header(f, peer, meta,
	    mlen) < 0) {
		log_warn("udp flow %u: no PROXY protocol header",
		    mux_stream_id(st));
		f->end_reason = "refused";
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
			f->end_reason = "idle";
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
		cs_reject(cs, CODE_PROTOCOL, "bad stream header",
		    cs->c->m_ref_header);
		return;
	}
	evbuffer_drain(rx, (size_t)n);
	mux_stream_consumed(st, (size_t)n);
	if (h.type != STHDR_NEWSTREAM) {
		char a[INET6_ADDRSTRLEN];
		if (inet_ntop(h.af == 6 ? AF_INET6 : AF_INET, h.addr, a,
		    sizeof(a)) != NULL)
			snprintf(cs->remote, sizeof(cs->remote), h.af == 6 ?
			    "[%s]:%u" : "%s:%u", a, h.port);
		if (h.af == 6) {
			struct sockaddr_in6 *in6 = (void *)&cs->peer;
			in6->sin6_family = AF_INET6;
			memcpy(&in6->sin6_addr, h.addr, 16);
			in6->sin6_port = htons(h.port);
		} else {
			struct sockaddr_in *in = (void *)&cs->peer;
			in->sin_family = AF_INET;
			memcpy(&in->sin_addr, h.addr, 4);
			in->sin_port = htons(h.port);
		}
	}
	if ((cs->px = client_find_proxy(cs->c, &h)) != NULL)
		px_ref(cs->px);
	/* NewStreamEx2: what the server knew, for a PROXY v2 header */
	if (cs->px != NULL && cs->px->spec.proxy_protocol == 2 &&
	    h.meta_len > 0) {
		cs->meta = xmalloc(h.meta_len);
		memcpy(cs->meta, h.meta, h.meta_len);
		cs->meta_len = h.meta_len;
	}
	if (cs->px == NULL) {
		log_warn("stream %u: no proxy named \"%s\" or on port %u",
		    mux_stream_id(st), h.name, h.remote_port);
		cs_reject(cs, CODE_UNREACHABLE, "no such proxy on this client",
		    cs->c->m_ref_notunnel);
		return;
	}
	if (cs->px->spec.type == PROXY_UDP) {
		struct client *c = cs->c;
		struct cproxy *px = px_ref(cs->px);
		char remote[NET_ADDRSTR_MAX];
		struct sockaddr_storage peer = cs->peer;
		uint8_t *meta = cs->meta;
		size_t mlen = cs->meta_len;
		snprintf(remote, sizeof(remote), "%s", cs->remote);
		cs->meta = NULL;
		cs->st = NULL;
		cs_free(cs);
		cf_start(c, st, px, remote, &peer, meta, mlen);
		free(meta);
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

/* "CIDR,CIDR ..." as RegisterEx text options into out[CTRL_MAX_ALLOW_SRC]
 * (pointing into list); their number */
static unsigned
cidr_opts(const char *list, struct ctrl_str *out)
{
	unsigned n = 0;

	for (const char *p = list; *p && n < CTRL_MAX_ALLOW_SRC;) {
		size_t k = strcspn(p, ", ");
		if (k > 0) {
			out[n].p = (const uint8_t *)p;
			out[n++].len = k;
			p += k;
		} else
			p++;
	}
	return n;
}

/* what a server gave (name, port, host) is forgotten: the next
 * registration asks as the configuration does */
static void
px_forget_learnt(struct cproxy *px)
{
	snprintf(px->name, sizeof(px->name), "%s", px->spec.name);
	px->remote_port = px->spec.remote_port;
	px->assigned_host[0] = '\0';
	px->learnt_at = 0;
}

static void
client_register_one(struct client *c, struct cproxy *px)
{
	struct ctrl_msg m;
	size_t sl = 0;

	px->moved = px->learnt_at && px->learnt_at != c->server_idx + 1;
	px->carried = px->moved && px->learnt_cluster &&
	    (c->caps & CTRL_CAP_CLUSTER);
	if (px->moved && !px->carried) {
		/* another server (no shared state): what the last one gave
		 * means nothing here; ask as the configuration does */
		px_forget_learnt(px);
	}
	/* servers that share state (capability 6, this one and the one
	 * that gave them): a host name the server chose is asked for as
	 * its subdomain (the nodes have one --domain; a policy may let the
	 * agent choose a subdomain and no hostname), its port as it is */
	if (px->carried && !px->spec.subdomain[0] && !px->spec.hostname[0] &&
	    !px->spec.group[0] && px->assigned_host[0])
		sl = strcspn(px->assigned_host, ".");
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
	} else if (sl > 0 && px->assigned_host[sl] == '.') {
		m.u.reg.subdomain.p = (const uint8_t *)px->assigned_host;
		m.u.reg.subdomain.len = sl;
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
	m.u.reg.proxy_protocol = (uint8_t)px->spec.proxy_protocol;
	/* --allow-cidr, --deny-cidr: one option 0x07 (0x08, an extension)
	 * per network */
	m.u.reg.n_allow_src = cidr_opts(px->spec.allow_cidr, m.u.reg.allow_src);
	m.u.reg.n_deny_src = cidr_opts(px->spec.deny_cidr, m.u.reg.deny_src);
	m.u.reg.bandwidth = (uint32_t)px->spec.bandwidth;
	if (px->spec.group[0]) {
		m.u.reg.group.p = (const uint8_t *)px->spec.group;
		m.u.reg.group.len = strlen(px->spec.group);
		m.u.reg.group_key.p = (const uint8_t *)px->spec.group_key;
		m.u.reg.group_key.len = strlen(px->spec.group_key);
		if (px->spec.group_strategy[0]) {
			m.u.reg.group_strategy.p = (const uint8_t *)
			    px->spec.group_strategy;
			m.u.reg.group_strategy.len =
			    strlen(px->spec.group_strategy);
		}
		m.u.reg.group_weight = (uint16_t)px->spec.group_weight;
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

/* ---- a server going away: make before break ---- */

#define REREGISTER_S 2

/* the tunnels the server could not register yet (its cluster's state was
 * out of reach): ask again */
static void
client_on_reregister(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	if (c->ctrl == NULL || c->state < CL_REGISTERING)
		return; /* a new session registers everything anyway */
	for (size_t i = 0; i < c->npx; i++)
		if (!c->px[i]->registered && !c->px[i]->waiting &&
		    !c->px[i]->gone) {
			client_register_one(c, c->px[i]);
			c->state = CL_REGISTERING;
		}
}

#define OLD_DRAIN_S 30     /* the old session's streams may end within */
#define OLD_MOVE_S 15      /* the new session has this long to be ready */

/* the old session is closed: it is gone */
static void
client_old_gone(struct client *c)
{
	if (c->old_ev)
		event_del(c->old_ev);
	mux_free(c->old_mux);
	c->old_mux = NULL;
	c->old_ctrl = NULL;
	log_info("the session with the server that went away is closed");
}

static void
client_on_old_tick(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	uint64_t now = client_now_ms(c);

	if (c->old_mux == NULL)
		return;
	/* the new session did not come in time: leave the old one anyway */
	if (!c->old_unregistered && now >= c->old_deadline_ms)
		client_break_old(c);
	/* only the control stream left, or out of time: close it */
	if (c->old_mux != NULL && c->old_unregistered &&
	    (mux_nstreams(c->old_mux) <= 1 || now >= c->old_deadline_ms))
		mux_close(c->old_mux, MG_ECLOSED); /* client_old_gone */
}

/* "break": the old server closes our tunnels' public sides (no new
 * visitors there), and the session closes once its streams ended */
static void
client_break_old(struct client *c)
{
	struct ctrl_msg m;

	if (c->old_mux == NULL || c->old_unregistered)
		return;
	c->old_unregistered = 1;
	for (size_t i = 0; i < c->npx; i++) {
		if (c->px[i]->old_name[0] == '\0')
			continue;
		memset(&m, 0, sizeof(m));
		m.type = CTRL_UNREGISTER;
		m.u.name.p = (const uint8_t *)c->px[i]->old_name;
		m.u.name.len = strlen(c->px[i]->old_name);
		client_send_on(c->old_ctrl, &m);
		c->px[i]->old_name[0] = '\0';
	}
	c->old_deadline_ms = client_now_ms(c) + OLD_DRAIN_S * 1000;
	log_info("left the server that goes away: its open streams may end "
	    "within %d s", OLD_DRAIN_S);
}

/*
 * Goodbye code 8: the server goes away (a planned restart). Keep its
 * session for the streams under way, and with another server to go to,
 * connect there at once ("make"); once the tunnels are registered there,
 * or without one, unregister them here ("break"): the old server stops
 * taking visitors for them and ends when their streams have.
 */
static void
client_leave_server(struct client *c)
{
	struct timeval tick = { 0, 100000 };

	if (c->old_mux != NULL) /* one move at a time: drop the older */
		mux_close(c->old_mux, MG_ECLOSED);
	event_del(c->hb_ev);
	event_del(c->auth_ev);
	client_regq_clear(c);
	for (size_t i = 0; i < c->npx; i++) {
		struct cproxy *px = c->px[i];
		if (px->registered) {
			snprintf(px->old_name, sizeof(px->old_name), "%s",
			    px->name);
			client_emit_tunnel_down(c, px->name, px->spec.type,
			    "server going away");
		}
		px->registered = 0;
	}
	if (c->session_up) {
		c->session_up = 0;
		met_set(c->m_up, 0);
		client_emit(c, "session_lost", json_pack("{sIss}", "session",
		    (json_int_t)c->sessions, "reason", "server going away"));
	}
	c->old_mux = c->mux;
	c->old_ctrl = c->ctrl;
	c->mux = NULL;
	c->ctrl = NULL;
	c->old_unregistered = 0;
	c->old_deadline_ms = client_now_ms(c) + OLD_MOVE_S * 1000;
	if (c->old_ev == NULL)
		c->old_ev = event_new(c->base, -1, EV_PERSIST,
		    client_on_old_tick, c);
	event_add(c->old_ev, &tick);
	c->state = CL_IDLE;
	snprintf(c->last_err, sizeof(c->last_err), "server %s:%u went away",
	    c->server_host, c->server_port);
	if (c->nservers > 1) {
		c->server_idx = (c->server_idx + 1) % c->nservers;
		c->round_left = c->nservers;
		log_info("moving to %s", c->servers[c->server_idx]);
		client_connect(c);
		return;
	}
	client_break_old(c);
	client_schedule_retry(c);
}

static void
client_on_auth_ok(struct client *c, const struct ctrl_msg *m)
{
	struct timeval tv;

	event_del(c->auth_ev);
	c->caps = m->u.auth_ok.caps;
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
	if (!c->session_up) {
		char id[2 * CTRL_ID_LEN + 1], srv[300], ag[LOG_ESC_MAX];
		for (size_t i = 0; i < CTRL_ID_LEN; i++)
			snprintf(id + 2 * i, 3, "%02x", c->client_id[i]);
		snprintf(srv, sizeof(srv), "%s:%u", c->server_host,
		    c->server_port);
		log_esc(m->u.auth_ok.agent.p, m->u.auth_ok.agent.len, ag,
		    sizeof(ag));
		c->session_up = 1;
		met_set(c->m_up, 1);
		client_emit(c, "session_connected", json_pack("{sIsssossso}",
		    "session", (json_int_t)c->sessions, "client_id", id,
		    "token", json_null(), "remote_addr", srv, "version",
		    jtext(ag)));
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
	int resumed;

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
	px->learnt_at = c->server_idx + 1;
	px->learnt_cluster = (c->caps & CTRL_CAP_CLUSTER) != 0;
	log_esc(m->u.reg_ok.url.p, m->u.reg_ok.url.len, url, sizeof(url));
	resumed = strcmp(url, px->url) == 0;
	if (!resumed) {
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
	} else if (px->moved) {
		log_info("proxy \"%s\" resumed at %s on %s:%u", px->name, url,
		    c->server_host, c->server_port);
	} else {
		log_info("proxy \"%s\" back at %s", px->name, url);
	}
	px->moved = px->carried = 0;
	px->registered = 1;
	px->reg_err = NULL;
	if (strcmp(px->label, px->name) != 0)
		px_series_bind(px); /* the server named it */
	client_emit(c, "tunnel_up", json_pack("{sososssosIsb}", "tunnel",
	    jtext(px->name), "name", jtext(px->name), "tunnel_type",
	    px_type_name(px->spec.type), "public", jtext(px->url), "session",
	    (json_int_t)c->sessions, "resumed", resumed));
	/* the server forgets health with the session: tell this one */
	px_health_report(c, px);
	px_unref(px);
	if (TAILQ_EMPTY(&c->regq)) {
		c->state = CL_READY;
		c->attempts = 0;
		c->round_left = c->nservers;
		client_break_old(c); /* moved: the old server may let go */
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
	px_health_stop(px);
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

	if (st != c->ctrl) {
		/* the server being left says more: its session ends soon */
		log_debug("control message from the server being left: "
		    "ignored");
		return;
	}
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
		if (ctrl_challenge_hashed(&m)) {
			/* the server may keep only SHA-256(token): that is
			 * the key (capability 3, a proposed extension) */
			uint8_t key[CRYPTO_SHA256_LEN];
			crypto_sha256(c->cf->token, strlen(c->cf->token), key);
			ctrl_auth_mac(key, sizeof(key), c->client_nonce,
			    m.u.challenge.server_nonce, c->client_id, r.u.mac);
			memset(key, 0, sizeof(key));
		} else {
			ctrl_auth_mac((const uint8_t *)c->cf->token,
			    strlen(c->cf->token), c->client_nonce,
			    m.u.challenge.server_nonce, c->client_id, r.u.mac);
		}
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
	case CTRL_TUNNEL_CLOSED: {
		/* the server closed one tunnel (capability 6): say why, and
		 * ask for it again at once; the answer says whether it can be
		 * had (RegisterErr names who has it now) */
		struct cproxy *px = NULL;
		for (size_t i = 0; i < c->npx && px == NULL; i++)
			if (c->px[i]->registered &&
			    strlen(c->px[i]->name) == m.u.reg_err.name.len &&
			    memcmp(c->px[i]->name, m.u.reg_err.name.p,
			    m.u.reg_err.name.len) == 0)
				px = c->px[i];
		log_warn("the server closed %s: %s (code %u)%s",
		    esc(&m.u.reg_err.name, e2, sizeof(e2)),
		    esc(&m.u.reg_err.text, e1, sizeof(e1)), m.u.reg_err.code,
		    px ? "; asking for it again" : "");
		if (px != NULL) {
			px->registered = 0;
			client_register_one(c, px);
			c->state = CL_REGISTERING;
		}
		break;
	}
	case CTRL_REGISTER_ERR: {
		struct cproxy *px = client_regq_pop(c);

		if (px != NULL && m.u.reg_err.code == CODE_INTERNAL &&
		    m.u.reg_err.text.len >= 8 && memcmp(m.u.reg_err.text.p +
		    m.u.reg_err.text.len - 8, "retrying", 8) == 0) {
			/* a cluster whose state is out of reach: again soon */
			struct timeval tv = { REREGISTER_S, 0 };
			log_warn("cannot register %s yet: %s; trying again in "
			    "%d s", px->name[0] ? px->name : px->label,
			    esc(&m.u.reg_err.text, e1, sizeof(e1)),
			    REREGISTER_S);
			if (c->rereg_ev == NULL)
				c->rereg_ev = evtimer_new(c->base,
				    client_on_reregister, c);
			evtimer_add(c->rereg_ev, &tv);
			px_unref(px);
			if (TAILQ_EMPTY(&c->regq))
				c->state = CL_READY;
			break;
		}
		if (px != NULL && px->carried && !px->gone) {
			/* what another server of the cluster gave is not to
			 * be had here: ask as the configuration does */
			log_warn("proxy \"%s\": not resumed at %s:%u: %s "
			    "(code %u); asking for a new one", px->name,
			    c->server_host, c->server_port,
			    esc(&m.u.reg_err.text, e1, sizeof(e1)),
			    m.u.reg_err.code);
			px_forget_learnt(px);
			client_register_one(c, px);
			px_unref(px);
			break;
		}
		client_say("cannot register %s: %s (code %u)",
		    m.u.reg_err.name.len ? esc(&m.u.reg_err.name, e2,
		    sizeof(e2)) : "proxy", esc(&m.u.reg_err.text, e1,
		    sizeof(e1)), m.u.reg_err.code);
		if (px != NULL) {
			snprintf(px->reg_err_buf, sizeof(px->reg_err_buf),
			    "%.290s", e1);
			px->reg_err = px->reg_err_buf;
		}
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
		if (m.u.err.code == CODE_SHUTDOWN) {
			log_warn("server %s:%u is going away: %s",
			    c->server_host, c->server_port,
			    esc(&m.u.err.text, e1, sizeof(e1)));
			client_leave_server(c);
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

	/* through a proxy the server cannot be probed directly */
	for (; !c->use_proxy && *c->probe_plan != PROBE_SILENT; c->probe_plan++) {
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

	if (m == c->old_mux) {
		client_old_gone(c);
		return;
	}
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
	for (size_t i = 0; i < c->npx; i++) {
		if (c->px[i]->registered)
			client_emit_tunnel_down(c, c->px[i]->name,
			    c->px[i]->spec.type, "session lost");
		c->px[i]->registered = 0;
	}
	if (c->session_up) {
		c->session_up = 0;
		met_set(c->m_up, 0);
		client_emit(c, "session_lost", json_pack("{sIss}", "session",
		    (json_int_t)c->sessions, "reason", err == MG_ETIMEDOUT ?
		    "heartbeat timeout" : err == MG_EPROTO ? "protocol error" :
		    err == MG_ECLOSED ? (c->stopping ? "client exiting" :
		    "closed by the server") : "I/O error"));
	}
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
	met_inc(c->m_sessions);
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
		/* each server is checked against its own name, unless
		 * --tls-server-name gives one for all */
		SSL *ssl = c->cf->tls_server_name ? tls_ssl_new(c->tls, fd) :
		    tls_ssl_new_name(c->tls, fd, c->server_host);
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

static void
client_on_pxdialed(int fd, const char *err, int auth, void *arg)
{
	struct client *c = arg;

	c->pxdial = NULL;
	if (fd >= 0) {
		client_on_dialed(fd, 0, NULL, c);
		return;
	}
	snprintf(c->last_err, sizeof(c->last_err),
	    "cannot reach server %s:%u: %s", c->server_host, c->server_port,
	    err);
	if (auth) {
		/* the credentials will not be any better next time */
		client_say("%s", c->last_err);
		c->state = CL_IDLE;
		client_stop(c, 1);
		return;
	}
	log_warn("%s", c->last_err);
	c->state = CL_IDLE;
	client_schedule_retry(c);
}

/* The proxy to reach the server through: --proxy (none or off: no proxy),
 * else HTTPS_PROXY or ALL_PROXY unless NO_PROXY exempts the server, as
 * curl reads them. 0, or -1 (said) when the URL is bad. */
static int
client_proxy_setup(struct client *c)
{
	const char *v = c->cf->proxy[0] ? c->cf->proxy : NULL;
	const char *name = "--proxy";
	char why[300], us[600];

	if (v && (strcmp(v, "none") == 0 || strcmp(v, "off") == 0))
		return 0;
	if (v == NULL && (v = proxy_from_env(c->server_host, &name)) == NULL)
		return 0;
	if (proxy_url_parse(v, &c->proxy, why, sizeof(why)) < 0) {
		client_say("%s: %s", name, why);
		return -1;
	}
	c->use_proxy = 1;
	log_info("reaching the server through %s (%s)", proxy_url_str(
	    &c->proxy, us, sizeof(us)), name);
	return 0;
}

/* server_host and server_port: those of servers[server_idx] */
static void
client_pick_server(struct client *c)
{
	const char *err;

	if (net_split_hostport(c->servers[c->server_idx], c->server_host,
	    sizeof(c->server_host), &c->server_port, &err))
		abort(); /* each was checked by client_new */
}

/* Resolve the server again and dial its addresses in turn (or have the
 * proxy reach it). */
static void
client_connect(struct client *c)
{
	struct addrinfo hints;
	char port[8];
	int rc;

	c->state = CL_CONNECTING;
	client_pick_server(c);
	if (c->use_proxy) {
		char why[256];
		c->pxdial = pxdial_start(c->base, &c->proxy, c->server_host,
		    c->server_port, CONNECT_TIMEOUT_S, client_on_pxdialed, c,
		    why, sizeof(why));
		if (c->pxdial == NULL) {
			snprintf(c->last_err, sizeof(c->last_err),
			    "cannot reach server %s:%u: %s", c->server_host,
			    c->server_port, why);
			log_warn("%s", c->last_err);
			c->state = CL_IDLE;
			client_schedule_retry(c);
		}
		return;
	}
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
	c->server_idx = (c->server_idx + 1) % c->nservers;
	if (c->round_left > 1) {
		/* the next server at once: a back-off only after each was
		 * tried (a full round starts where the last one did) */
		struct timeval now = { 0, 0 };
		c->round_left--;
		log_info("trying the next server, %s", c->servers[
		    c->server_idx]);
		evtimer_add(c->retry_ev, &now);
		return;
	}
	c->round_left = c->nservers;
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

/* ---- figures and the inspector ---- */

static void
client_inspect_conf(const struct client_conf *cf, struct inspect_conf *ic)
{
	memset(ic, 0, sizeof(*ic));
	ic->body_max = cf->inspect_body_max;
	ic->max_bytes = cf->inspect_max_bytes;
	ic->max_requests = cf->inspect_max_requests;
	ic->max_conns = cf->inspect_max_conns;
	ic->capture_secrets = cf->inspect_capture_secrets;
}

static void
client_families(struct client *c)
{
	struct metrics *m = c->metrics;
	struct client_fams *f = &c->fam;

	f->bytes = met_counter(m, "mgrok_tunnel_bytes_total", "bytes through "
	    "a tunnel: in from visitors to the local service, out back",
	    "@tunnel,direction");
	f->conns = met_counter(m, "mgrok_tunnel_connections_total",
	    "connections (TCP, TLS, HTTP) and flows (UDP) through a tunnel",
	    "@tunnel");
	f->active = met_gauge(m, "mgrok_tunnel_connections_active",
	    "connections and flows open now", "@tunnel");
	f->refused = met_counter(m, "mgrok_streams_refused_total",
	    "streams from the server refused by this agent", "reason");
	f->http_req = met_counter(m, "mgrok_tunnel_http_requests_total",
	    "HTTP requests answered by the local service, by method and "
	    "status class", "@tunnel,method,code");
	f->http_dur = met_histogram(m, "mgrok_http_request_duration_seconds",
	    "time from a request's head to its response's first byte",
	    "@tunnel", met_latency_bounds, met_nlatency_bounds);
	f->udp_dg = met_counter(m, "mgrok_udp_datagrams_total",
	    "UDP datagrams through a tunnel", "@tunnel,direction");
	f->udp_drops = met_counter(m, "mgrok_udp_drops_total",
	    "UDP datagrams dropped", "@tunnel,direction,reason");
	f->sessions = met_counter(m, "mgrok_sessions_total",
	    "connections made to the server", NULL);
	f->session_up = met_gauge(m, "mgrok_session_up",
	    "1 while a session to the server is authenticated", NULL);
	f->reloads = met_counter(m, "mgrok_reloads_total",
	    "configuration reloads", "result");
	f->health = met_gauge(m, "mgrok_tunnel_health",
	    "a tunnel's health check: 1 up, 0 down, -1 unknown (no "
	    "decisive run of results yet)", "@tunnel");
	f->health_checks = met_counter(m, "mgrok_health_checks_total",
	    "health checks of a tunnel's local service, by result",
	    "@tunnel,result");
	c->m_sessions = met_at0(f->sessions);
	c->m_up = met_at0(f->session_up);
	c->m_reload_ok = met_at1(f->reloads, "applied");
	c->m_reload_failed = met_at1(f->reloads, "refused");
	c->m_ref_unreach = met_at1(f->refused, "unreachable");
	c->m_ref_notunnel = met_at1(f->refused, "no_tunnel");
	c->m_ref_header = met_at1(f->refused, "bad_header");
	metrics_process(m);
}

static size_t
src_ntunnels(void *arg)
{
	return client_ntunnels(arg);
}

static void
src_tunnel(void *arg, size_t i, struct inspect_tunnel *t)
{
	struct client *c = arg;
	struct cproxy *px = c->px[i];
	struct client_tunnel_stats st;

	client_tunnel_stats(c, i, &st);
	t->name = px->name;
	t->type = px_type_name(px->spec.type);
	t->public_url = px->url[0] ? px->url : NULL;
	t->status = px->registered ? "online" : px->reg_err ? "refused" :
	    "connecting";
	t->error = px->registered ? NULL : px->reg_err;
	t->local_host = px->spec.host;
	t->local_port = px->spec.port;
	t->local_ai = px->ai;
	t->host_rewrite = px->host_rw[0] ? px->host_rw : NULL;
	t->bytes_in = st.bytes_in;
	t->bytes_out = st.bytes_out;
	t->connections = st.streams;
	t->connections_active = st.active;
	t->requests = st.http.requests;
	if (px->hc != NULL) {
		t->health_state = health_state_name(health_state(px->hc));
		t->health_reason = health_reason(px->hc);
		t->health_checks = health_checks(px->hc);
	}
}

static int
src_ready(void *arg, char *why, size_t cap)
{
	struct client *c = arg;

	if (c->state != CL_READY) {
		snprintf(why, cap, "%s", c->last_err[0] ? c->last_err :
		    "not connected to the server yet");
		return 0;
	}
	for (size_t i = 0; i < c->npx; i++)
		if (!c->px[i]->registered) {
			snprintf(why, cap, "tunnel \"%s\" is not registered",
			    c->px[i]->name);
			return 0;
		}
	return 1;
}

/* Listen for the inspector: the address given, or the default one and the
 * next ports. 0, or -1 after saying why (only when the user chose the
 * address). */
static int
client_inspect_start(struct client *c)
{
	const struct client_conf *cf = c->cf;
	struct web_conf wc;
	struct inspect_conf ic;
	struct inspect_source src;
	char host[256], addr[300], err[512];
	uint16_t port = 0;
	const char *e;

	client_inspect_conf(cf, &ic);
	c->ins = inspect_new(c->base, &ic, c->metrics, c->feed);
	memset(&wc, 0, sizeof(wc));
	wc.what = "inspector";
	/* it shows captured requests and replays to the local service: this
	 * machine's only (there is no inspector token) */
	wc.require_auth_off_loopback = 1;
	wc.assets = "inspect";
	wc.addr = cf->inspect_addr;
	if (net_split_hostport(cf->inspect_addr, host, sizeof(host), &port,
	    &e)) {
		client_say("--inspect-addr %s: %s", cf->inspect_addr, e);
		return -1;
	}
	c->web = web_new(c->base, &wc, err, sizeof(err));
	/* the default address is taken (another agent): the next ports */
	while (c->web == NULL && !cf->inspect_addr_set &&
	    port < INSPECT_PORT_LAST) {
		port++;
		snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%u" :
		    "%s:%u", host, port);
		wc.addr = addr;
		c->web = web_new(c->base, &wc, err, sizeof(err));
	}
	if (c->web == NULL) {
		if (cf->inspect_addr_set) {
			client_say("inspector: %s (--inspect-addr off turns it "
			    "off)", err);
			return -1;
		}
		log_warn("no inspector: %s (up to port %u); --inspect-addr "
		    "HOST:PORT picks another address", err, INSPECT_PORT_LAST);
		inspect_free(c->ins);
		c->ins = NULL;
		return 0;
	}
	memset(&src, 0, sizeof(src));
	src.ntunnels = src_ntunnels;
	src.tunnel = src_tunnel;
	src.ready = src_ready;
	src.metrics = c->metrics;
	src.feed = c->feed;
	src.arg = c;
	inspect_routes(c->ins, c->web, &src);
	log_info("inspector: http://%s", web_addr(c->web));
	return 0;
}

struct metrics *
client_metrics(const struct client *c)
{
	return c->metrics;
}

struct evfeed *
client_events(const struct client *c)
{
	return c->feed;
}

const char *
client_inspect_addr(const struct client *c)
{
	return c->web ? web_addr(c->web) : NULL;
}

uint64_t
client_streams_refused(const struct client *c)
{
	return met_value(c->m_ref_unreach) + met_value(c->m_ref_notunnel) +
	    met_value(c->m_ref_header);
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
	c->metrics = metrics_new(cf->metrics_max_series ?
	    cf->metrics_max_series : 1000);
	c->feed = evfeed_new(EVENTS_KEEP);
	client_families(c);
	c->started_ms = client_now_ms(c);
	for (const char *p = cf->server; *p && c->nservers <
	    CONF_MAX_SERVERS;) {
		size_t k = strcspn(p, ",");
		if (k > 0 && k < sizeof(c->servers[0])) {
			memcpy(c->servers[c->nservers], p, k);
			c->servers[c->nservers++][k] = '\0';
		}
		p += k + (p[k] == ',');
	}
	for (unsigned i = 0; i < c->nservers; i++)
		if (net_split_hostport(c->servers[i], c->server_host,
		    sizeof(c->server_host), &c->server_port, &err)) {
			client_say("--server %s: %s", c->servers[i], err);
			goto fail;
		}
	if (c->nservers == 0) {
		client_say("--server: no server given");
		goto fail;
	}
	c->round_left = c->nservers;
	client_pick_server(c);
	if (client_proxy_setup(c) < 0)
		goto fail;
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
		if ((c->px[i] = px_new(c, &cf->locals[i])) == NULL) {
			c->npx = i;
			goto fail;
		}
	LIST_INIT(&c->flows);
	if (cf->inspect_addr[0] && client_inspect_start(c) < 0)
		goto fail;
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
	/* one source: the tunnel's series */
	out->streams = met_value(px->m_conns);
	out->refused = 0; /* by reason only: client_streams_refused */
	out->active = (unsigned)met_gauge_value(px->m_active);
	out->bytes_in = met_value(px->m_in);
	out->bytes_out = met_value(px->m_out);
	if (px->spec.type == PROXY_UDP) {
		out->dg.pkts_in = met_value(px->m_dg_in);
		out->dg.pkts_out = met_value(px->m_dg_out);
		out->dg.bytes_in = out->bytes_in;
		out->dg.bytes_out = out->bytes_out;
		out->dg.drops_in = met_value(px->m_drop_in_send) +
		    met_value(px->m_drop_in_unreach);
		out->dg.drops_out = met_value(px->m_drop_out);
	}
	px_http_stats(px, &out->http);
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
	pxdial_cancel(c->pxdial);
	if (c->old_ev)
		event_free(c->old_ev);
	if (c->old_mux)
		mux_free(c->old_mux);
	if (c->rereg_ev)
		event_free(c->rereg_ev);
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
	for (size_t i = 0; c->px && i < c->npx; i++) {
		px_health_stop(c->px[i]);
		px_unref(c->px[i]);
	}
	free(c->px);
	if (c->web)
		web_free(c->web); /* first: its requests may point into ins */
	inspect_free(c->ins);
	if (c->feed)
		evfeed_free(c->feed);
	if (c->metrics)
		metrics_free(c->metrics);
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
	if (strcmp(ncf->inspect_addr, ocf->inspect_addr) != 0) {
		size_t l = strlen(restart);
		snprintf(restart + l, sizeof(restart) - l, "; --inspect-addr "
		    "needs a restart (the capture limits apply now)");
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
		if ((fresh[i] = px_new(c, &ncf->locals[i])) == NULL) {
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
	for (size_t i = 0; i < ncf->nlocals; i++)
		if (!isnew[i])
			px_health_reconf(c, fresh[i], &ncf->locals[i].health);
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
		if (px->registered)
			client_emit_tunnel_down(c, px->name, px->spec.type,
			    renamed ? "changed by a reload" :
			    "removed by a reload");
		if (px->registered && c->state >= CL_REGISTERING)
			client_send_unregister(c, px->name);
		px->gone = 1;
		px_health_stop(px);
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
	met_inc(c->m_reload_ok);
	{
		char sum[400];
		snprintf(sum, sizeof(sum), "tunnels %u added, %u removed, %u "
		    "changed, %u unchanged%s", added, removed, changed, same,
		    restart);
		client_emit(c, "reload_applied", json_pack("{ss}", "summary",
		    sum));
	}
	if (c->ins) {
		struct inspect_conf ic;
		client_inspect_conf(ncf, &ic);
		inspect_set_conf(c->ins, &ic);
	}
	metrics_set_max_series(c->metrics, ncf->metrics_max_series ?
	    ncf->metrics_max_series : 1000);
	return 0;
}

void
client_reload_failed(struct client *c, const char *why)
{
	c->reload_time = (long long)time(NULL);
	c->reload_ok = 0;
	snprintf(c->reload_err, sizeof(c->reload_err), "%s", why);
	met_inc(c->m_reload_failed);
	client_emit(c, "reload_refused", json_pack("{so}", "error",
	    jtext(why)));
}

void
client_reload_status(const struct client *c,
    struct client_reload_status *st)
{
	/* the registry's figures: one count of each */
	st->failures = met_value(c->m_reload_failed);
	st->reloads = st->failures + met_value(c->m_reload_ok);
	st->last_time = c->reload_time;
	st->last_ok = c->reload_ok;
	snprintf(st->last_err, sizeof(st->last_err), "%s", c->reload_err);
}
