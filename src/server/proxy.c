/* proxy.c: registered proxies, their leases (docs/protocol.md 4.6) and their
 * public TCP listeners. */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "mux/mux.h"
#include "proto/proxyproto.h"
#include "proto/sthdr.h"
#include "relay/bridge.h"
#include "relay/relay.h"
#include "util/mtime.h"
#include "util/ratelim.h"
#include "server/accept.h"
#include "conf/policy.h"
#include "cluster/routes.h"
#include "server/climits.h"
#include "server/cluster.h"
#include "server/forward.h"
#include "server/group.h"
#include "server/server_int.h"
#include "util/crypto.h"
#include "util/err.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/net.h"
#include "util/xmalloc.h"

/* ":PORT", or "" for the scheme's default port. */
static const char *
port_suffix(char *buf, size_t cap, uint16_t port, uint16_t dflt)
{
	if (port == dflt)
		buf[0] = '\0';
	else
		snprintf(buf, cap, ":%u", port);
	return buf;
}

const char *
proxy_url(const struct proxy *px, char *buf, size_t cap)
{
	const struct server *srv = px->srv;
	const char *host = srv->host_for_urls;
	char a[8], b[8];

	if (px->type == PROXY_HTTP && srv->http_lst &&
	    (srv->https_tls || srv->https_certs))
		snprintf(buf, cap, "http://%s%s https://%s%s", px->host,
		    port_suffix(a, sizeof(a), srv->http_port, 80), px->host,
		    port_suffix(b, sizeof(b), srv->https_port, 443));
	else if (px->type == PROXY_HTTP && srv->http_lst)
		snprintf(buf, cap, "http://%s%s", px->host,
		    port_suffix(a, sizeof(a), srv->http_port, 80));
	else if (px->type == PROXY_HTTP || px->type == PROXY_HTTPS)
		snprintf(buf, cap, "https://%s%s", px->host,
		    port_suffix(a, sizeof(a), srv->https_port, 443));
	else if (px->type == PROXY_TLS)
		snprintf(buf, cap, "tls://%s%s", px->host,
		    port_suffix(a, sizeof(a), srv->https_port, 443));
	else {
		if (host[0] == '\0' && px->sess)
			host = px->sess->local_host;
		snprintf(buf, cap, "%s://%s:%u", proxy_type_name(px->type),
		    host, px->port);
	}
	return buf;
}

