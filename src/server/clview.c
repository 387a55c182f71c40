/* clview.c: the cluster's records read from Redis as one JSON view (see
 * clview.h). */
#include "server/clview.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "cluster/routes.h"
#include "cluster/rstore.h"
#include "metrics/jtext.h"
#include "util/err.h"
#include "util/xmalloc.h"

/*
 * A fetch runs two SCANs (node keys, route keys), one SCAN command each in
 * flight; the keys they find wait in a queue, and each is read with an
 * HGETALL and a PTTL, at most CLVIEW_WINDOW commands in flight, so that a
 * big cluster's view never takes the store's whole in-flight cap from the
 * route claims. The next SCAN goes out only when the queue is short: the
 * memory is bounded by the window, not by the keyspace. SCAN may return a
 * key twice; a set of the keys taken drops the repeats.
 *
 * Every command holds the fetch (inflight): after the answer (or a
 * cancel) the fetch stays allocated, "finished", until the store has
 * answered the last of them (rstore answers each exactly once, "closing"
 * at rstore_free), and frees itself then.
 */

enum { SCAN_NODES, SCAN_ROUTES };

struct cv_scan {
	struct clview_fetch *f;
	int which;       /* SCAN_NODES, SCAN_ROUTES */
	const char *match;
	char cursor[24]; /* "0" at the start */
	int busy, done;
	unsigned taken, max;
};

/* one key being read: its HGETALL, then its PTTL (Redis answers in order) */
struct cv_item {
	struct clview_fetch *f;
	int which;
	char *key;
	json_t *fields;  /* the hash, or NULL: gone, or not a hash */
	long long pttl;  /* -2: gone; -1: no TTL */
	int npend, skip;
};

struct clview_fetch {
	struct event_base *base;
	struct rstore *rs;
	char self[ROUTES_ID_MAX + 1];
	clview_fn cb;
	void *arg;
	struct event *timer;
	struct cv_scan scan[2];
	json_t *seen;        /* the keys taken: an object used as a set */
	char **queue;        /* keys to read, [qhead, qlen) */
	size_t qhead, qlen, qcap;
	unsigned reading;    /* HGETALL and PTTL commands in flight */
	unsigned inflight;   /* every command in flight (ours to answer) */
	json_t *nodes, *routes;
	int truncated;
	unsigned timeout_ms;
	int mute;            /* inside clview_fetch, or cancelled: no cb */
	int finished;        /* answered, failed or cancelled */
	char err[256];
};

/* what the view gathered: it goes at the end, even while commands are
 * still due (a silent store must not keep 10000 records alive) */
static void
release_bulk(struct clview_fetch *f)
{
	for (size_t i = f->qhead; i < f->qlen; i++)
		free(f->queue[i]);
	free(f->queue);
	f->queue = NULL;
	f->qhead = f->qlen = f->qcap = 0;
	json_decref(f->seen);
	json_decref(f->nodes);
	json_decref(f->routes);
	f->seen = f->nodes = f->routes = NULL;
}

static void
fetch_free(struct clview_fetch *f)
{
	release_bulk(f);
	if (f->timer)
		event_free(f->timer);
	free(f);
}

/* the end (the first one counts): cb once, unless muted */
static void
finish(struct clview_fetch *f, json_t *j, const char *err)
{
	if (f->finished) {
		json_decref(j);
		return;
	}
	f->finished = 1;
	if (f->timer) {
		event_free(f->timer);
		f->timer = NULL;
	}
	if (err != NULL)
		snprintf(f->err, sizeof(f->err), "%s", err);
	release_bulk(f);
	if (f->mute) {
		json_decref(j);
		return;
	}
	f->cb(f->arg, j, err);
}

static void
fail(struct clview_fetch *f, const char *what, const char *err)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "%s: %s", what, err);
	finish(f, NULL, msg);
}

/* ---- the view ---- */

static int
cmp_key(const void *a, const void *b)
{
	const char *ka = json_string_value(json_object_get(*(json_t *const *)a,
	    "k"));
	const char *kb = json_string_value(json_object_get(*(json_t *const *)b,
	    "k"));

	return strcmp(ka ? ka : "", kb ? kb : "");
}

/* arr's objects sorted by their "k" (their key; removed) */
static json_t *
sorted(json_t *arr)
{
	size_t n = json_array_size(arr);
	json_t **v = xcalloc(n ? n : 1, sizeof(*v));
	json_t *out = json_array();

	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(arr, i);
	qsort(v, n, sizeof(*v), cmp_key);
	for (size_t i = 0; i < n; i++) {
		json_object_del(v[i], "k");
		json_array_append(out, v[i]);
	}
	free(v);
	return out;
}

