/*
 * rstore_drive.c: a test driver of the cluster store (src/cluster): reads
 * one command a line on stdin, runs it through rstore and the route
 * scripts, prints one result line on stdout (tests/e2e/test_rstore.py).
 *
 *   rstore_drive redis://HOST:PORT/DB [TIMEOUT_MS [MAX_INFLIGHT]]
 *
 *   claim KEY NODE SESSION TTL   ok EPOCH | conflict NODE SESSION EPOCH
 *   refresh KEY NODE EPOCH TTL   refresh 1|0
 *   release KEY NODE EPOCH       release 1|0
 *   node ID ADDR LOAD TTL        node 1
 *   sub CHANNEL                  subscribed CHANNEL (each time), then
 *                                msg CHANNEL MESSAGE per message
 *   cmd ARG...                   reply int N | str S | status S | nil | array N
 *   stats                        stats commands=.. errors=.. ...
 *   quit                         (rstore_free) closed
 *   free-after ARG...            as cmd, then rstore_free inside its callback
 *   free-on down|msg             rstore_free inside the next down hook or
 *                                message callback
 * Any failure: error TEXT. Events: up, down REASON.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "cluster/routes.h"
#include "cluster/rstore.h"
#include "util/err.h"
#include "util/log.h"

enum op { OP_CLAIM = 1, OP_REFRESH, OP_RELEASE, OP_NODE, OP_CMD, OP_FREE };

static struct rstore *store;
static struct event_base *base;
static char down_reason[300] = "not connected yet";
static int free_on_down, free_on_msg;

/* rstore_free from inside one of the store's callbacks or hooks */
static void
close_store(void)
{
	if (store == NULL)
		return;
	rstore_free(store);
	store = NULL;
	printf("closed\n");
	fflush(stdout);
	event_base_loopexit(base, NULL);
}
static const struct rstore_script *s_claim, *s_refresh, *s_release, *s_node;

