/* climits.c: see climits.h. */
#include "server/climits.h"

#include <string.h>

#include "cluster/counts.h"
#include "conf/policy.h"
#include "server/cluster.h"
#include "server/server_int.h"

/* every tick: this node's figures, as identity_tunnels() and
 * proxy_visitors_ok() count them (every tunnel of the identity, leases
 * included; the public connections of each) */
static void
climits_collect(void *arg, struct counts *c)
{
	struct server *srv = arg;
	const struct proxy *px;

	LIST_FOREACH(px, &srv->reg.all, link) {
		int64_t v = smet_px_active(px);
		counts_local(c, px->identity, 1, v > 0 ? (uint64_t)v : 0);
	}
}

void
climits_start(struct server *srv,
    void (*read)(void *srv, const char *identity))
{
	struct counts_hooks h = { climits_collect, srv, read };

	if (srv->cl == NULL || srv->counts != NULL)
		return;
	srv->counts = counts_new(srv->base, cluster_store(srv->cl),
	    cluster_node(srv->cl), CLUSTER_HEARTBEAT_MS, CLUSTER_TTL_MS, &h);
}

void
climits_stop(struct server *srv)
{
	counts_free(srv->counts);
	srv->counts = NULL;
}

void
climits_session(struct server *srv, const char *identity)
{
	const struct conf_policy *pol;

	if (srv->counts == NULL)
		return;
	pol = proxy_policy(srv, identity);
	if (pol != NULL && (pol->limits.tunnels || pol->limits.visitors))
		counts_track(srv->counts, identity);
}

int
climits_others(struct server *srv, const char *identity,
    struct counts_fig *out)
{
	if (srv->counts == NULL) {
		memset(out, 0, sizeof(*out));
		return 0;
	}
	return counts_others(srv->counts, identity, out);
}

int
climits_wait(struct server *srv, const char *identity)
{
	const struct conf_policy *pol;

	if (srv->counts == NULL)
		return 0;
	pol = proxy_policy(srv, identity);
	if (pol == NULL || pol->limits.tunnels == 0)
		return 0;
	return counts_reading(srv->counts, identity);
}
