/* test_metrics.c: the metrics registry: values, the exposition text,
 * folding at the cap, holders, links, histograms and collect hooks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "metrics/metrics.h"

/* the exposition as a string; free it */
static char *
expose(struct metrics *m)
{
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *s;

	metrics_prometheus(m, b);
	n = evbuffer_get_length(b);
	s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

#define HEAD \
	"# HELP mgrok_metrics_series Series in the metrics registry, all " \
	"families.\n" \
	"# TYPE mgrok_metrics_series gauge\n"
#define FOLDED(n) \
	"# HELP mgrok_metrics_series_folded_total New label combinations " \
	"counted in their family's \"other\" series because the family was " \
	"at its series cap.\n" \
	"# TYPE mgrok_metrics_series_folded_total counter\n" \
	"mgrok_metrics_series_folded_total " n "\n"

static void
test_values_and_text(void **state)
{
	static const double bounds[] = { 0.1, 1, 2.5 };
	struct metrics *m = metrics_new(10);
	struct met_family *c, *g, *h;
	struct met_series *s;
	char *text;

	c = met_counter(m, "mgrok_bytes_total", "Bytes moved.",
	    "dir,@tunnel");
	g = met_gauge(m, "mgrok_sessions", "Sessions now.", "");
	h = met_histogram(m, "mgrok_latency_seconds", "Latency.", "class",
	    bounds, 3);
	/* registering again gives the same family */
	assert_ptr_equal(met_counter(m, "mgrok_bytes_total", "Bytes moved.",
	    "dir,@tunnel"), c);

	s = met_at2(c, "in", "web");
	met_add(s, 40);
	met_inc(s);
	met_inc(met_at2(c, "out", "web"));
	assert_ptr_equal(met_at2(c, "in", "web"), s);
	assert_int_equal(met_value(s), 41);
	assert_int_equal(met_lookup(c, (const char *[]){ "in", "web" }), 41);
	assert_int_equal(met_lookup(c, (const char *[]){ "in", "x" }), 0);

	met_set(met_at0(g), 5);
	met_gauge_add(met_at0(g), -7);
	assert_int_equal(met_gauge_value(met_at0(g)), -2);

	s = met_at1(h, "2xx");
	met_observe(s, 0.05);
	met_observe(s, 0.1);	/* le is inclusive */
	met_observe(s, 2);
	met_observe(s, 30);
	assert_int_equal(met_value(s), 4);
	assert_int_equal(met_hist_count(s), 4);
	assert_true(met_hist_sum(s) == 0.05 + 0.1 + 2 + 30);

	text = expose(m);
	assert_string_equal(text,
	    HEAD
	    "mgrok_metrics_series 6\n"
	    FOLDED("0")
	    "# HELP mgrok_bytes_total Bytes moved.\n"
	    "# TYPE mgrok_bytes_total counter\n"
	    "mgrok_bytes_total{dir=\"in\",tunnel=\"web\"} 41\n"
	    "mgrok_bytes_total{dir=\"out\",tunnel=\"web\"} 1\n"
	    "# HELP mgrok_sessions Sessions now.\n"
	    "# TYPE mgrok_sessions gauge\n"
	    "mgrok_sessions -2\n"
	    "# HELP mgrok_latency_seconds Latency.\n"
	    "# TYPE mgrok_latency_seconds histogram\n"
	    "mgrok_latency_seconds_bucket{class=\"2xx\",le=\"0.1\"} 2\n"
	    "mgrok_latency_seconds_bucket{class=\"2xx\",le=\"1\"} 2\n"
	    "mgrok_latency_seconds_bucket{class=\"2xx\",le=\"2.5\"} 3\n"
	    "mgrok_latency_seconds_bucket{class=\"2xx\",le=\"+Inf\"} 4\n"
	    "mgrok_latency_seconds_sum{class=\"2xx\"} 32.15\n"
	    "mgrok_latency_seconds_count{class=\"2xx\"} 4\n");
	free(text);
	metrics_free(m);
}

static void
test_escaping(void **state)
{
	struct metrics *m = metrics_new(10);
	struct met_family *c;
	char *text, *p;

	c = met_counter(m, "mgrok_x_total", "a \\ back\nslash \"q\"",
	    "@host");
	met_inc(met_at1(c, "a\\b\"c\nd"));
	met_inc(met_at1(c, NULL));
	text = expose(m);
	p = strstr(text, "# HELP mgrok_x_total");
	assert_non_null(p);
	assert_string_equal(p,
	    "# HELP mgrok_x_total a \\\\ back\\nslash \"q\"\n"
	    "# TYPE mgrok_x_total counter\n"
	    "mgrok_x_total{host=\"a\\\\b\\\"c\\nd\"} 1\n"
	    "mgrok_x_total{host=\"\"} 1\n");
	free(text);
	metrics_free(m);
}

static void
test_fold(void **state)
{
	struct metrics *m = metrics_new(2);
	struct met_family *c, *closed;
	struct met_series *a, *b, *o, *o2;
	char *text, *p;

	c = met_counter(m, "mgrok_t_total", "T.", "dir,@tunnel");
	a = met_at2(c, "in", "a");
	b = met_at2(c, "in", "b");
	/* at the cap: new tunnels go to "other", the dir is kept */
	o = met_at2(c, "in", "c");
	assert_ptr_not_equal(o, a);
	assert_ptr_not_equal(o, b);
	o2 = met_hold2(c, "out", "d");
	assert_ptr_equal(met_at2(c, "in", "e"), o);
	assert_ptr_not_equal(o2, o);
	/* existing combinations are still theirs */
	assert_ptr_equal(met_at2(c, "in", "a"), a);
	met_add(o, 3);
	met_inc(o2);
	assert_int_equal(met_lookup(c, (const char *[]){ "in", MET_OTHER }),
	    3);
	assert_int_equal(met_lookup(c, (const char *[]){ "out", MET_OTHER }),
	    1);
	/* the fold target stays when its holder lets go */
	met_release(o2);
	assert_int_equal(met_lookup(c, (const char *[]){ "out", MET_OTHER }),
	    1);

	/* closed families are never folded */
	closed = met_counter(m, "mgrok_c_total", "C.", "reason");
	met_inc(met_at1(closed, "a"));
	met_inc(met_at1(closed, "b"));
	met_inc(met_at1(closed, "c"));
	assert_int_equal(met_lookup(closed, (const char *[]){ "c" }), 1);

	text = expose(m);
	assert_non_null(strstr(text, FOLDED("3")));
	assert_non_null(strstr(text, "\nmgrok_metrics_series 9\n"));
	p = strstr(text, "# HELP mgrok_t_total");
	assert_non_null(p);
	assert_string_equal(p,
	    "# HELP mgrok_t_total T.\n"
	    "# TYPE mgrok_t_total counter\n"
	    "mgrok_t_total{dir=\"in\",tunnel=\"a\"} 0\n"
	    "mgrok_t_total{dir=\"in\",tunnel=\"b\"} 0\n"
	    "mgrok_t_total{dir=\"in\",tunnel=\"other\"} 3\n"
	    "mgrok_t_total{dir=\"out\",tunnel=\"other\"} 1\n"
	    "# HELP mgrok_c_total C.\n"
	    "# TYPE mgrok_c_total counter\n"
	    "mgrok_c_total{reason=\"a\"} 1\n"
	    "mgrok_c_total{reason=\"b\"} 1\n"
	    "mgrok_c_total{reason=\"c\"} 1\n");
	free(text);

	/* a bigger cap lets new ones in again */
	metrics_set_max_series(m, 3);
	assert_int_equal(metrics_max_series(m), 3);
	o = met_at2(c, "in", "z");
	met_inc(o);
	assert_int_equal(met_lookup(c, (const char *[]){ "in", "z" }), 1);
	metrics_free(m);
}

/* Holders past the cap: each gets its own exact value and its own parent
 * (two clients), and the exposition's "other" is the sum of them all. */
static void
test_fold_private(void **state)
{
	struct metrics *m = metrics_new(1);
	struct met_family *t, *cl;
	struct met_series *first, *x, *y, *ca, *cb;

	t = met_counter(m, "mgrok_tb_total", "T.", "@tunnel");
	cl = met_counter(m, "mgrok_cb_total", "C.", "client");
	ca = met_at1(cl, "A");
	cb = met_at1(cl, "B");
	first = met_hold1(t, "t1");
	x = met_hold1(t, "t2"); /* folded: client A's */
	y = met_hold1(t, "t3"); /* folded: client B's */
	assert_ptr_not_equal(x, y);
	met_link(first, ca);
	met_link(x, ca);
	met_link(y, cb);
	met_add(first, 1);
	met_add(x, 5);
	met_add(y, 3);
	assert_int_equal(met_value(x), 5);
	assert_int_equal(met_value(y), 3);
	assert_int_equal(met_value(ca), 6);
	assert_int_equal(met_value(cb), 3);
	assert_int_equal(met_lookup(t, (const char *[]){ MET_OTHER }), 8);
	/* relinking one never moves the other's figures */
	met_link(y, ca);
	met_add(y, 1);
	assert_int_equal(met_value(ca), 7);
	assert_int_equal(met_value(cb), 3);
	met_release(x);
	met_release(y);
	met_release(first);
	assert_int_equal(met_lookup(t, (const char *[]){ MET_OTHER }), 9);
	metrics_free(m);
}

static void
test_hold_release(void **state)
{
	struct metrics *m = metrics_new(2);
	struct met_family *c, *closed;
	struct met_series *a, *b, *x, *kept;
	char *text;

	c = met_counter(m, "mgrok_t_total", "T.", "@tunnel");
	a = met_hold1(c, "a");
	b = met_hold1(c, "b");
	met_add(a, 5);
	assert_ptr_equal(met_ref(a), a);
	/* full: c folds */
	x = met_hold1(c, "c");
	assert_int_equal(met_lookup(c, (const char *[]){ "other" }), 0);
	met_inc(x);
	assert_int_equal(met_lookup(c, (const char *[]){ "other" }), 1);
	met_release(x);
	met_release(a);
	assert_int_equal(met_lookup(c, (const char *[]){ "a" }), 5);
	met_release(a);	/* the last holder: a goes */
	assert_int_equal(met_lookup(c, (const char *[]){ "a" }), 0);
	text = expose(m);
	assert_null(strstr(text, "tunnel=\"a\""));
	assert_non_null(strstr(text, "tunnel=\"b\""));
	free(text);
	/* and its slot is free for a new one */
	x = met_hold1(c, "d");
	met_inc(x);
	assert_int_equal(met_lookup(c, (const char *[]){ "d" }), 1);
	met_release(x);
	assert_int_equal(met_lookup(c, (const char *[]){ "d" }), 0);

	/* held and also met_at'd: kept for good */
	kept = met_hold1(c, "k");
	assert_ptr_equal(met_at1(c, "k"), kept);
	met_inc(kept);
	met_release(kept);
	assert_int_equal(met_lookup(c, (const char *[]){ "k" }), 1);
	met_release(b);
	met_release(NULL);

	/* families without open labels keep their series */
	closed = met_counter(m, "mgrok_c_total", "C.", "reason");
	x = met_hold1(closed, "r");
	met_inc(x);
	met_release(x);
	assert_int_equal(met_lookup(closed, (const char *[]){ "r" }), 1);
	metrics_free(m);
}

static void
test_link(void **state)
{
	struct metrics *m = metrics_new(10);
	struct met_family *tun, *cli, *tot, *g1, *g2;
	struct met_series *t, *cl, *all, *gt, *gc;

	tot = met_counter(m, "mgrok_bytes_total", "All.", NULL);
	cli = met_counter(m, "mgrok_client_bytes_total", "Client.",
	    "@client");
	tun = met_counter(m, "mgrok_tunnel_bytes_total", "Tunnel.",
	    "@tunnel");
	all = met_at0(tot);
	cl = met_hold1(cli, "alice");
	t = met_hold1(tun, "web");
	met_link(cl, all);
	met_link(t, cl);
	met_add(t, 10);
	met_add(cl, 1);
	assert_int_equal(met_value(t), 10);
	assert_int_equal(met_value(cl), 11);
	assert_int_equal(met_value(all), 11);

	/* the client's holder goes, but the tunnel still links to it */
	met_release(cl);
	assert_int_equal(met_lookup(cli, (const char *[]){ "alice" }), 11);
	met_inc(t);
	assert_int_equal(met_value(all), 12);
	/* the tunnel ends: it goes, and so does the client it kept */
	met_release(t);
	assert_int_equal(met_lookup(tun, (const char *[]){ "web" }), 0);
	assert_int_equal(met_lookup(cli, (const char *[]){ "alice" }), 0);
	assert_int_equal(met_value(all), 12);

	/* unlink */
	t = met_hold1(tun, "api");
	met_link(t, all);
	met_add(t, 2);
	met_link(t, NULL);
	met_add(t, 2);
	assert_int_equal(met_value(t), 4);
	assert_int_equal(met_value(all), 14);
	met_release(t);

	/* gauges: met_set moves the parents by the difference */
	g1 = met_gauge(m, "mgrok_conns", "All.", NULL);
	g2 = met_gauge(m, "mgrok_tunnel_conns", "Tunnel.", "@tunnel");
	gc = met_at0(g1);
	gt = met_hold1(g2, "web");
	met_link(gt, gc);
	met_set(gt, 5);
	met_gauge_add(gt, -1);
	met_set(gc, met_gauge_value(gc) + 10);
	met_set(gt, 2);
	assert_int_equal(met_gauge_value(gt), 2);
	assert_int_equal(met_gauge_value(gc), 12);
	met_release(gt);
	metrics_free(m);
}

static void
test_histogram(void **state)
{
	struct metrics *m = metrics_new(10);
	struct met_family *h, *ht;
	struct met_series *all, *t;
	char *text, *p;

	h = met_histogram(m, "mgrok_lat_seconds", "L.", NULL,
	    met_latency_bounds, met_nlatency_bounds);
	ht = met_histogram(m, "mgrok_tunnel_lat_seconds", "L.", "@tunnel",
	    met_latency_bounds, met_nlatency_bounds);
	all = met_at0(h);
	t = met_hold1(ht, "web");
	met_link(t, all);
	met_observe(t, 0.003);
	met_observe(t, 0.003);
	met_observe(all, 20);
	assert_int_equal(met_hist_count(t), 2);
	assert_int_equal(met_hist_count(all), 3);
	assert_true(met_hist_sum(all) == 0.003 + 0.003 + 20);
	text = expose(m);
	p = strstr(text, "# HELP mgrok_lat_seconds");
	assert_non_null(p);
	*strstr(p, "# HELP mgrok_tunnel_lat_seconds") = '\0';
	assert_string_equal(p,
	    "# HELP mgrok_lat_seconds L.\n"
	    "# TYPE mgrok_lat_seconds histogram\n"
	    "mgrok_lat_seconds_bucket{le=\"0.001\"} 0\n"
	    "mgrok_lat_seconds_bucket{le=\"0.0025\"} 0\n"
	    "mgrok_lat_seconds_bucket{le=\"0.005\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"0.01\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"0.025\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"0.05\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"0.1\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"0.25\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"0.5\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"1\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"2.5\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"5\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"10\"} 2\n"
	    "mgrok_lat_seconds_bucket{le=\"+Inf\"} 3\n"
	    "mgrok_lat_seconds_sum 20.006\n"
	    "mgrok_lat_seconds_count 3\n");
	free(text);
	met_release(t);
	metrics_free(m);
}

static int hook_runs;

static void
hook(void *arg)
{
	hook_runs++;
	met_set(arg, 42);
}

static void
hook_off(void *arg)
{
	/* a hook may remove itself while the hooks run */
	hook_runs += 100;
	metrics_off_collect(arg, hook_off, arg);
}

static void
test_collect(void **state)
{
	struct metrics *m = metrics_new(10);
	struct met_series *g;
	char *text;

	g = met_at0(met_gauge(m, "mgrok_fds", "Fds.", NULL));
	hook_runs = 0;
	metrics_on_collect(m, hook_off, m);
	metrics_on_collect(m, hook, g);
	text = expose(m);
	assert_non_null(strstr(text, "\nmgrok_fds 42\n"));
	free(text);
	assert_int_equal(hook_runs, 101);
	text = expose(m);
	free(text);
	assert_int_equal(hook_runs, 102);
	metrics_off_collect(m, hook, g);
	text = expose(m);
	free(text);
	assert_int_equal(hook_runs, 102);
	metrics_free(m);
}

static void
test_process(void **state)
{
	static const char *const names[] = {
		"\nprocess_cpu_seconds_total ",
		"\nprocess_open_fds ",
		"\nprocess_max_fds ",
		"\nprocess_virtual_memory_bytes ",
		"\nprocess_resident_memory_bytes ",
		"\nprocess_start_time_seconds ",
	};
	struct metrics *m = metrics_new(10);
	char *text, *p;
	size_t i;

	metrics_process(m);
	metrics_process(m);	/* once is enough */
	text = expose(m);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		p = strstr(text, names[i]);
		assert_non_null(p);
		p += strlen(names[i]);
		/* a positive figure (cpu may still be 0) */
		if (i > 0)
			assert_true(strtod(p, NULL) > 0);
		assert_null(strstr(p + 1, names[i]));
	}
	free(text);
	metrics_free(m);
}

