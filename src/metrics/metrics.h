/*
 * metrics.h: the one registry of a process's figures (server or agent):
 * counters, gauges and histograms. A family is a metric name with a fixed
 * list of label names; each combination of label values is a series, the
 * thing a module adds to. Every figure that a log line, an exit summary,
 * /metrics, the JSON API or a page shows is read from here.
 *
 * Single-threaded: the event loop's. Updating a series is a pointer and an
 * add (and the same add on its parents, see met_link).
 *
 * Cardinality: label names starting with '@' in the spec are open (their
 * values come from peers or users: a tunnel, a client); the '@' is not
 * part of the name. A family holds at most metrics_max_series() series
 * with open labels; past that a new combination gets the series whose open
 * labels are all "other", and mgrok_metrics_series_folded_total counts it.
 * Families without open labels are never folded (their values are a fixed
 * set chosen by the code: a type, a reason, a status class).
 */
#ifndef MG_METRICS_H
#define MG_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct metrics;
struct met_family;
struct met_series;

#define MET_LABELS_MAX 4
#define MET_OTHER "other"

/* metrics_new: an empty registry; max_series caps each family with open
 * labels (>= 1). It registers mgrok_metrics_series (gauge) and
 * mgrok_metrics_series_folded_total itself. Never NULL (aborts on OOM
 * like xmalloc). Free with metrics_free, after every holder released. */
struct metrics *metrics_new(unsigned max_series);
void metrics_free(struct metrics *m);
/* a reload may change the cap: series over it stay, new ones fold */
void metrics_set_max_series(struct metrics *m, unsigned max_series);
unsigned metrics_max_series(const struct metrics *m);

/*
 * Families. name: "mgrok_..." following Prometheus conventions (counters
 * end in _total, base units: _bytes, _seconds). labels: comma-separated
 * label names, '@' marking open ones; "" or NULL for none. help: one line.
 * The registry keeps pointers to name, help and bounds: they must be
 * static strings/arrays. Registering a name twice returns the existing
 * family (same kind and labels, or abort: a programming error).
 * Families are exposed in the order they were registered.
 */
struct met_family *met_counter(struct metrics *m, const char *name,
    const char *help, const char *labels);
struct met_family *met_gauge(struct metrics *m, const char *name,
    const char *help, const char *labels);
/* bounds: nbounds strictly increasing upper bounds (le); +Inf is implied */
struct met_family *met_histogram(struct metrics *m, const char *name,
    const char *help, const char *labels, const double *bounds,
    size_t nbounds);
/* latency buckets in seconds: 1 ms .. 10 s */
extern const double met_latency_bounds[];
extern const size_t met_nlatency_bounds;

/*
 * Series. met_at: the series of these label values (as many as the
 * family has names; NULL values count as ""), made on first use. It lives
 * as long as the registry: use it for fixed label sets. Never NULL (a
 * folded combination gets the "other" series).
 * met_hold: the same, and the caller holds it: a held series with open
 * labels disappears from the exposition once its last holder calls
 * met_release (a tunnel's series end with the tunnel). Holding a series
 * that met_at made keeps it for good.
 */
struct met_series *met_at(struct met_family *f, const char *const *values);
struct met_series *met_at0(struct met_family *f);
struct met_series *met_at1(struct met_family *f, const char *v1);
struct met_series *met_at2(struct met_family *f, const char *v1,
    const char *v2);
struct met_series *met_at3(struct met_family *f, const char *v1,
    const char *v2, const char *v3);
struct met_series *met_hold(struct met_family *f, const char *const *values);
struct met_series *met_hold1(struct met_family *f, const char *v1);
struct met_series *met_hold2(struct met_family *f, const char *v1,
    const char *v2);
/* one more holder of s (an object that outlives the first, e.g. a relay
 * counting into its tunnel's series); s may be NULL */
struct met_series *met_ref(struct met_series *s);
/* met_release: NULL is fine */
void met_release(struct met_series *s);

/*
 * met_link: every add to child (counter) or gauge change is also applied
 * to parent, and to parent's parent: per-tunnel bytes add up into the
 * per-client and the server's total by construction. parent NULL unlinks.
 * The child holds a reference to its parent. Same kind only.
 */
void met_link(struct met_series *child, struct met_series *parent);

/* counters */
void met_add(struct met_series *s, uint64_t n);
void met_inc(struct met_series *s);
/* gauges */
void met_set(struct met_series *s, int64_t v);
void met_gauge_add(struct met_series *s, int64_t d);
/* histograms: one observation (seconds for latency) */
void met_observe(struct met_series *s, double v);

/* reading (counters and gauges; a histogram's count) */
uint64_t met_value(const struct met_series *s);
int64_t met_gauge_value(const struct met_series *s);
double met_hist_sum(const struct met_series *s);
uint64_t met_hist_count(const struct met_series *s);
/* the value of the series of these labels, 0 when there is none (never
 * creates one); for tests and summaries */
uint64_t met_lookup(struct met_family *f, const char *const *values);

/*
 * metrics_on_collect: fn(arg) runs before each exposition, to set gauges
 * that are cheaper to read than to track (sessions by state, fds).
 * Several may be registered; metrics_off_collect removes one.
 */
void metrics_on_collect(struct metrics *m, void (*fn)(void *arg), void *arg);
void metrics_off_collect(struct metrics *m, void (*fn)(void *arg),
    void *arg);

/* metrics_process: register the standard process_* families (resident
 * memory, virtual memory, open and max fds, CPU seconds, start time),
 * read from /proc at collection. */
void metrics_process(struct metrics *m);

/* metrics_prometheus: append the text exposition format 0.0.4 of every
 * family (HELP, TYPE, samples; label values escaped) to out. */
void metrics_prometheus(struct metrics *m, struct evbuffer *out);

#endif
