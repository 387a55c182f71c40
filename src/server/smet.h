/*
 * smet.h: the server's figures and events (src/metrics): the families it
 * registers, the series a session and a tunnel hold, and one function per
 * thing that happens, so each figure is counted in one place. Every
 * reader (the exit summary, /metrics, the JSON API, the dashboard) reads
 * these series.
 */
#ifndef MG_SMET_H
#define MG_SMET_H

#include <stdint.h>
#include <sys/socket.h>

struct server;
struct session;
struct proxy;
struct sockaddr;
struct metrics;
struct met_family;
struct met_series;
struct evfeed;

enum smet_dir { SMET_IN = 0, SMET_OUT = 1 };

/* where a public connection or stream was refused */
enum smet_refusal {
	SMET_REF_NO_STREAM = 0,   /* the client is away or at its limit */
	SMET_REF_CLIENT,          /* the client refused it (local dial) */
	SMET_REF_HTTP_CAP,        /* --http-max-conns */
	SMET_REF_TUNNEL_CAP,      /* --http-max-conns-per-tunnel */
	SMET_REF_NO_TUNNEL,       /* no tunnel for that host */
	SMET_REF_HANDSHAKE_CAP,   /* --max-handshakes */
	SMET_REF_PENDING_CAP,     /* too many visitors waiting for a lease */
	SMET_REF_SHUTDOWN,
	SMET_REF_POLICY,          /* the owner's allow/deny lists */
	SMET_REF_RATE,            /* the owner's per-source rates */
	SMET_REF_VISITORS,        /* the owner's limits.visitors */
	SMET_REF_UNTRUSTED,       /* not a --trusted-proxies address */
	SMET_REF_PROXY_HEADER,    /* a bad or missing PROXY header */
	SMET_REF_DOWN,            /* no group member up, or the tunnel's
				     service reported down */
	SMET_REF_COUNT
};

/* why an authentication failed */
enum smet_auth {
	SMET_AUTH_BAD_HELLO = 0,
	SMET_AUTH_BAD_TOKEN,
	SMET_AUTH_METHOD,
	SMET_AUTH_TIMEOUT,
	SMET_AUTH_TLS,
	SMET_AUTH_EXPIRED,
	SMET_AUTH_COUNT
};

/* the TLS listeners */
enum smet_tls { SMET_TLS_CONTROL = 0, SMET_TLS_HTTPS, SMET_TLS_STREAM,
	SMET_TLS_COUNT };

struct smet {
	struct metrics *reg;
	struct evfeed *feed;
	int detail_events;        /* emit request/connection events (the
				     admin listener is on) */
	struct met_family *f_client_info, *f_client_bytes;
	struct met_family *f_tun_bytes, *f_tun_conns, *f_tun_active;
	struct met_family *f_tun_http, *f_http_req, *f_sessions, *f_tunnels;
	struct met_family *f_tls_fail, *f_udp_drops, *f_tun_dgrams;
	struct met_family *f_reg_refused;
	struct met_family *f_tun_throttled;   /* by tunnel and direction */
	struct met_series *throttled[2];      /* all tunnels' */
	struct met_series *bytes[2];          /* all public bytes */
	struct met_series *conns_active;      /* all tunnels' */
	struct met_series *sessions_total, *auth_fail[SMET_AUTH_COUNT];
	struct met_series *streams_opened, *streams_active;
	struct met_series *refused[SMET_REF_COUNT];
	/* groups and health */
	struct met_series *health_reports[2]; /* down, up */
	struct met_series *tunnels_down, *ejections, *group_retries;
	/* the cluster's figures (smet_cluster), and the totals last seen */
	struct met_series *cl_up, *cl_claims[3], *cl_lost, *cl_cmds,
	    *cl_errors, *cl_rtt;
	uint64_t cl_seen[6];
	/* forwarding between nodes (smet_forward), and the totals seen */
	struct met_series *fw_conns[2], *fw_bytes[2], *fw_lookups, *fw_hits,
	    *fw_refused, *fw_links, *fw_ports, *fw_nodes;
	uint64_t fw_seen[5];
	/* visitor_refused events: the last one's time (monotonic ms) and
	 * the refusals since, per reason */
	uint64_t ref_ev_ms[SMET_REF_COUNT], ref_ev_skipped[SMET_REF_COUNT];
	struct met_series *http_latency;
	struct met_series *udp_dgrams[2], *udp_flows_total, *udp_flows_active;
	struct met_series *tls_ok[SMET_TLS_COUNT];
	struct met_series *leases_expired, *leases_resumed;
	struct met_series *reloads_ok, *reloads_failed;
	struct met_series *fd_limit;
	struct met_series *sp_conns, *sp_refused; /* the stream proxy */
};

/* smet_init: register every family (max_series from the config) and
 * the process figures; smet_free after every session and tunnel. */
void smet_init(struct server *srv);
void smet_free(struct server *srv);

/* sessions */
void smet_session_up(struct session *s);      /* authenticated */
void smet_session_down(struct session *s, const char *why);
void smet_session_replaced(struct session *old, const struct session *by);
void smet_auth_failed(struct server *srv, enum smet_auth why);
/* a Register refused with RegisterErr code and its message */
void smet_register_refused(struct session *s, uint8_t code,
    const char *name, const char *why);

/* tunnels: up (registered or resumed), bound to its session's series,
 * down (with the reason) */
void smet_tunnel_up(struct proxy *px, int resumed, const char *url);
void smet_tunnel_grace(struct proxy *px);
void smet_tunnel_down(struct proxy *px, const char *why);
void smet_lease_expired(struct proxy *px);

/* traffic of a tunnel's public side */
void smet_bytes(struct proxy *px, enum smet_dir d, uint64_t n);

