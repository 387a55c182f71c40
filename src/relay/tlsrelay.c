/* tlsrelay.c: see tlsrelay.h. One pump function moves everything it can in
 * both directions and then arms exactly the events that can unblock it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "relay/tlsrelay.h"
#include "tls/tls.h"
#include "util/loop.h"
#include "util/xmalloc.h"

#define TLSRELAY_CHUNK 65536

struct tlsrelay {
	struct tlsrelay *next, *prev;   /* in set */
	struct tlsrelay_set *set;
	struct event_base *base;
	SSL *ssl;
	int tfd, sfd;
	struct event *t_rev, *t_wev, *s_rev, *s_wev;
	struct evbuffer *t2s, *s2t;
	size_t max;
	uint64_t n_t2s, n_s2t;
	tlsrelay_done_fn done;
	void *arg;
	unsigned t_eof : 1, s_eof : 1;   /* EOF read from that side */
	unsigned s_shut : 1, t_shut : 1; /* we ended writing to that side */
	unsigned t_again : 1;            /* TLS read said EAGAIN */
	unsigned t_rww : 1, t_wwr : 1;   /* read wants write, write wants read */
	unsigned busy : 1, failed : 1;
	char why[256];
};

static void tlsrelay_on_event(evutil_socket_t fd, short what, void *arg);

static void
tlsrelay_destroy(struct tlsrelay *r, int notify)
{
	if (r->set) {
		if (r->prev)
			r->prev->next = r->next;
		else
			r->set->head = r->next;
		if (r->next)
			r->next->prev = r->prev;
	}
	event_free(r->t_rev);
	event_free(r->t_wev);
	event_free(r->s_rev);
	event_free(r->s_wev);
	evbuffer_free(r->t2s);
	evbuffer_free(r->s2t);
	if (!r->failed)
		tls_shutdown(r->ssl);
	SSL_free(r->ssl);
	close(r->tfd);
	close(r->sfd);
	if (notify && r->done)
		r->done(r->arg, r->n_t2s, r->n_s2t, r->why);
	free(r);
}

static void
tlsrelay_fail(struct tlsrelay *r, const char *side, const char *what)
{
	if (!r->failed)
		snprintf(r->why, sizeof(r->why), "%s: %s", side, what);
	r->failed = 1;
}

/* One round; returns 1 if anything moved. */
static int
tlsrelay_round(struct tlsrelay *r)
{
	int moved = 0;

	/* TLS -> t2s */
	r->t_again = 0;
	while (!r->t_eof && !r->failed && evbuffer_get_length(r->t2s) < r->max) {
		struct evbuffer_iovec v[2];
		struct iovec iov[2];
		int nv = evbuffer_reserve_space(r->t2s, TLSRELAY_CHUNK, v, 2);
		int want_write = 0;
		ssize_t n;
		for (int i = 0; i < nv; i++) {
			iov[i].iov_base = v[i].iov_base;
			iov[i].iov_len = v[i].iov_len;
		}
		n = tls_readv(r->ssl, iov, nv, &want_write);
		if (n <= 0) {
			evbuffer_commit_space(r->t2s, NULL, 0);
			if (n == 0)
				r->t_eof = 1;
			else if (errno == EAGAIN) {
				r->t_again = 1;
				r->t_rww = want_write;
			} else
				tlsrelay_fail(r, "TLS side", tls_why(r->ssl));
			break;
		}
		for (int i = 0; i < nv; i++) {
			size_t k = (size_t)n < v[i].iov_len ? (size_t)n :
			    v[i].iov_len;
			v[i].iov_len = k;
			n -= (ssize_t)k;
		}
		evbuffer_commit_space(r->t2s, v, nv);
		moved = 1;
	}
	/* t2s -> socket */
	if (!r->failed && evbuffer_get_length(r->t2s) > 0) {
		int n = evbuffer_write(r->t2s, r->sfd);
		if (n > 0) {
			r->n_t2s += (uint64_t)n;
			moved = 1;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			tlsrelay_fail(r, "destination", strerror(errno));
		}
	}
	if (r->t_eof && !r->s_shut && evbuffer_get_length(r->t2s) == 0) {
		shutdown(r->sfd, SHUT_WR);
		r->s_shut = 1;
		moved = 1;
	}
	/* socket -> s2t */
	while (!r->s_eof && !r->failed && evbuffer_get_length(r->s2t) < r->max) {
		int n = evbuffer_read(r->s2t, r->sfd, TLSRELAY_CHUNK);
		if (n == 0)
			r->s_eof = 1;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			tlsrelay_fail(r, "destination", strerror(errno));
		if (n <= 0)
			break;
		moved = 1;
	}
	/* s2t -> TLS */
	if (!r->failed && evbuffer_get_length(r->s2t) > 0) {
		int want_read = 0;
		ssize_t n = tls_write_evbuffer(r->ssl, r->s2t, &want_read);
		r->t_wwr = 0;
		if (n > 0) {
			r->n_s2t += (uint64_t)n;
			moved = 1;
		} else if (n < 0 && errno == EAGAIN) {
			r->t_wwr = want_read;
		} else if (n < 0) {
			tlsrelay_fail(r, "TLS side", tls_why(r->ssl));
		}
	}
	if (r->s_eof && !r->t_shut && evbuffer_get_length(r->s2t) == 0) {
		tls_shutdown(r->ssl); /* close_notify: TLS's half-close */
		r->t_shut = 1;
		moved = 1;
	}
	return moved;
}

