/* sproxy.h: the server side of the stream proxy (docs/protocol.md section 6). */
#ifndef MG_SERVER_SPROXY_H
#define MG_SERVER_SPROXY_H

struct server;
struct sockaddr;
struct ssl_st;

/* sproxy_accept: take over a TLS connection (handshake done, ALPN
 * mgrok-stream/1): read the header, check, dial, relay; logs and closes
 * on any failure. */
void sproxy_accept(struct server *srv, int fd, struct ssl_st *ssl,
    const struct sockaddr *peer);

/* sproxy_stop: end the connections still being set up (the server is
 * going away). */
void sproxy_stop(struct server *srv);

#endif
