/* routes.c: route records in Redis: key schema, Lua scripts, their argv and
 * answers. */
#include "cluster/routes.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "util/err.h"

/*
 * The epoch counter starts at Redis's clock in microseconds when it is
 * missing (a new cluster, or a Redis restarted empty), so epochs keep
 * growing across an empty restart: a record claimed before it can never
 * share an epoch with one claimed after (as long as Redis's clock does not
 * step back, and claims stay under a million a second on average).
 * Epochs are kept in the hash as decimal strings and compared as strings
 * (refresh, release): string.format('%d') writes them exactly, where
 * Lua 5.1's own number-to-string conversion would switch to an exponent
 * past 1e14. tonumber() gives them back as integer answers (exact to 2^53).
 */
const char routes_lua_claim[] =
    "local cur = redis.call('HMGET', KEYS[1], 'node', 'session', 'epoch')\n"
    "if cur[1] and cur[2] ~= ARGV[2] then\n"
    "  return {0, cur[1], cur[2] or '', tonumber(cur[3]) or 0}\n"
    "end\n"
    "local epoch = cur[3]\n"
    "if not cur[1] or not epoch or cur[1] ~= ARGV[1] then\n"
    "  if redis.call('EXISTS', KEYS[2]) == 0 then\n"
    "    local t = redis.call('TIME')\n"
    "    redis.call('SET', KEYS[2], string.format('%d',"
    " tonumber(t[1]) * 1000000 + tonumber(t[2])))\n"
    "  end\n"
    "  epoch = string.format('%d', redis.call('INCR', KEYS[2]))\n"
    "  redis.call('HSET', KEYS[1], 'node', ARGV[1], 'session', ARGV[2],"
    " 'epoch', epoch)\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "  redis.call('PUBLISH', ARGV[4], 'claim ' .. KEYS[1] .. ' ' .. ARGV[1]"
    " .. ' ' .. epoch)\n"
    "else\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "end\n"
    "return {1, tonumber(epoch)}\n";

const char routes_lua_refresh[] =
    "local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch')\n"
    "if cur[1] == ARGV[1] and cur[2] == ARGV[2] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

const char routes_lua_release[] =
    "local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch')\n"
    "if cur[1] == ARGV[1] and cur[2] == ARGV[2] then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.call('PUBLISH', ARGV[3], 'release ' .. KEYS[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

const char routes_lua_node[] =
    "redis.call('HSET', KEYS[1], 'addr', ARGV[1], 'load', ARGV[2],"
    " 'started', ARGV[3], 'sessions', ARGV[5] or ARGV[2],"
    " 'tunnels', ARGV[6] or '0')\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "return 1\n";

#define TTL_MAX ((uint64_t)1 << 40)

const char *
routes_kind_name(enum route_kind kind)
{
	switch (kind) {
	case ROUTE_TCP:
		return "tcp";
	case ROUTE_UDP:
		return "udp";
	case ROUTE_HOST:
		return "host";
	}
	return NULL;
}

int
routes_key(enum route_kind kind, const char *name, char *out, size_t cap)
{
	const char *k = routes_kind_name(kind);
	size_t n;
	int len;

	if (k == NULL || name == NULL)
		return MG_EINVAL;
	n = strlen(name);
	if (n == 0 || n > ROUTES_NAME_MAX)
		return MG_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (name[i] <= ' ' || name[i] >= 0x7f)
			return MG_EINVAL;
	len = snprintf(out, cap, ROUTES_KEY_PREFIX "%s:%s", k, name);
	if (len < 0 || (size_t)len >= cap)
		return MG_ENOSPC;
	return len;
}

int
routes_id_ok(const char *s)
{
	size_t n;

	if (s == NULL)
		return 0;
	n = strlen(s);
	if (n == 0 || n > ROUTES_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		        c == ':' || c == '-'))
			return 0;
	}
	return 1;
}