/* fn aborts (a programming error), in a child process */
static int
aborts(void (*fn)(void))
{
	int st, null;
	pid_t pid = fork();

	if (pid == 0) {
		null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		fn();
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void
bad_name(void)
{
	met_counter(metrics_new(1), "mgrok-x_total", "", NULL);
}

static void
bad_label(void)
{
	met_counter(metrics_new(1), "mgrok_x_total", "", "a,@1b");
}

static void
twice_label(void)
{
	met_counter(metrics_new(1), "mgrok_x_total", "", "a,@a");
}

static void
le_label(void)
{
	met_histogram(metrics_new(1), "mgrok_x", "", "le",
	    met_latency_bounds, met_nlatency_bounds);
}

static void
redefined(void)
{
	struct metrics *m = metrics_new(1);

	met_counter(m, "mgrok_x_total", "", "a");
	met_counter(m, "mgrok_x_total", "", "@a");
}

static void
arity(void)
{
	met_at1(met_counter(metrics_new(1), "mgrok_x_total", "", "a,b"),
	    "x");
}

static void
good(void)
{
	struct metrics *m = metrics_new(1);

	met_counter(m, "mgrok:x_total", "", " a , @b_2 ");
	metrics_free(m);
}

static void
test_invalid(void **state)
{
	assert_true(aborts(bad_name));
	assert_true(aborts(bad_label));
	assert_true(aborts(twice_label));
	assert_true(aborts(le_label));
	assert_true(aborts(redefined));
	assert_true(aborts(arity));
	assert_false(aborts(good));
	assert_int_equal(met_value(NULL), 0);
	met_add(NULL, 1);
	met_set(NULL, 1);
	met_observe(NULL, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values_and_text),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_fold),
		cmocka_unit_test(test_fold_private),
		cmocka_unit_test(test_hold_release),
		cmocka_unit_test(test_link),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_collect),
		cmocka_unit_test(test_process),
		cmocka_unit_test(test_invalid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
