/* hproxy.h: the HTTP(S) front of the server (see hproxy.c). */
#ifndef MG_HPROXY_H
#define MG_HPROXY_H

#include <stddef.h>
#include <stdint.h>

struct proxy;
struct server;

/* hproxy_start: open --http-addr and --https-addr (each when set); 0, or
 * an error with the reason in err. */
int hproxy_start(struct server *srv, char *err, size_t errcap);
void hproxy_stop(struct server *srv);

/* hproxy_client_back: px's client returned (px->sess set): requests that
 * waited go on; or its lease ended (px->sess NULL): they get 502. */
void hproxy_client_back(struct proxy *px);

#endif
