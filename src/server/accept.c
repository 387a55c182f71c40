/* accept.c: at the file descriptor limit, accept(2) fails with EMFILE and
 * the connection stays in the backlog, so a listener retrying at once spins
 * (a core at 100 % and a log line per try). Like HAProxy and nginx, the
 * server then pauses all its listeners for a moment, says once in a while
 * what the limit is and how to raise it, counts it, and goes on serving
 * the connections it has; the backlog waits. */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>

#include "server/accept.h"
#include "server/server_int.h"
#include "util/log.h"
#include "util/mtime.h"

#define ACCEPT_PAUSE_MS 250
#define ACCEPT_LOG_EVERY_MS 10000

static void
set_all(struct server *srv, int enable)
{
	struct proxy *px;
	struct evconnlistener *ls[3] = { srv->lst, srv->http_lst,
		srv->https_lst };

	for (int i = 0; i < 3; i++) {
		if (ls[i] == NULL)
			continue;
		if (enable)
			evconnlistener_enable(ls[i]);
		else
			evconnlistener_disable(ls[i]);
	}
	LIST_FOREACH(px, &srv->reg.all, link) {
		if (px->lst == NULL)
			continue;
		if (enable)
			evconnlistener_enable(px->lst);
		else
			evconnlistener_disable(px->lst);
	}
}

static void
accept_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	srv->accept_paused = 0;
	if (!srv->shutting_down)
		set_all(srv, 1);
}

static void
accept_failed(struct server *srv, int err)
{
	uint64_t now = mtime_ms();
	struct timeval tv = { 0, ACCEPT_PAUSE_MS * 1000 };

	if (err != EMFILE && err != ENFILE && err != ENOBUFS &&
	    err != ENOMEM) {
		/* a listener socket that broke: say so, it keeps trying */
		log_warn("accept: %s", strerror(err));
		return;
	}
	smet_fd_limit(srv);
	if (srv->accept_log_ms == 0 ||
	    now - srv->accept_log_ms >= ACCEPT_LOG_EVERY_MS) {
		struct rlimit rl;
		char lim[32] = "unknown";

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
			snprintf(lim, sizeof(lim), "%llu",
			    (unsigned long long)rl.rlim_cur);
		log_warn("accept: %s (%s; the process may open %s files): "
			 "new connections wait %d ms at a time, open ones "
			 "are served; raise the limit with `ulimit -n` or "
			 "LimitNOFILE= in the service unit (%llu times so far)",
		    strerror(err), err == ENFILE ? "the system's file table "
		    "is full" : "this process is at its limit", lim,
		    ACCEPT_PAUSE_MS,
		    (unsigned long long)smet_fd_limits(srv));
		srv->accept_log_ms = now;
	}
	if (srv->accept_paused)
		return;
	srv->accept_paused = 1;
	set_all(srv, 0);
	if (srv->accept_resume == NULL)
		srv->accept_resume = evtimer_new(srv->base, accept_on_resume,
		    srv);
	evtimer_add(srv->accept_resume, &tv);
}

static void
on_error_srv(struct evconnlistener *l, void *arg)
{
	accept_failed(arg, EVUTIL_SOCKET_ERROR());
}

static void
on_error_px(struct evconnlistener *l, void *arg)
{
	struct proxy *px = arg;

	accept_failed(px->srv, EVUTIL_SOCKET_ERROR());
}

struct evconnlistener *
accept_listen(struct server *srv, int fd, evconnlistener_cb cb, void *arg,
    int arg_is_srv)
{
	struct evconnlistener *l = evconnlistener_new(srv->base, cb, arg,
	    LEV_OPT_CLOSE_ON_FREE, -1, fd);

	if (l == NULL) {
		evutil_closesocket(fd);
		return NULL;
	}
	evconnlistener_set_error_cb(l, arg_is_srv ? on_error_srv :
	    on_error_px);
	if (srv->accept_paused || srv->shutting_down)
		evconnlistener_disable(l);
	return l;
}

void
accept_stop(struct server *srv)
{
	if (srv->accept_resume) {
		event_free(srv->accept_resume);
		srv->accept_resume = NULL;
	}
	srv->accept_paused = 0;
}
