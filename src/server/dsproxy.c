/* dsproxy.c: the stream proxy over DTLS 1.2 (docs/protocol.md section 6): the
 * UDP twin of sproxy.c, on the control listener's port number. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/ssl.h>

#include "proto/sproxy.h"
#include "server/dsproxy.h"
#include "server/server_int.h"
#include "tls/dtls.h"
#include "tls/tls.h"
#include "util/acl.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mtime.h"
#include "util/loop.h"
#include "util/net.h"
#include "util/xmalloc.h"

#define DS_MAX_CONNS 1024
#define DS_HANDSHAKE_TIMEOUT_S 10
#define DS_HEADER_TIMEOUT_S 10
#define DS_DIAL_TIMEOUT_S 10
#define DS_IDLE_S 300
#define DS_BATCH 64          /* datagrams per wake-up, per socket */
#define DS_SCRATCH 65536     /* any UDP datagram fits */

enum dc_state {
	DC_HANDSHAKE = 0,
	DC_HEADER,
	DC_RESOLVE,
	DC_RELAY,
};

struct dconn;
TAILQ_HEAD(dconn_list, dconn);

struct dsproxy {
	struct server *srv;
	struct tls_ctx *ctx;
	int fd;                      /* the listening UDP socket */
	struct event *ev;
	SSL *lssl;                   /* waiting for the next ClientHello */
	struct sockaddr_storage local;
	socklen_t local_len;
	struct dconn_list conns;
	unsigned nconns;
	unsigned idle_s;
	uint64_t next_id, total, refused, icmp, drops;
	uint8_t *buf;                /* scratch, DS_SCRATCH bytes */
};

/* One DTLS connection and its destination socket. */
struct dconn {
	TAILQ_ENTRY(dconn) link;
	struct dsproxy *dp;
	SSL *ssl;
	struct tls_hs *hs;
	int fd, dfd;
	enum dc_state state;
	struct event *ev, *dev, *timer;
	struct evdns_getaddrinfo_request *dns;
	struct sproxy_hdr h;
	int name_allowed;            /* a name rule matched: any address */
	uint64_t id, last_ms;
	uint64_t in_pkts, in_bytes, out_pkts, out_bytes, drops, icmp;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char peera[NET_ADDRSTR_MAX];
	char subject[256];
};

static void
dc_close(struct dconn *c, int refused, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Log why, then free c with everything it holds. */
static void
dc_close(struct dconn *c, int refused, const char *fmt, ...)
{
	struct dsproxy *dp = c->dp;
	struct server *srv = dp->srv;
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (refused) {
		log_warn("dtls stream %llu (%s, %s): refused: %s",
		    (unsigned long long)c->id, c->peera, c->subject, why);
		dp->refused++;
		smet_sproxy(srv, 1, 0, 0);
	} else
		log_info("dtls stream %llu (%s, %s): closed: %s (%llu "
		    "datagrams in, %llu out, %llu dropped, %llu ICMP errors)",
		    (unsigned long long)c->id, c->peera, c->subject, why,
		    (unsigned long long)c->in_pkts,
		    (unsigned long long)c->out_pkts,
		    (unsigned long long)c->drops,
		    (unsigned long long)c->icmp);
	if (!refused)
		smet_sproxy(srv, 0, c->in_bytes, c->out_bytes);
	if (c->dns != NULL) {
		struct evdns_getaddrinfo_request *r = c->dns;

		c->dns = NULL;
		evdns_getaddrinfo_cancel(r); /* calls back with CANCEL */
	}
	if (c->hs != NULL)
		tls_handshake_cancel(c->hs);
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->dev != NULL)
		event_free(c->dev);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->dfd >= 0)
		close(c->dfd);
	if (c->ssl != NULL) {
		if (c->state != DC_HANDSHAKE)
			tls_shutdown(c->ssl); /* the client closes its flow */
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	TAILQ_REMOVE(&dp->conns, c, link);
	dp->nconns--;
	free(c);
}

static void
dc_arm(struct dconn *c, unsigned s)
{
	struct timeval tv = { s, 0 };

	evtimer_add(c->timer, &tv);
}

static void
dc_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct dconn *c = arg;
	uint64_t now, idle_ms = (uint64_t)c->dp->idle_s * 1000;

	switch (c->state) {
	case DC_HEADER:
		dc_close(c, 1, "no header record within %u s",
		    DS_HEADER_TIMEOUT_S);
		return;
	case DC_RESOLVE:
		dc_close(c, 1, "%s not resolved within %u s", c->h.host,
		    DS_DIAL_TIMEOUT_S);
		return;
	case DC_RELAY:
		now = mtime_ms();
		if (now - c->last_ms >= idle_ms) {
			dc_close(c, 0, "idle for %u s", c->dp->idle_s);
			return;
		}
		/* re-arm for what is left, rounded up */
		dc_arm(c, (unsigned)((idle_ms - (now - c->last_ms) + 999) /
		    1000));
		return;
	default:
		return;
	}
}

