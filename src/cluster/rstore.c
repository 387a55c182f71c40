/* rstore.c: the Redis client of the cluster layer (hiredis on libevent). */
#include "cluster/rstore.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <nettle/sha1.h>

#include "util/crypto.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mtime.h"
#include "util/xmalloc.h"

/*
 * Ownership of a command (struct rcmd): hiredis holds it as the privdata of
 * its reply callback and calls that callback exactly once, with the reply
 * or with NULL when the context is freed. The store keeps the commands it
 * still owes an answer in r->inflight, in the order they were sent (the
 * order Redis answers in, so the head is the oldest: the only one the
 * timeout needs to look at). A command answered early (timeout, lost
 * connection, closing) leaves the list with rc->r = NULL, an orphan, and
 * its memory waits for hiredis's callback, which only frees it. So the
 * owner's callback runs once, and no hiredis callback reads freed memory.
 */
enum rcmd_kind {
	RCMD_USER = 1, /* rstore_cmd, rstore_cmdargv */
	RCMD_EVAL,     /* rstore_eval: EVALSHA, EVAL once on NOSCRIPT */
	RCMD_SETUP,    /* AUTH, SELECT, SCRIPT LOAD before up */
	RCMD_LOAD,     /* SCRIPT LOAD of a script added while up */
};

struct rcmd {
	TAILQ_ENTRY(rcmd) link;
	struct rstore *r; /* NULL: an orphan, answered already */
	enum rcmd_kind kind;
	rstore_reply_fn cb;
	void *arg;
	uint64_t sent_us, deadline_us;
	const struct rstore_script *script; /* RCMD_EVAL, RCMD_SETUP load */
	int retried;                        /* RCMD_EVAL: EVAL sent */
	int argc;                           /* RCMD_EVAL: the script's args */
	char **argv;
	size_t *argvlen;
};
TAILQ_HEAD(rcmd_list, rcmd);

struct rstore_script {
	SLIST_ENTRY(rstore_script) link;
	char *lua;
	size_t len;
	char sha[41];
};

struct rsub {
	SLIST_ENTRY(rsub) link;
	char *channel;
	rstore_msg_fn fn;
	void *arg;
	int confirmed; /* on this connection */
};

/* one hiredis connection and its reconnect state */
enum conn_state {
	CONN_IDLE = 0,
	CONN_WAIT,
	CONN_CONNECTING,
	CONN_SETUP,
	CONN_UP
};

struct rconn {
	struct rstore *r;
	int is_sub;
	redisAsyncContext
	    *ac; /* NULL when there is none, or it is hiredis's to free */
	enum conn_state state;
	uint64_t deadline_us; /* of CONNECTING and SETUP */
	unsigned backoff_ms;
	int setup_left;
	int ever_up;
	int doomed;    /* see conn_doom */
	int subs_sent; /* pub/sub: SUBSCRIBE sent for each (after AUTH) */
	struct event *retry;
};

struct rstore {
	struct event_base *base;
	struct rstore_url url;
	struct rstore_hooks hooks;
	unsigned timeout_ms, max_inflight;
	struct rconn main, sub;
	struct rcmd_list inflight;
	uint32_t n_user; /* RCMD_USER and RCMD_EVAL in inflight */
	struct event *tick;
	SLIST_HEAD(, rstore_script) scripts;
	SLIST_HEAD(, rsub) subs;
	int nsubs;
	int depth;   /* inside one of our callbacks: free later */
	int closing; /* rstore_free was called */
	struct rstore_stats st;
	char reason[256];
};

static void conn_start(struct rconn *c);
static void conn_sub_setup(struct rconn *c);
static void tick_arm(struct rstore *r);
static void conn_lost(
    struct rconn *c, redisAsyncContext *ac, int we_free, const char *reason);

#define TICK_MS 100

/* ---- the URL ---------------------------------------------------------- */

static int
url_err(char *err, size_t errcap, const char *fmt, const char *what)
{
	char esc[160];

	if (err != NULL && errcap > 0) {
		if (what != NULL) {
			log_esc(what, strlen(what), esc, sizeof(esc));
			snprintf(err, errcap, fmt, esc);
		} else
			snprintf(err, errcap, "%s", fmt);
	}
	return MG_EINVAL;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* %XX-decodes p[0..n) into out (cap bytes with the NUL); 0 or -1 */
static int
pct_decode(const char *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)p[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= n)
				return -1;
			h = hexval((unsigned char)p[i + 1]);
			l = hexval((unsigned char)p[i + 2]);
			if (h < 0 || l < 0)
				return -1;
			c = h * 16 + l;
			i += 2;
		}
		if (c == 0 || o + 1 >= cap)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

