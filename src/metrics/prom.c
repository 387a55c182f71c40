/* prom.c: the Prometheus text exposition format 0.0.4 of a registry. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "metrics/metrics.h"
#include "metrics/metrics_int.h"

/* the shortest of %.15g..%.17g that reads back as the same double, so
 * 0.1 is "0.1", not "0.10000000000000001"; the format's own spellings of
 * the infinities and NaN */
static void
fmt_double(char *buf, size_t size, double v)
{
	int prec;

	if (isnan(v)) {
		snprintf(buf, size, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (prec = 15; prec < 17; prec++) {
		snprintf(buf, size, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
	snprintf(buf, size, "%.17g", v);
}

/* HELP text escapes \ and newline; label values also " */
static void
add_escaped(struct evbuffer *out, const char *s, int quote)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		const char *esc = NULL;

		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (quote && *s == '"')
			esc = "\\\"";
		if (esc == NULL)
			continue;
		evbuffer_add(out, run, (size_t)(s - run));
		evbuffer_add(out, esc, 2);
		run = s + 1;
	}
	evbuffer_add(out, run, (size_t)(s - run));
}

/* {a="x",b="y"} with an optional extra le="..." label; nothing when
 * there is no label at all */
static void
add_labels(struct evbuffer *out, const struct met_series *s,
    const char *le)
{
	const struct met_family *f = s->f;
	unsigned i;

	if (f->nlabels == 0 && le == NULL)
		return;
	evbuffer_add(out, "{", 1);
	for (i = 0; i < f->nlabels; i++) {
		evbuffer_add_printf(out, "%s%s=\"", i ? "," : "",
		    f->lname[i]);
		add_escaped(out, s->val[i], 1);
		evbuffer_add(out, "\"", 1);
	}
	if (le != NULL)
		evbuffer_add_printf(out, "%sle=\"%s\"", f->nlabels ? "," : "",
		    le);
	evbuffer_add(out, "}", 1);
}

static void
add_scalar(struct evbuffer *out, const struct met_series *s)
{
	const struct met_family *f = s->f;
	char num[40];

	if (f->div > 0)
		fmt_double(num, sizeof(num), (f->kind == MET_GAUGE ?
		    (double)s->v.i : (double)s->v.u) / f->div);
	else if (f->kind == MET_GAUGE)
		snprintf(num, sizeof(num), "%" PRId64, s->v.i);
	else
		snprintf(num, sizeof(num), "%" PRIu64, s->v.u);
	evbuffer_add(out, f->name, strlen(f->name));
	add_labels(out, s, NULL);
	evbuffer_add_printf(out, " %s\n", num);
}

static void
add_histogram(struct evbuffer *out, const struct met_series *s)
{
	const struct met_family *f = s->f;
	uint64_t cum = 0;
	char num[40];
	size_t i;

	for (i = 0; i <= f->nbounds; i++) {
		cum += s->buckets[i];
		if (i < f->nbounds)
			fmt_double(num, sizeof(num), f->bounds[i]);
		else
			snprintf(num, sizeof(num), "+Inf");
		evbuffer_add_printf(out, "%s_bucket", f->name);
		add_labels(out, s, num);
		evbuffer_add_printf(out, " %" PRIu64 "\n", cum);
	}
	fmt_double(num, sizeof(num), s->sum);
	evbuffer_add_printf(out, "%s_sum", f->name);
	add_labels(out, s, NULL);
	evbuffer_add_printf(out, " %s\n", num);
	evbuffer_add_printf(out, "%s_count", f->name);
	add_labels(out, s, NULL);
	evbuffer_add_printf(out, " %" PRIu64 "\n", s->v.u);
}

void
metrics_prometheus(struct metrics *m, struct evbuffer *out)
{
	static const char *const kind[] = {
		[MET_COUNTER] = "counter",
		[MET_GAUGE] = "gauge",
		[MET_HISTOGRAM] = "histogram",
	};
	const struct met_family *f;
	const struct met_series *s;

	metrics_collect(m);
	for (f = m->first; f != NULL; f = f->next) {
		evbuffer_add_printf(out, "# HELP %s%s", f->name,
		    *f->help ? " " : "");
		add_escaped(out, f->help, 0);
		evbuffer_add_printf(out, "\n# TYPE %s %s\n", f->name,
		    kind[f->kind]);
		for (s = f->first; s != NULL; s = s->next) {
			if (f->kind == MET_HISTOGRAM)
				add_histogram(out, s);
			else
				add_scalar(out, s);
		}
	}
}
