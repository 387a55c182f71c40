/* dial.h: connect to the first address of a list that answers, without
 * blocking (one attempt at a time, each bounded in time). */
#ifndef MG_DIAL_H
#define MG_DIAL_H

struct addrinfo;
struct event_base;
struct sockaddr;
struct dial;

/* Called once from the event loop: fd >= 0 is connected, non-blocking and
 * tuned (TCP_NODELAY, keepalive) and the caller owns it, sa is the address
 * it reached; or fd == -1 and err says why the last attempt failed. The
 * dial is freed after this returns. */
typedef void (*dial_done_fn)(int fd, int err, const struct sockaddr *sa,
    void *arg);

/* Skip an address when this returns 0 (an allow-list, say). */
typedef int (*dial_filter_fn)(const struct sockaddr *sa, void *arg);

/*
 * dial_start: try the addresses of ai in order (ai must outlive the dial);
 * each attempt gets timeout_s. filter may be NULL. Returns the dial, or
 * NULL with errno set (EACCES when filter refused every address) when no
 * attempt could start; then done is never called.
 */
struct dial *dial_start(struct event_base *base, const struct addrinfo *ai,
    int socktype, unsigned timeout_s, dial_filter_fn filter,
    dial_done_fn done, void *arg);

/* dial_cancel: stop without calling done; NULL is fine. */
void dial_cancel(struct dial *d);

#endif
