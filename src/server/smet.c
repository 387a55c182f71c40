/* smet.c: the server's figures and events (smet.h). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <netinet/in.h>

#include <jansson.h>

#include "metrics/events.h"
#include "metrics/jtext.h"
#include "metrics/metrics.h"
#include "server/server_int.h"
#include "server/cluster.h"
#include "server/forward.h"
#include "server/smet.h"
#include "util/log.h"
#include "util/mtime.h"
#include "util/net.h"
#include "util/version.h"

#define EVENTS_KEEP 1000

static const char *const dir_name[2] = { "in", "out" };
static const char *const refusal_name[SMET_REF_COUNT] = {
	"no_stream", "client_refused", "http_max_conns",
	"tunnel_max_conns", "no_tunnel", "max_handshakes", "max_pending",
	"shutting_down", "not_allowed_source", "rate_limited",
	"too_many_visitors", "untrusted_source", "bad_proxy_header",
	"service_down",
};
static const char *const auth_name[SMET_AUTH_COUNT] = {
	"bad_hello", "bad_token", "method_not_allowed", "timeout", "tls",
	"expired",
};
static const char *const tls_name[SMET_TLS_COUNT] = {
	"control", "https", "stream_proxy",
};
static const char *const class_name[6] = {
	"none", "1xx", "2xx", "3xx", "4xx", "5xx",
};

static const char *
state_name(enum sess_state st)
{
	switch (st) {
	case SESS_INIT:
	case SESS_HANDSHAKEN:
		return "handshake";
	case SESS_AUTHENTICATED:
	case SESS_BOUND:
		return "authenticated";
	case SESS_FORWARDING:
		return "forwarding";
	}
	return "handshake";
}

/* the per-series gauges that are cheaper to count at scrape time */
static void
smet_collect(void *arg)
{
	struct server *srv = arg;
	struct smet *m = &srv->m;
	int64_t by_state[3] = { 0, 0, 0 }, by_type[PROXY_TLS + 1];
	int64_t grace = 0;
	struct session *s;
	struct proxy *px;

	memset(by_type, 0, sizeof(by_type));
	TAILQ_FOREACH(s, &srv->sessions, link) {
		const char *n = state_name(s->state);
		by_state[n[0] == 'h' ? 0 : n[0] == 'a' ? 1 : 2]++;
	}
	met_set(met_at1(m->f_sessions, "handshake"), by_state[0]);
	met_set(met_at1(m->f_sessions, "authenticated"), by_state[1]);
	met_set(met_at1(m->f_sessions, "forwarding"), by_state[2]);
	LIST_FOREACH(px, &srv->reg.all, link) {
		if (px->type <= PROXY_TLS)
			by_type[px->type]++;
		if (px->sess == NULL)
			grace++;
	}
	for (int t = PROXY_TCP; t <= PROXY_TLS; t++)
		if (proxy_type_name((uint8_t)t))
			met_set(met_at1(m->f_tunnels,
			    proxy_type_name((uint8_t)t)), by_type[t]);
	met_set(met_at0(met_gauge(m->reg, "mgrok_leases_held",
	    "Tunnels waiting in their lease's grace for their client", NULL)),
	    grace);
	met_set(met_at0(met_gauge(m->reg, "mgrok_http_connections",
	    "Public HTTP(S) connections open", NULL)), srv->nhconns);
	met_set(met_at0(met_gauge(m->reg, "mgrok_tls_handshakes_pending",
	    "TLS handshakes and SNI peeks under way", NULL)),
	    (int64_t)srv->nhandshakes + srv->npeeks);
}