/* a decimal in [lo, hi] over p[0..n); 0 or -1 */
static int
parse_num(const char *p, size_t n, long lo, long hi, long *out)
{
	long v = 0;

	if (n == 0 || n > 9)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	if (v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int
rstore_url_parse(
    const char *url, struct rstore_url *out, char *err, size_t errcap)
{
	const char *p, *at, *slash, *hend, *portp = NULL;
	char tmp[300];
	long v;

	memset(out, 0, sizeof(*out));
	out->port = 6379;
	if (url == NULL || *url == '\0')
		return url_err(err, errcap, "redis URL is empty", NULL);
	if (strncasecmp(url, "rediss://", 9) == 0)
		return url_err(err, errcap,
		    "redis URL: TLS (rediss://) is not supported", NULL);
	if (strncasecmp(url, "redis://", 8) != 0) {
		/* only the scheme: the rest may hold a password */
		const char *e = strstr(url, "://");
		if (e == NULL)
			return url_err(err, errcap,
			    "redis URL: no scheme (redis://HOST:PORT/DB)",
			    NULL);
		snprintf(tmp, sizeof(tmp), "%.*s",
		    (int)((size_t)(e - url) < 32 ? (size_t)(e - url) : 32),
		    url);
		return url_err(err, errcap,
		    "redis URL: the scheme must be redis:// (got \"%s://\")",
		    tmp);
	}
	p = url + 8;
	slash = strchr(p, '/');
	if (slash == NULL)
		slash = p + strlen(p);
	/* the last '@' before the path ends the user info (a password may
	 * hold an unescaped '@') */
	at = NULL;
	for (const char *q = p; q < slash; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL)
			return url_err(err, errcap,
			    "redis URL: the user info must be [USER]:PASSWORD@",
			    NULL);
		if (pct_decode(p, (size_t)(colon - p), out->user,
		        sizeof(out->user)) < 0)
			return url_err(err, errcap,
			    "redis URL: bad user name (a bad %-escape, or too "
			    "long)",
			    NULL);
		if (pct_decode(colon + 1, (size_t)(at - colon - 1), out->pass,
		        sizeof(out->pass)) < 0)
			return url_err(err, errcap,
			    "redis URL: bad password (a bad %-escape, or too "
			    "long)",
			    NULL);
		if (out->pass[0] == '\0')
			return url_err(err, errcap,
			    "redis URL: the password is empty", NULL);
		p = at + 1;
	}
	if (*p == '[') {
		hend = memchr(p, ']', (size_t)(slash - p));
		if (hend == NULL)
			return url_err(err, errcap,
			    "redis URL: missing ] after an IPv6 address", NULL);
		if ((size_t)(hend - p - 1) >= sizeof(out->host))
			return url_err(
			    err, errcap, "redis URL: host name too long", NULL);
		memcpy(out->host, p + 1, (size_t)(hend - p - 1));
		out->host[hend - p - 1] = '\0';
		hend++;
		if (hend < slash && *hend != ':')
			return url_err(err, errcap,
			    "redis URL: junk after the IPv6 address", NULL);
		if (hend < slash)
			portp = hend + 1;
	} else {
		hend = memchr(p, ':', (size_t)(slash - p));
		if (hend != NULL)
			portp = hend + 1;
		else
			hend = slash;
		if ((size_t)(hend - p) >= sizeof(out->host))
			return url_err(
			    err, errcap, "redis URL: host name too long", NULL);
		memcpy(out->host, p, (size_t)(hend - p));
		out->host[hend - p] = '\0';
	}
	if (out->host[0] == '\0')
		return url_err(err, errcap, "redis URL: no host", NULL);
	for (const char *q = out->host; *q; q++)
		if (!isalnum((unsigned char)*q) && *q != '.' && *q != '-' &&
		    *q != '_' && *q != ':')
			return url_err(err, errcap,
			    "redis URL: bad host \"%s\"", out->host);
	if (portp != NULL) {
		size_t n = (size_t)(slash - portp);
		if (parse_num(portp, n, 1, 65535, &v) < 0) {
			snprintf(tmp, sizeof(tmp), "%.*s",
			    (int)(n < 64 ? n : 64), portp);
			return url_err(err, errcap,
			    "redis URL: bad port \"%s\" (1-65535)", tmp);
		}
		out->port = (int)v;
	}
	if (*slash == '/' && slash[1] != '\0') {
		if (parse_num(slash + 1, strlen(slash + 1), 0, 999999, &v) < 0)
			return url_err(err, errcap,
			    "redis URL: bad database number \"%s\" (0-999999)",
			    slash + 1);
		out->db = (int)v;
	}
	return 0;
}

/* ---- helpers ---------------------------------------------------------- */

static void
enter(struct rstore *r)
{
	r->depth++;
}

static void rstore_destroy(struct rstore *r);

/* leaves one of our callbacks; 1 if the store is closing (do nothing more) */
static int
leave(struct rstore *r)
{
	int closing = r->closing;

	if (--r->depth == 0 && r->closing)
		rstore_destroy(r);
	return closing;
}

static void
rcmd_free(struct rcmd *rc)
{
	if (rc == NULL)
		return;
	for (int i = 0; i < rc->argc; i++)
		free(rc->argv[i]);
	free(rc->argv);
	free(rc->argvlen);
	free(rc);
}

static int
is_user(const struct rcmd *rc)
{
	return rc->kind == RCMD_USER || rc->kind == RCMD_EVAL;
}

/* takes rc off the list: it is an orphan from now on */
static void
rcmd_unlink(struct rstore *r, struct rcmd *rc)
{
	TAILQ_REMOVE(&r->inflight, rc, link);
	if (is_user(rc))
		r->n_user--;
	rc->r = NULL;
}

/* the owner's answer of an unlinked command (err not NULL: a failure) */
static void
rcmd_answer(
    struct rstore *r, struct rcmd *rc, const redisReply *reply, const char *err)
{
	if (!is_user(rc) || rc->cb == NULL)
		return;
	if (err != NULL)
		r->st.errors++;
	rc->cb(rc->arg, reply, err);
}

static void
tick_arm(struct rstore *r)
{
	struct timeval tv = {0, TICK_MS * 1000};

	if (!r->closing && !evtimer_pending(r->tick, NULL))
		evtimer_add(r->tick, &tv);
}

/* sends a formatted command on the command connection and lists rc */
static int
rcmd_send(struct rstore *r, struct rcmd *rc)
{
	rc->r = r;
	rc->sent_us = mtime_us();
	rc->deadline_us = rc->sent_us + (uint64_t)r->timeout_ms * 1000;
	TAILQ_INSERT_TAIL(&r->inflight, rc, link);
	if (is_user(rc))
		r->n_user++;
	tick_arm(r);
	return 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/*
 * mode_cmd: 1 if the formatted command buf[0..len) ("*N\r\n$L\r\nNAME...")
 * would put the connection in another mode (pub/sub, MONITOR): hiredis
 * would then route every answer as a message, and the store's commands
 * would never be answered.
 */
static int
mode_cmd(const char *buf, size_t len)
{
	static const char *const names[] = {"subscribe", "psubscribe",
	    "unsubscribe", "punsubscribe", "ssubscribe", "sunsubscribe",
	    "monitor"};
	const char *p = memchr(buf, '\n', len), *q, *e = buf + len;

	if (p == NULL || ++p >= e || *p != '$' ||
	    (q = memchr(p, '\n', (size_t)(e - p))) == NULL)
		return 0;
	q++;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i]);
		if ((size_t)(e - q) >= n + 2 && strncasecmp(q, names[i], n) == 0 &&
		    q[n] == '\r')
			return 1;
	}
	return 0;
}

