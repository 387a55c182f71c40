/* test_client.c: the agent's identity and lock (agentid), what a probe's
 * answer says (probe), and the client-side option forms (conf). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/agentid.h"
#include "client/probe.h"
#include "conf/conf.h"
#include "proto/ctrl.h"
#include "proto/frame.h"
#include "util/err.h"

static char tmpdir[256];

static int
setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mgrok-test-client-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	setenv("XDG_STATE_HOME", tmpdir, 1);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
two_locals(struct client_conf *cf, int swap)
{
	const char *err;

	memset(cf, 0, sizeof(*cf));
	snprintf(cf->server, sizeof(cf->server), "tunnel.example:9000");
	assert_int_equal(conf_parse_local(swap ? "udp:h:53" : "h:22",
	    &cf->locals[0], &err), 0);
	assert_int_equal(conf_parse_local(swap ? "h:22" : "udp:h:53",
	    &cf->locals[1], &err), 0);
	cf->nlocals = 2;
}

static void
test_agent_key(void **state)
{
	struct client_conf *a = calloc(1, sizeof(*a));
	struct client_conf *b = calloc(1, sizeof(*b));
	uint8_t ka[AGENTID_KEY_LEN], kb[AGENTID_KEY_LEN];

	two_locals(a, 0);
	two_locals(b, 1);
	agentid_key(a, ka);
	agentid_key(b, kb);
	assert_memory_equal(ka, kb, sizeof(ka)); /* order does not matter */
	b->locals[1].remote_port = 10022;
	agentid_key(b, kb);
	assert_memory_not_equal(ka, kb, sizeof(ka));
	two_locals(b, 1);
	snprintf(b->server, sizeof(b->server), "tunnel.example:9001");
	agentid_key(b, kb);
	assert_memory_not_equal(ka, kb, sizeof(ka));
	two_locals(b, 1);
	snprintf(b->locals[0].name, sizeof(b->locals[0].name), "dns");
	agentid_key(b, kb);
	assert_memory_not_equal(ka, kb, sizeof(ka));
	free(a);
	free(b);
}

static void
test_agent_lock(void **state)
{
	struct client_conf *a = calloc(1, sizeof(*a));
	struct client_conf *b = calloc(1, sizeof(*b));
	uint8_t id1[16], id2[16], id3[16];
	char why[4400];
	int fd1, fd2, fd3;
	long pid;

	two_locals(a, 0);
	two_locals(b, 0);
	b->locals[0].port = 23; /* another agent */
	assert_int_equal(agentid_acquire(a, id1, &fd1, &pid, why,
	    sizeof(why)), 0);
	assert_true(fd1 >= 0);
	/* the same agent again: locked (flock is per open file) */
	assert_int_equal(agentid_acquire(a, id2, &fd2, &pid, why,
	    sizeof(why)), MG_EINUSE);
	assert_int_equal(fd2, -1);
	assert_int_equal(pid, (long)getpid());
	assert_memory_equal(id1, id2, 16); /* the id it would have had */
	/* another agent of the same user: its own id, its own lock */
	assert_int_equal(agentid_acquire(b, id3, &fd3, &pid, why,
	    sizeof(why)), 0);
	assert_memory_not_equal(id1, id3, 16);
	close(fd3);
	/* released: the same agent gets the same id back */
	close(fd1);
	assert_int_equal(agentid_acquire(a, id2, &fd2, &pid, why,
	    sizeof(why)), 0);
	assert_memory_equal(id1, id2, 16);
	close(fd2);
	free(a);
	free(b);
}

static void
test_seed_kept_and_repaired(void **state)
{
	uint8_t s1[16], s2[16];
	char why[300], path[400];
	FILE *f;

	assert_int_equal(agentid_seed_load(s1, why, sizeof(why)), 0);
	assert_int_equal(agentid_seed_load(s2, why, sizeof(why)), 0);
	assert_memory_equal(s1, s2, 16);
	snprintf(path, sizeof(path), "%s/mgrok/client_id", tmpdir);
	assert_non_null(f = fopen(path, "w"));
	fputs("not hex\n", f);
	fclose(f);
	assert_int_equal(agentid_seed_load(s2, why, sizeof(why)), 0);
	assert_memory_not_equal(s1, s2, 16);
	assert_int_equal(agentid_seed_load(s1, why, sizeof(why)), 0);
	assert_memory_equal(s1, s2, 16);
}

static void
test_probe_classify(void **state)
{
	static const uint8_t alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02 };
	static const uint8_t hello[] = { 0x16, 0x03, 0x03, 0x00, 0x34 };
	static const uint8_t smux[] = { 0x02, 0x02, 0x20, 0x00, 1, 0, 0, 0 };

	assert_int_equal(probe_classify(NULL, 0), PROBE_CLOSED);
	assert_int_equal(probe_classify(alert, 5), PROBE_TLS);
	assert_int_equal(probe_classify(hello, 1), PROBE_TLS);
	assert_int_equal(probe_classify((const uint8_t *)"HTTP/1.1 400", 12),
	    PROBE_HTTP);
	assert_int_equal(probe_classify((const uint8_t *)"HT", 2), PROBE_HTTP);
	assert_int_equal(probe_classify(smux, 8), PROBE_MGROK);
	assert_int_equal(probe_classify((const uint8_t *)"SSH-2.0-x", 9),
	    PROBE_OTHER);
	assert_int_equal(probe_classify((const uint8_t *)"\x02\x09", 2),
	    PROBE_OTHER);
}

