/* inspect.c: the agent's inspector: capture store, connection records,
 * replay, HAR, and the API over them (see inspect.h and
 * docs/internals/inspect.md). */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <nettle/base64.h>

#include "client/inspect.h"
#include "http/http.h"
#include "metrics/events.h"
#include "metrics/jtext.h"
#include "metrics/metrics.h"
#include "relay/dial.h"
#include "relay/hrelay.h"
#include "util/log.h"
#include "util/mtime.h"
#include "util/xmalloc.h"
#include "web/web.h"

#define INS_PIPE 32                 /* pipelined requests followed */
#define INS_LIMIT_DEFAULT 50
#define INS_REPLAY_TIMEOUT_S 30
/* replays in flight at once: each holds a socket to the local service
 * until it is answered, also when the API's caller went away */
#define INS_REPLAYS_MAX 16
#define INS_REPLAY_DIAL_S 10
#define INS_REPLAY_READ_MAX (64u << 20) /* a replay's response, in all */
#define INS_URI_MAX 8192
#define INS_VALUE_MAX 8192
#define INS_REDACTED "[redacted]"

/* One message of an entry: its head, split, and its body's first bytes. */
struct ins_msg {
	int present;
	char *blob;                 /* the pieces below, NUL-terminated */
	size_t blob_cap;
	const char *method, *uri, *proto, *reason; /* into blob */
	int status;
	size_t nh, nlines;          /* headers, room for them */
	const char **hn, **hv;      /* nh names and values, into blob */
	unsigned char *red;         /* nh flags: the value was redacted */
	size_t head_len;            /* bytes of the head on the wire */
	uint8_t *body;
	size_t cap, captured;
	uint64_t size;
	int truncated;
};

struct ins_entry {
	TAILQ_ENTRY(ins_entry) link;
	uint64_t id, replay_of;
	char *tunnel, *remote;
	int64_t start_ms;
	uint64_t t0_us;
	double dur_ms;
	struct ins_msg rq, rs;
	char *error;
	size_t mem;                 /* what it accounts for in ins->bytes */
	unsigned holds;             /* a connection or a replay fills it */
	unsigned in_list : 1, done : 1;
};
TAILQ_HEAD(ins_entries, ins_entry);

struct inspect_conn {
	TAILQ_ENTRY(inspect_conn) link;
	struct inspect *ins;
	uint64_t id;
	char *tunnel, *type, *remote;
	char *sni;                  /* TLS: the ClientHello's server name */
	int64_t start_ms;
	uint64_t t0_us;
	double dur_ms;
	uint64_t in, out;
	const char *reason;
	unsigned in_list : 1, held : 1;
};
TAILQ_HEAD(ins_conns, inspect_conn);

/* The capture of one HTTP connection: requests awaiting their answer. */
struct ins_hconn {
	struct inspect *ins;
	char *tunnel, *remote;
	struct ins_entry *cur;      /* the request being received */
	struct ins_entry *q[INS_PIPE]; /* awaiting a response, oldest first */
	unsigned qh, qn;
	int lost;                   /* pipelined too deep: stop capturing */
	uint64_t replay_of;
};

struct ins_replay;
LIST_HEAD(ins_replays, ins_replay);

struct inspect {
	struct event_base *base;
	struct inspect_conf cf;
	struct metrics *m;
	struct evfeed *feed;
	struct ins_entries entries; /* newest first */
	size_t n, bytes;
	uint64_t next_id;
	struct ins_conns conns;     /* newest first */
	size_t nconns;
	uint64_t next_conn;
	struct ins_replays replays;
	unsigned nreplays;          /* in flight, at most INS_REPLAYS_MAX */
	struct inspect_source src;
	struct web *web;
	struct met_series *g_requests, *g_bytes, *c_dropped;
};

/* ---- small helpers ---- */

static int64_t
ins_wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static json_t *
jb64(const uint8_t *p, size_t n)
{
	char *out = xmalloc(BASE64_ENCODE_RAW_LENGTH(n) + 1);
	json_t *j;

	base64_encode_raw(out, n, p);
	out[BASE64_ENCODE_RAW_LENGTH(n)] = '\0';
	j = json_string(out);
	free(out);
	return j;
}

static void
id_str(char *buf, size_t cap, char pfx, uint64_t id)
{
	snprintf(buf, cap, "%c%llu", pfx, (unsigned long long)id);
}

static int
is_secret(const char *name)
{
	/* most headers are ruled out by their first letter */
	switch (name[0] | 0x20) {
	case 'a':
	case 'c':
	case 'p':
	case 's':
		break;
	default:
		return 0;
	}
	return strcasecmp(name, "authorization") == 0 ||
	    strcasecmp(name, "proxy-authorization") == 0 ||
	    strcasecmp(name, "cookie") == 0 ||
	    strcasecmp(name, "set-cookie") == 0;
}

/* ---- messages ---- */

static void
msg_free(struct ins_msg *m)
{
	free((void *)m->hn); /* the one allocation of the head */
	free(m->body);
	memset(m, 0, sizeof(*m));
}

static size_t
msg_mem(const struct ins_msg *m)
{
	return m->blob_cap + m->nlines * (2 * sizeof(char *) + 1) + m->cap;
}

/* Copy n bytes of s into the blob at *o, NUL-terminated; the start. */
static const char *
blob_put(struct ins_msg *m, size_t *o, const char *s, size_t n)
{
	char *d = m->blob + *o;

	memcpy(d, s, n);
	d[n] = '\0';
	*o += n + 1;
	return d;
}

/*
 * msg_head: split a raw head (validated by http_track) into m: the first
 * line's pieces and the header list, secrets redacted unless keep.
 */
static void
msg_head(struct ins_msg *m, const uint8_t *head, size_t hlen, int is_request,
    int keep)
{
	const char *s = (const char *)head, *end = s + hlen, *line, *eol;
	size_t lines = 0, o = 0, i = 0;

	msg_free(m);
	m->present = 1;
	m->head_len = hlen;
	for (const char *q = s; q < end; q++)
		lines += *q == '\n';
	/* one allocation: the arrays of names and values, then the pieces
	 * (every piece gets a NUL, a redacted value at most its marker),
	 * then the redaction flags */
	if (lines == 0)
		lines = 1;
	{
		size_t arrays = 2 * lines * sizeof(char *);
		size_t pieces = hlen + 4 + lines * (sizeof(INS_REDACTED) + 1) +
		    16;
		char *all = xmalloc(arrays + pieces + lines);
		m->hn = (const char **)(void *)all;
		m->hv = m->hn + lines;
		m->blob = all + arrays;
		m->red = (unsigned char *)m->blob + pieces;
		memset(m->red, 0, lines);
		m->blob_cap = pieces;
		m->nlines = lines;
	}
	for (line = s; line < end; line = eol + 1) {
		const char *le, *colon, *v;
		if ((eol = memchr(line, '\n', (size_t)(end - line))) == NULL)
			eol = end;
		le = eol;
		if (le > line && le[-1] == '\r')
			le--;
		if (le == line)
			break; /* the blank line ends the head */
		if (line == s) {
			/* METHOD SP URI SP PROTO, or PROTO SP STATUS SP
			 * REASON */
			const char *a = memchr(line, ' ', (size_t)(le - line));
			const char *b = a ? memchr(a + 1, ' ',
			    (size_t)(le - a - 1)) : NULL;
			if (a == NULL)
				a = le;
			if (is_request) {
				const char *ue = b ? b : le;
				m->method = blob_put(m, &o, line,
				    (size_t)(a - line));
				m->uri = blob_put(m, &o, a < le ? a + 1 : le,
				    a < le ? (size_t)(ue - a - 1) : 0);
				m->proto = blob_put(m, &o, b ? b + 1 : le,
				    b ? (size_t)(le - b - 1) : 0);
			} else {
				m->proto = blob_put(m, &o, line,
				    (size_t)(a - line));
				m->status = a < le ? atoi(a + 1) : 0;
				m->reason = blob_put(m, &o, b ? b + 1 : le,
				    b ? (size_t)(le - b - 1) : 0);
			}
			continue;
		}
		if (*line == ' ' || *line == '\t' || i >= lines)
			continue; /* obsolete folding: not a header of its own */
		if ((colon = memchr(line, ':', (size_t)(le - line))) == NULL)
			continue;
		m->hn[i] = blob_put(m, &o, line, (size_t)(colon - line));
		v = colon + 1;
		while (v < le && (*v == ' ' || *v == '\t'))
			v++;
		while (le > v && (le[-1] == ' ' || le[-1] == '\t'))
			le--;
		if (!keep && is_secret(m->hn[i])) {
			m->hv[i] = blob_put(m, &o, INS_REDACTED,
			    strlen(INS_REDACTED));
			m->red[i] = 1;
		} else {
			m->hv[i] = blob_put(m, &o, v, (size_t)(le - v));
		}
		i++;
	}
	m->nh = i;
	if (m->method == NULL && is_request)
		m->method = m->uri = m->proto = blob_put(m, &o, "", 0);
	if (m->proto == NULL && !is_request)
		m->proto = m->reason = blob_put(m, &o, "", 0);
}

