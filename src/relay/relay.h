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

/* Why a relay ended (relay_start's end callback). */
enum relay_end {
	RELAY_END_CLOSED = 0,   /* both directions ended in order */
	RELAY_END_RESET,        /* a side reset or failed */
	RELAY_END_REFUSED,      /* the stream ended before a byte (refused) */
	RELAY_END_SESSION_LOST, /* the session died under the stream */
};

/* relay_end_name: "closed", "reset", "refused", "session lost" (the
 * close_reason words of docs/api.md). */
const char *relay_end_name(enum relay_end why);

struct met_series;

struct relay_opts {
	int flags;              /* enum relay_flags */
	/* called once as the relay ends, after it closed the socket and
	 * let go of the stream: bytes read from the socket and written to
	 * it, and why it ended; may be NULL */
	void (*end)(void *arg, uint64_t from_sock, uint64_t to_sock,
	    enum relay_end why);
	void *arg;
	/* counters the relay adds to as bytes move, not only at the end
	 * (NULL: none); it holds a reference (met_ref) until it ends */
	struct met_series *from_sock, *to_sock;
	/* a bandwidth limit (NULL: none): bytes read from the socket pass
	 * its SHAPER_IN, bytes written to it its SHAPER_OUT (util/ratelim.h).
	 * While a direction has no tokens its source is not read (the
	 * socket; or the stream's queue, whose window then holds the far
	 * end) and a timer wakes it when they are back: no polling, no
	 * buffer beyond the window. The relay holds a reference until it
	 * ends, so a new rate set on the shaper applies at once. */
	struct shaper *shaper;
	/* counted once each time a direction waits for tokens, by enum
	 * shaper_dir (NULL: not counted); held like from_sock */
	struct met_series *throttled[2];
	/* the stream was refused, or its session died, before a byte moved
	 * either way: fd is offered to the owner (to try another way, e.g.
	 * another member of a group); 1 when it took fd (then the relay
	 * neither closes nor resets it). NULL: none. Called before end. */
	int (*refused)(void *arg, int fd);
};

/*
 * relay_start: start relaying between fd (non-blocking; the relay owns and
 * closes it) and st (the relay takes it over and frees it). Bytes already
 * queued on st are written to fd first. The options of o are copied: the
 * live byte counters (held until the end) and the end callback (may be
 * NULL). The relay frees itself, calling o->end exactly once with the
 * reason, when both directions are finished or either side fails, or when
 * the session dies. Returns the relay, or NULL when it ended at once
 * (o->end has been called).
 *
 * Only both directions finished (EOF and FIN each way) close fd in order;
 * a relay that ends otherwise resets fd (SO_LINGER 0, RST): when the
 * session dies, fd itself fails, or the far end's socket failed
 * (mux_stream_reset), the peer on fd must not mistake a cut transfer for a
 * complete one. When fd fails, the stream is aborted (mux_stream_abort),
 * so the relay at the far end resets its socket in turn.
 */
struct relay *relay_start(struct event_base *base, int fd,
    struct mux_stream *st, const struct relay_opts *o);

#endif
