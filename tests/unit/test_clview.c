/* test_clview.c: the cluster view (src/server/clview.c) against a fake
 * Redis on the test's own loop: the view's JSON, SCAN's repeats, a key of
 * another type, the bounds, and the ends a view may meet (the store down,
 * freed, silent; its asker gone). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>

#include "cluster/rstore.h"
#include "server/clview.h"

/* ---- a fake Redis: SELECT, SCAN (two keys a page), HGETALL, PTTL ---- */

struct fkey {
	const char *key;
	const char *fields; /* "f1=v1,f2=v2"; NULL: not a hash (WRONGTYPE) */
	long long pttl;
};

static const struct fkey keyspace[] = {
	{ "mgrok:node:n2", "addr=127.0.0.3:9100,load=0,started=1700000000,"
	    "sessions=0,tunnels=0", 4000 },
	{ "mgrok:route:tcp:20001", "node=n1,session=s1,epoch=17", 5000 },
	{ "mgrok:node:n1", "addr=127.0.0.2:9100,load=2,started=1700000000,"
	    "sessions=2,tunnels=3", 5500 },
	{ "mgrok:route:host:shop.example.com", "node=n1,session=s2,epoch=16",
	    -1 },
	{ "mgrok:route:junk", NULL, -1 },
	{ "mgrok:node:old", "addr=-,load=7,started=1700000000", 3000 },
	{ "other:key", "a=b", -1 },
	{ "mgrok:route:udp:53", "node=n2,session=s3,epoch=18", 100 },
};
#define NKEYS (sizeof(keyspace) / sizeof(keyspace[0]))

struct fake {
	struct evconnlistener *lst;
	struct bufferevent *bev;
	int port;
	int silent; /* answer SELECT only */
	unsigned scans, reads;
};

static void
reply_bulk(struct evbuffer *o, const char *s, size_t n)
{
	evbuffer_add_printf(o, "$%zu\r\n", n);
	evbuffer_add(o, s, n);
	evbuffer_add(o, "\r\n", 2);
}

static const struct fkey *
fkey_find(const char *k)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keyspace[i].key, k) == 0)
			return &keyspace[i];
	return NULL;
}

static void
fake_command(struct fake *fk, int argc, char **argv)
{
	struct evbuffer *o = bufferevent_get_output(fk->bev);

	if (strcasecmp(argv[0], "SELECT") == 0) {
		evbuffer_add_printf(o, "+OK\r\n");
		return;
	}
	if (fk->silent)
		return;
	if (strcasecmp(argv[0], "SCAN") == 0 && argc >= 4) {
		/* cursor = index; two keys a page, and each page repeats the
		 * last key of the one before (SCAN may return a key twice) */
		size_t at = strtoul(argv[1], NULL, 10), end = at + 2;
		size_t plen = strlen(argv[3]) - 1; /* "prefix*" */
		const char *page[3];
		int n = 0;
		fk->scans++;
		if (at > 0 && strncmp(keyspace[at - 1].key, argv[3], plen) == 0)
			page[n++] = keyspace[at - 1].key;
		for (size_t i = at; i < end && i < NKEYS; i++)
			if (strncmp(keyspace[i].key, argv[3], plen) == 0)
				page[n++] = keyspace[i].key;
		evbuffer_add_printf(o, "*2\r\n");
		if (end >= NKEYS)
			reply_bulk(o, "0", 1);
		else
			evbuffer_add_printf(o, "$%d\r\n%zu\r\n",
			    end >= 10 ? 2 : 1, end);
		evbuffer_add_printf(o, "*%d\r\n", n);
		for (int i = 0; i < n; i++)
			reply_bulk(o, page[i], strlen(page[i]));
		return;
	}
	if (strcasecmp(argv[0], "HGETALL") == 0 && argc == 2) {
		const struct fkey *k = fkey_find(argv[1]);
		char buf[256], *save = NULL, *f;
		int n = 0;
		fk->reads++;
		if (k == NULL) {
			evbuffer_add_printf(o, "*0\r\n");
			return;
		}
		if (k->fields == NULL) {
			evbuffer_add_printf(o, "-WRONGTYPE Operation against a "
			    "key holding the wrong kind of value\r\n");
			return;
		}
		snprintf(buf, sizeof(buf), "%s", k->fields);
		for (const char *p = buf; *p; p++)
			n += *p == ',';
		evbuffer_add_printf(o, "*%d\r\n", 2 * (n + 1));
		for (f = strtok_r(buf, ",", &save); f != NULL;
		    f = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(f, '=');
			reply_bulk(o, f, (size_t)(eq - f));
			reply_bulk(o, eq + 1, strlen(eq + 1));
		}
		return;
	}
	if (strcasecmp(argv[0], "PTTL") == 0 && argc == 2) {
		const struct fkey *k = fkey_find(argv[1]);
		evbuffer_add_printf(o, ":%lld\r\n", k ? k->pttl : -2LL);
		return;
	}
	evbuffer_add_printf(o, "-ERR unknown command\r\n");
}

