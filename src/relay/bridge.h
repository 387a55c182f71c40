/*
 * bridge.h: join two mux streams, both ways, with half-close and
 * backpressure: bytes queued on one go out on the other as its window and
 * session allow, and are credited to their sender only then; no socket,
 * no copy beyond the frames. The cluster's owner node joins a forwarded
 * visitor's node-link stream to the stream it opens to its agent.
 */
#ifndef MG_BRIDGE_H
#define MG_BRIDGE_H

#include <stdint.h>

#include "relay/relay.h"

struct mux_stream;
struct met_series;

struct bridge_opts {
	/* called once as the bridge ends, after it let go of both streams:
	 * bytes moved a to b and b to a, and why (relay.h's reasons:
	 * RELAY_END_REFUSED when b ended before a byte moved either way);
	 * may be NULL */
	void (*end)(void *arg, uint64_t a_to_b, uint64_t b_to_a,
	    enum relay_end why);
	void *arg;
	/* counters added to as bytes move (NULL: none); held (met_ref)
	 * until the end */
	struct met_series *a_to_b, *b_to_a;
};

/*
 * bridge_start: join a and b (the bridge takes both and frees them).
 * Bytes already queued on either go first. When both directions ended in
 * order (FIN each way) the streams close in order; when either was reset
 * (mux_stream_reset) or its session died, the other is aborted
 * (mux_stream_abort), so its far end sees a cut, never a clean end.
 * o is copied. Returns 0; o->end is always called exactly once, possibly
 * before bridge_start returns.
 */
int bridge_start(struct mux_stream *a, struct mux_stream *b,
    const struct bridge_opts *o);

#endif
