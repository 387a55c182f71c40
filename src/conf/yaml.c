/* yaml.c: a config file (YAML, libyaml's document API) into the option
 * table's setters. Strict: every key is known, every value has the right
 * shape, and every problem is reported with its line and column; reading
 * goes on after one so that all of them are reported at once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "conf/conf_int.h"
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
	else if (!tunnel && conf_opt_by_key(!L->server, 0, scalar(k)))
		snprintf(why, sizeof(why), "unknown key (it belongs in a %s "
		    "file; this one is read as a %s file)",
		    L->server ? "client" : "server",
		    L->server ? "server" : "client");
	else
		snprintf(why, sizeof(why), "unknown key");
	ld_bad(L, why, "");
}

static void
token_item(struct yw *w, const struct conf_opt *o, const yaml_node_t *it,
    const char *key)
{
	struct ld *L = w->L;
	const yaml_node_t *secret = NULL;
	char *name = NULL;

	if (it->type != YAML_MAPPING_NODE) {
		set_value(L, o, it);
		return;
	}
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
		} else {
			at(L, k, sub);
			ld_bad(L, strcmp(ks, "token") == 0 ?
			    "unknown key (did you mean secret?)" :
			    "unknown key (a token has name and secret)", "");
		}
	}
	if (secret == NULL) {
		at(L, it, key);
		ld_bad(L, "a token needs a secret", "");
	} else {
		char sub[600];
		snprintf(sub, sizeof(sub), "%.300s.secret", key);
		at(L, secret, sub);
		L->cur_token_name = name;
		set_value(L, o, secret);
		L->cur_token_name = NULL;
	}
	free(name);
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
		if ((o = conf_opt_by_key(0, 1, ks)) == NULL) {
			unknown_key(w, k, prefix, 1);
			continue;
		}
		snprintf(key, sizeof(key), "%s%s", prefix, ks);
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
			int in_s = conf_opt_by_key(1, 0, key) != NULL;
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