static void
done_ok(struct clview_fetch *f)
{
	struct rstore_stats st;
	json_t *nodes = sorted(f->nodes), *routes = sorted(f->routes);
	json_t *by = json_object(), *n, *j;
	size_t i;

	json_array_foreach(nodes, i, n) {
		json_t *s = json_object_get(n, "sessions");
		json_object_set_new(by, json_string_value(json_object_get(n,
		    "id")), json_is_integer(s) ? json_incref(s) :
		    json_integer(0));
	}
	rstore_stats(f->rs, &st);
	j = json_pack("{s:s,s:{s:b,s:I},s:b,s:o,s:o,s:o}", "node", f->self,
	    "store", "up", st.up, "rtt_us", (json_int_t)st.rtt_us_avg,
	    "truncated", f->truncated, "nodes", nodes, "routes", routes,
	    "sessions_by_node", by);
	if (j == NULL)
		finish(f, NULL, "cannot build the view");
	else
		finish(f, j, NULL);
}

/* a decimal field of a hash as an integer, or null */
static json_t *
num_field(json_t *h, const char *name)
{
	const char *s = json_string_value(json_object_get(h, name));
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return json_null();
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end != '\0' || errno != 0 || v > (unsigned long long)INT64_MAX)
		return json_null();
	return json_integer((json_int_t)v);
}

static json_t *
str_field(json_t *h, const char *name)
{
	json_t *s = json_object_get(h, name);

	return json_is_string(s) ? json_incref(s) : json_null();
}

static void
emit_node(struct clview_fetch *f, struct cv_item *it)
{
	const char *id = it->key + strlen(ROUTES_NODE_PREFIX);
	json_t *h = it->fields, *sess = num_field(h, "sessions"), *started;
	json_t *n;

	if (json_is_null(sess)) { /* a record of the first schema */
		json_decref(sess);
		sess = num_field(h, "load");
	}
	started = num_field(h, "started");
	n = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:b}", "k",
	    jtext(it->key), "id", jtext(id), "addr", str_field(h, "addr"),
	    "sessions", sess, "tunnels", num_field(h, "tunnels"), "started",
	    json_incref(started), "age_s", json_is_integer(started) ?
	    json_integer((json_int_t)time(NULL) - json_integer_value(started))
	    : json_null(), "ttl_ms", it->pttl >= 0 ?
	    json_integer((json_int_t)it->pttl) : json_null(), "self",
	    strcmp(id, f->self) == 0);
	json_decref(started);
	if (n != NULL)
		json_array_append_new(f->nodes, n);
}

static void
emit_route(struct clview_fetch *f, struct cv_item *it)
{
	const char *rest = it->key + strlen(ROUTES_KEY_PREFIX);
	const char *colon = strchr(rest, ':');
	json_t *n;

	n = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "k", jtext(it->key),
	    "key", jtext(it->key), "kind", colon ? jtextn(rest,
	    (size_t)(colon - rest)) : json_null(), "name", jtext(colon ?
	    colon + 1 : rest), "node", str_field(it->fields, "node"), "epoch",
	    num_field(it->fields, "epoch"), "ttl_ms", it->pttl >= 0 ?
	    json_integer((json_int_t)it->pttl) : json_null());
	if (n != NULL)
		json_array_append_new(f->routes, n);
}

/* ---- the commands ---- */

static void pump(struct clview_fetch *f);

/* after an answer: go on, and free the fetch once it is over and the
 * store owes it nothing more */
static void
settle(struct clview_fetch *f)
{
	if (!f->finished)
		pump(f);
	if (f->finished && f->inflight == 0)
		fetch_free(f);
}

static void
item_free(struct cv_item *it)
{
	json_decref(it->fields);
	free(it->key);
	free(it);
}

/* a Redis error about one key (WRONGTYPE: not our record) skips the key;
 * any other failure (timeout, connection lost, closing) ends the fetch */
static int
item_err(struct cv_item *it, const redisReply *r, const char *err)
{
	if (err == NULL)
		return 0;
	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		it->skip = 1;
	else
		fail(it->f, "the cluster store", err);
	return 1;
}

