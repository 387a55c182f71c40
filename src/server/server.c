/* server.c: the control listener, sessions, authentication and the control
 * protocol of `mgrok server` (docs/protocol.md section 4). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "metrics/metrics.h"
#include "mux/mux.h"
#include "proto/ctrl.h"
#include "cluster/routes.h"
#include "server/climits.h"
#include "server/cluster.h"
#include "server/forward.h"
#include "server/fwdudp.h"
#include "server/server.h"
#include "server/accept.h"
#include "server/hproxy.h"
#include "conf/policy.h"
#include "server/admin.h"
#include "server/server_int.h"
#include "server/dsproxy.h"
#include "server/sproxy.h"
#include "tls/tls.h"
#include "util/crypto.h"
#include "util/err.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/mtime.h"
#include "util/net.h"
#include "util/xmalloc.h"

#define SERVER_AGENT "mgrok/0.1.0"
#define SERVER_CAPS \
	(CTRL_CAP_STREAM_EX | CTRL_CAP_UDP_FLOWS | CTRL_CAP_LEASES | \
	CTRL_CAP_HASHED_SECRET | CTRL_CAP_STREAM_META | CTRL_CAP_HEALTH)
#define AUTH_DEADLINE_S 10

/* the capabilities this server offers: CLUSTER (names and ports hold on
 * the other nodes, docs/internals/protocol-ext.md) only with --cluster */
static uint32_t
server_caps(const struct server *srv)
{
	return SERVER_CAPS | (srv->cl != NULL ? CTRL_CAP_CLUSTER : 0);
}

static void session_close(struct session *s, int err);
static void session_send_code(struct session *s, uint8_t type, uint8_t code,
    const char *text);

