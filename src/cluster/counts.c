/* counts.c: cluster-wide counts per identity: see counts.h. */
#include "cluster/counts.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "cluster/routes.h"
#include "cluster/rstore.h"
#include "util/crypto.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mtime.h"
#include "util/strmap.h"
#include "util/xmalloc.h"

/*
 * One hash per identity, shared by the nodes: "NODE:tunnels",
 * "NODE:visitors" and "NODE:expires" per node. A key's TTL is the key's,
 * not a field's, so each node's record carries its own expiry (Redis's
 * clock, the only clock the nodes share): a node that died stops
 * counting once its expiry is past, even while the others keep the key
 * alive; the script deletes such records as it meets them, and keeps
 * the key's TTL at the latest expiry so that a key nobody refreshes goes
 * away. A node id may hold ':', so a field splits at its last ':'
 * (Lua's greedy '.*'). "expires" and not "until": `until` is a Lua
 * keyword. Numbers past 2^53 do not occur (ms since 1970, counts).
 */
const char counts_lua_write[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local me = ARGV[1]\n"
    "if ARGV[2] == '0' and ARGV[3] == '0' then\n"
    "  redis.call('HDEL', KEYS[1], me .. ':tunnels', me .. ':visitors',"
    " me .. ':expires')\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], me .. ':tunnels', ARGV[2],"
    " me .. ':visitors', ARGV[3], me .. ':expires',"
    " string.format('%d', now + tonumber(ARGV[4])))\n"
    "end\n"
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "local rec = {}\n"
    "for i = 1, #h, 2 do\n"
    "  local node, f = string.match(h[i], '^(.*):(%a+)$')\n"
    "  if node then\n"
    "    rec[node] = rec[node] or {}\n"
    "    rec[node][f] = tonumber(h[i + 1])\n"
    "  end\n"
    "end\n"
    "local st, sv, last = 0, 0, 0\n"
    "for node, r in pairs(rec) do\n"
    "  local e = r.expires or 0\n"
    "  if e <= now then\n"
    "    redis.call('HDEL', KEYS[1], node .. ':tunnels',"
    " node .. ':visitors', node .. ':expires')\n"
    "  else\n"
    "    if e > last then last = e end\n"
    "    if node ~= me then\n"
    "      st = st + math.max(r.tunnels or 0, 0)\n"
    "      sv = sv + math.max(r.visitors or 0, 0)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if last > now then\n"
    "  redis.call('PEXPIRE', KEYS[1], string.format('%d', last - now))\n"
    "end\n"
    "return {st, sv}\n";

#define TTL_MAX ((uint64_t)1 << 40)

int
counts_key(const char *identity, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t h[CRYPTO_SHA256_LEN];
	size_t pl = strlen(COUNTS_KEY_PREFIX);

	if (identity == NULL || identity[0] == '\0')
		return MG_EINVAL;
	if (cap < pl + 2 * CRYPTO_SHA256_LEN + 1)
		return MG_ENOSPC;
	crypto_sha256(identity, strlen(identity), h);
	memcpy(out, COUNTS_KEY_PREFIX, pl);
	for (size_t i = 0; i < CRYPTO_SHA256_LEN; i++) {
		out[pl + 2 * i] = hex[h[i] >> 4];
		out[pl + 2 * i + 1] = hex[h[i] & 15];
	}
	out[pl + 2 * CRYPTO_SHA256_LEN] = '\0';
	return (int)(pl + 2 * CRYPTO_SHA256_LEN);
}

static int
key_ok(const char *key)
{
	size_t pl = strlen(COUNTS_KEY_PREFIX);

	if (key == NULL || strlen(key) != pl + 2 * CRYPTO_SHA256_LEN ||
	    strncmp(key, COUNTS_KEY_PREFIX, pl) != 0)
		return 0;
	for (const char *p = key + pl; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

static void
push(struct counts_argv *a, const char *s)
{
	a->argv[a->argc] = s;
	a->len[a->argc] = strlen(s);
	a->argc++;
}

static const char *
num(struct counts_argv *a, int i, uint64_t v)
{
	snprintf(a->num[i], sizeof(a->num[i]), "%" PRIu64, v);
	return a->num[i];
}

int
counts_write_argv(struct counts_argv *a, const char *key, const char *node,
    const struct counts_fig *mine, uint64_t ttl_ms)
{
	memset(a, 0, sizeof(*a));
	if (!key_ok(key) || !routes_id_ok(node) || mine == NULL ||
	    ttl_ms == 0 || ttl_ms > TTL_MAX)
		return MG_EINVAL;
	snprintf(a->key, sizeof(a->key), "%s", key);
	a->nkeys = 1;
	push(a, a->key);
	push(a, node);
	push(a, num(a, 0, mine->tunnels));
	push(a, num(a, 1, mine->visitors));
	push(a, num(a, 2, ttl_ms));
	return 0;
}

int
counts_parse(const redisReply *rep, struct counts_fig *out)
{
	memset(out, 0, sizeof(*out));
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
	    rep->elements != 2)
		return MG_EPROTO;
	for (size_t i = 0; i < 2; i++)
		if (rep->element[i] == NULL ||
		    rep->element[i]->type != REDIS_REPLY_INTEGER ||
		    rep->element[i]->integer < 0)
			return MG_EPROTO;
	out->tunnels = (uint64_t)rep->element[0]->integer;
	out->visitors = (uint64_t)rep->element[1]->integer;
	return 0;
}

/* ---- the node's part ---- */

/* One identity tracked. It is not freed while its write is in flight;
 * counts_free leaves such an entry orphaned (c NULL), and the answer
 * frees it. */
struct cent {
	struct counts *c;
	LIST_ENTRY(cent) link;
	char *identity;
	char key[COUNTS_KEY_MAX];
	struct counts_fig cur;    /* this node's, at the last collect */
	struct counts_fig sent;   /* as the store holds it (stored) */
	struct counts_fig flying; /* the write in flight */
	struct counts_fig others; /* the other nodes' sum (known) */
	unsigned stored : 1, known : 1, inflight : 1, hold : 1;
	uint64_t used_ms; /* the last check, or figure of this node */
};

LIST_HEAD(cent_list, cent);

struct counts {
	struct event_base *base;
	struct rstore *rs;
	const struct rstore_script *s_write;
	struct counts_hooks h;
	char node[ROUTES_ID_MAX + 1];
	uint64_t beat_ms, ttl_ms, last_beat_ms;
	struct strmap map;      /* identity -> struct cent */
	struct cent_list ents;
	struct event *tick;     /* every COUNTS_TICK_MS while tracking */
	struct event *soon;     /* a tick at once: an identity is new */
	int collecting;
	struct counts_stats st;
};

static void
cent_free(struct cent *e)
{
	free(e->identity);
	free(e);
}

static void
on_write(void *arg, const struct redisReply *reply, const char *err)
{
	struct cent *e = arg;
	struct counts *c = e->c;
	struct counts_fig f;
	int first;

	e->inflight = 0;
	if (c == NULL) { /* counts_free came first */
		cent_free(e);
		return;
	}
	first = !e->known;
	if (err == NULL && counts_parse(reply, &f) != 0)
		err = "the count script answered something else";
	if (err != NULL) {
		char m[LOG_ESC_MAX];
		c->st.errors++;
		e->stored = 0; /* not known: written again at the beat */
		e->hold = 1;
		log_debug("cluster counts: %s: %s", e->key,
		    log_esc(err, strlen(err), m, sizeof(m)));
	} else {
		c->st.writes++;
		e->sent = e->flying;
		e->stored = 1;
		e->others = f;
		e->known = 1;
	}
	/* the first read is over: what waited for it goes on (the entry
	 * stays: it is only removed by counts_run, never while the hook
	 * runs) */
	if (first && c->h.read != NULL)
		c->h.read(c->h.arg, e->identity);
}

static void
cent_write(struct counts *c, struct cent *e)
{
	struct counts_argv a;

	if (counts_write_argv(&a, e->key, c->node, &e->cur, c->ttl_ms) != 0 ||
	    rstore_eval(c->rs, c->s_write, on_write, e, a.nkeys, a.argc,
	    a.argv, a.len) != 0)
		return;
	e->inflight = 1;
	e->flying = e->cur;
}

static int
fig_eq(const struct counts_fig *a, const struct counts_fig *b)
{
	return a->tunnels == b->tunnels && a->visitors == b->visitors;
}

/* the local figures anew; the changed ones (all at a beat) written; the
 * identities idle long enough forgotten */
static void
counts_run(struct counts *c)
{
	uint64_t now = mtime_ms();
	int beat = now - c->last_beat_ms >= c->beat_ms, up;
	struct cent *e, *next;

	if (beat)
		c->last_beat_ms = now;
	LIST_FOREACH(e, &c->ents, link)
		memset(&e->cur, 0, sizeof(e->cur));
	if (c->h.collect) {
		c->collecting = 1;
		c->h.collect(c->h.arg, c);
		c->collecting = 0;
	}
	up = rstore_is_up(c->rs);
	for (e = LIST_FIRST(&c->ents); e != NULL; e = next) {
		int zero = e->cur.tunnels == 0 && e->cur.visitors == 0;
		next = LIST_NEXT(e, link);
		if (!zero)
			e->used_ms = now;
		if (beat)
			e->hold = 0;
		if (up && !e->inflight && (beat || (!e->hold &&
		    (!e->stored || !fig_eq(&e->cur, &e->sent)))))
			cent_write(c, e);
		if (zero && !e->inflight && now - e->used_ms >= COUNTS_IDLE_MS &&
		    (!up || (e->stored && e->sent.tunnels == 0 &&
		    e->sent.visitors == 0))) {
			LIST_REMOVE(e, link);
			strmap_del(&c->map, e->identity);
			cent_free(e);
			c->st.identities--;
		}
	}
	if (LIST_EMPTY(&c->ents))
		event_del(c->tick);
}

static void
counts_on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	counts_run(arg);
}

struct counts *
counts_new(struct event_base *base, struct rstore *rs, const char *node,
    uint64_t beat_ms, uint64_t ttl_ms, const struct counts_hooks *hooks)
{
	struct counts *c;

	if (!routes_id_ok(node) || beat_ms == 0 || ttl_ms == 0 ||
	    ttl_ms > TTL_MAX)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->rs = rs;
	c->h = *hooks;
	snprintf(c->node, sizeof(c->node), "%s", node);
	c->beat_ms = beat_ms;
	c->ttl_ms = ttl_ms;
	c->last_beat_ms = mtime_ms();
	strmap_init(&c->map);
	LIST_INIT(&c->ents);
	c->s_write = rstore_script_add(rs, counts_lua_write);
	c->tick = event_new(base, -1, EV_PERSIST, counts_on_tick, c);
	c->soon = evtimer_new(base, counts_on_tick, c);
	return c;
}

void
counts_free(struct counts *c)
{
	struct cent *e;

	if (c == NULL)
		return;
	event_free(c->tick);
	event_free(c->soon);
	while ((e = LIST_FIRST(&c->ents)) != NULL) {
		LIST_REMOVE(e, link);
		if (e->inflight)
			e->c = NULL; /* its answer frees it */
		else
			cent_free(e);
	}
	strmap_free(&c->map);
	free(c);
}

static struct cent *
cent_get(struct counts *c, const char *identity)
{
	struct cent *e = strmap_get(&c->map, identity);
	struct timeval tv = { COUNTS_TICK_MS / 1000,
		(COUNTS_TICK_MS % 1000) * 1000 }, zero = { 0, 0 };

	if (e != NULL || identity == NULL || identity[0] == '\0')
		return e;
	e = xcalloc(1, sizeof(*e));
	e->c = c;
	e->identity = xstrdup(identity);
	counts_key(identity, e->key, sizeof(e->key));
	e->used_ms = mtime_ms();
	if (LIST_EMPTY(&c->ents))
		event_add(c->tick, &tv);
	LIST_INSERT_HEAD(&c->ents, e, link);
	strmap_put(&c->map, e->identity, e);
	c->st.identities++;
	/* read at once: the others' figures are wanted by the next check;
	 * this node's (none written yet) follow with a tick now */
	if (!c->collecting) {
		if (rstore_is_up(c->rs))
			cent_write(c, e);
		event_add(c->soon, &zero);
	}
	return e;
}

void
counts_track(struct counts *c, const char *identity)
{
	struct cent *e;

	if (c != NULL && (e = cent_get(c, identity)) != NULL)
		e->used_ms = mtime_ms();
}

void
counts_local(struct counts *c, const char *identity, uint64_t tunnels,
    uint64_t visitors)
{
	struct cent *e = strmap_get(&c->map, identity);

	if (e == NULL)
		return;
	e->cur.tunnels += tunnels;
	e->cur.visitors += visitors;
}

int
counts_others(struct counts *c, const char *identity, struct counts_fig *out)
{
	struct cent *e;

	memset(out, 0, sizeof(*out));
	if (c == NULL || (e = cent_get(c, identity)) == NULL)
		return 0;
	e->used_ms = mtime_ms();
	if (e->known) {
		*out = e->others;
		return 1;
	}
	return rstore_is_up(c->rs) ? MG_EAGAIN : 0;
}

int
counts_reading(struct counts *c, const char *identity)
{
	struct cent *e;

	if (c == NULL || (e = cent_get(c, identity)) == NULL)
		return 0;
	e->used_ms = mtime_ms();
	if (e->known)
		return 0;
	if (!e->inflight && !e->hold && rstore_is_up(c->rs))
		cent_write(c, e);
	return e->inflight;
}

void
counts_stats(const struct counts *c, struct counts_stats *st)
{
	*st = c->st;
}
