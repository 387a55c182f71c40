/* metrics.c: the registry: families, series, folding at the cap, holders,
 * links between series, histograms and collect hooks. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"
#include "metrics/metrics_int.h"
#include "util/xmalloc.h"

const double met_latency_bounds[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const size_t met_nlatency_bounds =
    sizeof(met_latency_bounds) / sizeof(met_latency_bounds[0]);

/* a programming error (a bad name, a kind mismatch): like xmalloc, abort
 * with a message rather than run with a registry that lies */
static void __attribute__((noreturn, format(printf, 1, 2)))
met_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "mgrok: metrics: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

struct metrics *
metrics_new(unsigned max_series)
{
	struct metrics *m = xcalloc(1, sizeof(*m));

	m->max_series = max_series ? max_series : 1;
	m->series = met_at0(met_gauge(m, "mgrok_metrics_series",
	    "Series in the metrics registry, all families.", NULL));
	m->folded = met_at0(met_counter(m,
	    "mgrok_metrics_series_folded_total",
	    "New label combinations counted in their family's \"other\" "
	    "series because the family was at its series cap.", NULL));
	return m;
}

static void
series_free(struct met_series *s)
{
	free(s->buckets);
	free(s);
}

void
metrics_free(struct metrics *m)
{
	struct met_family *f, *fn;
	struct met_series *s, *sn;

	if (m == NULL)
		return;
	/* everything goes, held or not: holders must be gone by now, and
	 * parents go in the same sweep, so no ref is dropped one by one */
	for (f = m->first; f != NULL; f = fn) {
		fn = f->next;
		for (s = f->first; s != NULL; s = sn) {
			sn = s->next;
			series_free(s);
		}
		free(f->tab);
		free(f->lbuf);
		free(f);
	}
	free(m->hooks);
	metrics_proc_free(m->proc);
	free(m);
}

void
metrics_set_max_series(struct metrics *m, unsigned max_series)
{
	m->max_series = max_series ? max_series : 1;
}

unsigned
metrics_max_series(const struct metrics *m)
{
	return m->max_series;
}

/* Families */

static int
valid_name(const char *s, size_t n, int colon)
{
	size_t i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    c == '_' || (colon && c == ':'))
			continue;
		if (i > 0 && c >= '0' && c <= '9')
			continue;
		return 0;
	}
	return 1;
}

/* parse "a,@b" into f->lname/f->open; aborts on a bad spec */
static void
parse_labels(struct met_family *f, const char *labels)
{
	char *p, *tok, *save = NULL;
	unsigned i, j;

	f->nlabels = 0;
	f->open = 0;
	if (labels == NULL || *labels == '\0')
		return;
	f->lbuf = xstrdup(labels);
	for (p = f->lbuf; (tok = strtok_r(p, ",", &save)) != NULL; p = NULL) {
		int open = 0;
		char *end;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*tok == '@') {
			open = 1;
			tok++;
		}
		if (f->nlabels == MET_LABELS_MAX)
			met_fatal("%s: more than %d labels in \"%s\"",
			    f->name, MET_LABELS_MAX, labels);
		if (!valid_name(tok, strlen(tok), 0) ||
		    strncmp(tok, "__", 2) == 0)
			met_fatal("%s: invalid label name \"%s\"", f->name,
			    tok);
		if (f->kind == MET_HISTOGRAM && strcmp(tok, "le") == 0)
			met_fatal("%s: a histogram cannot have a label \"le\"",
			    f->name);
		if (open)
			f->open |= 1u << f->nlabels;
		f->lname[f->nlabels++] = tok;
	}
	for (i = 0; i < f->nlabels; i++)
		for (j = i + 1; j < f->nlabels; j++)
			if (strcmp(f->lname[i], f->lname[j]) == 0)
				met_fatal("%s: label \"%s\" twice", f->name,
				    f->lname[i]);
}

