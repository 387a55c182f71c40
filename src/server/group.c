/* group.c: see group.h. */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "server/group.h"
#include "server/lb.h"
#include "server/server_int.h"
#include "util/crypto.h"
#include "util/log.h"
#include "util/mtime.h"

int
group_options(const struct ctrl_register *reg, int *st, char *hdr,
    uint8_t *code, char *why, size_t wl)
{
	enum lb_strategy s;
	const char *err;
	int http = reg->proxy_type == PROXY_HTTP ||
	    reg->proxy_type == PROXY_HTTPS;

	*code = CODE_NOT_ALLOWED;
	if (reg->group.len == 0 || reg->group.len > GROUP_NAME_MAX) {
		snprintf(why, wl, "a group name is 1 to %d bytes",
		    GROUP_NAME_MAX);
		return -1;
	}
	for (size_t i = 0; i < reg->group.len; i++) {
		int c = reg->group.p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		    c == '-')) {
			snprintf(why, wl, "a group name is letters, digits, "
			    "'.', '_' and '-' (byte %zu is not)", i);
			return -1;
		}
	}
	if (reg->group_key.p == NULL || reg->group_key.len == 0 ||
	    reg->group_key.len > 255) {
		snprintf(why, wl, "group %.*s: a group needs a key of 1 to 255 "
		    "bytes (--group-key)", (int)reg->group.len,
		    (const char *)reg->group.p);
		return -1;
	}
	if (lb_parse_strategy(reg->group_strategy.p ?
	    (const char *)reg->group_strategy.p : "", reg->group_strategy.p ?
	    reg->group_strategy.len : 0, &s, hdr, &err) < 0) {
		*code = CODE_UNSUPPORTED;
		snprintf(why, wl, "group %.*s: strategy: %s",
		    (int)reg->group.len, (const char *)reg->group.p, err);
		return -1;
	}
	if ((s == LB_HASH_HEADER && !http) || (s == LB_HASH_HOST && !http &&
	    reg->proxy_type != PROXY_TLS)) {
		*code = CODE_UNSUPPORTED;
		snprintf(why, wl, "group %.*s: strategy %s is for http%s "
		    "groups", (int)reg->group.len, (const char *)reg->group.p,
		    s == LB_HASH_HEADER ? "hash:header" : "hash:host",
		    s == LB_HASH_HOST ? " and tls" : "");
		return -1;
	}
	if (reg->group_weight > LB_WEIGHT_MAX) {
		*code = CODE_UNSUPPORTED;
		snprintf(why, wl, "a member's weight is 1 to %d",
		    LB_WEIGHT_MAX);
		return -1;
	}
	*st = (int)s;
	return 0;
}

struct proxy *
group_find(struct server *srv, const char *name, size_t len, uint8_t type)
{
	struct proxy *g;

	LIST_FOREACH(g, &srv->reg.all, link)
		if (g->is_group && g->type == type && strlen(g->name) == len &&
		    memcmp(g->name, name, len) == 0)
			return g;
	return NULL;
}

int
group_join_check(const struct proxy *g, const struct ctrl_register *reg,
    const char *host, uint8_t *code, char *why, size_t wl)
{
	uint8_t h[CRYPTO_SHA256_LEN];
	enum lb_strategy s;
	char hdr[LB_HEADER_MAX], a[100], b[100];
	const char *err;

	crypto_sha256(reg->group_key.p, reg->group_key.len, h);
	*code = CODE_NOT_ALLOWED;
	if (!crypto_memeq(h, g->group_key, sizeof(h))) {
		snprintf(why, wl, "wrong key for group %s", g->name);
		return -1;
	}
	if (reg->group_strategy.p != NULL && lb_parse_strategy((const char *)
	    reg->group_strategy.p, reg->group_strategy.len, &s, hdr,
	    &err) == 0 && (s != g->lb || (s == LB_HASH_HEADER &&
	    strcmp(hdr, g->lb_header) != 0))) {
		*code = CODE_IN_USE;
		snprintf(why, wl, "group %s uses strategy %s, not %s",
		    g->name, lb_strategy_str(g->lb, g->lb_header, a, sizeof(a)),
		    lb_strategy_str(s, hdr, b, sizeof(b)));
		return -1;
	}
	if (!proxy_is_http(g->type) && reg->remote_port != 0 &&
	    reg->remote_port != g->port) {
		*code = CODE_IN_USE;
		snprintf(why, wl, "group %s is on port %u, not %u", g->name,
		    g->port, reg->remote_port);
		return -1;
	}
	if (proxy_is_http(g->type) && host[0] && strcmp(host, g->host) != 0) {
		*code = CODE_IN_USE;
		snprintf(why, wl, "group %s serves %s, not %s", g->name,
		    g->host, host);
		return -1;
	}
	return 0;
}

void
group_init(struct proxy *g, const struct ctrl_register *reg, int st,
    const char *hdr)
{
	g->is_group = 1;
	LIST_INIT(&g->members);
	snprintf(g->name, sizeof(g->name), "%.*s", (int)reg->group.len,
	    (const char *)reg->group.p);
	crypto_sha256(reg->group_key.p, reg->group_key.len, g->group_key);
	g->lb = (enum lb_strategy)st;
	snprintf(g->lb_header, sizeof(g->lb_header), "%s", hdr);
}