static void
item_answered(struct cv_item *it)
{
	struct clview_fetch *f = it->f;

	f->inflight--;
	f->reading--;
	if (--it->npend > 0)
		return;
	if (!f->finished && !it->skip && it->fields != NULL &&
	    json_object_size(it->fields) > 0 && it->pttl != -2) {
		if (it->which == SCAN_NODES)
			emit_node(f, it);
		else
			emit_route(f, it);
	}
	item_free(it);
}

static void
on_hgetall(void *arg, const redisReply *r, const char *err)
{
	struct cv_item *it = arg;
	struct clview_fetch *f = it->f;

	if (!item_err(it, r, err) && !f->finished) {
		if (r == NULL || r->type != REDIS_REPLY_ARRAY ||
		    r->elements % 2 != 0) {
			it->skip = 1;
		} else {
			it->fields = json_object();
			for (size_t i = 0; i + 1 < r->elements; i += 2) {
				const redisReply *k = r->element[i];
				const redisReply *v = r->element[i + 1];
				char name[16];
				if (k->type != REDIS_REPLY_STRING ||
				    v->type != REDIS_REPLY_STRING ||
				    k->len >= sizeof(name))
					continue; /* not a field we show */
				memcpy(name, k->str, k->len);
				name[k->len] = '\0';
				json_object_set_new(it->fields, name,
				    jtextn(v->str, v->len));
			}
		}
	}
	item_answered(it);
	settle(f);
}

static void
on_pttl(void *arg, const redisReply *r, const char *err)
{
	struct cv_item *it = arg;
	struct clview_fetch *f = it->f;

	if (!item_err(it, r, err) && !f->finished) {
		if (r == NULL || r->type != REDIS_REPLY_INTEGER)
			it->skip = 1;
		else
			it->pttl = r->integer;
	}
	item_answered(it);
	settle(f);
}

static void
on_scan(void *arg, const redisReply *r, const char *err)
{
	struct cv_scan *sc = arg;
	struct clview_fetch *f = sc->f;
	const redisReply *keys;

	f->inflight--;
	sc->busy = 0;
	if (f->finished)
		goto out;
	if (err != NULL) {
		fail(f, "the cluster store", err);
		goto out;
	}
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[0]->len >= sizeof(sc->cursor) ||
	    r->element[1]->type != REDIS_REPLY_ARRAY) {
		finish(f, NULL, "the cluster store answered SCAN with "
		    "something else");
		goto out;
	}
	memcpy(sc->cursor, r->element[0]->str, r->element[0]->len);
	sc->cursor[r->element[0]->len] = '\0';
	if (strcmp(sc->cursor, "0") == 0)
		sc->done = 1;
	keys = r->element[1];
	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];
		char key[ROUTES_KEY_MAX + 1];
		if (k->type != REDIS_REPLY_STRING || k->len == 0 ||
		    k->len >= sizeof(key) || memchr(k->str, '\0', k->len))
			continue; /* not a key we write */
		memcpy(key, k->str, k->len);
		key[k->len] = '\0';
		if (json_object_get(f->seen, key) != NULL)
			continue;
		if (sc->taken >= sc->max) {
			f->truncated = 1;
			sc->done = 1;
			break;
		}
		if (json_object_set_new(f->seen, key, json_true()) != 0)
			continue; /* not UTF-8: not a key we write */
		sc->taken++;
		if (f->qlen == f->qcap) {
			/* the queue's start is spent: reuse it first */
			if (f->qhead > 0) {
				memmove(f->queue, f->queue + f->qhead,
				    (f->qlen - f->qhead) * sizeof(*f->queue));
				f->qlen -= f->qhead;
				f->qhead = 0;
			}
			if (f->qlen == f->qcap) {
				f->qcap = f->qcap ? 2 * f->qcap : 256;
				f->queue = xrealloc(f->queue,
				    f->qcap * sizeof(*f->queue));
			}
		}
		f->queue[f->qlen++] = xstrdup(key);
	}
out:
	settle(f);
}

static int
send_scan(struct clview_fetch *f, struct cv_scan *sc)
{
	int rv = rstore_cmd(f->rs, on_scan, sc, "SCAN %s MATCH %s COUNT %d",
	    sc->cursor, sc->match, CLVIEW_SCAN_COUNT); /* no spaces in them */

	if (rv != 0)
		return rv;
	sc->busy = 1;
	f->inflight++;
	return 0;
}

