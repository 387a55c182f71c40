/* net.h: address parsing and socket options (no libevent types). */
#ifndef MG_NET_H
#define MG_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NET_ADDRSTR_MAX 64 /* "[v6]:port" fits */

/*
 * net_split_hostport: split "host:port", "[v6]:port", ":port" or "port"
 * into host (empty when absent) and port. 0, or MG_EINVAL with a reason in
 * err (static text) for a missing or bad port or an over-long host.
 */
int net_split_hostport(const char *s, char *host, size_t hostcap,
    uint16_t *port, const char **err);

/* net_addr_str: "a.b.c.d:port" or "[v6]:port" into buf. */
const char *net_addr_str(const struct sockaddr *sa, char *buf, size_t cap);

/* net_sock_tune: TCP_NODELAY and keepalive on a TCP socket. */
void net_sock_tune(int fd);

/* net_listen_tcp: a non-blocking listening socket on host:port (host
 * empty = all addresses, IPv6 with IPv4 mapped where available). Returns
 * the fd, or -1 with errno set. */
int net_listen_tcp(const char *host, uint16_t port, int backlog);

/* net_bind_udp: a non-blocking UDP socket bound to host:port (host empty =
 * all addresses, dual stack where available). The fd, or -1 with errno. */
int net_bind_udp(const char *host, uint16_t port);

/* net_local_port: the port fd is bound to, or 0. */
uint16_t net_local_port(int fd);

/* net_is_wildcard: host is "", "0.0.0.0", "::" or "*". */
int net_is_wildcard(const char *host);

/* net_set_nonblock: O_NONBLOCK and FD_CLOEXEC on fd. */
int net_set_nonblock(int fd);

#endif
