/* test_loop.c: loop_run (util/loop.h) with and without busy polling, on a
 * real event base: events are delivered, exit is honoured, an idle loop
 * sleeps, after I/O the busy loop keeps polling, after a timer it does not. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "util/loop.h"

/* CPU time (user + system) of this process, in microseconds */
static int64_t
cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

struct pump {
	struct event_base *base;
	struct event *tick, *rev;
	int fds[2];
	int sent, got, want;
};

static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct pump *p = arg;
	char b[64];
	ssize_t n;

	(void)what;
	loop_note_io();
	n = read(fd, b, sizeof(b));
	if (n > 0)
		p->got += (int)n;
	if (p->got >= p->want)
		event_base_loopexit(p->base, NULL);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct pump *p = arg;

	(void)fd;
	(void)what;
	if (p->sent < p->want && write(p->fds[0], "x", 1) == 1)
		p->sent++;
}

/* 20 bytes written 1 ms apart all arrive, and the loop ends on loopexit */
static void
run_pump(unsigned busy_us)
{
	struct pump p = { .want = 20 };
	struct timeval ms = { 0, 1000 };

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fds), 0);
	p.base = event_base_new();
	assert_non_null(p.base);
	p.rev = event_new(p.base, p.fds[1], EV_READ | EV_PERSIST, on_readable,
	    &p);
	p.tick = event_new(p.base, -1, EV_PERSIST, on_tick, &p);
	event_add(p.rev, NULL);
	event_add(p.tick, &ms);
	assert_int_equal(loop_run(p.base, busy_us), 0);
	assert_int_equal(p.sent, 20);
	assert_int_equal(p.got, 20);
	event_free(p.rev);
	event_free(p.tick);
	event_base_free(p.base);
	close(p.fds[0]);
	close(p.fds[1]);
}

static void
test_plain_loop(void **state)
{
	(void)state;
	run_pump(0);
}

static void
test_busy_loop_delivers(void **state)
{
	(void)state;
	run_pump(2000);
}

static void
on_exit_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopexit(arg, NULL);
}

/* nothing but a timer for 300 ms: a busy loop sleeps all along (spinning
 * would cost ~300 ms of CPU) */
static void
test_idle_sleeps(void **state)
{
	struct event_base *base = event_base_new();
	struct timeval t = { 0, 300000 };
	struct event *ev;
	int64_t c0;

	(void)state;
	ev = event_new(base, -1, 0, on_exit_timer, base);
	event_add(ev, &t);
	c0 = cpu_us();
	assert_int_equal(loop_run(base, 1000), 0);
	assert_true(cpu_us() - c0 < 100000);
	event_free(ev);
	event_base_free(base);
}

struct kick {
	struct event_base *base;
	int note;              /* the kick counts as I/O */
	unsigned long at_kick, at_stop; /* loop_polls then */
};

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct kick *k = arg;

	(void)fd;
	(void)what;
	k->at_kick = loop_polls;
	if (k->note)
		loop_note_io();
}

static void
on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct kick *k = arg;

	(void)fd;
	(void)what;
	k->at_stop = loop_polls;
	event_base_loopexit(k->base, NULL);
}

/* The loop sleeps until a kick at 50 ms and stops at 90 ms, with a 1 s
 * window. Returns how many rounds it polled (rather than slept) between
 * the kick and the stop: a count of what it did, not a CPU time that a
 * loaded machine would blur. */
static unsigned long
kick_then_stop(int note)
{
	struct kick k = { .note = note };
	struct timeval t1 = { 0, 50000 }, t2 = { 0, 90000 };
	struct event *kick, *stop;

	k.base = event_base_new();
	kick = event_new(k.base, -1, 0, on_kick, &k);
	stop = event_new(k.base, -1, 0, on_stop, &k);
	event_add(kick, &t1);
	event_add(stop, &t2);
	assert_int_equal(loop_run(k.base, 1000000), 0);
	event_free(kick);
	event_free(stop);
	event_base_free(k.base);
	return k.at_stop - k.at_kick;
}

/* after I/O the loop keeps polling: for the 40 ms from the kick to the
 * stop it polls round after round (each a zero-timeout epoll and a yield;
 * even on a loaded machine that is many rounds) */
static void
test_polls_after_io(void **state)
{
	(void)state;
	assert_true(kick_then_stop(1) > 20);
}

/* a timer is not I/O: after it the loop sleeps again at once, so a
 * process whose only events are timers (keepalives, sweeps) stays idle */
static void
test_timer_does_not_poll(void **state)
{
	(void)state;
	assert_true(kick_then_stop(0) == 0);
}

/* no event left at all: returns at once, like event_base_dispatch */
static void
test_no_events(void **state)
{
	struct event_base *base = event_base_new();

	(void)state;
	assert_int_equal(loop_run(base, 500), 1);
	assert_int_equal(loop_run(base, 0), 1);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_loop),
		cmocka_unit_test(test_busy_loop_delivers),
		cmocka_unit_test(test_idle_sleeps),
		cmocka_unit_test(test_polls_after_io),
		cmocka_unit_test(test_timer_does_not_poll),
		cmocka_unit_test(test_no_events),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