static json_t *
msg_headers_json(const struct ins_msg *m)
{
	json_t *a = json_array();

	for (size_t i = 0; i < m->nh; i++)
		json_array_append_new(a, json_pack("[oo]", jtext(m->hn[i]),
		    jtext(m->hv[i])));
	return a;
}

static json_t *
msg_body_json(const struct ins_msg *m)
{
	return json_pack("{sIsIsbso}", "size", (json_int_t)m->size,
	    "captured", (json_int_t)m->captured, "truncated", m->truncated,
	    "base64", jb64(m->body, m->captured));
}

static const char *
msg_header(const struct ins_msg *m, const char *name)
{
	for (size_t i = 0; i < m->nh; i++)
		if (strcasecmp(m->hn[i], name) == 0)
			return m->hv[i];
	return NULL;
}

/* ---- the store ---- */

static size_t
entry_mem(const struct ins_entry *e)
{
	return sizeof(*e) + (e->tunnel ? strlen(e->tunnel) + 1 : 0) +
	    (e->remote ? strlen(e->remote) + 1 : 0) +
	    (e->error ? strlen(e->error) + 1 : 0) + msg_mem(&e->rq) +
	    msg_mem(&e->rs);
}

static void
ins_gauges(struct inspect *ins)
{
	met_set(ins->g_requests, (int64_t)ins->n);
	met_set(ins->g_bytes, (int64_t)ins->bytes);
}

static void
entry_free(struct ins_entry *e)
{
	msg_free(&e->rq);
	msg_free(&e->rs);
	free(e->tunnel);
	free(e->remote);
	free(e->error);
	free(e);
}

/* Take e off the list (evicted or cleared); freed once nobody holds it. */
static void
entry_unlist(struct inspect *ins, struct ins_entry *e)
{
	if (!e->in_list)
		return;
	TAILQ_REMOVE(&ins->entries, e, link);
	e->in_list = 0;
	ins->n--;
	ins->bytes -= e->mem;
	e->mem = 0;
	if (e->holds == 0)
		entry_free(e);
}

static void
entry_release(struct ins_entry *e)
{
	if (--e->holds == 0 && !e->in_list)
		entry_free(e);
}

/* Drop the oldest entries until the bounds hold; keep is spared. */
static void
ins_trim(struct inspect *ins, const struct ins_entry *keep)
{
	struct ins_entry *e, *prev;

	for (e = TAILQ_LAST(&ins->entries, ins_entries); e != NULL &&
	    (ins->n > ins->cf.max_requests || ins->bytes > ins->cf.max_bytes);
	    e = prev) {
		prev = TAILQ_PREV(e, ins_entries, link);
		if (e == keep)
			continue;
		entry_unlist(ins, e);
		met_inc(ins->c_dropped);
	}
	ins_gauges(ins);
}

/* e changed size: account for it and trim the others. */
static void
entry_account(struct inspect *ins, struct ins_entry *e)
{
	size_t now;

	if (!e->in_list)
		return;
	now = entry_mem(e);
	ins->bytes = ins->bytes - e->mem + now;
	e->mem = now;
	ins_trim(ins, e);
}

static struct ins_entry *
entry_new(struct inspect *ins, const char *tunnel, const char *remote)
{
	struct ins_entry *e = xcalloc(1, sizeof(*e));

	e->id = ++ins->next_id;
	e->tunnel = xstrdup(tunnel);
	e->remote = remote ? xstrdup(remote) : NULL;
	e->start_ms = ins_wall_ms();
	e->t0_us = mtime_us();
	e->holds = 1;
	if (ins->cf.max_requests == 0) {
		/* nothing is kept: capture into a detached entry */
		return e;
	}
	TAILQ_INSERT_HEAD(&ins->entries, e, link);
	e->in_list = 1;
	ins->n++;
	entry_account(ins, e);
	return e;
}

/* Append body bytes to m, up to the per-body and the total bounds. */
static void
entry_body(struct inspect *ins, struct ins_entry *e, struct ins_msg *m,
    const uint8_t *p, size_t n)
{
	size_t room, want, cap;

	m->size += n;
	if (!e->in_list || m->truncated)
		return;
	room = ins->cf.body_max > m->captured ? ins->cf.body_max -
	    m->captured : 0;
	want = n < room ? n : room;
	if (want < n)
		m->truncated = 1;
	if (want == 0)
		return;
	if (m->captured + want > m->cap) {
		cap = m->cap ? m->cap * 2 : 1024;
		while (cap < m->captured + want)
			cap *= 2;
		if (cap > ins->cf.body_max)
			cap = ins->cf.body_max;
		/* an entry never outgrows the whole store */
		if (e->mem + (cap - m->cap) > ins->cf.max_bytes) {
			m->truncated = 1;
			return;
		}
		m->body = xrealloc(m->body, cap);
		m->cap = cap;
	}
	memcpy(m->body + m->captured, p, want);
	m->captured += want;
	entry_account(ins, e);
}

static void
entry_emit(struct inspect *ins, struct ins_entry *e)
{
	char id[24];
	json_t *d;

	/* a request event costs a JSON object and its text: only while a
	 * stream listens (a page that joins later reads the store) */
	if (ins->feed == NULL || evfeed_nsubscribers(ins->feed) == 0)
		return;
	id_str(id, sizeof(id), 'r', e->id);
	d = json_pack("{sosssososososfsosIsI}",
	    "tunnel", jtext(e->tunnel), "id", id,
	    "name", jtext(e->tunnel),
	    "method", jtext(e->rq.method), "uri", jtext(e->rq.uri),
	    "status", e->rs.present ? json_integer(e->rs.status) :
	    json_null(), "duration_ms", e->dur_ms,
	    "remote_addr", jtext(e->remote),
	    "bytes_in", (json_int_t)(e->rq.head_len + e->rq.size),
	    "bytes_out", (json_int_t)(e->rs.head_len + e->rs.size));
	if (d == NULL)
		return;
	evfeed_emit(ins->feed, "request", d);
}

