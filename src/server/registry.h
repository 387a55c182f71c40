/* registry.h: the one table of the server's tunnels (struct proxy): every
 * tunnel is in it from registration to its end, found by id, by public
 * port, by host name or by lease owner. Nothing outside the registry and
 * the tunnel's own lists keeps a pointer to a tunnel past a callback:
 * holders keep its id and ask registry_get, which answers NULL once the
 * tunnel is gone (see docs/internals/server.md). */
#ifndef MG_REGISTRY_H
#define MG_REGISTRY_H

#include <stdint.h>
#include <sys/queue.h>

#include "util/idmap.h"
#include "util/strmap.h"

struct proxy;
LIST_HEAD(proxy_list, proxy);

struct registry {
	struct proxy_list all;
	unsigned count;
	uint32_t last_id;
	struct idmap by_id;
	struct idmap by_port;   /* TCP ports as port + 1, UDP as 65537 + port */
	struct strmap by_host;  /* HTTP, HTTPS and TLS tunnels */
	struct strmap by_owner; /* lease owner key -> struct lease_owner */
};

/* registry_init / registry_free: the tables (the tunnels are the
 * caller's; free them all before registry_free). */
void registry_init(struct registry *r);
void registry_free(struct registry *r);

/* registry_add: give px an id and index it by its port or host and its
 * owner (px->type, port, host, identity and client_id must be set). */
void registry_add(struct registry *r, struct proxy *px);
/* registry_remove: the detach step: px is no longer found by anything;
 * ids held elsewhere now answer NULL. */
void registry_remove(struct registry *r, struct proxy *px);

/* registry_get: the tunnel with this id, or NULL when it ended. */
struct proxy *registry_get(const struct registry *r, uint32_t id);
/* registry_by_port: the TCP (udp 0) or UDP tunnel on port, or NULL. */
struct proxy *registry_by_port(const struct registry *r, int udp,
    uint16_t port);
/* registry_by_host: the HTTP, HTTPS or TLS tunnel of host, or NULL. */
struct proxy *registry_by_host(const struct registry *r, const char *host);
/* registry_owned: the first tunnel leased to (identity, client_id), the
 * next through px->owner_link; NULL when there is none. */
struct proxy *registry_owned(const struct registry *r, const char *identity,
    const uint8_t *client_id);

#endif
