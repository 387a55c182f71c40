/*
 * relay.h: bridge one connected socket and one mux stream, both ways,
 * with half-close and backpressure (the socket is not read while the
 * stream cannot send; the stream's window is not credited while the socket
 * does not take the bytes).
 */
#ifndef MG_RELAY_H
#define MG_RELAY_H

#include <stdint.h>

struct event_base;
struct mux_stream;
struct relay;

enum relay_flags {
	/* the stream ended before it carried a byte: reset the socket
	 * (RST) instead of a clean close (a refused stream, PROTOCOL 4.5) */
	RELAY_RST_IF_REFUSED = 1 << 0,
};

/* Called once when the relay ends, after it closed the socket and let go
 * of the stream: bytes read from the socket and written to it. */
typedef void (*relay_done_fn)(void *arg, uint64_t from_sock,
    uint64_t to_sock, int refused);

/*
 * relay_new: start relaying between fd (non-blocking; the relay owns and
 * closes it) and st (the relay takes it over and frees it). Bytes already
 * queued on st are written to fd first. done may be NULL. The relay frees
 * itself, calling done exactly once, when both directions are finished or
 * either side fails, or when the session dies. Returns the relay, or NULL
 * when it ended at once (done has been called).
 *
 * Only both directions finished (EOF and FIN each way) close fd in order;
 * a relay that ends otherwise resets fd (SO_LINGER 0, RST): when the
 * session dies, fd itself fails, or the far end's socket failed
 * (mux_stream_reset), the peer on fd must not mistake a cut transfer for a
 * complete one. When fd fails, the stream is aborted (mux_stream_abort),
 * so the relay at the far end resets its socket in turn.
 */
struct relay *relay_new(struct event_base *base, int fd,
    struct mux_stream *st, int flags, relay_done_fn done, void *arg);

#endif