/* RESP arrays of bulk strings, as hiredis sends them */
static void
fake_read(struct bufferevent *bev, void *arg)
{
	struct fake *fk = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		size_t len = evbuffer_get_length(in), pos = 0;
		char *p = (char *)evbuffer_pullup(in, -1), *argv[16];
		int argc, ok = 1, made = 0;
		char *nl;
		if (len == 0 || p[0] != '*' ||
		    (nl = memchr(p, '\n', len)) == NULL)
			return;
		argc = atoi(p + 1);
		assert_true(argc > 0 && argc <= 16);
		pos = (size_t)(nl - p) + 1;
		for (int i = 0; i < argc && ok; i++) {
			size_t n;
			if (pos >= len || p[pos] != '$' ||
			    (nl = memchr(p + pos, '\n', len - pos)) == NULL) {
				ok = 0;
				break;
			}
			n = strtoul(p + pos + 1, NULL, 10);
			pos = (size_t)(nl - p) + 1;
			if (pos + n + 2 > len) {
				ok = 0;
				break;
			}
			argv[made++] = strndup(p + pos, n);
			pos += n + 2;
		}
		if (!ok) {
			/* not all there yet: the strings made so far go */
			for (int i = 0; i < made; i++)
				free(argv[i]);
			return;
		}
		fake_command(fk, argc, argv);
		for (int i = 0; i < argc; i++)
			free(argv[i]);
		evbuffer_drain(in, pos);
	}
}

static void
fake_event(struct bufferevent *bev, short what, void *arg)
{
	struct fake *fk = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bufferevent_free(bev);
		fk->bev = NULL;
	}
}

static void
fake_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int sl, void *arg)
{
	struct fake *fk = arg;

	assert_null(fk->bev);
	fk->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(fk->bev, fake_read, NULL, fake_event, fk);
	bufferevent_enable(fk->bev, EV_READ | EV_WRITE);
}

