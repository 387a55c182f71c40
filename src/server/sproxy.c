/* sproxy.c: the stream proxy over TLS (docs/protocol.md section 6): an mTLS
 * client sends the 274-byte header naming (host, port); the server checks
 * it against --stream-allow, dials, and relays raw bytes both ways. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/ssl.h>

#include "proto/sproxy.h"
#include "relay/dial.h"
#include "relay/tlsrelay.h"
#include "server/server_int.h"
#include "server/sproxy.h"
#include "tls/tls.h"
#include "util/acl.h"
#include "util/err.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/net.h"
#include "util/xmalloc.h"

#define SP_HEADER_TIMEOUT_S 10
#define SP_DIAL_TIMEOUT_S 10
#define SP_MAX_BUF (256 * 1024)

/* A stream-proxy connection being set up (header, DNS, dial): on
 * srv->sp_setups until it relays or is refused, freed with the server. */
struct sp_conn {
	LIST_ENTRY(sp_conn) link;
	struct server *srv;
	SSL *ssl;
	int fd;
	struct dial *dial;
	struct event *ev, *timer;
	struct evdns_getaddrinfo_request *dns;
	struct evutil_addrinfo *ai;
	uint8_t hdr[SPROXY_HDR_LEN];
	size_t got;
	struct sproxy_hdr h;
	int name_allowed;     /* a name rule matched: any resolved address */
	uint64_t id;
	char peer[NET_ADDRSTR_MAX];
	char subject[256];
};


/* Could some resolved address be allowed for port (a CIDR rule)? */
static int
acl_match_addr_possible(const struct server_conf *cf, uint16_t port)
{
	for (size_t i = 0; i < cf->nstream_allow; i++)
		if (cf->stream_allow[i].is_cidr &&
		    (cf->stream_allow[i].port == 0 ||
			cf->stream_allow[i].port == port))
			return 1;
	return 0;
}

static void
sp_free(struct sp_conn *c, int close_all)
{
	if (c->dns)
		evdns_getaddrinfo_cancel(c->dns); /* calls back with CANCEL */
	if (c->ev)
		event_free(c->ev);
	if (c->timer)
		event_free(c->timer);
	dial_cancel(c->dial);
	if (c->ai)
		evutil_freeaddrinfo(c->ai);
	if (close_all) {
		tls_shutdown(c->ssl);
		SSL_free(c->ssl);
		close(c->fd);
	}
	LIST_REMOVE(c, link);
	c->srv->nsproxy--;
	free(c);
}

static void
sp_refuse(struct sp_conn *c, const char *why)
{
	log_warn("stream %llu (%s, %s): refused: %s",
	    (unsigned long long)c->id, c->peer, c->subject, why);
	smet_sproxy(c->srv, 1, 0, 0);
	sp_free(c, 1);
}

static void
sp_relay_done(void *arg, uint64_t t2s, uint64_t s2t, const char *why)
{
	struct server *srv = arg;

	smet_relay_add(srv, -1);
	smet_sproxy(srv, 0, t2s, s2t);
	if (why[0])
		log_info("stream proxy connection ended: %s (%llu bytes out, "
			 "%llu back)",
		    why, (unsigned long long)t2s, (unsigned long long)s2t);
}

/* Only addresses the allow-list admits (a name rule admits them all). */
static int
sp_filter(const struct sockaddr *sa, void *arg)
{
	struct sp_conn *c = arg;
	const struct server_conf *cf = c->srv->cf;

	return c->name_allowed || acl_match_addr(cf->stream_allow,
	    cf->nstream_allow, sa, c->h.port);
}

static void
sp_dial_failed(struct sp_conn *c, int err)
{
	char why[400];

	snprintf(why, sizeof(why), "cannot reach %s:%u: %s", c->h.host,
	    c->h.port, err == EACCES ? "no resolved address is allowed" :
	    strerror(err ? err : ECONNREFUSED));
	sp_refuse(c, why);
}

static void
sp_on_dialed(int fd, int err, const struct sockaddr *sa, void *arg)
{
	struct sp_conn *c = arg;
	char a[NET_ADDRSTR_MAX];

	c->dial = NULL;
	if (fd < 0) {
		sp_dial_failed(c, err);
		return;
	}
	log_info("stream %llu (%s, %s): connected to %s:%u (%s)",
	    (unsigned long long)c->id, c->peer, c->subject, c->h.host,
	    c->h.port, net_addr_str(sa, a, sizeof(a)));
	smet_relay_add(c->srv, 1);
	tlsrelay_new(c->srv->base, c->fd, c->ssl, fd, NULL, NULL,
	    SP_MAX_BUF, &c->srv->sp_relays, sp_relay_done, c->srv);
	sp_free(c, 0);
}

