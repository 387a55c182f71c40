/* accept.h: the server's listeners, and what they do when accept(2) fails
 * for want of file descriptors (see accept.c). */
#ifndef MG_ACCEPT_H
#define MG_ACCEPT_H

#include <event2/listener.h>

struct server;

/*
 * accept_listen: a listener on fd (non-blocking, listening; the listener
 * owns it) calling cb with arg. At EMFILE or ENFILE every listener of the
 * server pauses for a moment instead of retrying in a loop. arg_is_srv
 * says whether arg is the server itself or a tunnel (struct proxy). NULL
 * (fd closed) when libevent cannot make it. Free with evconnlistener_free.
 */
struct evconnlistener *accept_listen(struct server *srv, int fd,
    evconnlistener_cb cb, void *arg, int arg_is_srv);

/* accept_stop: cancel a pause under way (the server is going away). */
void accept_stop(struct server *srv);

#endif
