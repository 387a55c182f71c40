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
	unsigned waiting;
};
void forward_stats(const struct server *srv, struct forward_stats *st);

#endif
