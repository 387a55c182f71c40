/* test_conf.c: the configuration loader: defaults, YAML files (the
 * original mgrok's keys too), flags over the file, every error collected
 * with its place, secrets, `start` tunnels, reloading with the same argv. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "proto/ctrl.h"
#include "util/err.h"

static char tmpdir[256];

static int
setup(void **state)
{
	char none[300];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mgrok-test-conf-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	setenv("XDG_STATE_HOME", tmpdir, 1);
	/* never the default files of the machine */
	snprintf(none, sizeof(none), "%s/absent.yml", tmpdir);
	setenv("MGROK_CONFIG", none, 1);
	setenv("MGROK_SERVER_CONFIG", none, 1);
	unsetenv("MGROK_TOKEN");
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *
file(const char *name, const char *text, int mode)
{
	static char path[8][400];
	static int n;
	char *p = path[n++ % 8];
	FILE *f;

	snprintf(p, 400, "%s/%s", tmpdir, name);
	assert_non_null(f = fopen(p, "w"));
	fputs(text, f);
	fclose(f);
	chmod(p, (mode_t)mode);
	return p;
}

/* the diagnostic that contains s, or NULL */
static const char *
diag_has(const struct conf_diag *d, const char *s)
{
	for (size_t i = 0; i < d->n; i++)
		if (strstr(d->v[i].text, s))
			return d->v[i].text;
	return NULL;
}

static void
test_server_original_file(void **state)
{
	struct server_conf c;
	struct conf_diag d;
	const char *p = file("s.yml",
	    "bind_addr: \"0.0.0.0\"\n"
	    "bind_port: 7000\n"
	    "auth_token: \"legacy\"\n"
	    "port_range_start: 20000\n"
	    "port_range_end: 20100\n"
	    "enable_tls: false\n"
	    "tls_cert_file: \"\"\n"
	    "tls_key_file: \"\"\n"
	    "tokens:\n"
	    "  - name: alice\n"
	    "    secret: a-secret\n"
	    "  - plain\n", 0600);
	char *argv[] = { "server", "--config", (char *)p, NULL };

	conf_diag_init(&d);
	assert_int_equal(conf_server_load(&c, 3, argv, &d), 0);
	assert_int_equal(d.n, 0);
	assert_string_equal(c.addr, "0.0.0.0:7000");
	assert_string_equal(c.bind_addr, "0.0.0.0");
	assert_int_equal(c.start_port, 20000);
	assert_int_equal(c.end_port, 20100);
	assert_int_equal(c.tls, 0);
	assert_null(c.tls_cert);
	assert_int_equal(c.ntokens, 3);
	assert_string_equal(c.tokens[0], "legacy");
	assert_null(c.token_names[0]);
	assert_string_equal(c.tokens[1], "a-secret");
	assert_string_equal(c.token_names[1], "alice");
	assert_string_equal(c.tokens[2], "plain");
	assert_null(c.token_names[2]);
	assert_string_equal(c.config_file, p);
	conf_server_free(&c);
	conf_diag_free(&d);
}

static void
test_flags_override_the_file(void **state)
{
	struct server_conf c;
	struct conf_diag d;
	const char *p = file("s2.yml",
	    "tokens: [one, two]\n"
	    "heartbeat: 20\n"
	    "max_sessions: 5\n", 0600);
	char *argv[] = { "server", "--heartbeat", "7", "--config", (char *)p,
		"--token", "three", NULL };

	conf_diag_init(&d);
	assert_int_equal(conf_server_load(&c, 7, argv, &d), 0);
	assert_int_equal(c.heartbeat_s, 7);      /* the flag */
	assert_int_equal(c.max_sessions, 5);     /* the file */
	assert_int_equal(c.mux.keepalive_ms, 7000);
	assert_int_equal(c.ntokens, 1);          /* --token replaced the list */
	assert_string_equal(c.tokens[0], "three");
	conf_server_free(&c);
	conf_diag_free(&d);
}

