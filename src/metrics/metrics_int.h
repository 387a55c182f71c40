/*
 * metrics_int.h: the registry's layout, shared by the files of
 * src/metrics only (metrics.c, prom.c, proc.c); nothing else includes it.
 */
#ifndef MG_METRICS_INT_H
#define MG_METRICS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "metrics/metrics.h"

enum met_kind { MET_COUNTER = 1, MET_GAUGE, MET_HISTOGRAM };

struct met_series {
	struct met_family *f;
	struct met_series *parent;	/* met_link; we hold a ref on it */
	struct met_series *hnext;	/* hash chain */
	struct met_series *prev, *next;	/* the family's ordered list */
	uint64_t hash;
	union {
		uint64_t u;		/* counter; a histogram's count */
		int64_t i;		/* gauge */
	} v;
	double sum;			/* histogram */
	uint64_t *buckets;		/* histogram: nbounds + 1, not cumulative */
	unsigned refs;			/* holders (met_hold, met_ref, children) */
	struct met_series *fold;	/* a private series: its "other" one */
	unsigned char forgood;		/* met_at made or saw it: never removed */
	unsigned char priv;		/* met_hold past the cap: in no list,
					   not exposed, freed at release */
	unsigned char capped;		/* counts toward the family's cap */
	const char *val[MET_LABELS_MAX]; /* point into key */
	char key[];			/* each value followed by '\0' */
};

struct met_family {
	struct metrics *m;
	struct met_family *next;	/* registration order */
	const char *name;
	const char *help;
	enum met_kind kind;
	unsigned nlabels;
	unsigned open;			/* bit i: label i is open */
	char *lbuf;			/* the label names, lname points into it */
	const char *lname[MET_LABELS_MAX];
	const double *bounds;
	size_t nbounds;
	/* > 0: the exposition shows value / div as a real number (a counter
	 * of microseconds shown in seconds); met_value reads the raw value */
	double div;
	struct met_series **tab;	/* hash of the series, tabsize a power of 2 */
	size_t tabsize;
	size_t nseries;
	size_t ncapped;			/* series counted toward the cap */
	struct met_series *first, *last;
};

struct met_hook {
	void (*fn)(void *arg);
	void *arg;
};

struct met_proc;

struct metrics {
	unsigned max_series;
	struct met_family *first, *last;
	struct met_hook *hooks;
	size_t nhooks, hookcap;
	int collecting;			/* hooks are running: removal defers */
	struct met_series *series;	/* mgrok_metrics_series */
	struct met_series *folded;	/* mgrok_metrics_series_folded_total */
	struct met_proc *proc;		/* metrics_process's state, freed with m */
};

/* metrics_collect: run the collect hooks and set mgrok_metrics_series;
 * called by the exposition before it reads the families. */
void metrics_collect(struct metrics *m);
/* met_set_div: values of f are exposed divided by div (see div above) */
void met_set_div(struct met_family *f, double div);
/* met_counter_set: a counter read from elsewhere (CPU time) is set, not
 * added to; parents are not touched (such a series has none) */
void met_counter_set(struct met_series *s, uint64_t v);
/* metrics_proc_free: frees what metrics_process allocated (proc.c) */
void metrics_proc_free(struct met_proc *p);

#endif
