/* loop.c: see loop.h. */
#include <sched.h>
#include <stdint.h>

#include <event2/event.h>

#include "util/loop.h"
#include "util/mtime.h"

unsigned long loop_activity;
unsigned long loop_polls;

int
loop_run(struct event_base *base, unsigned busy_us)
{
	uint64_t last;

	if (busy_us == 0)
		return event_base_dispatch(base);
	last = mtime_us() - busy_us; /* asleep until the first I/O */
	/* bounded by the process's life: each round polls or sleeps once */
	for (;;) {
		unsigned long seen = loop_activity;
		int polling = mtime_us() - last < busy_us, rc;

		/* within a window of the last I/O poll, else sleep until
		 * something happens */
		loop_polls += (unsigned long)polling;
		rc = event_base_loop(base, polling ? EVLOOP_NONBLOCK :
		    EVLOOP_ONCE);
		/* I/O starts or extends a window; a timer (keepalive, sweep,
		 * log flush) does not */
		if (loop_activity != seen)
			last = mtime_us();
		else if (polling)
			sched_yield(); /* let the runnable run */
		if (rc != 0)
			return rc; /* -1: backend error; 1: no event left */
		if (event_base_got_exit(base) || event_base_got_break(base))
			return 0;
	}
}
