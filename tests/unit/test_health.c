/* test_health.c: health checks: durations, expected statuses, the HTTP
 * status line, the rise/fall state machine and the flags' checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/health.h"
#include "conf/conf.h"
#include "util/err.h"

static void
test_duration(void **state)
{
	static const struct {
		const char *v;
		unsigned ms;
	} ok[] = {
		{ "5s", 5000 }, { "500ms", 500 }, { "1m", 60000 },
		{ "0.2s", 200 }, { "5", 5000 }, { "0.5", 500 },
		{ "1.5m", 90000 }, { "2.25s", 2250 }, { "1h", 0 },
		{ "3600s", 3600000 }, { "60m", 3600000 }, { "10ms", 10 },
	};
	static const char *bad[] = { "", "s", "5x", "-1s", "1.s", ".5s",
		"0.0005s", "1.2345s", "3601s", "61m", "1 s", "5sec", "1e3",
		"0.5ms", "99999999999s" };
	unsigned ms;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (ok[i].ms == 0) { /* hours are not a unit */
			assert_int_equal(conf_parse_duration_ms(ok[i].v, &ms),
			    MG_EINVAL);
			continue;
		}
		ms = 0;
		assert_int_equal(conf_parse_duration_ms(ok[i].v, &ms), 0);
		assert_int_equal(ms, ok[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 7;
		assert_int_equal(conf_parse_duration_ms(bad[i], &ms),
		    MG_EINVAL);
		assert_int_equal(ms, 7);
	}
}

static void
test_expect(void **state)
{
	struct health_spec h;
	const char *err;
	static const char *bad[] = { "", "abc", "99", "600", "200-", "-200",
		"300-200", "200,,204", "200,", "200;204", "2000",
		"100,101,102,103,104,105,106,107,108",
		"100,101,102,103,104,105,106,107,108,109,110,111,112,113" };

	memset(&h, 0, sizeof(h));
	assert_int_equal(conf_parse_expect("200-399", &h, &err), 0);
	assert_int_equal(h.nexpect, 1);
	assert_string_equal(h.expect, "200-399");
	assert_true(health_expect_match(&h, 200));
	assert_true(health_expect_match(&h, 399));
	assert_true(health_expect_match(&h, 302));
	assert_false(health_expect_match(&h, 199));
	assert_false(health_expect_match(&h, 400));
	assert_false(health_expect_match(&h, 503));

	assert_int_equal(conf_parse_expect("200, 204,300-302", &h, &err), 0);
	assert_int_equal(h.nexpect, 3);
	assert_true(health_expect_match(&h, 204));
	assert_true(health_expect_match(&h, 301));
	assert_false(health_expect_match(&h, 201));
	assert_false(health_expect_match(&h, 303));

	assert_int_equal(conf_parse_expect("503", &h, &err), 0);
	assert_true(health_expect_match(&h, 503));
	assert_false(health_expect_match(&h, 200));

	/* a refused value leaves h as it was */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		assert_int_equal(conf_parse_expect(bad[i], &h, &err),
		    MG_EINVAL);
		assert_non_null(err);
		assert_string_equal(h.expect, "503");
		assert_int_equal(h.nexpect, 1);
	}
	/* eight items are the most */
	assert_int_equal(conf_parse_expect("100,101,102,103,104,105,106,107",
	    &h, &err), 0);
	assert_int_equal(h.nexpect, 8);
	assert_true(health_expect_match(&h, 107));
}

static void
test_defaults(void **state)
{
	struct health_spec h;

	memset(&h, 0, sizeof(h));
	h.type = HEALTH_HTTP;
	conf_health_defaults(&h);
	assert_string_equal(h.path, "/");
	assert_string_equal(h.expect, "200-399");
	assert_int_equal(h.interval_ms, 5000);
	assert_int_equal(h.timeout_ms, 2000);
	assert_int_equal(h.rise, 2);
	assert_int_equal(h.fall, 3);
	/* a short interval: the timeout is half of it */
	memset(&h, 0, sizeof(h));
	h.interval_ms = 200;
	conf_health_defaults(&h);
	assert_int_equal(h.timeout_ms, 100);
	/* given values stay */
	memset(&h, 0, sizeof(h));
	snprintf(h.path, sizeof(h.path), "/healthz");
	h.interval_ms = 1000;
	h.timeout_ms = 900;
	h.rise = 5;
	h.fall = 1;
	conf_health_defaults(&h);
	assert_string_equal(h.path, "/healthz");
	assert_int_equal(h.timeout_ms, 900);
	assert_int_equal(h.rise, 5);
	assert_int_equal(h.fall, 1);
}

static void
test_status_line(void **state)
{
	static const struct {
		const char *in;
		int rc, code;
	} v[] = {
		{ "HTTP/1.1 200 OK\r\n", 1, 200 },
		{ "HTTP/1.0 503 Service Unavailable\r\nX: y\r\n", 1, 503 },
		{ "HTTP/1.1 204\r\n", 1, 204 },
		{ "HTTP/1.1 302\n", 1, 302 },
		{ "HTTP/1.1 200 OK", 0, 0 },
		{ "HTTP/1.1 20", 0, 0 },
		{ "HTTP/1.", 0, 0 },
		{ "HT", 0, 0 },
		{ "", 0, 0 },
		{ "SSH-2.0-OpenSSH\r\n", -1, 0 },
		{ "HTTP/2 200\r\n", -1, 0 },
		{ "HTTP/1.1 2x0 OK\r\n", -1, 0 },
		{ "HTTP/1.1 2000 OK\r\n", -1, 0 },
		{ "HTTP/1.1 099 OK\r\n", -1, 0 },
		{ "http/1.1 200 OK\r\n", -1, 0 },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		int code = 0;
		assert_int_equal(health_status_line((const uint8_t *)v[i].in,
		    strlen(v[i].in), &code), v[i].rc);
		if (v[i].rc == 1)
			assert_int_equal(code, v[i].code);
	}
}