/* The request e ended: answered (err NULL) or not. Drops the hold. */
static void
entry_finish(struct inspect *ins, struct ins_entry *e, const char *err)
{
	if (!e->done) {
		e->done = 1;
		e->dur_ms = (double)(mtime_us() - e->t0_us) / 1000.0;
		if (err != NULL && e->error == NULL)
			e->error = xstrdup(err);
		entry_account(ins, e);
		entry_emit(ins, e);
	}
	entry_release(e);
}

static json_t *
entry_json(const struct ins_entry *e)
{
	char id[24], rid[24];
	json_t *j, *rq, *rs = json_null();

	id_str(id, sizeof(id), 'r', e->id);
	id_str(rid, sizeof(rid), 'r', e->replay_of);
	rq = json_pack("{sososososo}", "method", jtext(e->rq.method), "uri",
	    jtext(e->rq.uri), "proto", jtext(e->rq.proto), "headers",
	    msg_headers_json(&e->rq), "body", msg_body_json(&e->rq));
	if (e->rs.present)
		rs = json_pack("{sisosososo}", "status", e->rs.status,
		    "reason", jtext(e->rs.reason), "proto", jtext(e->rs.proto),
		    "headers", msg_headers_json(&e->rs), "body",
		    msg_body_json(&e->rs));
	j = json_pack("{sssosIsosososososo}", "id", id, "tunnel",
	    jtext(e->tunnel), "start", (json_int_t)e->start_ms,
	    "duration_ms", e->done ? json_real(e->dur_ms) : json_null(),
	    "remote_addr", jtext(e->remote), "replay_of", e->replay_of ?
	    json_string(rid) : json_null(), "request", rq, "response", rs,
	    "error", jtext(e->error));
	return j;
}

static struct ins_entry *
ins_find(struct inspect *ins, const char *id)
{
	struct ins_entry *e;
	char *end;
	unsigned long long n;

	if (id == NULL || id[0] != 'r' || !isdigit((unsigned char)id[1]))
		return NULL;
	errno = 0;
	n = strtoull(id + 1, &end, 10);
	if (*end != '\0' || errno)
		return NULL;
	TAILQ_FOREACH(e, &ins->entries, link)
		if (e->id == n)
			return e;
	return NULL;
}

/* ---- the observer ---- */

static void
hc_req_head(void *arg, const struct http_head *h, const uint8_t *head,
    size_t hlen)
{
	struct ins_hconn *hc = arg;
	struct inspect *ins = hc->ins;
	struct ins_entry *e;

	(void)h;
	hc->cur = NULL;
	if (hc->lost)
		return;
	if (hc->qn == INS_PIPE) {
		hc->lost = 1; /* the order is lost from here: stop */
		return;
	}
	e = entry_new(ins, hc->tunnel, hc->remote);
	e->replay_of = hc->replay_of;
	msg_head(&e->rq, head, hlen, 1, ins->cf.capture_secrets);
	entry_account(ins, e);
	e->holds++; /* cur's, until req_end */
	hc->cur = e;
	hc->q[(hc->qh + hc->qn++) % INS_PIPE] = e;
}

static void
hc_req_body(void *arg, const uint8_t *p, size_t n)
{
	struct ins_hconn *hc = arg;

	if (hc->cur)
		entry_body(hc->ins, hc->cur, &hc->cur->rq, p, n);
}

static void
hc_req_end(void *arg)
{
	struct ins_hconn *hc = arg;

	if (hc->cur)
		entry_release(hc->cur);
	hc->cur = NULL;
}

static struct ins_entry *
hc_front(struct ins_hconn *hc)
{
	return hc->qn ? hc->q[hc->qh] : NULL;
}

static void
hc_resp_head(void *arg, const struct http_head *h, const uint8_t *head,
    size_t hlen)
{
	struct ins_hconn *hc = arg;
	struct ins_entry *e = hc_front(hc);

	(void)h;
	if (e == NULL || hc->lost)
		return;
	msg_head(&e->rs, head, hlen, 0, hc->ins->cf.capture_secrets);
	entry_account(hc->ins, e);
}

static void
hc_resp_body(void *arg, const uint8_t *p, size_t n)
{
	struct ins_hconn *hc = arg;
	struct ins_entry *e = hc_front(hc);

	if (e != NULL && !hc->lost)
		entry_body(hc->ins, e, &e->rs, p, n);
}

static void
hc_resp_end(void *arg)
{
	struct ins_hconn *hc = arg;
	struct ins_entry *e = hc_front(hc);

	if (e == NULL || hc->lost)
		return;
	hc->qh = (hc->qh + 1) % INS_PIPE;
	hc->qn--;
	entry_finish(hc->ins, e, NULL);
}

/* The connection ended: requests still waiting got no (whole) answer. */
static void
hc_end(struct ins_hconn *hc, const char *why)
{
	if (hc->cur) {
		entry_release(hc->cur);
		hc->cur = NULL;
	}
	while (hc->qn > 0) {
		struct ins_entry *e = hc->q[hc->qh];
		hc->qh = (hc->qh + 1) % INS_PIPE;
		hc->qn--;
		entry_finish(hc->ins, e, e->rs.present ? (why ? why :
		    "the response was cut short") : (why ? why :
		    "the connection closed before a response"));
	}
}

static void
hc_free(struct ins_hconn *hc)
{
	free(hc->tunnel);
	free(hc->remote);
	free(hc);
}

static void
hc_close(void *arg, const char *why)
{
	struct ins_hconn *hc = arg;

	hc_end(hc, why);
	hc_free(hc);
}

static const struct hrelay_obs ins_obs = {
	.req_head = hc_req_head,
	.req_body = hc_req_body,
	.req_end = hc_req_end,
	.resp_head = hc_resp_head,
	.resp_body = hc_resp_body,
	.resp_end = hc_resp_end,
	.close = hc_close,
};

const struct hrelay_obs *
inspect_http_obs(void)
{
	return &ins_obs;
}

static struct ins_hconn *
hc_new(struct inspect *ins, const char *tunnel, const char *remote_addr)
{
	struct ins_hconn *hc = xcalloc(1, sizeof(*hc));

	hc->ins = ins;
	hc->tunnel = xstrdup(tunnel);
	hc->remote = remote_addr ? xstrdup(remote_addr) : NULL;
	return hc;
}

void *
inspect_http_open(struct inspect *ins, const char *tunnel,
    const char *remote_addr)
{
	return hc_new(ins, tunnel, remote_addr);
}

/* ---- connection records ---- */

static void
conn_free(struct inspect_conn *ic)
{
	free(ic->tunnel);
	free(ic->type);
	free(ic->remote);
	free(ic->sni);
	free(ic);
}

void
inspect_conn_set_sni(struct inspect_conn *ic, const char *sni)
{
	free(ic->sni);
	ic->sni = xstrdup(sni);
}

static void
conn_unlist(struct inspect *ins, struct inspect_conn *ic)
{
	if (!ic->in_list)
		return;
	TAILQ_REMOVE(&ins->conns, ic, link);
	ic->in_list = 0;
	ins->nconns--;
	if (!ic->held)
		conn_free(ic);
}

static void
conn_trim(struct inspect *ins)
{
	while (ins->nconns > ins->cf.max_conns)
		conn_unlist(ins, TAILQ_LAST(&ins->conns, ins_conns));
}

