/* hproxy.h: the HTTP(S) front of the server (see hproxy.c). */
#ifndef MG_HPROXY_H
#define MG_HPROXY_H

#include <stddef.h>
#include <stdint.h>

struct evconnlistener;
struct proxy;
struct server;
struct server_conf;
struct tls_certdir;
struct tls_ctx;

/* What a configuration needs of the HTTP(S) front, made before anything
 * changes: its certificates, read anew, and listeners for addresses that
 * differ from the running ones (at start: all). */
struct hproxy_next {
	struct evconnlistener *http_lst, *https_lst;
	uint16_t http_port, https_port;
	int http_move, https_move;  /* the address changed (or first start) */
	struct tls_ctx *https_tls;
	struct tls_certdir *https_certs;
};

/* hproxy_prepare: read ncf's HTTPS certificates and bind the listeners
 * that move into n; 0, or an error with the reason in err (n empty, the
 * running front untouched). Then hproxy_commit or hproxy_discard. */
int hproxy_prepare(struct server *srv, const struct server_conf *ncf,
    struct hproxy_next *n, char *err, size_t errcap);
/* hproxy_commit: make n the running front (old listeners and contexts
 * freed; open connections keep going). */
void hproxy_commit(struct server *srv, struct hproxy_next *n);
void hproxy_discard(struct hproxy_next *n);
void hproxy_stop(struct server *srv);

/* hproxy_inject_http, hproxy_inject_https: fd is a public HTTP (HTTPS)
 * connection from sa that another node of the cluster forwarded here, or
 * that it had no other node for (forward.h's forward_inject_fn); prefix
 * holds HTTP bytes read already (HTTPS: none, the ClientHello is still in
 * fd). Routed by its own Host or SNI, never forwarded again. */
struct evbuffer;
struct sockaddr;
void hproxy_inject_http(struct server *srv, struct proxy *px, int fd,
    const struct sockaddr *sa, struct evbuffer *prefix);
void hproxy_inject_https(struct server *srv, struct proxy *px, int fd,
    const struct sockaddr *sa, struct evbuffer *prefix);

/* hproxy_ops: the HTTP, HTTPS and TLS tunnels' part (server_int.h). */
struct proxy_ops;
extern const struct proxy_ops hproxy_ops;

#endif
