/*
 * fwatch.h: notice that a file changed on disk, however it was changed:
 * written in place, replaced by a rename (as editors save), or swapped
 * through a symlink (as a Kubernetes ConfigMap is). inotify watches the
 * file's directory; after a burst of events settles (debounce), the file
 * is read and compared by content, so a touch or an unrelated file in the
 * directory calls nothing.
 */
#ifndef MG_FWATCH_H
#define MG_FWATCH_H

struct event_base;
struct fwatch;

typedef void (*fwatch_fn)(void *arg);

/*
 * fwatch_new: watch path from base; fn(arg) is called from the loop once
 * per change of the file's content (also when it comes back after being
 * gone). NULL with errno when inotify cannot watch the directory. Free
 * with fwatch_free.
 */
struct fwatch *fwatch_new(struct event_base *base, const char *path,
    unsigned debounce_ms, fwatch_fn fn, void *arg);
void fwatch_free(struct fwatch *w);

#endif