void
group_orphan_members(struct proxy *g)
{
	struct proxy *m;

	while ((m = LIST_FIRST(&g->members)) != NULL) {
		LIST_REMOVE(m, member_link);
		m->member_link.le_prev = NULL;
	}
	g->nmembers = 0;
}

void
group_add(struct proxy *g, struct proxy *m, unsigned weight)
{
	if (m->group_id == g->id)
		return;
	m->group_id = g->id;
	m->weight = weight ? weight : 1;
	m->lb_current = 0;
	LIST_INSERT_HEAD(&g->members, m, member_link);
	g->nmembers++;
}

struct proxy *
group_remove(struct proxy *m)
{
	struct proxy *g;

	if (m->group_id == 0 || m->member_link.le_prev == NULL)
		return NULL; /* none, or its group ended first */
	LIST_REMOVE(m, member_link);
	m->member_link.le_prev = NULL;
	g = registry_get(&m->srv->reg, m->group_id);
	m->group_id = 0;
	if (g == NULL)
		return NULL;
	g->nmembers--;
	return g->nmembers == 0 ? g : NULL;
}

int
group_usable(const struct proxy *m, uint64_t now_ms)
{
	return m->sess != NULL && m->health >= 0 && now_ms >= m->ejected_until_ms;
}

unsigned
group_usable_count(const struct proxy *g)
{
	const struct proxy *m;
	uint64_t now = mtime_ms();
	unsigned n = 0;

	LIST_FOREACH(m, &g->members, member_link)
		n += group_usable(m, now);
	return n;
}

#define PICK_MAX 256 /* members looked at per pick */

struct proxy *
group_pick(struct proxy *g, const struct sockaddr *sa, const char *host,
    const char *hval, size_t hlen, uint32_t exclude)
{
	struct lb_member lm[PICK_MAX];
	struct proxy *px[PICK_MAX], *m;
	uint8_t key[16];
	const void *k = NULL;
	size_t n = 0, kl = 0;
	uint64_t now = mtime_ms();
	int i;

	LIST_FOREACH(m, &g->members, member_link) {
		char id[SERVER_ID_MAX + CTRL_NAME_MAX + 2];
		int il;
		if (n == PICK_MAX)
			break;
		px[n] = m;
		il = snprintf(id, sizeof(id), "%s/%s", m->identity, m->name);
		lm[n].ident = lb_hash(id, (size_t)il, lb_hash(m->client_id,
		    CTRL_ID_LEN, 0));
		lm[n].weight = m->weight ? m->weight : 1;
		lm[n].current = m->lb_current;
		lm[n].active = (unsigned)smet_px_active(m);
		lm[n].usable = m->id != exclude && group_usable(m, now);
		n++;
	}
	switch (g->lb) {
	case LB_HASH_SOURCE:
		if (sa && sa->sa_family == AF_INET) {
			memcpy(key, &((const struct sockaddr_in *)(const void *)
			    sa)->sin_addr, 4);
			k = key;
			kl = 4;
		} else if (sa && sa->sa_family == AF_INET6) {
			const uint8_t *a = ((const struct sockaddr_in6 *)
			    (const void *)sa)->sin6_addr.s6_addr;
			static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0,
				0, 0, 0, 0, 0xff, 0xff };
			int v4 = memcmp(a, mapped, 12) == 0;
			memcpy(key, v4 ? a + 12 : a, v4 ? 4 : 16);
			k = key;
			kl = v4 ? 4 : 16;
		}
		break;
	case LB_HASH_HOST:
		if (host && host[0]) {
			k = host;
			kl = strlen(host);
		}
		break;
	case LB_HASH_HEADER:
		if (hval) {
			k = hval;
			kl = hlen;
		}
		break;
	default:
		break;
	}
	i = lb_pick(g->lb, lm, n, k, kl);
	for (size_t j = 0; j < n; j++)
		px[j]->lb_current = lm[j].current;
	return i < 0 ? NULL : px[i];
}

void
group_result(struct proxy *m, int refused)
{
	char n[LOG_ESC_MAX];

	if (!refused) {
		m->fails = 0;
		m->eject_s = 0;
		return;
	}
	if (++m->fails < GROUP_FAILS)
		return;
	m->fails = 0;
	m->eject_s = m->eject_s == 0 ? GROUP_EJECT_MIN_S : m->eject_s * 2;
	if (m->eject_s > GROUP_EJECT_MAX_S)
		m->eject_s = GROUP_EJECT_MAX_S;
	m->ejected_until_ms = mtime_ms() + (uint64_t)m->eject_s * 1000;
	smet_member_ejected(m);
	log_warn("group member \"%s\" (%s): %d streams refused in a row: "
	    "taken out for %u s", log_esc(m->name, strlen(m->name), n,
	    sizeof(n)), m->identity, GROUP_FAILS, m->eject_s);
}
