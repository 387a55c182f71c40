/* hproxy.h: the HTTP(S) front of the server (see hproxy.c). */
#ifndef MG_HPROXY_H
#define MG_HPROXY_H

#include <stddef.h>
#include <stdint.h>

struct proxy;
struct server;

/* hproxy_load: read the HTTPS certificates (--https-cert, -cert-dir); 0,
 * or an error with the reason in err. Before hproxy_start. */
int hproxy_load(struct server *srv, char *err, size_t errcap);
/* hproxy_start: open --http-addr and --https-addr (each when set); 0, or
 * an error with the reason in err. */
int hproxy_start(struct server *srv, char *err, size_t errcap);
void hproxy_stop(struct server *srv);

/* hproxy_ops: the HTTP, HTTPS and TLS tunnels' part (server_int.h). */
struct proxy_ops;
extern const struct proxy_ops hproxy_ops;

#endif