static int
same_family(const struct met_family *a, const struct met_family *b)
{
	unsigned i;

	if (a->kind != b->kind || a->nlabels != b->nlabels ||
	    a->open != b->open || a->nbounds != b->nbounds)
		return 0;
	for (i = 0; i < a->nlabels; i++)
		if (strcmp(a->lname[i], b->lname[i]) != 0)
			return 0;
	if (a->nbounds > 0 && a->bounds != b->bounds &&
	    memcmp(a->bounds, b->bounds, a->nbounds * sizeof(double)) != 0)
		return 0;
	return 1;
}

static struct met_family *
family_new(struct metrics *m, enum met_kind kind, const char *name,
    const char *help, const char *labels, const double *bounds,
    size_t nbounds)
{
	struct met_family *f, *old;
	size_t i;

	if (name == NULL || !valid_name(name, strlen(name), 1))
		met_fatal("invalid metric name \"%s\"", name ? name : "(null)");
	f = xcalloc(1, sizeof(*f));
	f->m = m;
	f->name = name;
	f->help = help ? help : "";
	f->kind = kind;
	f->bounds = bounds;
	f->nbounds = nbounds;
	parse_labels(f, labels);
	if (kind == MET_HISTOGRAM) {
		if (nbounds > 0 && bounds == NULL)
			met_fatal("%s: no bounds", name);
		for (i = 0; i < nbounds; i++)
			if (!(bounds[i] == bounds[i]) ||
			    (i > 0 && !(bounds[i] > bounds[i - 1])))
				met_fatal("%s: bounds not strictly increasing",
				    name);
	}
	for (old = m->first; old != NULL; old = old->next) {
		if (strcmp(old->name, name) != 0)
			continue;
		if (!same_family(old, f))
			met_fatal("%s registered twice, differently", name);
		free(f->lbuf);
		free(f);
		return old;
	}
	f->tabsize = 8;
	f->tab = xcalloc(f->tabsize, sizeof(*f->tab));
	if (m->last != NULL)
		m->last->next = f;
	else
		m->first = f;
	m->last = f;
	/* a family without labels has its one series from the start: it
	 * shows as 0 before anything happened, as Prometheus clients do */
	if (f->nlabels == 0)
		met_at0(f);
	return f;
}

struct met_family *
met_counter(struct metrics *m, const char *name, const char *help,
    const char *labels)
{
	return family_new(m, MET_COUNTER, name, help, labels, NULL, 0);
}

struct met_family *
met_gauge(struct metrics *m, const char *name, const char *help,
    const char *labels)
{
	return family_new(m, MET_GAUGE, name, help, labels, NULL, 0);
}

struct met_family *
met_histogram(struct metrics *m, const char *name, const char *help,
    const char *labels, const double *bounds, size_t nbounds)
{
	return family_new(m, MET_HISTOGRAM, name, help, labels, bounds,
	    nbounds);
}

void
met_set_div(struct met_family *f, double div)
{
	f->div = div;
}

/* Series */

static const char *
val_or_empty(const char *v)
{
	return v ? v : "";
}

/* FNV-1a over the values, each with its terminating '\0' (a value cannot
 * hold one, so the joined key is unambiguous) */
static uint64_t
key_hash(const struct met_family *f, const char *const *values)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	unsigned i;

	for (i = 0; i < f->nlabels; i++) {
		const unsigned char *p =
		    (const unsigned char *)val_or_empty(values[i]);
		do {
			h ^= *p;
			h *= 0x100000001b3ULL;
		} while (*p++ != '\0');
	}
	return h;
}

static struct met_series *
find(const struct met_family *f, const char *const *values, uint64_t h)
{
	struct met_series *s;
	unsigned i;

	for (s = f->tab[h & (f->tabsize - 1)]; s != NULL; s = s->hnext) {
		if (s->hash != h)
			continue;
		for (i = 0; i < f->nlabels; i++)
			if (strcmp(s->val[i], val_or_empty(values[i])) != 0)
				break;
		if (i == f->nlabels)
			return s;
	}
	return NULL;
}