void
proxy_reset_close(int fd)
{
	struct linger lg = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* ---- the end of a tunnel ---- */

int
proxy_route_key(const struct proxy *px, char *buf, size_t cap)
{
	char port[8];

	if (px->group_id && !px->is_group)
		return -1;
	if (proxy_is_http(px->type))
		return routes_key(ROUTE_HOST, px->host, buf, cap) > 0 ? 0 : -1;
	snprintf(port, sizeof(port), "%u", px->port);
	return routes_key(px->type == PROXY_UDP ? ROUTE_UDP : ROUTE_TCP, port,
	    buf, cap) > 0 ? 0 : -1;
}

/* a group without members: it ends, unless one joined meanwhile */
static void
group_on_empty(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *g = arg;

	if (g->nmembers > 0)
		return;
	log_info("group %s: its last member left", g->name);
	g->end_why = "its last member left";
	proxy_free(g);
}

void
proxy_free(struct proxy *px)
{
	if (px == NULL)
		return;
	/* detach first: whatever the stop below sets off (an error page, a
	 * log line) finds the tunnel gone, never half-freed */
	uint32_t id = px->id;

	registry_remove(&px->srv->reg, px);
	if (px->cl_epoch && px->srv->cl) {
		/* the route is free for another node now */
		char key[ROUTES_KEY_MAX];
		if (proxy_route_key(px, key, sizeof(key)) == 0)
			cluster_release(px->srv->cl, key, px->cl_epoch);
	}
	if (px->ops->log)
		px->ops->log(px);
	if (px->ops->stop)
		px->ops->stop(px);
	px->id = id; /* for the event */
	smet_tunnel_down(px, px->end_why ? px->end_why : "ended");
	if (px->grace)
		event_free(px->grace);
	ratelim_free(px->rl_conns);
	ratelim_free(px->rl_http);
	shaper_unref(px->shaper); /* open connections hold their own */
	free(px->allow);
	free(px->deny);
	if (px->health < 0) {
		int was = px->health;
		px->health = 0;
		smet_health_gone(px->srv, was);
	}
	if (px->is_group)
		group_orphan_members(px);
	{
		struct proxy *g = group_remove(px);
		free(px);
		/* the group ends with its last member, once the caller's
		 * walk over the tunnels is done (it may be the next one) */
		if (g != NULL) {
			struct timeval now = { 0, 0 };
			if (g->grace == NULL)
				g->grace = evtimer_new(g->srv->base,
				    group_on_empty, g);
			evtimer_add(g->grace, &now);
		}
	}
}

void
proxy_unregister(struct proxy *px)
{
	if (px->end_why == NULL)
		px->end_why = "unregistered by its client";
	if (px->sess) {
		LIST_REMOVE(px, sess_link);
		px->sess->nproxies--;
		px->sess = NULL;
	}
	proxy_free(px);
}

static void
proxy_on_grace_end(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;
	char n[LOG_ESC_MAX];

	log_info("lease of %s \"%s\" on %s expired: %u waiting connections "
		 "refused, released",
	    proxy_type_name(px->type), log_esc(px->name, strlen(px->name), n,
	    sizeof(n)), proxy_where(px), px->npending + px->nhwait);
	smet_lease_expired(px);
	px->end_why = "lease expired";
	proxy_free(px);
}

const char *
proxy_where(const struct proxy *px)
{
	static char buf[280];

	if (proxy_is_http(px->type))
		return px->host;
	snprintf(buf, sizeof(buf), "port %u", px->port);
	return buf;
}

/* The session died or was replaced: hold the lease for the grace period. */
void
proxy_session_lost(struct proxy *px)
{
	struct server *srv = px->srv;
	struct timeval tv = { (time_t)srv->cf->lease_grace_s, 0 };
	char n[LOG_ESC_MAX];

	px->refuse_waiting = px->sess && px->sess->goodbye_received;
	px->sess = NULL;
	if (srv->cf->lease_grace_s == 0 || srv->shutting_down) {
		px->end_why = srv->shutting_down ? "server shutting down" :
		    "session lost";
		proxy_free(px);
		return;
	}
	smet_tunnel_grace(px);
	if (px->grace == NULL)
		px->grace = evtimer_new(srv->base, proxy_on_grace_end, px);
	evtimer_add(px->grace, &tv);
	log_info("lease of %s \"%s\" on %s held for %u s",
	    proxy_type_name(px->type), log_esc(px->name, strlen(px->name), n,
	    sizeof(n)), proxy_where(px), srv->cf->lease_grace_s);
}

/* ---- TCP tunnels: a listener and the connections waiting for the
 * client ---- */

static void
tcp_pending_close_all(struct proxy *px)
{
	struct pending *pd;

	while ((pd = TAILQ_FIRST(&px->pending)) != NULL) {
		TAILQ_REMOVE(&px->pending, pd, link);
		proxy_reset_close(pd->fd);
		free(pd);
	}
	px->npending = 0;
}

/* A visitor of a TCP tunnel, its address known (from the socket, or
 * from a trusted load balancer's PROXY header): the owner's rules, then
 * a stream to the client, or a wait for it. */
static void
tcp_visitor(struct proxy *px, int fd, const struct sockaddr *sa)
{
	struct pending *pd;
	unsigned retry;

	if (forward_fenced(px->srv, px)) {
		/* cut off from the cluster's store past its claim: the port
		 * may be another node's now */
		proxy_reset_close(fd);
		return;
	}
	if (px->is_group || px->health < 0) {
		/* a group's member for this visitor; a tunnel whose service
		 * is down takes none */
		struct proxy *m = px->is_group ? group_pick(px, sa, NULL, NULL,
		    0, 0) : NULL;
		if (m == NULL) {
			smet_visitor_refused(px->srv, px, SMET_REF_DOWN, sa,
			    px->is_group ? "no member of the group is up" :
			    px->health_reason);
			proxy_reset_close(fd);
			return;
		}
		px = m;
	}
	if (proxy_visitor_allowed(px, sa) < 0 ||
	    proxy_rate_ok(px, 0, sa, &retry) < 0 ||
	    proxy_visitors_ok(px) < 0) {
		proxy_reset_close(fd);
		return;
	}
	net_sock_tune(fd);
	if (px->sess) {
		proxy_open_stream(px, fd, sa);
		return;
	}
	if (px->refuse_waiting || px->npending >= px->srv->cf->max_pending) {
		proxy_reset_close(fd);
		return;
	}
	/* the client is away: hold the connection until it returns */
	pd = xcalloc(1, sizeof(*pd));
	pd->fd = fd;
	memcpy(&pd->peer, sa, sa->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	TAILQ_INSERT_TAIL(&px->pending, pd, link);
	px->npending++;
}

/*
 * A connection from a trusted load balancer (--trusted-proxies): its
 * PROXY protocol header first, peeked until it is whole (edge-triggered:
 * the peeked bytes stay unread), then consumed; the address it carries is
 * the visitor's. Bounded in number by --max-handshakes and in time.
 */
#define PPWAIT_TIMEOUT_S 10
struct ppwait {
	LIST_ENTRY(ppwait) link;      /* srv->ppwaits */
	struct server *srv;
	struct event *ev;
	uint32_t px_id;
	int fd;
	struct sockaddr_storage peer;
};

static void
ppwait_free(struct ppwait *w, int close_fd)
{
	LIST_REMOVE(w, link);
	w->srv->nppwaits--;
	event_free(w->ev);
	if (close_fd)
		proxy_reset_close(w->fd);
	free(w);
}

static void
ppwait_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct ppwait *w = arg;
	uint8_t buf[16 + PROXYPROTO_V2_MAX_LEN];
	struct proxyproto_hdr h;
	const char *why = "closed before its PROXY protocol header";
	char a[NET_ADDRSTR_MAX], e[LOG_ESC_MAX];
	struct proxy *px;
	ssize_t n = 0;
	int rc = MG_EPROTO;

	loop_note_io();
	if (what & EV_TIMEOUT)
		why = "no whole PROXY protocol header in time";
	else if ((n = recv(fd, buf, sizeof(buf), MSG_PEEK)) > 0)
		rc = proxyproto_parse(buf, (size_t)n, &h, &why);
	else if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (rc == MG_EAGAIN)
		return; /* the next bytes raise a new edge */
	if (rc > 0 && recv(fd, buf, (size_t)rc, 0) != rc) {
		rc = MG_EPROTO;
		why = "the PROXY protocol header could not be read";
	}
	if (rc <= 0) {
		log_info("load balancer %s: connection refused: %s",
		    net_addr_str((struct sockaddr *)&w->peer, a, sizeof(a)),
		    log_esc(why, strlen(why), e, sizeof(e)));
		smet_visitor_refused(w->srv, NULL, SMET_REF_PROXY_HEADER,
		    (struct sockaddr *)&w->peer, why);
		ppwait_free(w, 1);
		return;
	}
	px = registry_get(&w->srv->reg, w->px_id);
	if (px == NULL) {
		ppwait_free(w, 1);
		return;
	}
	{
		/* a LOCAL header (a health check) or UNSPEC: the balancer's
		 * own address stands */
		struct sockaddr_storage src = h.family == AF_INET ||
		    h.family == AF_INET6 ? h.src : w->peer;
		ppwait_free(w, 0);
		tcp_visitor(px, fd, (struct sockaddr *)&src);
	}
}

void
proxy_tcp_inject(struct server *srv, struct proxy *px, int fd,
    const struct sockaddr *sa, struct evbuffer *prefix)
{
	(void)srv;
	(void)prefix;
	tcp_visitor(px, fd, sa);
}

/* stop the waits (the server ends) */
void
proxy_ppwait_stop(struct server *srv)
{
	while (!LIST_EMPTY(&srv->ppwaits))
		ppwait_free(LIST_FIRST(&srv->ppwaits), 1);
}

static void
tcp_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct proxy *px = arg;
	struct server *srv = px->srv;
	const struct server_conf *cf = srv->cf;
	struct ppwait *w;
	struct timeval tv = { PPWAIT_TIMEOUT_S, 0 };
	int et = event_base_get_features(srv->base) & EV_FEATURE_ET;

	loop_note_io();
	if (cf->ntrusted == 0) {
		tcp_visitor(px, fd, sa);
		return;
	}
	if (!acl_match_addr(cf->trusted, cf->ntrusted, sa, 0) ||
	    srv->nppwaits >= cf->max_handshakes || !et) {
		smet_visitor_refused(srv, px, SMET_REF_UNTRUSTED, sa,
		    "not a trusted proxy");
		proxy_reset_close(fd);
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->srv = srv;
	w->fd = fd;
	w->px_id = px->id;
	memcpy(&w->peer, sa, (size_t)salen < sizeof(w->peer) ? (size_t)salen :
	    sizeof(w->peer));
	w->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST | EV_ET,
	    ppwait_on_read, w);
	if (w->ev == NULL)
		abort();
	LIST_INSERT_HEAD(&srv->ppwaits, w, link);
	srv->nppwaits++;
	event_add(w->ev, &tv);
	event_active(w->ev, EV_READ, 1); /* the header may be there */
}

static int
tcp_start(struct proxy *px, int fd)
{
	px->lst = accept_listen(px->srv, fd, tcp_on_accept, px, 0);
	return px->lst ? 0 : MG_EIO;
}

static void
tcp_serve_waiting(struct proxy *px)
{
	struct pending *pd;

	if (px->npending)
		log_info("port %u: serving %u connections that waited for the "
			 "client",
		    px->port, px->npending);
	while (px->sess && (pd = TAILQ_FIRST(&px->pending)) != NULL) {
		TAILQ_REMOVE(&px->pending, pd, link);
		px->npending--;
		proxy_open_stream(px, pd->fd, (struct sockaddr *)&pd->peer);
		free(pd);
	}
}

static void
tcp_stop(struct proxy *px)
{
	tcp_pending_close_all(px);
	if (px->lst)
		evconnlistener_free(px->lst);
	px->lst = NULL;
}