#define SLOG(lvl, s, fmt, ...)                                               \
	log_msg(lvl, "session %llu (%s): " fmt, (unsigned long long)(s)->id,  \
	    (s)->peer, ##__VA_ARGS__)

static int
session_send(struct session *s, const struct ctrl_msg *m)
{
	uint8_t buf[1024];
	int n = ctrl_encode(m, buf, sizeof(buf));

	if (n < 0) {
		SLOG(LOG_ERROR, s, "cannot encode %s: %s",
		    ctrl_type_name(m->type), mg_strerror(n));
		return n;
	}
	return mux_stream_send_msg(s->ctrl, buf, (size_t)n);
}

static void
session_send_code(struct session *s, uint8_t type, uint8_t code,
    const char *text)
{
	struct ctrl_msg m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.u.err.code = code;
	m.u.err.text.p = (const uint8_t *)text;
	m.u.err.text.len = strlen(text);
	if (s->ctrl)
		session_send(s, &m);
}

/* Refuse with AuthErr or Error and close; s is gone afterwards. */
static void
session_fail(struct session *s, uint8_t type, uint8_t code, const char *text)
{
	SLOG(LOG_WARN, s, "%s code %u: %s", ctrl_type_name(type), code, text);
	session_send_code(s, type, code, text);
	/* the close line says why, not "protocol error" for a bad token */
	snprintf(s->close_why, sizeof(s->close_why), "%s", text);
	session_close(s, MG_EPROTO);
}

/* srv->session_fail: a stream of s broke the protocol (udp.c). */
static void
session_fail_error(struct session *s, uint8_t code, const char *text)
{
	session_fail(s, CTRL_ERROR, code, text);
}

/*
 * The answer to one registration, in its session's order: RegisterOK or
 * RegisterErr, filled at once or when the cluster's claim comes back.
 * In a cluster, a registration may first wait for the other nodes' count
 * of its token's tunnels (regwait, below): it holds the Register as it
 * came, decoded again when it goes on.
 */
struct regslot {
	TAILQ_ENTRY(regslot) link;
	uint64_t seq;
	int filled;
	int ok;
	uint8_t type, code;
	uint16_t port;
	uint32_t px_id;               /* OK: the tunnel, for what follows */
	int resumed;
	char name[CTRL_NAME_MAX + 1];
	size_t name_len;
	char text[400];               /* the URL, or why it was refused */
	/* waiting for the count (regwait): the message, and a deadline */
	struct session *s;
	uint8_t *raw;
	size_t raw_len;
	struct event *wait_ev;
};

static void
regslots_free(struct session *s)
{
	struct regslot *r;

	while ((r = TAILQ_FIRST(&s->regslots)) != NULL) {
		TAILQ_REMOVE(&s->regslots, r, link);
		if (r->wait_ev != NULL)
			event_free(r->wait_ev);
		free(r->raw);
		free(r);
	}
}

static struct regslot *
regslot_new(struct session *s, const struct ctrl_register *reg)
{
	struct regslot *r = xcalloc(1, sizeof(*r));

	r->seq = ++s->regslot_seq;
	r->name_len = reg->name.len < sizeof(r->name) ? reg->name.len :
	    sizeof(r->name) - 1;
	memcpy(r->name, reg->name.p, r->name_len);
	TAILQ_INSERT_TAIL(&s->regslots, r, link);
	return r;
}

static struct regslot *
regslot_find(struct session *s, uint64_t seq)
{
	struct regslot *r;

	TAILQ_FOREACH(r, &s->regslots, link)
		if (r->seq == seq)
			return r;
	return NULL;
}

/* send the answers that are ready, in order; an OK lets the visitors that
 * waited for its tunnel go on */
static void
regslots_flush(struct session *s)
{
	struct regslot *r;
	struct ctrl_msg m;

	while ((r = TAILQ_FIRST(&s->regslots)) != NULL && r->filled) {
		TAILQ_REMOVE(&s->regslots, r, link);
		memset(&m, 0, sizeof(m));
		if (r->ok) {
			struct proxy *px = registry_get(&s->srv->reg, r->px_id);
			m.type = CTRL_REGISTER_OK;
			m.u.reg_ok.proxy_type = r->type;
			m.u.reg_ok.remote_port = r->port;
			m.u.reg_ok.name.p = (const uint8_t *)r->name;
			m.u.reg_ok.name.len = r->name_len;
			m.u.reg_ok.url.p = (const uint8_t *)r->text;
			m.u.reg_ok.url.len = strlen(r->text);
			session_send(s, &m);
			if (px != NULL) {
				smet_tunnel_up(px, r->resumed, r->text);
				/* only now does the client know the tunnel:
				 * visitors that waited for it (lease grace) may
				 * go on */
				proxy_serve_waiting(px);
			}
		} else {
			m.type = CTRL_REGISTER_ERR;
			m.u.reg_err.code = r->code;
			m.u.reg_err.name.p = (const uint8_t *)r->name;
			m.u.reg_err.name.len = r->name_len;
			m.u.reg_err.text.p = (const uint8_t *)r->text;
			m.u.reg_err.text.len = strlen(r->text);
			session_send(s, &m);
		}
		free(r);
	}
}

static void
regslot_err(struct session *s, struct regslot *r, uint8_t code,
    const char *why)
{
	char n[LOG_ESC_MAX];

	SLOG(LOG_WARN, s, "register \"%s\" refused: %s", log_esc(r->name,
	    r->name_len, n, sizeof(n)), why);
	smet_register_refused(s, code, r->name, why);
	r->ok = 0;
	r->code = code;
	snprintf(r->text, sizeof(r->text), "%s", why);
	r->filled = 1;
}

static void
regslot_ok(struct session *s, struct regslot *r, struct proxy *px)
{
	char n[LOG_ESC_MAX];

	if (s->state < SESS_BOUND)
		s->state = SESS_BOUND;
	r->ok = 1;
	r->type = px->type;
	r->port = px->port;
	r->px_id = px->id;
	r->resumed = px->m_bytes[0] != NULL;
	r->name_len = strlen(px->name);
	memcpy(r->name, px->name, r->name_len + 1);
	proxy_url(px, r->text, sizeof(r->text));
	SLOG(LOG_INFO, s, "proxy \"%s\" (%s) at %s", log_esc(px->name,
	    strlen(px->name), n, sizeof(n)), proxy_type_name(px->type),
	    r->text);
	r->filled = 1;
}

/*
 * The server closes a tunnel of a live session (another node owns its
 * public side now; a reload's policy no longer allows it): its agent is
 * told with TunnelClosed (0x17, docs/internals/protocol-ext.md) when its
 * session has capability 6, which says it knows the message.
 */
static void __attribute__((format(printf, 3, 4)))
tunnel_closed(struct proxy *px, uint8_t code, const char *fmt, ...)
{
	struct ctrl_msg m;
	char text[300];
	va_list ap;

	if (px->sess == NULL || !(px->sess->caps & CTRL_CAP_CLUSTER) ||
	    px->is_group)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	memset(&m, 0, sizeof(m));
	m.type = CTRL_TUNNEL_CLOSED;
	m.u.reg_err.code = code;
	m.u.reg_err.name.p = (const uint8_t *)px->name;
	m.u.reg_err.name.len = strlen(px->name);
	m.u.reg_err.text.p = (const uint8_t *)text;
	m.u.reg_err.text.len = strlen(text);
	session_send(px->sess, &m);
}

/* ---- the cluster: route claims ---- */

struct claimwait {
	struct server *srv;
	uint64_t sent_ms;             /* when the claim or refresh went out */
	uint64_t sess_id, seq;
	uint32_t px_id;               /* the tunnel registered */
	uint32_t route_id;            /* the tunnel that holds the route */
	char key[ROUTES_KEY_MAX];
	char sess[64];                /* its claim session */
};

/*
 * The claim session of the tunnel rt: its lease owner (identity and
 * client id), the same on every node, so an agent that fails over to
 * another node takes its routes with it (a new epoch fences the old
 * node); a group's is its own, on this node.
 */
static void
claim_session(const struct server *srv, const struct proxy *rt, char *out,
    size_t cap)
{
	uint8_t h[CRYPTO_SHA256_LEN], buf[SERVER_ID_MAX + CTRL_ID_LEN];
	size_t il = strlen(rt->identity);

	if (rt->is_group) {
		snprintf(out, cap, "g%u.%.40s", rt->id, cluster_node(srv->cl));
		return;
	}
	memcpy(buf, rt->identity, il);
	memcpy(buf + il, rt->client_id, CTRL_ID_LEN);
	crypto_sha256(buf, il + CTRL_ID_LEN, h);
	snprintf(out, cap, "o%02x%02x%02x%02x%02x%02x%02x%02x", h[0], h[1],
	    h[2], h[3], h[4], h[5], h[6], h[7]);
}

static struct session *
session_by_id(struct server *srv, uint64_t id)
{
	struct session *s;

	TAILQ_FOREACH(s, &srv->sessions, link)
		if (s->id == id)
			return s;
	return NULL;
}

/* a claim or refresh that succeeded holds for a TTL from when it went
 * out (Redis's clock may have started it a little later: the margin) */
static uint64_t
claim_valid_until(const struct claimwait *w)
{
	return w->sent_ms + CLUSTER_TTL_MS - 1000;
}

static struct claimwait *
claimwait_new(struct server *srv)
{
	struct claimwait *w = xcalloc(1, sizeof(*w));

	w->srv = srv;
	w->sent_ms = mtime_ms();
	return w;
}

static void
claim_done(void *arg, int ok, uint64_t epoch, const char *owner,
    const char *err)
{
	struct claimwait *w = arg;
	struct server *srv = w->srv;
	struct session *s = session_by_id(srv, w->sess_id);
	struct regslot *r = s ? regslot_find(s, w->seq) : NULL;
	struct proxy *px = registry_get(&srv->reg, w->px_id);
	struct proxy *rt = registry_get(&srv->reg, w->route_id);
	char why[300], key[ROUTES_KEY_MAX] = "";

	if (rt != NULL)
		proxy_route_key(rt, key, sizeof(key));
	if (ok && rt != NULL) {
		rt->cl_epoch = epoch;
		rt->cl_valid_ms = claim_valid_until(w);
		log_debug("cluster: %s claimed, epoch %llu", key,
		    (unsigned long long)epoch);
	}
	if (ok && px != NULL && r != NULL)
		regslot_ok(s, r, px);
	else if (!ok && r != NULL) {
		if (err != NULL)
			snprintf(why, sizeof(why), "cluster state unavailable "
			    "(%s), retrying", err);
		else
			snprintf(why, sizeof(why), "%s is in use on node %s",
			    rt ? proxy_where(rt) : "its public side", owner);
		regslot_err(s, r, err ? CODE_INTERNAL : CODE_IN_USE, why);
	}
	if (!ok && px != NULL) {
		px->end_why = err ? "cluster state unavailable" :
		    "its public side is another node's";
		proxy_unregister(px);
	} else if (ok && rt == NULL)
		/* its holder ended while the claim was on its way */
		cluster_release(srv->cl, w->key, epoch);
	if (s != NULL)
		regslots_flush(s);
	free(w);
}

/*
 * A name the policy would not let the agent choose, asked as the one
 * another node gave it (proxy.c, cl_owned_only): it is the agent's when
 * its route's record names the agent's lease owner; then the claim goes
 * on (a new epoch), else the registration is refused with the policy's
 * reason.
 */
static void
owned_check_done(void *arg, const char *session, const char *err)
{
	struct claimwait *w = arg;
	struct server *srv = w->srv;
	struct session *s = session_by_id(srv, w->sess_id);
	struct regslot *r = s ? regslot_find(s, w->seq) : NULL;
	struct proxy *px = registry_get(&srv->reg, w->px_id);
	char why[300], pb[300];
	const char *msg;

	if (err == NULL && strcmp(session, w->sess) == 0 && px != NULL &&
	    r != NULL && cluster_claim(srv->cl, w->key, w->sess, claim_done,
	    w) == 0)
		return;
	if (px != NULL && r != NULL) {
		if (err != NULL || strcmp(session, w->sess) == 0) {
			snprintf(why, sizeof(why), "cluster state unavailable "
			    "(%s), retrying", err ? err : "the store is "
			    "unreachable");
			regslot_err(s, r, CODE_INTERNAL, why);
		} else {
			msg = proxy_side_misfit(srv, proxy_policy(srv,
			    s->identity), px->type, px->port, px->host, pb,
			    sizeof(pb));
			snprintf(why, sizeof(why), "%.200s%s%s is not this "
			    "agent's in the cluster", msg ? msg : "", msg ?
			    ", and " : "", px->host);
			regslot_err(s, r, CODE_NOT_ALLOWED, why);
		}
	}
	if (px != NULL) {
		px->end_why = "its name is not this agent's in the cluster";
		proxy_unregister(px);
	}
	if (s != NULL)
		regslots_flush(s);
	free(w);
}

/* claim the route of px (or of its group) for a registration of s, whose
 * answer is r; 0 when it went out, -1 when the store is down */
static int
claim_start(struct session *s, struct regslot *r, struct proxy *px)
{
	struct server *srv = s->srv;
	struct proxy *rt = px->group_id && !px->is_group ?
	    registry_get(&srv->reg, px->group_id) : px;
	struct claimwait *w;
	char key[ROUTES_KEY_MAX], sess[64];

	if (rt == NULL || proxy_route_key(rt, key, sizeof(key)) != 0)
		return -1;
	claim_session(srv, rt, sess, sizeof(sess));
	w = claimwait_new(srv);
	w->sess_id = s->id;
	w->seq = r->seq;
	w->px_id = px->id;
	w->route_id = rt->id;
	snprintf(w->key, sizeof(w->key), "%s", key);
	snprintf(w->sess, sizeof(w->sess), "%s", sess);
	if (px->cl_owned_only) {
		/* the record first: is the name the agent's already? */
		if (cluster_route_session(srv->cl, key, owned_check_done,
		    w) != 0) {
			free(w);
			return -1;
		}
		return 0;
	}
	if (cluster_claim(srv->cl, key, sess, claim_done, w) != 0) {
		free(w);
		return -1;
	}
	return 0;
}

static void
refresh_done(void *arg, int ours, const char *err)
{
	struct claimwait *w = arg;
	struct proxy *px = registry_get(&w->srv->reg, w->route_id);

	if (err == NULL && ours && px != NULL && px->cl_epoch == w->seq)
		px->cl_valid_ms = claim_valid_until(w);
	if (err == NULL && !ours && px != NULL && px->cl_epoch == w->seq &&
	    !px->is_group) {
		char n[LOG_ESC_MAX];
		log_warn("cluster: %s \"%s\" on %s: another node owns its "
		    "public side now: closed", proxy_type_name(px->type),
		    log_esc(px->name, strlen(px->name), n, sizeof(n)),
		    proxy_where(px));
		px->cl_epoch = 0; /* not ours to release */
		px->end_why = "its public side is another node's";
		tunnel_closed(px, CODE_IN_USE, "%s is another node's now",
		    proxy_where(px));
		proxy_unregister(px);
	}
	free(w);
}

/* another node claimed key (the store's channel): if this node holds it,
 * a refresh now, not at the next beat, finds out whether it is lost (an
 * agent that moved: its lease here ends at once) */
static void
cluster_on_route_moved(struct server *srv, const char *key)
{
	struct proxy *px;
	char k[ROUTES_KEY_MAX];

	LIST_FOREACH(px, &srv->reg.all, link) {
		struct claimwait *w;
		if (px->cl_epoch == 0 || proxy_route_key(px, k, sizeof(k)) !=
		    0 || strcmp(k, key) != 0)
			continue;
		w = claimwait_new(srv);
		w->route_id = px->id;
		w->seq = px->cl_epoch;
		if (cluster_refresh(srv->cl, k, px->cl_epoch, refresh_done,
		    w) != 0)
			free(w);
		return;
	}
}

/* every heartbeat: the routes we hold stay ours a TTL longer */
static void
cluster_on_beat(void *arg)
{
	struct server *srv = arg;
	struct proxy *px;
	char key[ROUTES_KEY_MAX];

	forward_on_beat(srv);
	if (!cluster_up(srv->cl))
		return;
	LIST_FOREACH(px, &srv->reg.all, link) {
		struct claimwait *w;
		if (px->cl_epoch == 0 || proxy_route_key(px, key,
		    sizeof(key)) != 0)
			continue;
		w = claimwait_new(srv);
		w->route_id = px->id;
		w->seq = px->cl_epoch;
		if (cluster_refresh(srv->cl, key, px->cl_epoch, refresh_done,
		    w) != 0)
			free(w);
	}
}

static void
reassert_done(void *arg, int ok, uint64_t epoch, const char *owner,
    const char *err)
{
	struct claimwait *w = arg;
	struct proxy *px = registry_get(&w->srv->reg, w->route_id);

	if (px != NULL && ok) {
		px->cl_epoch = epoch;
		px->cl_valid_ms = claim_valid_until(w);
	}
	else if (px != NULL && err == NULL && !px->is_group) {
		char n[LOG_ESC_MAX];
		log_warn("cluster: %s \"%s\" on %s: node %s owns its public "
		    "side now: closed", proxy_type_name(px->type),
		    log_esc(px->name, strlen(px->name), n, sizeof(n)),
		    proxy_where(px), owner);
		px->cl_epoch = 0;
		px->end_why = "its public side is another node's";
		tunnel_closed(px, CODE_IN_USE, "%s is in use on node %s",
		    proxy_where(px), owner);
		proxy_unregister(px);
	}
	free(w);
}

static void
cluster_on_down(void *arg, const char *why)
{
	(void)why;
	forward_on_store(arg, 0);
}

/* the store is back (a reconnect, maybe a Redis restarted empty): what we
 * hold is claimed again */
static void
cluster_on_up(void *arg)
{
	struct server *srv = arg;
	struct proxy *px;
	char key[ROUTES_KEY_MAX], sess[64];
	unsigned n = 0;

	forward_on_store(srv, 1);
	LIST_FOREACH(px, &srv->reg.all, link) {
		struct claimwait *w;
		if (px->cl_epoch == 0 || proxy_route_key(px, key,
		    sizeof(key)) != 0)
			continue;
		claim_session(srv, px, sess, sizeof(sess));
		w = claimwait_new(srv);
		w->route_id = px->id;
		if (cluster_claim(srv->cl, key, sess, reassert_done, w) != 0)
			free(w);
		else
			n++;
	}
	if (n)
		log_info("cluster: %u routes asserted again", n);
}

/* the node record's counts (the cluster view, /api/v1/cluster) */
static void
cluster_on_load(void *arg, uint64_t *sessions, uint64_t *tunnels)
{
	struct server *srv = arg;

	*sessions = srv->nauthed;
	*tunnels = srv->reg.count;
}

static void
session_destroy(struct session *s, const char *why)
{
	struct server *srv = s->srv;
	struct proxy *px;

	while ((px = LIST_FIRST(&s->proxies)) != NULL) {
		LIST_REMOVE(px, sess_link);
		proxy_session_lost(px);
	}
	regslots_free(s);
	smet_session_down(s, why);
	TAILQ_REMOVE(&srv->sessions, s, link);
	srv->nsessions--;
	if (s->authed)
		srv->nauthed--;
	if (s->deadline)
		event_free(s->deadline);
	mux_free(s->mux);
	free(s);
}

static void
session_mux_closed(struct mux *m, int err, void *arg)
{
	struct session *s = arg;
	uint64_t tx, rx;
	const char *why = s->close_why[0] ? s->close_why :
	    err == MG_ECLOSED ? "connection closed" :
	    err == MG_ETIMEDOUT ? "heartbeat timeout" :
	    err == MG_EPROTO ? "protocol error" : mg_strerror(err);

	mux_stats(m, &tx, &rx);
	/* the tunnels' public bytes, as every other figure of the session
	 * (the control connection's own are its wire bytes) */
	SLOG(LOG_INFO, s,
	    "closed: %s; %llu streams, %llu bytes in, %llu bytes out "
	    "(public; %llu/%llu on the wire), %llu s",
	    why, (unsigned long long)s->streams_total,
	    (unsigned long long)smet_sess_bytes(s, SMET_IN),
	    (unsigned long long)smet_sess_bytes(s, SMET_OUT),
	    (unsigned long long)rx, (unsigned long long)tx,
	    (unsigned long long)((mtime_ms() - s->started_ms) /
		1000));
	session_destroy(s, why);
}

static void
session_close(struct session *s, int err)
{
	mux_close(s->mux, err);
}

static void
session_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	if (s->state < SESS_AUTHENTICATED) {
		SLOG(LOG_WARN, s, "no authentication within %d s",
		    AUTH_DEADLINE_S);
		smet_auth_failed(s->srv, SMET_AUTH_TIMEOUT);
		if (s->ctrl)
			session_fail(s, CTRL_AUTH_ERR, CODE_AUTH_FAILED,
			    "authentication timed out");
		else
			session_close(s, MG_ETIMEDOUT);
	}
}