void
smet_init(struct server *srv)
{
	struct smet *m = &srv->m;
	struct met_family *f;

	m->reg = metrics_new(srv->cf->metrics_max_series);
	m->feed = evfeed_new(EVENTS_KEEP);
	m->detail_events = srv->cf->admin_addr[0] != '\0';
	met_set(met_at1(met_gauge(m->reg, "mgrok_build_info",
	    "The running mgrok's version (always 1)", "version"),
	    MGROK_VERSION), 1);
	met_set(met_at0(met_gauge(m->reg, "mgrok_start_time_seconds",
	    "When the server started, Unix time", NULL)),
	    (int64_t)time(NULL));
	m->f_sessions = met_gauge(m->reg, "mgrok_sessions",
	    "Client sessions by state", "state");
	m->sessions_total = met_at0(met_counter(m->reg, "mgrok_sessions_total",
	    "Control connections accepted", NULL));
	f = met_counter(m->reg, "mgrok_auth_failures_total",
	    "Sessions refused at authentication, by reason", "reason");
	for (int i = 0; i < SMET_AUTH_COUNT; i++)
		m->auth_fail[i] = met_at1(f, auth_name[i]);
	{
		struct met_family *hf = met_counter(m->reg,
		    "mgrok_health_reports_total", "Health reports of the "
		    "agents' checks that changed a tunnel's state", "state");
		m->health_reports[0] = met_at1(hf, "down");
		m->health_reports[1] = met_at1(hf, "up");
	}
	m->tunnels_down = met_at0(met_gauge(m->reg, "mgrok_tunnels_down",
	    "Tunnels whose agent reports their service down", NULL));
	m->ejections = met_at0(met_counter(m->reg,
	    "mgrok_group_ejections_total", "Group members taken out for a "
	    "while after refused streams", NULL));
	m->group_retries = met_at0(met_counter(m->reg,
	    "mgrok_group_retries_total", "Refused visitors tried again on "
	    "another member of their group", NULL));
	if (srv->cf->cluster[0]) {
		struct met_family *cf = met_counter(m->reg,
		    "mgrok_cluster_route_claims_total", "Route claims in the "
		    "cluster's store, by result", "result");
		m->cl_claims[0] = met_at1(cf, "ok");
		m->cl_claims[1] = met_at1(cf, "conflict");
		m->cl_claims[2] = met_at1(cf, "failed");
		m->cl_lost = met_at0(met_counter(m->reg,
		    "mgrok_cluster_routes_lost_total", "Routes another node "
		    "took over (a refresh refused by its epoch)", NULL));
		m->cl_cmds = met_at0(met_counter(m->reg,
		    "mgrok_cluster_redis_commands_total", "Commands answered "
		    "by the cluster's Redis", NULL));
		m->cl_errors = met_at0(met_counter(m->reg,
		    "mgrok_cluster_redis_errors_total", "Redis commands failed "
		    "(an error, a timeout, a lost connection)", NULL));
		m->cl_up = met_at0(met_gauge(m->reg, "mgrok_cluster_redis_up",
		    "1 when the cluster's Redis is reachable", NULL));
		m->cl_rtt = met_at0(met_gauge(m->reg,
		    "mgrok_cluster_redis_rtt_microseconds", "Smoothed round "
		    "trip of Redis commands", NULL));
		cf = met_counter(m->reg,
		    "mgrok_cluster_forwarded_connections_total", "Visitors "
		    "forwarded to the node that owns their route (out) or "
		    "taken from another node (in)", "direction");
		m->fw_conns[0] = met_at1(cf, "out");
		m->fw_conns[1] = met_at1(cf, "in");
		cf = met_counter(m->reg, "mgrok_cluster_forwarded_bytes_total",
		    "Bytes of visitors forwarded to other nodes, from the "
		    "visitors (in) and to them (out)", "direction");
		m->fw_bytes[0] = met_at1(cf, "in");
		m->fw_bytes[1] = met_at1(cf, "out");
		m->fw_lookups = met_at0(met_counter(m->reg,
		    "mgrok_cluster_route_lookups_total", "Route lookups in "
		    "Redis (a visitor of a route not cached, or cached over "
		    "2 s ago)", NULL));
		m->fw_hits = met_at0(met_counter(m->reg,
		    "mgrok_cluster_route_cache_hits_total", "Visitors of "
		    "another node's route served from the cache: no Redis "
		    "command", NULL));
		m->fw_refused = met_at0(met_counter(m->reg,
		    "mgrok_cluster_forward_refused_total", "Forwarded visitors "
		    "refused: no owner, a stale epoch, a fenced route, a "
		    "node link down", NULL));
		m->fw_links = met_at0(met_gauge(m->reg,
		    "mgrok_cluster_node_links", "Node links up", NULL));
		m->fw_nodes = met_at0(met_gauge(m->reg,
		    "mgrok_cluster_nodes_up", "Nodes of the cluster alive in "
		    "the store (their records refreshed within 6 s), this one "
		    "included", NULL));
		m->fw_ports = met_at0(met_gauge(m->reg,
		    "mgrok_cluster_forwarded_ports", "TCP and UDP ports "
		    "listened on for other nodes' tunnels", NULL));
	}
	m->f_reg_refused = met_counter(m->reg,
	    "mgrok_registrations_refused_total",
	    "Tunnel registrations refused (RegisterErr), by code", "code");
	m->f_client_info = met_gauge(m->reg, "mgrok_client_info",
	    "An authenticated client session (always 1)",
	    "@client,@token,@version,@remote_addr");
	m->f_client_bytes = met_counter(m->reg, "mgrok_client_bytes_total",
	    "Public bytes through a client's tunnels, in from visitors and "
	    "out to them", "@client,direction");
	m->f_tunnels = met_gauge(m->reg, "mgrok_tunnels",
	    "Registered tunnels by type", "type");
	f = met_counter(m->reg, "mgrok_bytes_total",
	    "Public bytes through every tunnel and the stream proxy",
	    "direction");
	m->bytes[SMET_IN] = met_at1(f, "in");
	m->bytes[SMET_OUT] = met_at1(f, "out");
	m->f_tun_bytes = met_counter(m->reg, "mgrok_tunnel_bytes_total",
	    "Public bytes through a tunnel, in from visitors and out to them",
	    "@tunnel,@public,direction");
	m->f_tun_conns = met_counter(m->reg, "mgrok_tunnel_connections_total",
	    "Public connections (and UDP flows) routed to a tunnel",
	    "@tunnel,@public");
	m->f_tun_active = met_gauge(m->reg, "mgrok_tunnel_connections_active",
	    "Public connections (and UDP flows) of a tunnel open now",
	    "@tunnel,@public");
	m->conns_active = met_at0(met_gauge(m->reg, "mgrok_connections_active",
	    "Public connections (and UDP flows) open now, all tunnels", NULL));
	m->f_tun_throttled = met_counter(m->reg,
	    "mgrok_tunnel_bandwidth_throttled_total",
	    "Times a connection of a tunnel waited for its bandwidth limit",
	    "@tunnel,@public,direction");
	f = met_counter(m->reg, "mgrok_bandwidth_throttled_total",
	    "Times a public connection waited for its bandwidth limit, all "
	    "tunnels", "direction");
	m->throttled[SMET_IN] = met_at1(f, "in");
	m->throttled[SMET_OUT] = met_at1(f, "out");
	f = met_counter(m->reg, "mgrok_connections_refused_total",
	    "Public connections and streams refused, by reason", "reason");
	for (int i = 0; i < SMET_REF_COUNT; i++)
		m->refused[i] = met_at1(f, refusal_name[i]);
	m->streams_opened = met_at0(met_counter(m->reg,
	    "mgrok_streams_opened_total",
	    "Data streams opened to clients", NULL));
	m->streams_active = met_at0(met_gauge(m->reg, "mgrok_streams_active",
	    "Data streams open now (TCP and stream proxy relays)", NULL));
	m->f_http_req = met_counter(m->reg, "mgrok_http_requests_total",
	    "HTTP requests through HTTP tunnels, by method and status class",
	    "method,code");
	m->f_tun_http = met_counter(m->reg,
	    "mgrok_tunnel_http_requests_total",
	    "HTTP requests through a tunnel, by status class",
	    "@tunnel,@public,code");
	m->http_latency = met_at0(met_histogram(m->reg,
	    "mgrok_http_request_duration_seconds",
	    "From an HTTP request's head to its response's head", NULL,
	    met_latency_bounds, met_nlatency_bounds));
	f = met_counter(m->reg, "mgrok_udp_datagrams_total",
	    "UDP datagrams through UDP tunnels", "direction");
	m->udp_dgrams[SMET_IN] = met_at1(f, "in");
	m->udp_dgrams[SMET_OUT] = met_at1(f, "out");
	m->f_udp_drops = met_counter(m->reg, "mgrok_udp_drops_total",
	    "UDP datagrams dropped, by direction and reason",
	    "direction,reason");
	m->f_tun_dgrams = met_counter(m->reg,
	    "mgrok_tunnel_udp_datagrams_total",
	    "UDP datagrams through a tunnel", "@tunnel,@public,direction");
	m->udp_flows_total = met_at0(met_counter(m->reg,
	    "mgrok_udp_flows_total", "UDP flows opened", NULL));
	m->udp_flows_active = met_at0(met_gauge(m->reg,
	    "mgrok_udp_flows_active", "UDP flows open now", NULL));
	f = met_counter(m->reg, "mgrok_tls_handshakes_total",
	    "TLS handshakes completed, by listener", "listener");
	for (int i = 0; i < SMET_TLS_COUNT; i++)
		m->tls_ok[i] = met_at1(f, tls_name[i]);
	m->f_tls_fail = met_counter(m->reg,
	    "mgrok_tls_handshake_failures_total",
	    "TLS handshakes that failed, by listener and reason",
	    "listener,reason");
	m->leases_expired = met_at0(met_counter(m->reg,
	    "mgrok_leases_expired_total",
	    "Leases whose client did not come back within the grace", NULL));
	m->leases_resumed = met_at0(met_counter(m->reg,
	    "mgrok_leases_resumed_total",
	    "Tunnels taken back by their client from a lease", NULL));
	f = met_counter(m->reg, "mgrok_reloads_total",
	    "Configuration reloads, by result", "result");
	m->reloads_ok = met_at1(f, "applied");
	m->reloads_failed = met_at1(f, "refused");
	m->fd_limit = met_at0(met_counter(m->reg,
	    "mgrok_accept_fd_limit_total",
	    "accept(2) at the process's file descriptor limit", NULL));
	f = met_counter(m->reg, "mgrok_stream_proxy_connections_total",
	    "Stream proxy connections (TLS and DTLS), by result", "result");
	m->sp_conns = met_at1(f, "relayed");
	m->sp_refused = met_at1(f, "refused");
	metrics_on_collect(m->reg, smet_collect, srv);
	metrics_process(m->reg);
}