static void
grow(struct met_family *f)
{
	size_t n = f->tabsize * 2, i;
	struct met_series **tab = xcalloc(n, sizeof(*tab));
	struct met_series *s, *next;

	for (i = 0; i < f->tabsize; i++)
		for (s = f->tab[i]; s != NULL; s = next) {
			next = s->hnext;
			s->hnext = tab[s->hash & (n - 1)];
			tab[s->hash & (n - 1)] = s;
		}
	free(f->tab);
	f->tab = tab;
	f->tabsize = n;
}

static struct met_series *
create(struct met_family *f, const char *const *values, uint64_t h)
{
	struct met_series *s;
	size_t len[MET_LABELS_MAX], total = 0;
	unsigned i;
	char *p;

	for (i = 0; i < f->nlabels; i++) {
		len[i] = strlen(val_or_empty(values[i]));
		total += len[i] + 1;
	}
	s = xcalloc(1, sizeof(*s) + total);
	s->f = f;
	s->hash = h;
	for (i = 0, p = s->key; i < f->nlabels; i++) {
		memcpy(p, val_or_empty(values[i]), len[i] + 1);
		s->val[i] = p;
		p += len[i] + 1;
	}
	if (f->kind == MET_HISTOGRAM)
		s->buckets = xcalloc(f->nbounds + 1, sizeof(*s->buckets));
	if (f->nseries >= f->tabsize)
		grow(f);
	s->hnext = f->tab[h & (f->tabsize - 1)];
	f->tab[h & (f->tabsize - 1)] = s;
	s->prev = f->last;
	if (f->last != NULL)
		f->last->next = s;
	else
		f->first = s;
	f->last = s;
	f->nseries++;
	return s;
}

/* take s out of its family and free it; drops its ref on its parent */
static void
series_remove(struct met_series *s)
{
	struct met_family *f = s->f;
	struct met_series **pp, *parent = s->parent;

	for (pp = &f->tab[s->hash & (f->tabsize - 1)]; *pp != s;
	     pp = &(*pp)->hnext)
		;
	*pp = s->hnext;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		f->first = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	else
		f->last = s->prev;
	f->nseries--;
	if (s->capped)
		f->ncapped--;
	series_free(s);
	met_release(parent);
}

/*
 * A holder past the cap gets a private series: in no list (not exposed),
 * counted on its own so that its holder reads its exact value and may link
 * it to a parent of its own (a tunnel's bytes to its client's), and every
 * change is applied to its fold target too, the "other" series that the
 * exposition shows. A shared "other" series could not be linked to one
 * client without counting every other client's folded tunnels there.
 */
static struct met_series *
private_of(struct met_series *other)
{
	struct met_series *p = xcalloc(1, sizeof(*p));

	p->f = other->f;
	p->priv = 1;
	p->fold = other;
	memcpy(p->val, other->val, sizeof(p->val));
	if (other->f->kind == MET_HISTOGRAM)
		p->buckets = xcalloc(other->f->nbounds + 1,
		    sizeof(*p->buckets));
	return p;
}

/* find or make the series of values; past the cap, the "other" one (a
 * private series folding into it, for a holder) */
static struct met_series *
get(struct met_family *f, const char *const *values, int forgood)
{
	const char *other[MET_LABELS_MAX];
	struct met_series *s;
	uint64_t h;
	unsigned i;

	if (f->nlabels > 0 && values == NULL)
		met_fatal("%s: no label values", f->name);
	h = key_hash(f, values);
	s = find(f, values, h);
	if (s == NULL && f->open != 0 && f->ncapped >= f->m->max_series) {
		for (i = 0; i < f->nlabels; i++)
			other[i] = (f->open & (1u << i)) ? MET_OTHER :
			    values[i];
		h = key_hash(f, other);
		s = find(f, other, h);
		if (s == NULL)
			s = create(f, other, h);
		/* the fold target stays, whoever holds it */
		s->forgood = 1;
		met_add(f->m->folded, 1);
		if (!forgood)
			return private_of(s);
		return s;
	}
	if (s == NULL) {
		s = create(f, values, h);
		if (f->open != 0) {
			s->capped = 1;
			f->ncapped++;
		}
	}
	if (forgood || f->open == 0)
		s->forgood = 1;
	return s;
}

