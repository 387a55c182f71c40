/*
 * tlsrelay.h: relay bytes between a TLS connection and a plain TCP socket,
 * both ways, with half-close (EOF on one side becomes close_notify or
 * shutdown(SHUT_WR) on the other once its bytes are through) and bounded
 * buffers (a side is not read while the other's queue is full).
 * Used by the stream proxy on the server and by `mgrok connect`.
 */
#ifndef MG_TLSRELAY_H
#define MG_TLSRELAY_H

#include <stdint.h>

struct event_base;
struct evbuffer;
struct ssl_st;
struct tlsrelay;

/* Called once when the relay ends (both sides closed): bytes from the TLS
 * side to the socket and back, and why it ended ("" for a clean end). */
typedef void (*tlsrelay_done_fn)(void *arg, uint64_t t2s, uint64_t s2t,
    const char *why);

/* The relays of one owner, so that it can end them all when it stops. */
struct tlsrelay_set {
	struct tlsrelay *head;
};

/*
 * tlsrelay_new: take over tls_fd with ssl (handshake done) and sock_fd
 * (connected, non-blocking); to_sock holds bytes already read from the TLS
 * side that go to the socket first, to_tls bytes that go to the TLS side
 * first (each may be NULL; their contents are taken).
 * Frees itself, closing both, when done. max_buf bounds each direction's
 * queue. set (may be NULL) lists the relay until it ends.
 */
struct tlsrelay *tlsrelay_new(struct event_base *base, int tls_fd,
    struct ssl_st *ssl, int sock_fd, struct evbuffer *to_sock,
    struct evbuffer *to_tls, size_t max_buf, struct tlsrelay_set *set,
    tlsrelay_done_fn done, void *arg);

/* tlsrelay_set_free: end every relay of set now, without calling done. */
void tlsrelay_set_free(struct tlsrelay_set *set);

#endif
