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

/*
 * climits_start: in a cluster (srv->cl set), make srv->counts. read(srv,
 * identity) is called when the first read of identity's figures ends,
 * made known or failed (the registrations that waited for it go on:
 * climits_wait); it may be NULL.
 */
void climits_start(struct server *srv,
    void (*read)(void *srv, const char *identity));

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

/*
 * climits_wait: whether a registration of identity must wait for the
 * other nodes' count of its tunnels: 1 when its policy limits tunnels,
 * the count was never read and a read is on its way (sent now if need
 * be); then the read hook given to climits_start comes for identity
 * when it ends (within the store's command timeout). 0: check now (the
 * count is known, there is no limit, or no read can go out: the check
 * answers as climits_others says). 0 outside a cluster.
 */
int climits_wait(struct server *srv, const char *identity);

#endif
