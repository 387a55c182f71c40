/* server.h: `mgrok server`: the control listener, sessions and proxies. */
#ifndef MG_SERVER_H
#define MG_SERVER_H

#include <stddef.h>

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

/*
 * server_apply: make ncf (which must outlive the server, or the next
 * apply) the running configuration, as one step: everything that can
 * fail first (certificates read, listeners that move bound while the old
 * ones serve), then a plan in the log (tokens added and removed, limits,
 * ports, what needs a restart), then the swap. Sessions of a removed
 * token end with Goodbye naming the reason; tunnels and leases stay.
 * 0, or an error with the reason in err and nothing changed: the caller
 * keeps the old configuration (and frees ncf).
 */
int server_apply(struct server *srv, const struct server_conf *ncf,
    char *err, size_t errcap);

/* server_reload: server_apply of the running configuration: the
 * certificates and keys are read again for new connections; on error
 * the old ones stay (logged). */
void server_reload(struct server *srv);

/* server_reload_failed: a reload that did not get as far as server_apply
 * (the file did not load) counts too. */
void server_reload_failed(struct server *srv, const char *why);

/* The reload counter and the last result, for metrics and the API. */
struct server_reload_status {
	unsigned long long reloads, failures;
	long long last_time;      /* Unix time of the last one; 0: none */
	int last_ok;
	char last_err[512];
};
void server_reload_status(const struct server *srv,
    struct server_reload_status *st);

/* server_free: close everything; accepts NULL. */
/* server_set_reload: how POST /api/v1/reload reloads: fn re-reads the
 * configuration and calls server_apply (the cli's own SIGHUP path);
 * 0, or -1 with a message in err. Without it the API answers 501. */
void server_set_reload(struct server *srv,
    int (*fn)(void *arg, char *err, size_t errcap), void *arg);

void server_free(struct server *srv);

/* server_log_summary: one log line with the server's counters. */
void server_log_summary(struct server *srv);

#endif