struct inspect_conn *
inspect_conn_open(struct inspect *ins, const char *tunnel, const char *type,
    const char *remote_addr)
{
	struct inspect_conn *ic = xcalloc(1, sizeof(*ic));

	ic->ins = ins;
	ic->id = ++ins->next_conn;
	ic->tunnel = xstrdup(tunnel);
	ic->type = xstrdup(type);
	ic->remote = remote_addr ? xstrdup(remote_addr) : NULL;
	ic->start_ms = ins_wall_ms();
	ic->t0_us = mtime_us();
	ic->held = 1;
	if (ins->cf.max_conns > 0) {
		TAILQ_INSERT_HEAD(&ins->conns, ic, link);
		ic->in_list = 1;
		ins->nconns++;
		conn_trim(ins);
	}
	return ic;
}

void
inspect_conn_close(struct inspect_conn *ic, uint64_t bytes_in,
    uint64_t bytes_out, const char *reason)
{
	struct inspect *ins = ic->ins;
	char id[24];

	ic->in = bytes_in;
	ic->out = bytes_out;
	ic->reason = reason;
	ic->dur_ms = (double)(mtime_us() - ic->t0_us) / 1000.0;
	ic->held = 0;
	if (ins->feed) {
		id_str(id, sizeof(id), 'c', ic->id);
		evfeed_emit(ins->feed, "connection_closed", json_pack(
		    "{sososssosfsIsIssss}", "tunnel", jtext(ic->tunnel),
		    "name", jtext(ic->tunnel), "tunnel_type", ic->type,
		    "remote_addr", jtext(ic->remote), "duration_ms", ic->dur_ms,
		    "bytes_in", (json_int_t)ic->in, "bytes_out",
		    (json_int_t)ic->out, "reason", reason, "id", id));
	}
	if (!ic->in_list)
		conn_free(ic); /* evicted while it ran */
}

static json_t *
conn_json(const struct inspect_conn *ic)
{
	char id[24];
	double dur = ic->held ? (double)(mtime_us() - ic->t0_us) / 1000.0 :
	    ic->dur_ms;

	id_str(id, sizeof(id), 'c', ic->id);
	return json_pack("{sssosssosIsfsIsIsososb}", "id", id, "tunnel",
	    jtext(ic->tunnel), "type", ic->type, "remote_addr",
	    jtext(ic->remote), "start", (json_int_t)ic->start_ms,
	    "duration_ms", dur, "bytes_in", (json_int_t)ic->in, "bytes_out",
	    (json_int_t)ic->out, "close_reason", ic->reason ?
	    json_string(ic->reason) : json_null(), "sni", jtext(ic->sni),
	    "active", ic->held);
}

json_t *
inspect_connections_json(struct inspect *ins, size_t limit,
    const char *tunnel)
{
	json_t *a = json_array();
	struct inspect_conn *ic;
	size_t n = 0;

	if (limit == 0)
		limit = INS_LIMIT_DEFAULT;
	TAILQ_FOREACH(ic, &ins->conns, link) {
		if (n >= limit)
			break;
		if (tunnel && strcmp(tunnel, ic->tunnel) != 0)
			continue;
		json_array_append_new(a, conn_json(ic));
		n++;
	}
	return json_pack("{so}", "connections", a);
}

/* ---- life cycle ---- */

struct inspect *
inspect_new(struct event_base *base, const struct inspect_conf *cf,
    struct metrics *m, struct evfeed *feed)
{
	struct inspect *ins = xcalloc(1, sizeof(*ins));

	ins->base = base;
	ins->cf = *cf;
	ins->m = m;
	ins->feed = feed;
	TAILQ_INIT(&ins->entries);
	TAILQ_INIT(&ins->conns);
	LIST_INIT(&ins->replays);
	ins->g_requests = met_at0(met_gauge(m, "mgrok_inspect_requests",
	    "HTTP requests kept by the inspector", NULL));
	ins->g_bytes = met_at0(met_gauge(m, "mgrok_inspect_bytes",
	    "bytes of captures the inspector keeps (heads, bodies and "
	    "bookkeeping)", NULL));
	ins->c_dropped = met_at0(met_counter(m, "mgrok_inspect_dropped_total",
	    "captured requests dropped to stay within the inspector's "
	    "bounds", NULL));
	ins_gauges(ins);
	return ins;
}

void
inspect_set_conf(struct inspect *ins, const struct inspect_conf *cf)
{
	ins->cf = *cf;
	ins_trim(ins, NULL);
	conn_trim(ins);
}

size_t
inspect_nrequests(const struct inspect *ins)
{
	return ins->n;
}

size_t
inspect_bytes(const struct inspect *ins)
{
	return ins->bytes;
}

void
inspect_clear(struct inspect *ins)
{
	struct ins_entry *e;

	while ((e = TAILQ_FIRST(&ins->entries)) != NULL)
		entry_unlist(ins, e);
	ins_gauges(ins);
}

json_t *
inspect_requests_json(struct inspect *ins, size_t limit, const char *tunnel)
{
	json_t *a = json_array();
	struct ins_entry *e;
	size_t n = 0;

	if (limit == 0)
		limit = INS_LIMIT_DEFAULT;
	TAILQ_FOREACH(e, &ins->entries, link) {
		if (n >= limit)
			break;
		if (tunnel && strcmp(tunnel, e->tunnel) != 0)
			continue;
		json_array_append_new(a, entry_json(e));
		n++;
	}
	return json_pack("{so}", "requests", a);
}

/* ---- HAR 1.2 ---- */

static json_t *
har_headers(const struct ins_msg *m)
{
	json_t *a = json_array();

	for (size_t i = 0; i < m->nh; i++)
		json_array_append_new(a, json_pack("{soso}", "name",
		    jtext(m->hn[i]), "value", jtext(m->hv[i])));
	return a;
}

static json_t *
har_query(const char *uri)
{
	json_t *a = json_array();
	const char *q = uri ? strchr(uri, '?') : NULL;

	while (q != NULL && *q) {
		const char *p = q + 1, *amp = strchr(p, '&'), *eq;
		size_t n = amp ? (size_t)(amp - p) : strlen(p);
		char *frag = strchr(p, '#');
		if (frag && (size_t)(frag - p) < n)
			n = (size_t)(frag - p);
		eq = memchr(p, '=', n);
		if (n > 0)
			json_array_append_new(a, json_pack("{soso}", "name",
			    jtextn(p, eq ? (size_t)(eq - p) : n), "value",
			    eq ? jtextn(eq + 1, n - (size_t)(eq - p) - 1) :
			    json_string("")));
		q = amp;
		if (frag && (amp == NULL || frag < amp))
			break;
	}
	return a;
}

