/* yaml.c: a config file (YAML, libyaml's document API) into the option
 * table's setters. Strict: every key is known, every value has the right
 * shape, and every problem is reported with its line and column; reading
 * goes on after one so that all of them are reported at once. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "conf/conf_int.h"
#include "conf/policy.h"
#include "proto/ctrl.h"
#include "util/xmalloc.h"

#define YAML_MAX_BYTES (1 << 20)
/* aliases make a graph of a tree: a bound on the nodes visited keeps a
 * "billion laughs" file from costing more than reading it */
#define YAML_MAX_VISITS 20000

struct yw {
	struct ld *L;
	yaml_document_t *doc;
	unsigned visits;
};

static void
at(struct ld *L, const yaml_node_t *n, const char *key)
{
	L->cur.set = 1;
	L->cur.in_file = 1;
	L->cur.line = (int)n->start_mark.line + 1;
	L->cur.col = (int)n->start_mark.column + 1;
	snprintf(L->cur.key, sizeof(L->cur.key), "%s", key);
}

static const char *
scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static const char *
shape(const yaml_node_t *n)
{
	return n->type == YAML_MAPPING_NODE ? "a mapping" :
	    n->type == YAML_SEQUENCE_NODE ? "a list" : "a value";
}

static int
visit(struct yw *w, const yaml_node_t *n)
{
	if (++w->visits > YAML_MAX_VISITS) {
		if (w->visits == YAML_MAX_VISITS + 1) {
			at(w->L, n, "");
			ld_bad(w->L, "too many values (aliases?)", "");
		}
		return -1;
	}
	return 0;
}