/* sends the formatted command buf (freed here) as rc's; 0 or an MG_E* code */
static int
send_buf(struct rstore *r, struct rcmd *rc, char *buf, int len)
{
	int rv;

	if (len < 0)
		return MG_EINVAL;
	if (rc->kind == RCMD_USER && mode_cmd(buf, (size_t)len))
		rv = MG_EINVAL;
	else if (redisAsyncFormattedCommand(
	             r->main.ac, on_reply, rc, buf, (size_t)len) != REDIS_OK)
		rv = MG_ECLOSED;
	else
		rv = rcmd_send(r, rc);
	free(buf);
	return rv;
}

/* formats and sends argv as a command of rc; 0 or an MG_E* code */
static int
send_argv(struct rstore *r, struct rcmd *rc, int argc, const char **argv,
    const size_t *argvlen)
{
	char *buf = NULL;
	int len = redisFormatCommandArgv(&buf, argc, argv, argvlen);

	return send_buf(r, rc, buf, len);
}

/* ---- answers ---------------------------------------------------------- */

static void
rtt_note(struct rstore *r, uint64_t sent_us)
{
	uint64_t now = mtime_us(), rtt = now > sent_us ? now - sent_us : 0;

	r->st.rtt_us_last = rtt;
	if (r->st.rtt_us_avg == 0)
		r->st.rtt_us_avg = rtt;
	else
		r->st.rtt_us_avg = (r->st.rtt_us_avg * 7 + rtt) / 8;
}

static int eval_send(struct rstore *r, struct rcmd *rc, int use_sha);

static void
conn_up(struct rconn *c)
{
	struct rstore *r = c->r;

	c->state = CONN_UP;
	c->backoff_ms = 0;
	if (c->ever_up && !c->is_sub)
		r->st.reconnects++;
	c->ever_up = 1;
	if (c->is_sub) {
		r->st.sub_up = 1;
		log_info("cluster store: subscribed to %d channel(s) on %s:%d",
		    r->nsubs, r->url.host, r->url.port);
		return;
	}
	r->st.up = 1;
	log_info("cluster store: connected to %s:%d db %d", r->url.host,
	    r->url.port, r->url.db);
	if (r->hooks.up != NULL)
		r->hooks.up(r->hooks.arg);
}

