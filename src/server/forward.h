/*
 * forward.h: visitors of routes another node of the cluster owns
 * (docs/internals/cluster.md, "Visitors on a node that does not own the
 * route"). A route lookup cached for at most 2 s and dropped at once when
 * the store's channel says the route moved; listeners on the TCP ports
 * other nodes own; the node links (cluster/nodelink.h) that carry each
 * forwarded visitor as one stream with its original address; and, on the
 * owner, the stream handed to the tunnel as if the visitor had connected
 * here. Also the fence: a node cut off from Redis while the others reach
 * it stops serving its routes once their claims are past by its own clock.
 */
#ifndef MG_FORWARD_H
#define MG_FORWARD_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct proxy;
struct server;
struct sockaddr;

enum fwd_kind { FWD_TCP = 1, FWD_UDP = 2, FWD_HTTP = 3, FWD_HTTPS = 4 };

#define FWD_CACHE_MS 2000   /* a route lookup is trusted this long */
#define FWD_MAX_WAIT 4096   /* visitors waiting for a lookup or a link */

/*
 * What the owner does with a forwarded visitor, set by server.c (the
 * files that serve visitors sit above this one): take fd (a socket whose
 * far end relays the stream) as a visitor from peer. For FWD_TCP px is
 * the tunnel (or group) of the port; for HTTP(S) px is NULL and the
 * connection is routed by its own Host or SNI, never forwarded again.
 * prefix (may be NULL) holds bytes to read before fd's.
 */
typedef void (*forward_inject_fn)(struct server *srv, struct proxy *px,
    int fd, const struct sockaddr *peer, struct evbuffer *prefix);

/* forward_tcp_stream_fn: the owner's way for a TCP visitor without a
 * socket pair (the node link's stream joined to the agent's): 0 when it
 * took st, -1 when the inject function must have it */
struct mux_stream;
typedef int (*forward_tcp_stream_fn)(struct server *srv, struct proxy *px,
    struct mux_stream *st, const struct sockaddr *peer);
void forward_set_tcp_stream(struct server *srv, forward_tcp_stream_fn fn);

/* forward_set_route_moved: fn(srv, key) when the store's channel says
 * another node claimed route key (this node may hold it still: its claim
 * is fenced by the new epoch, and a refresh at once tells it so) */
void forward_set_route_moved(struct server *srv,
    void (*fn)(struct server *srv, const char *key));

/* forward_start: node links and forwarding for srv (in a cluster);
 * 0, or -1 with err */
int forward_start(struct server *srv, forward_inject_fn tcp,
    forward_inject_fn http, forward_inject_fn https, char *err,
    size_t errcap);
void forward_stop(struct server *srv);

/*
 * forward_visitor: a visitor of a route this node does not serve (kind,
 * and the host name for HTTP(S) or the port for TCP): looked up (cached),
 * then forwarded to its owner; when no node owns it, HTTP(S) goes back
 * to this node's own front (a 404 page), TCP is reset. Takes fd and
 * drains prefix (may be NULL: bytes read from fd already). Only when
 * forward_on(srv).
 */
void forward_visitor(struct server *srv, enum fwd_kind kind, const char *host,
    uint16_t port, int fd, const struct sockaddr *peer,
    struct evbuffer *prefix);
/*
 * forward_open: a stream to the owner of the UDP port (kind FWD_UDP) for
 * the flow of the visitor peer; cb(arg, st, NULL) with the stream (the
 * caller owns it: datagrams as u16 length | payload each way), or
 * cb(arg, NULL, why) when it goes nowhere. cb is called once, possibly
 * before forward_open returns.
 */
struct mux_stream;
typedef void (*forward_open_fn)(void *arg, struct mux_stream *st,
    const char *err);
void forward_open(struct server *srv, enum fwd_kind kind, uint16_t port,
    const struct sockaddr *peer, forward_open_fn cb, void *arg);

/*
 * UDP's side, set by server.c (the UDP module sits above this file):
 * port: a UDP port of the server's range that another node owns appeared
 * (open 1: listen on it and forward its flows with forward_open) or went
 * (0: stop); flow: on the owner, st carries the datagrams of the flow of
 * visitor peer to px's tunnel (the hook takes st).
 */
struct forward_udp_hooks {
	void (*port)(struct server *srv, uint16_t port, int open);
	void (*flow)(struct server *srv, struct proxy *px,
	    struct mux_stream *st, const struct sockaddr *peer);
};
void forward_set_udp(struct server *srv, const struct forward_udp_hooks *h);

/* forward_on: 1 when this node forwards (it is in a cluster) */
int forward_on(const struct server *srv);

/* forward_take_port: a tunnel of this node is about to listen on port
 * (TCP or UDP): the forwarding listener on it, if any, closes. */
void forward_take_port(struct server *srv, int udp, uint16_t port);

/*
 * forward_fenced: 1 when px's route must not be served by this node now:
 * its claim is past by this node's clock (no refresh for a TTL), and
 * another node says it reaches the store (so this one is cut off, and
 * the route may have a new owner). A node that no other reaches the
 * store with (a Redis outage) keeps serving what it holds.
 */
int forward_fenced(struct server *srv, const struct proxy *px);

/* the cluster's hooks: every heartbeat; the store up or down */
void forward_on_beat(struct server *srv);
void forward_on_store(struct server *srv, int up);

struct forward_stats {
	uint64_t out_conns, in_conns;   /* forwarded to / from other nodes */
	uint64_t lookups, cache_hits;   /* route lookups in Redis; visitors
					   served from the cache */
	uint64_t refused;               /* no owner, stale epoch, fenced */
	unsigned ports;                 /* forwarding listeners now */
	unsigned links;                 /* node links up now */
	unsigned nodes_up;              /* nodes listed by the store lately,
					   this one included */
	unsigned waiting;
};
void forward_stats(const struct server *srv, struct forward_stats *st);

#endif
