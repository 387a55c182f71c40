/*
 * proxydial.h: reach a host:port through an HTTP CONNECT proxy or a SOCKS5
 * proxy (RFC 1928, with the user/password method of RFC 1929), without
 * blocking. The proxy's URL: util/proxyurl.h.
 */
#ifndef MG_PROXYDIAL_H
#define MG_PROXYDIAL_H

#include <stddef.h>
#include <stdint.h>

#include "util/proxyurl.h"

struct event_base;
struct pxdial;

/* Called once from the event loop: fd >= 0 is a connected socket through
 * which host:port is reached (the caller owns it); or fd == -1 and err
 * says why ("the proxy refused: 407 Proxy Authentication Required").
 * auth is 1 when the proxy refused the credentials (retrying will not
 * help). The pxdial is freed after this returns. */
typedef void (*pxdial_done_fn)(int fd, const char *err, int auth, void *arg);

/*
 * pxdial_start: connect to the proxy u (resolved here, blocking like the
 * caller's own resolution), ask it for host:port, all within timeout_s.
 * Returns the dial, or NULL with why (then done is never called).
 */
struct pxdial *pxdial_start(struct event_base *base,
    const struct proxy_url *u, const char *host, uint16_t port,
    unsigned timeout_s, pxdial_done_fn done, void *arg, char *why,
    size_t wl);

/* pxdial_cancel: stop without calling done; NULL is fine. */
void pxdial_cancel(struct pxdial *d);

#endif