const struct proxy_ops proxy_tcp_ops = {
	.start = tcp_start,
	.serve_waiting = tcp_serve_waiting,
	.stop = tcp_stop,
};

/* ---- registration ---- */

/* The public socket of a new proxy; the fd or -1 (errno). */
static int
proxy_listen(struct server *srv, uint8_t type, uint16_t port)
{
	if (type == PROXY_UDP)
		return net_bind_udp(srv->cf->bind_addr, port);
	return net_listen_tcp(srv->cf->bind_addr, port, 1024);
}

static int
name_is(const struct proxy *px, const struct ctrl_str *name)
{
	return strlen(px->name) == name->len &&
	    memcmp(px->name, name->p, name->len) == 0;
}

/* The name the server gives a nameless tunnel: tcp-10000, http-HOST. */
static void
auto_name(uint8_t type, uint16_t port, const char *host, char *out,
    size_t cap)
{
	if (proxy_is_http(type))
		snprintf(out, cap, "%s-%.240s", proxy_type_name(type), host);
	else
		snprintf(out, cap, "%s-%u", proxy_type_name(type), port);
}

/* The lease of this (identity, client_id) that reg asks for, or NULL. */
static struct proxy *
lease_find(struct session *s, const struct ctrl_register *reg,
    const char *host)
{
	static const uint8_t zero[CTRL_ID_LEN];
	struct proxy *px;
	int legacy = memcmp(s->client_id, zero, CTRL_ID_LEN) == 0;

	for (px = registry_owned(&s->srv->reg, s->identity, s->client_id);
	     px != NULL; px = LIST_NEXT(px, owner_link)) {
		if (px->type != reg->proxy_type)
			continue;
		if (reg->name.len == 0) {
			/* a restarted client that never learnt its name: the
			 * unbound lease of its local port is its own */
			if (legacy || px->sess != NULL || !px->auto_name ||
			    px->local_port != reg->local_port)
				continue;
		} else if (!name_is(px, &reg->name)) {
			continue;
		}
		/* legacy clients have no id: the port must match too */
		if (legacy && !proxy_is_http(px->type) &&
		    reg->remote_port != px->port)
			continue;
		if (!proxy_is_http(px->type) && reg->remote_port != 0 &&
		    reg->remote_port != px->port)
			continue;
		if (host[0] && strcmp(host, px->host) != 0)
			continue;
		return px;
	}
	return NULL;
}

static void
proxy_attach(struct proxy *px, struct session *s)
{
	if (px->sess == s)
		return;
	if (px->sess) {
		/* a legacy client's older session that is still connected */
		LIST_REMOVE(px, sess_link);
		px->sess->nproxies--;
	}
	px->sess = s;
	px->refuse_waiting = 0;
	LIST_INSERT_HEAD(&s->proxies, px, sess_link);
	s->nproxies++;
	if (px->grace)
		evtimer_del(px->grace);
}

void
proxy_serve_waiting(struct proxy *px)
{
	if (px->sess && px->ops->serve_waiting)
		px->ops->serve_waiting(px);
}

static const char *
reg_option_name(const struct ctrl_register *reg, int http)
{
	if (!http && reg->subdomain.p)
		return "subdomain";
	if (!http && reg->hostname.p)
		return "hostname";
	if ((!http || reg->proxy_type == PROXY_TLS) && reg->basic_auth.p)
		return "basic auth";
	if (reg->proxy_type == PROXY_UDP && reg->proxy_protocol == 1)
		return "PROXY protocol v1 (v2 is the one for UDP)";
	/* proxy_protocol (0x06) is the agent's own business: it writes the
	 * header; the bandwidth limit (0x04) and allowed and denied sources
	 * (0x07, 0x08) are kept with the tunnel */
	return NULL;
}

static const char *const reserved_subdomains[] = { "www", "api", "admin",
	"dashboard", "app" };

/* A DNS name of labels [a-z0-9-], lower-cased into out; 0 or -1. */
static int
host_norm(const uint8_t *p, size_t len, char *out, size_t cap)
{
	if (len == 0 || len >= cap || len > 253)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)tolower(p[i]);
		if (!isalnum(c) && c != '-' && c != '.')
			return -1;
		if (c == '.' && (i == 0 || i + 1 == len || p[i - 1] == '.'))
			return -1;
		out[i] = (char)c;
	}
	out[len] = '\0';
	return 0;
}

#define FAIL(c, ...)                                                           \
	do {                                                                   \
		*code = (c);                                                   \
		snprintf(why, whycap, __VA_ARGS__);                            \
		return MG_EINVAL;                                              \
	} while (0)

/* The host an HTTP, HTTPS or TLS tunnel asks for ("" = any); 0 or an
 * error. */
static int
http_host(struct server *srv, const struct ctrl_register *reg, char *host,
    size_t hcap, uint8_t *code, char *why, size_t whycap)
{
	const struct server_conf *cf = srv->cf;
	const char *tname = proxy_type_name(reg->proxy_type);
	char sub[64];

	host[0] = '\0';
	if ((reg->proxy_type == PROXY_TLS && srv->https_lst == NULL) ||
	    (reg->proxy_type == PROXY_HTTPS && srv->https_tls == NULL &&
		srv->https_certs == NULL) ||
	    (srv->http_lst == NULL && srv->https_lst == NULL))
		FAIL(CODE_UNSUPPORTED, "%s tunnels are not enabled on this "
		    "server (no %s)", tname, reg->proxy_type == PROXY_HTTP ?
		    "--http-addr or --https-addr" :
		    reg->proxy_type == PROXY_TLS ? "--https-addr" :
		    "--https-cert");
	if (reg->basic_auth.p && (reg->basic_auth.len >= 256 ||
	    memchr(reg->basic_auth.p, ':', reg->basic_auth.len) == NULL))
		FAIL(CODE_UNSUPPORTED, "basic auth must be user:password");
	if (reg->hostname.p) {
		if (host_norm(reg->hostname.p, reg->hostname.len, host,
		    hcap) < 0)
			FAIL(CODE_NOT_ALLOWED, "not a valid host name");
		return 0;
	}
	if (reg->subdomain.p) {
		if (cf->domain[0] == '\0')
			FAIL(CODE_NOT_ALLOWED, "this server has no --domain for "
			    "subdomains; use a hostname");
		if (reg->subdomain.len > 63 || host_norm(reg->subdomain.p,
		    reg->subdomain.len, sub, sizeof(sub)) < 0 ||
		    strchr(sub, '.'))
			FAIL(CODE_NOT_ALLOWED, "a subdomain is 1 to 63 letters, "
			    "digits or -");
		for (size_t i = 0; i < sizeof(reserved_subdomains) /
		    sizeof(reserved_subdomains[0]); i++)
			if (strcmp(sub, reserved_subdomains[i]) == 0)
				FAIL(CODE_NOT_ALLOWED, "subdomain \"%s\" is "
				    "reserved", sub);
		snprintf(host, hcap, "%s.%.190s", sub, cf->domain);
		return 0;
	}
	if (cf->domain[0] == '\0')
		FAIL(CODE_NOT_ALLOWED, "this server has no --domain: ask for a "
		    "hostname");
	return 0;
}

/* the letters and digits of random host names: short, readable,
 * unambiguous */
