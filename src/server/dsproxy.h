/* dsproxy.h: the stream proxy over DTLS 1.2 on UDP (docs/protocol.md section 6):
 * the UDP twin of sproxy.c, on the control listener's port number. */
#ifndef MG_DSPROXY_H
#define MG_DSPROXY_H

#include <stddef.h>

struct server;

/*
 * dsproxy_start: bind UDP on --addr's host and the control listener's
 * actual port, with a DTLS server context from --tls-cert, --tls-key and
 * --tls-client-ca (client certificates required), and serve: cookie
 * exchange, one connected socket per client, the 274-byte header as the
 * first record, --stream-allow, one connected destination socket, then
 * one record per datagram both ways. Idle connections close after 5 min
 * (MGROK_DTLS_IDLE_S, read here, overrides that for tests). 0, or MG_EIO /
 * MG_EINVAL with the reason in err and nothing left open. Needs
 * srv->lst; undone by dsproxy_stop.
 */
int dsproxy_start(struct server *srv, char *err, size_t errcap);

/* dsproxy_reload: read the certificate, key and client CA again (SIGHUP),
 * as tls_server_reload. 0 (also when not started) or an error with the
 * reason in err, the old files kept. */
int dsproxy_reload(struct server *srv, char *err, size_t errcap);

/* dsproxy_stop: close every DTLS connection (close_notify), the socket and
 * the context, logging a summary. Safe when not started; call before
 * srv->dns is freed. */
void dsproxy_stop(struct server *srv);

#endif