static void
fake_start(struct event_base *base, struct fake *fk)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	memset(fk, 0, sizeof(*fk));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fk->lst = evconnlistener_new_bind(base, fake_accept, fk,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	    (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(fk->lst);
	getsockname(evconnlistener_get_fd(fk->lst), (struct sockaddr *)&sin,
	    &sl);
	fk->port = ntohs(sin.sin_port);
}

static void
fake_stop(struct fake *fk)
{
	if (fk->bev)
		bufferevent_free(fk->bev);
	evconnlistener_free(fk->lst);
}

/* ---- the test's store and the view's answer ---- */

struct answer {
	int calls;
	json_t *j;
	char err[256];
};

static void
on_view(void *arg, json_t *j, const char *err)
{
	struct answer *a = arg;

	a->calls++;
	a->j = j;
	snprintf(a->err, sizeof(a->err), "%s", err ? err : "");
}

static void
on_up(void *arg)
{
	event_base_loopbreak(arg);
}

static struct rstore *
store_up(struct event_base *base, struct fake *fk)
{
	struct rstore_hooks h = { on_up, NULL, base };
	struct timeval tv = { 5, 0 };
	char url[64], err[256];
	struct rstore *r;

	fake_start(base, fk);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", fk->port);
	r = rstore_new(base, url, &h, err, sizeof(err));
	assert_non_null(r);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_true(rstore_is_up(r));
	return r;
}

/* run the loop until a has its answer (at most 5 s) */
static void
wait_answer(struct event_base *base, struct answer *a, int ms)
{
	for (int i = 0; i < ms / 10 && a->calls == 0; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
}

static json_t *
by(json_t *arr, const char *field, const char *value)
{
	size_t i;
	json_t *e;

	json_array_foreach(arr, i, e) {
		const char *v = json_string_value(json_object_get(e, field));
		if (v != NULL && strcmp(v, value) == 0)
			return e;
	}
	return NULL;
}

static void
test_view(void **state)
{
	struct event_base *base = event_base_new();
	struct fake fk;
	struct rstore *r = store_up(base, &fk);
	struct answer a = { 0 };
	struct clview_fetch *f;
	json_t *nodes, *routes, *n, *rt;
	char err[256];

	(void)state;
	f = clview_fetch(base, r, "n2", NULL, on_view, &a, err, sizeof(err));
	assert_non_null(f);
	assert_int_equal(a.calls, 0); /* never from inside the call */
	wait_answer(base, &a, 5000);
	assert_int_equal(a.calls, 1);
	assert_non_null(a.j);
	assert_string_equal(a.err, "");
	assert_string_equal(json_string_value(json_object_get(a.j, "node")),
	    "n2");
	assert_true(json_is_false(json_object_get(a.j, "truncated")));
	assert_true(json_is_true(json_object_get(json_object_get(a.j,
	    "store"), "up")));
	nodes = json_object_get(a.j, "nodes");
	routes = json_object_get(a.j, "routes");
	/* each key once (the repeats dropped), sorted; the junk key and the
	 * other prefix left out */
	assert_int_equal(json_array_size(nodes), 3);
	assert_int_equal(json_array_size(routes), 3);
	assert_string_equal(json_string_value(json_object_get(
	    json_array_get(nodes, 0), "id")), "n1");
	assert_string_equal(json_string_value(json_object_get(
	    json_array_get(nodes, 2), "id")), "old");
	assert_string_equal(json_string_value(json_object_get(
	    json_array_get(routes, 0), "key")),
	    "mgrok:route:host:shop.example.com");
	n = by(nodes, "id", "n1");
	assert_string_equal(json_string_value(json_object_get(n, "addr")),
	    "127.0.0.2:9100");
	assert_int_equal(json_integer_value(json_object_get(n, "sessions")), 2);
	assert_int_equal(json_integer_value(json_object_get(n, "tunnels")), 3);
	assert_int_equal(json_integer_value(json_object_get(n, "started")),
	    1700000000);
	assert_true(json_integer_value(json_object_get(n, "age_s")) > 0);
	assert_int_equal(json_integer_value(json_object_get(n, "ttl_ms")),
	    5500);
	assert_true(json_is_false(json_object_get(n, "self")));
	assert_true(json_is_true(json_object_get(by(nodes, "id", "n2"),
	    "self")));
	/* a record of the first schema: its load as the sessions */
	n = by(nodes, "id", "old");
	assert_int_equal(json_integer_value(json_object_get(n, "sessions")), 7);
	assert_true(json_is_null(json_object_get(n, "tunnels")));
	rt = by(routes, "key", "mgrok:route:tcp:20001");
	assert_string_equal(json_string_value(json_object_get(rt, "kind")),
	    "tcp");
	assert_string_equal(json_string_value(json_object_get(rt, "name")),
	    "20001");
	assert_string_equal(json_string_value(json_object_get(rt, "node")),
	    "n1");
	assert_int_equal(json_integer_value(json_object_get(rt, "epoch")), 17);
	assert_int_equal(json_integer_value(json_object_get(rt, "ttl_ms")),
	    5000);
	assert_null(json_object_get(rt, "k"));
	rt = by(routes, "key", "mgrok:route:host:shop.example.com");
	assert_true(json_is_null(json_object_get(rt, "ttl_ms")));
	assert_string_equal(json_string_value(json_object_get(rt, "name")),
	    "shop.example.com");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    a.j, "sessions_by_node"), "n1")), 2);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    a.j, "sessions_by_node"), "old")), 7);
	json_decref(a.j);

	/* bounded: one route at most */
	{
		struct clview_limits lim = { 0, 1, 0 };
		memset(&a, 0, sizeof(a));
		f = clview_fetch(base, r, "n2", &lim, on_view, &a, err,
		    sizeof(err));
		assert_non_null(f);
		wait_answer(base, &a, 5000);
		assert_int_equal(a.calls, 1);
		assert_true(json_is_true(json_object_get(a.j, "truncated")));
		assert_true(json_array_size(json_object_get(a.j, "routes")) <=
		    1);
		assert_int_equal(json_array_size(json_object_get(a.j,
		    "nodes")), 3);
		json_decref(a.j);
	}
	rstore_free(r);
	fake_stop(&fk);
	event_base_free(base);
}