/* a null: an empty value, or ~ / null written plainly */
static int
is_null(const yaml_node_t *n)
{
	const char *v;

	if (n->type != YAML_SCALAR_NODE)
		return 0;
	v = scalar(n);
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	    strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* one scalar value for o at L->cur: ${ENV}, ~, file: secrets, then the
 * setter */
static void
set_value(struct ld *L, const struct conf_opt *o, const yaml_node_t *n)
{
	char *v = NULL, *sec = NULL;

	if (n->type != YAML_SCALAR_NODE) {
		char why[120];
		snprintf(why, sizeof(why), "expected a single value, not %s",
		    shape(n));
		ld_bad(L, why, "");
		return;
	}
	if (is_null(n)) {
		/* an empty path or name is the default (the original
		 * mgrok's files say tls_cert_file: "" with TLS off) */
		if (o->type == CT_STRP || o->type == CT_BUF)
			return;
		ld_bad(L, "needs a value", "");
		return;
	}
	if ((v = conf_expand(L, scalar(n), (o->flags & OF_FILE) != 0)) == NULL)
		return;
	if ((o->flags & OF_SECRET) && strncmp(v, "file:", 5) == 0) {
		if ((sec = conf_secret_file(L, v + 5)) == NULL)
			goto out;
		conf_opt_set(L, o, sec);
	} else {
		if ((o->flags & OF_FILE) && v[0] == '\0')
			goto out;
		conf_opt_set(L, o, v);
	}
out:
	if (sec) {
		memset(sec, 0, strlen(sec));
		free(sec);
	}
	if (v) {
		memset(v, 0, strlen(v));
		free(v);
	}
}

/* a key seen before in the same mapping: its node, or NULL */
static const yaml_node_t *
dup_key(struct yw *w, const yaml_node_t *map, const yaml_node_pair_t *upto)
{
	const yaml_node_t *k = yaml_document_get_node(w->doc, upto->key);

	for (const yaml_node_pair_t *p = map->data.mapping.pairs.start;
	    p < upto; p++) {
		const yaml_node_t *o = yaml_document_get_node(w->doc, p->key);
		if (o && k && o->type == YAML_SCALAR_NODE &&
		    k->type == YAML_SCALAR_NODE &&
		    strcmp(scalar(o), scalar(k)) == 0)
			return o;
	}
	return NULL;
}

/* the pair's key as a string, or NULL (reported) */
static const char *
pair_key(struct yw *w, const yaml_node_t *map, const yaml_node_pair_t *p,
    const char *prefix, const char *what)
{
	const yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
	const yaml_node_t *first;
	char key[600];

	if (k == NULL)
		return NULL;
	if (k->type != YAML_SCALAR_NODE) {
		at(w->L, k, prefix);
		ld_bad(w->L, "a key must be a plain name", "");
		return NULL;
	}
	snprintf(key, sizeof(key), "%s%s", prefix, scalar(k));
	if ((first = dup_key(w, map, p)) != NULL) {
		char why[160];
		at(w->L, k, key);
		snprintf(why, sizeof(why), "duplicate %s (first at line %d)",
		    what, (int)first->start_mark.line + 1);
		ld_bad(w->L, why, "");
		return NULL;
	}
	return scalar(k);
}

static void
unknown_key(struct yw *w, const yaml_node_t *k, const char *prefix,
    int tunnel)
{
	struct ld *L = w->L;
	const char *near = conf_opt_nearest(L->server, tunnel, scalar(k));
	char key[600], why[200];

	snprintf(key, sizeof(key), "%s%s", prefix, scalar(k));
	at(L, k, key);
	if (near)
		snprintf(why, sizeof(why), "unknown key (did you mean %s?)",
		    near);
	else if (!tunnel && (conf_opt_by_key(!L->server, 0, scalar(k)) ||
	    (!L->server && strcmp(scalar(k), "certs") == 0)))
		snprintf(why, sizeof(why), "unknown key (it belongs in a %s "
		    "file; this one is read as a %s file)",
		    L->server ? "client" : "server",
		    L->server ? "server" : "client");
	else
		snprintf(why, sizeof(why), "unknown key");
	ld_bad(L, why, "");
}

/* ------------------------------------------------------------ policy */

/* an error about a policy value: "FILE:L:C: key: "v": why" */
static void
pbad(struct ld *L, const yaml_node_t *n, const char *key, const char *v,
    const char *why)
{
	char msg[600];

	at(L, n, key);
	if (v && *v)
		snprintf(msg, sizeof(msg), "\"%.200s\": %s", v, why);
	else
		snprintf(msg, sizeof(msg), "%s", why);
	ld_bad(L, msg, "");
}

/* a scalar's value, ${VAR} expanded (malloc'd), or NULL (reported) */
static char *
pscalar(struct ld *L, const yaml_node_t *n, const char *key)
{
	char why[120];

	at(L, n, key);
	if (n->type != YAML_SCALAR_NODE) {
		snprintf(why, sizeof(why), "expected a single value, not %s",
		    shape(n));
		ld_bad(L, why, "");
		return NULL;
	}
	if (is_null(n)) {
		ld_bad(L, "needs a value", "");
		return NULL;
	}
	return conf_expand(L, scalar(n), 0);
}

/* an unknown key of a policy mapping, with the nearest known one */
static void
punknown(struct ld *L, const yaml_node_t *k, const char *key,
    const char *const *words, size_t n, const char *what)
{
	const char *near = conf_word_nearest(scalar(k), words, n);
	char why[300];

	if (near)
		snprintf(why, sizeof(why), "unknown key (did you mean %s?)",
		    near);
	else
		snprintf(why, sizeof(why), "unknown key (%s)", what);
	at(L, k, key);
	ld_bad(L, why, "");
}

enum { AK_PORTS, AK_SUB, AK_HOST, AK_TYPES, AK_CIDRS, AK_DENY, AK_N };
static const char *const allow_keys[AK_N] = { "ports", "subdomains",
	"hostnames", "types", "cidrs", "deny_cidrs" };

/* one item of allow.KEY into p; 0 or -1 (reported) */
static void
allow_item(struct ld *L, struct conf_policy *p, int kind,
    const yaml_node_t *it, const char *key)
{
	const char *err = NULL;
	char *v = pscalar(L, it, key);
	size_t *np = NULL, max = POLICY_MAX_PATTERNS;
	int rc = 0;

	if (v == NULL)
		return;
	switch (kind) {
	case AK_PORTS:
		np = &p->nports;
		max = POLICY_MAX_PORTS;
		if (*np < max)
			rc = policy_parse_port(v, &p->ports[*np], &err);
		break;
	case AK_SUB:
		np = &p->nsubdomains;
		if (*np < max)
			rc = policy_parse_subdomain(v, p->subdomains[*np],
			    &err);
		break;
	case AK_HOST:
		np = &p->nhostnames;
		if (*np < max)
			rc = policy_parse_hostname(v, p->hostnames[*np], &err);
		break;
	case AK_TYPES: {
		uint8_t t = 0;
		if ((rc = policy_parse_type(v, &t, &err)) == 0)
			p->types |= 1u << t;
		break;
	}
	case AK_CIDRS:
	case AK_DENY:
		np = kind == AK_CIDRS ? &p->ncidrs : &p->ndeny_cidrs;
		max = POLICY_MAX_CIDRS;
		if (*np < max)
			rc = policy_parse_cidr(v, kind == AK_CIDRS ?
			    &p->cidrs[*np] : &p->deny_cidrs[*np], &err);
		break;
	}
	if (np && *np >= max) {
		char why[80];
		snprintf(why, sizeof(why), "too many entries (at most %zu)",
		    max);
		pbad(L, it, key, "", why);
	} else if (rc) {
		pbad(L, it, key, v, err);
	} else if (np) {
		(*np)++;
	}
	free(v);
}

/*
 * map_next: the next pair of mapping m after *pr (NULL: the first) whose
 * key is a usable string and whose value has not been seen (aliases):
 * its key node, value, key text and key path "prefix.KEY"; 0 at the end.
 * Unusable pairs are reported (pair_key) and skipped.
 */
static int
map_next(struct yw *w, const yaml_node_t *m, const yaml_node_pair_t **pr,
    const char *prefix, const yaml_node_t **k, const yaml_node_t **v,
    const char **ks, char *sub, size_t cap)
{
	const yaml_node_pair_t *p = *pr ? *pr + 1 : m->data.mapping.pairs.start;

	for (; p < m->data.mapping.pairs.top; p++) {
		*k = yaml_document_get_node(w->doc, p->key);
		*v = yaml_document_get_node(w->doc, p->value);
		if (*v == NULL || visit(w, *v) ||
		    (*ks = pair_key(w, m, p, "", "key")) == NULL)
			continue;
		snprintf(sub, cap, "%.400s.%.100s", prefix, *ks);
		*pr = p;
		return 1;
	}
	*pr = p;
	return 0;
}

static void
allow_map(struct yw *w, struct conf_policy *p, const yaml_node_t *m,
    const char *key)
{
	struct ld *L = w->L;

	if (m->type != YAML_MAPPING_NODE) {
		at(L, m, key);
		ld_bad(L, "expected a mapping (ports, subdomains, hostnames, "
		    "types, cidrs, deny_cidrs)", "");
		return;
	}
	const yaml_node_pair_t *pr = NULL;
	const yaml_node_t *k, *v;
	const char *ks;
	char sub[600];

	while (map_next(w, m, &pr, key, &k, &v, &ks, sub, sizeof(sub))) {
		int kind;
		for (kind = 0; kind < AK_N; kind++)
			if (strcmp(ks, allow_keys[kind]) == 0)
				break;
		if (kind == AK_N) {
			punknown(L, k, sub, allow_keys, AK_N, "allow has "
			    "ports, subdomains, hostnames, types, cidrs and "
			    "deny_cidrs");
			continue;
		}
		if (v->type == YAML_SCALAR_NODE) {
			allow_item(L, p, kind, v, sub);
			continue;
		}
		if (v->type != YAML_SEQUENCE_NODE) {
			at(L, v, sub);
			ld_bad(L, "expected a value or a list, not a mapping",
			    "");
			continue;
		}
		if (v->data.sequence.items.start ==
		    v->data.sequence.items.top) {
			at(L, v, sub);
			ld_bad(L, "an empty list would allow nothing: leave "
			    "the key out to allow any", "");
			continue;
		}
		for (yaml_node_item_t *ip = v->data.sequence.items.start;
		    ip < v->data.sequence.items.top; ip++) {
			const yaml_node_t *it = yaml_document_get_node(w->doc,
			    *ip);
			if (it == NULL || visit(w, it))
				continue;
			allow_item(L, p, kind, it, sub);
		}
	}
}

/* a positive count or rate for a limit: 0 or -1 (reported) */
static int
limit_value(struct ld *L, const yaml_node_t *n, const char *key, int rate,
    int bytes, uint64_t max, uint64_t *out, const char *zero)
{
	char *v = pscalar(L, n, key), why[200];
	const char *err = NULL;
	int rc = -1;

	if (v == NULL)
		return -1;
	if (rate) {
		if (policy_parse_rate(v, bytes, out, &err)) {
			pbad(L, n, key, v, err);
			goto out;
		}
	} else {
		char *end;
		unsigned long long x;
		errno = 0;
		x = strtoull(v, &end, 10);
		if (!isdigit((unsigned char)v[0]) || *end || errno || x > max) {
			snprintf(why, sizeof(why), "expected a whole number "
			    "from 1 to %llu", (unsigned long long)max);
			pbad(L, n, key, v, why);
			goto out;
		}
		*out = x;
	}
	if (*out == 0) {
		pbad(L, n, key, v, zero);
		goto out;
	}
	rc = 0;
out:
	free(v);
	return rc;
}

enum { LK_TUNNELS, LK_VISITORS, LK_BW, LK_NEWCONN, LK_HTTPREQ, LK_N };
static const char *const limit_keys[LK_N] = { "tunnels", "visitors",
	"bandwidth", "new_connections", "http_requests" };

static void
bandwidth(struct yw *w, struct conf_policy *p, const yaml_node_t *v,
    const char *key)
{
	static const char *const dirs[] = { "in", "out" };
	static const char *zero = "0 would stop all traffic: leave the key "
				  "out for no limit";
	struct ld *L = w->L;
	const yaml_node_pair_t *pr = NULL;
	const yaml_node_t *k, *val;
	const char *ks;
	char sub[600];
	uint64_t x;

	if (v->type != YAML_MAPPING_NODE) {
		/* one rate: both directions */
		if (limit_value(L, v, key, 1, 1, 0, &x, zero) == 0)
			p->limits.bw_in = p->limits.bw_out = x;
		return;
	}
	while (map_next(w, v, &pr, key, &k, &val, &ks, sub, sizeof(sub))) {
		if (strcmp(ks, "in") == 0 || strcmp(ks, "out") == 0) {
			if (limit_value(L, val, sub, 1, 1, 0, &x, zero) == 0)
				*(ks[0] == 'i' ? &p->limits.bw_in :
				    &p->limits.bw_out) = x;
		} else {
			punknown(L, k, sub, dirs, 2, "bandwidth has in (to "
			    "the local service) and out (to visitors)");
		}
	}
}

static void
limits_map(struct yw *w, struct conf_policy *p, const yaml_node_t *m,
    const char *key)
{
	struct ld *L = w->L;

	if (m->type != YAML_MAPPING_NODE) {
		at(L, m, key);
		ld_bad(L, "expected a mapping (tunnels, visitors, bandwidth, "
		    "new_connections, http_requests)", "");
		return;
	}
	const yaml_node_pair_t *pr = NULL;
	const yaml_node_t *k, *v;
	const char *ks;
	char sub[600];

	while (map_next(w, m, &pr, key, &k, &v, &ks, sub, sizeof(sub))) {
		uint64_t x;
		int kind;
		for (kind = 0; kind < LK_N; kind++)
			if (strcmp(ks, limit_keys[kind]) == 0)
				break;
		switch (kind) {
		case LK_TUNNELS:
			if (limit_value(L, v, sub, 0, 0, 1000000, &x, "0 would "
			    "refuse every tunnel: leave the key out for no "
			    "limit (or remove the token)") == 0)
				p->limits.tunnels = (unsigned)x;
			break;
		case LK_VISITORS:
			if (limit_value(L, v, sub, 0, 0, 10000000, &x, "0 would "
			    "refuse every visitor: leave the key out for no "
			    "limit") == 0)
				p->limits.visitors = (unsigned)x;
			break;
		case LK_BW:
			bandwidth(w, p, v, sub);
			break;
		case LK_NEWCONN:
			if (limit_value(L, v, sub, 1, 0, 0, &x, "0 would refuse "
			    "every connection: leave the key out for no "
			    "limit") == 0)
				p->limits.new_conns = x;
			break;
		case LK_HTTPREQ:
			if (limit_value(L, v, sub, 1, 0, 0, &x, "0 would refuse "
			    "every request: leave the key out for no "
			    "limit") == 0)
				p->limits.http_requests = x;
			break;
		default:
			punknown(L, k, sub, limit_keys, LK_N, "limits has "
			    "tunnels, visitors, bandwidth, new_connections and "
			    "http_requests");
		}
	}
}

/* the policy keys of a tokens: or certs: entry; 1 when ks was one */
static int
policy_key(struct yw *w, struct conf_policy *p, const char *ks,
    const yaml_node_t *v, const char *key)
{
	struct ld *L = w->L;

	if (strcmp(ks, "expires") == 0) {
		const char *err;
		char *s = pscalar(L, v, key);
		if (s == NULL)
			return 1;
		if (policy_parse_expires(s, &p->expires, &err))
			pbad(L, v, key, s, err);
		else
			snprintf(p->expires_text, sizeof(p->expires_text),
			    "%.39s", s);
		free(s);
	} else if (strcmp(ks, "allow") == 0) {
		allow_map(w, p, v, key);
	} else if (strcmp(ks, "limits") == 0) {
		limits_map(w, p, v, key);
	} else {
		return 0;
	}
	return 1;
}

static void
policy_keep(struct ld *L, struct conf_policy *p)
{
	struct server_conf *s = L->s;

	s->policies = xrealloc(s->policies, (s->npolicies + 1) *
	    sizeof(*s->policies));
	s->policies[s->npolicies++] = p;
}

static const char *const token_keys[] = { "name", "secret",
	"secret_sha256", "expires", "allow", "limits" };
static const char *const cert_keys[] = { "subject", "expires", "allow",
	"limits" };

/* one secret_sha256 value at L->cur: 64 hex digits, or ${VAR} or
 * file:PATH holding them */
static void
hashed_value(struct ld *L, const yaml_node_t *n)
{
	char *v = NULL, *sec = NULL;
	const char *h;
	uint8_t hash[CONF_SHA256_LEN];

	if (n->type != YAML_SCALAR_NODE || is_null(n)) {
		ld_bad(L, "expected the SHA-256 of the secret as 64 hex digits "
		    "(`mgrok token hash` prints it)", "");
		return;
	}
	if ((v = conf_expand(L, scalar(n), 0)) == NULL)
		return;
	h = v;
	if (strncmp(v, "file:", 5) == 0) {
		if ((sec = conf_secret_file(L, v + 5)) == NULL)
			goto out;
		h = sec;
	}
	if (conf_hex_sha256(h, hash) != 0) {
		/* not echoed: it may be the secret itself, pasted here */
		char why[200];
		snprintf(why, sizeof(why), "expected the SHA-256 of the secret "
		    "as 64 hex digits (`mgrok token hash` prints it), not %zu "
		    "characters", strlen(h));
		ld_bad(L, why, "");
	} else
		conf_tok_add_hashed(L, hash, L->cur_token_name);
out:
	if (sec) {
		memset(sec, 0, strlen(sec));
		free(sec);
	}
	if (v) {
		memset(v, 0, strlen(v));
		free(v);
	}
}

/* the secrets of a secret or secret_sha256 key: one, or a list (the old
 * and the new while rotating); their number, or -1 (reported) */
static int
secret_count(const yaml_node_t *v)
{
	if (v->type == YAML_SEQUENCE_NODE)
		return (int)(v->data.sequence.items.top -
		    v->data.sequence.items.start);
	return 1;
}

static void
secret_values(struct yw *w, const struct conf_opt *o, const yaml_node_t *v,
    const char *sub, int hashed)
{
	struct ld *L = w->L;
	int i = 0;

	if (v->type != YAML_SEQUENCE_NODE) {
		at(L, v, sub);
		if (hashed)
			hashed_value(L, v);
		else
			set_value(L, o, v);
		return;
	}
	for (yaml_node_item_t *ip = v->data.sequence.items.start;
	    ip < v->data.sequence.items.top; ip++, i++) {
		const yaml_node_t *s = yaml_document_get_node(w->doc, *ip);
		char sub2[600];
		if (s == NULL || visit(w, s))
			continue;
		snprintf(sub2, sizeof(sub2), "%.580s[%d]", sub, i);
		at(L, s, sub2);
		if (hashed)
			hashed_value(L, s);
		else
			set_value(L, o, s);
	}
}

/*
 * A tokens: entry: {name, secret and/or secret_sha256, expires, allow,
 * limits}. At most two secrets at once (the old and the new while
 * rotating), from secret, secret_sha256 or both (an old clear secret and
 * a new hashed one): they are kept in the order of the file, the first
 * being the old one (what `mgrok token rotate --finish` drops).
 */
static void
token_item(struct yw *w, const struct conf_opt *o, const yaml_node_t *it,
    const char *key)
{
	struct ld *L = w->L;
	const yaml_node_t *secret = NULL, *hashed = NULL;
	struct conf_policy *pol;
	char *name = NULL;

	if (it->type != YAML_MAPPING_NODE) {
		set_value(L, o, it);
		return;
	}
	pol = xcalloc(1, sizeof(*pol));
	for (yaml_node_pair_t *p = it->data.mapping.pairs.start;
	    p < it->data.mapping.pairs.top; p++) {
		const yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
		const yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
		const char *ks;
		char sub[600];
		if (v == NULL || visit(w, v) ||
		    (ks = pair_key(w, it, p, "", "key")) == NULL)
			continue;
		snprintf(sub, sizeof(sub), "%.300s.%.200s", key, ks);
		if (strcmp(ks, "secret") == 0) {
			secret = v;
		} else if (strcmp(ks, "secret_sha256") == 0) {
			hashed = v;
		} else if (strcmp(ks, "name") == 0) {
			at(L, v, sub);
			if (v->type != YAML_SCALAR_NODE || is_null(v) ||
			    strlen(scalar(v)) > 255)
				ld_bad(L, "expected a name of 1 to 255 bytes",
				    "");
			else {
				free(name);
				name = xstrdup(scalar(v));
			}
		} else if (policy_key(w, pol, ks, v, sub)) {
			continue;
		} else if (strcmp(ks, "token") == 0) {
			at(L, k, sub);
			ld_bad(L, "unknown key (did you mean secret?)", "");
		} else {
			punknown(L, k, sub, token_keys, sizeof(token_keys) /
			    sizeof(token_keys[0]), "a token has name, secret "
			    "(or secret_sha256), expires, allow and limits");
		}
	}
	if (name)
		snprintf(pol->name, sizeof(pol->name), "%s", name);
	if (!policy_restricts(pol)) {
		free(pol);
		pol = NULL;
	} else if (name == NULL) {
		at(L, it, key);
		ld_bad(L, "a token with expires, allow or limits needs a name "
		    "(its refusals name it)", "");
		free(pol);
		pol = NULL;
	} else {
		policy_keep(L, pol);
	}
	if (secret == NULL && hashed == NULL) {
		at(L, it, key);
		ld_bad(L, "a token needs a secret (or secret_sha256)", "");
	} else {
		const yaml_node_t *first = secret, *second = hashed;
		int n1 = secret ? secret_count(secret) : 0;
		int n2 = hashed ? secret_count(hashed) : 0;
		char sub[600], sub2[600];
		snprintf(sub, sizeof(sub), "%.300s.secret", key);
		snprintf(sub2, sizeof(sub2), "%.300s.secret_sha256", key);
		if ((secret && (n1 < 1 || n1 > 2)) ||
		    (hashed && (n2 < 1 || n2 > 2))) {
			at(L, secret && (n1 < 1 || n1 > 2) ? secret : hashed,
			    secret && (n1 < 1 || n1 > 2) ? sub : sub2);
			ld_bad(L, "expected one secret, or two (the old and "
			    "the new while rotating)", "");
			goto out;
		}
		if (n1 + n2 > 2) {
			at(L, it, key);
			ld_bad(L, "at most two secrets at once (the old and "
			    "the new while rotating), counting secret and "
			    "secret_sha256", "");
			goto out;
		}
		L->cur_token_name = name;
		L->cur_policy = pol;
		L->cur_token_entry = ++L->ntoken_entries;
		/* the file's order: the first is the old one */
		if (secret && hashed &&
		    hashed->start_mark.index < secret->start_mark.index) {
			first = hashed;
			second = secret;
		}
		if (first)
			secret_values(w, o, first, first == secret ? sub : sub2,
			    first == hashed);
		if (second)
			secret_values(w, o, second, second == secret ? sub :
			    sub2, second == hashed);
		L->cur_token_name = NULL;
		L->cur_policy = NULL;
		L->cur_token_entry = 0;
	}
out:
	free(name);
}

/* certs: [{subject, expires, allow, limits}]: mTLS identities' policies */
static void
certs(struct yw *w, const yaml_node_t *v)
{
	struct ld *L = w->L;
	int lines[CONF_MAX_CERTS];
	size_t first = L->s->npolicies, n = 0;
	int i = 0;

	if (is_null(v))
		return;
	if (v->type != YAML_SEQUENCE_NODE) {
		ld_bad(L, "expected a list of {subject, allow, limits}", "");
		return;
	}
	for (yaml_node_item_t *ip = v->data.sequence.items.start;
	    ip < v->data.sequence.items.top; ip++, i++) {
		const yaml_node_t *it = yaml_document_get_node(w->doc, *ip);
		const yaml_node_t *subj = NULL;
		struct conf_policy *pol;
		char key[64];
		if (it == NULL || visit(w, it))
			continue;
		snprintf(key, sizeof(key), "certs[%d]", i);
		if (it->type != YAML_MAPPING_NODE) {
			at(L, it, key);
			ld_bad(L, "expected a mapping {subject, allow, "
			    "limits}", "");
			continue;
		}
		if (n >= CONF_MAX_CERTS) {
			at(L, it, key);
			ld_bad(L, "too many certs entries (at most 256)", "");
			return;
		}
		pol = xcalloc(1, sizeof(*pol));
		pol->is_cert = 1;
		for (yaml_node_pair_t *p = it->data.mapping.pairs.start;
		    p < it->data.mapping.pairs.top; p++) {
			const yaml_node_t *k = yaml_document_get_node(w->doc,
			    p->key);
			const yaml_node_t *val = yaml_document_get_node(w->doc,
			    p->value);
			const char *ks;
			char sub[600];
			if (val == NULL || visit(w, val) ||
			    (ks = pair_key(w, it, p, "", "key")) == NULL)
				continue;
			snprintf(sub, sizeof(sub), "%s.%.200s", key, ks);
			if (strcmp(ks, "subject") == 0) {
				at(L, val, sub);
				if (val->type != YAML_SCALAR_NODE ||
				    is_null(val) ||
				    strlen(scalar(val)) >= sizeof(pol->name))
					ld_bad(L, "expected a subject of 1 to "
					    "511 bytes (as mgrok logs it: "
					    "CN=edge-1)", "");
				else
					subj = val;
			} else if (!policy_key(w, pol, ks, val, sub)) {
				punknown(L, k, sub, cert_keys,
				    sizeof(cert_keys) / sizeof(cert_keys[0]),
				    "a cert has subject, expires, allow and "
				    "limits");
			}
		}
		if (subj == NULL) {
			at(L, it, key);
			ld_bad(L, "a cert entry needs its subject", "");
			free(pol);
			continue;
		}
		snprintf(pol->name, sizeof(pol->name), "%s", scalar(subj));
		for (size_t j = first; j < L->s->npolicies; j++) {
			if (L->s->policies[j]->is_cert &&
			    strcmp(L->s->policies[j]->name, pol->name) == 0) {
				char why[120];
				snprintf(why, sizeof(why), "this subject is "
				    "listed twice (first at line %d)",
				    lines[j - first]);
				pbad(L, subj, key, pol->name, why);
				free(pol);
				pol = NULL;
				break;
			}
		}
		if (pol == NULL)
			continue;
		lines[L->s->npolicies - first] = (int)subj->start_mark.line + 1;
		policy_keep(L, pol);
		n++;
	}
}

static void
list_value(struct yw *w, const struct conf_opt *o, const yaml_node_t *v,
    const char *key)
{
	struct ld *L = w->L;
	int i = 0;

	if (v->type == YAML_SCALAR_NODE) {
		set_value(L, o, v);
		return;
	}
	if (v->type != YAML_SEQUENCE_NODE) {
		ld_bad(L, "expected a value or a list, not a mapping", "");
		return;
	}
	for (yaml_node_item_t *p = v->data.sequence.items.start;
	    p < v->data.sequence.items.top; p++, i++) {
		const yaml_node_t *it = yaml_document_get_node(w->doc, *p);
		char sub[600];
		if (it == NULL || visit(w, it))
			continue;
		snprintf(sub, sizeof(sub), "%s[%d]", key, i);
		at(L, it, sub);
		if (o->list == LG_TOKENS && L->server)
			token_item(w, o, it, sub);
		else
			set_value(L, o, it);
	}
}

static const char *const health_keys[] = { "type", "path", "expect",
	"interval", "timeout", "rise", "fall" };
#define NHEALTH_KEYS (sizeof(health_keys) / sizeof(health_keys[0]))

/* tunnels.NAME.health: a mapping of health_keys (each the option
 * health.KEY, type the option health), or one value, the type */
static void
health_map(struct yw *w, const struct conf_opt *type_opt,
    const yaml_node_t *kn, const yaml_node_t *m, const char *key)
{
	struct ld *L = w->L;
	const yaml_node_pair_t *pr = NULL;
	const yaml_node_t *k, *v;
	const char *ks;
	char sub[600], okey[64];

	at(L, m, key);
	if (m->type == YAML_SCALAR_NODE) {
		set_value(L, type_opt, m);
		return;
	}
	if (m->type != YAML_MAPPING_NODE) {
		ld_bad(L, "expected a mapping (type, path, expect, interval, "
		    "timeout, rise, fall) or a type", "");
		return;
	}
	/* the check's own errors (timeout >= interval) point at its key */
	if (!L->tun->w_health.set) {
		at(L, kn, key);
		L->tun->w_health = L->cur;
	}
	while (map_next(w, m, &pr, key, &k, &v, &ks, sub, sizeof(sub))) {
		const struct conf_opt *o = NULL;
		size_t i;

		for (i = 0; i < NHEALTH_KEYS; i++)
			if (strcmp(ks, health_keys[i]) == 0)
				break;
		if (i < NHEALTH_KEYS) {
			snprintf(okey, sizeof(okey), "health.%s", ks);
			o = i == 0 ? type_opt : conf_opt_by_key(0, 1, okey);
		}
		if (o == NULL) {
			punknown(L, k, sub, health_keys, NHEALTH_KEYS, "health "
			    "has type, path, expect, interval, timeout, rise "
			    "and fall");
			continue;
		}
		at(L, v, sub);
		set_value(L, o, v);
	}
}

static void
tunnel(struct yw *w, const yaml_node_t *kn, const char *name,
    const yaml_node_t *v)
{
	struct ld *L = w->L;
	struct conf_tun *t;
	char prefix[600];

	snprintf(prefix, sizeof(prefix), "tunnels.%s", name);
	if (v->type != YAML_MAPPING_NODE) {
		at(L, v, prefix);
		ld_bad(L, "expected a mapping of the tunnel's keys (type, "
		    "local, ...)", "");
		return;
	}
	if (strlen(name) < 1 || strlen(name) > 255) {
		at(L, kn, prefix);
		ld_bad(L, "a tunnel name must be 1 to 255 bytes", "");
		return;
	}
	if (L->ntuns >= CONF_MAX_LOCALS) {
		at(L, kn, prefix);
		ld_bad(L, "too many tunnels (at most 64)", "");
		return;
	}
	if (L->ntuns == L->captuns) {
		L->captuns = L->captuns ? 2 * L->captuns : 8;
		L->tuns = xrealloc(L->tuns, L->captuns * sizeof(*L->tuns));
	}
	t = &L->tuns[L->ntuns++];
	memset(t, 0, sizeof(*t));
	t->spec.type = PROXY_TCP;
	snprintf(t->spec.name, sizeof(t->spec.name), "%s", name);
	snprintf(t->key, sizeof(t->key), "%s", name);
	at(L, kn, prefix);
	t->where = L->cur;
	L->tun = t;
	snprintf(prefix, sizeof(prefix), "tunnels.%s.", name);
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start;
	    p < v->data.mapping.pairs.top; p++) {
		const yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
		const yaml_node_t *val = yaml_document_get_node(w->doc,
		    p->value);
		const struct conf_opt *o;
		const char *ks;
		char key[600];
		if (val == NULL || visit(w, val) ||
		    (ks = pair_key(w, v, p, prefix, "key")) == NULL)
			continue;
		/* health.KEY options live under the health mapping */
		if ((o = conf_opt_by_key(0, 1, ks)) == NULL ||
		    strchr(ks, '.') != NULL) {
			unknown_key(w, k, prefix, 1);
			continue;
		}
		snprintf(key, sizeof(key), "%s%s", prefix, ks);
		if (strcmp(ks, "health") == 0) {
			health_map(w, o, k, val, key);
			continue;
		}
		at(L, val, key);
		set_value(L, o, val);
	}
	L->tun = NULL;
}