/* ---- authentication ---- */

/*
 * A token's identity, which names it in logs and owns its leases: never
 * its position in a list (which a reload reorders), but its name in the
 * config file (`tokens: [{name, secret}]`) or else a name derived from the
 * secret, "token-" and the first 8 hex digits of its SHA-256, so
 * the same token keeps its leases across reloads and restarts, and a
 * rotated one is another identity. Also the hash, to recognise sessions
 * of a token that a reload removed. The hash is what the configuration
 * keeps for every token, so a secret in clear and the same secret stored
 * as `secret_sha256` are one identity.
 */
static void
token_ident(const struct server_conf *cf, size_t i, char *ident, size_t cap,
    uint8_t hash[CRYPTO_SHA256_LEN])
{
	const uint8_t *h = cf->token_sha256[i];

	snprintf(ident, cap, "token-%02x%02x%02x%02x", h[0], h[1], h[2], h[3]);
	if (hash)
		memcpy(hash, h, CRYPTO_SHA256_LEN);
}

/* Is there a token with this hash in cf? */
static int
token_known(const struct server_conf *cf, const uint8_t *hash)
{
	for (size_t i = 0; i < cf->ntokens; i++)
		if (memcmp(cf->token_sha256[i], hash, CRYPTO_SHA256_LEN) == 0)
			return 1;
	return 0;
}

/* A token stored only as its hash (secret_sha256)? */
static int
token_hashed_only(const struct server_conf *cf)
{
	for (size_t i = 0; i < cf->ntokens; i++)
		if (cf->tokens[i] == NULL)
			return 1;
	return 0;
}

/* The TOKEN method: the SHA-256 of what was presented against every
 * token's (clear or hashed alike), in constant time. */
static int
token_match(struct server *srv, const uint8_t *t, size_t len)
{
	uint8_t h[CRYPTO_SHA256_LEN];
	int found = -1;

	crypto_sha256(t, len, h);
	/* compare against every token, so timing shows nothing */
	for (size_t i = 0; i < srv->cf->ntokens; i++)
		if (crypto_memeq(srv->cf->token_sha256[i], h, sizeof(h)) &&
		    found < 0)
			found = (int)i;
	return found;
}

/*
 * The HMAC method: the key is the token itself, or with capability 3
 * (HASHED_SECRET, agreed in the Challenge) its SHA-256, which a token
 * stored as a hash also has. A hashed-only token cannot match the
 * unhashed scheme.
 */
static int
mac_match(struct session *s, const uint8_t mac[CTRL_MAC_LEN])
{
	const struct server_conf *cf = s->srv->cf;
	int hashed = (s->caps & CTRL_CAP_HASHED_SECRET) != 0;
	uint8_t want[CTRL_MAC_LEN];
	int found = -1;

	for (size_t i = 0; i < cf->ntokens; i++) {
		if (hashed)
			ctrl_auth_mac(cf->token_sha256[i], CRYPTO_SHA256_LEN,
			    s->client_nonce, s->server_nonce, s->client_id,
			    want);
		else if (cf->tokens[i] != NULL)
			ctrl_auth_mac((const uint8_t *)cf->tokens[i],
			    strlen(cf->tokens[i]), s->client_nonce,
			    s->server_nonce, s->client_id, want);
		else
			continue;
		if (crypto_memeq(want, mac, CTRL_MAC_LEN) && found < 0)
			found = (int)i;
	}
	return found;
}

static int
id_is_zero(const uint8_t id[CTRL_ID_LEN])
{
	for (int i = 0; i < CTRL_ID_LEN; i++)
		if (id[i])
			return 0;
	return 1;
}

/* A newer session of the same (identity, client_id) replaces older ones. */
static void
session_take_over(struct session *s)
{
	struct session *o, *next;

	if (id_is_zero(s->client_id))
		return;
	for (o = TAILQ_FIRST(&s->srv->sessions); o != NULL; o = next) {
		next = TAILQ_NEXT(o, link);
		if (o == s || !o->authed ||
		    strcmp(o->identity, s->identity) != 0 ||
		    memcmp(o->client_id, s->client_id, CTRL_ID_LEN) != 0)
			continue;
		SLOG(LOG_INFO, o, "replaced by session %llu",
		    (unsigned long long)s->id);
		session_send_code(o, CTRL_GOODBYE, CODE_REPLACED,
		    "replaced by a newer session of the same client");
		smet_session_replaced(o, s);
		/* its proxies go to grace and this session adopts them */
		o->goodbye_received = 0;
		session_close(o, MG_ECLOSED);
		next = TAILQ_FIRST(&s->srv->sessions); /* list changed */
	}
}

static void
session_authenticated(struct session *s, const char *identity)
{
	struct server *srv = s->srv;
	struct ctrl_msg m;

	if (srv->nauthed >= srv->cf->max_sessions) {
		session_fail(s, CTRL_AUTH_ERR, CODE_LIMIT,
		    "too many sessions on this server");
		return;
	}
	snprintf(s->identity, sizeof(s->identity), "%s", identity);
	s->authed = 1;
	srv->nauthed++;
	s->state = SESS_AUTHENTICATED;
	if (s->deadline)
		event_del(s->deadline);
	climits_session(srv, identity); /* its counts read before AuthOK */
	memset(&m, 0, sizeof(m));
	m.type = CTRL_AUTH_OK;
	m.u.auth_ok.caps = s->caps;
	m.u.auth_ok.heartbeat_s = (uint16_t)srv->cf->heartbeat_s;
	m.u.auth_ok.agent.p = (const uint8_t *)SERVER_AGENT;
	m.u.auth_ok.agent.len = strlen(SERVER_AGENT);
	session_send(s, &m);
	SLOG(LOG_INFO, s, "authenticated (%s, %s, agent \"%s\", caps 0x%x)",
	    s->method == CTRL_METHOD_HMAC ? "hmac" :
	    s->method == CTRL_METHOD_MTLS ? "mtls" : "token",
	    identity, s->agent, s->caps);
	smet_session_up(s);
	session_take_over(s);
}

