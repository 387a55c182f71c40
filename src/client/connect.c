/* connect.c: `mgrok connect`, the client of the stream proxy: every local
 * TCP connection gets its own TLS connection to the server (ALPN
 * mgrok-stream/1) that starts with the 274-byte header naming --to. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
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

static void
connector_on_signal(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

static void
connect_usage(FILE *f)
{
	fputs("usage: mgrok connect --server HOST:PORT --to HOST:PORT "
	      "--listen HOST:PORT [--udp]\n"
	      "       --tls-cert F --tls-key F [--tls-ca F | --tls-pin "
	      "sha256:HEX]\n"
	      "       [--tls-server-name N] [--log-level L]\n"
	      "Each local connection (or, with --udp, each local source "
	      "address) reaches\n--to through the server's stream proxy, "
	      "over TLS (DTLS) with a client certificate.\n",
	    f);
}

int
connect_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "to", required_argument, NULL, 't' },
		{ "listen", required_argument, NULL, 'l' },
		{ "udp", no_argument, NULL, 'u' },
		{ "tls-ca", required_argument, NULL, 'a' },
		{ "tls-cert", required_argument, NULL, 'c' },
		{ "tls-key", required_argument, NULL, 'k' },
		{ "tls-server-name", required_argument, NULL, 'n' },
		{ "tls-pin", required_argument, NULL, 'p' },
		{ "tls", no_argument, NULL, 'T' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tls_client_opts to;
	struct connector k;
	const char *server = NULL, *dest = NULL, *listen_at = NULL, *err;
	char shost[256], dhost[256], lhost[256], port[8], terr[512];
	char buf[NET_ADDRSTR_MAX];
	uint16_t sport, dport, lport;
	int o, udp = 0, rc = 1, fd;
	enum log_level lvl = LOG_INFO;
	struct evconnlistener *l = NULL;
	struct event *sig_int = NULL, *sig_term = NULL;
	struct addrinfo hints;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	memset(&k, 0, sizeof(k));
	memset(&to, 0, sizeof(to));
	to.alpn = TLS_ALPN_STREAM;
	optind = 1;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (o) {
		case 's': server = optarg; break;
		case 't': dest = optarg; break;
		case 'l': listen_at = optarg; break;
		case 'u': udp = 1; break;
		case 'a': to.ca = optarg; break;
		case 'c': to.cert = optarg; break;
		case 'k': to.key = optarg; break;
		case 'n': to.server_name = optarg; break;
		case 'p': to.pin = optarg; break;
		case 'T': break;
		case 'L':
			if (log_level_parse(optarg, &lvl)) {
				fprintf(stderr, "mgrok: --log-level: expected "
						"error, warn, info or debug\n");
				return 2;
			}
			break;
		case 'h':
			connect_usage(stdout);
			return 0;
		default:
			fprintf(stderr, "mgrok: connect: %s: %s\n",
			    argv[optind - 1], o == ':' ? "needs a value" :
							 "unknown option");
			connect_usage(stderr);
			return 2;
		}
	}
	log_set_level(lvl);
	if (server == NULL || dest == NULL || listen_at == NULL) {
		fprintf(stderr, "mgrok: connect: --server, --to and --listen "
				"are required\n");
		return 2;
	}
	if (net_split_hostport(server, shost, sizeof(shost), &sport, &err) ||
	    shost[0] == '\0' || sport == 0) {
		fprintf(stderr, "mgrok: --server %s: %s\n", server,
		    err ? err : "expected HOST:PORT");
		return 2;
	}
	if (net_split_hostport(dest, dhost, sizeof(dhost), &dport, &err) ||
	    dhost[0] == '\0' || dport == 0) {
		fprintf(stderr, "mgrok: --to %s: %s\n", dest,
		    err ? err : "expected HOST:PORT");
		return 2;
	}
	if (net_split_hostport(listen_at, lhost, sizeof(lhost), &lport,
	    &err)) {
		fprintf(stderr, "mgrok: --listen %s: %s\n", listen_at, err);
		return 2;
	}
	if (to.cert == NULL || to.key == NULL) {
		fprintf(stderr, "mgrok: connect: the stream proxy needs a "
				"client certificate: --tls-cert and --tls-key\n");
		return 2;
	}
	if (udp)
		return connect_udp_main(shost, sport, dhost, dport, lhost,
		    lport, &to);
	if (to.server_name == NULL)
		to.server_name = shost;
	if (sproxy_encode(dhost, dport, k.hdr) < 0) {
		fprintf(stderr, "mgrok: --to: host too long\n");
		return 2;
	}
	snprintf(k.server, sizeof(k.server), "%s", server);
	if (tls_client_ctx_new(&to, &k.tls, terr, sizeof(terr)) < 0) {
		fprintf(stderr, "mgrok: TLS: %s\n", terr);
		return 1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", sport);
	if ((o = getaddrinfo(shost, port, &hints, &k.server_ai)) != 0) {
		fprintf(stderr, "mgrok: cannot resolve %s: %s\n", shost,
		    gai_strerror(o));
		goto out;
	}
	k.base = event_base_new();
	if ((fd = net_listen_tcp(lhost, lport, 128)) < 0) {
		fprintf(stderr, "mgrok: cannot listen on %s: %s\n", listen_at,
		    strerror(errno));
		goto out;
	}
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	l = evconnlistener_new(k.base, connector_on_accept, &k,
	    LEV_OPT_CLOSE_ON_FREE, -1, fd);
	sig_int = evsignal_new(k.base, SIGINT, connector_on_signal, k.base);
	sig_term = evsignal_new(k.base, SIGTERM, connector_on_signal, k.base);
	event_add(sig_int, NULL);
	event_add(sig_term, NULL);
	printf("Listening on %s -> %s via %s\n",
	    net_addr_str((struct sockaddr *)&ss, buf, sizeof(buf)), dest,
	    server);
	fflush(stdout);
	event_base_dispatch(k.base);
	fprintf(stderr, "mgrok: summary: %llu connections (%llu failed)\n",
	    (unsigned long long)k.conns, (unsigned long long)k.failed);
	rc = 0;
out:
	tlsrelay_set_free(&k.relays);
	if (l)
		evconnlistener_free(l);
	if (sig_int)
		event_free(sig_int);
	if (sig_term)
		event_free(sig_term);
	if (k.server_ai)
		freeaddrinfo(k.server_ai);
	tls_ctx_free(k.tls);
	if (k.base)
		event_base_free(k.base);
	return rc;
}