/* Destination readable: each datagram becomes one record. */
static void
dc_on_dest(evutil_socket_t fd, short what, void *arg)
{
	struct dconn *c = arg;
	struct dsproxy *dp = c->dp;

	loop_note_io();
	for (int i = 0; i < DS_BATCH; i++) {
		ssize_t n = recv(c->dfd, dp->buf, DS_SCRATCH, 0);
		int rc;

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return;
			if (dtls_transient(errno)) {
				c->icmp++;
				dp->icmp++;
				continue;
			}
			dc_close(c, 0, "destination %s:%u: %s", c->h.host,
			    c->h.port, strerror(errno));
			return;
		}
		c->last_ms = mtime_ms();
		if (n == 0 || n > DTLS_MAX_RECORD) {
			/* DTLS carries 1..16384 bytes per record */
			c->drops++;
			dp->drops++;
			continue;
		}
		rc = dtls_write(c->ssl, dp->buf, (size_t)n);
		if (rc == MG_EAGAIN) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != ENOBUFS) {
				c->icmp++;
				dp->icmp++;
			}
			c->drops++;
			dp->drops++;
			continue;
		}
		if (rc < 0) {
			dc_close(c, 0, "%s", tls_why(c->ssl));
			return;
		}
		c->out_pkts++;
		c->out_bytes += (uint64_t)n;
	}
}

static void dc_header(struct dconn *c, const uint8_t *p, size_t len);

/* DTLS readable: the header record first, then datagrams for the
 * destination. */
static void
dc_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct dconn *c = arg;
	struct dsproxy *dp = c->dp;

	loop_note_io();
	for (int i = 0; i < DS_BATCH; i++) {
		ssize_t n = dtls_read(c->ssl, dp->buf, DTLS_MAX_RECORD);

		if (n == 0) {
			dc_close(c, c->state != DC_RELAY, "the client closed "
			    "the connection%s", c->state != DC_RELAY ?
			    " before the header" : "");
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN)
				return;
			if (errno == EIO) {
				dc_close(c, c->state != DC_RELAY, "%s",
				    tls_why(c->ssl));
				return;
			}
			c->icmp++; /* the client's port went away, maybe */
			dp->icmp++;
			continue;
		}
		c->last_ms = mtime_ms();
		if (c->state == DC_HEADER) {
			dc_header(c, dp->buf, (size_t)n);
			return; /* c may be gone */
		}
		c->in_pkts++;
		c->in_bytes += (uint64_t)n;
		if (send(c->dfd, dp->buf, (size_t)n, 0) < 0) {
			if (!dtls_transient(errno) && errno != EINTR) {
				dc_close(c, 0, "destination %s:%u: %s",
				    c->h.host, c->h.port, strerror(errno));
				return;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != ENOBUFS) {
				c->icmp++;
				dp->icmp++;
			}
			c->drops++;
			dp->drops++;
		}
	}
	/* records may be left inside OpenSSL with the socket drained */
	event_active(c->ev, EV_READ, 0);
}

/* Could some resolved address be allowed for port (a CIDR rule)? */
static int
acl_addr_possible(const struct server_conf *cf, uint16_t port)
{
	for (size_t i = 0; i < cf->nstream_allow; i++)
		if (cf->stream_allow[i].is_cidr &&
		    (cf->stream_allow[i].port == 0 ||
		    cf->stream_allow[i].port == port))
			return 1;
	return 0;
}