static void
setup_answer(struct rstore *r, struct rcmd *rc, const redisReply *rep,
    redisAsyncContext *ac)
{
	char esc[200];

	if (rep->type == REDIS_REPLY_ERROR) {
		log_esc(rep->str, rep->len, esc, sizeof(esc));
		snprintf(
		    r->reason, sizeof(r->reason), "setup refused: %s", esc);
		/* inside hiredis's callback: redisAsyncFree waits for its end
		 */
		conn_lost(&r->main, ac, 1, r->reason);
		return;
	}
	if (rc->script != NULL && (rep->type != REDIS_REPLY_STRING ||
	                              strcmp(rep->str, rc->script->sha) != 0))
		log_warn("cluster store: SCRIPT LOAD gave another SHA1 than "
		         "ours (EVALSHA will fall back to EVAL)");
	if (r->main.ac == ac && --r->main.setup_left == 0)
		conn_up(&r->main);
}

static void
on_reply(redisAsyncContext *ac, void *reply_, void *priv)
{
	struct rcmd *rc = priv;
	struct rstore *r = rc->r;
	const redisReply *rep = reply_;
	char esc[300];

	if (r == NULL) { /* an orphan: its answer went out already */
		rcmd_free(rc);
		return;
	}
	enter(r);
	if (rep == NULL) {
		/* hiredis is freeing the context (an error or EOF): every
		 * command listed gets the reason, this one too */
		conn_lost(&r->main, ac, 0,
		    ac->errstr[0] != '\0' ? ac->errstr : "connection closed");
		if (rc->r !=
		    NULL) { /* not of the current connection: cannot be */
			rcmd_unlink(r, rc);
			rcmd_answer(r, rc, NULL, "connection lost");
		}
		rcmd_free(rc);
		leave(r);
		return;
	}
	rcmd_unlink(r, rc);
	rtt_note(r, rc->sent_us);
	switch (rc->kind) {
	case RCMD_SETUP:
		setup_answer(r, rc, rep, ac);
		break;
	case RCMD_LOAD:
		break;
	case RCMD_EVAL:
		if (rep->type == REDIS_REPLY_ERROR && !rc->retried &&
		    strncmp(rep->str, "NOSCRIPT", 8) == 0 && r->main.ac == ac) {
			log_debug("cluster store: NOSCRIPT, sending EVAL");
			rc->retried = 1;
			if (eval_send(r, rc, 0) == 0) {
				leave(r);
				return; /* rc lives on, listed again */
			}
		}
		/* fall through */
	case RCMD_USER:
		r->st.commands++;
		if (rep->type == REDIS_REPLY_ERROR) {
			log_esc(rep->str, rep->len, esc, sizeof(esc));
			rcmd_answer(r, rc, rep, esc);
		} else
			rcmd_answer(r, rc, rep, NULL);
		break;
	}
	rcmd_free(rc);
	leave(r);
}

/* ---- connections ------------------------------------------------------ */

/* the delay before the next attempt: 0.5 s doubled to 10 s, +-20 % */
static unsigned
backoff_next(struct rconn *c)
{
	uint32_t rnd;
	unsigned d;

	if (c->backoff_ms == 0)
		c->backoff_ms = RSTORE_BACKOFF_MIN_MS;
	else if (c->backoff_ms < RSTORE_BACKOFF_MAX_MS)
		c->backoff_ms = c->backoff_ms * 2 > RSTORE_BACKOFF_MAX_MS
		                    ? RSTORE_BACKOFF_MAX_MS
		                    : c->backoff_ms * 2;
	crypto_random(&rnd, sizeof(rnd));
	d = c->backoff_ms * 8 / 10 + rnd % (c->backoff_ms * 4 / 10 + 1);
	return d;
}

/*
 * conn_doom: c's connection is to be dropped at the next tick. For the few
 * places where freeing it now is not safe: hiredis's connect callback runs
 * outside its in-callback guard, so a redisAsyncFree there would free the
 * context under hiredis's feet.
 */
static void
conn_doom(struct rconn *c)
{
	c->doomed = 1;
	tick_arm(c->r);
}

static void
conn_detach(redisAsyncContext *ac)
{
	ac->data = NULL;
	ac->onConnect = NULL;
	ac->onDisconnect = NULL;
}

/*
 * conn_lost: c's connection ac is gone (we_free: ours to free, else
 * hiredis's, which is freeing it now). Every listed command is answered
 * (the command connection), the down hook told, the next attempt timed.
 * Does nothing if ac is not c's current connection any more.
 */
static void
conn_lost(
    struct rconn *c, redisAsyncContext *ac, int we_free, const char *reason)
{
	struct rstore *r = c->r;
	struct rcmd *rc;
	char why[300];
	int was_up = c->state == CONN_UP;
	unsigned delay;