/* s proved token number i (TOKEN or HMAC): its identity is the token's
 * name, or the name derived from its secret. */
static void
session_token_authenticated(struct session *s, size_t i)
{
	const struct server_conf *cf = s->srv->cf;
	char ident[SERVER_ID_MAX];

	const struct conf_policy *pol = policy_for_token(cf, i);
	char msg[300];

	token_ident(cf, i, ident, sizeof(ident), s->token_hash);
	if (cf->token_names[i])
		snprintf(ident, sizeof(ident), "%s", cf->token_names[i]);
	if (policy_expired(pol, (int64_t)time(NULL), msg, sizeof(msg))) {
		smet_auth_failed(s->srv, SMET_AUTH_EXPIRED);
		SLOG(LOG_WARN, s, "refused: %s", msg);
		session_fail(s, CTRL_AUTH_ERR, CODE_AUTH_FAILED, msg);
		return;
	}
	s->by_token = 1;
	session_authenticated(s, ident);
}

static void
session_on_hello(struct session *s, const uint8_t *p, size_t len)
{
	struct ctrl_hello h;
	int rc = ctrl_hello_decode(p, len, &h), id;
	char ident[SERVER_ID_MAX];

	if (rc < 0) {
		smet_auth_failed(s->srv, SMET_AUTH_BAD_HELLO);
		session_fail(s, CTRL_AUTH_ERR, rc == MG_EUNSUPP ?
		    CODE_METHOD_NOT_ALLOWED : CODE_PROTOCOL, h.err);
		return;
	}
	s->method = h.method;
	switch (h.method) {
	case CTRL_METHOD_TOKEN:
		/* the token travels in the clear: refuse it only off TLS */
		if (s->srv->cf->no_plain_token && !s->tls) {
			smet_auth_failed(s->srv, SMET_AUTH_METHOD);
			session_fail(s, CTRL_AUTH_ERR, CODE_METHOD_NOT_ALLOWED,
			    "plain TOKEN auth is refused here; use HMAC");
			return;
		}
		snprintf(s->agent, sizeof(s->agent), "legacy");
		s->caps = 0;
		if ((id = token_match(s->srv, h.token.p, h.token.len)) < 0) {
			smet_auth_failed(s->srv, SMET_AUTH_BAD_TOKEN);
			session_fail(s, CTRL_AUTH_ERR, CODE_AUTH_FAILED,
			    "invalid token");
			return;
		}
		session_token_authenticated(s, (size_t)id);
		return;
	case CTRL_METHOD_MTLS:
		if (!s->tls || s->subject[0] == '\0') {
			smet_auth_failed(s->srv, SMET_AUTH_METHOD);
			session_fail(s, CTRL_AUTH_ERR, CODE_METHOD_NOT_ALLOWED,
			    "mTLS authentication needs a TLS connection with a "
			    "verified client certificate");
			return;
		}
		snprintf(s->agent, sizeof(s->agent), "mtls");
		memcpy(s->client_id, h.client_id, CTRL_ID_LEN);
		s->caps = server_caps(s->srv) & ~CTRL_CAP_HASHED_SECRET;
		snprintf(ident, sizeof(ident), "cert:%s", s->subject);
		{
			char msg[300];
			if (policy_expired(policy_for_subject(s->srv->cf,
			    s->subject), (int64_t)time(NULL), msg,
			    sizeof(msg))) {
				smet_auth_failed(s->srv, SMET_AUTH_EXPIRED);
				session_fail(s, CTRL_AUTH_ERR,
				    CODE_AUTH_FAILED, msg);
				return;
			}
		}
		session_authenticated(s, ident);
		return;
	case CTRL_METHOD_HMAC: {
		struct ctrl_msg m;
		size_t al = h.agent.len < sizeof(s->agent) - 1 ? h.agent.len :
		    sizeof(s->agent) - 1;
		for (size_t i = 0; i < al; i++)
			s->agent[i] = (h.agent.p[i] >= 0x20 &&
			    h.agent.p[i] < 0x7f) ? (char)h.agent.p[i] : '?';
		s->agent[al] = '\0';
		memcpy(s->client_nonce, h.client_nonce, CTRL_NONCE_LEN);
		memcpy(s->client_id, h.client_id, CTRL_ID_LEN);
		s->caps = h.caps & server_caps(s->srv);
		crypto_random(s->server_nonce, CTRL_NONCE_LEN);
		/* 16 bytes, or 20 (the caps) to a client that has
		 * HASHED_SECRET: then the MAC's key is SHA-256(token) */
		ctrl_challenge_make(&m, s->server_nonce, h.caps,
		    server_caps(s->srv));
		s->state = SESS_HANDSHAKEN;
		session_send(s, &m);
		return;
	}
	default:
		smet_auth_failed(s->srv, SMET_AUTH_METHOD);
		session_fail(s, CTRL_AUTH_ERR, CODE_METHOD_NOT_ALLOWED,
		    "unknown authentication method");
		return;
	}
}

/* ---- registration ---- */

/* the registration of s whose answer is slot, now: refused, registered,
 * or its claim sent (the caller flushes the answers) */
static void
register_run(struct session *s, struct regslot *slot,
    const struct ctrl_msg *m, int rc)
{
	const struct ctrl_register *reg = &m->u.reg;
	struct proxy *px = NULL;
	uint8_t code = 0;
	char why[256];
	const char *ptype = proxy_type_name(reg->proxy_type);

	if (rc == MG_ETOOLONG) {
		code = CODE_PROTOCOL;
		snprintf(why, sizeof(why), "name longer than 255 bytes");
	} else if (rc == MG_EUNSUPP) {
		code = CODE_UNSUPPORTED;
		snprintf(why, sizeof(why), "unknown option tag 0x%02x",
		    reg->unknown_tag);
	} else {
		proxy_register(s, reg, &code, why, sizeof(why), &px);
	}
	if (px == NULL) {
		char full[400];
		snprintf(full, sizeof(full), "%s", why);
		SLOG(LOG_DEBUG, s, "register %s port %u", ptype ? ptype : "?",
		    reg->remote_port);
		regslot_err(s, slot, code, full);
	} else if (s->srv->cl != NULL && (px->group_id && !px->is_group ?
	    registry_get(&s->srv->reg, px->group_id) : px) != NULL &&
	    (px->group_id && !px->is_group ? registry_get(&s->srv->reg,
	    px->group_id) : px)->cl_epoch == 0) {
		/* in a cluster, the public side is ours once claimed */
		if (claim_start(s, slot, px) != 0) {
			snprintf(why, sizeof(why), "cluster state unavailable "
			    "(the store is unreachable), retrying");
			px->end_why = "cluster state unavailable";
			proxy_unregister(px);
			regslot_err(s, slot, CODE_INTERNAL, why);
		}
	} else {
		regslot_ok(s, slot, px);
	}
}

/*
 * regwait: in a cluster, the first registration of a token with
 * limits.tunnels on this node (or after its figures were forgotten) waits
 * for the other nodes' count of its tunnels, whose read went out at the
 * login (climits_session) and is usually still on its way: its answer
 * waits the way it waits for the claim, and the registrations of the
 * session after it wait behind it, so that they run in order. The read's
 * end (regwait_read) or REGWAIT_MS, whichever comes first, lets them go
 * on; a count still unknown then is answered "retrying" by the check
 * (proxy_register). At most max_proxies wait per session.
 */
#define REGWAIT_MS 3000 /* the store answers or times out within 2 s */

static struct regslot *
regwait_first(struct session *s)
{
	struct regslot *r;

	TAILQ_FOREACH(r, &s->regslots, link)
		if (r->raw != NULL)
			return r;
	return NULL;
}

/* the waiting registrations of s go on, in order */
static void
regwait_resume(struct session *s)
{
	struct regslot *r;
	struct ctrl_msg m;
	uint8_t *raw;
	int rc;

	while ((r = regwait_first(s)) != NULL) {
		raw = r->raw;
		r->raw = NULL;
		event_free(r->wait_ev);
		r->wait_ev = NULL;
		rc = ctrl_decode(raw, r->raw_len, &m);
		if (rc == MG_EPROTO || (m.type != CTRL_REGISTER &&
		    m.type != CTRL_REGISTER_EX)) /* decoded once already */
			regslot_err(s, r, CODE_INTERNAL, "internal error");
		else if (s->srv->shutting_down)
			regslot_err(s, r, CODE_SHUTDOWN, "server shutting down");
		else
			register_run(s, r, &m, rc);
		free(raw);
	}
	regslots_flush(s);
}

static void
regwait_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct regslot *r = arg;
	struct session *s = r->s;
	char id[LOG_ESC_MAX];

	(void)fd;
	(void)what;
	SLOG(LOG_DEBUG, s, "the count of %s's tunnels: no answer within "
	    "%d ms", log_esc(s->identity, strlen(s->identity), id,
	    sizeof(id)), REGWAIT_MS);
	regwait_resume(s);
}

