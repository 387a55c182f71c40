/* connect.c: the client of the stream proxy (`mgrok connect`, whose
 * options are in src/cli): every local TCP connection gets its own TLS
 * connection to the server (ALPN mgrok-stream/1) that starts with the
 * 274-byte header naming --to. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "client/connect.h"
#include "proto/sproxy.h"
#include "relay/dial.h"
#include "relay/tlsrelay.h"
#include "tls/tls.h"
#include "util/err.h"
#include "util/log.h"
#include "util/net.h"
#include "util/xmalloc.h"

#define CONNECT_TIMEOUT_S 10

struct connector {
	struct event_base *base;
	struct tls_ctx *tls;
	struct addrinfo *server_ai;
	uint8_t hdr[SPROXY_HDR_LEN];
	uint64_t conns, active, failed;
	struct tlsrelay_set relays;
	char server[300];
	char dest[300]; /* --to, for messages */
	struct evconnlistener *listener;
};

/* One local connection on its way to a TLS connection. */
struct cconn {
	struct connector *k;
	struct dial *dial;
	struct tls_hs *hs;
	SSL *ssl;
	int lfd, sfd;
};


static void
cconn_free(struct cconn *cc)
{
	if (cc->hs)
		tls_handshake_cancel(cc->hs);
	if (cc->ssl)
		SSL_free(cc->ssl);
	dial_cancel(cc->dial);
	if (cc->sfd >= 0)
		close(cc->sfd);
	if (cc->lfd >= 0)
		close(cc->lfd);
	free(cc);
}

static void
cconn_relay_done(void *arg, uint64_t t2s, uint64_t s2t, const char *why)
{
	struct connector *k = arg;

	k->active--;
	if (t2s == 0) {
		/* PROTOCOL 6: a refusal is a close without a reply, so a
		 * connection that got not one byte back is most likely one */
		log_warn("the server closed the stream-proxy connection to %s "
		    "without a byte from it: the destination is probably not "
		    "in the server's --stream-allow list, or the server could "
		    "not reach it (the server's log says which)", k->dest);
		return;
	}
	if (why[0])
		log_info("connection ended: %s (%llu bytes in, %llu out)", why,
		    (unsigned long long)t2s, (unsigned long long)s2t);
}

static void
cconn_on_handshake(SSL *ssl, int err, const char *why, void *arg)
{
	struct cconn *cc = arg;
	struct connector *k = cc->k;
	struct evbuffer *hdr;

	cc->hs = NULL;
	if (err) {
		log_error("TLS with %s: %s", k->server, why);
		k->failed++;
		cconn_free(cc);
		return;
	}
	hdr = evbuffer_new();
	evbuffer_add(hdr, k->hdr, sizeof(k->hdr));
	k->active++;
	tlsrelay_new(k->base, cc->sfd, ssl, cc->lfd, NULL, hdr, 256 * 1024,
	    &k->relays, cconn_relay_done, k);
	evbuffer_free(hdr);
	cc->ssl = NULL;
	cc->sfd = cc->lfd = -1;
	cconn_free(cc);
}

static void
cconn_on_dialed(int fd, int err, const struct sockaddr *sa, void *arg)
{
	struct cconn *cc = arg;

	cc->dial = NULL;
	if (fd < 0) {
		log_error("cannot reach server %s: %s", cc->k->server,
		    strerror(err ? err : ECONNREFUSED));
		cc->k->failed++;
		cconn_free(cc);
		return;
	}
	cc->sfd = fd;
	if ((cc->ssl = tls_ssl_new(cc->k->tls, cc->sfd)) == NULL ||
	    (cc->hs = tls_handshake_start(cc->k->base, cc->ssl, 0,
		CONNECT_TIMEOUT_S, cconn_on_handshake, cc)) == NULL) {
		log_error("cannot start TLS");
		cconn_free(cc);
	}
}

static void
connector_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct connector *k = arg;
	struct cconn *cc = xcalloc(1, sizeof(*cc));

	net_sock_tune(fd);
	cc->k = k;
	cc->lfd = fd;
	cc->sfd = -1;
	k->conns++;
	cc->dial = dial_start(k->base, k->server_ai, SOCK_STREAM,
	    CONNECT_TIMEOUT_S, NULL, cconn_on_dialed, cc);
	if (cc->dial == NULL) {
		log_error("cannot reach server %s: %s", k->server,
		    strerror(errno));
		k->failed++;
		cconn_free(cc);
	}
}

struct connector *
connector_new(struct event_base *base, const struct connect_opts *o,
    char *err, size_t errcap)
{
	struct connector *k = xcalloc(1, sizeof(*k));
	struct tls_client_opts to = o->tls;
	struct addrinfo hints;
	char port[8];
	int fd = -1, r;

	k->base = base;
	to.alpn = TLS_ALPN_STREAM;
	if (to.server_name == NULL)
		to.server_name = o->shost;
	if (sproxy_encode(o->dhost, o->dport, k->hdr) < 0) {
		snprintf(err, errcap, "--to: host too long");
		goto fail;
	}
	snprintf(k->server, sizeof(k->server), strchr(o->shost, ':') ?
	    "[%s]:%u" : "%s:%u", o->shost, o->sport);
	snprintf(k->dest, sizeof(k->dest), strchr(o->dhost, ':') ?
	    "[%s]:%u" : "%s:%u", o->dhost, o->dport);
	if (tls_client_ctx_new(&to, &k->tls, err, errcap) < 0)
		goto fail;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", o->sport);
	if ((r = getaddrinfo(o->shost, port, &hints, &k->server_ai)) != 0) {
		snprintf(err, errcap, "cannot resolve %s: %s", o->shost,
		    gai_strerror(r));
		goto fail;
	}
	if ((fd = net_listen_tcp(o->lhost, o->lport, 128)) < 0) {
		snprintf(err, errcap, "cannot listen on %s:%u: %s", o->lhost,
		    o->lport, strerror(errno));
		goto fail;
	}
	k->listener = evconnlistener_new(base, connector_on_accept, k,
	    LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (k->listener == NULL) {
		close(fd);
		snprintf(err, errcap, "cannot listen: libevent failed");
		goto fail;
	}
	return k;
fail:
	connector_free(k);
	return NULL;
}

const char *
connector_local_addr(const struct connector *k, char *buf, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(evconnlistener_get_fd(k->listener),
	    (struct sockaddr *)&ss, &sl) < 0)
		return "?";
	return net_addr_str((struct sockaddr *)&ss, buf, cap);
}

void
connector_stats(const struct connector *k, uint64_t *conns, uint64_t *failed)
{
	*conns = k->conns;
	*failed = k->failed;
}

void
connector_free(struct connector *k)
{
	if (k == NULL)
		return;
	tlsrelay_set_free(&k->relays);
	if (k->listener)
		evconnlistener_free(k->listener);
	if (k->server_ai)
		freeaddrinfo(k->server_ai);
	tls_ctx_free(k->tls);
	free(k);
}