	if (c->ac != ac || ac == NULL)
		return;
	snprintf(why, sizeof(why), "%s", reason);
	conn_detach(ac);
	c->ac = NULL;
	c->state = CONN_WAIT;
	if (c->is_sub) {
		struct rsub *s;
		r->st.sub_up = 0;
		SLIST_FOREACH(s, &r->subs, link) {
			s->confirmed = 0;
		}
	} else
		r->st.up = 0;
	if (was_up || !c->ever_up)
		log_warn("cluster store: %s connection to %s:%d: %s",
		    c->is_sub ? "pub/sub" : "command", r->url.host, r->url.port,
		    why);
	else
		log_debug("cluster store: %s connection to %s:%d: %s",
		    c->is_sub ? "pub/sub" : "command", r->url.host, r->url.port,
		    why);
	if (!c->is_sub) {
		char msg[320];
		snprintf(msg, sizeof(msg), "connection lost: %s", why);
		while ((rc = TAILQ_FIRST(&r->inflight)) != NULL) {
			rcmd_unlink(r, rc);
			rcmd_answer(r, rc, NULL, msg);
		}
	}
	if (we_free)
		redisAsyncFree(ac); /* frees the orphans */
	if (r->closing)
		return;
	delay = backoff_next(c);
	{
		struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
		evtimer_add(c->retry, &tv);
	}
	if (!c->is_sub) {
		/* a lost command connection is likely a partition or a
		 * restart the pub/sub one has not noticed yet: redo it too */
		if (r->sub.ac != NULL)
			conn_lost(&r->sub, r->sub.ac, 1,
			    "the command connection was lost");
		if (!r->closing && r->hooks.down != NULL)
			r->hooks.down(r->hooks.arg, why);
	}
}

static void
on_connect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct rconn *c = ac->data;
	struct rstore *r;
	char why[300];

	if (c == NULL)
		return;
	r = c->r;
	enter(r);
	if (status != REDIS_OK) {
		/* hiredis frees ac when this returns */
		snprintf(why, sizeof(why), "connect: %s",
		    ac->errstr[0] != '\0' ? ac->errstr : "failed");
		conn_lost(c, ac, 0, why);
		leave(r);
		return;
	}
	c->state = CONN_SETUP;
	c->deadline_us = mtime_us() + (uint64_t)r->timeout_ms * 1000;
	if (c->is_sub) {
		conn_sub_setup(c);
		leave(r);
		return;
	}
	c->setup_left = 0;
	{
		const char *av[3];
		char dbs[16];
		struct rcmd *rc;
		struct rstore_script *s;
		int rv = 0;

		if (r->url.pass[0] != '\0') {
			int n = 0;
			av[n++] = "AUTH";
			if (r->url.user[0] != '\0')
				av[n++] = r->url.user;
			av[n++] = r->url.pass;
			rc = xcalloc(1, sizeof(*rc));
			rc->kind = RCMD_SETUP;
			if ((rv = send_argv(r, rc, n, av, NULL)) < 0)
				rcmd_free(rc);
			else
				c->setup_left++;
		}
		if (rv == 0) {
			snprintf(dbs, sizeof(dbs), "%d", r->url.db);
			av[0] = "SELECT";
			av[1] = dbs;
			rc = xcalloc(1, sizeof(*rc));
			rc->kind = RCMD_SETUP;
			if ((rv = send_argv(r, rc, 2, av, NULL)) < 0)
				rcmd_free(rc);
			else
				c->setup_left++;
		}
		SLIST_FOREACH(s, &r->scripts, link)
		{
			size_t al[3] = {6, 4, s->len};
			if (rv < 0)
				break;
			av[0] = "SCRIPT";
			av[1] = "LOAD";
			av[2] = s->lua;
			rc = xcalloc(1, sizeof(*rc));
			rc->kind = RCMD_SETUP;
			rc->script = s;
			if ((rv = send_argv(r, rc, 3, av, al)) < 0)
				rcmd_free(rc);
			else
				c->setup_left++;
		}
		if (rv < 0)
			conn_doom(c);
	}
	leave(r);
}

static void
on_disconnect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct rconn *c = ac->data;
	struct rstore *r;

	if (c == NULL)
		return;
	r = c->r;
	enter(r);
	conn_lost(
	    c, ac, 0, ac->errstr[0] != '\0' ? ac->errstr : "connection closed");
	leave(r);
}

/* ---- pub/sub ---------------------------------------------------------- */

static void
on_sub_msg(redisAsyncContext *ac, void *reply_, void *priv)
{
	const redisReply *rep = reply_;
	struct rsub *s = priv;
	struct rstore *r;
	struct rconn *c = ac->data;

	/* NULL: hiredis is freeing ac; s and the store may be gone */
	if (rep == NULL || c == NULL)
		return;
	r = c->r;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
	    rep->element[0]->type != REDIS_REPLY_STRING)
		return;
	enter(r);
	if (strcasecmp(rep->element[0]->str, "subscribe") == 0) {
		int all = 1;
		struct rsub *t;
		s->confirmed = 1;
		s->fn(s->arg, s->channel, NULL, 0);
		if (!r->closing && c->state == CONN_SETUP) {
			SLIST_FOREACH(t, &r->subs, link)
			all = all && t->confirmed;
			if (all)
				conn_up(c);
		}
	} else if (strcasecmp(rep->element[0]->str, "message") == 0 &&
	           rep->element[2]->type == REDIS_REPLY_STRING)
		s->fn(s->arg, s->channel, rep->element[2]->str,
		    rep->element[2]->len);
	leave(r);
}

