/* registry.c: the server's tunnel table and its indexes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/registry.h"
#include "server/server_int.h"
#include "util/xmalloc.h"

/* Every tunnel of one lease owner, (identity, client_id). */
struct lease_owner {
	struct proxy_list proxies;
	unsigned n;
};

#define OWNER_KEY_MAX (SERVER_ID_MAX + 2 * CTRL_ID_LEN + 2)

static const char *
owner_key(const char *identity, const uint8_t *client_id, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(identity);

	memcpy(buf, identity, n);
	buf[n++] = '/';
	for (int i = 0; i < CTRL_ID_LEN; i++) {
		buf[n++] = hex[client_id[i] >> 4];
		buf[n++] = hex[client_id[i] & 15];
	}
	buf[n] = '\0';
	return buf;
}

static int
has_host(const struct proxy *px)
{
	return px->type == PROXY_HTTP || px->type == PROXY_HTTPS ||
	    px->type == PROXY_TLS;
}

static uint32_t
port_key(int udp, uint16_t port)
{
	return (udp ? 65537u : 1u) + port;
}

void
registry_init(struct registry *r)
{
	memset(r, 0, sizeof(*r));
	LIST_INIT(&r->all);
	idmap_init(&r->by_id);
	idmap_init(&r->by_port);
	strmap_init(&r->by_host);
	strmap_init(&r->by_owner);
}

void
registry_free(struct registry *r)
{
	idmap_free(&r->by_id);
	idmap_free(&r->by_port);
	strmap_free(&r->by_host);
	/* owners are freed as their last tunnel leaves; none are left */
	strmap_free(&r->by_owner);
}

void
registry_add(struct registry *r, struct proxy *px)
{
	char key[OWNER_KEY_MAX];
	struct lease_owner *o;

	/* ids are not reused while a holder may still ask for an old one:
	 * 2^32 registrations wrap only after the old ids are long gone, and
	 * a live one is skipped */
	do {
		if (++r->last_id == UINT32_MAX)
			r->last_id = 1;
	} while (idmap_get(&r->by_id, r->last_id) != NULL);
	px->id = r->last_id;
	idmap_put(&r->by_id, px->id, px);
	if (px->group_id != 0 && !px->is_group)
		; /* a group member: the group holds the public side */
	else if (has_host(px))
		strmap_put(&r->by_host, px->host, px);
	else
		idmap_put(&r->by_port, port_key(px->type == PROXY_UDP,
		    px->port), px);
	owner_key(px->identity, px->client_id, key);
	if ((o = strmap_get(&r->by_owner, key)) == NULL) {
		o = xcalloc(1, sizeof(*o));
		LIST_INIT(&o->proxies);
		strmap_put(&r->by_owner, key, o);
	}
	LIST_INSERT_HEAD(&o->proxies, px, owner_link);
	o->n++;
	LIST_INSERT_HEAD(&r->all, px, link);
	r->count++;
}

void
registry_remove(struct registry *r, struct proxy *px)
{
	char key[OWNER_KEY_MAX];
	struct lease_owner *o;

	if (px->id == 0)
		return;
	idmap_del(&r->by_id, px->id);
	if (px->group_id != 0 && !px->is_group)
		;
	else if (has_host(px))
		strmap_del(&r->by_host, px->host);
	else
		idmap_del(&r->by_port, port_key(px->type == PROXY_UDP,
		    px->port));
	LIST_REMOVE(px, owner_link);
	owner_key(px->identity, px->client_id, key);
	if ((o = strmap_get(&r->by_owner, key)) != NULL && --o->n == 0) {
		strmap_del(&r->by_owner, key);
		free(o);
	}
	LIST_REMOVE(px, link);
	r->count--;
	px->id = 0;
}

struct proxy *
registry_get(const struct registry *r, uint32_t id)
{
	return id ? idmap_get(&r->by_id, id) : NULL;
}

struct proxy *
registry_by_port(const struct registry *r, int udp, uint16_t port)
{
	return idmap_get(&r->by_port, port_key(udp, port));
}

struct proxy *
registry_by_host(const struct registry *r, const char *host)
{
	return strmap_get(&r->by_host, host);
}

struct proxy *
registry_owned(const struct registry *r, const char *identity,
    const uint8_t *client_id)
{
	char key[OWNER_KEY_MAX];
	struct lease_owner *o = strmap_get(&r->by_owner,
	    owner_key(identity, client_id, key));

	return o ? LIST_FIRST(&o->proxies) : NULL;
}
