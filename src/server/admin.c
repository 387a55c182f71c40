/* admin.c: the admin listener: /metrics, health, the JSON API, events and
 * the dashboard (admin.h, docs/api.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <jansson.h>

#include "metrics/events.h"
#include "metrics/jtext.h"
#include "metrics/metrics.h"
#include "server/admin.h"
#include "server/clview.h"
#include "server/cluster.h"
#include "server/forward.h"
#include "server/group.h"
#include "server/server.h"
#include "server/server_int.h"
#include "server/smet.h"
#include "util/log.h"
#include "util/mtime.h"
#include "util/net.h"
#include "util/ratelim.h"
#include "util/version.h"
#include "util/xmalloc.h"
#include "web/web.h"

#define TRAFFIC_INTERVAL_S 2
#define TRAFFIC_SAMPLES 150       /* five minutes */
#define TRAFFIC_TUNNELS 64        /* tunnels with a history */
#define CLUSTER_VIEWS 4           /* /api/v1/cluster reads at once */

/* One tunnel's bytes per interval, in a ring aligned with the others. */
struct thist {
	uint32_t px_id;               /* 0: a free slot */
	uint64_t last[2];             /* the totals at the last sample */
	uint64_t d[2][TRAFFIC_SAMPLES];
};

/* a GET /api/v1/cluster waiting for its view from Redis */
struct clreq {
	LIST_ENTRY(clreq) link;
	struct admin *a;
	struct evhttp_request *req;
	struct clview_fetch *f;
};

struct admin {
	struct server *srv;
	LIST_HEAD(, clreq) clreqs;
	unsigned nclreqs;
	struct web *web;
	struct admin_ops ops;
	struct event *tick;
	unsigned head;                /* the next sample's index */
	unsigned nsamples;            /* taken so far, up to the ring's size */
	struct thist hist[TRAFFIC_TUNNELS];
};

static const char *const class_keys[6] = { "none", "1xx", "2xx", "3xx",
	"4xx", "5xx" };