static json_t *
har_entry(const struct ins_entry *e)
{
	char when[64], url[INS_URI_MAX + 400];
	const char *host = msg_header(&e->rq, "host");
	const char *ctq = msg_header(&e->rq, "content-type");
	const char *cts = e->rs.present ? msg_header(&e->rs,
	    "content-type") : NULL;
	const char *loc = e->rs.present ? msg_header(&e->rs, "location") :
	    NULL;
	time_t sec = (time_t)(e->start_ms / 1000);
	struct tm tm;
	json_t *rq, *rs, *content;
	double dur = e->done ? e->dur_ms : 0;

	gmtime_r(&sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof(when) - strlen(when), ".%03dZ",
	    (int)(e->start_ms % 1000));
	snprintf(url, sizeof(url), "http://%s%s", host ? host : e->tunnel,
	    e->rq.uri ? e->rq.uri : "/");
	rq = json_pack("{sososososososIsI}", "method", jtext(e->rq.method),
	    "url", jtext(url), "httpVersion", jtext(e->rq.proto), "headers",
	    har_headers(&e->rq), "queryString", har_query(e->rq.uri),
	    "cookies", json_array(), "headersSize",
	    (json_int_t)e->rq.head_len, "bodySize", (json_int_t)e->rq.size);
	if (e->rq.size > 0) {
		json_t *pd;
		if (jtext_utf8_ok(e->rq.body, e->rq.captured))
			pd = json_pack("{soso}", "mimeType", jtext(ctq ? ctq :
			    "application/octet-stream"), "text", jtextn(
			    (const char *)e->rq.body, e->rq.captured));
		else
			pd = json_pack("{soso}", "mimeType", jtext(ctq ? ctq :
			    "application/octet-stream"), "text",
			    jb64(e->rq.body, e->rq.captured));
		json_object_set_new(rq, "postData", pd);
	}
	if (e->rs.captured == 0 || jtext_utf8_ok(e->rs.body, e->rs.captured))
		content = json_pack("{sIsoso}", "size", (json_int_t)e->rs.size,
		    "mimeType", jtext(cts ? cts : ""), "text",
		    jtextn((const char *)e->rs.body, e->rs.captured));
	else
		content = json_pack("{sIsososs}", "size",
		    (json_int_t)e->rs.size, "mimeType", jtext(cts ? cts : ""),
		    "text", jb64(e->rs.body, e->rs.captured), "encoding",
		    "base64");
	rs = json_pack("{sisososososososIsI}", "status", e->rs.present ?
	    e->rs.status : 0, "statusText", jtext(e->rs.present ?
	    e->rs.reason : ""), "httpVersion", jtext(e->rs.present ?
	    e->rs.proto : ""), "headers", har_headers(&e->rs), "cookies",
	    json_array(), "content", content, "redirectURL", jtext(loc ? loc :
	    ""), "headersSize", e->rs.present ? (json_int_t)e->rs.head_len :
	    (json_int_t)-1, "bodySize", e->rs.present ?
	    (json_int_t)e->rs.size : (json_int_t)-1);
	return json_pack("{sssfsososos{sisfsi}}", "startedDateTime", when,
	    "time", dur, "request", rq, "response", rs, "cache",
	    json_object(), "timings", "send", 0, "wait", dur, "receive", 0);
}

json_t *
inspect_har_json(struct inspect *ins)
{
	json_t *a = json_array();
	struct ins_entry *e;

	TAILQ_FOREACH(e, &ins->entries, link)
		json_array_append_new(a, har_entry(e));
	return json_pack("{s{sss{ssss}so}}", "log", "version", "1.2",
	    "creator", "name", "mgrok", "version", "0.1.0", "entries", a);
}

/* ---- replay input ---- */

static int
tchar(int c)
{
	return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int
is_token(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!tchar((unsigned char)s[i]))
			return 0;
	return 1;
}

static int
rp_fail(int *code, int c, char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int
rp_fail(int *code, int c, char *err, size_t errcap, const char *fmt, ...)
{
	va_list ap;

	*code = c;
	va_start(ap, fmt);
	vsnprintf(err, errcap, fmt, ap);
	va_end(ap);
	return -1;
}

/* A header value: no CR, LF or NUL, bounded. */
static int
value_ok(const char *v, size_t n)
{
	if (n > INS_VALUE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
			return 0;
	return 1;
}

int
inspect_replay_parse(const char *json, size_t len,
    const struct inspect_req_view *orig, const char *orig_id,
    struct evbuffer *out, int *code, char *err, size_t errcap)
{
	json_error_t je;
	json_t *j = NULL, *v, *hdrs = NULL;
	const char *method = orig->method, *uri = orig->uri;
	const uint8_t *body = orig->body;
	uint8_t *decoded = NULL;
	size_t body_len = orig->body_len, mlen, ulen, head = 0;
	int body_given = 0, rc = -1;
	struct evbuffer *tmp = evbuffer_new();

	j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (j == NULL || !json_is_object(j)) {
		rc = rp_fail(code, 400, err, errcap, "the body is not a JSON "
		    "object%s%s", j ? "" : ": ", j ? "" : je.text);
		goto out;
	}
	if ((v = json_object_get(j, "method")) != NULL) {
		if (!json_is_string(v)) {
			rc = rp_fail(code, 400, err, errcap,
			    "method: not a string");
			goto out;
		}
		method = json_string_value(v);
		if (!is_token(method, json_string_length(v)) ||
		    json_string_length(v) > 23) {
			rc = rp_fail(code, 400, err, errcap, "method: not an "
			    "HTTP method token (up to 23 letters)");
			goto out;
		}
	}
	if ((v = json_object_get(j, "uri")) != NULL) {
		if (!json_is_string(v)) {
			rc = rp_fail(code, 400, err, errcap,
			    "uri: not a string");
			goto out;
		}
		uri = json_string_value(v);
		ulen = json_string_length(v);
		if (ulen == 0 || uri[0] != '/' || ulen > INS_URI_MAX) {
			rc = rp_fail(code, 400, err, errcap, "uri: must start "
			    "with '/' (at most %u bytes)", INS_URI_MAX);
			goto out;
		}
		for (size_t i = 0; i < ulen; i++)
			if ((unsigned char)uri[i] <= ' ' ||
			    uri[i] == 0x7f) {
				rc = rp_fail(code, 400, err, errcap, "uri: no "
				    "spaces or control characters");
				goto out;
			}
	}
	if ((v = json_object_get(j, "headers")) != NULL) {
		if (!json_is_array(v) ||
		    json_array_size(v) > INSPECT_REPLAY_HEADERS_MAX) {
			rc = rp_fail(code, 400, err, errcap, "headers: a list "
			    "of [name, value] (at most %d)",
			    INSPECT_REPLAY_HEADERS_MAX);
			goto out;
		}
		for (size_t i = 0; i < json_array_size(v); i++) {
			json_t *h = json_array_get(v, i), *n, *val;
			if (!json_is_array(h) || json_array_size(h) != 2 ||
			    !json_is_string(n = json_array_get(h, 0)) ||
			    !json_is_string(val = json_array_get(h, 1))) {
				rc = rp_fail(code, 400, err, errcap,
				    "headers[%zu]: not [name, value] strings",
				    i);
				goto out;
			}
			if (!is_token(json_string_value(n),
			    json_string_length(n)) ||
			    json_string_length(n) > 256) {
				rc = rp_fail(code, 400, err, errcap,
				    "headers[%zu]: the name is not a token", i);
				goto out;
			}
			if (!value_ok(json_string_value(val),
			    json_string_length(val))) {
				rc = rp_fail(code, 400, err, errcap,
				    "headers[%zu]: the value has CR, LF or NUL "
				    "or is too long", i);
				goto out;
			}
		}
		hdrs = v;
	}
	v = json_object_get(j, "body");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_string(v)) {
			rc = rp_fail(code, 400, err, errcap,
			    "body: not a string");
			goto out;
		}
		body = (const uint8_t *)json_string_value(v);
		body_len = json_string_length(v);
		body_given = 1;
	}
	v = json_object_get(j, "body_base64");
	if (v != NULL && !json_is_null(v)) {
		struct base64_decode_ctx ctx;
		size_t n;
		if (body_given || !json_is_string(v)) {
			rc = rp_fail(code, 400, err, errcap, "body_base64: "
			    "a string, and not with body");
			goto out;
		}
		n = json_string_length(v);
		decoded = xmalloc(BASE64_DECODE_LENGTH(n) + 1);
		base64_decode_init(&ctx);
		body_len = BASE64_DECODE_LENGTH(n) + 1;
		if (!base64_decode_update(&ctx, &body_len, decoded, n,
		    json_string_value(v)) || !base64_decode_final(&ctx)) {
			rc = rp_fail(code, 400, err, errcap,
			    "body_base64: not base64");
			goto out;
		}
		body = decoded;
		body_given = 1;
	}
	if (body_len > INSPECT_REPLAY_BODY_MAX) {
		rc = rp_fail(code, 400, err, errcap, "body: more than %u bytes",
		    INSPECT_REPLAY_BODY_MAX);
		goto out;
	}
	if (!body_given && orig->truncated) {
		rc = rp_fail(code, 409, err, errcap, "request %s's body was "
		    "truncated at %zu bytes: it cannot be replayed unmodified",
		    orig_id, orig->body_len);
		goto out;
	}
	mlen = strlen(method);
	evbuffer_add_printf(tmp, "%s %s %s\r\n", method, uri,
	    orig->proto && orig->proto[0] ? orig->proto : "HTTP/1.1");
	(void)mlen;
	if (hdrs != NULL) {
		for (size_t i = 0; i < json_array_size(hdrs); i++) {
			json_t *h = json_array_get(hdrs, i);
			const char *n = json_string_value(json_array_get(h,
			    0));
			if (body_given && (strcasecmp(n, "content-length") ==
			    0 || strcasecmp(n, "transfer-encoding") == 0))
				continue;
			if (orig->host_rewrite &&
			    strcasecmp(n, "host") == 0) {
				evbuffer_add_printf(tmp, "Host: %s\r\n",
				    orig->host_rewrite);
				continue;
			}
			evbuffer_add_printf(tmp, "%s: %s\r\n", n,
			    json_string_value(json_array_get(h, 1)));
		}
	} else {
		for (size_t i = 0; i < orig->nheaders; i++) {
			const char *n = orig->names[i];
			if (orig->redacted && orig->redacted[i])
				continue; /* not ours to send again */
			if (body_given && (strcasecmp(n, "content-length") ==
			    0 || strcasecmp(n, "transfer-encoding") == 0))
				continue;
			if (!is_token(n, strlen(n)) ||
			    !value_ok(orig->values[i],
			    strlen(orig->values[i])))
				continue;
			if (orig->host_rewrite &&
			    strcasecmp(n, "host") == 0) {
				evbuffer_add_printf(tmp, "Host: %s\r\n",
				    orig->host_rewrite);
				continue;
			}
			evbuffer_add_printf(tmp, "%s: %s\r\n", n,
			    orig->values[i]);
		}
	}
	if (body_given)
		evbuffer_add_printf(tmp, "Content-Length: %zu\r\n", body_len);
	evbuffer_add(tmp, "\r\n", 2);
	head = evbuffer_get_length(tmp);
	if (head > HTTP_HEAD_MAX) {
		rc = rp_fail(code, 400, err, errcap, "the request head would "
		    "be %zu bytes, more than %d", head, HTTP_HEAD_MAX);
		goto out;
	}
	if (body_len > 0)
		evbuffer_add(tmp, body, body_len);
	evbuffer_add_buffer(out, tmp);
	rc = 0;
out:
	evbuffer_free(tmp);
	free(decoded);
	json_decref(j);
	return rc;
}

