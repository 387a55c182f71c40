/*
 * loop.h: running the event loop, optionally with busy polling.
 *
 * Waking a sleeping process costs an interrupt, and on a virtual machine
 * whose idle CPUs leave the guest, tens of microseconds before it runs
 * again: on a 2-CPU VM a request crossing the server and the client sees
 * that several times. With busy polling (--busy-poll USEC), after any I/O
 * the loop keeps polling (epoll with a zero timeout, yielding the CPU to
 * whatever else is runnable between polls) for up to USEC microseconds
 * before it sleeps again: traffic that keeps coming finds the process
 * awake. It trades CPU for latency, like HAProxy's busy-polling, and is
 * off by default; an idle process still sleeps.
 */
#ifndef MG_LOOP_H
#define MG_LOOP_H

struct event_base;

/* bumped by every I/O callback (reads, writes, accepts, handshakes,
 * dials): "traffic", which starts or extends a busy-polling window; timer
 * callbacks do not bump it, so an idle process with timers still sleeps */
extern unsigned long loop_activity;

/* rounds the busy-polling loop polled without sleeping: what tests (and
 * later the metrics) read to see it poll, rather than CPU time */
extern unsigned long loop_polls;

static inline void
loop_note_io(void)
{
	loop_activity++;
}

/*
 * loop_run: event_base_dispatch, or with busy_us > 0 the busy-polling loop
 * above. Returns like event_base_dispatch: 0 when exit or break was asked,
 * 1 when no event is left, -1 on a backend error.
 */
int loop_run(struct event_base *base, unsigned busy_us);

#endif