/*
 * A public connection (TCP, TLS, HTTP) or UDP flow of a tunnel: it holds
 * its tunnel's series, so it counts into them (and through their links
 * into the client's and the server's totals) even when the tunnel ended
 * first. Embedded in the connection's own struct.
 */
struct smet_conn {
	struct met_series *bytes[2], *active;
	uint64_t start_ms;
	uint64_t n[2];                /* this connection's bytes */
	uint32_t px_id;
	struct sockaddr_storage peer;
};
/* smet_conn_begin: counts a connection of px (peer may be NULL) */
void smet_conn_begin(struct smet_conn *c, struct proxy *px,
    const struct sockaddr *peer);
void smet_conn_bytes(struct smet_conn *c, enum smet_dir d, uint64_t n);
/* smet_conn_tally: the connection's own totals, when something else (a
 * relay holding c->bytes) added them to the series as they moved */
void smet_conn_tally(struct smet_conn *c, uint64_t in, uint64_t out);
/* smet_conn_end: the record ends (why: "closed", "reset", "refused",
 * "idle", "session lost"); a connection_closed event when detailed.
 * Idempotent; a zeroed smet_conn is fine. */
void smet_conn_end(struct server *srv, struct smet_conn *c,
    const char *why);
/* smet_refused: counts one; returns how many of r so far */
uint64_t smet_refused(struct server *srv, enum smet_refusal r);
/* bytes of a public connection routed to no tunnel (an error page) */
void smet_unrouted(struct server *srv, enum smet_dir d, uint64_t n);
/* a data stream to a client was opened (every type) */
void smet_stream_opened(struct server *srv);
/* relays of TCP tunnels and the stream proxy: open now (the drain waits
 * for them) */
void smet_relay_add(struct server *srv, int delta);
int64_t smet_relays(struct server *srv);
/* the stream proxy: a connection, bytes, the end */
void smet_sproxy(struct server *srv, int refused, uint64_t in, uint64_t out);
void smet_fd_limit(struct server *srv);
uint64_t smet_fd_limits(struct server *srv);
/* an HTTP request through px ended: its status (0: none) and latency */
void smet_http_request(struct server *srv, struct proxy *px,
    const char *method,
    const char *uri, int status, uint64_t latency_us,
    const struct sockaddr *peer, uint64_t in, uint64_t out);
/* UDP */
/* datagrams (their bytes go through the flow's smet_conn) */
void smet_udp(struct proxy *px, enum smet_dir d, uint64_t dgrams);
void smet_udp_drop(struct server *srv, enum smet_dir d, const char *why,
    uint64_t n);
void smet_udp_flow(struct server *srv, int delta);
/* bandwidth limits: a connection of px (NULL: gone, not counted) waited
 * for tokens in direction d (TCP and TLS relays count through
 * px->m_throttled themselves); a UDP datagram over the limit is dropped
 * and counted by smet_udp_drop with the reason "bandwidth" */
void smet_bw_throttled(struct proxy *px, enum smet_dir d);
/* TLS handshakes */
void smet_tls(struct server *srv, enum smet_tls l, const char *fail_why);
/* reloads */
void smet_reload(struct server *srv, int ok, const char *text);

/* reading */
struct smet_summary {
	uint64_t sessions, auth_failures, streams, refused, bytes[2];
	int64_t relays;
	uint64_t http_requests, udp[2], udp_drops[2];
};
void smet_summary(struct server *srv, struct smet_summary *out);
void smet_reloads(const struct server *srv, unsigned long long *all,
    unsigned long long *failed);
uint64_t smet_total(struct server *srv, enum smet_dir d);
uint64_t smet_px_bytes(const struct proxy *px, enum smet_dir d);
uint64_t smet_px_conns(const struct proxy *px);
uint64_t smet_px_dgrams(const struct proxy *px, enum smet_dir d);
int64_t smet_px_active(const struct proxy *px);
uint64_t smet_sess_bytes(const struct session *s, enum smet_dir d);

/*
 * smet_visitor_refused: a visitor refused by a rule (r: the owner's lists,
 * rates or visitor count, an untrusted peer, a bad PROXY header): counted
 * like smet_refused and, while the admin listener is on, an event
 * "visitor_refused" (tunnel, name, reason, remote_addr, detail,
 * suppressed): at most one a second per reason, the refusals between
 * counted in the next one's "suppressed". px may be NULL (no tunnel yet),
 * sa and detail too. Returns the reason's count.
 */
struct proxy;
struct sockaddr;
uint64_t smet_visitor_refused(struct server *srv, const struct proxy *px,
    enum smet_refusal r, const struct sockaddr *sa, const char *detail);

/* smet_health: px's agent reported it up or down (px->health and
 * health_reason set; was: the state before, -1 0 1): counted, the gauge
 * of tunnels down kept, an event "tunnel_health" */
void smet_health(struct proxy *px, int was);
/* smet_health_gone: a tunnel reported down ends (was: its state) */
void smet_health_gone(struct server *srv, int was);
/* smet_member_ejected: a group member taken out (px->eject_s seconds):
 * counted, an event "member_ejected" */
void smet_member_ejected(struct proxy *px);
/* smet_group_retry: a refused visitor was tried again on another member */
void smet_group_retry(struct server *srv);

/* smet_cluster: the cluster's figures as cluster_stats read them now
 * (claims ok/conflict/failed, routes lost, Redis commands, errors, round
 * trip, up), into mgrok_cluster_*; called before each scrape */
struct cluster_stats;
void smet_cluster(struct server *srv, const struct cluster_stats *st);
/* smet_forward: forwarding's figures (forward.h) into mgrok_cluster_*;
 * called before each scrape */
struct forward_stats;
void smet_forward(struct server *srv, const struct forward_stats *st);

#endif