/* ---- replay: the request to the local service ---- */

struct ins_replay {
	LIST_ENTRY(ins_replay) link;
	struct inspect *ins;
	struct evhttp_request *req;  /* the API call waiting, or NULL */
	struct ins_hconn *hc;
	struct ins_entry *e;         /* the new entry (held) */
	struct addrinfo *ai;
	struct dial *dial;
	int fd;
	struct event *ev, *timer;
	struct evbuffer *out;
	struct http_track *rs;
	uint64_t read_total;
	int head_seen, is_head;
};

static void rp_finish(struct ins_replay *rp, const char *why);

/* ai_copy: the stream addresses of ai in our own allocations (the
 * tunnel's list may go with a reload while a replay dials); ai_free */
static struct addrinfo *
ai_copy(const struct addrinfo *ai)
{
	struct addrinfo *head = NULL, **tail = &head;

	for (; ai != NULL; ai = ai->ai_next) {
		struct addrinfo *n;
		if (ai->ai_addr == NULL || ai->ai_addrlen >
		    sizeof(struct sockaddr_storage))
			continue;
		n = xcalloc(1, sizeof(*n) + sizeof(struct sockaddr_storage));
		n->ai_family = ai->ai_family;
		n->ai_socktype = ai->ai_socktype;
		n->ai_protocol = ai->ai_protocol;
		n->ai_addrlen = ai->ai_addrlen;
		n->ai_addr = (struct sockaddr *)(void *)(n + 1);
		memcpy(n->ai_addr, ai->ai_addr, ai->ai_addrlen);
		*tail = n;
		tail = &n->ai_next;
	}
	return head;
}

static void
ai_free(struct addrinfo *ai)
{
	struct addrinfo *next;

	for (; ai != NULL; ai = next) {
		next = ai->ai_next;
		free(ai);
	}
}

static void
rp_free(struct ins_replay *rp)
{
	LIST_REMOVE(rp, link);
	rp->ins->nreplays--;
	dial_cancel(rp->dial);
	if (rp->ev)
		event_free(rp->ev);
	if (rp->timer)
		event_free(rp->timer);
	if (rp->fd >= 0)
		close(rp->fd);
	ai_free(rp->ai);
	evbuffer_free(rp->out);
	http_track_free(rp->rs);
	free(rp);
}

/* Parse what came back; 1 when the response ended. */
static int
rp_parse(struct ins_replay *rp, const uint8_t *p, size_t n)
{
	while (n > 0) {
		struct http_head h;
		size_t used = n;
		enum http_track_ev ev;

		if (rp->is_head)
			http_track_expect_no_body(rp->rs);
		ev = http_track_feed(rp->rs, p, n, &used, &h);
		if (ev == HTTP_T_HEAD || ev == HTTP_T_UPGRADE) {
			if (h.status >= 100 && h.status < 200 &&
			    h.status != 101) {
				/* interim: skip it */
			} else {
				const uint8_t *hb;
				size_t hl;
				hb = http_track_head_bytes(rp->rs, &hl);
				ins_obs.resp_head(rp->hc, &h, hb, hl);
				rp->head_seen = 1;
				if (ev == HTTP_T_UPGRADE) {
					ins_obs.resp_end(rp->hc);
					return 1;
				}
			}
		} else if (ev == HTTP_T_MORE || ev == HTTP_T_DONE) {
			if (rp->head_seen && used > 0)
				ins_obs.resp_body(rp->hc, p, used);
			if (ev == HTTP_T_DONE && rp->head_seen) {
				ins_obs.resp_end(rp->hc);
				return 1;
			}
			if (ev == HTTP_T_DONE) {
				http_track_free(rp->rs);
				rp->rs = http_track_new(0);
			}
		} else {
			rp_finish(rp, "the local service's response is not "
			    "HTTP/1.x");
			return -1;
		}
		p += used;
		n -= used;
		if (used == 0 && ev != HTTP_T_DONE)
			break;
	}
	return 0;
}

