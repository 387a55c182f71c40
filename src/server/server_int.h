/* server_int.h: the server's objects, shared by its .c files only. */
#ifndef MG_SERVER_INT_H
#define MG_SERVER_INT_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "proto/ctrl.h"
#include "relay/dgram.h"
#include "relay/tlsrelay.h"
#include "server/lb.h"
#include "server/registry.h"
#include "server/smet.h"

#define SERVER_ID_MAX 272

struct event;
struct event_base;
struct tls_ctx;
struct tls_certdir;
struct tls_hs;
struct dsproxy;
struct fwdudp;
struct ssl_st;
struct evdns_base;
struct evconnlistener;
struct mux;
struct mux_stream;
struct shaper;

enum sess_state {
	SESS_INIT = 0,
	SESS_HANDSHAKEN,
	SESS_AUTHENTICATED,
	SESS_BOUND,
	SESS_FORWARDING,
};

struct server;
struct session;

/* A public connection waiting for its lease's client to come back: on its
 * tunnel's list, ended with it. */
struct pending {
	TAILQ_ENTRY(pending) link;
	struct sockaddr_storage peer;
	int fd;
};
TAILQ_HEAD(pending_list, pending);

struct hconn;
LIST_HEAD(hconn_list, hconn);

/*
 * What differs between tunnel types. proxy.c runs the one registration
 * path and the lease and calls these; proxy.c fills in TCP's, udp.c UDP's
 * and hproxy.c those of HTTP, HTTPS and TLS; server.c puts them in
 * srv->ops. Each may be NULL.
 */
struct proxy_ops {
	/* start: the public socket fd (TCP listener or UDP) is the tunnel's
	 * now; 0, or an error after closing fd */
	int (*start)(struct proxy *px, int fd);
	/* serve_waiting: the client is back and knows the tunnel (RegisterOK
	 * went out): serve the visitors that waited */
	void (*serve_waiting)(struct proxy *px);
	/* stop: the tunnel ends: close its public side, refuse whoever waits */
	void (*stop)(struct proxy *px);
	/* log: the tunnel's summary line as it ends */
	void (*log)(const struct proxy *px);
};

/* A registered tunnel: its public side and its lease. Owned by the
 * registry (registry.h); others keep its id. */
struct proxy {
	LIST_ENTRY(proxy) link;       /* registry: all tunnels */
	LIST_ENTRY(proxy) owner_link; /* registry: its lease owner's */
	LIST_ENTRY(proxy) sess_link;  /* session->proxies, while bound */
	uint32_t id;                  /* registry id; 0 once removed */
	const struct proxy_ops *ops;
	struct server *srv;
	struct session *sess;         /* NULL while in grace */
	struct evconnlistener *lst;
	struct event *grace;
	struct pending_list pending;
	unsigned npending;
	uint8_t type;
	uint16_t port;
	uint16_t local_port;          /* as the client said */
	int auto_name;                /* the server chose the name */
	char name[CTRL_NAME_MAX + 1];
	char identity[SERVER_ID_MAX]; /* the lease owner (see session) */
	uint8_t client_id[CTRL_ID_LEN];
	int refuse_waiting;           /* the client left with Goodbye */
	const char *end_why;          /* why it ends (static), for its event */
	/* its owner's per-source rates (proxy_rate_ok), made on first use */
	struct ratelim *rl_conns, *rl_http;
	struct acl_rule *allow;       /* its agent's allowed sources (0x07) */
	size_t nallow;
	struct acl_rule *deny;        /* and denied ones (0x08, extension) */
	size_t ndeny;
	uint8_t proxy_protocol;       /* its agent's (0x06): 2 = NewStreamEx2 */
	uint64_t rl_conns_rate, rl_http_rate;
	/* its bandwidth limit (util/ratelim.h): its own buckets hold the
	 * agent's figure (RegisterEx 0x04), their parent its owner's token
	 * limit, shared by all the owner's tunnels; connections hold
	 * references, so a rate set here reaches them at once */
	struct shaper *shaper;
	uint64_t bw_agent;            /* bytes/s each way; 0 = none */
	struct met_series *m_throttled[2]; /* waits for tokens, in/out */
	/* its figures (smet.h): bytes in/out, connections, open ones, HTTP
	 * requests by status class (0: none, 1xx..5xx) */
	struct met_series *m_bytes[2], *m_conns, *m_active, *m_http[6];
	struct met_series *m_dgrams[2]; /* UDP: datagrams in and out */
	/* load-balancing groups (group.c, docs/internals/groups.md): a
	 * group holds the public side and no session; a member is a tunnel
	 * of a session without a public side of its own */
	int is_group;
	uint32_t group_id;            /* a member: its group's id */
	LIST_HEAD(, proxy) members;   /* a group's */
	LIST_ENTRY(proxy) member_link;
	unsigned nmembers;
	uint8_t group_key[32];        /* a group's: SHA-256 of its key */
	enum lb_strategy lb;          /* a group's */
	char lb_header[LB_HEADER_MAX];
	unsigned weight;              /* a member's, 1..LB_WEIGHT_MAX */
	int64_t lb_current;           /* a member's round robin state */
	unsigned fails;               /* a member's refused streams in a row */
	uint64_t ejected_until_ms;    /* out until then (monotonic ms) */
	unsigned eject_s;             /* its next back-off */
	/* health as its agent reports it (HealthReport): 0 not reported
	 * (counts as up), 1 up, -1 down */
	int health;
	char health_reason[201];
	int64_t health_since_unix_ms;
	uint64_t health_changes;
	/* a cluster's route (the public side): its claim's epoch, 0 none,
	 * and until when (monotonic ms) the claim is surely still ours: a
	 * TTL after the last claim or refresh went out, less a margin */
	uint64_t cl_epoch;
	uint64_t cl_valid_ms;
	/* a name the policy does not let its agent choose, asked as the one
	 * another node gave it (CTRL_CAP_CLUSTER): taken only if its route
	 * names the same lease owner already */
	int cl_owned_only;
	uint64_t http_lat_sum_us, http_lat_n; /* for the API's average */
	int64_t created_unix_ms;
	/* UDP proxies (udp.c) */
	int udp_fd;
	struct event *udp_ev, *udp_sweep;
	struct uflow **flows;         /* hash buckets, UFLOW_BUCKETS */
	TAILQ_HEAD(, uflow) flow_lru; /* least recently used first */
	unsigned nflows;
	struct dgram_stats dg;        /* per datagram figures (dgram_send) */
	/* HTTP, HTTPS and TLS proxies (hproxy.c) */
	char host[256];               /* the host name it serves */
	char basic_auth[256];         /* "user:pass", or "" */
	struct hconn_list hwait;      /* requests waiting for the client */
	unsigned nhwait;              /* at most cf->max_pending */
	unsigned nhconns;             /* public connections routed here */
};