/* climits' read hook: identity's count was read (or its read failed):
 * each session of identity with registrations waiting goes on */
static void
regwait_read(void *arg, const char *identity)
{
	struct server *srv = arg;
	struct session *s;

	do { /* one session a pass: resuming leaves it nothing waiting */
		TAILQ_FOREACH(s, &srv->sessions, link)
			if (strcmp(s->identity, identity) == 0 &&
			    regwait_first(s) != NULL)
				break;
		if (s != NULL)
			regwait_resume(s);
	} while (s != NULL);
}

/* slot waits (see regwait): 1 when it does, 0 when it is to run now */
static int
regwait_start(struct session *s, struct regslot *slot, int rc,
    const uint8_t *p, size_t len)
{
	struct timeval tv = { REGWAIT_MS / 1000, (REGWAIT_MS % 1000) * 1000 };
	const struct conf_policy *pol;
	struct regslot *r;
	unsigned n = 0;
	char why[300];

	TAILQ_FOREACH(r, &s->regslots, link)
		n += r->raw != NULL;
	if (n == 0 && (rc != 0 || !climits_wait(s->srv, s->identity)))
		return 0;
	if (n >= s->srv->cf->max_proxies) {
		pol = proxy_policy(s->srv, s->identity);
		snprintf(why, sizeof(why), "cluster state unavailable (the "
		    "count of %.200s's tunnels is being read), retrying",
		    pol ? pol->name : s->identity);
		regslot_err(s, slot, CODE_INTERNAL, why);
		return 1;
	}
	slot->s = s;
	slot->raw = xmalloc(len);
	memcpy(slot->raw, p, len);
	slot->raw_len = len;
	slot->wait_ev = evtimer_new(s->srv->base, regwait_on_timeout, slot);
	evtimer_add(slot->wait_ev, &tv);
	if (n == 0)
		SLOG(LOG_DEBUG, s, "register waits for the count of %s's "
		    "tunnels", log_esc(s->identity, strlen(s->identity), why,
		    sizeof(why)));
	return 1;
}

/* a Register (m, decoded from p and len with rc): answered in order */
static void
session_on_register(struct session *s, const struct ctrl_msg *m, int rc,
    const uint8_t *p, size_t len)
{
	struct regslot *slot = regslot_new(s, &m->u.reg);

	if (!regwait_start(s, slot, rc, p, len))
		register_run(s, slot, m, rc);
	regslots_flush(s);
}

static void
session_on_unregister(struct session *s, const struct ctrl_str *name)
{
	struct proxy *px;
	char n[LOG_ESC_MAX];

	log_esc(name->p, name->len, n, sizeof(n));
	LIST_FOREACH(px, &s->proxies, sess_link) {
		if (strlen(px->name) == name->len &&
		    memcmp(px->name, name->p, name->len) == 0) {
			SLOG(LOG_INFO, s, "proxy \"%s\" unregistered", n);
			proxy_unregister(px);
			return;
		}
	}
	SLOG(LOG_WARN, s, "unregister of unknown proxy \"%s\"", n);
}

/* HealthReport (capability 5): the agent's check of a tunnel's local
 * service changed state. For now only logged; the groups will act on it
 * (no new connections to a down member). */
static void
session_on_health(struct session *s, const struct ctrl_msg *m)
{
	struct proxy *px;
	char n[LOG_ESC_MAX], why[LOG_ESC_MAX];

	log_esc(m->u.health.name.p, m->u.health.name.len, n, sizeof(n));
	LIST_FOREACH(px, &s->proxies, sess_link) {
		if (strlen(px->name) == m->u.health.name.len &&
		    memcmp(px->name, m->u.health.name.p,
		    m->u.health.name.len) == 0) {
			int was = px->health;
			log_esc(m->u.health.reason.p, m->u.health.reason.len,
			    why, sizeof(why));
			SLOG(LOG_INFO, s, "tunnel %s health: %s%s%s%s", n,
			    m->u.health.state ? "up" : "down",
			    why[0] ? " (" : "", why, why[0] ? ")" : "");
			/* down: no new visitor (a group's other members take
			 * them; alone, it refuses them); up: back */
			px->health = m->u.health.state ? 1 : -1;
			snprintf(px->health_reason, sizeof(px->health_reason),
			    "%.200s", why);
			if (was != px->health) {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				px->health_since_unix_ms = (int64_t)ts.tv_sec *
				    1000 + ts.tv_nsec / 1000000;
				px->health_changes++;
				smet_health(px, was);
			}
			return;
		}
	}
	SLOG(LOG_WARN, s, "health report for unknown tunnel \"%s\"", n);
}

static void
session_on_msg(struct mux_stream *st, const uint8_t *p, size_t len,
    void *arg)
{
	struct session *s = arg;
	struct ctrl_msg m;
	int rc;

	if (s->state == SESS_INIT) {
		session_on_hello(s, p, len);
		return;
	}
	rc = ctrl_decode(p, len, &m);
	if (rc == MG_EPROTO) {
		session_fail(s, CTRL_ERROR, CODE_PROTOCOL,
		    "malformed control message");
		return;
	}
	if (s->state == SESS_HANDSHAKEN) {
		int id;
		if (m.type != CTRL_AUTH_PROOF || rc < 0) {
			session_fail(s, CTRL_AUTH_ERR, CODE_PROTOCOL,
			    "expected AuthProof");
			return;
		}
		if ((id = mac_match(s, m.u.mac)) < 0) {
			smet_auth_failed(s->srv, SMET_AUTH_BAD_TOKEN);
			/* which token was meant is unknowable; if it may have
			 * been one stored as a hash, say why it cannot work */
			if (!(s->caps & CTRL_CAP_HASHED_SECRET) &&
			    token_hashed_only(s->srv->cf)) {
				SLOG(LOG_WARN, s, "HMAC proof did not match; the "
				    "client (agent \"%s\") lacks capability 3 "
				    "(hashed secrets), so tokens stored as "
				    "secret_sha256 cannot match it", s->agent);
				session_fail(s, CTRL_AUTH_ERR, CODE_AUTH_FAILED,
				    "invalid token (HMAC proof did not match; "
				    "note: some tokens of this server are stored "
				    "as a hash, which needs a client that "
				    "supports hashed secrets, capability 3)");
				return;
			}
			session_fail(s, CTRL_AUTH_ERR, CODE_AUTH_FAILED,
			    "invalid token (HMAC proof did not match)");
			return;
		}
		session_token_authenticated(s, (size_t)id);
		return;
	}
	switch (m.type) {
	case CTRL_REGISTER:
	case CTRL_REGISTER_EX:
		if (s->srv->shutting_down) {
			session_send_code(s, CTRL_ERROR, CODE_SHUTDOWN,
			    "server shutting down");
			return;
		}
		session_on_register(s, &m, rc, p, len);
		return;
	case CTRL_UNREGISTER:
		if (rc == 0)
			session_on_unregister(s, &m.u.name);
		return;
	case CTRL_HEARTBEAT: {
		struct ctrl_msg hb = { .type = CTRL_HEARTBEAT };
		session_send(s, &hb);
		return;
	}
	case CTRL_STREAM_REJECT:
		/* the FIN that follows resets the public connection */
		if (rc == 0) {
			char t[512];
			SLOG(LOG_INFO, s, "stream %u refused by the client "
					  "(code %u): %s",
			    m.u.reject.stream_id, m.u.reject.code,
			    log_esc(m.u.reject.text.p, m.u.reject.text.len, t,
				sizeof(t)));
		}
		return;
	case CTRL_GOODBYE: {
		char t[512];
		SLOG(LOG_INFO, s, "client says goodbye (code %u): %s",
		    m.u.err.code, log_esc(m.u.err.text.p, m.u.err.text.len, t,
		    sizeof(t)));
		s->goodbye_received = 1;
		return;
	}
	case CTRL_HEALTH_REPORT:
		if (s->caps & CTRL_CAP_HEALTH) {
			session_on_health(s, &m);
			return;
		}
		session_fail(s, CTRL_ERROR, CODE_PROTOCOL, "HealthReport "
		    "without the HEALTH capability");
		return;
	default:
		session_fail(s, CTRL_ERROR, CODE_PROTOCOL,
		    "unexpected control message");
		return;
	}
}

static const struct mux_stream_cbs ctrl_cbs = {
	.message = session_on_msg,
};

static void
session_mux_accept(struct mux *m, struct mux_stream *st, void *arg)
{
	struct session *s = arg;

	if (s->ctrl == NULL) {
		s->ctrl = st;
		mux_stream_set_cbs(st, &ctrl_cbs, s);
		return;
	}
	mux_stream_free(st);
	session_fail(s, CTRL_ERROR, CODE_PROTOCOL,
	    "a client may open only the control stream");
}

static const struct mux_callbacks session_mux_cbs = {
	.accept = session_mux_accept,
	.closed = session_mux_closed,
};

/* Start a session on a connected socket (plain, or TLS after the handshake,
 * in which case the mux takes ssl). */
