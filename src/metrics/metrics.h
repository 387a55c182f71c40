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
 * A holder (met_hold) past the cap gets a private series instead: not
 * exposed, with its own exact value (for the JSON API) and its own links,
 * whose every change also goes to that "other" series.
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
/* metrics_free: frees every family and series, held ones included: every
 * holder (met_hold, met_ref) must be gone, its pointers are dangling
 * after this. NULL is fine. */
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
 * Families are exposed in the order they were registered. A family
 * without labels has its one series (0) from the start. An invalid
 * metric or label name (the Prometheus rules; label names starting with
 * "__", and "le" on a histogram, are reserved), more than
 * MET_LABELS_MAX labels or bounds not strictly increasing abort() with a
 * message on stderr: programming errors, like a failed xmalloc.
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
 * that met_at made keeps it for good, and so does met_at on a held one;
 * the folded "other" series are kept for good too. Series of families
 * without open labels are never removed. met_atN/met_holdN abort when N
 * is not the family's number of labels.
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
/* met_release: drops one hold; NULL is fine. Releasing more than was
 * held aborts. */
void met_release(struct met_series *s);

/*
 * met_link: every add to child (counter) or gauge change is also applied
 * to parent, and to parent's parent: per-tunnel bytes add up into the
 * per-client and the server's total by construction. parent NULL unlinks.
 * The child holds a reference to its parent (so a held parent stays
 * while linked; the ref is dropped on unlink or when the child goes).
 * Same kind only, histograms with the same bounds, no loops (else
 * abort). Only later changes travel: linking does not copy the child's
 * value so far into the parent, nor does unlinking take it back (set a
 * gauge to 0 before unlinking it if its part must go).
 */
void met_link(struct met_series *child, struct met_series *parent);

/* Updates are a loop over the parent chain. s may be NULL (a module
 * built without a registry); then they do nothing. */
/* counters */
void met_add(struct met_series *s, uint64_t n);
void met_inc(struct met_series *s);
/* gauges */
void met_set(struct met_series *s, int64_t v);
void met_gauge_add(struct met_series *s, int64_t d);
/* histograms: one observation (seconds for latency) */
void met_observe(struct met_series *s, double v);

/* reading (counters and gauges; a histogram's count); met_value of a
 * negative gauge is 0, read gauges with met_gauge_value; s may be NULL
 * (0) */
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
 * Several may be registered; they run in registration order, and a hook
 * may remove itself or another (metrics_off_collect) while they run.
 * metrics_off_collect removes the first hook with this fn and arg.
 */
void metrics_on_collect(struct metrics *m, void (*fn)(void *arg), void *arg);
void metrics_off_collect(struct metrics *m, void (*fn)(void *arg),
    void *arg);

/* metrics_process: register the standard process_* families (resident
 * memory, virtual memory, open and max fds, CPU seconds, start time),
 * read from /proc, getrusage and getrlimit at collection (0 where those
 * are missing). A second call does nothing. */
void metrics_process(struct metrics *m);

/* metrics_prometheus: run the collect hooks, set mgrok_metrics_series,
 * then append the text exposition format 0.0.4 of every family (HELP,
 * TYPE, samples; label values escaped) to out. Series are in creation
 * order; integers are printed as integers, reals in their shortest
 * round-trip form, histograms as cumulative _bucket{le=...} lines
 * ending with le="+Inf", then _sum and _count. */
void metrics_prometheus(struct metrics *m, struct evbuffer *out);

#endif