static void
rp_on_io(evutil_socket_t fd, short what, void *arg)
{
	struct ins_replay *rp = arg;
	uint8_t buf[16384];
	ssize_t n;

	if (what & EV_TIMEOUT) {
		rp_finish(rp, "the local service did not answer within 30 s");
		return;
	}
	if (evbuffer_get_length(rp->out) > 0) {
		n = evbuffer_write(rp->out, rp->fd);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			rp_finish(rp, "cannot send to the local service");
			return;
		}
		if (evbuffer_get_length(rp->out) > 0) {
			event_del(rp->ev);
			event_assign(rp->ev, rp->ins->base, rp->fd,
			    EV_WRITE | EV_READ | EV_PERSIST, rp_on_io, rp);
			event_add(rp->ev, NULL);
		} else {
			event_del(rp->ev);
			event_assign(rp->ev, rp->ins->base, rp->fd,
			    EV_READ | EV_PERSIST, rp_on_io, rp);
			event_add(rp->ev, NULL);
		}
	}
	for (int i = 0; i < 16; i++) {
		int r;
		n = read(rp->fd, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n < 0) {
			rp_finish(rp, "the local service reset the "
			    "connection");
			return;
		}
		if (n == 0) {
			if (rp->head_seen) {
				/* a body that ends with the connection */
				ins_obs.resp_end(rp->hc);
				rp_finish(rp, NULL);
			} else {
				rp_finish(rp, "the local service closed the "
				    "connection without an answer");
			}
			return;
		}
		rp->read_total += (uint64_t)n;
		if (rp->read_total > INS_REPLAY_READ_MAX) {
			rp_finish(rp, "the response is too long to replay");
			return;
		}
		r = rp_parse(rp, buf, (size_t)n);
		if (r < 0)
			return; /* finished */
		if (r > 0) {
			rp_finish(rp, NULL);
			return;
		}
	}
}

static void
rp_on_dialed(int fd, int err, const struct sockaddr *sa, void *arg)
{
	struct ins_replay *rp = arg;
	struct timeval tv = { INS_REPLAY_TIMEOUT_S, 0 };
	char why[300];

	rp->dial = NULL;
	if (fd < 0) {
		snprintf(why, sizeof(why), "cannot reach the local service: "
		    "%s", strerror(err ? err : ECONNREFUSED));
		rp_finish(rp, why);
		return;
	}
	rp->fd = fd;
	rp->ev = event_new(rp->ins->base, fd, EV_WRITE | EV_READ |
	    EV_PERSIST, rp_on_io, rp);
	event_add(rp->ev, NULL);
	rp->timer = evtimer_new(rp->ins->base, rp_on_io, rp);
	evtimer_add(rp->timer, &tv);
}

/* The replay ended (why NULL: answered): record it and answer the API. */
static void
rp_finish(struct ins_replay *rp, const char *why)
{
	struct ins_entry *e = rp->e;
	json_t *j;

	hc_end(rp->hc, why);
	hc_free(rp->hc);
	rp->hc = NULL;
	j = entry_json(e);
	entry_release(e);
	if (rp->req)
		web_reply_json(rp->req, 201, j);
	else
		json_decref(j);
	rp_free(rp);
}

static int
rp_start(struct inspect *ins, struct evhttp_request *req,
    const struct inspect_tunnel *t, struct ins_entry *orig,
    struct evbuffer *bytes, char *err, size_t errcap)
{
	struct ins_replay *rp;
	size_t hl;
	const uint8_t *p;
	struct evbuffer_ptr pos;

	rp = xcalloc(1, sizeof(*rp));
	rp->fd = -1;
	rp->ins = ins;
	rp->out = evbuffer_new();
	rp->rs = http_track_new(0);
	LIST_INSERT_HEAD(&ins->replays, rp, link);
	ins->nreplays++;
	if ((rp->ai = ai_copy(t->local_ai)) == NULL) {
		snprintf(err, errcap, "%s has no address", t->local_host);
		rp_free(rp);
		return -1;
	}
	/* the record: the request as it is sent */
	pos = evbuffer_search(bytes, "\r\n\r\n", 4, NULL);
	hl = pos.pos < 0 ? evbuffer_get_length(bytes) : (size_t)pos.pos + 4;
	p = evbuffer_pullup(bytes, -1);
	rp->hc = hc_new(ins, t->name, NULL);
	rp->hc->replay_of = orig->id;
	ins_obs.req_head(rp->hc, NULL, p, hl);
	if (evbuffer_get_length(bytes) > hl)
		ins_obs.req_body(rp->hc, p + hl,
		    evbuffer_get_length(bytes) - hl);
	rp->e = rp->hc->cur;
	if (rp->e == NULL) {
		snprintf(err, errcap, "cannot record the replay");
		hc_free(rp->hc);
		rp_free(rp);
		return -1;
	}
	rp->e->holds++; /* ours, until the answer */
	ins_obs.req_end(rp->hc);
	rp->is_head = strcmp(rp->e->rq.method, "HEAD") == 0;
	evbuffer_add_buffer(rp->out, bytes);
	rp->req = req;
	rp->dial = dial_start(ins->base, rp->ai, SOCK_STREAM,
	    INS_REPLAY_DIAL_S, NULL, rp_on_dialed, rp);
	if (rp->dial == NULL) {
		char why[300];
		snprintf(why, sizeof(why), "cannot reach the local service: %s",
		    strerror(errno));
		rp_finish(rp, why);
	}
	return 0;
}

void
inspect_free(struct inspect *ins)
{
	struct ins_replay *rp;
	struct inspect_conn *ic;

	if (ins == NULL)
		return;
	while ((rp = LIST_FIRST(&ins->replays)) != NULL) {
		rp->req = NULL;
		rp_finish(rp, "the agent is stopping");
	}
	inspect_clear(ins);
	while ((ic = TAILQ_FIRST(&ins->conns)) != NULL) {
		ic->held = 0; /* its holder ends with the client, after us */
		conn_unlist(ins, ic);
	}
	free(ins);
}

/* ---- the API ---- */

static size_t
q_limit(struct web *w, struct evhttp_request *req, size_t max)
{
	const char *l = web_query(w, req, "limit");
	char *end;
	unsigned long n;

	if (l == NULL)
		return INS_LIMIT_DEFAULT < max ? INS_LIMIT_DEFAULT : max;
	n = strtoul(l, &end, 10);
	if (*end != '\0' || n == 0)
		return INS_LIMIT_DEFAULT < max ? INS_LIMIT_DEFAULT : max;
	return n < max ? n : max;
}

static void
api_tunnels(struct evhttp_request *req, void *arg)
{
	struct inspect *ins = arg;
	json_t *a = json_array();
	size_t n = ins->src.ntunnels ? ins->src.ntunnels(ins->src.arg) : 0;

	for (size_t i = 0; i < n; i++) {
		struct inspect_tunnel t;
		char local[320];
		json_t *o;
		memset(&t, 0, sizeof(t));
		ins->src.tunnel(ins->src.arg, i, &t);
		snprintf(local, sizeof(local), strchr(t.local_host, ':') ?
		    "[%s]:%u" : "%s:%u", t.local_host, t.local_port);
		o = json_pack("{sosssosssssIsIsIsIsI}", "name", jtext(t.name),
		    "type", t.type, "public_url", jtext(t.public_url), "local",
		    local, "status", t.status, "bytes_in",
		    (json_int_t)t.bytes_in, "bytes_out",
		    (json_int_t)t.bytes_out, "connections",
		    (json_int_t)t.connections, "connections_active",
		    (json_int_t)t.connections_active, "requests",
		    (json_int_t)t.requests);
		if (t.error)
			json_object_set_new(o, "error", jtext(t.error));
		if (t.health_state)
			json_object_set_new(o, "health", json_pack("{sssosI}",
			    "state", t.health_state, "reason",
			    jtext(t.health_reason ? t.health_reason : ""),
			    "checks", (json_int_t)t.health_checks));
		json_array_append_new(a, o);
	}
	web_reply_json(req, 200, json_pack("{so}", "tunnels", a));
}

