/* cluster.c: see cluster.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "cluster/routes.h"
#include "cluster/rstore.h"
#include "server/cluster.h"
#include "util/err.h"
#include "util/log.h"
#include "util/xmalloc.h"

struct cluster {
	struct event_base *base;
	struct rstore *rs;
	const struct rstore_script *s_claim, *s_refresh, *s_release, *s_node;
	struct cluster_hooks h;
	struct event *beat;
	char node[ROUTES_ID_MAX + 1];
	char addr[300];
	uint64_t started;
	char down_why[200];
	struct cluster_stats st;
};

struct pending {
	struct cluster *cl;
	union {
		cluster_claim_fn claim;
		cluster_refresh_fn refresh;
		cluster_session_fn session;
	} cb;
	void *arg;
};

static void node_write(struct cluster *cl);

static void
cl_up(void *arg)
{
	struct cluster *cl = arg;

	log_info("cluster: the store is up (node %s)", cl->node);
	cl->st.up = 1;
	cl->down_why[0] = '\0';
	node_write(cl);
	if (cl->h.up)
		cl->h.up(cl->h.arg);
}

static void
cl_down(void *arg, const char *why)
{
	struct cluster *cl = arg;

	if (cl->st.up)
		log_warn("cluster: the store is unreachable: %s", why);
	cl->st.up = 0;
	snprintf(cl->down_why, sizeof(cl->down_why), "%s", why);
	if (cl->h.down)
		cl->h.down(cl->h.arg, why);
}

static void
cl_ignore(void *arg, const struct redisReply *reply, const char *err)
{
	(void)arg;
	(void)reply;
	(void)err;
}

/* the node record: written at each heartbeat and as soon as the store is
 * up (a view of the cluster lists the node without waiting a beat) */
static void
node_write(struct cluster *cl)
{
	struct routes_argv a;
	uint64_t sessions = 0, tunnels = 0;

	if (cl->h.load)
		cl->h.load(cl->h.arg, &sessions, &tunnels);
	if (rstore_is_up(cl->rs) && routes_node_argv(&a, cl->node,
	    cl->addr[0] ? cl->addr : "-", sessions, tunnels, cl->started,
	    CLUSTER_TTL_MS) == 0)
		rstore_eval(cl->rs, cl->s_node, cl_ignore, NULL, a.nkeys,
		    a.argc, a.argv, a.len);
}

static void
cl_on_beat(evutil_socket_t fd, short what, void *arg)
{
	struct cluster *cl = arg;

	node_write(cl);
	if (cl->h.beat)
		cl->h.beat(cl->h.arg);
}

struct cluster *
cluster_new(struct event_base *base, const char *url, const char *node,
    const char *addr, const struct cluster_hooks *h, char *err,
    size_t errcap)
{
	struct cluster *cl = xcalloc(1, sizeof(*cl));
	struct rstore_hooks rh = { cl_up, cl_down, cl };
	struct timeval tv = { CLUSTER_HEARTBEAT_MS / 1000,
		(CLUSTER_HEARTBEAT_MS % 1000) * 1000 };

	if (!routes_id_ok(node)) {
		snprintf(err, errcap, "node id \"%.63s\" is not 1 to 63 of "
		    "[A-Za-z0-9._:-]", node);
		free(cl);
		return NULL;
	}
	cl->base = base;
	cl->h = *h;
	snprintf(cl->node, sizeof(cl->node), "%s", node);
	snprintf(cl->addr, sizeof(cl->addr), "%s", addr);
	cl->started = (uint64_t)time(NULL);
	snprintf(cl->down_why, sizeof(cl->down_why), "connecting");
	if ((cl->rs = rstore_new(base, url, &rh, err, errcap)) == NULL) {
		free(cl);
		return NULL;
	}
	cl->s_claim = rstore_script_add(cl->rs, routes_lua_claim);
	cl->s_refresh = rstore_script_add(cl->rs, routes_lua_refresh);
	cl->s_release = rstore_script_add(cl->rs, routes_lua_release);
	cl->s_node = rstore_script_add(cl->rs, routes_lua_node);
	cl->beat = event_new(base, -1, EV_PERSIST, cl_on_beat, cl);
	event_add(cl->beat, &tv);
	return cl;
}

void
cluster_free(struct cluster *cl)
{
	if (cl == NULL)
		return;
	event_free(cl->beat);
	rstore_free(cl->rs); /* answers what is due: "closing" */
	free(cl);
}

int
cluster_up(const struct cluster *cl)
{
	return cl != NULL && rstore_is_up(cl->rs);
}