static int
send_item(struct clview_fetch *f, char *key)
{
	struct cv_item *it = xcalloc(1, sizeof(*it));
	size_t kl = strlen(key);
	int rv;

	it->f = f;
	it->key = key;
	it->which = strncmp(key, ROUTES_NODE_PREFIX,
	    strlen(ROUTES_NODE_PREFIX)) == 0 ? SCAN_NODES : SCAN_ROUTES;
	it->pttl = -2;
	if ((rv = rstore_cmd(f->rs, on_hgetall, it, "HGETALL %b", key,
	    kl)) != 0) {
		item_free(it);
		return rv;
	}
	it->npend = 1;
	f->inflight++;
	f->reading++;
	if ((rv = rstore_cmd(f->rs, on_pttl, it, "PTTL %b", key, kl)) != 0) {
		it->skip = 1; /* freed by its HGETALL's answer */
		return rv;
	}
	it->npend++;
	f->inflight++;
	f->reading++;
	return 0;
}

/* a command the store refused: the fetch ends */
static void
refused(struct clview_fetch *f, int rv)
{
	finish(f, NULL, rv == MG_ELIMIT ? "the cluster store is busy (too "
	    "many commands in flight)" : rv == MG_ECLOSED ? "the cluster "
	    "store went down" : "the cluster store refused a command");
}

static void
pump(struct clview_fetch *f)
{
	int all_done = 1, rv;

	while (!f->finished && f->qhead < f->qlen &&
	    f->reading + 2 <= CLVIEW_WINDOW) {
		char *key = f->queue[f->qhead++];
		if ((rv = send_item(f, key)) != 0)
			refused(f, rv);
	}
	for (int i = 0; i < 2 && !f->finished; i++) {
		struct cv_scan *sc = &f->scan[i];
		if (sc->done)
			continue;
		all_done = 0;
		if (sc->busy || f->qlen - f->qhead >= 2 * CLVIEW_WINDOW)
			continue;
		if ((rv = send_scan(f, sc)) != 0)
			refused(f, rv);
	}
	if (!f->finished && all_done && f->qhead == f->qlen &&
	    f->inflight == 0)
		done_ok(f);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct clview_fetch *f = arg;
	char msg[128];

	snprintf(msg, sizeof(msg), "the cluster store did not give the whole "
	    "view within %u ms", f->timeout_ms);
	finish(f, NULL, msg);
	settle(f);
}

struct clview_fetch *
clview_fetch(struct event_base *base, struct rstore *rs, const char *self,
    const struct clview_limits *lim, clview_fn cb, void *arg, char *err,
    size_t errcap)
{
	struct clview_fetch *f;
	unsigned timeout_ms = lim && lim->timeout_ms ? lim->timeout_ms :
	    CLVIEW_TIMEOUT_MS;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

	if (!rstore_is_up(rs)) {
		snprintf(err, errcap, "the cluster store is not connected");
		return NULL;
	}
	f = xcalloc(1, sizeof(*f));
	f->base = base;
	f->rs = rs;
	snprintf(f->self, sizeof(f->self), "%s", self);
	f->cb = cb;
	f->arg = arg;
	f->timeout_ms = timeout_ms;
	f->seen = json_object();
	f->nodes = json_array();
	f->routes = json_array();
	for (int i = 0; i < 2; i++) {
		f->scan[i].f = f;
		f->scan[i].which = i;
		snprintf(f->scan[i].cursor, sizeof(f->scan[i].cursor), "0");
	}
	f->scan[SCAN_NODES].match = ROUTES_NODE_PREFIX "*";
	f->scan[SCAN_NODES].max = lim && lim->max_nodes ? lim->max_nodes :
	    CLVIEW_MAX_NODES;
	f->scan[SCAN_ROUTES].match = ROUTES_KEY_PREFIX "*";
	f->scan[SCAN_ROUTES].max = lim && lim->max_routes ? lim->max_routes :
	    CLVIEW_MAX_ROUTES;
	if ((f->timer = event_new(base, -1, 0, on_timeout, f)) == NULL)
		abort();
	event_add(f->timer, &tv);
	f->mute = 1; /* cb is never called from inside this call */
	pump(f);
	f->mute = 0;
	if (f->finished) {
		snprintf(err, errcap, "%s", f->err);
		if (f->inflight == 0)
			fetch_free(f);
		return NULL;
	}
	return f;
}

void
clview_cancel(struct clview_fetch *f)
{
	if (f == NULL || f->finished)
		return;
	f->mute = 1;
	finish(f, NULL, "cancelled");
	if (f->inflight == 0)
		fetch_free(f);
}