#define RANDOM_HOST_CHARS "abcdefghjkmnpqrstuvwxyz23456789"

/*
 * 1 if s asks for host as the name another node of its cluster gave its
 * agent: the server is in a cluster, the agent says the servers at its
 * addresses share state (CTRL_CAP_CLUSTER), and host is one that
 * http_random_host makes (a letter and four more of its characters, then
 * --domain). Its route decides (server.c, cl_owned_only).
 */
static int
host_given_elsewhere(const struct session *s, const char *host)
{
	const char *dom = s->srv->cf->domain;
	size_t dl = strlen(dom);

	return s->srv->cl != NULL && (s->caps & CTRL_CAP_CLUSTER) && dl &&
	    strlen(host) == 6 + dl && host[5] == '.' &&
	    strcmp(host + 6, dom) == 0 && strspn(host, RANDOM_HOST_CHARS) >= 5
	    && strchr("23456789", host[0]) == NULL;
}

/* A free random host under --domain: short, readable, unambiguous. */
static int
http_random_host(struct server *srv, char *host, size_t hcap)
{
	static const char al[] = RANDOM_HOST_CHARS;
	char sub[6];

	for (int tries = 0; tries < 64; tries++) {
		uint8_t r[5];
		crypto_random(r, sizeof(r));
		for (int i = 0; i < 5; i++)
			sub[i] = al[r[i] % (sizeof(al) - 1)];
		sub[0] = al[r[0] % 23]; /* a letter first */
		sub[5] = '\0';
		snprintf(host, hcap, "%s.%.190s", sub, srv->cf->domain);
		if (registry_by_host(&srv->reg, host) == NULL)
			return 0;
	}
	return MG_ELIMIT;
}

/* Claim a public port for a TCP or UDP tunnel: the listening fd, or an
 * error. */
static int
port_claim(struct server *srv, const struct ctrl_register *reg,
    const struct conf_policy *pol, uint16_t *port_out, uint8_t *code,
    char *why, size_t whycap)
{
	const struct server_conf *cf = srv->cf;
	int udp = reg->proxy_type == PROXY_UDP, fd;
	uint16_t port = reg->remote_port;

	if (port) {
		if (port < cf->start_port || port > cf->end_port)
			FAIL(CODE_NOT_ALLOWED, "port %u is outside the allowed "
			    "range %u-%u", port, cf->start_port, cf->end_port);
		if (registry_by_port(&srv->reg, udp, port) != NULL)
			FAIL(CODE_IN_USE, "port %u is in use by another tunnel",
			    port);
		/* forwarded to another node until now: the claim decides */
		forward_take_port(srv, udp, port);
		if ((fd = proxy_listen(srv, reg->proxy_type, port)) < 0)
			FAIL(errno == EADDRINUSE ? CODE_IN_USE :
			    errno == EACCES ? CODE_NOT_ALLOWED : CODE_INTERNAL,
			    "port %u: %s", port, errno == EADDRINUSE ?
			    "in use on the server" : strerror(errno));
		*port_out = port;
		return fd;
	}
	for (uint32_t p = cf->start_port; p <= cf->end_port; p++) {
		char pb[8];
		if (registry_by_port(&srv->reg, udp, (uint16_t)p) != NULL)
			continue;
		/* any port: one of the identity's own */
		if (pol && pol->nports && policy_check_port(pol, (uint16_t)p,
		    pb, sizeof(pb)) != NULL)
			continue;
		if ((fd = proxy_listen(srv, reg->proxy_type, (uint16_t)p)) >=
		    0) {
			*port_out = (uint16_t)p;
			return fd;
		}
	}
	if (pol && pol->nports) {
		char list[200];
		FAIL(CODE_LIMIT, "no free port among %s's ports %s within the "
		    "server's %u-%u", pol->name, policy_format_ports(pol, list,
		    sizeof(list)), cf->start_port, cf->end_port);
	}
	FAIL(CODE_LIMIT, "no free port in %u-%u", cf->start_port,
	    cf->end_port);
}

/*
 * The policy of an identity ("alice", "cert:SUBJECT") in the
 * configuration now in force: looked up at each use, never kept, so a
 * reload's policy applies at once. An unnamed token has none.
 */
const struct conf_policy *
proxy_policy(const struct server *srv, const char *identity)
{
	const struct server_conf *cf = srv->cf;

	if (strncmp(identity, "cert:", 5) == 0)
		return policy_for_subject(cf, identity + 5);
	for (size_t i = 0; i < cf->ntokens; i++)
		if (cf->token_names[i] && strcmp(cf->token_names[i],
		    identity) == 0)
			return policy_for_token(cf, i);
	return NULL;
}

/* a visitor from sa may reach px: its owner's allow and deny lists; 0, or
 * -1 (the caller refuses it and counts SMET_REF_POLICY) */
int
proxy_visitor_allowed(struct proxy *px, const struct sockaddr *sa)
{
	const struct conf_policy *pol = proxy_policy(px->srv, px->identity);
	char buf[200];

	/* the agent's own list (--allow-cidr), within the token's */
	if (px->nallow && sa != NULL && !acl_match_addr(px->allow,
	    px->nallow, sa, 0)) {
		snprintf(buf, sizeof(buf), "not in the tunnel's allowed "
		    "sources");
		goto refuse;
	}
	if (px->ndeny && sa != NULL && acl_match_addr(px->deny, px->ndeny,
	    sa, 0)) {
		snprintf(buf, sizeof(buf), "in the tunnel's denied sources");
		goto refuse;
	}
	if (pol == NULL || (pol->ncidrs == 0 && pol->ndeny_cidrs == 0) ||
	    sa == NULL || policy_allows_addr(pol, sa, buf, sizeof(buf)) ==
	    NULL)
		return 0;
refuse:
	smet_visitor_refused(px->srv, px, SMET_REF_POLICY, sa, buf);
	if (log_enabled(LOG_DEBUG)) {
		char a[NET_ADDRSTR_MAX];
		log_debug("%s: visitor %s refused: %s", proxy_where(px),
		    net_addr_str(sa, a, sizeof(a)), buf);
	}
	return -1;
}

/* the visitor's address as a limiter key: 4 bytes for IPv4 (and mapped
 * IPv6), 16 for IPv6; 0 when there is none */
static size_t
addr_key(const struct sockaddr *sa, uint8_t key[16])
{
	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		memcpy(key, &((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr, 4);
		return 4;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(key, &a->s6_addr[12], 4);
			return 4;
		}
		memcpy(key, a, 16);
		return 16;
	}
	return 0;
}

/*
 * The owner's per-source rate (new connections, or HTTP requests) for one
 * more from sa: 0, or -1 with *retry_s (seconds, at least 1) when over
 * it. The limiter is the tunnel's, made on first use and retuned when a
 * reload changed the rate; at most 4096 sources are tracked.
 */