static void
test_state_machine(void **state)
{
	struct health_sm sm;

	health_sm_init(&sm);
	assert_int_equal(sm.state, HEALTH_UNKNOWN);
	/* rise 2, fall 3: one success is not decisive */
	assert_int_equal(health_sm_feed(&sm, 2, 3, 1), 0);
	assert_int_equal(sm.state, HEALTH_UNKNOWN);
	assert_int_equal(health_sm_feed(&sm, 2, 3, 1), 1);
	assert_int_equal(sm.state, HEALTH_UP);
	assert_int_equal(sm.ok_run, 2);
	assert_int_equal(health_sm_feed(&sm, 2, 3, 1), 0);
	/* two failures, then a success: still up, the run starts over */
	assert_int_equal(health_sm_feed(&sm, 2, 3, 0), 0);
	assert_int_equal(health_sm_feed(&sm, 2, 3, 0), 0);
	assert_int_equal(health_sm_feed(&sm, 2, 3, 1), 0);
	assert_int_equal(sm.state, HEALTH_UP);
	assert_int_equal(health_sm_feed(&sm, 2, 3, 0), 0);
	assert_int_equal(health_sm_feed(&sm, 2, 3, 0), 0);
	assert_int_equal(health_sm_feed(&sm, 2, 3, 0), 1);
	assert_int_equal(sm.state, HEALTH_DOWN);
	assert_int_equal(sm.fail_run, 3);
	assert_int_equal(health_sm_feed(&sm, 2, 3, 0), 0);
	assert_int_equal(health_sm_feed(&sm, 2, 3, 1), 0);
	assert_int_equal(health_sm_feed(&sm, 2, 3, 1), 1);
	assert_int_equal(sm.state, HEALTH_UP);

	/* from unknown, fall failures make it down (reported too) */
	health_sm_init(&sm);
	assert_int_equal(health_sm_feed(&sm, 2, 2, 0), 0);
	assert_int_equal(health_sm_feed(&sm, 2, 2, 0), 1);
	assert_int_equal(sm.state, HEALTH_DOWN);
	/* rise 1 and fall 1 flip at every result */
	health_sm_init(&sm);
	assert_int_equal(health_sm_feed(&sm, 1, 1, 1), 1);
	assert_int_equal(health_sm_feed(&sm, 1, 1, 0), 1);
	assert_int_equal(health_sm_feed(&sm, 1, 1, 1), 1);
	assert_string_equal(health_state_name(HEALTH_UP), "up");
	assert_string_equal(health_state_name(HEALTH_DOWN), "down");
	assert_string_equal(health_state_name(HEALTH_UNKNOWN), "unknown");
}

/* the flags, through the loader */
static int
load(struct client_conf *c, int argc, const char **argv)
{
	struct conf_diag d;
	int rc;

	conf_diag_init(&d);
	rc = conf_client_load(c, argc, (char **)argv, &d);
	conf_diag_free(&d);
	return rc;
}

static void
test_flags(void **state)
{
	struct client_conf c;
	const char *ok[] = { "http", "3000", "--token", "t", "--health",
		"http", "--health-path", "/healthz", "--health-expect",
		"200,204", "--health-interval", "0.2s", "--health-fall", "2",
		"--health-rise", "4" };
	const char *tcp[] = { "tcp", "22", "--token", "t", "--health",
		"tcp" };
	const char *slow[] = { "tcp", "22", "--token", "t", "--health",
		"tcp", "--health-timeout", "1s", "--health-interval", "1s" };
	const char *notype[] = { "tcp", "22", "--token", "t",
		"--health-rise", "3" };
	const char *udp[] = { "udp", "53", "--token", "t", "--health",
		"tcp" };
	const char *none[] = { "tcp", "22", "--token", "t" };

	setenv("XDG_CONFIG_HOME", "/nonexistent-mgrok-test", 1);
	unsetenv("MGROK_CONFIG");
	assert_int_equal(load(&c, 16, ok), 0);
	assert_int_equal(c.locals[0].health.type, HEALTH_HTTP);
	assert_string_equal(c.locals[0].health.path, "/healthz");
	assert_int_equal(c.locals[0].health.nexpect, 2);
	assert_int_equal(c.locals[0].health.interval_ms, 200);
	assert_int_equal(c.locals[0].health.timeout_ms, 100);
	assert_int_equal(c.locals[0].health.rise, 4);
	assert_int_equal(c.locals[0].health.fall, 2);
	conf_client_free(&c);

	assert_int_equal(load(&c, 6, tcp), 0);
	assert_int_equal(c.locals[0].health.type, HEALTH_TCP);
	assert_int_equal(c.locals[0].health.interval_ms, 5000);
	assert_int_equal(c.locals[0].health.timeout_ms, 2000);
	conf_client_free(&c);

	assert_int_equal(load(&c, 4, none), 0);
	assert_int_equal(c.locals[0].health.type, HEALTH_OFF);
	conf_client_free(&c);

	assert_int_equal(load(&c, 10, slow), MG_EINVAL);
	conf_client_free(&c);
	assert_int_equal(load(&c, 6, notype), MG_EINVAL);
	conf_client_free(&c);
	assert_int_equal(load(&c, 6, udp), MG_EINVAL);
	conf_client_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_expect),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_status_line),
		cmocka_unit_test(test_state_machine),
		cmocka_unit_test(test_flags),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
