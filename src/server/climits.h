/*
 * climits.h: the server's side of the cluster-wide counts
 * (cluster/counts.h): limits.tunnels and limits.visitors of a token hold
 * across the nodes of a cluster. It reports this node's tunnels and
 * public connections per identity, and gives the other nodes' figures to
 * the limit checks (proxy.c). Outside a cluster every call is a no-op
 * and the others' figures are zero.
 */
#ifndef MG_CLIMITS_H
#define MG_CLIMITS_H

#include "cluster/counts.h"

struct server;

/* climits_start: in a cluster (srv->cl set), make srv->counts. */
void climits_start(struct server *srv);

/* climits_stop: free srv->counts (before or after srv->cl). */
void climits_stop(struct server *srv);

/*
 * climits_session: identity authenticated here: when its policy limits
 * tunnels or visitors, its figures are read from the store at once, so
 * that its first registration finds them.
 */
void climits_session(struct server *srv, const char *identity);

/*
 * climits_others: the other nodes' tunnels and public connections of
 * identity into *out (zero outside a cluster), with no round trip.
 * Returns as counts_others: 1 read, 0 never read with the store down
 * (zero), MG_EAGAIN never read and a read on its way.
 */
int climits_others(struct server *srv, const char *identity,
    struct counts_fig *out);

#endif
