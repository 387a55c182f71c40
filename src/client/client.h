/* client.h: `mgrok tcp` / `mgrok client`: the session to the server,
 * registration, reconnects, and the data streams to local services. */
#ifndef MG_CLIENT_H
#define MG_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "relay/dgram.h"

struct client;
struct client_conf;
struct event_base;
struct evfeed;
struct metrics;

/* Per-tunnel HTTP figures for the exit summary (read from the metrics
 * registry, but min and max, which it does not keep). */
struct http_cstats {
	uint64_t requests;
	uint64_t by_class[6];     /* [2]: 2xx ...; [0]: a status < 100 */
	uint64_t lat_min_us, lat_max_us, lat_sum_us;
};

/* What the client reports to its front end (src/cli). */
struct client_hooks {
	/* a tunnel is registered at url (once per URL; an HTTP tunnel may
	 * have an http and an https one), or moved there after a server
	 * restart */
	void (*forwarding)(void *arg, const char *url, const char *local_host,
	    uint16_t local_port, const char *name);
	void *arg;
};

/*
 * client_new: prepare a client for cf (which must outlive it) and start
 * connecting. The client owns a metrics registry and an event feed
 * (client_metrics, client_events) and, when cf->inspect_addr is set, the
 * inspector's listener (client/inspect.h): a busy default address falls
 * back to the next ports up to 4049, then to no inspector (one warning);
 * a busy address the user gave fails. Without cf->have_client_id, the client id is this agent's
 * (agentid.h) and the agent's lock is held until client_free; a second
 * copy of the same agent gets NULL. hooks may be NULL (copied). Installs no
 * signal handler: the front end calls client_shutdown. Returns NULL after
 * saying why on stderr. Free with client_free.
 */
struct client *client_new(struct event_base *base,
    const struct client_conf *cf, const struct client_hooks *hooks);

/* client_shutdown: say Goodbye and close the session; the loop ends when
 * it is closed. A second call ends the loop at once. */
void client_shutdown(struct client *c);

/* client_exit_code: what the process should exit with once the loop ends:
 * 0 after client_shutdown, 1 after giving up or a fatal error. */
int client_exit_code(const struct client *c);

/* One tunnel's figures for the exit summary. The strings belong to the
 * client. bytes_in: from the public side to the local service; bytes_out:
 * back (TCP and TLS: stream payload; HTTP: the bytes of requests and
 * responses on the local connection; UDP: datagram payload). */
struct client_tunnel_stats {
	uint8_t type; /* enum proxy_type */
	const char *url, *name, *local_host;
	uint16_t local_port;
	uint64_t streams, refused, bytes_in, bytes_out;
	unsigned active;
	struct dgram_stats dg;    /* UDP */
	struct http_cstats http;  /* HTTP */
};

/* The agent's registry and event feed (docs/api.md): every figure of the
 * summary, /metrics and the inspector comes from them. Owned by c. */
struct metrics *client_metrics(const struct client *c);
struct evfeed *client_events(const struct client *c);
/* "HOST:PORT" of the inspector, or NULL when it is off */
const char *client_inspect_addr(const struct client *c);
/* streams refused (the local service unreachable, no such tunnel, a bad
 * stream header), over all tunnels */
uint64_t client_streams_refused(const struct client *c);

uint64_t client_uptime_ms(const struct client *c);
/* client_sessions: connections made to the server so far. */
uint64_t client_sessions(const struct client *c);
size_t client_ntunnels(const struct client *c);
void client_tunnel_stats(const struct client *c, size_t i,
    struct client_tunnel_stats *out);

/*
 * client_apply: make ncf the agent's configuration (it must outlive the
 * client or the next apply): tunnels added are registered, removed ones
 * unregistered (their public side closes), changed ones registered anew;
 * unchanged ones keep their public address and open connections, and the
 * session is not dropped. The server, token, TLS and identity settings
 * need a restart: ncf takes the running ones (swapped, so the caller frees
 * the unused values with the old configuration). A plan is logged. 0, or
 * an error with the reason in err and nothing changed.
 */
int client_apply(struct client *c, struct client_conf *ncf, char *err,
    size_t errcap);

/* client_reload_failed: a reload that did not get as far as client_apply
 * (the file did not load) counts too. */
void client_reload_failed(struct client *c, const char *why);

/* The reload counter and the last result, for metrics and the API. */
struct client_reload_status {
	unsigned long long reloads, failures;
	long long last_time;      /* Unix time of the last one; 0: none */
	int last_ok;
	char last_err[512];
};
void client_reload_status(const struct client *c,
    struct client_reload_status *st);

void client_free(struct client *c);

#endif