static void
tunnels(struct yw *w, const yaml_node_t *v)
{
	struct ld *L = w->L;

	if (is_null(v))
		return;
	if (v->type != YAML_MAPPING_NODE) {
		ld_bad(L, "expected a mapping NAME: {type: ..., local: ...}",
		    "");
		return;
	}
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start;
	    p < v->data.mapping.pairs.top; p++) {
		const yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
		const yaml_node_t *val = yaml_document_get_node(w->doc,
		    p->value);
		const char *name;
		if (val == NULL || visit(w, val) || (name = pair_key(w, v, p,
		    "tunnels.", "tunnel name")) == NULL)
			continue;
		tunnel(w, k, name, val);
	}
}

static void
root(struct yw *w, const yaml_node_t *r)
{
	struct ld *L = w->L;

	if (r->type != YAML_MAPPING_NODE) {
		if (is_null(r))
			return; /* an empty file: all defaults */
		at(L, r, "");
		ld_bad(L, "expected a mapping of keys (key: value lines)", "");
		return;
	}
	for (yaml_node_pair_t *p = r->data.mapping.pairs.start;
	    p < r->data.mapping.pairs.top; p++) {
		const yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
		const yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
		const struct conf_opt *o;
		const char *ks;
		if (v == NULL || visit(w, v) ||
		    (ks = pair_key(w, r, p, "", "key")) == NULL)
			continue;
		at(L, v, ks);
		if (strcmp(ks, "version") == 0) {
			if (v->type != YAML_SCALAR_NODE ||
			    strcmp(scalar(v), "1") != 0)
				ld_bad(L, "this mgrok reads version 1",
				    v->type == YAML_SCALAR_NODE ? scalar(v) :
				    "");
			continue;
		}
		if (!L->server && (strcmp(ks, "tunnels") == 0 ||
		    strcmp(ks, "proxies") == 0)) {
			tunnels(w, v);
			continue;
		}
		if (L->server && strcmp(ks, "certs") == 0) {
			certs(w, v);
			continue;
		}
		if ((o = conf_opt_by_key(L->server, 0, ks)) == NULL) {
			unknown_key(w, k, "", 0);
			continue;
		}
		if (o->flags & OF_LIST)
			list_value(w, o, v, ks);
		else
			set_value(L, o, v);
	}
}