static void
check_arity(const struct met_family *f, unsigned n)
{
	if (f->nlabels != n)
		met_fatal("%s has %u labels, given %u values", f->name,
		    f->nlabels, n);
}

struct met_series *
met_at(struct met_family *f, const char *const *values)
{
	return get(f, values, 1);
}

struct met_series *
met_at0(struct met_family *f)
{
	check_arity(f, 0);
	return get(f, NULL, 1);
}

struct met_series *
met_at1(struct met_family *f, const char *v1)
{
	const char *v[] = { v1 };

	check_arity(f, 1);
	return get(f, v, 1);
}

struct met_series *
met_at2(struct met_family *f, const char *v1, const char *v2)
{
	const char *v[] = { v1, v2 };

	check_arity(f, 2);
	return get(f, v, 1);
}

struct met_series *
met_at3(struct met_family *f, const char *v1, const char *v2,
    const char *v3)
{
	const char *v[] = { v1, v2, v3 };

	check_arity(f, 3);
	return get(f, v, 1);
}

struct met_series *
met_hold(struct met_family *f, const char *const *values)
{
	struct met_series *s = get(f, values, 0);

	s->refs++;
	return s;
}

struct met_series *
met_hold1(struct met_family *f, const char *v1)
{
	const char *v[] = { v1 };

	check_arity(f, 1);
	return met_hold(f, v);
}

struct met_series *
met_hold2(struct met_family *f, const char *v1, const char *v2)
{
	const char *v[] = { v1, v2 };

	check_arity(f, 2);
	return met_hold(f, v);
}

struct met_series *
met_ref(struct met_series *s)
{
	if (s != NULL)
		s->refs++;
	return s;
}

void
met_release(struct met_series *s)
{
	struct met_series *parent;

	/* a loop rather than recursion: removing a child releases its
	 * parent, which may go too, and so on up the chain */
	while (s != NULL) {
		if (s->refs == 0)
			met_fatal("%s: series released more than held",
			    s->f->name);
		if (--s->refs > 0 || s->forgood)
			return;
		parent = s->parent;
		s->parent = NULL;
		if (s->priv)
			series_free(s); /* in no list; its fold target stays */
		else
			series_remove(s);
		s = parent;
	}
}

void
met_link(struct met_series *child, struct met_series *parent)
{
	struct met_series *p, *old;

	if (child == NULL)
		return;
	if (parent != NULL) {
		if (parent->f->kind != child->f->kind)
			met_fatal("%s linked to %s: not the same kind",
			    child->f->name, parent->f->name);
		if (child->f->kind == MET_HISTOGRAM &&
		    (child->f->nbounds != parent->f->nbounds ||
		    (child->f->nbounds > 0 &&
		    memcmp(child->f->bounds, parent->f->bounds,
		    child->f->nbounds * sizeof(double)) != 0)))
			met_fatal("%s linked to %s: not the same buckets",
			    child->f->name, parent->f->name);
		for (p = parent; p != NULL; p = p->parent)
			if (p == child)
				met_fatal("%s: a link would make a loop",
				    child->f->name);
		met_ref(parent);
	}
	old = child->parent;
	child->parent = parent;
	met_release(old);
}

void
met_add(struct met_series *s, uint64_t n)
{
	assert(s == NULL || s->f->kind == MET_COUNTER);
	for (; s != NULL; s = s->parent) {
		s->v.u += n;
		if (s->fold != NULL)
			s->fold->v.u += n;
	}
}

void
met_inc(struct met_series *s)
{
	met_add(s, 1);
}

void
met_counter_set(struct met_series *s, uint64_t v)
{
	s->v.u = v;
}

