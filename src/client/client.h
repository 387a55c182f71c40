/* client.h: `mgrok tcp` / `mgrok client`: the session to the server,
 * registration, reconnects, and the data streams to local services. */
#ifndef MG_CLIENT_H
#define MG_CLIENT_H

#include <stdint.h>

struct client;
struct client_conf;
struct event_base;

/*
 * client_new: prepare a client for cf (which must outlive it) and start
 * connecting. Installs SIGINT/SIGTERM handlers (Goodbye, then exit).
 * Returns NULL after printing why. Free with client_free.
 */
struct client *client_new(struct event_base *base,
    const struct client_conf *cf);

/* client_exit_code: what the process should exit with once the loop ends:
 * 0 after a signal, 1 after giving up or a fatal error. */
int client_exit_code(const struct client *c);

/* client_print_summary: the exit summary to stderr. */
void client_print_summary(const struct client *c);

void client_free(struct client *c);

/* client_id_load: the client id from $XDG_STATE_HOME/mgrok/client_id
 * (or ~/.local/state/...), created with random bytes when missing. 0, or
 * MG_EIO when it could be neither read nor written (id is then random). */
int client_id_load(uint8_t id[16]);

#endif