int
conf_yaml_buf(struct ld *L, const char *name, const char *buf, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *r;
	struct yw w = { L, &doc, 0 };
	int rc = 0;

	L->file = name;
	if (!yaml_parser_initialize(&parser)) {
		conf_diag_add(L->d, 1, "%s: out of memory", name);
		return -1;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		conf_diag_add(L->d, 1, "%s:%d:%d: %s%s%s", name,
		    (int)parser.problem_mark.line + 1,
		    (int)parser.problem_mark.column + 1,
		    parser.context ? parser.context : "",
		    parser.context ? ": " : "",
		    parser.problem ? parser.problem : "not YAML");
		yaml_parser_delete(&parser);
		return -1;
	}
	if ((r = yaml_document_get_root_node(&doc)) != NULL)
		root(&w, r);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return rc;
}

int
conf_yaml_file(struct ld *L, const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	int rc = -1;

	L->file = path;
	if (f == NULL) {
		conf_diag_add(L->d, 1, "%s: %s", path, strerror(errno));
		goto out;
	}
	buf = xmalloc(YAML_MAX_BYTES + 1);
	len = fread(buf, 1, YAML_MAX_BYTES + 1, f);
	if (ferror(f)) {
		conf_diag_add(L->d, 1, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (len > YAML_MAX_BYTES) {
		conf_diag_add(L->d, 1, "%s: larger than 1 MiB", path);
		goto out;
	}
	rc = conf_yaml_buf(L, path, buf, len);
out:
	if (f)
		fclose(f);
	if (buf) {
		memset(buf, 0, len);
		free(buf);
	}
	return rc;
}

int
conf_yaml_sniff(const char *buf, size_t len)
{
	int server = 0, client = 0;
	size_t i = 0;

	while (i < len) {
		size_t e = i, k;
		char key[64];
		while (e < len && buf[e] != '\n')
			e++;
		for (k = i; k < e && k - i < sizeof(key) - 1 &&
		    (buf[k] == '_' || (buf[k] >= 'a' && buf[k] <= 'z')); k++)
			key[k - i] = buf[k];
		key[k - i] = '\0';
		if (k > i && k < e && buf[k] == ':') {
			int in_s = conf_opt_by_key(1, 0, key) != NULL ||
			    strcmp(key, "certs") == 0;
			int in_c = conf_opt_by_key(0, 0, key) != NULL ||
			    strcmp(key, "tunnels") == 0 ||
			    strcmp(key, "proxies") == 0;
			server += in_s && !in_c;
			client += in_c && !in_s;
		}
		i = e + 1;
	}
	return server > client;
}
