/* server.h: `mgrok server`: the control listener, sessions and proxies. */
#ifndef MG_SERVER_H
#define MG_SERVER_H

struct event_base;
struct server;
struct server_conf;

/*
 * server_new: check cf's files, then bind the control and public
 * listeners from cf (which must outlive the server). Returns NULL after
 * logging why (a bad certificate, address in use, ...). Free with
 * server_free. The server installs no signal handler: its embedder
 * (src/cli) calls server_shutdown and server_reload.
 */
struct server *server_new(struct event_base *base,
    const struct server_conf *cf);

/* server_shutdown: a graceful stop: Goodbye to every client, no new
 * connections, open streams drain up to --drain-timeout, then the event
 * loop exits. Called again while draining: the loop exits at once. */
void server_shutdown(struct server *srv);

/* server_reload: read the TLS certificates and keys again for new
 * connections; on error the old ones stay (logged). */
void server_reload(struct server *srv);

/* server_free: close everything; accepts NULL. */
void server_free(struct server *srv);

/* server_log_summary: one log line with the server's counters. */
void server_log_summary(struct server *srv);

#endif