static void
session_start(struct server *srv, int fd, SSL *ssl, const struct sockaddr *sa)
{
	struct session *s;
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	struct timeval tv = { AUTH_DEADLINE_S, 0 };

	s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->id = ++srv->next_session_id;
	s->started_ms = mtime_ms();
	s->tls = ssl != NULL;
	LIST_INIT(&s->proxies);
	TAILQ_INIT(&s->regslots);
	net_addr_str(sa, s->peer, sizeof(s->peer));
	if (ssl && tls_peer_subject(ssl, s->subject, sizeof(s->subject)) < 0)
		s->subject[0] = '\0';
	if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0) {
		char *colon;
		net_addr_str((struct sockaddr *)&local, s->local_host,
		    sizeof(s->local_host));
		/* keep the host part: "1.2.3.4" or "[::1]" */
		if ((colon = strrchr(s->local_host, ':')) != NULL)
			*colon = '\0';
	}
	TAILQ_INSERT_TAIL(&srv->sessions, s, link);
	srv->nsessions++;
	met_inc(srv->m.sessions_total);
	s->mux = mux_new_tls(srv->base, fd, ssl, 0, &srv->cf->mux,
	    &session_mux_cbs, s);
	s->deadline = evtimer_new(srv->base, session_on_deadline, s);
	evtimer_add(s->deadline, &tv);
	if (ssl)
		SLOG(LOG_INFO, s, "connected (%s %s%s%s)", SSL_get_version(ssl),
		    SSL_get_cipher_name(ssl),
		    s->subject[0] ? ", client certificate " : "", s->subject);
	else
		SLOG(LOG_INFO, s, "connected");
}

/* A TLS connection between accept and the end of its handshake. */
struct tls_pending {
	LIST_ENTRY(tls_pending) link; /* srv->handshakes */
	struct server *srv;
	struct tls_hs *hs;
	SSL *ssl;
	struct sockaddr_storage peer;
	int fd;
};

static void
server_on_handshake(SSL *ssl, int err, const char *why, void *arg)
{
	struct tls_pending *tp = arg;
	struct server *srv = tp->srv;
	char buf[NET_ADDRSTR_MAX];
	const char *alpn;

	srv->nhandshakes--;
	LIST_REMOVE(tp, link);
	net_addr_str((struct sockaddr *)&tp->peer, buf, sizeof(buf));
	if (err) {
		log_warn("TLS handshake with %s failed: %s", buf, why);
		smet_auth_failed(srv, SMET_AUTH_TLS);
		smet_tls(srv, SMET_TLS_CONTROL, why);
		goto drop;
	}
	alpn = tls_alpn(ssl);
	smet_tls(srv, strcmp(alpn, TLS_ALPN_STREAM) == 0 ? SMET_TLS_STREAM :
	    SMET_TLS_CONTROL, NULL);
	if (alpn[0] == '\0' || strcmp(alpn, TLS_ALPN_TUNNEL) == 0) {
		session_start(srv, tp->fd, ssl, (struct sockaddr *)&tp->peer);
		free(tp);
		return;
	}
	if (strcmp(alpn, TLS_ALPN_STREAM) == 0 && srv->sproxy_accept) {
		srv->sproxy_accept(srv, tp->fd, ssl,
		    (struct sockaddr *)&tp->peer);
		free(tp);
		return;
	}
	log_warn("TLS connection from %s asks for \"%s\", which this server "
		 "does not serve",
	    buf, alpn);
drop:
	tls_shutdown(ssl);
	SSL_free(ssl);
	close(tp->fd);
	free(tp);
}

static void
server_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct server *srv = arg;
	char buf[NET_ADDRSTR_MAX];
	struct tls_pending *tp;
	SSL *ssl;

	loop_note_io();
	if (srv->shutting_down ||
	    srv->nsessions + srv->nhandshakes >=
		2 * srv->cf->max_sessions + 16) {
		log_warn("control connection from %s refused: %s",
		    net_addr_str(sa, buf, sizeof(buf)),
		    srv->shutting_down ? "shutting down" : "too many sessions");
		close(fd);
		return;
	}
	net_sock_tune(fd);
	if (srv->tls == NULL) {
		session_start(srv, fd, NULL, sa);
		return;
	}
	tp = xcalloc(1, sizeof(*tp));
	tp->srv = srv;
	tp->fd = fd;
	memcpy(&tp->peer, sa, (size_t)salen < sizeof(tp->peer) ?
	    (size_t)salen : sizeof(tp->peer));
	if ((ssl = tls_ssl_new(srv->tls, fd)) == NULL ||
	    (tp->hs = tls_handshake_start(srv->base, ssl, 1, AUTH_DEADLINE_S,
		server_on_handshake, tp)) == NULL) {
		log_error("cannot start TLS for %s",
		    net_addr_str(sa, buf, sizeof(buf)));
		if (ssl)
			SSL_free(ssl);
		close(fd);
		free(tp);
		return;
	}
	tp->ssl = ssl;
	LIST_INSERT_HEAD(&srv->handshakes, tp, link);
	srv->nhandshakes++;
}

/* End the TLS handshakes still under way (the server is going away). */
static void
server_cancel_handshakes(struct server *srv)
{
	struct tls_pending *tp;

	while ((tp = LIST_FIRST(&srv->handshakes)) != NULL) {
		LIST_REMOVE(tp, link);
		tls_handshake_cancel(tp->hs);
		SSL_free(tp->ssl);
		close(tp->fd);
		free(tp);
	}
	srv->nhandshakes = 0;
}

static int
str_differs(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") != 0;
}

/* The settings a reload applies by using the new value from then on:
 * their names, for the plan's log line. */
static void
plan_limits(const struct server_conf *o, const struct server_conf *n,
    char *buf, size_t cap)
{
#define LIM(field, name)                                                       \
	do {                                                                   \
		if (o->field != n->field) {                                    \
			size_t l = strlen(buf);                                \
			snprintf(buf + l, cap - l, "%s%s %u -> %u",            \
			    l ? ", " : "", name, (unsigned)o->field,           \
			    (unsigned)n->field);                               \
		}                                                              \
	} while (0)
	buf[0] = '\0';
	LIM(max_sessions, "--max-sessions");
	LIM(max_proxies, "--max-proxies");
	LIM(lease_grace_s, "--lease-grace");
	LIM(heartbeat_s, "--heartbeat");
	LIM(drain_s, "--drain-timeout");
	LIM(udp_idle_s, "--udp-idle-timeout");
	LIM(udp_max_flows, "--udp-max-flows");
	LIM(http_idle_s, "--http-idle-timeout");
	LIM(http_max_conns, "--http-max-conns");
	LIM(http_max_conns_tunnel, "--http-max-conns-per-tunnel");
	LIM(max_handshakes, "--max-handshakes");
	LIM(mux.max_streams, "--max-streams-per-session");
	LIM(log_level, "--log-level");
#undef LIM
}