static void
test_store_down(void **state)
{
	struct event_base *base = event_base_new();
	struct rstore_hooks h = { NULL, NULL, NULL };
	struct rstore *r;
	struct answer a = { 0 };
	char err[256] = "";

	(void)state;
	r = rstore_new(base, "redis://127.0.0.1:1/0", &h, err, sizeof(err));
	assert_non_null(r);
	assert_null(clview_fetch(base, r, "n1", NULL, on_view, &a, err,
	    sizeof(err)));
	assert_string_equal(err, "the cluster store is not connected");
	assert_int_equal(a.calls, 0);
	rstore_free(r);
	event_base_free(base);
}

/* a silent store: the view's own timeout; the store freed while a view
 * waits (answered "closing"); a view cancelled, then its commands
 * answered by rstore_free (nothing called, nothing left: ASan) */
static void
test_silent_freed_cancelled(void **state)
{
	struct event_base *base = event_base_new();
	struct fake fk;
	struct rstore *r = store_up(base, &fk);
	struct clview_limits lim = { 0, 0, 300 };
	struct answer a = { 0 }, b = { 0 }, c = { 0 };
	struct clview_fetch *f;
	char err[256];

	(void)state;
	fk.silent = 1;
	rstore_set_limits(r, 10000, 100);
	assert_non_null(clview_fetch(base, r, "n1", &lim, on_view, &a, err,
	    sizeof(err)));
	wait_answer(base, &a, 3000);
	assert_int_equal(a.calls, 1);
	assert_null(a.j);
	assert_non_null(strstr(a.err, "within 300 ms"));

	lim.timeout_ms = 0;
	assert_non_null(clview_fetch(base, r, "n1", &lim, on_view, &b, err,
	    sizeof(err)));
	f = clview_fetch(base, r, "n1", &lim, on_view, &c, err, sizeof(err));
	assert_non_null(f);
	wait_answer(base, &b, 100);
	assert_int_equal(b.calls, 0);
	clview_cancel(f);
	rstore_free(r); /* the first view: "closing"; the cancelled: nothing */
	assert_int_equal(b.calls, 1);
	assert_null(b.j);
	assert_non_null(strstr(b.err, "closing"));
	assert_int_equal(c.calls, 0);
	fake_stop(&fk);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_view),
		cmocka_unit_test(test_store_down),
		cmocka_unit_test(test_silent_freed_cancelled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