static void
api_replay(struct inspect *ins, struct evhttp_request *req)
{
	json_t *j = web_body_json(req), *idv;
	char *text = NULL;
	struct ins_entry *e;
	struct inspect_req_view v;
	struct evbuffer *bytes = NULL;
	char err[512], id[64];
	int code = 400;
	size_t n = ins->src.ntunnels ? ins->src.ntunnels(ins->src.arg) : 0;
	struct inspect_tunnel t;
	int found = 0;

	if (j == NULL)
		return; /* answered */
	idv = json_object_get(j, "id");
	if (!json_is_string(idv)) {
		web_reply_error(req, 400, "id: the id of a captured request "
		    "(\"r12\") is required");
		goto out;
	}
	snprintf(id, sizeof(id), "%s", json_string_value(idv));
	if ((e = ins_find(ins, id)) == NULL) {
		web_reply_error(req, 404, "no captured request %s", id);
		goto out;
	}
	if (!e->done && !e->rq.present) {
		web_reply_error(req, 409, "request %s is not captured yet", id);
		goto out;
	}
	for (size_t i = 0; i < n && !found; i++) {
		memset(&t, 0, sizeof(t));
		ins->src.tunnel(ins->src.arg, i, &t);
		found = t.name && strcmp(t.name, e->tunnel) == 0;
	}
	if (!found) {
		web_reply_error(req, 409, "the tunnel of request %s is gone",
		    id);
		goto out;
	}
	memset(&v, 0, sizeof(v));
	v.method = e->rq.method;
	v.uri = e->rq.uri;
	v.proto = e->rq.proto;
	v.nheaders = e->rq.nh;
	v.names = e->rq.hn;
	v.values = e->rq.hv;
	v.redacted = e->rq.red;
	v.body = e->rq.body;
	v.body_len = e->rq.captured;
	v.body_size = e->rq.size;
	v.truncated = e->rq.truncated;
	v.host_rewrite = t.host_rewrite;
	bytes = evbuffer_new();
	text = json_dumps(j, JSON_COMPACT);
	if (inspect_replay_parse(text, strlen(text), &v, id, bytes, &code,
	    err, sizeof(err)) < 0) {
		web_reply_error(req, code, "%s", err);
		goto out;
	}
	if (ins->nreplays >= INS_REPLAYS_MAX)
		web_reply_error(req, 503, "%u replays are under way, the limit; "
		    "try again when one ends", ins->nreplays);
	else if (rp_start(ins, req, &t, e, bytes, err, sizeof(err)) < 0)
		web_reply_error(req, 502, "%s", err);
	/* else the answer comes when the replay ends */
out:
	if (bytes)
		evbuffer_free(bytes);
	free(text);
	json_decref(j);
}

static void
api_requests(struct evhttp_request *req, void *arg)
{
	struct inspect *ins = arg;

	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		web_reply_json(req, 200, inspect_requests_json(ins,
		    q_limit(ins->web, req, ins->cf.max_requests ? ins->cf.max_requests :
		    1), web_query(ins->web, req, "tunnel")));
		break;
	case EVHTTP_REQ_DELETE:
		inspect_clear(ins);
		evhttp_send_reply(req, 204, "No Content", NULL);
		break;
	case EVHTTP_REQ_POST:
		api_replay(ins, req);
		break;
	default:
		web_reply_error(req, 405, "method not allowed");
		break;
	}
}

static void
api_request_one(struct evhttp_request *req, void *arg)
{
	struct inspect *ins = arg;
	const char *id = web_path(ins->web, req) + strlen("/api/requests/http/");
	struct ins_entry *e = ins_find(ins, id);

	if (e == NULL) {
		web_reply_error(req, 404, "no captured request %.40s", id);
		return;
	}
	web_reply_json(req, 200, entry_json(e));
}

static void
api_har(struct evhttp_request *req, void *arg)
{
	struct inspect *ins = arg;
	struct evhttp_request *r = req;
	json_t *j = inspect_har_json(ins);
	char *s = json_dumps(j, JSON_COMPACT);
	struct evbuffer *b = evbuffer_new();

	json_decref(j);
	evbuffer_add(b, s, strlen(s));
	free(s);
	evhttp_add_header(evhttp_request_get_output_headers(r),
	    "Content-Disposition", "attachment; filename=\"mgrok.har\"");
	web_reply_buf(r, 200, "application/json", b);
	evbuffer_free(b);
}

static void
api_connections(struct evhttp_request *req, void *arg)
{
	struct inspect *ins = arg;

	web_reply_json(req, 200, inspect_connections_json(ins, q_limit(ins->web, req,
	    ins->cf.max_conns ? ins->cf.max_conns : 1),
	    web_query(ins->web, req, "tunnel")));
}

static void
api_events(struct evhttp_request *req, void *arg)
{
	struct inspect *ins = arg;

	web_sse(ins->web, req, ins->src.feed);
}

static void
api_metrics(struct evhttp_request *req, void *arg)
{
	struct inspect *ins = arg;
	struct evbuffer *b = evbuffer_new();

	metrics_prometheus(ins->src.metrics, b);
	web_reply_buf(req, 200, "text/plain; version=0.0.4; charset=utf-8", b);
	evbuffer_free(b);
}

static void
api_healthz(struct evhttp_request *req, void *arg)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add(b, "ok\n", 3);
	web_reply_buf(req, 200, "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

static void
api_readyz(struct evhttp_request *req, void *arg)
{
	struct inspect *ins = arg;
	struct evbuffer *b = evbuffer_new();
	char why[300] = "not ready";

	if (ins->src.ready == NULL || ins->src.ready(ins->src.arg, why,
	    sizeof(why))) {
		evbuffer_add(b, "ready\n", 6);
		web_reply_buf(req, 200, "text/plain; charset=utf-8", b);
	} else {
		evbuffer_add_printf(b, "%s\n", why);
		web_reply_buf(req, 503, "text/plain; charset=utf-8", b);
	}
	evbuffer_free(b);
}

void
inspect_routes(struct inspect *ins, struct web *w,
    const struct inspect_source *src)
{
	ins->src = *src;
	ins->web = w;
	web_route(w, EVHTTP_REQ_GET, "/api/tunnels", api_tunnels, ins);
	web_route(w, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE,
	    "/api/requests/http", api_requests, ins);
	web_route(w, EVHTTP_REQ_GET, "/api/requests/http/", api_request_one,
	    ins);
	web_route(w, EVHTTP_REQ_GET, "/api/requests/http.har", api_har, ins);
	web_route(w, EVHTTP_REQ_GET, "/api/connections", api_connections,
	    ins);
	web_route(w, EVHTTP_REQ_GET, "/api/events", api_events, ins);
	web_route(w, EVHTTP_REQ_GET, "/metrics", api_metrics, ins);
	web_route(w, EVHTTP_REQ_GET, "/healthz", api_healthz, ins);
	web_route(w, EVHTTP_REQ_GET, "/readyz", api_readyz, ins);
}