static void
tlsrelay_arm(struct tlsrelay *r)
{
	int t_read = !r->t_eof && evbuffer_get_length(r->t2s) < r->max;
	int s_read = !r->s_eof && evbuffer_get_length(r->s2t) < r->max;

	if (t_read || r->t_wwr)
		event_add(r->t_rev, NULL);
	else
		event_del(r->t_rev);
	if (r->t_rww || (evbuffer_get_length(r->s2t) > 0 && !r->t_wwr))
		event_add(r->t_wev, NULL);
	else
		event_del(r->t_wev);
	if (s_read)
		event_add(r->s_rev, NULL);
	else
		event_del(r->s_rev);
	if (evbuffer_get_length(r->t2s) > 0)
		event_add(r->s_wev, NULL);
	else
		event_del(r->s_wev);
	/* records OpenSSL already holds do not make the socket readable */
	if (t_read && !r->t_again)
		event_active(r->t_rev, EV_READ, 1);
}

static void
tlsrelay_pump(struct tlsrelay *r)
{
	for (int i = 0; i < 16 && tlsrelay_round(r); i++)
		;
	if (r->failed || (r->s_shut && r->t_shut)) {
		tlsrelay_destroy(r, 1);
		return;
	}
	tlsrelay_arm(r);
}

static void
tlsrelay_on_event(evutil_socket_t fd, short what, void *arg)
{
	loop_note_io();
	tlsrelay_pump(arg);
}

struct tlsrelay *
tlsrelay_new(struct event_base *base, int tls_fd, SSL *ssl, int sock_fd,
    struct evbuffer *to_sock, struct evbuffer *to_tls, size_t max_buf,
    struct tlsrelay_set *set, tlsrelay_done_fn done, void *arg)
{
	struct tlsrelay *r = xcalloc(1, sizeof(*r));

	if (set) {
		r->set = set;
		r->next = set->head;
		if (set->head)
			set->head->prev = r;
		set->head = r;
	}
	r->base = base;
	r->ssl = ssl;
	r->tfd = tls_fd;
	r->sfd = sock_fd;
	r->max = max_buf;
	r->done = done;
	r->arg = arg;
	r->t2s = evbuffer_new();
	r->s2t = evbuffer_new();
	r->t_rev = event_new(base, tls_fd, EV_READ | EV_PERSIST,
	    tlsrelay_on_event, r);
	r->t_wev = event_new(base, tls_fd, EV_WRITE | EV_PERSIST,
	    tlsrelay_on_event, r);
	r->s_rev = event_new(base, sock_fd, EV_READ | EV_PERSIST,
	    tlsrelay_on_event, r);
	r->s_wev = event_new(base, sock_fd, EV_WRITE | EV_PERSIST,
	    tlsrelay_on_event, r);
	if (r->t2s == NULL || r->s2t == NULL || r->t_rev == NULL ||
	    r->t_wev == NULL || r->s_rev == NULL || r->s_wev == NULL)
		abort();
	if (to_sock)
		evbuffer_add_buffer(r->t2s, to_sock);
	if (to_tls)
		evbuffer_add_buffer(r->s2t, to_tls);
	/* start from the loop, so done never runs inside the constructor */
	event_active(r->t_rev, EV_READ, 1);
	return r;
}

void
tlsrelay_set_free(struct tlsrelay_set *set)
{
	while (set->head != NULL)
		tlsrelay_destroy(set->head, 0);
}
