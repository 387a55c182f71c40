/*
 * events.c: the event feed (events.h). Events are reference-counted
 * items: the ring of kept events holds one reference, the queue of events
 * emitted from inside a callback another, so an event evicted from a small
 * ring while it waits in the queue is still delivered.
 *
 * Re-entrancy: while a dispatch runs, an unsubscribe only marks the
 * subscriber dead (the list is compacted when the dispatch ends) and an
 * emit is queued (at most EVFEED_QMAX; past that it is kept in the ring
 * but not delivered live, and counted). A subscriber added during a
 * dispatch gets only events with a later seq.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "metrics/events.h"
#include "util/xmalloc.h"

#define EVFEED_QMAX 1000

struct evitem {
	struct evfeed_event ev;
	unsigned refs;
	struct evitem *qnext; /* the queue of events to deliver */
};

struct evfeed_sub {
	struct evfeed *f;
	void (*cb)(void *arg, const struct evfeed_event *ev);
	void *arg;
	uint64_t min_seq; /* deliver events with seq >= min_seq */
	int dead;
	struct evfeed_sub *next;
};

struct evfeed {
	size_t keep;
	struct evitem **ring; /* keep slots; the oldest at head */
	size_t head, n;
	uint64_t seq;
	struct evfeed_sub *subs, **subs_tail;
	size_t nsubs;         /* live ones */
	int dispatching, need_compact;
	struct evitem *qhead, **qtail;
	size_t qlen;
	uint64_t dropped;     /* not delivered live: the queue was full */
};

static void
item_unref(struct evitem *it)
{
	if (it == NULL || --it->refs > 0)
		return;
	json_decref(it->ev.data);
	free(it->ev.json);
	free(it);
}

static int64_t
wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

struct evfeed *
evfeed_new(size_t keep)
{
	struct evfeed *f = xcalloc(1, sizeof(*f));

	f->keep = keep ? keep : 1;
	f->ring = xcalloc(f->keep, sizeof(*f->ring));
	f->subs_tail = &f->subs;
	f->qtail = &f->qhead;
	return f;
}

void
evfeed_free(struct evfeed *f)
{
	struct evfeed_sub *s, *sn;
	struct evitem *it, *in;
	size_t i;

	if (f == NULL)
		return;
	for (s = f->subs; s != NULL; s = sn) {
		sn = s->next;
		free(s);
	}
	for (it = f->qhead; it != NULL; it = in) {
		in = it->qnext;
		item_unref(it);
	}
	for (i = 0; i < f->n; i++)
		item_unref(f->ring[(f->head + i) % f->keep]);
	free(f->ring);
	free(f);
}

static void
compact(struct evfeed *f)
{
	struct evfeed_sub **pp = &f->subs, *s;

	f->subs_tail = &f->subs;
	while ((s = *pp) != NULL) {
		if (s->dead) {
			*pp = s->next;
			free(s);
			continue;
		}
		f->subs_tail = &s->next;
		pp = &s->next;
	}
	f->need_compact = 0;
}

static void
deliver(struct evfeed *f, const struct evitem *it)
{
	struct evfeed_sub *s;

	/* subscribers added by a callback are appended; their min_seq keeps
	 * this event from them */
	for (s = f->subs; s != NULL; s = s->next)
		if (!s->dead && it->ev.seq >= s->min_seq)
			s->cb(s->arg, &it->ev);
}

uint64_t
evfeed_emit(struct evfeed *f, const char *type, json_t *data)
{
	struct evitem *it = xcalloc(1, sizeof(*it));
	uint64_t seq = ++f->seq;
	json_t *o;

	it->refs = 1;
	it->ev.seq = seq;
	it->ev.time_ms = wall_ms();
	it->ev.type = type;
	if (data == NULL || !json_is_object(data)) {
		json_decref(data);
		data = json_object();
	}
	it->ev.data = data;
	/* seq, time and type first; the data cannot override them */
	o = json_object();
	json_object_set_new(o, "seq", json_integer((json_int_t)seq));
	json_object_set_new(o, "time", json_integer(it->ev.time_ms));
	json_object_set_new(o, "type", json_string(type));
	json_object_update_missing(o, data);
	it->ev.json = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (it->ev.json == NULL)
		it->ev.json = xstrdup("{}");

	/* the ring takes the reference we hold; evict the oldest if full */
	if (f->n == f->keep) {
		item_unref(f->ring[f->head]);
		f->ring[f->head] = it;
		f->head = (f->head + 1) % f->keep;
	} else {
		f->ring[(f->head + f->n) % f->keep] = it;
		f->n++;
	}

	if (f->dispatching) {
		if (f->qlen >= EVFEED_QMAX) {
			f->dropped++;
		} else {
			it->refs++;
			it->qnext = NULL;
			*f->qtail = it;
			f->qtail = &it->qnext;
			f->qlen++;
		}
		return seq;
	}
	f->dispatching = 1;
	it->refs++;
	deliver(f, it);
	item_unref(it);
	while (f->qhead != NULL) {
		struct evitem *q = f->qhead;

		f->qhead = q->qnext;
		if (f->qhead == NULL)
			f->qtail = &f->qhead;
		f->qlen--;
		deliver(f, q);
		item_unref(q);
	}
	f->dispatching = 0;
	if (f->need_compact)
		compact(f);
	return seq;
}

struct evfeed_sub *
evfeed_subscribe(struct evfeed *f,
    void (*cb)(void *arg, const struct evfeed_event *ev), void *arg)
{
	struct evfeed_sub *s = xcalloc(1, sizeof(*s));

	s->f = f;
	s->cb = cb;
	s->arg = arg;
	s->min_seq = f->seq + 1;
	*f->subs_tail = s;
	f->subs_tail = &s->next;
	f->nsubs++;
	return s;
}

void
evfeed_unsubscribe(struct evfeed_sub *sub)
{
	struct evfeed *f;

	if (sub == NULL || sub->dead)
		return;
	f = sub->f;
	sub->dead = 1;
	f->nsubs--;
	if (f->dispatching)
		f->need_compact = 1;
	else
		compact(f);
}

size_t
evfeed_nsubscribers(const struct evfeed *f)
{
	return f->nsubs;
}

void
evfeed_replay(struct evfeed *f, uint64_t after,
    void (*cb)(void *arg, const struct evfeed_event *ev), void *arg)
{
	uint64_t last = f->seq, next = after + 1, oldest;
	struct evitem *it;

	/* the kept seqs are consecutive, so a seq names its slot; looked up
	 * again each time because a callback that emits moves the ring.
	 * Events emitted during the replay are not part of it. */
	while (next <= last && f->n > 0) {
		oldest = f->ring[f->head]->ev.seq;
		if (next < oldest)
			next = oldest;
		if (next > last)
			break;
		it = f->ring[(f->head + (size_t)(next - oldest)) % f->keep];
		it->refs++;
		cb(arg, &it->ev);
		item_unref(it);
		next++;
	}
}

uint64_t
evfeed_last_seq(const struct evfeed *f)
{
	return f->seq;
}