struct session {
	TAILQ_ENTRY(session) link;
	struct server *srv;
	struct mux *mux;
	struct mux_stream *ctrl;
	struct event *deadline;       /* handshake/auth must finish */
	struct proxy_list proxies;
	enum sess_state state;
	uint64_t id;
	char identity[SERVER_ID_MAX]; /* "token#N" or "cert:SUBJECT" */
	int authed;
	int tls;                      /* over TLS (client cert: subject) */
	char subject[256];
	uint8_t method;
	uint8_t client_id[CTRL_ID_LEN];
	uint8_t client_nonce[CTRL_NONCE_LEN];
	uint8_t server_nonce[CTRL_NONCE_LEN];
	uint32_t caps;
	unsigned nproxies;
	int goodbye_received;
	uint64_t started_ms;
	uint64_t streams_total;
	char peer[64];
	char local_host[64];          /* the address the client reached */
	char agent[64];
	char close_why[256];          /* why the server ends it, for the log */
	int by_token;                 /* authenticated with a token: */
	uint8_t token_hash[32];       /* its SHA-256 (a reload may remove it) */
	/* its figures (smet.h): mgrok_client_info, the client's bytes */
	struct met_series *m_info, *m_bytes[2];
	int64_t connected_unix_ms;
	int replaced, kicked;         /* how it ends, for its event */
	/* answers to registrations, in order: one may wait for the
	 * cluster's claim while later ones are ready */
	TAILQ_HEAD(, regslot) regslots;
	uint64_t regslot_seq;
};
TAILQ_HEAD(session_list, session);