static void
sub_send(struct rconn *c, struct rsub *s)
{
	if (redisAsyncCommand(
	        c->ac, on_sub_msg, s, "SUBSCRIBE %s", s->channel) != REDIS_OK)
		conn_doom(c);
}

static void
on_sub_auth(redisAsyncContext *ac, void *reply_, void *priv)
{
	const redisReply *rep = reply_;
	struct rconn *c = ac->data;
	struct rstore *r;
	struct rsub *s;
	char esc[200];

	(void)priv;
	if (rep == NULL || c == NULL)
		return;
	r = c->r;
	enter(r);
	if (rep->type == REDIS_REPLY_ERROR) {
		log_esc(rep->str, rep->len, esc, sizeof(esc));
		snprintf(r->reason, sizeof(r->reason), "AUTH refused: %s", esc);
		conn_lost(c, ac, 1, r->reason);
	} else {
		c->subs_sent = 1;
		SLIST_FOREACH(s, &r->subs, link) {
			sub_send(c, s);
		}
	}
	leave(r);
}

/* the pub/sub connection is connected: AUTH first, then SUBSCRIBE (one
 * after the other: hiredis routes every answer after a SUBSCRIBE as
 * pub/sub) */
static void
conn_sub_setup(struct rconn *c)
{
	struct rstore *r = c->r;
	struct rsub *s;
	int rv;

	if (r->url.pass[0] != '\0') {
		if (r->url.user[0] != '\0')
			rv = redisAsyncCommand(c->ac, on_sub_auth, NULL,
			    "AUTH %s %s", r->url.user, r->url.pass);
		else
			rv = redisAsyncCommand(
			    c->ac, on_sub_auth, NULL, "AUTH %s", r->url.pass);
		if (rv != REDIS_OK)
			conn_doom(c);
		return;
	}
	c->subs_sent = 1;
	SLIST_FOREACH(s, &r->subs, link) {
		sub_send(c, s);
	}
}

/* ---- timers ----------------------------------------------------------- */