const char *
cluster_node(const struct cluster *cl)
{
	return cl->node;
}

const char *
cluster_down_why(const struct cluster *cl)
{
	return rstore_is_up(cl->rs) ? "" : cl->down_why;
}

struct rstore *
cluster_store(const struct cluster *cl)
{
	return cl->rs;
}

static void
cl_on_claim(void *arg, const struct redisReply *reply, const char *err)
{
	struct pending *p = arg;
	struct cluster *cl = p->cl;
	struct route_claim rc;

	if (err == NULL && routes_claim_parse(reply, &rc) != 0)
		err = "the claim script answered something else";
	if (err != NULL) {
		cl->st.claims_failed++;
		p->cb.claim(p->arg, 0, 0, NULL, err);
	} else if (rc.ok) {
		cl->st.claims_ok++;
		p->cb.claim(p->arg, 1, rc.epoch, cl->node, NULL);
	} else {
		cl->st.claims_conflict++;
		p->cb.claim(p->arg, 0, rc.epoch, rc.node, NULL);
	}
	free(p);
}

int
cluster_claim(struct cluster *cl, const char *key, const char *session,
    cluster_claim_fn cb, void *arg)
{
	struct routes_argv a;
	struct pending *p;

	if (routes_claim_argv(&a, key, cl->node, session, CLUSTER_TTL_MS) != 0)
		return -1;
	p = xcalloc(1, sizeof(*p));
	p->cl = cl;
	p->cb.claim = cb;
	p->arg = arg;
	if (rstore_eval(cl->rs, cl->s_claim, cl_on_claim, p, a.nkeys, a.argc,
	    a.argv, a.len) != 0) {
		free(p);
		return -1;
	}
	return 0;
}

static void
cl_on_refresh(void *arg, const struct redisReply *reply, const char *err)
{
	struct pending *p = arg;
	int ours = 0;

	if (err == NULL && (ours = routes_bool_parse(reply)) < 0)
		err = "the refresh script answered something else";
	if (err == NULL && !ours)
		p->cl->st.refresh_lost++;
	p->cb.refresh(p->arg, err == NULL && ours == 1, err);
	free(p);
}

int
cluster_refresh(struct cluster *cl, const char *key, uint64_t epoch,
    cluster_refresh_fn cb, void *arg)
{
	struct routes_argv a;
	struct pending *p;

	if (routes_refresh_argv(&a, key, cl->node, epoch, CLUSTER_TTL_MS) != 0)
		return -1;
	p = xcalloc(1, sizeof(*p));
	p->cl = cl;
	p->cb.refresh = cb;
	p->arg = arg;
	if (rstore_eval(cl->rs, cl->s_refresh, cl_on_refresh, p, a.nkeys,
	    a.argc, a.argv, a.len) != 0) {
		free(p);
		return -1;
	}
	return 0;
}

void
cluster_release(struct cluster *cl, const char *key, uint64_t epoch)
{
	struct routes_argv a;

	if (cl == NULL || !rstore_is_up(cl->rs) ||
	    routes_release_argv(&a, key, cl->node, epoch) != 0)
		return;
	rstore_eval(cl->rs, cl->s_release, cl_ignore, NULL, a.nkeys, a.argc,
	    a.argv, a.len);
}

static void
cl_on_session(void *arg, const struct redisReply *reply, const char *err)
{
	struct pending *p = arg;
	char sess[ROUTES_ID_MAX + 1] = "";

	if (err == NULL && reply->type == REDIS_REPLY_STRING &&
	    reply->len < sizeof(sess))
		memcpy(sess, reply->str, reply->len + 1);
	else if (err == NULL && reply->type != REDIS_REPLY_NIL)
		err = "HGET answered something else";
	p->cb.session(p->arg, sess, err);
	free(p);
}

int
cluster_route_session(struct cluster *cl, const char *key,
    cluster_session_fn cb, void *arg)
{
	struct pending *p = xcalloc(1, sizeof(*p));

	p->cl = cl;
	p->cb.session = cb;
	p->arg = arg;
	if (rstore_cmd(cl->rs, cl_on_session, p, "HGET %s session", key) !=
	    0) {
		free(p);
		return -1;
	}
	return 0;
}

void
cluster_stats(const struct cluster *cl, struct cluster_stats *st)
{
	struct rstore_stats rs;

	*st = cl->st;
	rstore_stats(cl->rs, &rs);
	st->commands = rs.commands;
	st->errors = rs.errors;
	st->rtt_us = rs.rtt_us_avg;
	st->up = rs.up;
}