static void
sp_on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
	struct sp_conn *c = arg;
	char why[400];

	c->dns = NULL;
	if (err == EVUTIL_EAI_CANCEL)
		return; /* sp_free is running */
	if (err != 0) {
		snprintf(why, sizeof(why), "cannot resolve %s: %s", c->h.host,
		    evutil_gai_strerror(err));
		sp_refuse(c, why);
		return;
	}
	c->ai = res;
	c->dial = dial_start(c->srv->base, res, SOCK_STREAM,
	    SP_DIAL_TIMEOUT_S, sp_filter, sp_on_dialed, c);
	if (c->dial == NULL)
		sp_dial_failed(c, errno);
}

static void
sp_header_done(struct sp_conn *c)
{
	const struct server_conf *cf = c->srv->cf;
	struct evutil_addrinfo hints;
	char port[8], why[400];
	int rc = sproxy_decode(c->hdr, sizeof(c->hdr), &c->h);

	event_free(c->ev);
	c->ev = NULL;
	evtimer_del(c->timer);
	if (rc == MG_ECRC) {
		sp_refuse(c, "header checksum mismatch");
		return;
	}
	if (rc < 0) {
		sp_refuse(c, "malformed header (version, lengths or port)");
		return;
	}
	c->name_allowed = acl_match_name(cf->stream_allow, cf->nstream_allow,
	    c->h.host, c->h.port);
	if (!c->name_allowed && !acl_match_addr_possible(cf, c->h.port)) {
		snprintf(why, sizeof(why), "destination %s:%u is not allowed "
					   "by --stream-allow",
		    c->h.host, c->h.port);
		sp_refuse(c, why);
		return;
	}
	if (c->srv->dns == NULL)
		c->srv->dns = evdns_base_new(c->srv->base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (c->srv->dns == NULL) {
		sp_refuse(c, "no DNS resolver");
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	snprintf(port, sizeof(port), "%u", c->h.port);
	{
		struct timeval tv = { SP_DIAL_TIMEOUT_S, 0 };
		evtimer_add(c->timer, &tv);
	}
	{
		struct evdns_getaddrinfo_request *req = evdns_getaddrinfo(
		    c->srv->dns, c->h.host, port, &hints, sp_on_resolved, c);
		/* NULL: answered at once, and c may be gone already */
		if (req != NULL)
			c->dns = req;
	}
}

static void
sp_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct sp_conn *c = arg;

	loop_note_io();
	for (;;) {
		struct iovec iov = { c->hdr + c->got, sizeof(c->hdr) - c->got };
		int want_write = 0;
		ssize_t n = tls_readv(c->ssl, &iov, 1, &want_write);
		if (n == 0) {
			sp_refuse(c, "closed before the header was complete");
			return;
		}
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			sp_refuse(c, tls_why(c->ssl));
			return;
		}
		c->got += (size_t)n;
		if (c->got == sizeof(c->hdr)) {
			sp_header_done(c);
			return;
		}
	}
}

static void
sp_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct sp_conn *c = arg;

	sp_refuse(c, c->got < sizeof(c->hdr) ?
		"no complete header within 10 s" :
		"destination not reached within 10 s");
}

void
sproxy_accept(struct server *srv, int fd, SSL *ssl,
    const struct sockaddr *peer)
{
	struct sp_conn *c = xcalloc(1, sizeof(*c));
	struct timeval tv = { SP_HEADER_TIMEOUT_S, 0 };

	c->srv = srv;
	c->ssl = ssl;
	c->fd = fd;
	c->id = ++srv->sp_next_id;
	LIST_INSERT_HEAD(&srv->sp_setups, c, link);
	srv->nsproxy++;
	net_addr_str(peer, c->peer, sizeof(c->peer));
	if (tls_peer_subject(ssl, c->subject, sizeof(c->subject)) < 0) {
		snprintf(c->subject, sizeof(c->subject), "no certificate");
		sp_refuse(c, "the stream proxy requires a client certificate");
		return;
	}
	c->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, sp_on_read, c);
	c->timer = evtimer_new(srv->base, sp_on_timeout, c);
	event_add(c->ev, NULL);
	evtimer_add(c->timer, &tv);
	/* the handshake may have read the header already */
	event_active(c->ev, EV_READ, 1);
}

void
sproxy_stop(struct server *srv)
{
	while (!LIST_EMPTY(&srv->sp_setups))
		sp_free(LIST_FIRST(&srv->sp_setups), 1);
}