void
met_gauge_add(struct met_series *s, int64_t d)
{
	assert(s == NULL || s->f->kind == MET_GAUGE);
	/* through uint64 so that a wrap is defined behaviour */
	for (; s != NULL; s = s->parent) {
		s->v.i = (int64_t)((uint64_t)s->v.i + (uint64_t)d);
		if (s->fold != NULL)
			s->fold->v.i = (int64_t)((uint64_t)s->fold->v.i +
			    (uint64_t)d);
	}
}

void
met_set(struct met_series *s, int64_t v)
{
	if (s == NULL)
		return;
	met_gauge_add(s, (int64_t)((uint64_t)v - (uint64_t)s->v.i));
}

void
met_observe(struct met_series *s, double v)
{
	size_t lo, hi, mid, nb;

	if (s == NULL)
		return;
	assert(s->f->kind == MET_HISTOGRAM);
	/* the first bound >= v (le is inclusive); NaN lands in +Inf */
	nb = s->f->nbounds;
	lo = 0;
	hi = nb;
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (v <= s->f->bounds[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	if (v != v)
		lo = nb;
	/* linked histograms have the same bounds (met_link checks) */
	for (; s != NULL; s = s->parent) {
		s->buckets[lo]++;
		s->sum += v;
		s->v.u++;
		if (s->fold != NULL) {
			s->fold->buckets[lo]++;
			s->fold->sum += v;
			s->fold->v.u++;
		}
	}
}

uint64_t
met_value(const struct met_series *s)
{
	if (s == NULL)
		return 0;
	if (s->f->kind == MET_GAUGE)
		return s->v.i < 0 ? 0 : (uint64_t)s->v.i;
	return s->v.u;
}

int64_t
met_gauge_value(const struct met_series *s)
{
	return s ? s->v.i : 0;
}

double
met_hist_sum(const struct met_series *s)
{
	return s && s->f->kind == MET_HISTOGRAM ? s->sum : 0;
}

uint64_t
met_hist_count(const struct met_series *s)
{
	return s && s->f->kind == MET_HISTOGRAM ? s->v.u : 0;
}

uint64_t
met_lookup(struct met_family *f, const char *const *values)
{
	if (f == NULL || (f->nlabels > 0 && values == NULL))
		return 0;
	return met_value(find(f, values, key_hash(f, values)));
}

/* Collection */

void
metrics_on_collect(struct metrics *m, void (*fn)(void *arg), void *arg)
{
	if (m->nhooks == m->hookcap) {
		m->hookcap = m->hookcap ? m->hookcap * 2 : 4;
		m->hooks = xrealloc(m->hooks, m->hookcap * sizeof(*m->hooks));
	}
	m->hooks[m->nhooks].fn = fn;
	m->hooks[m->nhooks].arg = arg;
	m->nhooks++;
}

static void
compact_hooks(struct metrics *m)
{
	size_t i, j;

	for (i = j = 0; i < m->nhooks; i++)
		if (m->hooks[i].fn != NULL)
			m->hooks[j++] = m->hooks[i];
	m->nhooks = j;
}

void
metrics_off_collect(struct metrics *m, void (*fn)(void *arg), void *arg)
{
	size_t i;

	for (i = 0; i < m->nhooks; i++) {
		if (m->hooks[i].fn == fn && m->hooks[i].arg == arg) {
			/* a hook may remove itself or another while they
			 * run: mark it, compact when they are done */
			m->hooks[i].fn = NULL;
			break;
		}
	}
	if (!m->collecting)
		compact_hooks(m);
}

void
metrics_collect(struct metrics *m)
{
	struct met_family *f;
	size_t i, n = 0;

	m->collecting++;
	for (i = 0; i < m->nhooks; i++)
		if (m->hooks[i].fn != NULL)
			m->hooks[i].fn(m->hooks[i].arg);
	if (--m->collecting == 0)
		compact_hooks(m);
	for (f = m->first; f != NULL; f = f->next)
		n += f->nseries;
	met_set(m->series, (int64_t)n);
}