static int
key_ok(const char *key)
{
	size_t n = key != NULL ? strlen(key) : 0;

	if (n <= strlen(ROUTES_KEY_PREFIX) || n >= ROUTES_KEY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (key[i] <= ' ' || key[i] >= 0x7f)
			return 0;
	return 1;
}

static void
push(struct routes_argv *a, const char *s)
{
	a->argv[a->argc] = s;
	a->len[a->argc] = strlen(s);
	a->argc++;
}

static const char *
num(struct routes_argv *a, int i, uint64_t v)
{
	snprintf(a->num[i], sizeof(a->num[i]), "%" PRIu64, v);
	return a->num[i];
}

/* the route key is copied into a: the message it publishes carries it */
static int
start(struct routes_argv *a, const char *key, int nkeys)
{
	memset(a, 0, sizeof(*a));
	if (!key_ok(key))
		return MG_EINVAL;
	snprintf(a->key, sizeof(a->key), "%s", key);
	a->nkeys = nkeys;
	push(a, a->key);
	return 0;
}

int
routes_claim_argv(struct routes_argv *a, const char *key, const char *node,
    const char *session, uint64_t ttl_ms)
{
	if (start(a, key, 2) < 0 || !routes_id_ok(node) ||
	    !routes_id_ok(session) || ttl_ms == 0 || ttl_ms > TTL_MAX)
		return MG_EINVAL;
	push(a, ROUTES_EPOCH_KEY);
	push(a, node);
	push(a, session);
	push(a, num(a, 0, ttl_ms));
	push(a, ROUTES_CHANNEL);
	return 0;
}

int
routes_refresh_argv(struct routes_argv *a, const char *key, const char *node,
    uint64_t epoch, uint64_t ttl_ms)
{
	if (start(a, key, 1) < 0 || !routes_id_ok(node) || ttl_ms == 0 ||
	    ttl_ms > TTL_MAX)
		return MG_EINVAL;
	push(a, node);
	push(a, num(a, 0, epoch));
	push(a, num(a, 1, ttl_ms));
	return 0;
}

int
routes_release_argv(
    struct routes_argv *a, const char *key, const char *node, uint64_t epoch)
{
	if (start(a, key, 1) < 0 || !routes_id_ok(node))
		return MG_EINVAL;
	push(a, node);
	push(a, num(a, 0, epoch));
	push(a, ROUTES_CHANNEL);
	return 0;
}

int
routes_node_argv(struct routes_argv *a, const char *node, const char *addr,
    uint64_t sessions, uint64_t tunnels, uint64_t started, uint64_t ttl_ms)
{
	size_t n;

	memset(a, 0, sizeof(*a));
	if (!routes_id_ok(node) || addr == NULL || ttl_ms == 0 ||
	    ttl_ms > TTL_MAX)
		return MG_EINVAL;
	n = strlen(addr);
	if (n == 0 || n > ROUTES_NAME_MAX)
		return MG_EINVAL;
	snprintf(a->key, sizeof(a->key), ROUTES_NODE_PREFIX "%s", node);
	a->nkeys = 1;
	push(a, a->key);
	push(a, addr);
	push(a, num(a, 0, sessions)); /* load */
	push(a, num(a, 1, started));
	push(a, num(a, 2, ttl_ms));
	push(a, a->num[0]); /* sessions */
	push(a, num(a, 3, tunnels));
	return 0;
}

/* an id of an answer into out (ROUTES_ID_MAX + 1 bytes); 0 or -1 */
static int
copy_id(const redisReply *e, char *out)
{
	if (e->type != REDIS_REPLY_STRING || e->len > ROUTES_ID_MAX ||
	    memchr(e->str, '\0', e->len) != NULL)
		return -1;
	memcpy(out, e->str, e->len);
	out[e->len] = '\0';
	return 0;
}

int
routes_claim_parse(const redisReply *rep, struct route_claim *out)
{
	memset(out, 0, sizeof(*out));
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2)
		return MG_EPROTO;
	for (size_t i = 0; i < rep->elements; i++)
		if (rep->element[i] == NULL)
			return MG_EPROTO;
	if (rep->element[0]->type != REDIS_REPLY_INTEGER)
		return MG_EPROTO;
	if (rep->element[0]->integer == 1) {
		if (rep->elements != 2 ||
		    rep->element[1]->type != REDIS_REPLY_INTEGER ||
		    rep->element[1]->integer < 1)
			return MG_EPROTO;
		out->ok = 1;
		out->epoch = (uint64_t)rep->element[1]->integer;
		return 0;
	}
	if (rep->element[0]->integer != 0 || rep->elements != 4 ||
	    copy_id(rep->element[1], out->node) < 0 ||
	    copy_id(rep->element[2], out->session) < 0 ||
	    rep->element[3]->type != REDIS_REPLY_INTEGER ||
	    rep->element[3]->integer < 0) {
		memset(out, 0, sizeof(*out));
		return MG_EPROTO;
	}
	out->epoch = (uint64_t)rep->element[3]->integer;
	return 0;
}

int
routes_bool_parse(const redisReply *rep)
{
	if (rep == NULL || rep->type != REDIS_REPLY_INTEGER ||
	    (rep->integer != 0 && rep->integer != 1))
		return MG_EPROTO;
	return (int)rep->integer;
}