struct server {
	struct event_base *base;
	const struct server_conf *cf;
	struct evconnlistener *lst;
	struct event *drain_tick;
	struct tls_ctx *tls;          /* --tls */
	LIST_HEAD(, tls_pending) handshakes; /* TLS handshakes under way */
	unsigned nhandshakes;
	unsigned nsproxy;             /* stream proxy connections being set up */
	LIST_HEAD(, sp_conn) sp_setups; /* ... and the list of them */
	uint64_t sp_next_id;
	struct tlsrelay_set sp_relays; /* stream proxy connections relaying */
	struct evdns_base *dns;       /* for the stream proxy, made on demand */
	struct evconnlistener *http_lst, *https_lst;
	uint16_t http_port, https_port;
	struct tls_ctx *https_tls;    /* certificates for HTTPS termination */
	struct tls_certdir *https_certs; /* --https-cert-dir */
	struct hconn_list hconns;     /* every HTTP(S) connection */
	unsigned nhconns;
	/* the stream proxy (ALPN mgrok-stream/1), when configured */
	void (*sproxy_accept)(struct server *srv, int fd, struct ssl_st *ssl,
	    const struct sockaddr *peer);
	struct dsproxy *dsp;          /* the stream proxy over DTLS (dsproxy.c) */
	struct session_list sessions;
	struct registry reg;          /* every tunnel */
	const struct proxy_ops *ops[PROXY_TLS + 1]; /* by proxy type */
	/* a session broke the protocol on one of its streams (server.c) */
	void (*session_fail)(struct session *s, uint8_t code,
	    const char *text);
	LIST_HEAD(, hs_pending) peeks; /* HTTPS connections before TLS */
	unsigned npeeks;
	unsigned nsessions;
	unsigned nauthed;
	uint64_t next_session_id;
	uint64_t started_ms;
	struct cluster *cl;           /* NULL: not in a cluster */
	struct forward *fwd;          /* node links and forwarding (forward.c) */
	struct counts *counts;        /* cluster-wide counts (climits.c) */
	uint64_t drain_deadline_ms;
	uint64_t handover_deadline_ms; /* clients move until then */
	int handover_over;            /* public listeners closed */
	int shutting_down;
	long long reload_time;        /* of the last one, Unix time */
	int reload_ok;                /* the last reload's result */
	char reload_err[512];
	LIST_HEAD(, ppwait) ppwaits;  /* load balancers' PROXY headers */
	unsigned nppwaits;
	int accept_paused;            /* at the fd limit (accept.c) */
	struct event *accept_resume;
	uint64_t accept_log_ms;
	struct smet m;                /* every figure (smet.h) */
	struct admin *admin;          /* the admin listener (admin.c) */
	/* POST /api/v1/reload: the embedder's reload (src/cli re-reads the
	 * configuration), or NULL */
	int (*reload_cb)(void *arg, char *err, size_t errcap);
	void *reload_arg;
	char host_for_urls[256];      /* --public-host, or the bind address */
	uint8_t *udp_buf;             /* recvmmsg scratch, shared by proxies */
	struct fwdudp *fwdudp;        /* UDP ports other nodes own (fwdudp.c),
					 while there are any */
};

/* proxy.c */
/* proxy_register: the one registration path of every type (docs/protocol.md
 * 4.3, 4.6): checks, lease take-over or a new tunnel in the registry.
 * 0 and *out, or an error with *code and why for RegisterErr. */
int proxy_register(struct session *s, const struct ctrl_register *reg,
    uint8_t *code, char *why, size_t whycap, struct proxy **out);
/* proxy_serve_waiting: after RegisterOK: visitors that waited go on. */
void proxy_serve_waiting(struct proxy *px);
void proxy_unregister(struct proxy *px);
void proxy_session_lost(struct proxy *px);
/* proxy_ppwait_stop: end the connections still sending their PROXY
 * protocol header (the server ends) */
void proxy_ppwait_stop(struct server *srv);
void proxy_free(struct proxy *px);
/* proxy_open_stream: relay fd (the proxy takes it) to a new stream of
 * px's client; fd is reset when there is none. */
void proxy_open_stream(struct proxy *px, int fd,
    const struct sockaddr *peer);
/* proxy_route_key: the cluster route of px's public side
 * ("mgrok:route:tcp:20000", "...:host:shop.example.com") into buf; 0, or
 * -1 when it has none (a group member: its group's) */
int proxy_route_key(const struct proxy *px, char *buf, size_t cap);

/* proxy_side_misfit: may the policy pol hold a public side of this type,
 * port or host? NULL, or buf naming the rule */
const char *proxy_side_misfit(struct server *srv, const struct conf_policy *pol,
    uint8_t type, uint16_t port, const char *host, char *buf, size_t cap);

/* proxy_reset_close: close fd with RST (SO_LINGER 0). */
void proxy_reset_close(int fd);
/* proxy_where: "port N" or the host name, for log lines (static). */
const char *proxy_where(const struct proxy *px);
struct conf_policy;
struct ratelim;
/* proxy_policy: the policy of identity in the configuration in force
 * (borrowed until the next reload), or NULL */
const struct conf_policy *proxy_policy(const struct server *srv,
    const char *identity);
/* proxy_visitor_allowed: 0 when a visitor from sa may reach px by its
 * owner's allow/deny lists; -1 (counted, logged at debug) otherwise */
int proxy_visitor_allowed(struct proxy *px, const struct sockaddr *sa);
/* proxy_rate_ok: 0 when one more new connection (http 0) or HTTP request
 * (http 1) from sa is within the owner's per-source rate; -1 with the
 * seconds to wait in *retry_s (counted) otherwise */