static void
test_every_error_collected(void **state)
{
	struct client_conf *c = calloc(1, sizeof(*c));
	struct conf_diag d;
	const char *p = file("bad.yml",
	    "version: 1\n"
	    "sever: h:1\n"               /* 2:1 unknown, near server */
	    "busy_poll: -3\n"            /* 3:12 range */
	    "no_reconnect: sometimes\n"  /* 4:15 type */
	    "tunnels:\n"
	    "  a: {local: 1, remote_port: 5000}\n"
	    "  b: {local: 2, remote_port: 5000}\n" /* 7:30 same port */
	    "  c: {local: 3, type: udp, remote_port: 5000}\n" /* udp: fine */
	    "  d: {type: tls, local: 4}\n" /* 9:3 tls needs hostname */
	    "  e: {local: 5, hostnme: x}\n", /* 10:17 near hostname */
	    0600);
	char *argv[] = { "start", "--config", (char *)p, "--token", "t",
		NULL };
	const char *m;

	conf_diag_init(&d);
	assert_int_equal(conf_client_load(c, 5, argv, &d), MG_EINVAL);
	assert_int_equal(d.nerrors, 6);
	assert_non_null(m = diag_has(&d, ":2:1: sever: unknown key (did you "
					 "mean server?)"));
	assert_non_null(diag_has(&d, ":3:12: busy_poll: expected a number "
				     "from 0 to 1000000"));
	assert_non_null(diag_has(&d, ":4:15: no_reconnect: expected true or "
				     "false"));
	assert_non_null(diag_has(&d, ":7:30: tunnels.b.remote_port: remote "
				     "port 5000 is also tunnels.a's"));
	assert_non_null(diag_has(&d, ":9:3: tunnels.d: a tls tunnel needs "
				     "hostname"));
	assert_non_null(diag_has(&d, ":10:17: tunnels.e.hostnme: unknown key "
				     "(did you mean hostname?)"));
	assert_non_null(strstr(m, p)); /* names the file */
	conf_client_free(c);
	conf_diag_free(&d);
	free(c);
}

static void
test_start_selects_tunnels(void **state)
{
	struct client_conf *c = calloc(1, sizeof(*c));
	struct conf_diag d;
	const char *p = file("t.yml",
	    "server: example.org\n"
	    "token: tok\n"
	    "proxies:\n"
	    "  ssh: {type: tcp, local_port: 22, remote_port: 6000}\n"
	    "  web: {type: http, local: \"http://127.0.0.1:8080\", "
	    "subdomain: shop, basic_auth: \"u:p\", host_header: rewrite}\n"
	    "  dns: {type: udp, local_ip: 10.0.0.2, local_port: 53}\n", 0600);
	char *all[] = { "start", "--config", (char *)p, NULL };
	char *some[] = { "start", "dns", "--config", (char *)p, "ssh", NULL };
	char *bad[] = { "start", "nope", "--config", (char *)p, NULL };

	conf_diag_init(&d);
	assert_int_equal(conf_client_load(c, 3, all, &d), 0);
	assert_string_equal(c->server, "example.org:9000");
	assert_string_equal(c->token, "tok");
	assert_int_equal(c->nlocals, 3);
	assert_string_equal(c->locals[0].name, "ssh");
	assert_string_equal(c->locals[0].host, "127.0.0.1");
	assert_int_equal(c->locals[0].port, 22);
	assert_int_equal(c->locals[0].remote_port, 6000);
	assert_int_equal(c->locals[1].type, PROXY_HTTP);
	assert_string_equal(c->locals[1].subdomain, "shop");
	assert_string_equal(c->locals[1].basic_auth, "u:p");
	assert_int_equal(c->locals[1].host_rewrite, 1);
	assert_int_equal(c->locals[1].port, 8080);
	assert_int_equal(c->locals[2].type, PROXY_UDP);
	assert_string_equal(c->locals[2].host, "10.0.0.2");
	conf_client_free(c);
	conf_diag_free(&d);

	assert_int_equal(conf_client_load(c, 5, some, &d), 0);
	assert_int_equal(c->nlocals, 2); /* file order */
	assert_string_equal(c->locals[0].name, "ssh");
	assert_string_equal(c->locals[1].name, "dns");
	conf_client_free(c);
	conf_diag_free(&d);

	assert_int_equal(conf_client_load(c, 4, bad, &d), MG_EINVAL);
	assert_non_null(diag_has(&d, "no tunnel \"nope\""));
	assert_non_null(diag_has(&d, "(it has: ssh, web, dns)"));
	conf_client_free(c);
	conf_diag_free(&d);
	free(c);
}