void
smet_free(struct server *srv)
{
	if (srv->m.reg)
		metrics_off_collect(srv->m.reg, smet_collect, srv);
	evfeed_free(srv->m.feed);
	metrics_free(srv->m.reg);
	memset(&srv->m, 0, sizeof(srv->m));
}

static void
hexid(const uint8_t *id, char out[2 * CTRL_ID_LEN + 1])
{
	for (int i = 0; i < CTRL_ID_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* the tunnel's "public" label: its port or host name */
static const char *
px_public(const struct proxy *px, char *buf, size_t cap)
{
	if (proxy_is_http(px->type))
		snprintf(buf, cap, "%s", px->host);
	else
		snprintf(buf, cap, "%s/%u", proxy_type_name(px->type),
		    px->port);
	return buf;
}

/* ---- sessions ---- */

void
smet_session_up(struct session *s)
{
	struct smet *m = &s->srv->m;
	static const uint8_t zero[CTRL_ID_LEN];
	char id[2 * CTRL_ID_LEN + 1];
	const char *v[4];

	/* a legacy client without an id: one per session */
	if (memcmp(s->client_id, zero, CTRL_ID_LEN) == 0)
		snprintf(id, sizeof(id), "session-%llu",
		    (unsigned long long)s->id);
	else
		hexid(s->client_id, id);
	v[0] = id;
	v[1] = s->identity;
	v[2] = s->agent;
	v[3] = s->peer;
	s->m_info = met_hold(m->f_client_info, v);
	met_set(s->m_info, 1);
	for (int d = 0; d < 2; d++) {
		s->m_bytes[d] = met_hold2(m->f_client_bytes, id, dir_name[d]);
		met_link(s->m_bytes[d], m->bytes[d]);
	}
	s->connected_unix_ms = (int64_t)time(NULL) * 1000;
	{
		json_t *j = json_pack("{s:I,s:s,s:o,s:s,s:o}", "session",
		    (json_int_t)s->id, "client_id", id, "token",
		    jtext(s->identity), "remote_addr", s->peer, "version",
		    jtext(s->agent));
		evfeed_emit(m->feed, "session_connected", j);
	}
}

void
smet_session_down(struct session *s, const char *why)
{
	struct smet *m = &s->srv->m;

	if (s->m_info == NULL)
		return; /* never authenticated */
	if (!s->replaced)
		evfeed_emit(m->feed, s->kicked ? "session_kicked" :
		    "session_lost", json_pack("{s:I,s:o}", "session",
		    (json_int_t)s->id, "reason", jtext(why)));
	met_release(s->m_info);
	s->m_info = NULL;
	for (int d = 0; d < 2; d++) {
		met_release(s->m_bytes[d]);
		s->m_bytes[d] = NULL;
	}
}

void
smet_session_replaced(struct session *old, const struct session *by)
{
	old->replaced = 1;
	evfeed_emit(old->srv->m.feed, "session_replaced", json_pack(
	    "{s:I,s:I}", "session", (json_int_t)old->id, "by",
	    (json_int_t)by->id));
}

void
smet_auth_failed(struct server *srv, enum smet_auth why)
{
	met_inc(srv->m.auth_fail[why]);
}

void
smet_register_refused(struct session *s, uint8_t code, const char *name,
    const char *why)
{
	static const char *const codes[] = { "other", "protocol",
		"auth_failed", "method_not_allowed", "in_use", "not_allowed",
		"limit", "unsupported", "shutdown", "unreachable", "internal" };
	const char *c = code < sizeof(codes) / sizeof(codes[0]) ?
	    codes[code] : "other";

	met_inc(met_at1(s->srv->m.f_reg_refused, c));
	evfeed_emit(s->srv->m.feed, "register_refused", json_pack(
	    "{s:I,s:o,s:s,s:o,s:o}", "session", (json_int_t)s->id, "token",
	    jtext(s->identity), "code", c, "name", jtext(name), "reason",
	    jtext(why)));
}

/* ---- tunnels ---- */

static void
px_link_session(struct proxy *px)
{
	for (int d = 0; d < 2; d++)
		met_link(px->m_bytes[d], px->sess && px->sess->m_bytes[d] ?
		    px->sess->m_bytes[d] : px->srv->m.bytes[d]);
}

void
smet_tunnel_up(struct proxy *px, int resumed, const char *url)
{
	struct smet *m = &px->srv->m;
	char pub[300];

	if (px->m_bytes[0] == NULL) {
		const char *v[3];
		px_public(px, pub, sizeof(pub));
		v[0] = px->name;
		v[1] = pub;
		for (int d = 0; d < 2; d++) {
			v[2] = dir_name[d];
			px->m_bytes[d] = met_hold(m->f_tun_bytes, v);
		}
		for (int d = 0; d < 2; d++) {
			v[2] = dir_name[d];
			px->m_throttled[d] = met_hold(m->f_tun_throttled, v);
			met_link(px->m_throttled[d], m->throttled[d]);
		}
		px->m_conns = met_hold2(m->f_tun_conns, px->name, pub);
		px->m_active = met_hold2(m->f_tun_active, px->name, pub);
		met_link(px->m_active, m->conns_active);
		if (px->type == PROXY_UDP)
			for (int d = 0; d < 2; d++) {
				v[2] = dir_name[d];
				px->m_dgrams[d] = met_hold(m->f_tun_dgrams, v);
				met_link(px->m_dgrams[d], m->udp_dgrams[d]);
			}
		if (proxy_is_http(px->type))
			for (int c = 0; c < 6; c++) {
				v[2] = class_name[c];
				px->m_http[c] = met_hold(m->f_tun_http, v);
			}
		px->created_unix_ms = (int64_t)time(NULL) * 1000;
	}
	px_link_session(px);
	if (resumed)
		met_inc(m->leases_resumed);
	evfeed_emit(m->feed, "tunnel_up", json_pack("{s:I,s:o,s:s,s:o,s:I,"
	    "s:b}", "tunnel", (json_int_t)px->id, "name", jtext(px->name),
	    "tunnel_type", proxy_type_name(px->type), "public", jtext(url),
	    "session", px->sess ? (json_int_t)px->sess->id : 0, "resumed",
	    resumed));
}

void
smet_tunnel_grace(struct proxy *px)
{
	/* the session's series go with it: count into the totals */
	for (int d = 0; d < 2; d++)
		met_link(px->m_bytes[d], px->srv->m.bytes[d]);
	evfeed_emit(px->srv->m.feed, "lease_held", json_pack("{s:I,s:o,s:I}",
	    "tunnel", (json_int_t)px->id, "name", jtext(px->name), "grace_s",
	    (json_int_t)px->srv->cf->lease_grace_s));
}

void
smet_lease_expired(struct proxy *px)
{
	met_inc(px->srv->m.leases_expired);
	evfeed_emit(px->srv->m.feed, "lease_expired", json_pack("{s:I,s:o}",
	    "tunnel", (json_int_t)px->id, "name", jtext(px->name)));
}

void
smet_tunnel_down(struct proxy *px, const char *why)
{
	if (px->m_bytes[0] == NULL)
		return;
	evfeed_emit(px->srv->m.feed, "tunnel_down", json_pack("{s:I,s:o,s:s,"
	    "s:s}", "tunnel", (json_int_t)px->id, "name", jtext(px->name),
	    "tunnel_type", proxy_type_name(px->type), "reason", why));
	/* no unlinking: a connection still open holds these series and
	 * counts through them into the totals until it ends */
	for (int d = 0; d < 2; d++) {
		met_release(px->m_bytes[d]);
		px->m_bytes[d] = NULL;
	}
	met_release(px->m_conns);
	met_release(px->m_active);
	px->m_conns = px->m_active = NULL;
	for (int c = 0; c < 6; c++) {
		met_release(px->m_http[c]);
		px->m_http[c] = NULL;
	}
	for (int d = 0; d < 2; d++) {
		met_release(px->m_dgrams[d]);
		px->m_dgrams[d] = NULL;
		met_release(px->m_throttled[d]);
		px->m_throttled[d] = NULL;
	}
}

/* ---- traffic ---- */

void
smet_bytes(struct proxy *px, enum smet_dir d, uint64_t n)
{
	if (px != NULL && px->m_bytes[d] != NULL)
		met_add(px->m_bytes[d], n);
	else if (px != NULL)
		met_add(px->srv->m.bytes[d], n);
}

void
smet_conn_begin(struct smet_conn *c, struct proxy *px,
    const struct sockaddr *peer)
{
	memset(c, 0, sizeof(*c));
	c->start_ms = mtime_ms();
	c->px_id = px->id;
	if (peer)
		memcpy(&c->peer, peer, peer->sa_family == AF_INET6 ?
		    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	for (int d = 0; d < 2; d++)
		c->bytes[d] = met_ref(px->m_bytes[d]);
	c->active = met_ref(px->m_active);
	met_inc(px->m_conns);
	met_gauge_add(c->active, 1);
}

void
smet_conn_bytes(struct smet_conn *c, enum smet_dir d, uint64_t n)
{
	c->n[d] += n;
	met_add(c->bytes[d], n);
}

void
smet_conn_tally(struct smet_conn *c, uint64_t in, uint64_t out)
{
	c->n[SMET_IN] = in;
	c->n[SMET_OUT] = out;
}

void
smet_conn_end(struct server *srv, struct smet_conn *c, const char *why)
{
	struct proxy *px;
	char a[NET_ADDRSTR_MAX];

	if (c->active == NULL)
		return;
	met_gauge_add(c->active, -1);
	for (int d = 0; d < 2; d++) {
		met_release(c->bytes[d]);
		c->bytes[d] = NULL;
	}
	met_release(c->active);
	c->active = NULL;
	if (!srv->m.detail_events)
		return;
	px = registry_get(&srv->reg, c->px_id);
	evfeed_emit(srv->m.feed, "connection_closed", json_pack(
	    "{s:I,s:o,s:s,s:s,s:f,s:I,s:I,s:s}", "tunnel",
	    (json_int_t)c->px_id, "name", jtext(px ? px->name : ""),
	    "tunnel_type", px ? proxy_type_name(px->type) : "", "remote_addr",
	    c->peer.ss_family ? net_addr_str((struct sockaddr *)&c->peer, a,
	    sizeof(a)) : "", "duration_ms", (double)(mtime_ms() - c->start_ms),
	    "bytes_in", (json_int_t)c->n[0], "bytes_out", (json_int_t)c->n[1],
	    "reason", why));
}

uint64_t
smet_refused(struct server *srv, enum smet_refusal r)
{
	met_inc(srv->m.refused[r]);
	return met_value(srv->m.refused[r]);
}

void
smet_health(struct proxy *px, int was)
{
	struct smet *m = &px->srv->m;

	met_inc(m->health_reports[px->health > 0]);
	if (px->health < 0 && was >= 0)
		met_gauge_add(m->tunnels_down, 1);
	else if (px->health >= 0 && was < 0)
		met_gauge_add(m->tunnels_down, -1);
	evfeed_emit(m->feed, "tunnel_health", json_pack("{s:I,s:o,s:s,s:o}",
	    "tunnel", (json_int_t)px->id, "name", jtext(px->name), "state",
	    px->health > 0 ? "up" : "down", "reason", jtext(px->health_reason)));
}

/* totals read from a module (cluster, forward) into counters: what each
 * grew by since the last scrape */
static void
add_since(struct met_series **c, const uint64_t *v, uint64_t *seen, int n)
{
	for (int i = 0; i < n; i++) {
		if (v[i] > seen[i])
			met_add(c[i], v[i] - seen[i]);
		seen[i] = v[i];
	}
}

void
smet_cluster(struct server *srv, const struct cluster_stats *st)
{
	struct smet *m = &srv->m;
	struct met_series *c[6] = { m->cl_claims[0], m->cl_claims[1],
		m->cl_claims[2], m->cl_lost, m->cl_cmds, m->cl_errors };
	uint64_t v[6] = { st->claims_ok, st->claims_conflict,
		st->claims_failed, st->refresh_lost, st->commands, st->errors };

	if (m->cl_up == NULL)
		return;
	add_since(c, v, m->cl_seen, 6);
	met_set(m->cl_up, st->up);
	met_set(m->cl_rtt, (int64_t)st->rtt_us);
}

void
smet_forward(struct server *srv, const struct forward_stats *st)
{
	struct smet *m = &srv->m;
	struct met_series *c[5] = { m->fw_conns[0], m->fw_conns[1],
		m->fw_lookups, m->fw_hits, m->fw_refused };
	uint64_t v[5] = { st->out_conns, st->in_conns, st->lookups,
		st->cache_hits, st->refused };

	if (m->fw_links == NULL)
		return;
	add_since(c, v, m->fw_seen, 5);
	met_set(m->fw_links, st->links);
	met_set(m->fw_ports, st->ports);
	met_set(m->fw_nodes, st->nodes_up);
}

void
smet_health_gone(struct server *srv, int was)
{
	if (was < 0)
		met_gauge_add(srv->m.tunnels_down, -1);
}

void
smet_member_ejected(struct proxy *px)
{
	struct smet *m = &px->srv->m;

	met_inc(m->ejections);
	evfeed_emit(m->feed, "member_ejected", json_pack("{s:I,s:o,s:I}",
	    "tunnel", (json_int_t)px->id, "name", jtext(px->name), "seconds",
	    (json_int_t)px->eject_s));
}

void
smet_group_retry(struct server *srv)
{
	met_inc(srv->m.group_retries);
}

uint64_t
smet_visitor_refused(struct server *srv, const struct proxy *px,
    enum smet_refusal r, const struct sockaddr *sa, const char *detail)
{
	struct smet *m = &srv->m;
	uint64_t n = smet_refused(srv, r), now;
	char a[NET_ADDRSTR_MAX];

	if (!m->detail_events)
		return n;
	now = mtime_ms();
	if (m->ref_ev_ms[r] != 0 && now - m->ref_ev_ms[r] < 1000) {
		m->ref_ev_skipped[r]++;
		return n;
	}
	m->ref_ev_ms[r] = now;
	evfeed_emit(m->feed, "visitor_refused", json_pack(
	    "{s:I,s:o,s:s,s:s,s:o,s:I}", "tunnel",
	    (json_int_t)(px ? px->id : 0), "name", jtext(px ? px->name : ""),
	    "reason", refusal_name[r], "remote_addr", sa ? net_addr_str(sa, a,
	    sizeof(a)) : "", "detail", jtext(detail ? detail : ""),
	    "suppressed", (json_int_t)m->ref_ev_skipped[r]));
	m->ref_ev_skipped[r] = 0;
	return n;
}

void
smet_unrouted(struct server *srv, enum smet_dir d, uint64_t n)
{
	if (n)
		met_add(srv->m.bytes[d], n);
}

void
smet_stream_opened(struct server *srv)
{
	met_inc(srv->m.streams_opened);
}

void
smet_relay_add(struct server *srv, int delta)
{
	met_gauge_add(srv->m.streams_active, delta);
}

int64_t
smet_relays(struct server *srv)
{
	return met_gauge_value(srv->m.streams_active);
}

void
smet_sproxy(struct server *srv, int refused, uint64_t in, uint64_t out)
{
	if (refused) {
		met_inc(srv->m.sp_refused);
		return;
	}
	met_inc(srv->m.sp_conns);
	met_add(srv->m.bytes[SMET_IN], in);
	met_add(srv->m.bytes[SMET_OUT], out);
}

void
smet_fd_limit(struct server *srv)
{
	met_inc(srv->m.fd_limit);
}

uint64_t
smet_fd_limits(struct server *srv)
{
	return met_value(srv->m.fd_limit);
}

static const char *
method_label(const char *m)
{
	static const char *const known[] = { "GET", "HEAD", "POST", "PUT",
		"DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE" };

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(m, known[i]) == 0)
			return known[i];
	return "OTHER";
}

void
smet_http_request(struct server *srv, struct proxy *px, const char *method,
    const char *uri, int status, uint64_t latency_us,
    const struct sockaddr *peer, uint64_t in, uint64_t out)
{
	struct smet *m = &srv->m;
	int cls = status >= 100 && status < 600 ? status / 100 : 0;
	char a[NET_ADDRSTR_MAX];

	met_inc(met_at2(m->f_http_req, method_label(method),
	    class_name[cls]));
	if (px && px->m_http[cls])
		met_inc(px->m_http[cls]);
	if (px && status > 0 && latency_us > 0) {
		met_observe(m->http_latency, (double)latency_us / 1e6);
		px->http_lat_sum_us += latency_us;
		px->http_lat_n++;
	}
	if (!m->detail_events)
		return;
	evfeed_emit(m->feed, "request", json_pack("{s:I,s:o,s:o,s:o,s:i,s:f,"
	    "s:s,s:I,s:I}", "tunnel", px ? (json_int_t)px->id : 0, "name",
	    jtext(px ? px->name : ""), "method", jtext(method), "uri",
	    jtext(uri), "status", status, "duration_ms",
	    (double)latency_us / 1000.0, "remote_addr", peer ?
	    net_addr_str(peer, a, sizeof(a)) : "", "bytes_in", (json_int_t)in,
	    "bytes_out", (json_int_t)out));
}

/* ---- UDP ---- */

void
smet_udp(struct proxy *px, enum smet_dir d, uint64_t dgrams)
{
	/* the tunnel's series is linked to the server's */
	met_add(px->m_dgrams[d] ? px->m_dgrams[d] : px->srv->m.udp_dgrams[d],
	    dgrams);
}

void
smet_bw_throttled(struct proxy *px, enum smet_dir d)
{
	if (px != NULL && px->m_throttled[d] != NULL)
		met_inc(px->m_throttled[d]);
}

void
smet_udp_drop(struct server *srv, enum smet_dir d, const char *why,
    uint64_t n)
{
	met_add(met_at2(srv->m.f_udp_drops, dir_name[d], why), n);
}

void
smet_udp_flow(struct server *srv, int delta)
{
	if (delta > 0)
		met_inc(srv->m.udp_flows_total);
	met_gauge_add(srv->m.udp_flows_active, delta);
}

/* ---- TLS, reloads ---- */

void
smet_tls(struct server *srv, enum smet_tls l, const char *fail_why)
{
	const char *r;

	if (fail_why == NULL) {
		met_inc(srv->m.tls_ok[l]);
		return;
	}
	r = strstr(fail_why, "timed out") || strstr(fail_why, "timeout") ?
	    "timeout" : strstr(fail_why, "certificate") ? "certificate" :
	    strstr(fail_why, "closed") || strstr(fail_why, "EOF") ?
	    "closed" : "protocol";
	met_inc(met_at2(srv->m.f_tls_fail, tls_name[l], r));
}

void
smet_reload(struct server *srv, int ok, const char *text)
{
	met_inc(ok ? srv->m.reloads_ok : srv->m.reloads_failed);
	evfeed_emit(srv->m.feed, ok ? "reload_applied" : "reload_refused",
	    json_pack("{s:o}", ok ? "summary" : "error", jtext(text)));
}

/* ---- reading ---- */

static const char *const udp_drop_reasons[] = { "client_away", "bad_size",
	"no_stream", "stream_full", "send_failed", "policy",
	"untrusted_source", "bad_proxy_header", "bandwidth" };

void
smet_summary(struct server *srv, struct smet_summary *o)
{
	static const char *const methods[] = { "GET", "HEAD", "POST", "PUT",
		"DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER" };
	struct smet *m = &srv->m;

	memset(o, 0, sizeof(*o));
	o->sessions = met_value(m->sessions_total);
	for (int i = 0; i < SMET_AUTH_COUNT; i++)
		o->auth_failures += met_value(m->auth_fail[i]);
	o->streams = met_value(m->streams_opened);
	o->relays = met_gauge_value(m->streams_active);
	for (int i = 0; i < SMET_REF_COUNT; i++)
		o->refused += met_value(m->refused[i]);
	o->refused += met_value(m->sp_refused);
	for (int d = 0; d < 2; d++) {
		o->bytes[d] = met_value(m->bytes[d]);
		o->udp[d] = met_value(m->udp_dgrams[d]);
		for (size_t r = 0; r < sizeof(udp_drop_reasons) /
		    sizeof(udp_drop_reasons[0]); r++) {
			const char *v[2] = { dir_name[d], udp_drop_reasons[r] };
			o->udp_drops[d] += met_lookup(m->f_udp_drops, v);
		}
	}
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		for (int c = 0; c < 6; c++) {
			const char *v[2] = { methods[i], class_name[c] };
			o->http_requests += met_lookup(m->f_http_req, v);
		}
}

void
smet_reloads(const struct server *srv, unsigned long long *all,
    unsigned long long *failed)
{
	*failed = met_value(srv->m.reloads_failed);
	*all = *failed + met_value(srv->m.reloads_ok);
}

uint64_t
smet_total(struct server *srv, enum smet_dir d)
{
	return met_value(srv->m.bytes[d]);
}

uint64_t
smet_px_bytes(const struct proxy *px, enum smet_dir d)
{
	return met_value(px->m_bytes[d]);
}

uint64_t
smet_px_conns(const struct proxy *px)
{
	return met_value(px->m_conns);
}

uint64_t
smet_px_dgrams(const struct proxy *px, enum smet_dir d)
{
	return met_value(px->m_dgrams[d]);
}

int64_t
smet_px_active(const struct proxy *px)
{
	return met_gauge_value(px->m_active);
}

uint64_t
smet_sess_bytes(const struct session *s, enum smet_dir d)
{
	return met_value(s->m_bytes[d]);
}
