/*
 * events.h: the event feed beside the metrics registry: what happened, in
 * order (tunnel up/down, session connected/lost/replaced/kicked, lease
 * held/expired, HTTP request completed, connection closed, reload
 * applied/refused). The last `keep` events are kept for pages that join
 * late; subscribers (the SSE streams of the admin API and the inspector)
 * get each event as it is emitted. Single-threaded, like metrics.h.
 */
#ifndef MG_EVENTS_H
#define MG_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct evfeed;
struct evfeed_sub;

struct evfeed_event {
	uint64_t seq;             /* 1, 2, ... in emission order */
	int64_t time_ms;          /* wall clock, Unix ms (for display) */
	const char *type;         /* static string, e.g. "tunnel_up" */
	json_t *data;             /* a JSON object: the event's fields */
	char *json;               /* {"seq":..,"time":..,"type":..,<data>} */
};

/* evfeed_new: a feed keeping the last keep (>= 1) events. Never NULL. */
struct evfeed *evfeed_new(size_t keep);
/* evfeed_free: subscribers must be gone (or are dropped silently). */
void evfeed_free(struct evfeed *f);

/*
 * evfeed_emit: a new event of type (a static string) with data (a JSON
 * object the feed takes, or NULL for none); every subscriber's callback
 * runs before this returns. A subscriber may unsubscribe itself (or
 * another) from its callback; an emit from inside a callback is queued
 * and delivered after the current one. Returns the event's seq.
 */
uint64_t evfeed_emit(struct evfeed *f, const char *type, json_t *data);

/* evfeed_subscribe: cb(arg, ev) for every event emitted from now on; ev
 * is valid during the call only. */
struct evfeed_sub *evfeed_subscribe(struct evfeed *f,
    void (*cb)(void *arg, const struct evfeed_event *ev), void *arg);
void evfeed_unsubscribe(struct evfeed_sub *sub);
size_t evfeed_nsubscribers(const struct evfeed *f);

/* evfeed_replay: cb for each kept event with seq > after, oldest first
 * (after = 0: all that are kept). */
void evfeed_replay(struct evfeed *f, uint64_t after,
    void (*cb)(void *arg, const struct evfeed_event *ev), void *arg);
/* the seq of the newest event, 0 when none yet */
uint64_t evfeed_last_seq(const struct evfeed *f);

#endif