int
proxy_rate_ok(struct proxy *px, int http, const struct sockaddr *sa,
    unsigned *retry_s)
{
	const struct conf_policy *pol = proxy_policy(px->srv, px->identity);
	uint64_t rate = pol == NULL ? 0 : http ? pol->limits.http_requests :
	    pol->limits.new_conns;
	struct ratelim **rl = http ? &px->rl_http : &px->rl_conns;
	uint64_t *cur = http ? &px->rl_http_rate : &px->rl_conns_rate;
	uint64_t now = mtime_us(), wait_ms = 0;
	uint8_t key[16];
	size_t kl;

	if (rate == 0 || (kl = addr_key(sa, key)) == 0)
		return 0;
	if (*rl == NULL)
		*rl = ratelim_new(rate, rate, 4096);
	else if (*cur != rate)
		ratelim_set(*rl, rate, rate, now);
	*cur = rate;
	if (ratelim_allow(*rl, key, kl, now, &wait_ms) == 1)
		return 0;
	*retry_s = (unsigned)((wait_ms + 999) / 1000);
	if (*retry_s == 0)
		*retry_s = 1;
	smet_visitor_refused(px->srv, px, SMET_REF_RATE, sa,
	    "over the owner's rate");
	return -1;
}

/* one more visitor of px within its owner's limits.visitors: 0, or -1
 * (counted) when its tunnels have that many public connections open */
int
proxy_visitors_ok(struct proxy *px)
{
	const struct conf_policy *pol = proxy_policy(px->srv, px->identity);
	const struct proxy *o;
	struct counts_fig others;
	int64_t n = 0;

	if (pol == NULL || pol->limits.visitors == 0)
		return 0;
	LIST_FOREACH(o, &px->srv->reg.all, link)
		if (strcmp(o->identity, px->identity) == 0)
			n += smet_px_active(o);
	/* in a cluster, the other nodes' too (zero while never read) */
	climits_others(px->srv, px->identity, &others);
	n += (int64_t)others.visitors;
	if (n < (int64_t)pol->limits.visitors)
		return 0;
	smet_visitor_refused(px->srv, px, SMET_REF_VISITORS, NULL,
	    "the owner has limits.visitors open connections");
	return -1;
}

/*
 * The bandwidth limits of px: its own buckets take its agent's figure, the
 * parent (its owner's, shared by all the owner's tunnels) the token's
 * limits.bandwidth, as the policy in force says: a byte passes both, so
 * the lower one rules. Setting an unchanged rate changes nothing.
 */
void
proxy_shape(struct proxy *px)
{
	const struct conf_policy *pol = proxy_policy(px->srv, px->identity);
	struct shaper *tok = shaper_parent(px->shaper);
	uint64_t now = mtime_us();

	shaper_set_rate(px->shaper, SHAPER_IN, px->bw_agent, now);
	shaper_set_rate(px->shaper, SHAPER_OUT, px->bw_agent, now);
	shaper_set_rate(tok, SHAPER_IN, pol ? pol->limits.bw_in : 0, now);
	shaper_set_rate(tok, SHAPER_OUT, pol ? pol->limits.bw_out : 0, now);
}

/* A new tunnel's shaper, under its owner's shared one: that of another
 * tunnel of the owner, or a new one (it lives while a tunnel or an open
 * connection of the owner holds it). */
static struct shaper *
proxy_new_shaper(struct server *srv, const char *identity)
{
	struct shaper *tok = NULL, *sh;
	struct proxy *o;

	LIST_FOREACH(o, &srv->reg.all, link)
		if (o->shaper && strcmp(o->identity, identity) == 0) {
			tok = shaper_ref(shaper_parent(o->shaper));
			break;
		}
	if (tok == NULL)
		tok = shaper_new(NULL);
	sh = shaper_new(tok);
	shaper_unref(tok);
	return sh;
}

/* proxy_misfit: why px's owner's policy (as it is now) no longer allows
 * the tunnel, in buf; NULL when it still does */
const char *
proxy_misfit(struct proxy *px, char *buf, size_t cap)
{
	const struct conf_policy *pol = proxy_policy(px->srv, px->identity);
	const char *msg;

	if (pol == NULL)
		return NULL;
	if ((msg = policy_expired(pol, (int64_t)time(NULL), buf, cap)))
		return msg;
	/* a name under --domain was asked for as a subdomain */
	return proxy_side_misfit(px->srv, pol, px->type, px->port, px->host,
	    buf, cap);
}

/* a tunnel's own source list (RegisterEx 0x07 allowed, 0x08 denied; what
 * names it in messages): parsed into rules, or -1 with why naming the bad
 * one */
static int
reg_cidrs(const struct ctrl_str *src, unsigned n, const char *what,
    struct acl_rule **out, size_t *nout, char *why, size_t whycap)
{
	struct acl_rule *r;
	char item[128];
	const char *err;

	*out = NULL;
	*nout = 0;
	if (n == 0)
		return 0;
	r = xcalloc(n, sizeof(*r));
	for (unsigned i = 0; i < n; i++) {
		if (src[i].len >= sizeof(item)) {
			snprintf(why, whycap, "%s source %u is too long", what,
			    i);
			free(r);
			return -1;
		}
		memcpy(item, src[i].p, src[i].len);
		item[src[i].len] = '\0';
		if (policy_parse_cidr(item, &r[i], &err)) {
			char e[LOG_ESC_MAX];
			snprintf(why, whycap, "%s source \"%s\": %s", what,
			    log_esc(item, strlen(item), e, sizeof(e)), err);
			free(r);
			return -1;
		}
	}
	*out = r;
	*nout = n;
	return 0;
}

/* the tunnel's own allowed and denied sources into px (NULL: only check
 * them); 0, or -1 with why */
static int
reg_sources(const struct ctrl_register *reg, struct proxy *px, char *why,
    size_t whycap)
{
	struct acl_rule *a, *d;
	size_t na, nd;

	if (reg_cidrs(reg->allow_src, reg->n_allow_src, "allowed", &a, &na,
	    why, whycap) < 0)
		return -1;
	if (reg_cidrs(reg->deny_src, reg->n_deny_src, "denied", &d, &nd,
	    why, whycap) < 0) {
		free(a);
		return -1;
	}
	if (px == NULL) {
		free(a);
		free(d);
		return 0;
	}
	free(px->allow);
	free(px->deny);
	px->allow = a;
	px->nallow = na;
	px->deny = d;
	px->ndeny = nd;
	return 0;
}

/* a new tunnel's common fields (no public side, no name yet) */
static struct proxy *
proxy_alloc(struct server *srv, const struct proxy_ops *ops,
    const struct ctrl_register *reg, uint16_t port, const char *host,
    const char *identity, const uint8_t *client_id)
{
	struct proxy *px = xcalloc(1, sizeof(*px));

	px->srv = srv;
	px->ops = ops;
	px->type = reg->proxy_type;
	px->port = port;
	px->udp_fd = -1;
	px->local_port = reg->local_port;
	snprintf(px->host, sizeof(px->host), "%s", host);
	snprintf(px->identity, sizeof(px->identity), "%s", identity);
	memcpy(px->client_id, client_id, CTRL_ID_LEN);
	if (reg->basic_auth.p)
		memcpy(px->basic_auth, reg->basic_auth.p, reg->basic_auth.len);
	TAILQ_INIT(&px->pending);
	LIST_INIT(&px->hwait);
	LIST_INIT(&px->members);
	return px;
}

/* a member's name: the one asked for, or the group's; unique in the
 * group (its figures and the API tell members apart by it): "-2", ... */