static void
dc_on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
	struct dconn *c = arg;
	const struct server_conf *cf = c->dp->srv->cf;
	struct evutil_addrinfo *ai;
	char a[NET_ADDRSTR_MAX];
	int fd = -1, saved = 0;

	c->dns = NULL;
	if (err == EVUTIL_EAI_CANCEL)
		return; /* dc_close is running */
	if (err != 0) {
		dc_close(c, 1, "cannot resolve %s: %s", c->h.host,
		    evutil_gai_strerror(err));
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (!c->name_allowed && !acl_match_addr(cf->stream_allow,
		    cf->nstream_allow, ai->ai_addr, c->h.port)) {
			saved = EACCES;
			continue;
		}
		fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		evutil_freeaddrinfo(res);
		dc_close(c, 1, "cannot reach %s:%u: %s", c->h.host, c->h.port,
		    saved == EACCES ? "no resolved address is allowed" :
		    strerror(saved != 0 ? saved : EHOSTUNREACH));
		return;
	}
	net_addr_str(ai->ai_addr, a, sizeof(a));
	evutil_freeaddrinfo(res);
	c->dfd = fd;
	log_info("dtls stream %llu (%s, %s): connected to %s:%u (%s)",
	    (unsigned long long)c->id, c->peera, c->subject, c->h.host,
	    c->h.port, a);
	c->dp->total++;
	c->state = DC_RELAY;
	c->last_ms = mtime_ms();
	c->dev = event_new(c->dp->srv->base, fd, EV_READ | EV_PERSIST,
	    dc_on_dest, c);
	event_add(c->dev, NULL);
	event_add(c->ev, NULL);
	evtimer_del(c->timer);
	dc_arm(c, c->dp->idle_s);
	/* records that came while resolving may sit inside OpenSSL */
	event_active(c->ev, EV_READ, 0);
}

static void
dc_header(struct dconn *c, const uint8_t *p, size_t len)
{
	struct server *srv = c->dp->srv;
	const struct server_conf *cf = srv->cf;
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	char port[8];
	int rc;

	if (len != SPROXY_HDR_LEN) {
		dc_close(c, 1, "the first record is %zu bytes, not the "
		    "%d-byte header", len, SPROXY_HDR_LEN);
		return;
	}
	rc = sproxy_decode(p, len, &c->h);
	if (rc == MG_ECRC) {
		dc_close(c, 1, "header checksum mismatch");
		return;
	}
	if (rc < 0) {
		dc_close(c, 1, "malformed header (version, lengths or port)");
		return;
	}
	c->name_allowed = acl_match_name(cf->stream_allow, cf->nstream_allow,
	    c->h.host, c->h.port);
	if (!c->name_allowed && !acl_addr_possible(cf, c->h.port)) {
		dc_close(c, 1, "destination %s:%u is not allowed by "
		    "--stream-allow", c->h.host, c->h.port);
		return;
	}
	if (srv->dns == NULL)
		srv->dns = evdns_base_new(srv->base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (srv->dns == NULL) {
		dc_close(c, 1, "no DNS resolver");
		return;
	}
	/* datagrams wait in the socket until the destination is open */
	event_del(c->ev);
	c->state = DC_RESOLVE;
	evtimer_del(c->timer);
	dc_arm(c, DS_DIAL_TIMEOUT_S);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_protocol = IPPROTO_UDP;
	hints.ai_family = AF_UNSPEC;
	snprintf(port, sizeof(port), "%u", c->h.port);
	req = evdns_getaddrinfo(srv->dns, c->h.host, port, &hints,
	    dc_on_resolved, c);
	/* NULL: answered at once, and c may be gone already */
	if (req != NULL)
		c->dns = req;
}

static void
dc_on_handshake(SSL *ssl, int err, const char *why, void *arg)
{
	struct dconn *c = arg;

	c->hs = NULL;
	if (err != 0) {
		dc_close(c, 1, "%s", why);
		return;
	}
	if (tls_peer_subject(ssl, c->subject, sizeof(c->subject)) < 0) {
		snprintf(c->subject, sizeof(c->subject), "no certificate");
		c->state = DC_HEADER;
		dc_close(c, 1, "the stream proxy requires a client "
		    "certificate");
		return;
	}
	log_debug("dtls stream %llu (%s, %s): handshake done",
	    (unsigned long long)c->id, c->peera, c->subject);
	c->state = DC_HEADER;
	c->ev = event_new(c->dp->srv->base, c->fd, EV_READ | EV_PERSIST,
	    dc_on_read, c);
	event_add(c->ev, NULL);
	dc_arm(c, DS_HEADER_TIMEOUT_S);
	event_active(c->ev, EV_READ, 0);
}

static int
same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;
		const struct sockaddr_in *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a;
		const struct sockaddr_in6 *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
	}
	return 0;
}

/* Drop one queued datagram: progress when OpenSSL could not take it. */
static void
ds_drop_queued(struct dsproxy *dp)
{
	uint8_t b;

	(void)recv(dp->fd, &b, 1, MSG_DONTWAIT);
}

