/* test_loop.c: loop_run (util/loop.h) with and without busy polling, on a
 * real event base: events are delivered, exit is honoured, an idle loop
 * sleeps, and after I/O the busy loop keeps polling. */
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

/* nothing happens for 300 ms: a busy loop of 1 ms polls about 1 ms, then
 * sleeps until the timer (spinning all along would cost ~300 ms of CPU) */
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

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	loop_note_io(); /* I/O happened: keep polling */
}

/* after I/O, a 1 s busy window keeps the loop polling: of the 60 ms until
 * the exit timer, it uses a good part on CPU instead of sleeping (it
 * yields between polls, so a loaded machine may take some of it) */
static void
test_polls_after_io(void **state)
{
	struct event_base *base = event_base_new();
	struct timeval t = { 0, 60000 }, now = { 0, 0 };
	struct event *kick, *stop;
	int64_t c0;

	(void)state;
	kick = event_new(base, -1, 0, on_kick, NULL);
	stop = event_new(base, -1, 0, on_exit_timer, base);
	event_add(kick, &now);
	event_add(stop, &t);
	c0 = cpu_us();
	assert_int_equal(loop_run(base, 1000000), 0);
	assert_true(cpu_us() - c0 > 5000);
	event_free(kick);
	event_free(stop);
	event_base_free(base);
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
		cmocka_unit_test(test_no_events),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
