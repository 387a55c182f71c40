/*
 * admin.h: the server's admin listener (--admin-addr): /metrics, /healthz,
 * /readyz, the JSON API under /api/v1/ (docs/api.md), its event stream and
 * the dashboard, on src/web. It reads the server's objects and figures
 * (smet.h); what it changes (kick a session, reload) goes through the
 * callbacks server.c gives it.
 */
#ifndef MG_ADMIN_H
#define MG_ADMIN_H

#include <stddef.h>
#include <stdint.h>

struct server;

struct admin_ops {
	/* end session id with Goodbye naming why; 0, or -1 when there is no
	 * such session */
	int (*kick)(struct server *srv, uint64_t id, const char *why);
	/* reload the configuration; 0, or -1 with a message in err */
	int (*reload)(struct server *srv, char *err, size_t errcap);
};

/* admin_start: listen on srv->cf->admin_addr (nothing when it is ""). 0,
 * or -1 with the reason in err (a busy address, missing auth off
 * loopback, TLS files). */
int admin_start(struct server *srv, const struct admin_ops *ops, char *err,
    size_t errcap);
/* admin_stop: close the listener, its connections and event streams */
void admin_stop(struct server *srv);
/* the address it listens on, or NULL */
const char *admin_addr(const struct server *srv);

#endif
