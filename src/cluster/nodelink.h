/*
 * nodelink.h: the links between the nodes of a cluster
 * (docs/internals/cluster.md, "Node links"). One smux session per pair of
 * nodes over TCP, opened on demand by the first node with something to
 * forward and then used both ways; both ends prove they hold the cluster
 * secret (HMAC-SHA256 over both nonces and both node ids, on the link's
 * first stream) before any other stream is taken. Each forwarded visitor
 * is one stream: a header (u16 length, then the caller's bytes), then the
 * visitor's bytes both ways, with the mux's flow control per stream. The
 * first stream also carries a status every second: whether the sender
 * reaches the cluster's store (a node cut off from Redis learns that the
 * others are not). Knows nothing of routes or tunnels.
 */
#ifndef MG_NODELINK_H
#define MG_NODELINK_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct mux_stream;
struct nodelink_set;
struct sockaddr;

#define NODELINK_HDR_MAX 1024       /* a stream header's bytes, at most */
#define NODELINK_SECRET_MIN 16      /* bytes of the cluster secret */
#define NODELINK_AUTH_TIMEOUT_MS 5000
#define NODELINK_STATUS_MS 1000     /* a status each way, every second */
#define NODELINK_DEAD_MS 5000       /* nothing heard this long: dead */
#define NODELINK_MAX_LINKS 256      /* authenticated or dialled links */
#define NODELINK_MAX_UNAUTH 64      /* incoming ones still proving */
#define NODELINK_MAX_WAIT 1024      /* opens waiting for one link */

struct nodelink_hooks {
	/* A peer node opened st with the header hdr[0..len). Take st
	 * (mux_stream_set_cbs, or a relay) or end it (mux_stream_abort, which
	 * the opener sees as a refusal). Bytes after the header may be
	 * queued on st already. Required. */
	void (*accept)(void *arg, const char *from, struct mux_stream *st,
	    const uint8_t *hdr, size_t len);
	void *arg;
};

/*
 * nodelink_new: the links of node self (an id), listening on listen_addr
 * (IP:PORT; "" listens nowhere: this node forwards but takes no links),
 * authenticated by secret (at least NODELINK_SECRET_MIN bytes; copied).
 * NULL with a message in err when the address cannot be listened on.
 */
struct nodelink_set *nodelink_new(struct event_base *base, const char *self,
    const char *listen_addr, const char *secret, const struct nodelink_hooks *h,
    char *err, size_t errcap);
/* nodelink_free: close every link; opens still waiting get their callback
 * with err "closing" before it returns. NULL is fine. */
void nodelink_free(struct nodelink_set *ls);

/*
 * nodelink_open: a stream to node (its id) at addr (IP:PORT), its header
 * hdr[0..len) sent first. cb(arg, st, NULL) once the link is up (the
 * caller owns st), or cb(arg, NULL, why) when it cannot be: called once,
 * possibly before nodelink_open returns. A link up already (either way
 * between the two nodes) is used; otherwise one is dialled (bounded in
 * time by NODELINK_AUTH_TIMEOUT_MS).
 */
typedef void (*nodelink_open_fn)(void *arg, struct mux_stream *st,
    const char *err);
void nodelink_open(struct nodelink_set *ls, const char *node, const char *addr,
    const uint8_t *hdr, size_t len, nodelink_open_fn cb, void *arg);

/* nodelink_touch: make sure a link to node (at addr) is up or being made,
 * to hear its status (nothing is opened on it). */
void nodelink_touch(struct nodelink_set *ls, const char *node,
    const char *addr);

/* nodelink_set_store_up: what this node's statuses say from now on. */
void nodelink_set_store_up(struct nodelink_set *ls, int up);

/* nodelink_peers_reach_store: the number of peers whose last status,
 * heard within NODELINK_DEAD_MS, says they reach the store; *heard (may be
 * NULL) the number heard from at all within that time. */
unsigned nodelink_peers_reach_store(const struct nodelink_set *ls,
    unsigned *heard);

struct nodelink_stats {
	uint64_t links_up;        /* links authenticated, both ways */
	uint64_t opened, accepted; /* streams */
	uint64_t auth_failures;   /* refused: a wrong secret or node */
	uint64_t open_failures;   /* opens answered with an error */
	unsigned links;           /* up now */
};
void nodelink_stats(const struct nodelink_set *ls, struct nodelink_stats *st);

/* nodelink_adopt_fd: take fd (connected, non-blocking; owned from now
 * on) as a link a peer dialled, as the listener does with a connection it
 * accepts; sa (may be NULL) is the peer's address for the logs. For tests
 * and fuzzers (a socketpair stands for the TCP connection). 0, or -1 when
 * it cannot be taken (too many links: fd is closed). */
int nodelink_adopt_fd(struct nodelink_set *ls, int fd,
    const struct sockaddr *sa);

/* nodelink_hmac: HMAC-SHA256 of the link handshake (exposed for tests):
 * role 'c' or 's', both nonces (16 bytes each), the dialling node's id and
 * the listening node's id */
void nodelink_hmac(const char *secret, char role, const uint8_t nc[16],
    const uint8_t ns[16], const char *dialer, const char *listener,
    uint8_t out[32]);

#endif