static void
test_probe_requests(void **state)
{
	const uint8_t *p;
	size_t n;
	struct frame_hdr h;
	struct ctrl_hello hello;

	p = probe_request(PROBE_TLS, &n);
	assert_true(n > 5 && p[0] == 0x16 && p[1] == 0x03);
	assert_int_equal((size_t)(p[3] << 8 | p[4]), n - 5);
	p = probe_request(PROBE_HTTP, &n);
	assert_memory_equal(p, "GET / HTTP/1.0\r\n", 16);
	assert_memory_equal(p + n - 4, "\r\n\r\n", 4);
	/* an mgrok handshake: SYN of stream 1, then the hello in a PSH */
	p = probe_request(PROBE_MGROK, &n);
	assert_int_equal(frame_decode(p, n, &h), FRAME_HDR_LEN);
	assert_int_equal(h.cmd, FRAME_SYN);
	assert_int_equal(h.sid, 1);
	assert_int_equal(frame_decode(p + 8, n - 8, &h), FRAME_HDR_LEN);
	assert_int_equal(h.cmd, FRAME_PSH);
	assert_int_equal(h.len, n - 16);
	assert_int_equal(ctrl_hello_decode(p + 16, h.len, &hello), 0);
	assert_int_equal(hello.method, CTRL_METHOD_HMAC);
}

static void
test_local_forms(void **state)
{
	struct local_spec l;
	const char *err;

	assert_int_equal(conf_parse_local("3000", &l, &err), 0);
	assert_string_equal(l.host, "localhost");
	assert_int_equal(l.port, 3000);
	assert_int_equal(l.type, PROXY_TCP);
	assert_int_equal(conf_parse_local("http://localhost:3000", &l, &err),
	    0);
	assert_int_equal(l.type, PROXY_HTTP);
	assert_string_equal(l.host, "localhost");
	assert_int_equal(l.port, 3000);
	assert_int_equal(conf_parse_local("http://10.0.0.2/", &l, &err), 0);
	assert_int_equal(l.port, 80);
	assert_int_equal(conf_parse_local("http://[::1]:8080", &l, &err), 0);
	assert_string_equal(l.host, "::1");
	assert_int_equal(conf_parse_local("udp://h:53", &l, &err), 0);
	assert_int_equal(l.type, PROXY_UDP);
	assert_int_equal(conf_parse_local("https://h:443", &l, &err),
	    MG_EINVAL);
	assert_non_null(strstr(err, "https://"));
	assert_int_equal(conf_parse_local("http://h:80/app", &l, &err),
	    MG_EINVAL);
	assert_int_equal(conf_parse_local("tcp://h", &l, &err), MG_EINVAL);
	assert_int_equal(conf_parse_local("h:70000", &l, &err), MG_EINVAL);
	assert_string_equal(err, "port must be 1-65535");
	assert_int_equal(conf_parse_local("h:0", &l, &err), MG_EINVAL);
	assert_string_equal(err, "port must be 1-65535");
}

static void
test_server_default_port_and_retry(void **state)
{
	struct client_conf *cf = calloc(1, sizeof(*cf));
	char *argv[] = { "tcp", "22", "--server", "example.org", "--token",
		"t", NULL };
	char *argv6[] = { "tcp", "22", "--server", "[2001:db8::1]", "--token",
		"t", NULL };

	assert_int_equal(conf_client_parse(cf, 6, argv), 0);
	assert_string_equal(cf->server, "example.org:9000");
	assert_int_equal(cf->reconnect_attempts, 0); /* forever */
	conf_client_free(cf);
	assert_int_equal(conf_client_parse(cf, 6, argv6), 0);
	assert_string_equal(cf->server, "[2001:db8::1]:9000");
	conf_client_free(cf);
	free(cf);
}

static void
test_token_file_trimmed(void **state)
{
	struct server_conf *sc = calloc(1, sizeof(*sc));
	char path[400];
	char *argv[] = { "server", "--token-file", path, NULL };
	FILE *f;

	snprintf(path, sizeof(path), "%s/tokens", tmpdir);
	assert_non_null(f = fopen(path, "w"));
	fputs("# comment\r\n  one \t\r\n\r\n\ttwo\r\nthree", f);
	fclose(f);
	assert_int_equal(conf_server_parse(sc, 3, argv), 0);
	assert_int_equal(sc->ntokens, 3);
	assert_string_equal(sc->tokens[0], "one");
	assert_string_equal(sc->tokens[1], "two");
	assert_string_equal(sc->tokens[2], "three");
	conf_server_free(sc);
	free(sc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agent_key),
		cmocka_unit_test(test_agent_lock),
		cmocka_unit_test(test_seed_kept_and_repaired),
		cmocka_unit_test(test_probe_classify),
		cmocka_unit_test(test_probe_requests),
		cmocka_unit_test(test_local_forms),
		cmocka_unit_test(test_server_default_port_and_retry),
		cmocka_unit_test(test_token_file_trimmed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