static void
test_secrets(void **state)
{
	struct client_conf *c = calloc(1, sizeof(*c));
	struct conf_diag d;
	const char *tok = file("tok", "  from-file \n", 0644);
	char text[600];
	const char *p;
	char *argv[] = { "tcp", "22", "--config", NULL, NULL };

	snprintf(text, sizeof(text),
	    "token: file:%s\n"
	    "server: ${MGROK_TEST_HOST}:1234\n"
	    "tls_server_name: \"$${literal}\"\n", tok);
	p = file("sec.yml", text, 0600);
	argv[3] = (char *)p;
	setenv("MGROK_TEST_HOST", "h.example", 1);
	conf_diag_init(&d);
	assert_int_equal(conf_client_load(c, 4, argv, &d), 0);
	assert_string_equal(c->token, "from-file");
	assert_string_equal(c->server, "h.example:1234");
	assert_string_equal(c->tls_server_name, "${literal}");
	/* readable by others: a warning, not an error */
	assert_int_equal(d.nerrors, 0);
	assert_non_null(diag_has(&d, "holds a secret and others can read"));
	assert_int_equal(d.v[0].is_error, 0);
	conf_client_free(c);
	conf_diag_free(&d);

	unsetenv("MGROK_TEST_HOST");
	assert_int_equal(conf_client_load(c, 4, argv, &d), MG_EINVAL);
	assert_non_null(diag_has(&d, ":2:9: server: ${MGROK_TEST_HOST} is "
				     "not set"));
	conf_client_free(c);
	conf_diag_free(&d);
	free(c);
}

static void
test_reload_rereads_the_file(void **state)
{
	struct server_conf c;
	struct conf_diag d;
	const char *p = file("r.yml", "tokens: [a]\nlease_grace: 3\n", 0600);
	char *argv[] = { "server", "--config", (char *)p, "--drain-timeout",
		"4", NULL };

	conf_diag_init(&d);
	assert_int_equal(conf_server_load(&c, 5, argv, &d), 0);
	assert_int_equal(c.lease_grace_s, 3);
	conf_server_free(&c);
	file("r.yml", "tokens: [a, b]\nlease_grace: 9\n", 0600);
	assert_int_equal(conf_server_load(&c, 5, argv, &d), 0);
	assert_int_equal(c.lease_grace_s, 9);
	assert_int_equal(c.drain_s, 4);
	assert_int_equal(c.ntokens, 2);
	conf_server_free(&c);
	/* a broken file: errors, and the caller keeps its old settings */
	file("r.yml", "tokens: [a]\nlease_grace: many\n", 0600);
	assert_int_equal(conf_server_load(&c, 5, argv, &d), MG_EINVAL);
	assert_non_null(diag_has(&d, ":2:14: lease_grace: expected a number"));
	conf_server_free(&c);
	conf_diag_free(&d);
}

static void
test_flags_keep_their_messages(void **state)
{
	struct server_conf c;
	struct conf_diag d;
	char *a1[] = { "server", "--end-port", "70000", "--token", "t", NULL };
	char *a2[] = { "server", "--start-port", "500", "--end-port", "400",
		"--token", "t", NULL };
	char *a3[] = { "server", "--bogus", "--help", NULL };
	char *a4[] = { "server", "--token", NULL };

	conf_diag_init(&d);
	assert_int_equal(conf_server_load(&c, 5, a1, &d), MG_EINVAL);
	assert_string_equal(d.v[0].text,
	    "--end-port: port must be 1-65535 (got \"70000\")");
	conf_server_free(&c);
	conf_diag_free(&d);
	assert_int_equal(conf_server_load(&c, 7, a2, &d), MG_EINVAL);
	assert_string_equal(d.v[0].text,
	    "--end-port: must not be below --start-port");
	conf_server_free(&c);
	conf_diag_free(&d);
	assert_int_equal(conf_server_load(&c, 3, a3, &d), 1); /* --help */
	conf_server_free(&c);
	conf_diag_free(&d);
	assert_int_equal(conf_server_load(&c, 2, a4, &d), MG_EINVAL);
	assert_string_equal(d.v[0].text, "--token: needs a value");
	conf_server_free(&c);
	conf_diag_free(&d);
}

static void
test_check_sniffs_the_side(void **state)
{
	struct conf_diag d;
	int server = -1;
	const char *s = file("side-s.yml", "auth_token: x\nbind_port: 1\n",
	    0600);
	const char *cl = file("side-c.yml", "server: h\ntunnels: {}\n", 0600);

	conf_diag_init(&d);
	assert_int_equal(conf_check_file(s, -1, &server, &d), 0);
	assert_int_equal(server, 1);
	assert_int_equal(conf_check_file(cl, -1, &server, &d), 0);
	assert_int_equal(server, 0);
	/* a client file checked as a server file: its keys are unknown */
	assert_int_equal(conf_check_file(cl, 1, &server, &d), MG_EINVAL);
	assert_non_null(diag_has(&d, "it belongs in a client file"));
	conf_diag_free(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_original_file),
		cmocka_unit_test(test_flags_override_the_file),
		cmocka_unit_test(test_every_error_collected),
		cmocka_unit_test(test_start_selects_tunnels),
		cmocka_unit_test(test_secrets),
		cmocka_unit_test(test_reload_rereads_the_file),
		cmocka_unit_test(test_flags_keep_their_messages),
		cmocka_unit_test(test_check_sniffs_the_side),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