static void
conn_start(struct rconn *c)
{
	struct rstore *r = c->r;
	redisAsyncContext *ac;
	char why[300];
	unsigned delay;

	if (r->closing || c->ac != NULL)
		return;
	if (c->is_sub && SLIST_EMPTY(&r->subs)) {
		c->state = CONN_IDLE;
		return;
	}
	c->state = CONN_CONNECTING;
	c->doomed = 0;
	c->subs_sent = 0;
	c->deadline_us = mtime_us() + (uint64_t)r->timeout_ms * 1000;
	ac = redisAsyncConnect(r->url.host, r->url.port);
	if (ac == NULL || ac->err) {
		snprintf(why, sizeof(why), "connect: %s",
		    ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		c->state = CONN_WAIT;
		log_debug("cluster store: %s", why);
		delay = backoff_next(c);
		{
			struct timeval tv = {
			    delay / 1000, (delay % 1000) * 1000};
			evtimer_add(c->retry, &tv);
		}
		if (!c->is_sub && r->hooks.down != NULL)
			r->hooks.down(r->hooks.arg, why);
		return;
	}
	ac->data = c;
	c->ac = ac;
	redisLibeventAttach(ac, r->base);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	tick_arm(r);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct rconn *c = arg;
	struct rstore *r = c->r;

	(void)fd;
	(void)what;
	enter(r);
	conn_start(c);
	leave(r);
}

static int
conn_overdue(struct rconn *c, uint64_t now)
{
	return c->ac != NULL && (c->doomed || ((c->state == CONN_CONNECTING ||
	                                           c->state == CONN_SETUP) &&
	                                          now >= c->deadline_us));
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct rstore *r = arg;
	struct rcmd *rc;
	uint64_t now = mtime_us();

	(void)fd;
	(void)what;
	enter(r);
	rc = TAILQ_FIRST(&r->inflight);
	if (rc != NULL && now >= rc->deadline_us && r->main.ac != NULL) {
		int setup = rc->kind == RCMD_SETUP;
		rcmd_unlink(r, rc);
		if (!setup) {
			r->st.timeouts++;
			log_warn("cluster store: a command had no answer "
			         "within %u ms",
			    r->timeout_ms);
			rcmd_answer(r, rc, NULL, "timeout");
		}
		if (!r->closing)
			conn_lost(&r->main, r->main.ac, 1,
			    setup ? "setup timeout" : "a command timed out");
	}
	if (!r->closing && conn_overdue(&r->main, now))
		conn_lost(&r->main, r->main.ac, 1, "connect timeout");
	if (!r->closing && conn_overdue(&r->sub, now))
		conn_lost(&r->sub, r->sub.ac, 1, "connect timeout");
	if (!r->closing &&
	    (!TAILQ_EMPTY(&r->inflight) || r->main.state == CONN_CONNECTING ||
	        r->main.state == CONN_SETUP ||
	        r->sub.state == CONN_CONNECTING || r->sub.state == CONN_SETUP))
		tick_arm(r);
	leave(r);
}

/* ---- the API ---------------------------------------------------------- */

struct rstore *
rstore_new(struct event_base *base, const char *url,
    const struct rstore_hooks *hooks, char *err, size_t errcap)
{
	struct rstore *r;
	struct timeval now = {0, 0};

	r = xcalloc(1, sizeof(*r));
	if (rstore_url_parse(url, &r->url, err, errcap) < 0) {
		free(r);
		return NULL;
	}
	r->base = base;
	if (hooks != NULL)
		r->hooks = *hooks;
	r->timeout_ms = RSTORE_TIMEOUT_MS;
	r->max_inflight = RSTORE_MAX_INFLIGHT;
	TAILQ_INIT(&r->inflight);
	SLIST_INIT(&r->scripts);
	SLIST_INIT(&r->subs);
	r->main.r = r;
	r->sub.r = r;
	r->sub.is_sub = 1;
	r->main.retry = evtimer_new(base, on_retry, &r->main);
	r->sub.retry = evtimer_new(base, on_retry, &r->sub);
	r->tick = evtimer_new(base, on_tick, r);
	if (r->main.retry == NULL || r->sub.retry == NULL || r->tick == NULL) {
		fprintf(stderr, "rstore: out of memory\n");
		abort();
	}
	/* the first attempt from the loop: no hook runs inside rstore_new */
	r->main.state = CONN_WAIT;
	evtimer_add(r->main.retry, &now);
	return r;
}

static void
rstore_destroy(struct rstore *r)
{
	struct rstore_script *s;
	struct rsub *b;

	event_free(r->main.retry);
	event_free(r->sub.retry);
	event_free(r->tick);
	while ((s = SLIST_FIRST(&r->scripts)) != NULL) {
		SLIST_REMOVE_HEAD(&r->scripts, link);
		free(s->lua);
		free(s);
	}
	while ((b = SLIST_FIRST(&r->subs)) != NULL) {
		SLIST_REMOVE_HEAD(&r->subs, link);
		free(b->channel);
		free(b);
	}
	free(r);
}

void
rstore_free(struct rstore *r)
{
	struct rcmd *rc;
	redisAsyncContext *ac;

	if (r == NULL || r->closing)
		return;
	r->closing = 1;
	enter(r);
	evtimer_del(r->main.retry);
	evtimer_del(r->sub.retry);
	evtimer_del(r->tick);
	while ((rc = TAILQ_FIRST(&r->inflight)) != NULL) {
		rcmd_unlink(r, rc);
		rcmd_answer(r, rc, NULL, "closing");
	}
	/* inside hiredis's callback on ac, redisAsyncFree waits for its end;
	 * the orphans and the subscriptions' NULL answers touch nothing of r */
	if ((ac = r->main.ac) != NULL) {
		r->main.ac = NULL;
		conn_detach(ac);
		redisAsyncFree(ac);
	}
	if ((ac = r->sub.ac) != NULL) {
		r->sub.ac = NULL;
		conn_detach(ac);
		redisAsyncFree(ac);
	}
	r->st.up = r->st.sub_up = 0;
	leave(r);
}

void
rstore_set_limits(struct rstore *r, unsigned timeout_ms, unsigned max_inflight)
{
	if (timeout_ms > 0)
		r->timeout_ms = timeout_ms;
	if (max_inflight > 0)
		r->max_inflight = max_inflight;
}

static int
user_ok(struct rstore *r)
{
	if (r->closing || r->main.state != CONN_UP || r->main.ac == NULL)
		return MG_ECLOSED;
	if (r->n_user >= r->max_inflight)
		return MG_ELIMIT;
	return 0;
}

int
rstore_cmd(
    struct rstore *r, rstore_reply_fn cb, void *arg, const char *fmt, ...)
{
	struct rcmd *rc;
	va_list ap;
	char *buf = NULL;
	int len, rv;

	if ((rv = user_ok(r)) < 0)
		return rv;
	va_start(ap, fmt);
	len = redisvFormatCommand(&buf, fmt, ap);
	va_end(ap);
	if (len < 0)
		return MG_EINVAL;
	rc = xcalloc(1, sizeof(*rc));
	rc->kind = RCMD_USER;
	rc->cb = cb;
	rc->arg = arg;
	if ((rv = send_buf(r, rc, buf, len)) < 0)
		rcmd_free(rc);
	return rv;
}

int
rstore_cmdargv(struct rstore *r, rstore_reply_fn cb, void *arg, int argc,
    const char **argv, const size_t *argvlen)
{
	struct rcmd *rc;
	int rv;

	if ((rv = user_ok(r)) < 0)
		return rv;
	if (argc < 1)
		return MG_EINVAL;
	rc = xcalloc(1, sizeof(*rc));
	rc->kind = RCMD_USER;
	rc->cb = cb;
	rc->arg = arg;
	if ((rv = send_argv(r, rc, argc, argv, argvlen)) < 0)
		rcmd_free(rc);
	return rv;
}

static void
sha1_hex(const char *p, size_t n, char out[41])
{
	struct sha1_ctx ctx;
	uint8_t d[SHA1_DIGEST_SIZE];

	sha1_init(&ctx);
	sha1_update(&ctx, n, (const uint8_t *)p);
	sha1_digest(&ctx, sizeof(d), d);
	for (int i = 0; i < SHA1_DIGEST_SIZE; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

const struct rstore_script *
rstore_script_add(struct rstore *r, const char *lua)
{
	struct rstore_script *s = xcalloc(1, sizeof(*s));

	s->lua = xstrdup(lua);
	s->len = strlen(lua);
	sha1_hex(s->lua, s->len, s->sha);
	SLIST_INSERT_HEAD(&r->scripts, s, link);
	if (!r->closing && r->main.state == CONN_UP && r->main.ac != NULL) {
		const char *av[3] = {"SCRIPT", "LOAD", s->lua};
		size_t al[3] = {6, 4, s->len};
		struct rcmd *rc = xcalloc(1, sizeof(*rc));
		rc->kind = RCMD_LOAD;
		rc->script = s;
		if (send_argv(r, rc, 3, av, al) < 0)
			rcmd_free(rc); /* EVAL covers it */
	}
	return s;
}

/* (re)sends an RCMD_EVAL as EVALSHA (use_sha) or EVAL */
static int
eval_send(struct rstore *r, struct rcmd *rc, int use_sha)
{
	const char *sv[64];
	size_t sl[64];
	int n = 0;

	if (rc->argc + 3 > 64 || r->main.ac == NULL)
		return MG_EINVAL;
	sv[n] = use_sha ? "EVALSHA" : "EVAL";
	sl[n] = strlen(sv[n]);
	n++;
	sv[n] = use_sha ? rc->script->sha : rc->script->lua;
	sl[n] = use_sha ? 40 : rc->script->len;
	n++;
	/* nkeys is kept as the first argument of the copy */
	for (int i = 0; i < rc->argc; i++) {
		sv[n] = rc->argv[i];
		sl[n] = rc->argvlen[i];
		n++;
	}
	return send_argv(r, rc, n, sv, sl);
}

int
rstore_eval(struct rstore *r, const struct rstore_script *s, rstore_reply_fn cb,
    void *arg, int nkeys, int argc, const char **argv, const size_t *argvlen)
{
	struct rcmd *rc;
	char nk[16];
	int rv;

	if ((rv = user_ok(r)) < 0)
		return rv;
	if (s == NULL || nkeys < 0 || nkeys > argc || argc < 0 || argc > 60)
		return MG_EINVAL;
	rc = xcalloc(1, sizeof(*rc));
	rc->kind = RCMD_EVAL;
	rc->cb = cb;
	rc->arg = arg;
	rc->script = s;
	rc->argc = argc + 1;
	rc->argv = xcalloc((size_t)rc->argc, sizeof(*rc->argv));
	rc->argvlen = xcalloc((size_t)rc->argc, sizeof(*rc->argvlen));
	snprintf(nk, sizeof(nk), "%d", nkeys);
	rc->argv[0] = xstrdup(nk);
	rc->argvlen[0] = strlen(nk);
	for (int i = 0; i < argc; i++) {
		size_t n = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
		rc->argv[i + 1] = xmalloc(n + 1);
		memcpy(rc->argv[i + 1], argv[i], n);
		rc->argv[i + 1][n] = '\0';
		rc->argvlen[i + 1] = n;
	}
	if ((rv = eval_send(r, rc, 1)) < 0)
		rcmd_free(rc);
	return rv;
}

int
rstore_subscribe(
    struct rstore *r, const char *channel, rstore_msg_fn fn, void *arg)
{
	struct rsub *s;

	if (channel == NULL || channel[0] == '\0' || strlen(channel) > 255 ||
	    fn == NULL || r->closing)
		return MG_EINVAL;
	/* hiredis keeps one callback per channel */
	SLIST_FOREACH(s, &r->subs, link)
		if (strcmp(s->channel, channel) == 0)
			return MG_EINUSE;
	s = xcalloc(1, sizeof(*s));
	s->channel = xstrdup(channel);
	s->fn = fn;
	s->arg = arg;
	SLIST_INSERT_HEAD(&r->subs, s, link);
	r->nsubs++;
	if (r->sub.state == CONN_IDLE) {
		struct timeval now = {0, 0};
		r->sub.state = CONN_WAIT;
		evtimer_add(r->sub.retry, &now);
	} else if (r->sub.ac != NULL && r->sub.subs_sent)
		sub_send(&r->sub, s); /* else the setup sends it */
	return 0;
}

void
rstore_stats(const struct rstore *r, struct rstore_stats *st)
{
	*st = r->st;
	st->in_flight = r->n_user;
}

int
rstore_is_up(const struct rstore *r)
{
	return !r->closing && r->main.state == CONN_UP;
}
