/* server.h: `mgrok server`: the control listener, sessions and proxies. */
#ifndef MG_SERVER_H
#define MG_SERVER_H

struct event_base;
struct server;
struct server_conf;

/*
 * server_new: bind the control listener from cf (which must outlive the
 * server) and install SIGINT/SIGTERM handlers for a graceful shutdown.
 * Returns NULL after logging why (address in use, ...). Free with
 * server_free.
 */
struct server *server_new(struct event_base *base,
    const struct server_conf *cf);

/* server_free: close everything; accepts NULL. */
void server_free(struct server *srv);

/* server_log_summary: one log line with the server's counters. */
void server_log_summary(struct server *srv);

#endif