static void
out(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void
on_up(void *arg)
{
	out("up");
}

static void
on_down(void *arg, const char *reason)
{
	snprintf(down_reason, sizeof(down_reason), "%s", reason);
	out("down %s", reason);
	if (free_on_down)
		close_store();
}

/* a command refused at once */
static void
refused(int rv)
{
	if (rv == MG_ECLOSED)
		out("error store down: %s", down_reason);
	else
		out("error %s", mg_strerror(rv));
}

static void
on_msg(void *arg, const char *channel, const char *msg, size_t len)
{
	if (msg == NULL)
		out("subscribed %s", channel);
	else
		out("msg %s %.*s", channel, (int)len, msg);
	if (msg != NULL && free_on_msg)
		close_store();
}

static void
on_answer(void *arg, const struct redisReply *rep, const char *err)
{
	enum op op = (enum op)(intptr_t)arg;
	struct route_claim c;
	int v;

	if (err != NULL) {
		out("error %s", err);
		if (op == OP_FREE)
			close_store();
		return;
	}
	switch (op) {
	case OP_CLAIM:
		if (routes_claim_parse(rep, &c) < 0)
			out("error bad answer");
		else if (c.ok)
			out("ok %" PRIu64, c.epoch);
		else
			out("conflict %s %s %" PRIu64, c.node, c.session,
			    c.epoch);
		break;
	case OP_REFRESH:
	case OP_RELEASE:
	case OP_NODE:
		if ((v = routes_bool_parse(rep)) < 0)
			out("error bad answer");
		else
			out("%s %d",
			    op == OP_REFRESH   ? "refresh"
			    : op == OP_RELEASE ? "release"
			                       : "node",
			    v);
		break;
	case OP_CMD:
	case OP_FREE:
		switch (rep->type) {
		case REDIS_REPLY_INTEGER:
			out("reply int %lld", rep->integer);
			break;
		case REDIS_REPLY_STRING:
			out("reply str %.*s", (int)rep->len, rep->str);
			break;
		case REDIS_REPLY_STATUS:
			out("reply status %.*s", (int)rep->len, rep->str);
			break;
		case REDIS_REPLY_NIL:
			out("reply nil");
			break;
		case REDIS_REPLY_ARRAY:
			out("reply array %zu", rep->elements);
			break;
		default:
			out("reply type %d", rep->type);
		}
		if (op == OP_FREE)
			close_store();
		break;
	}
}

static void
eval(const struct rstore_script *s, enum op op, int rv, struct routes_argv *a)
{
	if (rv == 0)
		rv = rstore_eval(store, s, on_answer, (void *)(intptr_t)op,
		    a->nkeys, a->argc, a->argv, a->len);
	if (rv < 0)
		refused(rv);
}

static void
line(char *l)
{
	char *av[32];
	int ac = 0;
	struct routes_argv a;
	char *save = NULL;

	for (char *t = strtok_r(l, " ", &save); t != NULL && ac < 32;
	     t = strtok_r(NULL, " ", &save))
		av[ac++] = t;
	if (ac == 0)
		return;
	if (strcmp(av[0], "claim") == 0 && ac == 5)
		eval(s_claim, OP_CLAIM,
		    routes_claim_argv(
		        &a, av[1], av[2], av[3], strtoull(av[4], NULL, 10)),
		    &a);
	else if (strcmp(av[0], "refresh") == 0 && ac == 5)
		eval(s_refresh, OP_REFRESH,
		    routes_refresh_argv(&a, av[1], av[2],
		        strtoull(av[3], NULL, 10), strtoull(av[4], NULL, 10)),
		    &a);
	else if (strcmp(av[0], "release") == 0 && ac == 4)
		eval(s_release, OP_RELEASE,
		    routes_release_argv(
		        &a, av[1], av[2], strtoull(av[3], NULL, 10)),
		    &a);
	else if (strcmp(av[0], "node") == 0 && ac == 5)
		eval(s_node, OP_NODE,
		    routes_node_argv(&a, av[1], av[2],
		        strtoull(av[3], NULL, 10), 0, 1700000000,
		        strtoull(av[4], NULL, 10)),
		    &a);
	else if (strcmp(av[0], "sub") == 0 && ac == 2) {
		int rv = rstore_subscribe(store, av[1], on_msg, NULL);
		if (rv < 0)
			out("error %s", mg_strerror(rv));
	} else if (strcmp(av[0], "cmd") == 0 && ac >= 2) {
		int rv =
		    rstore_cmdargv(store, on_answer, (void *)(intptr_t)OP_CMD,
		        ac - 1, (const char **)av + 1, NULL);
		if (rv < 0)
			refused(rv);
	} else if (strcmp(av[0], "free-after") == 0 && ac >= 2) {
		int rv =
		    rstore_cmdargv(store, on_answer, (void *)(intptr_t)OP_FREE,
		        ac - 1, (const char **)av + 1, NULL);
		if (rv < 0)
			refused(rv);
	} else if (strcmp(av[0], "free-on") == 0 && ac == 2) {
		free_on_down = strcmp(av[1], "down") == 0;
		free_on_msg = strcmp(av[1], "msg") == 0;
		out("armed");
	} else if (strcmp(av[0], "stats") == 0) {
		struct rstore_stats st;
		rstore_stats(store, &st);
		out("stats commands=%" PRIu64 " errors=%" PRIu64
		    " reconnects=%" PRIu64 " timeouts=%" PRIu64
		    " in_flight=%u up=%d sub_up=%d rtt_us_avg=%" PRIu64
		    " rtt_us_last=%" PRIu64,
		    st.commands, st.errors, st.reconnects, st.timeouts,
		    st.in_flight, st.up, st.sub_up, st.rtt_us_avg,
		    st.rtt_us_last);
	} else if (strcmp(av[0], "quit") == 0) {
		rstore_free(store);
		store = NULL;
		out("closed");
		event_base_loopexit(base, NULL);
	} else
		out("error usage");
}

static void
on_stdin(evutil_socket_t fd, short what, void *arg)
{
	struct evbuffer *in = arg;
	char *l;
	int n = evbuffer_read(in, fd, 4096);

	while (store != NULL &&
	       (l = evbuffer_readln(in, NULL, EVBUFFER_EOL_LF)) != NULL) {
		line(l);
		free(l);
	}
	if (n <= 0 && store != NULL) {
		rstore_free(store);
		store = NULL;
		out("closed");
		event_base_loopexit(base, NULL);
	}
}

int
main(int argc, char **argv)
{
	struct rstore_hooks hooks = {on_up, on_down, NULL};
	struct evbuffer *in;
	struct event *ev;
	char err[256];

	if (argc < 2) {
		fprintf(stderr, "usage: rstore_drive URL [TIMEOUT_MS "
		                "[MAX_INFLIGHT]]\n");
		return 2;
	}
	if (getenv("RSTORE_DEBUG") != NULL)
		log_set_level(LOG_DEBUG);
	base = event_base_new();
	store = rstore_new(base, argv[1], &hooks, err, sizeof(err));
	if (store == NULL) {
		out("error %s", err);
		return 1;
	}
	rstore_set_limits(store, argc > 2 ? (unsigned)atoi(argv[2]) : 0,
	    argc > 3 ? (unsigned)atoi(argv[3]) : 0);
	s_claim = rstore_script_add(store, routes_lua_claim);
	s_refresh = rstore_script_add(store, routes_lua_refresh);
	s_release = rstore_script_add(store, routes_lua_release);
	s_node = rstore_script_add(store, routes_lua_node);
	in = evbuffer_new();
	ev = event_new(base, 0, EV_READ | EV_PERSIST, on_stdin, in);
	event_add(ev, NULL);
	event_base_dispatch(base);
	event_free(ev);
	evbuffer_free(in);
	rstore_free(store);
	event_base_free(base);
	return 0;
}