static void
member_name(const struct proxy *g, const struct ctrl_register *reg,
    char *out, size_t cap)
{
	char base[CTRL_NAME_MAX + 1];
	const struct proxy *m;

	/* named: NAME, NAME-2, ...; unnamed: GROUP-1, GROUP-2, ... */
	if (reg->name.len)
		snprintf(base, sizeof(base), "%.*s", (int)reg->name.len,
		    (const char *)reg->name.p);
	else
		snprintf(base, sizeof(base), "%.200s", g->name);
	for (unsigned n = reg->name.len ? 1 : 0; n < 100000; n++) {
		int used = 0;
		if (n == 1)
			snprintf(out, cap, "%s", base);
		else
			snprintf(out, cap, "%.240s-%u", base, n ? n : 1);
		if (n == 0)
			n = 1; /* GROUP-1 is the first; GROUP-2 next */
		LIST_FOREACH(m, &g->members, member_link)
			used |= strcmp(m->name, out) == 0;
		if (!used)
			return;
	}
}

/*
 * proxy_side_misfit: may pol hold the public side (type, port or host)?
 * NULL, or buf naming the rule (a name under --domain is checked as a
 * subdomain).
 */
const char *
proxy_side_misfit(struct server *srv, const struct conf_policy *pol,
    uint8_t type, uint16_t port, const char *host, char *buf, size_t cap)
{
	const char *dom = srv->cf->domain, *msg;
	size_t hl, dl;

	if (pol == NULL)
		return NULL;
	if ((msg = policy_check_type(pol, type, buf, cap)) != NULL)
		return msg;
	if (!proxy_is_http(type))
		return policy_check_port(pol, port, buf, cap);
	if (pol->nsubdomains == 0 && pol->nhostnames == 0)
		return NULL;
	hl = strlen(host);
	dl = strlen(dom);
	if (dl && hl > dl + 1 && host[hl - dl - 1] == '.' &&
	    strcmp(host + hl - dl, dom) == 0) {
		char sub[64];
		snprintf(sub, sizeof(sub), "%.*s", (int)(hl - dl - 1), host);
		return policy_check_host(pol, sub, NULL, buf, cap);
	}
	return policy_check_host(pol, NULL, host, buf, cap);
}

/* tunnels held by identity, in all its sessions and leases */
static unsigned
identity_tunnels(struct server *srv, const char *identity)
{
	unsigned n = 0;
	const struct proxy *px;

	LIST_FOREACH(px, &srv->reg.all, link)
		n += strcmp(px->identity, identity) == 0;
	return n;
}

int
proxy_register(struct session *s, const struct ctrl_register *reg,
    uint8_t *code, char *why, size_t whycap, struct proxy **out)
{
	struct server *srv = s->srv;
	const struct server_conf *cf = srv->cf;
	const struct proxy_ops *ops = reg->proxy_type <= PROXY_TLS ?
	    srv->ops[reg->proxy_type] : NULL;
	int http = proxy_is_http(reg->proxy_type), fd = -1;
	struct proxy *px, *holder, *g = NULL;
	int gst = 0;
	char ghdr[LB_HEADER_MAX] = "";
	const struct conf_policy *pol;
	const char *opt, *msg;
	char host[256] = "", dflt[CTRL_NAME_MAX + 1], pbuf[300];
	uint16_t port = 0;
	int owned_only = 0;

	*out = NULL;
	if (ops == NULL)
		FAIL(CODE_UNSUPPORTED, "proxy type %s is not supported by this "
		    "server", proxy_type_name(reg->proxy_type) ?
		    proxy_type_name(reg->proxy_type) : "unknown");
	if ((opt = reg_option_name(reg, http)) != NULL)
		FAIL(CODE_UNSUPPORTED, "option \"%s\" is not supported for %s "
		    "tunnels", opt, proxy_type_name(reg->proxy_type));
	for (size_t i = 0; i < reg->name.len; i++)
		if (reg->name.p[i] < 0x20 || reg->name.p[i] == 0x7f)
			FAIL(CODE_NOT_ALLOWED, "a tunnel name may not contain "
			    "control characters (byte %zu is 0x%02x)", i,
			    reg->name.p[i]);
	LIST_FOREACH(px, &s->proxies, sess_link)
		if (reg->name.len && name_is(px, &reg->name))
			FAIL(CODE_IN_USE, "name \"%s\" already registered in "
			    "this session", px->name);
	if (s->nproxies >= cf->max_proxies)
		FAIL(CODE_LIMIT, "at most %u tunnels per session",
		    cf->max_proxies);
	pol = proxy_policy(srv, s->identity);
	if (pol && (msg = policy_expired(pol, (int64_t)time(NULL), pbuf,
	    sizeof(pbuf))) != NULL)
		FAIL(CODE_AUTH_FAILED, "%s", msg);
	if (pol && (msg = policy_check_type(pol, reg->proxy_type, pbuf,
	    sizeof(pbuf))) != NULL)
		FAIL(CODE_NOT_ALLOWED, "%s", msg);
	if (pol && !proxy_is_http(reg->proxy_type) && reg->remote_port &&
	    (msg = policy_check_port(pol, reg->remote_port, pbuf,
	    sizeof(pbuf))) != NULL)
		FAIL(CODE_NOT_ALLOWED, "%s", msg);
	if (http && http_host(srv, reg, host, sizeof(host), code, why,
	    whycap) < 0)
		return MG_EINVAL;
	if (pol && http && (pol->nsubdomains || pol->nhostnames)) {
		char sub[64] = "";
		if (reg->subdomain.p && reg->subdomain.len < sizeof(sub))
			memcpy(sub, reg->subdomain.p, reg->subdomain.len);
		if ((msg = policy_check_host(pol, sub,
		    reg->hostname.p ? host : NULL, pbuf, sizeof(pbuf))) != NULL) {
			/* the name another node gave this agent: its own if
			 * its route says so (checked before the claim) */
			if (reg->group.p || !host_given_elsewhere(s, host))
				FAIL(CODE_NOT_ALLOWED, "%s", msg);
			owned_only = 1;
		}
	}
	/* checked now, kept once the tunnel is there (below): nothing to
	 * undo on the refusals between */
	if (reg_sources(reg, NULL, why, whycap) < 0) {
		*code = CODE_NOT_ALLOWED;
		return MG_EINVAL;
	}
	if (reg->group.p && group_options(reg, &gst, ghdr, code, why,
	    whycap) < 0)
		return MG_EINVAL;
	if ((px = lease_find(s, reg, host)) != NULL)
		goto attach;
	if (pol && pol->limits.tunnels) {
		/* in a cluster, the other nodes' too (climits.c) */
		struct counts_fig o;
		if (climits_others(srv, s->identity, &o) == MG_EAGAIN)
			FAIL(CODE_INTERNAL, "cluster state unavailable (the "
			    "count of %s's tunnels is being read), retrying",
			    pol->name);
		if (identity_tunnels(srv, s->identity) + o.tunnels >=
		    pol->limits.tunnels)
			FAIL(CODE_LIMIT, "%s may have at most %u tunnels at "
			    "once", pol->name, pol->limits.tunnels);
	}
	if (reg->group.p && (g = group_find(srv, (const char *)reg->group.p,
	    reg->group.len, reg->proxy_type)) != NULL) {
		/* joining: the group's public side, within the joiner's own
		 * policy too */
		if (group_join_check(g, reg, host, code, why, whycap) < 0)
			return MG_EINVAL;
		if (pol && (msg = proxy_side_misfit(srv, pol, g->type, g->port,
		    g->host, pbuf, sizeof(pbuf))) != NULL)
			FAIL(CODE_NOT_ALLOWED, "%s", msg);
		px = proxy_alloc(srv, ops, reg, g->port, g->host, s->identity,
		    s->client_id);
		member_name(g, reg, px->name, sizeof(px->name));
		px->auto_name = 0;
		group_add(g, px, reg->group_weight);
		px->shaper = proxy_new_shaper(srv, px->identity);
		registry_add(&srv->reg, px);
		log_info("group %s: %s joins (%u members)", g->name,
		    px->identity, g->nmembers);
		goto attach;
	}
	if (http) {
		if (host[0] == '\0' && http_random_host(srv, host,
		    sizeof(host)) < 0)
			FAIL(CODE_LIMIT, "no free host name under %s",
			    cf->domain);
		if ((holder = registry_by_host(&srv->reg, host)) != NULL) {
			if (strcmp(holder->identity, s->identity) == 0 &&
			    memcmp(holder->client_id, s->client_id,
				CTRL_ID_LEN) == 0 &&
			    holder->type == reg->proxy_type) {
				/* the same client, under another name */
				px = holder;
				goto attach;
			}
			FAIL(CODE_IN_USE, "%s is in use by another tunnel",
			    host);
		}
	} else if ((fd = port_claim(srv, reg, pol, &port, code, why,
	    whycap)) < 0) {
		return MG_EINVAL;
	}
	if (reg->group.p) {
		/* a new group: it holds the public side; the registering
		 * tunnel is its first member */
		static const uint8_t nobody[CTRL_ID_LEN];
		char gid[SERVER_ID_MAX];
		snprintf(gid, sizeof(gid), "group:%.*s", (int)reg->group.len,
		    (const char *)reg->group.p);
		g = proxy_alloc(srv, ops, reg, port, host, gid, nobody);
		group_init(g, reg, gst, ghdr);
		g->created_unix_ms = (int64_t)time(NULL) * 1000;
		if (fd >= 0 && ops->start && ops->start(g, fd) < 0) {
			free(g);
			FAIL(CODE_INTERNAL, "cannot serve port %u", port);
		}
		g->shaper = proxy_new_shaper(srv, g->identity);
		registry_add(&srv->reg, g);
		px = proxy_alloc(srv, ops, reg, port, host, s->identity,
		    s->client_id);
		member_name(g, reg, px->name, sizeof(px->name));
		group_add(g, px, reg->group_weight);
		px->shaper = proxy_new_shaper(srv, px->identity);
		registry_add(&srv->reg, px);
		log_info("group %s (%s) on %s, created by %s", g->name,
		    lb_strategy_str(g->lb, g->lb_header, pbuf, sizeof(pbuf)),
		    proxy_where(g), px->identity);
		goto attach;
	}
	px = proxy_alloc(srv, ops, reg, port, host, s->identity, s->client_id);
	px->cl_owned_only = owned_only;
	auto_name(px->type, port, host, dflt, sizeof(dflt));
	if (reg->name.len)
		memcpy(px->name, reg->name.p, reg->name.len);
	else
		snprintf(px->name, sizeof(px->name), "%s", dflt);
	/* a client that learnt the name the server gave it registers it
	 * by name after a server restart: the lease is still the
	 * server's naming, so a restarted client without the name finds
	 * it again */
	px->auto_name = strcmp(px->name, dflt) == 0;
	if (fd >= 0 && ops->start && ops->start(px, fd) < 0) {
		free(px);
		FAIL(CODE_INTERNAL, "cannot serve port %u", port);
	}
	px->shaper = proxy_new_shaper(srv, px->identity);
	registry_add(&srv->reg, px);
attach:
	/* the registration's limit replaces the lease's */
	px->bw_agent = reg->bandwidth;
	proxy_shape(px);
	proxy_attach(px, s);
	/* the registration's own sources replace the lease's (they parsed
	 * above: this cannot fail) */
	reg_sources(reg, px, why, whycap);
	px->proxy_protocol = reg->proxy_protocol;
	*out = px;
	return 0;
}