static void
hexid(const uint8_t *id, char out[2 * CTRL_ID_LEN + 1])
{
	for (int i = 0; i < CTRL_ID_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static const char *
sess_state(enum sess_state st)
{
	switch (st) {
	case SESS_INIT:
	case SESS_HANDSHAKEN:
		return "handshake";
	case SESS_AUTHENTICATED:
		return "authenticated";
	case SESS_BOUND:
		return "bound";
	case SESS_FORWARDING:
		return "forwarding";
	}
	return "handshake";
}

/* ---- JSON of the server's objects ---- */

static json_t *
tunnel_json(const struct proxy *px)
{
	char url[600], id[2 * CTRL_ID_LEN + 1];
	json_t *j;

	hexid(px->client_id, id);
	j = json_pack("{s:I,s:o,s:s,s:o,s:o,s:s,s:o,s:s,s:I,s:I,s:I,s:I,s:I}",
	    "id", (json_int_t)px->id, "name", jtext(px->name), "type",
	    proxy_type_name(px->type), "public", jtext(proxy_url(px, url,
	    sizeof(url))), "session", px->sess ? json_integer((json_int_t)
	    px->sess->id) : json_null(), "client_id", id, "token",
	    jtext(px->identity), "state", px->sess ? "up" : "grace", "created_ms",
	    (json_int_t)px->created_unix_ms, "bytes_in",
	    (json_int_t)smet_px_bytes(px, SMET_IN), "bytes_out",
	    (json_int_t)smet_px_bytes(px, SMET_OUT), "connections",
	    (json_int_t)smet_px_conns(px), "connections_active",
	    (json_int_t)smet_px_active(px));
	if (j == NULL)
		return json_object();
	/* the limits in force, bytes/s (0: none): the lower of the agent's
	 * and the token's */
	json_object_set_new(j, "bandwidth", json_pack("{s:I,s:I}", "in",
	    (json_int_t)(px->shaper ? shaper_effective(px->shaper, SHAPER_IN) :
	    0), "out", (json_int_t)(px->shaper ? shaper_effective(px->shaper,
	    SHAPER_OUT) : 0)));
	if (px->health != 0 || px->health_changes)
		json_object_set_new(j, "health", json_pack("{s:s,s:o,s:I,s:I}",
		    "state", px->health > 0 ? "up" : px->health < 0 ? "down" :
		    "unknown", "reason", jtext(px->health_reason), "since_ms",
		    (json_int_t)px->health_since_unix_ms, "changes",
		    (json_int_t)px->health_changes));
	if (px->is_group) {
		/* the group: its public side, strategy and members */
		const struct proxy *m;
		json_t *ml = json_array();
		char st[100];
		LIST_FOREACH(m, &px->members, member_link)
			json_array_append_new(ml, json_integer((json_int_t)m->id));
		json_object_set_new(j, "state", json_string(
		    group_usable_count(px) ? "up" : "down"));
		json_object_set_new(j, "group", json_pack("{s:s,s:o,s:I,s:o}",
		    "role", "group", "strategy", jtext(lb_strategy_str(px->lb,
		    px->lb_header, st, sizeof(st))), "usable",
		    (json_int_t)group_usable_count(px), "members", ml));
	} else if (px->group_id) {
		const struct proxy *g = registry_get(&px->srv->reg,
		    px->group_id);
		uint64_t now = mtime_ms();
		json_object_set_new(j, "group", json_pack("{s:s,s:I,s:o,s:I,"
		    "s:b,s:I}", "role", "member", "group_id",
		    (json_int_t)px->group_id, "group", jtext(g ? g->name : ""),
		    "weight", (json_int_t)px->weight, "usable",
		    group_usable(px, now), "ejected_s", (json_int_t)(
		    px->ejected_until_ms > now ? (px->ejected_until_ms - now +
		    999) / 1000 : 0)));
	}
	if (proxy_is_http(px->type)) {
		json_t *h = json_object(), *bc = json_object();
		uint64_t n = 0;
		for (int c = 1; c < 6; c++) {
			uint64_t v = met_value(px->m_http[c]);
			n += v;
			json_object_set_new(bc, class_keys[c],
			    json_integer((json_int_t)v));
		}
		json_object_set_new(h, "requests", json_integer((json_int_t)n));
		json_object_set_new(h, "by_class", bc);
		json_object_set_new(h, "latency_avg_ms", json_real(
		    px->http_lat_n ? (double)px->http_lat_sum_us / 1000.0 /
		    (double)px->http_lat_n : 0.0));
		json_object_set_new(j, "http", h);
	} else if (px->type == PROXY_UDP) {
		json_object_set_new(j, "udp", json_pack("{s:I,s:I,s:I,s:I,s:I}",
		    "flows", (json_int_t)smet_px_conns(px), "flows_active",
		    (json_int_t)px->nflows, "datagrams_in",
		    (json_int_t)smet_px_dgrams(px, SMET_IN), "datagrams_out",
		    (json_int_t)smet_px_dgrams(px, SMET_OUT), "drops",
		    (json_int_t)(px->dg.drops_in + px->dg.drops_out)));
	}
	return j;
}

static json_t *
session_json(const struct session *s)
{
	char id[2 * CTRL_ID_LEN + 1];
	json_t *j, *tl = json_array();
	const struct proxy *px;

	hexid(s->client_id, id);
	LIST_FOREACH(px, &s->proxies, sess_link)
		json_array_append_new(tl, json_integer((json_int_t)px->id));
	j = json_pack("{s:I,s:s,s:o,s:s,s:o,s:I,s:s,s:o,s:I,s:I,s:I}", "id",
	    (json_int_t)s->id, "client_id", id, "token", jtext(s->identity),
	    "remote_addr", s->peer, "version", jtext(s->agent), "connected_ms",
	    (json_int_t)s->connected_unix_ms, "state", sess_state(s->state),
	    "tunnels", tl, "bytes_in", (json_int_t)smet_sess_bytes(s, SMET_IN),
	    "bytes_out", (json_int_t)smet_sess_bytes(s, SMET_OUT), "streams",
	    (json_int_t)s->streams_total);
	return j ? j : json_object();
}

/* ---- handlers ---- */

static void
h_metrics(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct evbuffer *b = evbuffer_new();

	if (a->srv->cl != NULL) {
		struct cluster_stats st;
		struct forward_stats fs;
		cluster_stats(a->srv->cl, &st);
		smet_cluster(a->srv, &st);
		forward_stats(a->srv, &fs);
		smet_forward(a->srv, &fs);
	}
	metrics_prometheus(a->srv->m.reg, b);
	web_reply_buf(req, 200, "text/plain; version=0.0.4; charset=utf-8", b);
	evbuffer_free(b);
}

static void
h_text(struct evhttp_request *req, int code, const char *text)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add_printf(b, "%s\n", text);
	web_reply_buf(req, code, "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

static void
h_healthz(struct evhttp_request *req, void *arg)
{
	h_text(req, 200, "ok");
}

static void
h_readyz(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct server *srv = a->srv;

	if (srv->shutting_down)
		h_text(req, 503, "shutting down");
	else if (srv->lst == NULL)
		h_text(req, 503, "not listening");
	else if (srv->accept_paused)
		h_text(req, 503, "at the file descriptor limit: not accepting");
	else
		h_text(req, 200, "ready");
}

static void
h_info(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct server *srv = a->srv;
	const struct server_conf *cf = srv->cf;
	struct server_reload_status rs;
	uint64_t up_ms = mtime_ms() - srv->started_ms;
	int64_t started = (int64_t)time(NULL) * 1000 - (int64_t)up_ms;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char addr[320];

	/* the address it listens on (--addr may say port 0) */
	if (srv->lst == NULL || getsockname(evconnlistener_get_fd(srv->lst),
	    (struct sockaddr *)&ss, &sl) < 0)
		snprintf(addr, sizeof(addr), "%s", cf->addr);
	else
		net_addr_str((struct sockaddr *)&ss, addr, sizeof(addr));

	memset(&rs, 0, sizeof(rs));
	smet_reloads(srv, &rs.reloads, &rs.failures);
	{
		json_t *j, *cl = json_null();
		if (srv->cl != NULL) {
			struct cluster_stats st;
			cluster_stats(srv->cl, &st);
			cl = json_pack("{s:s,s:b,s:I,s:I,s:I,s:I,s:I}", "node",
			    cluster_node(srv->cl), "up", st.up, "claims_ok",
			    (json_int_t)st.claims_ok, "claims_conflict",
			    (json_int_t)st.claims_conflict, "claims_failed",
			    (json_int_t)st.claims_failed, "routes_lost",
			    (json_int_t)st.refresh_lost, "redis_rtt_us",
			    (json_int_t)st.rtt_us);
		}
		j = json_pack("{s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:I,"
		    "s:I,s:{s:I,s:I,s:b,s:I,s:o}}", "version", MGROK_VERSION,
		    "started_ms", (json_int_t)started, "uptime_s",
		    (json_int_t)(up_ms / 1000), "addr", addr, "domain",
		    cf->domain, "http_addr", cf->http_addr, "https_addr",
		    cf->https_addr, "sessions", (json_int_t)srv->nauthed,
		    "tunnels", (json_int_t)srv->reg.count, "reload", "count",
		    (json_int_t)rs.reloads, "failures", (json_int_t)rs.failures,
		    "ok", rs.reloads == 0 || srv->reload_ok, "time_ms",
		    (json_int_t)srv->reload_time * 1000, "error",
		    jtext(srv->reload_err));
		if (j != NULL)
			json_object_set_new(j, "cluster", cl);
		else
			json_decref(cl);
		web_reply_json(req, 200, j);
	}
}

static void
h_sessions(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	json_t *l = json_array();
	const struct session *s;

	TAILQ_FOREACH(s, &a->srv->sessions, link)
		if (s->authed)
			json_array_append_new(l, session_json(s));
	web_reply_json(req, 200, json_pack("{s:o}", "sessions", l));
}

/* the number after prefix in the path, or 0 */
static uint64_t
path_id(struct admin *a, struct evhttp_request *req, const char *prefix)
{
	const char *p = web_path(a->web, req);
	size_t pl = strlen(prefix);
	char *end;
	unsigned long long v;

	if (p == NULL || strncmp(p, prefix, pl) != 0 || p[pl] < '1' ||
	    p[pl] > '9')
		return 0;
	v = strtoull(p + pl, &end, 10);
	return *end == '\0' ? (uint64_t)v : 0;
}

static void
h_session_one(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	uint64_t id = path_id(a, req, "/api/v1/sessions/");
	const char *why = web_query(a->web, req, "reason");
	char text[300];
	struct session *s;

	if (id == 0) {
		web_reply_error(req, 404, "no such session (expected "
		    "/api/v1/sessions/ID)");
		return;
	}
	if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
		TAILQ_FOREACH(s, &a->srv->sessions, link)
			if (s->id == id && s->authed) {
				web_reply_json(req, 200, session_json(s));
				return;
			}
		web_reply_error(req, 404, "no session %llu",
		    (unsigned long long)id);
		return;
	}
	snprintf(text, sizeof(text), "kicked by an operator%s%.200s",
	    why && why[0] ? ": " : "", why ? why : "");
	if (a->ops.kick == NULL || a->ops.kick(a->srv, id, text) < 0) {
		web_reply_error(req, 404, "no session %llu",
		    (unsigned long long)id);
		return;
	}
	web_reply_json(req, 200, json_pack("{s:I}", "kicked",
	    (json_int_t)id));
}

static void
h_tunnels(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	json_t *l = json_array();
	const struct proxy *px;

	LIST_FOREACH(px, &a->srv->reg.all, link)
		json_array_append_new(l, tunnel_json(px));
	web_reply_json(req, 200, json_pack("{s:o}", "tunnels", l));
}

static void
h_tunnel_one(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	uint64_t id = path_id(a, req, "/api/v1/tunnels/");
	const struct proxy *px = id && id <= UINT32_MAX ?
	    registry_get(&a->srv->reg, (uint32_t)id) : NULL;

	if (px == NULL) {
		web_reply_error(req, 404, "no such tunnel");
		return;
	}
	web_reply_json(req, 200, tunnel_json(px));
}

static void
h_reload(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	char err[600] = "";

	if (a->ops.reload == NULL) {
		web_reply_json(req, 501, json_pack("{s:b,s:s}", "ok", 0,
		    "error", "this server cannot reload (embedded without a "
		    "configuration source)"));
		return;
	}
	if (a->ops.reload(a->srv, err, sizeof(err)) < 0) {
		web_reply_json(req, 422, json_pack("{s:b,s:o}", "ok", 0,
		    "error", jtext(err)));
		return;
	}
	web_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static void
h_events(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;

	web_sse(a->web, req, a->srv->m.feed);
}

/* ---- the cluster view ---- */

/*
 * The view is read from Redis, so the reply comes later, from the fetch's
 * answer. If the request's connection closes meanwhile, evhttp detaches
 * the request and frees it at the reply (web.h): the answer is still
 * sent, to nobody. What must not outlive the admin listener is the
 * pending request itself: admin_stop answers it before the listener goes.
 */

static void
clreq_end(struct clreq *r)
{
	LIST_REMOVE(r, link);
	r->a->nclreqs--;
	free(r);
}

static void
on_cluster_view(void *arg, json_t *j, const char *err)
{
	struct clreq *r = arg;

	if (j != NULL)
		web_reply_json(r->req, 200, j);
	else
		web_reply_json(r->req, 503, json_pack("{s:o,s:s,s:{s:b,s:o}}",
		    "error", jtext(err), "node", cluster_node(r->a->srv->cl),
		    "store", "up", cluster_up(r->a->srv->cl), "error",
		    jtext(err)));
	clreq_end(r);
}

static void
h_cluster(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct server *srv = a->srv;
	struct clreq *r;
	char err[300];

	if (srv->cl == NULL) {
		web_reply_error(req, 404, "this server is not in a cluster "
		    "(it was started without --cluster)");
		return;
	}
	if (!cluster_up(srv->cl)) {
		snprintf(err, sizeof(err), "the cluster store is unreachable: "
		    "%s", cluster_down_why(srv->cl));
		web_reply_json(req, 503, json_pack("{s:o,s:s,s:{s:b,s:o}}",
		    "error", jtext(err), "node", cluster_node(srv->cl), "store",
		    "up", 0, "error", jtext(cluster_down_why(srv->cl))));
		return;
	}
	if (a->nclreqs >= CLUSTER_VIEWS) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Retry-After", "1");
		web_reply_error(req, 503, "%u views of the cluster are being "
		    "read already: try again in a moment", a->nclreqs);
		return;
	}
	r = xcalloc(1, sizeof(*r));
	r->a = a;
	r->req = req;
	r->f = clview_fetch(srv->base, cluster_store(srv->cl),
	    cluster_node(srv->cl), NULL, on_cluster_view, r, err, sizeof(err));
	if (r->f == NULL) {
		free(r);
		web_reply_json(req, 503, json_pack("{s:o,s:s,s:{s:b,s:o}}",
		    "error", jtext(err), "node", cluster_node(srv->cl), "store",
		    "up", cluster_up(srv->cl), "error", jtext(err)));
		return;
	}
	LIST_INSERT_HEAD(&a->clreqs, r, link);
	a->nclreqs++;
}

/* ---- the traffic history ---- */

static struct thist *
hist_find(struct admin *a, uint32_t id, int make)
{
	struct thist *free_slot = NULL;

	for (int i = 0; i < TRAFFIC_TUNNELS; i++) {
		if (a->hist[i].px_id == id)
			return &a->hist[i];
		if (a->hist[i].px_id == 0 && free_slot == NULL)
			free_slot = &a->hist[i];
	}
	if (!make || free_slot == NULL)
		return NULL;
	memset(free_slot, 0, sizeof(*free_slot));
	free_slot->px_id = id;
	return free_slot;
}

static void
traffic_tick(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	const struct proxy *px;
	unsigned slot = a->head;

	/* tunnels that ended give their slot back */
	for (int i = 0; i < TRAFFIC_TUNNELS; i++)
		if (a->hist[i].px_id && registry_get(&a->srv->reg,
		    a->hist[i].px_id) == NULL)
			a->hist[i].px_id = 0;
	for (int i = 0; i < TRAFFIC_TUNNELS; i++)
		for (int d = 0; d < 2; d++)
			a->hist[i].d[d][slot] = 0;
	LIST_FOREACH(px, &a->srv->reg.all, link) {
		struct thist *h = hist_find(a, px->id, 0);
		int fresh = h == NULL;
		int young = px->created_unix_ms >= (int64_t)time(NULL) * 1000 -
		    2000 * TRAFFIC_INTERVAL_S;
		if (h == NULL && (h = hist_find(a, px->id, 1)) == NULL)
			continue; /* more tunnels than the history keeps */
		for (int d = 0; d < 2; d++) {
			uint64_t now = smet_px_bytes(px, (enum smet_dir)d);
			/* a tunnel seen for the first time: its bytes so far
			 * belong to this interval if it is that young */
			h->d[d][slot] = fresh ? (young ? now : 0) :
			    now < h->last[d] ? 0 : now - h->last[d];
			h->last[d] = now;
		}
	}
	a->head = (a->head + 1) % TRAFFIC_SAMPLES;
	if (a->nsamples < TRAFFIC_SAMPLES)
		a->nsamples++;
}

static void
h_traffic(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	json_t *l = json_array();

	for (int i = 0; i < TRAFFIC_TUNNELS; i++) {
		const struct thist *h = &a->hist[i];
		const struct proxy *px = h->px_id ? registry_get(&a->srv->reg,
		    h->px_id) : NULL;
		json_t *in, *out;
		if (px == NULL)
			continue;
		in = json_array();
		out = json_array();
		for (unsigned k = 0; k < a->nsamples; k++) {
			unsigned idx = (a->head + TRAFFIC_SAMPLES - a->nsamples +
			    k) % TRAFFIC_SAMPLES;
			json_array_append_new(in,
			    json_integer((json_int_t)h->d[0][idx]));
			json_array_append_new(out,
			    json_integer((json_int_t)h->d[1][idx]));
		}
		json_array_append_new(l, json_pack("{s:I,s:o,s:o,s:o}", "id",
		    (json_int_t)px->id, "name", jtext(px->name), "in", in, "out",
		    out));
	}
	web_reply_json(req, 200, json_pack("{s:i,s:o}", "interval_s",
	    TRAFFIC_INTERVAL_S, "tunnels", l));
}

/* ---- life ---- */

int
admin_start(struct server *srv, const struct admin_ops *ops, char *err,
    size_t errcap)
{
	const struct server_conf *cf = srv->cf;
	struct web_conf wc;
	struct admin *a;
	struct timeval tv = { TRAFFIC_INTERVAL_S, 0 };

	if (cf->admin_addr[0] == '\0')
		return 0;
	memset(&wc, 0, sizeof(wc));
	wc.what = "admin";
	wc.addr = cf->admin_addr;
	wc.token = cf->admin_token;
	wc.cert = cf->admin_cert;
	wc.key = cf->admin_key;
	wc.client_ca = cf->admin_client_ca;
	wc.require_auth_off_loopback = 1;
	wc.assets = "dashboard";
	a = xcalloc(1, sizeof(*a));
	a->srv = srv;
	a->ops = *ops;
	LIST_INIT(&a->clreqs);
	if ((a->web = web_new(srv->base, &wc, err, errcap)) == NULL) {
		free(a);
		return -1;
	}
	web_route(a->web, EVHTTP_REQ_GET, "/metrics", h_metrics, a);
	web_route(a->web, EVHTTP_REQ_GET, "/healthz", h_healthz, a);
	web_route(a->web, EVHTTP_REQ_GET, "/readyz", h_readyz, a);
	web_route(a->web, EVHTTP_REQ_GET, "/api/v1/info", h_info, a);
	web_route(a->web, EVHTTP_REQ_GET, "/api/v1/sessions", h_sessions, a);
	web_route(a->web, EVHTTP_REQ_GET | EVHTTP_REQ_DELETE,
	    "/api/v1/sessions/", h_session_one, a);
	web_route(a->web, EVHTTP_REQ_GET, "/api/v1/tunnels", h_tunnels, a);
	web_route(a->web, EVHTTP_REQ_GET, "/api/v1/tunnels/", h_tunnel_one, a);
	web_route(a->web, EVHTTP_REQ_GET, "/api/v1/traffic", h_traffic, a);
	web_route(a->web, EVHTTP_REQ_POST, "/api/v1/reload", h_reload, a);
	web_route(a->web, EVHTTP_REQ_GET, "/api/v1/events", h_events, a);
	web_route(a->web, EVHTTP_REQ_GET, "/api/v1/cluster", h_cluster, a);
	a->tick = event_new(srv->base, -1, EV_PERSIST, traffic_tick, a);
	event_add(a->tick, &tv);
	srv->admin = a;
	log_info("admin listener on http%s://%s (%s)", cf->admin_cert ? "s" :
	    "", web_addr(a->web), cf->admin_token ? "Bearer token required" :
	    cf->admin_client_ca ? "client certificates required" :
	    "open: loopback only");
	return 0;
}

void
admin_stop(struct server *srv)
{
	struct admin *a = srv->admin;
	struct clreq *r;

	if (a == NULL)
		return;
	srv->admin = NULL;
	if (a->tick)
		event_free(a->tick);
	/* views still being read: no answer will come for them; the
	 * request is answered (or freed, its connection gone) before the
	 * listener frees its connections */
	while ((r = LIST_FIRST(&a->clreqs)) != NULL) {
		clview_cancel(r->f);
		web_reply_error(r->req, 503, "the server is stopping");
		clreq_end(r);
	}
	web_free(a->web);
	free(a);
}

const char *
admin_addr(const struct server *srv)
{
	return srv->admin ? web_addr(srv->admin->web) : NULL;
}