int proxy_rate_ok(struct proxy *px, int http, const struct sockaddr *sa,
    unsigned *retry_s);
/* proxy_visitors_ok: 0 when the owner's tunnels may take one more public
 * connection (limits.visitors); -1 (counted) otherwise */
int proxy_visitors_ok(struct proxy *px);
/* proxy_shape: set px's bandwidth limits from its agent's figure and
 * its owner's policy in force (at registration and at each reload; open
 * connections follow at once). */
void proxy_shape(struct proxy *px);

/* proxy_misfit: why px's owner's policy no longer allows it (in buf), or
 * NULL; a reload closes such tunnels */
const char *proxy_misfit(struct proxy *px, char *buf, size_t cap);

/* proxy_is_http: HTTP, HTTPS and TLS tunnels, routed by host name. */
static inline int
proxy_is_http(uint8_t t)
{
	return t == PROXY_HTTP || t == PROXY_HTTPS || t == PROXY_TLS;
}
extern const struct proxy_ops proxy_tcp_ops;
/* proxy_stream_open: a data stream to px's client, its NewStream(Ex)
 * header written (peer may be NULL); NULL when the client is away or at
 * its stream limit. Counts the stream in the session and server. */
struct mux_stream *proxy_stream_open(struct proxy *px,
    const struct sockaddr *peer);
/* What a public listener knows of a visitor's connection besides its
 * address, for the metadata of a NewStreamEx2 header
 * (docs/internals/protocol-ext.md); borrowed for the call. */
struct stream_info {
	const char *authority;        /* the SNI or the Host, or NULL */
	const uint8_t *alpn;          /* ALPN names, (len u8 | name)* */
	size_t alpn_len;
};
/* proxy_stream_open_info: proxy_stream_open with a NewStreamEx2 header
 * carrying si (may be NULL) and what the server knows of px's owner, when
 * px was registered with PROXY protocol v2 and its session has
 * STREAM_META; otherwise exactly proxy_stream_open. */
struct mux_stream *proxy_stream_open_info(struct proxy *px,
    const struct sockaddr *peer, const struct stream_info *si);
/* proxy_open_stream_info: proxy_open_stream, the stream opened by
 * proxy_stream_open_info. */
void proxy_open_stream_info(struct proxy *px, int fd,
    const struct sockaddr *peer, const struct stream_info *si);
const char *proxy_url(const struct proxy *px, char *buf, size_t cap);

/* proxy_tcp_inject: fd is a visitor of px (a TCP tunnel or group) from
 * sa, as if accepted on its port (a visitor another node forwarded,
 * forward.h); prefix must be NULL */
struct evbuffer;
void proxy_tcp_inject(struct server *srv, struct proxy *px, int fd,
    const struct sockaddr *sa, struct evbuffer *prefix);

/* proxy_tcp_bridge: link (a node link's stream another node forwarded a
 * visitor of px's port on) joined straight to a new stream to px's agent,
 * after the checks of an accepted visitor: 0 when it took link (joined,
 * or refused: aborted), -1 when px needs a socket (a group, an agent
 * away, a bandwidth limit): then proxy_tcp_inject. */
int proxy_tcp_bridge(struct server *srv, struct proxy *px,
    struct mux_stream *link, const struct sockaddr *sa);

/* udp.c */
extern const struct proxy_ops udp_proxy_ops;
/*
 * udp_lb_header: a datagram from a --trusted-proxies balancer may start
 * with a PROXY protocol v2 header naming the visitor (one on each
 * datagram, or on a flow's first one at least; the balancer gives each
 * visitor its own source port, so replies go back to it bare). The
 * header is taken off the datagram (*p and *len move past it); *vis is
 * the visitor (the balancer sa itself for a LOCAL one). 1: a header was
 * there; 0: none; -1: a malformed one.
 */
int udp_lb_header(uint8_t **p, size_t *len, const struct sockaddr *sa,
    struct sockaddr_storage *vis);
/*
 * udp_link_flow: the owner's side of a UDP flow another node forwards
 * (forward.h, the UDP hooks' flow): st (taken) carries the datagrams of
 * the visitor peer to px's client and its replies back, each as u16
 * length | payload; the flow is one of px's as if peer had sent to its
 * socket (the owner's allow lists, rates and limits, a group member
 * chosen, the client's PROXY header, figures, the idle timeout). A flow
 * refused ends st at once (mux_stream_abort).
 */
void udp_link_flow(struct server *srv, struct proxy *px,
    struct mux_stream *st, const struct sockaddr *peer);


#endif