#undef FAIL

/* A public TCP connection being relayed: its record and figures. */
struct tconn {
	struct server *srv;
	struct smet_conn rec;
	int retried;                  /* a second group member has it */
};

static void tcp_relay_start(struct proxy *px, int fd,
    const struct sockaddr *peer, const struct stream_info *si, int retried);

/* a group member refused the connection, or died, before a byte either
 * way: once, another member takes it, invisibly to the visitor */
static int
tcp_relay_refused(void *arg, int fd)
{
	struct tconn *tc = arg;
	struct proxy *m = registry_get(&tc->srv->reg, tc->rec.px_id), *g, *n;

	if (tc->retried || m == NULL || m->group_id == 0 ||
	    (g = registry_get(&tc->srv->reg, m->group_id)) == NULL ||
	    (n = group_pick(g, (struct sockaddr *)&tc->rec.peer, NULL, NULL, 0,
	    m->id)) == NULL)
		return 0;
	smet_group_retry(tc->srv);
	tcp_relay_start(n, fd, (struct sockaddr *)&tc->rec.peer, NULL, 1);
	return 1;
}

/* the relay counted the bytes into the tunnel's series as they moved */
static void
tcp_relay_end(void *arg, uint64_t from_sock, uint64_t to_sock,
    enum relay_end why)
{
	struct tconn *tc = arg;
	struct proxy *m = registry_get(&tc->srv->reg, tc->rec.px_id);

	if (m != NULL && m->group_id)
		group_result(m, why == RELAY_END_REFUSED);
	smet_relay_add(tc->srv, -1);
	smet_conn_tally(&tc->rec, from_sock, to_sock);
	if (why == RELAY_END_REFUSED)
		smet_refused(tc->srv, SMET_REF_CLIENT);
	smet_conn_end(tc->srv, &tc->rec, relay_end_name(why));
	free(tc);
}

/*
 * The metadata of a NewStreamEx2 (docs/internals/protocol-ext.md), as
 * PROXY v2 TLVs for the agent to pass on: a connection id unique across
 * the server's life and restarts (128 random bits in 32 hex digits), who
 * owns the tunnel (a named token's name; a certificate's subject), and
 * what the public side learnt (si). Each fits: 1024 bytes hold them all
 * at their caps.
 */
static void
stream_meta(const struct proxy *px, const struct stream_info *si,
    struct sthdr *h)
{
	const struct server_conf *cf = px->srv->cf;
	static const char hex[] = "0123456789abcdef";
	uint8_t r[16];
	char uid[32];

