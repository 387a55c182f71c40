/*
 * fwdudp.h: the UDP ports another node of the cluster owns, on a node
 * that forwards them (docs/internals/cluster.md, "Visitors on a node that
 * does not own the route"). forward.c says which ports (its UDP hooks'
 * port); for each this node binds the port, keeps a flow per visitor
 * source as udp.c does (at most udp_max_flows a port, ended after
 * udp_idle_s without a datagram), and carries each flow on its own stream
 * to the owner (forward_open), datagrams as u16 length | payload both
 * ways; the owner's udp.c takes the stream as a flow of its tunnel
 * (udp_link_flow). The owner's policy, limits and figures apply there;
 * this node counts the forwarded bytes and its own drops.
 */
#ifndef MG_FWDUDP_H
#define MG_FWDUDP_H

#include <stdint.h>

struct server;

/* datagrams a flow holds while its stream to the owner is being opened
 * (more are dropped), and their bytes at most */
#define FWDUDP_QUEUE_MAX 64
#define FWDUDP_QUEUE_BYTES (256 * 1024)
/* a flow that could not be forwarded (no owner, no link, refused by the
 * owner) drops its datagrams this long before it asks again */
#define FWDUDP_RETRY_MS 1000

/*
 * fwdudp_port: the UDP hooks' port (forward.h): another node owns UDP
 * port `port` of srv's range (open 1: bind it on the public address and
 * forward its flows; a port that cannot be bound now is tried again at
 * each sweep of its flows) or no longer does (0: every flow of the port
 * ends, the socket closes). The module's state (srv->fwdudp) lives while
 * there is a port; forward_stop closes them all.
 */
void fwdudp_port(struct server *srv, uint16_t port, int open);

#endif
