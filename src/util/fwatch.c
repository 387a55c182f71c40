/* fwatch.c: see fwatch.h. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <event2/event.h>

#include "util/crypto.h"
#include "util/fwatch.h"
#include "util/xmalloc.h"

#define FWATCH_MAX_BYTES (16 * 1024 * 1024) /* a config file, not a disk */

struct fwatch {
	int fd;
	int wd;
	char *path;
	struct event *ev, *settle;
	unsigned debounce_ms;
	fwatch_fn fn;
	void *arg;
	int have;                     /* the file was there last time */
	uint8_t sum[CRYPTO_SHA256_LEN];
};

/* The file's content hash; 0, or -1 when it cannot be read. */
static int
content_sum(const char *path, uint8_t out[CRYPTO_SHA256_LEN])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, cap = 65536;
	uint8_t *buf = NULL;
	ssize_t n;
	int rc = -1;

	if (fd < 0)
		return -1;
	buf = xmalloc(cap);
	/* bounded by FWATCH_MAX_BYTES */
	for (;;) {
		if (len == cap) {
			if (cap >= FWATCH_MAX_BYTES)
				goto out;
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	crypto_sha256(buf, len, out);
	rc = 0;
out:
	free(buf);
	close(fd);
	return rc;
}

static void
fwatch_on_settle(evutil_socket_t fd, short what, void *arg)
{
	struct fwatch *w = arg;
	uint8_t sum[CRYPTO_SHA256_LEN];
	int have = content_sum(w->path, sum) == 0;

	if (!have) {
		w->have = 0; /* gone for now: a rename may bring it back */
		return;
	}
	if (w->have && memcmp(sum, w->sum, sizeof(sum)) == 0)
		return;
	w->have = 1;
	memcpy(w->sum, sum, sizeof(sum));
	w->fn(w->arg);
}

static void
fwatch_on_events(evutil_socket_t fd, short what, void *arg)
{
	struct fwatch *w = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct timeval tv = { (time_t)(w->debounce_ms / 1000),
		(suseconds_t)(w->debounce_ms % 1000) * 1000 };

	/* drain: what changed is judged by content once things settle */
	while (read(w->fd, buf, sizeof(buf)) > 0)
		;
	evtimer_add(w->settle, &tv);
}

struct fwatch *
fwatch_new(struct event_base *base, const char *path, unsigned debounce_ms,
    fwatch_fn fn, void *arg)
{
	struct fwatch *w = xcalloc(1, sizeof(*w));
	char *copy = NULL;

	w->fd = -1;
	w->path = xmalloc(strlen(path) + 1);
	memcpy(w->path, path, strlen(path) + 1);
	w->debounce_ms = debounce_ms;
	w->fn = fn;
	w->arg = arg;
	w->have = content_sum(path, w->sum) == 0;
	if ((w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0)
		goto fail;
	copy = xmalloc(strlen(path) + 1);
	memcpy(copy, path, strlen(path) + 1);
	/* the directory, not the file: a rename or a symlink swap replaces
	 * the file's inode, and a watch on it would see nothing more */
	w->wd = inotify_add_watch(w->fd, dirname(copy), IN_CLOSE_WRITE |
	    IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_MODIFY |
	    IN_ATTRIB);
	free(copy);
	if (w->wd < 0)
		goto fail;
	w->ev = event_new(base, w->fd, EV_READ | EV_PERSIST, fwatch_on_events,
	    w);
	w->settle = evtimer_new(base, fwatch_on_settle, w);
	if (w->ev == NULL || w->settle == NULL)
		goto fail;
	event_add(w->ev, NULL);
	return w;
fail:
	{
		int saved = errno;
		fwatch_free(w);
		errno = saved;
	}
	return NULL;
}

void
fwatch_free(struct fwatch *w)
{
	if (w == NULL)
		return;
	if (w->ev)
		event_free(w->ev);
	if (w->settle)
		event_free(w->settle);
	if (w->fd >= 0)
		close(w->fd);
	free(w->path);
	free(w);
}
