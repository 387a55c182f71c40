/* dial.c: see dial.h. */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "relay/dial.h"
#include "util/loop.h"
#include "util/net.h"
#include "util/xmalloc.h"

struct dial {
	struct event_base *base;
	const struct addrinfo *cur;
	struct event *ev;
	dial_filter_fn filter;
	dial_done_fn done;
	void *arg;
	unsigned timeout_s;
	int socktype;
	int fd;
	int err;
};

static void dial_on_event(evutil_socket_t fd, short what, void *arg);

/* Start the next attempt; 0, or -1 when no address is left. */
static int
dial_next(struct dial *d)
{
	struct timeval tv = { (time_t)d->timeout_s, 0 };

	for (; d->cur != NULL; d->cur = d->cur->ai_next) {
		int fd;
		if (d->filter && !d->filter(d->cur->ai_addr, d->arg)) {
			if (d->err == 0)
				d->err = EACCES;
			continue;
		}
		fd = socket(d->cur->ai_family, d->socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0) {
			d->err = errno;
			continue;
		}
		if (connect(fd, d->cur->ai_addr, d->cur->ai_addrlen) == 0 ||
		    errno == EINPROGRESS) {
			d->fd = fd;
			if (d->ev)
				event_free(d->ev);
			d->ev = event_new(d->base, fd, EV_WRITE, dial_on_event,
			    d);
			event_add(d->ev, &tv);
			return 0;
		}
		d->err = errno;
		close(fd);
	}
	return -1;
}

static void
dial_finish(struct dial *d, int fd, int err, const struct sockaddr *sa)
{
	dial_done_fn done = d->done;
	void *arg = d->arg;

	if (d->ev)
		event_free(d->ev);
	free(d);
	done(fd, err, sa, arg);
}

static void
dial_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct dial *d = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	loop_note_io();
	if (what & EV_TIMEOUT)
		err = ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0) {
		net_sock_tune(d->fd);
		dial_finish(d, d->fd, 0, d->cur->ai_addr);
		return;
	}
	close(d->fd);
	d->fd = -1;
	d->err = err;
	d->cur = d->cur->ai_next;
	if (dial_next(d) < 0)
		dial_finish(d, -1, d->err, NULL);
}

struct dial *
dial_start(struct event_base *base, const struct addrinfo *ai, int socktype,
    unsigned timeout_s, dial_filter_fn filter, dial_done_fn done, void *arg)
{
	struct dial *d = xcalloc(1, sizeof(*d));

	d->base = base;
	d->cur = ai;
	d->socktype = socktype;
	d->timeout_s = timeout_s;
	d->filter = filter;
	d->done = done;
	d->arg = arg;
	d->fd = -1;
	if (dial_next(d) < 0) {
		int err = d->err ? d->err : ECONNREFUSED;
		free(d);
		errno = err;
		return NULL;
	}
	return d;
}

void
dial_cancel(struct dial *d)
{
	if (d == NULL)
		return;
	if (d->ev)
		event_free(d->ev);
	if (d->fd >= 0)
		close(d->fd);
	free(d);
}