	/* as text, for the logs of the services that get it */
	crypto_random(r, sizeof(r));
	for (size_t i = 0; i < sizeof(r); i++) {
		uid[2 * i] = hex[r[i] >> 4];
		uid[2 * i + 1] = hex[r[i] & 15];
	}
	sthdr_meta_add(h, PP2_TYPE_UNIQUE_ID, uid, sizeof(uid));
	if (strncmp(px->identity, "cert:", 5) == 0)
		sthdr_meta_add(h, PP2_TYPE_MGROK_SUBJECT, px->identity + 5,
		    strlen(px->identity + 5));
	else
		for (size_t i = 0; i < cf->ntokens; i++)
			if (cf->token_names[i] != NULL &&
			    strcmp(cf->token_names[i], px->identity) == 0) {
				sthdr_meta_add(h, PP2_TYPE_MGROK_TOKEN,
				    px->identity, strlen(px->identity));
				break;
			}
	if (si != NULL && si->authority != NULL && si->authority[0])
		sthdr_meta_add(h, PP2_TYPE_AUTHORITY, si->authority,
		    strlen(si->authority));
	if (si != NULL && si->alpn_len > 0)
		sthdr_meta_add(h, PP2_TYPE_ALPN, si->alpn, si->alpn_len);
}

struct mux_stream *
proxy_stream_open(struct proxy *px, const struct sockaddr *peer)
{
	return proxy_stream_open_info(px, peer, NULL);
}

struct mux_stream *
proxy_stream_open_info(struct proxy *px, const struct sockaddr *peer,
    const struct stream_info *si)
{
	struct session *s = px->sess;
	struct mux_stream *st;
	struct sthdr h;
	uint8_t buf[STHDR_MAX_LEN];
	int n;

	if (s == NULL || (st = mux_stream_open(s->mux)) == NULL)
		return NULL;
	memset(&h, 0, offsetof(struct sthdr, meta)); /* meta_len 0 */
	h.stream_id = mux_stream_id(st);
	h.remote_port = px->port;
	h.name_len = (uint8_t)strlen(px->name);
	memcpy(h.name, px->name, h.name_len);
	h.type = STHDR_NEWSTREAM;
	/* the public peer, for clients that understand NewStreamEx */
	if ((s->caps & CTRL_CAP_STREAM_EX) && peer != NULL &&
	    (peer->sa_family == AF_INET || peer->sa_family == AF_INET6)) {
		h.type = STHDR_NEWSTREAM_EX;
		if (peer->sa_family == AF_INET) {
			const struct sockaddr_in *in = (const void *)peer;
			h.af = 4;
			memcpy(h.addr, &in->sin_addr, 4);
			h.port = ntohs(in->sin_port);
		} else {
			const struct sockaddr_in6 *in6 = (const void *)peer;
			if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
				h.af = 4;
				memcpy(h.addr, &in6->sin6_addr.s6_addr[12], 4);
			} else {
				h.af = 6;
				memcpy(h.addr, &in6->sin6_addr, 16);
			}
			h.port = ntohs(in6->sin6_port);
		}
		/* only a tunnel whose agent writes PROXY v2 headers has a
		 * use for metadata: the others pay nothing */
		if (px->proxy_protocol == 2 &&
		    (s->caps & CTRL_CAP_STREAM_META)) {
			h.type = STHDR_NEWSTREAM_EX2;
			stream_meta(px, si, &h);
		}
	}
	n = sthdr_encode(&h, buf, sizeof(buf));
	if (n < 0 || mux_stream_write(st, buf, (size_t)n) < 0) {
		mux_stream_free(st);
		return NULL;
	}
	s->streams_total++;
	smet_stream_opened(px->srv);
	if (s->state < SESS_FORWARDING)
		s->state = SESS_FORWARDING;
	return st;
}

void
proxy_open_stream(struct proxy *px, int fd, const struct sockaddr *peer)
{
	proxy_open_stream_info(px, fd, peer, NULL);
}

void
proxy_open_stream_info(struct proxy *px, int fd, const struct sockaddr *peer,
    const struct stream_info *si)
{
	tcp_relay_start(px, fd, peer, si, 0);
}

static void
tcp_relay_start(struct proxy *px, int fd, const struct sockaddr *peer,
    const struct stream_info *si, int retried)
{
	struct server *srv = px->srv;
	struct mux_stream *st = proxy_stream_open_info(px, peer, si);
	struct tconn *tc;

	if (st == NULL) {
		log_warn("port %u: connection refused: no stream to the client",
		    px->port);
		smet_refused(srv, SMET_REF_NO_STREAM);
		proxy_reset_close(fd);
		return;
	}
	tc = xcalloc(1, sizeof(*tc));
	tc->srv = srv;
	tc->retried = retried;
	smet_conn_begin(&tc->rec, px, peer);
	smet_relay_add(srv, 1);
	if (log_enabled(LOG_DEBUG)) {
		char a[NET_ADDRSTR_MAX];
		log_debug("session %llu: stream %u for %s on port %u",
		    (unsigned long long)px->sess->id, mux_stream_id(st),
		    net_addr_str(peer, a, sizeof(a)), px->port);
	}
	/* relay_start frees everything itself when it fails */
	{
		struct relay_opts o;
		memset(&o, 0, sizeof(o));
		o.flags = RELAY_RST_IF_REFUSED;
		o.end = tcp_relay_end;
		o.arg = tc;
		o.from_sock = tc->rec.bytes[SMET_IN];
		o.to_sock = tc->rec.bytes[SMET_OUT];
		o.shaper = px->shaper;
		o.throttled[SHAPER_IN] = px->m_throttled[SMET_IN];
		o.throttled[SHAPER_OUT] = px->m_throttled[SMET_OUT];
		if (px->group_id && !retried)
			o.refused = tcp_relay_refused;
		relay_start(srv->base, fd, st, &o);
	}
}

/* a bridged visitor's end: as a relayed one's (tcp_relay_end) */
static void
tcp_bridge_end(void *arg, uint64_t in, uint64_t out, enum relay_end why)
{
	tcp_relay_end(arg, in, out, why);
}

int
proxy_tcp_bridge(struct server *srv, struct proxy *px, struct mux_stream *link,
    const struct sockaddr *sa)
{
	struct mux_stream *st;
	struct tconn *tc;
	struct bridge_opts o;
	unsigned retry;

	/* what a stream cannot do without a socket: a group's retry on
	 * another member, a wait for an agent away, a bandwidth limit */
	if (px->is_group || px->health < 0 || px->sess == NULL ||
	    shaper_limited(px->shaper, SHAPER_IN) ||
	    shaper_limited(px->shaper, SHAPER_OUT))
		return -1;
	if (forward_fenced(srv, px) || proxy_visitor_allowed(px, sa) < 0 ||
	    proxy_rate_ok(px, 0, sa, &retry) < 0 ||
	    proxy_visitors_ok(px) < 0) {
		mux_stream_abort(link);
		return 0;
	}
	if ((st = proxy_stream_open(px, sa)) == NULL) {
		smet_refused(srv, SMET_REF_NO_STREAM);
		mux_stream_abort(link);
		return 0;
	}
	tc = xcalloc(1, sizeof(*tc));
	tc->srv = srv;
	smet_conn_begin(&tc->rec, px, sa);
	smet_relay_add(srv, 1);
	memset(&o, 0, sizeof(o));
	o.end = tcp_bridge_end;
	o.arg = tc;
	o.a_to_b = tc->rec.bytes[SMET_IN];
	o.b_to_a = tc->rec.bytes[SMET_OUT];
	bridge_start(link, st, &o);
	return 0;
}