/* A socket of our own for peer, on the listening address. */
static int
ds_conn_socket(struct dsproxy *dp, const struct sockaddr_storage *peer,
    socklen_t peerlen)
{
	int fd, one = 1, zero = 0;

	fd = socket(dp->local.ss_family, SOCK_DGRAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    (dp->local.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &zero, sizeof(zero)) < 0) ||
	    bind(fd, (const struct sockaddr *)&dp->local, dp->local_len) < 0 ||
	    connect(fd, (const struct sockaddr *)peer, peerlen) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* dtls_listen verified a cookie from peer: give it a connection. */
static void
ds_accept(struct dsproxy *dp, const struct sockaddr_storage *peer,
    socklen_t peerlen)
{
	SSL *ssl = dp->lssl;
	struct dconn *c, *o;
	char a[NET_ADDRSTR_MAX];
	int fd;

	dp->lssl = NULL;
	net_addr_str((const struct sockaddr *)peer, a, sizeof(a));
	if (dp->nconns >= DS_MAX_CONNS) {
		SSL_free(ssl);
		dp->refused++;
		smet_sproxy(dp->srv, 1, 0, 0);
		log_warn("dtls (%s): refused: %u connections open, the limit",
		    a, dp->nconns);
		return;
	}
	TAILQ_FOREACH(o, &dp->conns, link) {
		if (same_peer(&o->peer, peer)) {
			/* a ClientHello retransmitted before its connected
			 * socket existed; that connection goes on */
			SSL_free(ssl);
			log_debug("dtls (%s): duplicate ClientHello dropped",
			    a);
			return;
		}
	}
	if ((fd = ds_conn_socket(dp, peer, peerlen)) < 0) {
		log_warn("dtls (%s): refused: cannot open its socket: %s", a,
		    strerror(errno));
		SSL_free(ssl);
		dp->refused++;
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->dp = dp;
	c->ssl = ssl;
	c->fd = fd;
	c->dfd = -1;
	c->state = DC_HANDSHAKE;
	c->id = ++dp->next_id;
	memcpy(&c->peer, peer, sizeof(c->peer));
	c->peerlen = peerlen;
	snprintf(c->peera, sizeof(c->peera), "%s", a);
	snprintf(c->subject, sizeof(c->subject), "-");
	TAILQ_INSERT_TAIL(&dp->conns, c, link);
	dp->nconns++;
	c->timer = evtimer_new(dp->srv->base, dc_on_timer, c);
	if (dtls_accept_on(ssl, fd, (const struct sockaddr *)peer) < 0) {
		dc_close(c, 1, "out of memory for its DTLS state");
		return;
	}
	c->hs = tls_handshake_start(dp->srv->base, ssl, 1,
	    DS_HANDSHAKE_TIMEOUT_S, dc_on_handshake, c);
	if (c->hs == NULL)
		dc_close(c, 1, "cannot start the DTLS handshake");
}

static void
ds_on_listen(evutil_socket_t fd, short what, void *arg)
{
	struct dsproxy *dp = arg;

	loop_note_io();
	for (int i = 0; i < DS_BATCH; i++) {
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		uint8_t b;
		int r;

		if (dp->lssl == NULL &&
		    (dp->lssl = dtls_ssl_new(dp->ctx, dp->fd)) == NULL) {
			log_error("dtls: cannot make an SSL object");
			ds_drop_queued(dp); /* no busy loop on a full queue */
			return;
		}
		r = dtls_listen(dp->lssl, &peer, &pl);
		if (r < 0) {
			SSL_free(dp->lssl);
			dp->lssl = NULL;
			ds_drop_queued(dp); /* make progress whatever it was */
			continue;
		}
		if (r == 1) {
			ds_accept(dp, &peer, pl);
			continue;
		}
		if (recv(dp->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0)
			return;
	}
}

/* The UDP socket on host:port: all addresses (dual stack where there is
 * IPv6) for a wildcard host. SO_REUSEPORT lets each connection's socket
 * share the address. */
static int
ds_bind(struct dsproxy *dp, const char *host, uint16_t port, char *err,
    size_t errcap)
{
	struct addrinfo hints, *res = NULL, *ai;
	char ps[8];
	int fd = -1, one = 1, zero = 0, e = 0, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(ps, sizeof(ps), "%u", port);
	if (net_is_wildcard(host)) {
		hints.ai_family = AF_INET6;
		rc = getaddrinfo("::", ps, &hints, &res);
		if (rc != 0) {
			hints.ai_family = AF_INET;
			rc = getaddrinfo("0.0.0.0", ps, &hints, &res);
		}
	} else {
		hints.ai_family = AF_UNSPEC;
		rc = getaddrinfo(host, ps, &hints, &res);
	}
	if (rc != 0) {
		snprintf(err, errcap, "cannot resolve %s: %s", host,
		    gai_strerror(rc));
		return MG_EINVAL;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one)) == 0 && setsockopt(fd, SOL_SOCKET,
		    SO_REUSEPORT, &one, sizeof(one)) == 0 &&
		    (ai->ai_family != AF_INET6 || setsockopt(fd, IPPROTO_IPV6,
		    IPV6_V6ONLY, &zero, sizeof(zero)) == 0) &&
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		freeaddrinfo(res);
		snprintf(err, errcap, "cannot bind UDP %s:%u: %s", host, port,
		    strerror(e));
		return MG_EIO;
	}
	memcpy(&dp->local, ai->ai_addr, ai->ai_addrlen);
	dp->local_len = ai->ai_addrlen;
	freeaddrinfo(res);
	dp->fd = fd;
	return 0;
}

int
dsproxy_start(struct server *srv, char *err, size_t errcap)
{
	const struct server_conf *cf = srv->cf;
	struct tls_server_opts to = { cf->tls_cert, cf->tls_key,
		cf->tls_client_ca, TLS_CLIENT_AUTH_REQUIRE };
	struct dsproxy *dp = NULL;
	const char *e, *env;
	char host[256], a[NET_ADDRSTR_MAX];
	uint16_t port;
	int rc = MG_EINVAL;

	if (srv->dsp != NULL)
		return 0;
	if (srv->lst == NULL) {
		snprintf(err, errcap, "no control listener");
		goto out;
	}
	if (net_split_hostport(cf->addr, host, sizeof(host), &port, &e) != 0) {
		snprintf(err, errcap, "--addr %s: %s", cf->addr, e);
		goto out;
	}
	/* --addr with port 0: the port the control listener got */
	port = net_local_port(evconnlistener_get_fd(srv->lst));
	dp = xcalloc(1, sizeof(*dp));
	dp->srv = srv;
	dp->fd = -1;
	TAILQ_INIT(&dp->conns);
	dp->idle_s = DS_IDLE_S;
	/* a testing knob: tests cannot wait 5 min for an idle close */
	if ((env = getenv("MGROK_DTLS_IDLE_S")) != NULL && *env != '\0') {
		char *end;
		unsigned long v = strtoul(env, &end, 10);

		if (*end == '\0' && v >= 1 && v <= 86400)
			dp->idle_s = (unsigned)v;
	}
	if ((rc = dtls_server_ctx_new(&to, &dp->ctx, err, errcap)) != 0)
		goto out;
	if ((rc = ds_bind(dp, host, port, err, errcap)) != 0)
		goto out;
	dp->ev = event_new(srv->base, dp->fd, EV_READ | EV_PERSIST,
	    ds_on_listen, dp);
	if (dp->ev == NULL || event_add(dp->ev, NULL) != 0) {
		snprintf(err, errcap, "libevent failed");
		rc = MG_EIO;
		goto out;
	}
	dp->buf = xmalloc(DS_SCRATCH);
	srv->dsp = dp;
	dp = NULL;
	log_info("stream proxy over DTLS 1.2 on udp %s, client certificates "
	    "required, idle timeout %u s",
	    net_addr_str((struct sockaddr *)&srv->dsp->local, a, sizeof(a)),
	    srv->dsp->idle_s);
	rc = 0;
out:
	if (dp != NULL) {
		if (dp->ev != NULL)
			event_free(dp->ev);
		if (dp->fd >= 0)
			close(dp->fd);
		tls_ctx_free(dp->ctx);
		free(dp);
	}
	return rc;
}

int
dsproxy_reload(struct server *srv, char *err, size_t errcap)
{
	if (srv->dsp == NULL)
		return 0;
	return tls_server_reload(srv->dsp->ctx, err, errcap);
}

void
dsproxy_stop(struct server *srv)
{
	struct dsproxy *dp = srv->dsp;
	struct dconn *c;

	if (dp == NULL)
		return;
	while ((c = TAILQ_FIRST(&dp->conns)) != NULL)
		dc_close(c, 0, "server shutting down");
	log_info("dtls summary: %llu connections, %llu refused, %llu "
	    "datagrams dropped, %llu ICMP errors",
	    (unsigned long long)dp->total, (unsigned long long)dp->refused,
	    (unsigned long long)dp->drops, (unsigned long long)dp->icmp);
	SSL_free(dp->lssl);
	event_free(dp->ev);
	close(dp->fd);
	tls_ctx_free(dp->ctx);
	free(dp->buf);
	free(dp);
	srv->dsp = NULL;
}
