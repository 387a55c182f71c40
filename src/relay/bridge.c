/* bridge.c: see bridge.h. */
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"
#include "mux/mux.h"
#include "relay/bridge.h"
#include "util/err.h"
#include "util/xmalloc.h"

struct bridge {
	struct mux_stream *s[2];      /* a, b; NULL once let go */
	struct bridge_opts o;
	uint64_t moved[2];            /* a to b, b to a */
	int fin[2];                   /* the FIN of s[i] went to the other */
	int busy;                     /* inside our own calls */
	int done;
	enum relay_end why;
};

static void bridge_readable(struct mux_stream *st, void *arg);
static void bridge_writable(struct mux_stream *st, void *arg);
static void bridge_closed(struct mux_stream *st, void *arg);

static const struct mux_stream_cbs bridge_cbs = {
	.readable = bridge_readable,
	.writable = bridge_writable,
	.closed = bridge_closed,
};

static void
bridge_destroy(struct bridge *b)
{
	if (b->o.end)
		b->o.end(b->o.arg, b->moved[0], b->moved[1], b->why);
	met_release(b->o.a_to_b);
	met_release(b->o.b_to_a);
	free(b);
}

/* the end: both streams let go (in order after FIN both ways, else
 * aborted so that their far ends see a cut); freed once unwound */
static void
bridge_finish(struct bridge *b, enum relay_end why)
{
	if (b->done)
		return;
	b->done = 1;
	if (why == RELAY_END_RESET && b->moved[0] == 0 && b->moved[1] == 0)
		why = RELAY_END_REFUSED;
	b->why = why;
	for (int i = 0; i < 2; i++) {
		struct mux_stream *st = b->s[i];
		if (st == NULL)
			continue;
		b->s[i] = NULL;
		mux_stream_set_cbs(st, NULL, NULL);
		if (why == RELAY_END_CLOSED)
			mux_stream_free(st);
		else
			mux_stream_abort(st);
	}
	if (b->busy == 0)
		bridge_destroy(b);
}

/* move what s[i] holds to the other, then its FIN or its reset */
static void
bridge_pump(struct bridge *b, int i)
{
	struct mux_stream *src, *dst;
	ssize_t n;

	if (b->done || (src = b->s[i]) == NULL || (dst = b->s[1 - i]) == NULL)
		return;
	if (mux_stream_queued(src) > 0) {
		n = mux_stream_send_buffer(dst, mux_stream_rx(src));
		if (n > 0) {
			mux_stream_consumed(src, (size_t)n);
			b->moved[i] += (uint64_t)n;
			met_add(i == 0 ? b->o.a_to_b : b->o.b_to_a,
			    (uint64_t)n);
		} else if (n == MG_ECLOSED) {
			bridge_finish(b, RELAY_END_RESET);
			return;
		}
		if (b->done || mux_stream_queued(src) > 0)
			return; /* dst's writable calls again */
	}
	if (mux_stream_reset(src)) {
		bridge_finish(b, RELAY_END_RESET);
		return;
	}
	if (mux_stream_eof(src) && !b->fin[i]) {
		b->fin[i] = 1;
		mux_stream_shutdown(dst);
	}
	if (b->fin[0] && b->fin[1])
		bridge_finish(b, RELAY_END_CLOSED);
}

/* run f inside our own call: a callback that ends the bridge meanwhile
 * only marks it, and the free waits for the way out */
static void
bridge_run(struct bridge *b, int i)
{
	b->busy++;
	bridge_pump(b, i);
	b->busy--;
	if (b->done && b->busy == 0)
		bridge_destroy(b);
}

static void
bridge_readable(struct mux_stream *st, void *arg)
{
	struct bridge *b = arg;

	bridge_run(b, st == b->s[0] ? 0 : 1);
}

static void
bridge_writable(struct mux_stream *st, void *arg)
{
	struct bridge *b = arg;

	/* room on st: the direction that writes to it */
	bridge_run(b, st == b->s[1] ? 0 : 1);
}

static void
bridge_closed(struct mux_stream *st, void *arg)
{
	struct bridge *b = arg;

	/* its session died; the mux frees st right after this */
	if (st == b->s[0])
		b->s[0] = NULL;
	else
		b->s[1] = NULL;
	b->busy++;
	bridge_finish(b, RELAY_END_SESSION_LOST);
	b->busy--;
	if (b->done && b->busy == 0)
		bridge_destroy(b);
}

int
bridge_start(struct mux_stream *a, struct mux_stream *b_st,
    const struct bridge_opts *o)
{
	struct bridge *b = xcalloc(1, sizeof(*b));

	b->s[0] = a;
	b->s[1] = b_st;
	b->o = *o;
	met_ref(b->o.a_to_b);
	met_ref(b->o.b_to_a);
	mux_stream_set_cbs(a, &bridge_cbs, b);
	mux_stream_set_cbs(b_st, &bridge_cbs, b);
	b->busy++;
	bridge_pump(b, 0);
	bridge_pump(b, 1);
	b->busy--;
	if (b->done)
		bridge_destroy(b);
	return 0;
}
