/* proxy.c: registered proxies, their leases (PROTOCOL.md 4.6) and their
 * public TCP listeners. */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "mux/mux.h"
#include "proto/sthdr.h"
#include "relay/relay.h"
#include "server/hproxy.h"
#include "server/server_int.h"
#include "util/crypto.h"
#include "util/err.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/net.h"
#include "util/xmalloc.h"

static void proxy_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg);

static int
is_http_type(uint8_t t)
{
	return t == PROXY_HTTP || t == PROXY_HTTPS || t == PROXY_TLS;
}

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

static void
reset_close(int fd)
{
	struct linger lg = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void
pending_close_all(struct proxy *px)
{
	struct pending *pd;

	while ((pd = TAILQ_FIRST(&px->pending)) != NULL) {
		TAILQ_REMOVE(&px->pending, pd, link);
		reset_close(pd->fd);
		free(pd);
	}
	px->npending = 0;
}

void
proxy_free(struct proxy *px)
{
	if (px == NULL)
		return;
	pending_close_all(px);
	if (!LIST_EMPTY(&px->hwait)) {
		px->sess = NULL;
		hproxy_client_back(px); /* 502 to those who waited */
	}
	if (is_http_type(px->type) && px->hstats.requests)
		log_info("%s \"%s\" (%s): %llu requests, %llu 2xx, %llu 3xx, "
			 "%llu 4xx, %llu 5xx; latency min %.1f avg %.1f max "
			 "%.1f ms",
		    proxy_type_name(px->type), px->name, px->host,
		    (unsigned long long)px->hstats.requests,
		    (unsigned long long)px->hstats.by_class[2],
		    (unsigned long long)px->hstats.by_class[3],
		    (unsigned long long)px->hstats.by_class[4],
		    (unsigned long long)px->hstats.by_class[5],
		    px->hstats.lat_min_us / 1000.0,
		    px->hstats.lat_sum_us / 1000.0 / (double)px->hstats.requests,
		    px->hstats.lat_max_us / 1000.0);
	if (px->type == PROXY_UDP) {
		udp_proxy_log(px);
		udp_proxy_stop(px);
	}
	if (px->lst)
		evconnlistener_free(px->lst);
	if (px->grace)
		event_free(px->grace);
	LIST_REMOVE(px, link);
	free(px);
}

void
proxy_unregister(struct proxy *px)
{
	if (px->sess) {
		LIST_REMOVE(px, sess_link);
		px->sess->nproxies--;
	}
	proxy_free(px);
}

static void
proxy_on_grace_end(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;

	log_info("lease of %s \"%s\" on port %u expired: %u waiting "
		 "connections refused, port released",
	    proxy_type_name(px->type), px->name, px->port, px->npending);
	proxy_free(px);
}

/* The session died or was replaced: hold the lease for the grace period. */
void
proxy_session_lost(struct proxy *px)
{
	struct server *srv = px->srv;
	struct timeval tv = { (time_t)srv->cf->lease_grace_s, 0 };

	px->refuse_waiting = px->sess && px->sess->goodbye_received;
	px->sess = NULL;
	if (srv->cf->lease_grace_s == 0 || srv->shutting_down) {
		proxy_free(px);
		return;
	}
	if (px->grace == NULL)
		px->grace = evtimer_new(srv->base, proxy_on_grace_end, px);
	evtimer_add(px->grace, &tv);
	if (is_http_type(px->type))
		log_info("lease of %s \"%s\" (%s) held for %u s",
		    proxy_type_name(px->type), px->name, px->host,
		    srv->cf->lease_grace_s);
	else
		log_info("lease of %s \"%s\" on port %u held for %u s",
		    proxy_type_name(px->type), px->name, px->port,
		    srv->cf->lease_grace_s);
}

/* UDP ports are a space of their own; every other type listens on TCP. */
static int
port_leased(struct server *srv, uint8_t type, uint16_t port)
{
	struct proxy *px;

	LIST_FOREACH(px, &srv->proxies, link) {
		if (px->port == port && !is_http_type(px->type) &&
		    (px->type == PROXY_UDP) == (type == PROXY_UDP))
			return 1;
	}
	return 0;
}

/* The public socket of a new proxy; the fd or -1 (errno). */
static int
proxy_listen(struct server *srv, uint8_t type, uint16_t port)
{
	if (type == PROXY_UDP)
		return net_bind_udp(srv->cf->bind_addr, port);
	return net_listen_tcp(srv->cf->bind_addr, port, 1024);
}

static struct proxy *
lease_find(struct session *s, const struct ctrl_register *reg)
{
	static const uint8_t zero[CTRL_ID_LEN];
	struct proxy *px;
	int legacy = memcmp(s->client_id, zero, CTRL_ID_LEN) == 0;

	LIST_FOREACH(px, &s->srv->proxies, link) {
		if (px->type != reg->proxy_type || strcmp(px->identity, s->identity) != 0 ||
		    memcmp(px->client_id, s->client_id, CTRL_ID_LEN) != 0)
			continue;
		if (reg->name.len == 0) {
			/* a restarted client that never learnt its name: the
			 * unbound lease of its local port is its own */
			if (legacy || px->sess != NULL || !px->auto_name ||
			    px->local_port != reg->local_port)
				continue;
		} else if (strlen(px->name) != reg->name.len ||
		    memcmp(px->name, reg->name.p, reg->name.len) != 0) {
			continue;
		}
		/* legacy clients have no id: the port must match too */
		if (legacy && reg->remote_port != px->port)
			continue;
		if (reg->remote_port != 0 && reg->remote_port != px->port)
			continue;
		return px;
	}
	return NULL;
}

static void
proxy_attach(struct proxy *px, struct session *s)
{
	struct pending *pd;

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
	if (px->npending)
		log_info("port %u: serving %u connections that waited for the "
			 "client",
		    px->port, px->npending);
	while ((pd = TAILQ_FIRST(&px->pending)) != NULL) {
		TAILQ_REMOVE(&px->pending, pd, link);
		px->npending--;
		proxy_open_stream(px, pd->fd, (struct sockaddr *)&pd->peer);
		free(pd);
	}
	if (!LIST_EMPTY(&px->hwait))
		hproxy_client_back(px);
}

static int
reg_has_http_options(const struct ctrl_register *reg, const char **which)
{
	if (reg->subdomain.p)
		*which = "subdomain";
	else if (reg->hostname.p)
		*which = "hostname";
	else if (reg->basic_auth.p)
		*which = "basic auth";
	else if (reg->bandwidth)
		*which = "bandwidth limit";
	else if (reg->group.p)
		*which = "load-balancing group";
	else if (reg->proxy_protocol)
		*which = "PROXY protocol";
	else if (reg->n_allow_src)
		*which = "allowed source";
	else
		return 0;
	return 1;
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

/* Who holds host? NULL, or the proxy. */
static struct proxy *
host_holder(struct server *srv, const char *host)
{
	struct proxy *px;

	LIST_FOREACH(px, &srv->proxies, link)
		if (is_http_type(px->type) && strcmp(px->host, host) == 0)
			return px;
	return NULL;
}

static int
http_register(struct session *s, const struct ctrl_register *reg,
    uint8_t *code, char *why, size_t whycap, struct proxy **out)
{
	struct server *srv = s->srv;
	const struct server_conf *cf = srv->cf;
	const char *tname = proxy_type_name(reg->proxy_type);
	char host[256] = "", sub[64];
	struct proxy *px, *holder;

	*code = CODE_UNSUPPORTED;
	if ((reg->proxy_type == PROXY_TLS && srv->https_lst == NULL) ||
	    (reg->proxy_type == PROXY_HTTPS && srv->https_tls == NULL &&
		srv->https_certs == NULL) ||
	    (srv->http_lst == NULL && srv->https_lst == NULL)) {
		snprintf(why, whycap, "%s tunnels are not enabled on this "
				      "server (no %s)",
		    tname, reg->proxy_type == PROXY_HTTP ?
			"--http-addr or --https-addr" :
			reg->proxy_type == PROXY_TLS ? "--https-addr" :
						       "--https-cert");
		return MG_EUNSUPP;
	}
	if (reg->bandwidth || reg->group.p || reg->proxy_protocol ||
	    reg->n_allow_src || (reg->basic_auth.p &&
	    reg->proxy_type == PROXY_TLS)) {
		snprintf(why, whycap, "an option given is not supported for "
				      "%s tunnels",
		    tname);
		return MG_EUNSUPP;
	}
	if (reg->basic_auth.p && (reg->basic_auth.len >= 256 ||
	    memchr(reg->basic_auth.p, ':', reg->basic_auth.len) == NULL)) {
		snprintf(why, whycap, "basic auth must be user:password");
		return MG_EUNSUPP;
	}
	*code = CODE_NOT_ALLOWED;
	if (reg->hostname.p) {
		if (host_norm(reg->hostname.p, reg->hostname.len, host,
		    sizeof(host)) < 0) {
			snprintf(why, whycap, "not a valid host name");
			return MG_EINVAL;
		}
	} else if (reg->subdomain.p) {
		if (cf->domain[0] == '\0') {
			snprintf(why, whycap, "this server has no --domain for "
					      "subdomains; use a hostname");
			return MG_EINVAL;
		}
		if (reg->subdomain.len > 63 || host_norm(reg->subdomain.p,
		    reg->subdomain.len, sub, sizeof(sub)) < 0 ||
		    strchr(sub, '.')) {
			snprintf(why, whycap, "a subdomain is 1 to 63 letters, "
					      "digits or -");
			return MG_EINVAL;
		}
		for (size_t i = 0; i < sizeof(reserved_subdomains) /
		    sizeof(reserved_subdomains[0]); i++) {
			if (strcmp(sub, reserved_subdomains[i]) == 0) {
				snprintf(why, whycap, "subdomain \"%s\" is "
						      "reserved",
				    sub);
				return MG_EDENIED;
			}
		}
		snprintf(host, sizeof(host), "%s.%.190s", sub, cf->domain);
	}
	if ((px = lease_find(s, reg)) != NULL &&
	    (host[0] == '\0' || strcmp(host, px->host) == 0)) {
		proxy_attach(px, s);
		*out = px;
		return 0;
	}
	if (host[0] == '\0') {
		/* a short, readable random name: letters and digits that
		 * cannot be confused */
		static const char al[] = "abcdefghjkmnpqrstuvwxyz23456789";
		if (cf->domain[0] == '\0') {
			snprintf(why, whycap, "this server has no --domain: ask "
					      "for a hostname");
			return MG_EINVAL;
		}
		for (int tries = 0; tries < 64; tries++) {
			uint8_t r[5];
			crypto_random(r, sizeof(r));
			for (int i = 0; i < 5; i++)
				sub[i] = al[r[i] % (sizeof(al) - 1)];
			sub[0] = al[r[0] % 23]; /* a letter first */
			sub[5] = '\0';
			snprintf(host, sizeof(host), "%s.%.190s", sub, cf->domain);
			if (host_holder(srv, host) == NULL)
				break;
		}
	}
	if ((holder = host_holder(srv, host)) != NULL) {
		if (strcmp(holder->identity, s->identity) == 0 &&
		    memcmp(holder->client_id, s->client_id, CTRL_ID_LEN) == 0 &&
		    holder->type == reg->proxy_type) {
			/* the same client re-registering under another name */
			proxy_attach(holder, s);
			*out = holder;
			return 0;
		}
		*code = CODE_IN_USE;
		snprintf(why, whycap, "%s is in use by another tunnel", host);
		return MG_EINUSE;
	}
	px = xcalloc(1, sizeof(*px));
	px->srv = srv;
	px->type = reg->proxy_type;
	px->udp_fd = -1;
	px->local_port = reg->local_port;
	px->auto_name = reg->name.len == 0;
	snprintf(px->host, sizeof(px->host), "%s", host);
	snprintf(px->identity, sizeof(px->identity), "%s", s->identity);
	memcpy(px->client_id, s->client_id, CTRL_ID_LEN);
	if (reg->basic_auth.p)
		memcpy(px->basic_auth, reg->basic_auth.p, reg->basic_auth.len);
	TAILQ_INIT(&px->pending);
	LIST_INIT(&px->hwait);
	if (reg->name.len)
		memcpy(px->name, reg->name.p, reg->name.len);
	else
		snprintf(px->name, sizeof(px->name), "%s-%.240s", tname, host);
	LIST_INSERT_HEAD(&srv->proxies, px, link);
	proxy_attach(px, s);
	*out = px;
	return 0;
}

int
proxy_register(struct session *s, const struct ctrl_register *reg,
    uint8_t *code, char *why, size_t whycap, struct proxy **out)
{
	struct server *srv = s->srv;
	const struct server_conf *cf = srv->cf;
	struct proxy *px;
	const char *opt;
	uint16_t port = 0;
	int fd = -1;

	*out = NULL;
	if (reg->proxy_type != PROXY_TCP && reg->proxy_type != PROXY_UDP &&
	    !is_http_type(reg->proxy_type)) {
		*code = CODE_UNSUPPORTED;
		snprintf(why, whycap, "proxy type %s is not supported by this "
				      "server",
		    proxy_type_name(reg->proxy_type) ?
			proxy_type_name(reg->proxy_type) : "unknown");
		return MG_EUNSUPP;
	}
	if (is_http_type(reg->proxy_type))
		return http_register(s, reg, code, why, whycap, out);
	if (reg_has_http_options(reg, &opt)) {
		*code = CODE_UNSUPPORTED;
		snprintf(why, whycap, "option \"%s\" is not supported for %s "
				      "proxies",
		    opt, proxy_type_name(reg->proxy_type));
		return MG_EUNSUPP;
	}
	LIST_FOREACH(px, &s->proxies, sess_link) {
		if (reg->name.len && strlen(px->name) == reg->name.len &&
		    memcmp(px->name, reg->name.p, reg->name.len) == 0) {
			*code = CODE_IN_USE;
			snprintf(why, whycap, "name \"%s\" already registered "
					      "in this session",
			    px->name);
			return MG_EINUSE;
		}
	}
	if (s->nproxies >= cf->max_proxies) {
		*code = CODE_LIMIT;
		snprintf(why, whycap, "at most %u proxies per session",
		    cf->max_proxies);
		return MG_ELIMIT;
	}
	if ((px = lease_find(s, reg)) != NULL) {
		proxy_attach(px, s);
		*out = px;
		return 0;
	}
	if (reg->remote_port) {
		port = reg->remote_port;
		if (port < cf->start_port || port > cf->end_port) {
			*code = CODE_NOT_ALLOWED;
			snprintf(why, whycap, "port %u is outside the allowed "
					      "range %u-%u",
			    port, cf->start_port, cf->end_port);
			return MG_EDENIED;
		}
		if (port_leased(srv, reg->proxy_type, port)) {
			*code = CODE_IN_USE;
			snprintf(why, whycap, "port %u is in use by another "
					      "tunnel",
			    port);
			return MG_EINUSE;
		}
		if ((fd = proxy_listen(srv, reg->proxy_type, port)) < 0) {
			*code = errno == EADDRINUSE ? CODE_IN_USE :
			    errno == EACCES ? CODE_NOT_ALLOWED : CODE_INTERNAL;
			snprintf(why, whycap, "port %u: %s%s", port,
			    errno == EADDRINUSE ? "in use on the server" :
			    strerror(errno), "");
			return MG_EINUSE;
		}
	} else {
		for (uint32_t p = cf->start_port; p <= cf->end_port; p++) {
			if (port_leased(srv, reg->proxy_type, (uint16_t)p))
				continue;
			if ((fd = proxy_listen(srv, reg->proxy_type,
			    (uint16_t)p)) >= 0) {
				port = (uint16_t)p;
				break;
			}
		}
		if (fd < 0) {
			*code = CODE_LIMIT;
			snprintf(why, whycap, "no free port in %u-%u",
			    cf->start_port, cf->end_port);
			return MG_ELIMIT;
		}
	}
	px = xcalloc(1, sizeof(*px));
	px->srv = srv;
	px->type = reg->proxy_type;
	px->port = port;
	snprintf(px->identity, sizeof(px->identity), "%s", s->identity);
	memcpy(px->client_id, s->client_id, CTRL_ID_LEN);
	TAILQ_INIT(&px->pending);
	px->local_port = reg->local_port;
	px->auto_name = reg->name.len == 0;
	if (reg->name.len)
		memcpy(px->name, reg->name.p, reg->name.len);
	else
		snprintf(px->name, sizeof(px->name), "%s-%u",
		    proxy_type_name(px->type), port);
	px->udp_fd = -1;
	LIST_INIT(&px->hwait);
	if (px->type == PROXY_UDP)
		udp_proxy_start(px, fd);
	else
		px->lst = evconnlistener_new(srv->base, proxy_on_accept, px,
		    LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (px->type != PROXY_UDP && px->lst == NULL) {
		close(fd);
		free(px);
		*code = CODE_INTERNAL;
		snprintf(why, whycap, "cannot listen on port %u", port);
		return MG_EIO;
	}
	LIST_INSERT_HEAD(&srv->proxies, px, link);
	px->sess = NULL;
	proxy_attach(px, s);
	*out = px;
	return 0;
}

void
proxy_relay_done(void *arg, uint64_t from_sock, uint64_t to_sock,
    int refused)
{
	struct server *srv = arg;

	srv->met.streams_active--;
	srv->met.bytes_in += from_sock;
	srv->met.bytes_out += to_sock;
	if (refused)
		srv->met.streams_refused++;
}

struct mux_stream *
proxy_stream_open(struct proxy *px, const struct sockaddr *peer)
{
	struct session *s = px->sess;
	struct mux_stream *st;
	struct sthdr h;
	uint8_t buf[STHDR_MAX_LEN];
	int n;

	if (s == NULL || (st = mux_stream_open(s->mux)) == NULL)
		return NULL;
	memset(&h, 0, sizeof(h));
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
	}
	n = sthdr_encode(&h, buf, sizeof(buf));
	if (n < 0 || mux_stream_write(st, buf, (size_t)n) < 0) {
		mux_stream_free(st);
		return NULL;
	}
	s->streams_total++;
	px->srv->met.streams_total++;
	if (s->state < SESS_FORWARDING)
		s->state = SESS_FORWARDING;
	return st;
}

void
proxy_open_stream(struct proxy *px, int fd, const struct sockaddr *peer)
{
	struct server *srv = px->srv;
	struct mux_stream *st = proxy_stream_open(px, peer);

	if (st == NULL) {
		log_warn("port %u: connection refused: no stream to the client",
		    px->port);
		srv->met.streams_refused++;
		reset_close(fd);
		return;
	}
	px->conns_total++;
	srv->met.streams_active++;
	if (log_enabled(LOG_DEBUG)) {
		char a[NET_ADDRSTR_MAX];
		log_debug("session %llu: stream %u for %s on port %u",
		    (unsigned long long)px->sess->id, mux_stream_id(st),
		    net_addr_str(peer, a, sizeof(a)), px->port);
	}
	/* relay_new frees everything itself when it fails */
	relay_new(srv->base, fd, st, RELAY_RST_IF_REFUSED, proxy_relay_done,
	    srv);
}

static void
proxy_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct proxy *px = arg;
	struct pending *pd;

	loop_note_io();
	net_sock_tune(fd);
	if (px->sess) {
		proxy_open_stream(px, fd, sa);
		return;
	}
	if (px->refuse_waiting || px->npending >= px->srv->cf->max_pending) {
		reset_close(fd);
		return;
	}
	/* the client is away: hold the connection until it returns */
	pd = xcalloc(1, sizeof(*pd));
	pd->px = px;
	pd->fd = fd;
	memcpy(&pd->peer, sa, (size_t)salen < sizeof(pd->peer) ?
	    (size_t)salen : sizeof(pd->peer));
	TAILQ_INSERT_TAIL(&px->pending, pd, link);
	px->npending++;
}