int
server_apply(struct server *srv, const struct server_conf *ncf, char *err,
    size_t errcap)
{
	const struct server_conf *ocf = srv->cf;
	struct tls_ctx *ntls = NULL;
	struct evconnlistener *nlst = NULL;
	struct hproxy_next hn;
	struct session *s, *next;
	char host[256], lim[1024], restart[256] = "";
	const char *why;
	uint16_t port;
	unsigned added = 0, removed = 0, kicked = 0, closed = 0;
	int tls_reuse, fd;

	srv->reload_time = time(NULL); /* for people: the wall clock */
	/* 1. everything that can fail, before anything changes */
	tls_reuse = ncf->tls && srv->tls && !str_differs(ncf->tls_cert,
	    ocf->tls_cert) && !str_differs(ncf->tls_key, ocf->tls_key) &&
	    !str_differs(ncf->tls_client_ca, ocf->tls_client_ca) &&
	    ncf->tls_client_auth == ocf->tls_client_auth;
	if (ncf->tls && !tls_reuse) {
		struct tls_server_opts to = { ncf->tls_cert, ncf->tls_key,
			ncf->tls_client_ca, ncf->tls_client_auth };
		if (tls_server_ctx_new(&to, &ntls, err, errcap) < 0)
			goto fail;
	}
	if (strcmp(ncf->addr, ocf->addr) != 0) {
		if (net_split_hostport(ncf->addr, host, sizeof(host), &port,
		    &why)) {
			snprintf(err, errcap, "--addr %s: %s", ncf->addr, why);
			goto fail;
		}
		if ((fd = net_listen_tcp(host, port, 1024)) < 0) {
			snprintf(err, errcap, "cannot listen on %s: %s",
			    ncf->addr, strerror(errno));
			goto fail;
		}
		if ((nlst = accept_listen(srv, fd, server_on_accept, srv, 1)) ==
		    NULL) {
			snprintf(err, errcap, "cannot listen on %s", ncf->addr);
			goto fail;
		}
	}
	if (hproxy_prepare(srv, ncf, &hn, err, errcap) < 0)
		goto fail;
	/* last, as it changes the running context when it succeeds (and
	 * keeps the old certificate when it does not) */
	if (tls_reuse && tls_server_reload(srv->tls, err, errcap) < 0) {
		log_error("reload: certificate not reloaded, keeping the old "
			  "one: %s",
		    err);
		hproxy_discard(&hn);
		goto fail;
	}

	/* 2. the plan */
	for (size_t i = 0; i < ncf->ntokens; i++) {
		uint8_t h[CRYPTO_SHA256_LEN];
		char id[32];
		token_ident(ncf, i, id, sizeof(id), h);
		added += !token_known(ocf, h);
	}
	for (size_t i = 0; i < ocf->ntokens; i++) {
		uint8_t h[CRYPTO_SHA256_LEN];
		char id[32];
		token_ident(ocf, i, id, sizeof(id), h);
		removed += !token_known(ncf, h);
	}
	plan_limits(ocf, ncf, lim, sizeof(lim));
	if ((ncf->nstream_allow > 0) != (ocf->nstream_allow > 0))
		snprintf(restart, sizeof(restart), "the stream proxy %s only "
		    "at a restart (the rules themselves apply at once)",
		    ncf->nstream_allow ? "starts" : "stops");
	if (ncf->busy_poll_us != ocf->busy_poll_us) {
		size_t l = strlen(restart);
		snprintf(restart + l, sizeof(restart) - l, "%s--busy-poll",
		    l ? "; " : "");
	}
	if (strcmp(ncf->admin_addr, ocf->admin_addr) ||
	    str_differs(ncf->admin_token, ocf->admin_token) ||
	    str_differs(ncf->admin_cert, ocf->admin_cert) ||
	    str_differs(ncf->admin_key, ocf->admin_key) ||
	    str_differs(ncf->admin_client_ca, ocf->admin_client_ca)) {
		size_t l = strlen(restart);
		snprintf(restart + l, sizeof(restart) - l, "%sthe admin "
		    "listener's settings", l ? "; " : "");
	}
	metrics_set_max_series(srv->m.reg, ncf->metrics_max_series);
	log_info("reload: tokens %u added, %u removed; %s%s%s%s%s%s%s%s%s",
	    added, removed,
	    strcmp(ncf->addr, ocf->addr) ? "control port moves to " : "",
	    strcmp(ncf->addr, ocf->addr) ? ncf->addr : "",
	    strcmp(ncf->addr, ocf->addr) ? "; " : "",
	    ncf->start_port != ocf->start_port ||
		ncf->end_port != ocf->end_port ? "new port range (for new "
		"tunnels; open ones keep theirs); " : "",
	    strcmp(ncf->domain, ocf->domain) ? "new --domain (for new "
		"tunnels); " : "",
	    lim[0] ? lim : "limits unchanged", restart[0] ? "; needs a "
		"restart, keeps the old value: " : "", restart, "");
	if (ncf->start_port != ocf->start_port ||
	    ncf->end_port != ocf->end_port)
		log_info("reload: public ports %u-%u (were %u-%u)",
		    ncf->start_port, ncf->end_port, ocf->start_port,
		    ocf->end_port);

	/* 3. apply, as one step */
	if (tls_reuse)
		log_info("reload: certificate and key reloaded for new "
			 "connections");
	else {
		tls_ctx_free(srv->tls);
		srv->tls = ntls;
		ntls = NULL;
	}
	if (nlst) {
		evconnlistener_free(srv->lst);
		srv->lst = nlst;
		log_info("reload: control port now %s", ncf->addr);
	}
	hproxy_commit(srv, &hn);
	srv->cf = ncf;
	log_set_level(ncf->log_level);
	if (srv->dsp && dsproxy_reload(srv, err, errcap) < 0)
		log_error("reload: DTLS certificate not reloaded: %s", err);
	/* sessions of a token that is gone end, with the reason */
	for (s = TAILQ_FIRST(&srv->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, link);
		if (!s->by_token || token_known(ncf, s->token_hash))
			continue;
		SLOG(LOG_INFO, s, "its token (%s) was removed by a reload: "
				  "ended",
		    s->identity);
		session_send_code(s, CTRL_GOODBYE, CODE_AUTH_FAILED,
		    "the token of this session was removed from the "
		    "server's configuration");
		snprintf(s->close_why, sizeof(s->close_why), "token removed "
		    "by a reload");
		kicked++;
		session_close(s, MG_ECLOSED);
		next = TAILQ_FIRST(&srv->sessions); /* the list changed */
	}
	if (kicked)
		log_info("reload: %u sessions of removed tokens ended", kicked);
	/* tunnels their owner's new policy no longer allows end, with the
	 * rule (their clients learn it when they register again) */
	{
		struct proxy *px, *pnext;
		char rule[300], n[LOG_ESC_MAX];
		for (px = LIST_FIRST(&srv->reg.all); px != NULL; px = pnext) {
			pnext = LIST_NEXT(px, link);
			if (proxy_misfit(px, rule, sizeof(rule)) == NULL)
				continue;
			log_info("reload: %s \"%s\" on %s closed: %s",
			    proxy_type_name(px->type), log_esc(px->name,
			    strlen(px->name), n, sizeof(n)), proxy_where(px),
			    rule);
			px->end_why = "its owner's policy no longer allows it";
			tunnel_closed(px, CODE_NOT_ALLOWED, "%s", rule);
			proxy_unregister(px);
			closed++;
		}
	}
	/* limits change for open connections too: they share the shapers */
	{
		struct proxy *px;
		LIST_FOREACH(px, &srv->reg.all, link)
			proxy_shape(px);
	}
	srv->reload_ok = 1;
	srv->reload_err[0] = '\0';
	{
		char sum[128];
		snprintf(sum, sizeof(sum), "tokens %u added, %u removed; %u "
		    "sessions ended; %u tunnels closed by policy", added,
		    removed, kicked, closed);
		smet_reload(srv, 1, sum);
	}
	return 0;
fail:
	tls_ctx_free(ntls);
	if (nlst)
		evconnlistener_free(nlst);
	srv->reload_ok = 0;
	snprintf(srv->reload_err, sizeof(srv->reload_err), "%s", err);
	smet_reload(srv, 0, err);
	return MG_EINVAL;
}

void
server_reload(struct server *srv)
{
	char err[512];

	if (server_apply(srv, srv->cf, err, sizeof(err)) < 0)
		log_error("reload refused, the running configuration stays: "
			  "%s",
		    err);
}

void
server_reload_failed(struct server *srv, const char *why)
{
	srv->reload_time = time(NULL);
	srv->reload_ok = 0;
	snprintf(srv->reload_err, sizeof(srv->reload_err), "%s", why);
	smet_reload(srv, 0, why);
}

void
server_reload_status(const struct server *srv,
    struct server_reload_status *st)
{
	smet_reloads(srv, &st->reloads, &st->failures);
	st->last_time = srv->reload_time;
	st->last_ok = srv->reload_ok;
	snprintf(st->last_err, sizeof(st->last_err), "%s", srv->reload_err);
}

void
server_set_reload(struct server *srv,
    int (*fn)(void *arg, char *err, size_t errcap), void *arg)
{
	srv->reload_cb = fn;
	srv->reload_arg = arg;
}

/* ---- the admin listener's actions ---- */

static int
server_admin_reload(struct server *srv, char *err, size_t errcap)
{
	if (srv->reload_cb == NULL) {
		snprintf(err, errcap, "no configuration source to reload from");
		return -1;
	}
	return srv->reload_cb(srv->reload_arg, err, errcap);
}

static int
server_kick(struct server *srv, uint64_t id, const char *why)
{
	struct session *s;

	TAILQ_FOREACH(s, &srv->sessions, link) {
		if (s->id != id || !s->authed)
			continue;
		{
			/* the reason is an operator's (?reason=): escaped */
			char e[LOG_ESC_MAX];
			SLOG(LOG_INFO, s, "%s", log_esc(why, strlen(why), e,
			    sizeof(e)));
		}
		s->kicked = 1;
		session_send_code(s, CTRL_GOODBYE, CODE_NOT_ALLOWED, why);
		snprintf(s->close_why, sizeof(s->close_why), "%s", why);
		session_close(s, MG_ECLOSED);
		return 0;
	}
	return -1;
}

static const struct admin_ops server_admin_ops = {
	.kick = server_kick,
	.reload = server_admin_reload,
};

/* ---- shutdown ---- */

#define HANDOVER_MAX_S 5 /* clients that do not move hold the stop back
			    at most this long */

/* sessions that still hold tunnels */
static unsigned
sessions_holding(const struct server *srv)
{
	const struct session *s;
	unsigned n = 0;

	TAILQ_FOREACH(s, &srv->sessions, link)
		n += s->nproxies > 0;
	return n;
}

static void
server_stop_taking(struct server *srv)
{
	struct proxy *px;

	if (srv->http_lst)
		evconnlistener_disable(srv->http_lst);
	if (srv->https_lst)
		evconnlistener_disable(srv->https_lst);
	LIST_FOREACH(px, &srv->reg.all, link)
		if (px->lst)
			evconnlistener_disable(px->lst);
}

/*
 * The drain: the public listeners take visitors while the clients that
 * hold tunnels move elsewhere (each unregisters its tunnels once it is
 * registered on another server, then leaves when its streams ended), for
 * at most the handover window; then no new visitor is taken, and the
 * streams under way have until the drain deadline.
 */
static void
server_on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct session *s;
	uint64_t now = mtime_ms();

	if (!srv->handover_over && (sessions_holding(srv) == 0 ||
	    now >= srv->handover_deadline_ms)) {
		srv->handover_over = 1;
		server_stop_taking(srv);
	}
	if ((smet_relays(srv) > 0 || !srv->handover_over) &&
	    now < srv->drain_deadline_ms)
		return;
	if (smet_relays(srv) > 0)
		log_warn("drain deadline reached with %lld streams open",
		    (long long)smet_relays(srv));
	while ((s = TAILQ_FIRST(&srv->sessions)) != NULL)
		session_close(s, MG_ECLOSED);
	event_base_loopexit(srv->base, NULL);
}

