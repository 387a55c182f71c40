/* test_events.c: the event feed (metrics/events.h): the ring keeps the
 * last events, replay after a seq, the JSON text of an event, and
 * re-entrancy: unsubscribe and emit from inside a callback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "metrics/events.h"

struct rec {
	char log[4096];
	size_t n;
	struct evfeed *f;
	struct evfeed_sub *self, *other;
	int emits; /* emit this many from the callback */
};

static void
record(void *arg, const struct evfeed_event *ev)
{
	struct rec *r = arg;

	r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n,
	    "%llu:%s ", (unsigned long long)ev->seq, ev->type);
}

static void
test_ring_and_replay(void **state)
{
	struct evfeed *f = evfeed_new(3);
	struct rec r = {0};
	int i;

	(void)state;
	evfeed_replay(f, 0, record, &r);
	assert_int_equal(r.n, 0);
	assert_int_equal(evfeed_last_seq(f), 0);
	for (i = 0; i < 5; i++)
		assert_int_equal(evfeed_emit(f, "e", NULL), i + 1);
	assert_int_equal(evfeed_last_seq(f), 5);
	evfeed_replay(f, 0, record, &r);
	assert_string_equal(r.log, "3:e 4:e 5:e ");
	r.n = 0;
	r.log[0] = '\0';
	evfeed_replay(f, 3, record, &r);
	assert_string_equal(r.log, "4:e 5:e ");
	r.n = 0;
	r.log[0] = '\0';
	evfeed_replay(f, 5, record, &r);
	evfeed_replay(f, 99, record, &r);
	assert_int_equal(r.n, 0);
	evfeed_free(f);
}

struct jtext {
	char a[256], b[256];
	int i;
};

static void
keep_json(void *arg, const struct evfeed_event *ev)
{
	struct jtext *t = arg;

	snprintf(t->i++ == 0 ? t->a : t->b, sizeof(t->a), "%s", ev->json);
	assert_true(json_is_object(ev->data));
}

static void
test_json(void **state)
{
	struct evfeed *f = evfeed_new(10);
	struct jtext t;
	json_t *j;
	json_error_t e;

	(void)state;
	memset(&t, 0, sizeof(t));
	evfeed_emit(f, "tunnel_up", json_pack("{s:i,s:s}", "tunnel", 3,
	    "name", "web"));
	evfeed_emit(f, "bare", NULL);
	evfeed_replay(f, 0, keep_json, &t);
	j = json_loads(t.a, 0, &e);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "seq")), 1);
	assert_true(json_integer_value(json_object_get(j, "time")) >
	    1600000000000LL);
	assert_string_equal(json_string_value(json_object_get(j, "type")),
	    "tunnel_up");
	assert_int_equal(json_integer_value(json_object_get(j, "tunnel")), 3);
	assert_string_equal(json_string_value(json_object_get(j, "name")),
	    "web");
	json_decref(j);
	assert_int_equal(strncmp(t.b, "{\"seq\":2,\"time\":", 16), 0);
	assert_non_null(strstr(t.b, ",\"type\":\"bare\"}"));
	assert_int_equal(strncmp(t.a, "{\"seq\":1,\"time\":", 16), 0);
	assert_non_null(strstr(t.a, ",\"type\":\"tunnel_up\",\"tunnel\":3,"
	    "\"name\":\"web\"}"));
	evfeed_free(f);
}

static void
unsub_self(void *arg, const struct evfeed_event *ev)
{
	struct rec *r = arg;

	record(r, ev);
	evfeed_unsubscribe(r->self);
	if (r->other != NULL)
		evfeed_unsubscribe(r->other);
	r->other = NULL;
}

static void
test_unsubscribe_in_callback(void **state)
{
	struct evfeed *f = evfeed_new(4);
	struct rec a = {0}, b = {0};

	(void)state;
	a.self = evfeed_subscribe(f, unsub_self, &a);
	b.self = evfeed_subscribe(f, record, &b);
	a.other = b.self; /* a also drops b, before b saw the event */
	assert_int_equal(evfeed_nsubscribers(f), 2);
	evfeed_emit(f, "x", NULL);
	assert_string_equal(a.log, "1:x ");
	assert_int_equal(b.n, 0);
	assert_int_equal(evfeed_nsubscribers(f), 0);
	evfeed_emit(f, "y", NULL);
	assert_string_equal(a.log, "1:x ");
	evfeed_free(f);
}

static void
emitter(void *arg, const struct evfeed_event *ev)
{
	struct rec *r = arg;

	record(r, ev);
	if (r->emits > 0) {
		r->emits--;
		evfeed_emit(r->f, "inner", NULL);
		evfeed_emit(r->f, "inner2", NULL);
		/* a subscriber added now sees only later events */
		r->other = evfeed_subscribe(r->f, record, r + 1);
	}
}

static void
test_emit_in_callback(void **state)
{
	struct evfeed *f = evfeed_new(1); /* the queue outlives the ring */
	struct rec r[2];

	(void)state;
	memset(r, 0, sizeof(r));
	r[0].f = f;
	r[0].emits = 1;
	r[0].self = evfeed_subscribe(f, emitter, &r[0]);
	assert_int_equal(evfeed_emit(f, "outer", NULL), 1);
	assert_string_equal(r[0].log, "1:outer 2:inner 3:inner2 ");
	assert_int_equal(r[1].n, 0); /* subscribed after 3 was emitted */
	assert_int_equal(evfeed_last_seq(f), 3);
	evfeed_emit(f, "after", NULL);
	assert_string_equal(r[1].log, "4:after ");
	evfeed_unsubscribe(r[0].self);
	evfeed_unsubscribe(r[0].other);
	assert_int_equal(evfeed_nsubscribers(f), 0);
	evfeed_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ring_and_replay),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_unsubscribe_in_callback),
		cmocka_unit_test(test_emit_in_callback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