void
server_shutdown(struct server *srv)
{
	struct session *s;
	struct timeval tick = { 0, 100000 };

	if (srv->shutting_down) {
		log_warn("asked to stop again: exiting now");
		event_base_loopexit(srv->base, NULL);
		return;
	}
	log_info("shutting down, draining %lld streams for up to %u s",
	    (long long)smet_relays(srv), srv->cf->drain_s);
	srv->shutting_down = 1;
	/* no new session; the public side goes on while clients move */
	evconnlistener_disable(srv->lst);
	TAILQ_FOREACH(s, &srv->sessions, link) {
		if (s->state >= SESS_AUTHENTICATED)
			session_send_code(s, CTRL_GOODBYE, CODE_SHUTDOWN,
			    "server shutting down");
	}
	srv->drain_deadline_ms = mtime_ms() +
	    (uint64_t)srv->cf->drain_s * 1000;
	srv->handover_deadline_ms = mtime_ms() + (uint64_t)(srv->cf->drain_s <
	    HANDOVER_MAX_S ? srv->cf->drain_s : HANDOVER_MAX_S) * 1000;
	srv->drain_tick = event_new(srv->base, -1, EV_PERSIST,
	    server_on_drain_tick, srv);
	event_add(srv->drain_tick, &tick);
}

/* UDP in a cluster: other nodes' ports forwarded from here (fwdudp.c),
 * the flows they forward here taken by the tunnels (udp.c) */
static const struct forward_udp_hooks fwd_udp_hooks = { fwdudp_port,
	udp_link_flow };

struct server *
server_new(struct event_base *base, const struct server_conf *cf)
{
	struct server *srv = xcalloc(1, sizeof(*srv));
	char host[256], buf[NET_ADDRSTR_MAX], err[512];
	struct hproxy_next hn;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	const char *why;
	uint16_t port;
	int fd;

	srv->base = base;
	srv->cf = cf;
	TAILQ_INIT(&srv->sessions);
	registry_init(&srv->reg);
	LIST_INIT(&srv->hconns);
	LIST_INIT(&srv->handshakes);
	LIST_INIT(&srv->peeks);
	LIST_INIT(&srv->sp_setups);
	LIST_INIT(&srv->ppwaits);
	srv->ops[PROXY_TCP] = &proxy_tcp_ops;
	srv->ops[PROXY_UDP] = &udp_proxy_ops;
	srv->ops[PROXY_HTTP] = srv->ops[PROXY_HTTPS] = srv->ops[PROXY_TLS] =
	    &hproxy_ops;
	srv->session_fail = session_fail_error;
	srv->started_ms = mtime_ms();
	smet_init(srv);
	if (cf->public_host[0])
		snprintf(srv->host_for_urls, sizeof(srv->host_for_urls), "%s",
		    cf->public_host);
	else if (!net_is_wildcard(cf->bind_addr))
		snprintf(srv->host_for_urls, sizeof(srv->host_for_urls),
		    strchr(cf->bind_addr, ':') ? "[%s]" : "%s", cf->bind_addr);
	/* everything that can be wrong in files is checked before any
	 * socket listens: a server that said "listening" keeps its word */
	if (net_split_hostport(cf->addr, host, sizeof(host), &port, &why)) {
		log_error("--addr %s: %s", cf->addr, why);
		goto fail;
	}
	if (cf->tls) {
		struct tls_server_opts to = { cf->tls_cert, cf->tls_key,
			cf->tls_client_ca, cf->tls_client_auth };
		if (tls_server_ctx_new(&to, &srv->tls, err, sizeof(err)) < 0) {
			log_error("TLS: %s", err);
			goto fail;
		}
	}
	if (hproxy_prepare(srv, cf, &hn, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto fail;
	}
	if (cf->domain[0] && !cf->http_addr[0] && !cf->https_addr[0])
		log_warn("--domain %s is set but neither --http-addr nor "
			 "--https-addr: no HTTP tunnel can be served",
		    cf->domain);
	if ((fd = net_listen_tcp(host, port, 1024)) < 0) {
		log_error("cannot listen on %s: %s", cf->addr, strerror(errno));
		hproxy_discard(&hn);
		goto fail;
	}
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if ((srv->lst = accept_listen(srv, fd, server_on_accept, srv, 1)) ==
	    NULL) {
		log_error("cannot listen on %s", cf->addr);
		hproxy_discard(&hn);
		goto fail;
	}
	hproxy_commit(srv, &hn);
	if (cf->nstream_allow) {
		srv->sproxy_accept = sproxy_accept;
		if (dsproxy_start(srv, err, sizeof(err)) < 0) {
			log_error("stream proxy over DTLS: %s", err);
			goto fail;
		}
		log_info("stream proxy on (ALPN %s), %zu allow rules",
		    TLS_ALPN_STREAM, cf->nstream_allow);
	}
	if (admin_start(srv, &server_admin_ops, err, sizeof(err)) < 0) {
		log_error("%s", err);
		goto fail;
	}
	if (cf->cluster[0]) {
		struct cluster_hooks ch = { .up = cluster_on_up,
			.down = cluster_on_down, .beat = cluster_on_beat,
			.load = cluster_on_load, .arg = srv };
		char node[64];
		if (cf->node_id[0])
			snprintf(node, sizeof(node), "%s", cf->node_id);
		else if (cf->node_addr[0])
			snprintf(node, sizeof(node), "%.63s", cf->node_addr);
		else {
			char hostn[48] = "node";
			gethostname(hostn, sizeof(hostn) - 1);
			snprintf(node, sizeof(node), "%.40s:%u", hostn,
			    net_local_port(fd));
		}
		if ((srv->cl = cluster_new(srv->base, cf->cluster, node,
		    cf->node_addr, &ch, err, sizeof(err))) == NULL) {
			log_error("--cluster: %s", err);
			goto fail;
		}
		climits_start(srv, regwait_read);
		log_info("cluster node %s: state in %s", node,
		    cf->cluster[0] ? "Redis" : "");
		if (!cf->cluster_secret[0])
			log_warn("cluster: no --cluster-secret: this node "
			    "neither forwards visitors of other nodes' routes "
			    "nor takes any");
		else if (forward_start(srv, proxy_tcp_inject,
		    hproxy_inject_http, hproxy_inject_https, err,
		    sizeof(err)) != 0) {
			log_error("cluster: %s", err);
			goto fail;
		} else if (cf->node_addr[0])
			log_info("cluster: node links on %s", cf->node_addr);
		else
			log_warn("cluster: no --node-addr: this node forwards "
			    "visitors to the others but takes none (its "
			    "routes are reached only through it)");
		if (srv->fwd != NULL) {
			forward_set_tcp_stream(srv, proxy_tcp_bridge);
			forward_set_udp(srv, &fwd_udp_hooks);
			forward_set_route_moved(srv, cluster_on_route_moved);
		}
	}
	log_info("mgrok server listening on %s (public ports %u-%u%s%s)",
	    net_addr_str((struct sockaddr *)&ss, buf, sizeof(buf)),
	    cf->start_port, cf->end_port, cf->bind_addr[0] ? " on " : "",
	    cf->bind_addr);
	if (cf->tls)
		log_info("TLS on, %s", cf->tls_client_ca ?
		    (cf->tls_client_auth == 1 ? "client certificates optional" :
						"client certificates required") :
		    "no client certificates");
	return srv;
fail:
	server_free(srv);
	return NULL;
}

void
server_log_summary(struct server *srv)
{
	struct smet_summary m;

	smet_summary(srv, &m);
	log_info("summary: uptime %llu s, %llu sessions (%u open), "
		 "%llu auth failures, %llu streams (%lld relaying), "
		 "%llu connections refused, %llu bytes in, %llu bytes out",
	    (unsigned long long)((mtime_ms() - srv->started_ms) / 1000),
	    (unsigned long long)m.sessions, srv->nsessions,
	    (unsigned long long)m.auth_failures,
	    (unsigned long long)m.streams, (long long)m.relays,
	    (unsigned long long)m.refused, (unsigned long long)m.bytes[0],
	    (unsigned long long)m.bytes[1]);
	if (m.http_requests)
		log_info("summary: http %llu requests", (unsigned long long)
		    m.http_requests);
	if (m.udp[0] || m.udp[1] || m.udp_drops[0] || m.udp_drops[1])
		log_info("summary: udp %llu datagrams in (%llu dropped), %llu "
			 "out (%llu dropped)",
		    (unsigned long long)m.udp[0],
		    (unsigned long long)m.udp_drops[0],
		    (unsigned long long)m.udp[1],
		    (unsigned long long)m.udp_drops[1]);
}

void
server_free(struct server *srv)
{
	struct session *s;
	struct proxy *px;

	if (srv == NULL)
		return;
	while ((s = TAILQ_FIRST(&srv->sessions)) != NULL)
		session_close(s, MG_ECLOSED);
	while ((px = LIST_FIRST(&srv->reg.all)) != NULL)
		proxy_free(px);
	forward_stop(srv);
	climits_stop(srv);
	cluster_free(srv->cl); /* the claims still due end with it */
	srv->cl = NULL;
	proxy_ppwait_stop(srv);
	registry_free(&srv->reg);
	admin_stop(srv);
	accept_stop(srv);
	hproxy_stop(srv);
	server_cancel_handshakes(srv);
	sproxy_stop(srv);
	tlsrelay_set_free(&srv->sp_relays);
	if (srv->lst)
		evconnlistener_free(srv->lst);
	tls_ctx_free(srv->tls);
	dsproxy_stop(srv); /* before srv->dns: it cancels lookups */
	if (srv->dns)
		evdns_base_free(srv->dns, 0);
	if (srv->drain_tick)
		event_free(srv->drain_tick);
	free(srv->udp_buf);
	smet_free(srv);
	free(srv);
}
