/* token_cmd.c: `mgrok token hash|add|list|rotate`: the secrets of the
 * server file's tokens:, edited in place: only the bytes of the entry that
 * changes are touched (comments, order and the other entries are kept),
 * located with libyaml's marks; the result must load before it replaces
 * the file (atomically, so that the server reloads it once). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/base64.h>
#include <yaml.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "conf/policy.h"
#include "proto/ctrl.h"
#include "util/crypto.h"
#include "util/xmalloc.h"

#define TOK_FILE_MAX (1 << 20) /* as the config loader */
#define TOK_SECRET_BYTES 32
#define TOK_NAME_MAX 255
#define TOK_HEX_LEN (2 * CRYPTO_SHA256_LEN)

/* The server file, read and parsed; byte offsets of libyaml's marks
 * (which count characters, without a BOM) come from ofs[]. */
struct tfile {
	const char *path;
	char *buf;
	size_t len;
	size_t *ofs; /* [nchars + 1]: char index -> byte offset */
	size_t nchars;
	const char *nl; /* "\n", or "\r\n" when the file uses it */
	yaml_document_t doc;
	int loaded;
	yaml_node_t *root;                /* NULL for an empty file */
	yaml_node_t *tokens_key, *tokens; /* the tokens: pair, or NULL */
	size_t alias_line;                /* the first alias's line, 0 = none */
};

/* One replacement of the text: [a, b) becomes text. */
struct tedit {
	size_t a, b;
	char *text;
};

/* A growing string. */
struct sbuf {
	char *p;
	size_t len, cap;
};

static void
sb_add(struct sbuf *s, const char *p, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		s->cap = (s->len + n + 1) * 2;
		s->p = xrealloc(s->p, s->cap);
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
	s->p[s->len] = '\0';
}

static void
sb_str(struct sbuf *s, const char *p)
{
	sb_add(s, p, strlen(p));
}

static void sb_printf(struct sbuf *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sb_printf(struct sbuf *s, const char *fmt, ...)
{
	va_list ap;
	char tmp[1024];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		sb_add(s, tmp,
		    (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void
token_usage(FILE *f)
{
	fputs(
	    "usage: mgrok token hash            the SHA-256 (hex) of a secret "
	    "read from stdin\n"
	    "       mgrok token add NAME [--clear] [--expires DATE] "
	    "[--config FILE]\n"
	    "       mgrok token list [--config FILE]\n"
	    "       mgrok token rotate NAME [--clear] [--finish] "
	    "[--config FILE]\n"
	    "  add       a new token NAME with a random secret, stored as its "
	    "SHA-256\n"
	    "            (secret_sha256) unless --clear; the secret is printed "
	    "once,\n"
	    "            on stdout\n"
	    "  list      the tokens: name, kind (clear, hashed, rotating), "
	    "expiry and\n"
	    "            policy; never a secret\n"
	    "  rotate    a new secret for NAME next to the old one (both work "
	    "until\n"
	    "            --finish, which drops the old one)\n"
	    "  --config FILE   the server file (default $MGROK_SERVER_CONFIG, "
	    "else\n"
	    "                  /etc/mgrok/server.yml); edited in place, "
	    "comments kept,\n"
	    "                  written atomically: a running server reloads "
	    "it\n"
	    "  --expires DATE  YYYY-MM-DD or an RFC 3339 time (add)\n",
	    f);
}

/* ------------------------------------------------------------ reading */

static void
tf_free(struct tfile *t)
{
	if (t->loaded)
		yaml_document_delete(&t->doc);
	free(t->ofs);
	if (t->buf) {
		memset(t->buf, 0, t->len);
		free(t->buf);
	}
	memset(t, 0, sizeof(*t));
}

static size_t
tf_off(const struct tfile *t, yaml_mark_t m)
{
	return m.index <= t->nchars ? t->ofs[m.index] : t->len;
}

static const char *
scalar(const yaml_node_t *n)
{
	return n != NULL && n->type == YAML_SCALAR_NODE
	           ? (const char *)n->data.scalar.value
	           : NULL;
}

/* map[key], and the key's node in *kn (may be NULL) */
static yaml_node_t *
map_get(yaml_document_t *d, const yaml_node_t *map, const char *key,
    yaml_node_t **kn)
{
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
	     p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(d, p->key);
		const char *s = scalar(k);
		if (s != NULL && strcmp(s, key) == 0) {
			if (kn)
				*kn = k;
			return yaml_document_get_node(d, p->value);
		}
	}
	return NULL;
}

/* Parse buf[0..len) into t (t->buf is taken over); 0, or -1 with the
 * reason in err. */
static int
tf_parse(struct tfile *t, char *buf, size_t len, char *err, size_t errcap)
{
	yaml_parser_t p;
	size_t i = 0, n = 0;
	int ok;

	t->buf = buf;
	t->len = len;
	if (len >= 2 &&
	    (((unsigned char)buf[0] == 0xff && (unsigned char)buf[1] == 0xfe) ||
	        ((unsigned char)buf[0] == 0xfe &&
	            (unsigned char)buf[1] == 0xff))) {
		snprintf(err, errcap,
		    "%s: UTF-16; this command edits UTF-8 "
		    "files only",
		    t->path);
		return -1;
	}
	/* libyaml's marks count characters after the BOM, a CR LF as two */
	t->ofs = xmalloc((len + 1) * sizeof(*t->ofs));
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	for (; i < len; i++)
		if (((unsigned char)buf[i] & 0xc0) != 0x80)
			t->ofs[n++] = i;
	t->ofs[n] = len;
	t->nchars = n;
	t->nl = memmem(buf, len, "\r\n", 2) ? "\r\n" : "\n";

	/* an alias (*NAME) is a node whose marks are its anchor's place:
	 * edits by position need a file without them */
	yaml_parser_initialize(&p);
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev))
			break; /* reported by the load below */
		if (ev.type == YAML_ALIAS_EVENT && t->alias_line == 0)
			t->alias_line = ev.start_mark.line + 1;
		if (ev.type == YAML_DOCUMENT_END_EVENT ||
		    ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);

	yaml_parser_initialize(&p);
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	ok = yaml_parser_load(&p, &t->doc);
	if (!ok) {
		snprintf(err, errcap, "%s:%zu:%zu: not valid YAML: %s", t->path,
		    p.problem_mark.line + 1, p.problem_mark.column + 1,
		    p.problem ? p.problem : "?");
		yaml_parser_delete(&p);
		return -1;
	}
	yaml_parser_delete(&p);
	t->loaded = 1;
	t->root = yaml_document_get_root_node(&t->doc);
	if (t->root != NULL && t->root->type == YAML_SCALAR_NODE &&
	    scalar(t->root)[0] == '\0')
		t->root = NULL;
	if (t->root != NULL && t->root->type != YAML_MAPPING_NODE) {
		snprintf(err, errcap,
		    "%s:%zu: the top level is not a mapping "
		    "of keys",
		    t->path, t->root->start_mark.line + 1);
		return -1;
	}
	/* auth_token: is the original mgrok's name of the same list */
	t->tokens = map_get(&t->doc, t->root, "tokens", &t->tokens_key);
	if (t->tokens == NULL)
		t->tokens =
		    map_get(&t->doc, t->root, "auth_token", &t->tokens_key);
	return 0;
}

/* tf_parse of a copy of buf */
static int
tf_parse_copy(struct tfile *t, const char *path, const char *buf, size_t len,
    char *err, size_t errcap)
{
	memset(t, 0, sizeof(*t));
	t->path = path;
	return tf_parse(t, xstrndup(buf, len), len, err, errcap);
}

static int
tf_read(struct tfile *t, const char *path, char *err, size_t errcap)
{
	FILE *f;
	char *buf;
	size_t len;

	memset(t, 0, sizeof(*t));
	t->path = path;
	if ((f = fopen(path, "rb")) == NULL) {
		snprintf(err, errcap, "%s: %s", path, strerror(errno));
		return -1;
	}
	buf = xmalloc(TOK_FILE_MAX + 1);
	len = fread(buf, 1, TOK_FILE_MAX + 1, f);
	fclose(f);
	if (len > TOK_FILE_MAX) {
		free(buf);
		snprintf(err, errcap, "%s: larger than 1 MiB", path);
		return -1;
	}
	buf[len] = '\0';
	return tf_parse(t, buf, len, err, errcap);
}

/* the edits work on files without aliases; 0, or -1 (said) */
static int
tf_editable(const struct tfile *t, const char *cmd)
{
	if (t->alias_line == 0)
		return 0;
	fprintf(stderr,
	    "mgrok: token %s: %s:%zu: a YAML alias (*NAME): this command "
	    "edits files without them; edit this one by hand\n",
	    cmd, t->path, t->alias_line);
	return -1;
}

/* ------------------------------------------------------------ entries */

/* The secrets of an entry: its secret and secret_sha256 values, each a
 * scalar or a list. */
struct tentry {
	yaml_node_t *node; /* the mapping, or a bare scalar secret */
	const char *name;  /* NULL: unnamed */
	yaml_node_t *secret, *secret_key;
	yaml_node_t *hashed, *hashed_key;
	int nclear, nhashed;
};

static int
count_of(const yaml_node_t *v)
{
	if (v == NULL)
		return 0;
	if (v->type == YAML_SEQUENCE_NODE)
		return (int)(v->data.sequence.items.top -
		             v->data.sequence.items.start);
	return 1;
}

static void
entry_of(struct tfile *t, yaml_node_t *it, struct tentry *e)
{
	memset(e, 0, sizeof(*e));
	e->node = it;
	if (it->type != YAML_MAPPING_NODE) {
		e->nclear = 1; /* `tokens: [s3cret]`: an unnamed secret */
		return;
	}
	e->name = scalar(map_get(&t->doc, it, "name", NULL));
	e->secret = map_get(&t->doc, it, "secret", &e->secret_key);
	e->hashed = map_get(&t->doc, it, "secret_sha256", &e->hashed_key);
	e->nclear = count_of(e->secret);
	e->nhashed = count_of(e->hashed);
}

/* The entry named name, or 0. */
static int
find_entry(struct tfile *t, const char *name, struct tentry *e)
{
	if (t->tokens == NULL || t->tokens->type != YAML_SEQUENCE_NODE)
		return 0;
	for (yaml_node_item_t *ip = t->tokens->data.sequence.items.start;
	     ip < t->tokens->data.sequence.items.top; ip++) {
		yaml_node_t *it = yaml_document_get_node(&t->doc, *ip);
		if (it == NULL)
			continue;
		entry_of(t, it, e);
		if (e->name && strcmp(e->name, name) == 0)
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------ spans */

/* The byte just after a node's last character: a block collection's own
 * end mark is where the next token starts (after comments and blank
 * lines), so it is its last descendant's end instead. */
static size_t
last_end(struct tfile *t, const yaml_node_t *n)
{
	size_t e = tf_off(t, n->end_mark), k;

	if (n->type == YAML_MAPPING_NODE &&
	    n->data.mapping.style == YAML_BLOCK_MAPPING_STYLE &&
	    n->data.mapping.pairs.top > n->data.mapping.pairs.start) {
		yaml_node_pair_t *p = n->data.mapping.pairs.top - 1;
		yaml_node_t *kn = yaml_document_get_node(&t->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(&t->doc, p->value);
		e = kn ? last_end(t, kn) : 0;
		if (vn && (k = last_end(t, vn)) > e)
			e = k;
	} else if (n->type == YAML_SEQUENCE_NODE &&
	           n->data.sequence.style == YAML_BLOCK_SEQUENCE_STYLE &&
	           n->data.sequence.items.top > n->data.sequence.items.start) {
		yaml_node_t *vn = yaml_document_get_node(
		    &t->doc, *(n->data.sequence.items.top - 1));
		if (vn)
			e = last_end(t, vn);
	}
	return e;
}

/* The start of the line after the one off is on (a block scalar's end is
 * at a line start already); len at the end of a file without a final
 * newline. */
static size_t
after_line(const struct tfile *t, size_t off)
{
	const char *q;

	if (off > 0 && t->buf[off - 1] == '\n')
		return off;
	q = memchr(t->buf + off, '\n', t->len - off);
	return q ? (size_t)(q - t->buf) + 1 : t->len;
}

/* Where the line off is on ends (its newline, CR LF or LF). */
static size_t
line_end(const struct tfile *t, size_t off)
{
	const char *q = memchr(t->buf + off, '\n', t->len - off);
	size_t e = q ? (size_t)(q - t->buf) : t->len;

	if (e > off && t->buf[e - 1] == '\r')
		e--;
	return e;
}

static char *
span_dup(const struct tfile *t, const yaml_node_t *n)
{
	size_t a = tf_off(t, n->start_mark), b = tf_off(t, n->end_mark);

	return xstrndup(t->buf + a, b > a ? b - a : 0);
}

/* Text lines to insert at off: a newline first when off is the end of a
 * file without one. */
static void
lines_at(const struct tfile *t, size_t off, struct sbuf *s)
{
	if (off == t->len && t->len > 0 && t->buf[t->len - 1] != '\n')
		sb_str(s, t->nl);
}

/* ------------------------------------------------------------ values */

/* A token name: 1 to 255 bytes without control characters (anything
 * else can be written as a double-quoted scalar). */
static int
check_name(const char *name, char *err, size_t errcap)
{
	size_t n = strlen(name);

	if (n < 1 || n > TOK_NAME_MAX) {
		snprintf(err, errcap, "a token name is 1 to 255 bytes");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
			snprintf(err, errcap,
			    "a token name may not hold "
			    "control characters");
			return -1;
		}
	return 0;
}

/* v as a YAML scalar: plain when that reads back the same (letters,
 * digits, . _ @ -, not a YAML 1.1 boolean or null), else double-quoted
 * (no control characters reach here). */
static void
yaml_quoted(struct sbuf *s, const char *v)
{
	int plain = (v[0] >= 'a' && v[0] <= 'z') ||
	            (v[0] >= 'A' && v[0] <= 'Z') ||
	            (v[0] >= '0' && v[0] <= '9');

	for (const char *p = v; *p && plain; p++)
		plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		        (*p >= '0' && *p <= '9') || strchr("._@-", *p) != NULL;
	if (plain && strcasecmp(v, "null") != 0 && strcasecmp(v, "true") != 0 &&
	    strcasecmp(v, "false") != 0 && strcasecmp(v, "yes") != 0 &&
	    strcasecmp(v, "no") != 0 && strcasecmp(v, "on") != 0 &&
	    strcasecmp(v, "off") != 0) {
		sb_str(s, v);
		return;
	}
	sb_str(s, "\"");
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			sb_str(s, "\\");
		sb_add(s, p, 1);
	}
	sb_str(s, "\"");
}

/* A new secret: 32 random bytes, base64url without padding (43
 * characters); never one that starts with '-' (it would read as an
 * option on a command line). */
static void
new_secret(char out[64])
{
	struct base64_encode_ctx ctx;
	uint8_t raw[TOK_SECRET_BYTES];
	size_t n;

	do {
		crypto_random(raw, sizeof(raw));
		base64url_encode_init(&ctx);
		n = base64_encode_update(&ctx, out, sizeof(raw), raw);
		n += base64_encode_final(&ctx, out + n);
		while (n > 0 && out[n - 1] == '=')
			n--;
		out[n] = '\0';
	} while (out[0] == '-' || out[0] == '_');
	memset(raw, 0, sizeof(raw));
}

static void
hex_sha256(const char *secret, char out[TOK_HEX_LEN + 1])
{
	uint8_t h[CRYPTO_SHA256_LEN];

	crypto_sha256(secret, strlen(secret), h);
	for (int i = 0; i < CRYPTO_SHA256_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* ------------------------------------------------------------ writing */

static char *
apply_edit(const struct tfile *t, const struct tedit *e, size_t *len)
{
	if (e->a > e->b || e->b > t->len)
		abort(); /* the spans come from this file's own marks */
	size_t tl = strlen(e->text);
	char *o = xmalloc(t->len - (e->b - e->a) + tl + 1);

	memcpy(o, t->buf, e->a);
	memcpy(o + e->a, e->text, tl);
	memcpy(o + e->a + tl, t->buf + e->b, t->len - e->b);
	*len = t->len - (e->b - e->a) + tl;
	o[*len] = '\0';
	return o;
}

/*
 * The edited text must load as a server file (conf_check_buf, the same
 * checks as `mgrok config check`) before it replaces path: a temporary
 * file in the same directory with the old one's mode, then rename(2), so
 * that a watching server sees one complete file.
 */
static int
write_checked(const char *path, const char *buf, size_t len)
{
	struct conf_diag d;
	char real[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX + 32];
	struct stat st;
	int fd = -1, rc = -1;
	size_t off = 0;

	conf_diag_init(&d);
	if (conf_check_buf(path, buf, len, 1, &d) != 0) {
		cli_print_diag(&d);
		fprintf(stderr,
		    "mgrok: token: %s: the edited file would not "
		    "load (above); it is left as it was\n",
		    path);
		goto out;
	}
	if (realpath(path, real) == NULL || stat(real, &st) != 0) {
		fprintf(
		    stderr, "mgrok: token: %s: %s\n", path, strerror(errno));
		goto out;
	}
	snprintf(dir, sizeof(dir), "%s", real);
	snprintf(tmp, sizeof(tmp), "%s/.mgrok-token-XXXXXX", dirname(dir));
	if ((fd = mkstemp(tmp)) < 0) {
		fprintf(stderr,
		    "mgrok: token: cannot create a file next to "
		    "%s: %s\n",
		    real, strerror(errno));
		goto out;
	}
	if (fchmod(fd, st.st_mode & 07777) != 0 ||
	    (fchown(fd, st.st_uid, st.st_gid) != 0 && errno != EPERM))
		goto fail;
	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		off += (size_t)n;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, real) != 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "mgrok: token: cannot write %s: %s\n", real,
	    strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	conf_diag_free(&d);
	return rc;
}

/* the texts of an entry's secrets in the file's order, as they read (at
 * most 2); -1 for more, or for one that is not a single value */
static int
entry_values(struct tfile *t, const struct tentry *e, const char **out)
{
	int n = 0;

	for (int pass = 0; pass < 2; pass++) {
		yaml_node_t *v = pass == 0 ? e->secret : e->hashed;
		if (e->secret && e->hashed &&
		    e->hashed->start_mark.index < e->secret->start_mark.index)
			v = pass == 0 ? e->hashed : e->secret;
		if (v == NULL)
			continue;
		if (v->type == YAML_SCALAR_NODE) {
			if (n >= 2)
				return -1;
			out[n++] = scalar(v);
			continue;
		}
		if (v->type != YAML_SEQUENCE_NODE)
			return -1;
		for (yaml_node_item_t *ip = v->data.sequence.items.start;
		     ip < v->data.sequence.items.top; ip++) {
			if (n >= 2)
				return -1;
			out[n++] = scalar(yaml_document_get_node(&t->doc, *ip));
		}
	}
	/* a list item that is no single value cannot be rotated */
	for (int i = 0; i < n; i++)
		if (out[i] == NULL)
			return -1;
	return n;
}

/* After the edit, the entry must read back as intended: want[] are its
 * secrets' texts, in the file's order. */
static int
verify(const char *path, const char *buf, size_t len, const char *name,
    const char *const *want, int nwant)
{
	struct tfile t;
	struct tentry e;
	char err[600];
	const char *got[2];
	int rc = -1;

	if (tf_parse_copy(&t, path, buf, len, err, sizeof(err)) != 0 ||
	    !find_entry(&t, name, &e) || e.nclear + e.nhashed != nwant ||
	    entry_values(&t, &e, got) != nwant)
		goto out;
	for (int i = 0; i < nwant; i++)
		if (got[i] == NULL || strcmp(got[i], want[i]) != 0)
			goto out;
	rc = 0;
out:
	tf_free(&t);
	if (rc != 0)
		fprintf(stderr,
		    "mgrok: token: %s: the edit did not read back "
		    "as intended (an unusual layout of tokens:?); the file is "
		    "left as it was\n",
		    path);
	return rc;
}

/* ------------------------------------------------------------ add */

/* the edit that appends one entry (block lines or a flow item) */
static int
edit_add(struct tfile *t, const char *name, const char *key, const char *value,
    const char *expires, struct tedit *ed, char *err, size_t errcap)
{
	struct sbuf s = {0};
	yaml_node_t *seq = t->tokens;
	const char *nl = t->nl;
	size_t ind;

	if (t->root == NULL || t->tokens_key == NULL) {
		/* no tokens: yet: a new key after the last one */
		if (t->root &&
		    t->root->data.mapping.style == YAML_FLOW_MAPPING_STYLE) {
			snprintf(err, errcap,
			    "%s: the top level is a flow "
			    "mapping ({...}); add tokens: by hand",
			    t->path);
			return -1;
		}
		ed->a = ed->b =
		    t->root ? after_line(t, last_end(t, t->root)) : t->len;
		lines_at(t, ed->a, &s);
		ind = t->root ? t->root->start_mark.column : 0;
		sb_printf(&s, "%*stokens:%s", (int)ind, "", nl);
		ind += 2;
		goto block;
	}
	if (seq->type == YAML_SCALAR_NODE && scalar(seq)[0] == '\0') {
		/* `tokens:` and nothing: the first item on the next line */
		ed->a = ed->b =
		    after_line(t, tf_off(t, t->tokens_key->end_mark));
		lines_at(t, ed->a, &s);
		ind = t->tokens_key->start_mark.column + 2;
		goto block;
	}
	if (seq->type == YAML_SEQUENCE_NODE &&
	    seq->data.sequence.style == YAML_BLOCK_SEQUENCE_STYLE) {
		ed->a = ed->b = after_line(t, last_end(t, seq));
		lines_at(t, ed->a, &s);
		ind = seq->start_mark.column;
		goto block;
	}
	/* a flow list, a single secret, or ~: a flow list with the entry */
	if (seq->type == YAML_SEQUENCE_NODE) {
		size_t end = tf_off(t, seq->end_mark);
		if (end == 0 || t->buf[end - 1] != ']') {
			snprintf(err, errcap,
			    "%s:%zu: cannot find the end of "
			    "the tokens: list",
			    t->path, seq->start_mark.line + 1);
			return -1;
		}
		ed->a = ed->b = end - 1;
		if (count_of(seq) > 0)
			sb_str(&s, ", ");
	} else if (seq->type == YAML_SCALAR_NODE &&
	           (seq->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
	               seq->data.scalar.style ==
	                   YAML_SINGLE_QUOTED_SCALAR_STYLE ||
	               seq->data.scalar.style ==
	                   YAML_DOUBLE_QUOTED_SCALAR_STYLE) &&
	           seq->start_mark.line == seq->end_mark.line) {
		char *old = span_dup(t, seq);
		int null =
		    strcmp(old, "~") == 0 || strcasecmp(old, "null") == 0;
		ed->a = tf_off(t, seq->start_mark);
		ed->b = tf_off(t, seq->end_mark);
		sb_str(&s, "[");
		if (!null) {
			sb_str(&s, old);
			sb_str(&s, ", ");
		}
		free(old);
	} else {
		snprintf(err, errcap,
		    "%s:%zu: tokens: is neither a list nor a "
		    "single secret; make it a list first",
		    t->path, seq->start_mark.line + 1);
		return -1;
	}
	sb_str(&s, "{name: ");
	yaml_quoted(&s, name);
	sb_printf(&s, ", %s: ", key);
	yaml_quoted(&s, value);
	if (expires) {
		sb_str(&s, ", expires: ");
		yaml_quoted(&s, expires);
	}
	sb_str(&s, "}");
	if (seq->type != YAML_SEQUENCE_NODE)
		sb_str(&s, "]");
	ed->text = s.p;
	return 0;
block:
	sb_printf(&s, "%*s- name: ", (int)ind, "");
	yaml_quoted(&s, name);
	sb_printf(&s, "%s%*s  %s: ", nl, (int)ind, "", key);
	yaml_quoted(&s, value);
	sb_str(&s, nl);
	if (expires) {
		sb_printf(&s, "%*s  expires: ", (int)ind, "");
		yaml_quoted(&s, expires);
		sb_str(&s, nl);
	}
	ed->text = s.p;
	return 0;
}

static int
token_add(const char *path, const char *name, int clear, const char *expires)
{
	struct tfile t;
	struct tentry e;
	struct tedit ed = {0};
	char err[600], secret[64], hex[TOK_HEX_LEN + 1], *nbuf = NULL;
	const char *want[1];
	size_t nlen;
	int rc = 1;

	if (check_name(name, err, sizeof(err)) != 0) {
		fprintf(stderr, "mgrok: token add: %s\n", err);
		return 2;
	}
	if (expires) {
		int64_t until;
		const char *why;
		if (policy_parse_expires(expires, &until, &why) != 0) {
			fprintf(stderr,
			    "mgrok: token add: --expires \"%s\": "
			    "%s\n",
			    expires, why);
			return 2;
		}
	}
	if (tf_read(&t, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "mgrok: token add: %s\n", err);
		tf_free(&t);
		return 1;
	}
	if (tf_editable(&t, "add") != 0)
		goto out;
	if (find_entry(&t, name, &e)) {
		fprintf(stderr,
		    "mgrok: token add: %s:%zu: a token named \"%s\" "
		    "exists already (rotate its secret with `mgrok token "
		    "rotate %s`)\n",
		    path, e.node->start_mark.line + 1, name, name);
		goto out;
	}
	new_secret(secret);
	hex_sha256(secret, hex);
	if (edit_add(&t, name, clear ? "secret" : "secret_sha256",
	        clear ? secret : hex, expires, &ed, err, sizeof(err)) != 0) {
		fprintf(stderr, "mgrok: token add: %s\n", err);
		goto out;
	}
	nbuf = apply_edit(&t, &ed, &nlen);
	want[0] = clear ? secret : hex;
	if (verify(path, nbuf, nlen, name, want, 1) != 0 ||
	    write_checked(path, nbuf, nlen) != 0)
		goto out;
	printf("%s\n", secret);
	fflush(stdout);
	fprintf(stderr,
	    "mgrok: token \"%s\" added to %s (%s); its secret is "
	    "above, shown only now.\n"
	    "  an agent uses it as: mgrok tcp 22 --server HOST:PORT --token "
	    "SECRET\n"
	    "  (or MGROK_TOKEN=SECRET); a server that watches %s reloads it "
	    "by itself\n",
	    name, path, clear ? "in clear" : "as its SHA-256", path);
	rc = 0;
out:
	memset(secret, 0, sizeof(secret));
	if (nbuf) {
		memset(nbuf, 0, nlen);
		free(nbuf);
	}
	free(ed.text);
	tf_free(&t);
	return rc;
}

/* ------------------------------------------------------------ rotate */

/* Add the pair key: value to the entry's mapping, after its last pair. */
static int
edit_add_pair(struct tfile *t, const yaml_node_t *map, const char *key,
    const char *value, struct tedit *ed)
{
	struct sbuf s = {0};
	yaml_node_t *k0;

	if (map->data.mapping.style == YAML_FLOW_MAPPING_STYLE) {
		size_t end = tf_off(t, map->end_mark);
		if (end == 0 || t->buf[end - 1] != '}')
			return -1;
		ed->a = ed->b = end - 1;
		sb_printf(&s, ", %s: ", key);
		yaml_quoted(&s, value);
		ed->text = s.p;
		return 0;
	}
	k0 =
	    yaml_document_get_node(&t->doc, map->data.mapping.pairs.start->key);
	ed->a = ed->b = after_line(t, last_end(t, map));
	lines_at(t, ed->a, &s);
	sb_printf(&s, "%*s%s: ", (int)k0->start_mark.column, "", key);
	yaml_quoted(&s, value);
	sb_str(&s, t->nl);
	ed->text = s.p;
	return 0;
}

/* key: OLD becomes key: [OLD, NEW] (OLD's text kept as written) */
static void
edit_pair_list(struct tfile *t, const yaml_node_t *kn, const yaml_node_t *v,
    const char *value, struct tedit *ed)
{
	struct sbuf s = {0};
	const yaml_node_t *old = v;

	if (v->type == YAML_SEQUENCE_NODE) /* a list of one */
		old = yaml_document_get_node(
		    &t->doc, *v->data.sequence.items.start);
	ed->a = tf_off(t, kn->end_mark);
	ed->b = last_end(t, v);
	sb_str(&s, ": [");
	sb_add(&s, t->buf + tf_off(t, old->start_mark),
	    tf_off(t, old->end_mark) - tf_off(t, old->start_mark));
	sb_str(&s, ", ");
	yaml_quoted(&s, value);
	sb_str(&s, "]");
	ed->text = s.p;
}

/* key: [OLD, NEW] becomes key: NEW */
static void
edit_pair_keep_last(struct tfile *t, const yaml_node_t *kn,
    const yaml_node_t *v, struct tedit *ed)
{
	struct sbuf s = {0};
	const yaml_node_t *nw =
	    yaml_document_get_node(&t->doc, *(v->data.sequence.items.top - 1));

	ed->a = tf_off(t, kn->end_mark);
	ed->b = last_end(t, v);
	sb_str(&s, ": ");
	sb_add(&s, t->buf + tf_off(t, nw->start_mark),
	    tf_off(t, nw->end_mark) - tf_off(t, nw->start_mark));
	ed->text = s.p;
}

/* Remove the pair whose key is kn from map (not its only pair). */
static void
edit_drop_pair(struct tfile *t, const yaml_node_t *map, const yaml_node_t *kn,
    struct tedit *ed)
{
	yaml_node_pair_t *p = map->data.mapping.pairs.start, *q;

	while (yaml_document_get_node(&t->doc, p->key) != kn)
		p++;
	q = p + 1;
	ed->text = xstrdup("");
	if (q < map->data.mapping.pairs.top) {
		/* up to the next key: it takes this one's place */
		ed->a = tf_off(t, kn->start_mark);
		ed->b = tf_off(
		    t, yaml_document_get_node(&t->doc, q->key)->start_mark);
		return;
	}
	/* the last pair: from the end of the one before */
	if (map->data.mapping.style == YAML_FLOW_MAPPING_STYLE) {
		ed->a = last_end(
		    t, yaml_document_get_node(&t->doc, (p - 1)->value));
		ed->b = last_end(t, yaml_document_get_node(&t->doc, p->value));
	} else {
		ed->a = line_end(t, last_end(t, yaml_document_get_node(
		                                    &t->doc, (p - 1)->value)));
		ed->b = line_end(
		    t, last_end(t, yaml_document_get_node(&t->doc, p->value)));
	}
}

static int
token_rotate(const char *path, const char *name, int clear, int finish)
{
	struct tfile t;
	struct tentry e;
	struct tedit ed = {0};
	char err[600], secret[64] = "", hex[TOK_HEX_LEN + 1], *nbuf = NULL;
	const char *want[2], *old[2];
	size_t nlen = 0;
	int rc = 1, nwant;

	if (tf_read(&t, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "mgrok: token rotate: %s\n", err);
		tf_free(&t);
		return 1;
	}
	if (tf_editable(&t, "rotate") != 0)
		goto out;
	if (!find_entry(&t, name, &e)) {
		fprintf(stderr,
		    "mgrok: token rotate: %s: no token named \"%s\" "
		    "in tokens:\n",
		    path, name);
		goto out;
	}
	if (e.nclear + e.nhashed < 1 || e.nclear + e.nhashed > 2 ||
	    entry_values(&t, &e, old) != e.nclear + e.nhashed) {
		fprintf(stderr,
		    "mgrok: token rotate: %s:%zu: \"%s\" has no "
		    "secret this command can rotate\n",
		    path, e.node->start_mark.line + 1, name);
		goto out;
	}
	if (finish) {
		if (e.nclear + e.nhashed != 2) {
			fprintf(stderr,
			    "mgrok: token rotate: %s:%zu: \"%s\" is "
			    "not rotating (one secret): nothing to finish\n",
			    path, e.node->start_mark.line + 1, name);
			goto out;
		}
		if (e.secret && e.hashed) {
			/* one of each: the first in the file is the old */
			int hashed_first = e.hashed->start_mark.index <
			                   e.secret->start_mark.index;
			edit_drop_pair(&t, e.node,
			    hashed_first ? e.hashed_key : e.secret_key, &ed);
		} else {
			edit_pair_keep_last(&t,
			    e.secret ? e.secret_key : e.hashed_key,
			    e.secret ? e.secret : e.hashed, &ed);
		}
		want[0] = old[1];
		nwant = 1;
	} else {
		if (e.nclear + e.nhashed == 2) {
			fprintf(stderr,
			    "mgrok: token rotate: %s:%zu: \"%s\" is "
			    "rotating already (two secrets): end that first "
			    "with `mgrok token rotate %s --finish`\n",
			    path, e.node->start_mark.line + 1, name, name);
			goto out;
		}
		new_secret(secret);
		hex_sha256(secret, hex);
		if (clear && e.secret)
			edit_pair_list(&t, e.secret_key, e.secret, secret, &ed);
		else if (!clear && e.hashed)
			edit_pair_list(&t, e.hashed_key, e.hashed, hex, &ed);
		else if (edit_add_pair(&t, e.node,
		             clear ? "secret" : "secret_sha256",
		             clear ? secret : hex, &ed) != 0) {
			fprintf(stderr,
			    "mgrok: token rotate: %s:%zu: cannot "
			    "find the end of \"%s\"'s entry\n",
			    path, e.node->start_mark.line + 1, name);
			goto out;
		}
		want[0] = old[0];
		want[1] = clear ? secret : hex;
		nwant = 2;
	}
	nbuf = apply_edit(&t, &ed, &nlen);
	if (verify(path, nbuf, nlen, name, want, nwant) != 0 ||
	    write_checked(path, nbuf, nlen) != 0)
		goto out;
	if (finish) {
		fprintf(stderr,
		    "mgrok: token \"%s\": the old secret is removed "
		    "from %s; only the new one works now\n",
		    name, path);
	} else {
		printf("%s\n", secret);
		fflush(stdout);
		fprintf(stderr,
		    "mgrok: token \"%s\": a new secret (above, "
		    "shown only now) is in %s next to the old one; both work "
		    "until\n  `mgrok token rotate %s --finish` removes the "
		    "old one\n",
		    name, path, name);
	}
	rc = 0;
out:
	memset(secret, 0, sizeof(secret));
	if (nbuf) {
		memset(nbuf, 0, nlen);
		free(nbuf);
	}
	free(ed.text);
	tf_free(&t);
	return rc;
}

/* ------------------------------------------------------------ list */

/* the file's text for a terminal: control characters become '?' */
static const char *
printable(const char *v, char *buf, size_t cap)
{
	size_t i;

	for (i = 0; v[i] && i + 1 < cap; i++)
		buf[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? '?' :
		    v[i];
	buf[i] = '\0';
	return buf;
}

/* a node in one line: a, b, c for a list; k: v for a mapping */
static void
compact(struct tfile *t, const yaml_node_t *n, struct sbuf *s, int depth)
{
	if (n == NULL || depth > 4)
		return;
	if (n->type == YAML_SCALAR_NODE) {
		sb_str(s, scalar(n));
	} else if (n->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *ip = n->data.sequence.items.start;
		     ip < n->data.sequence.items.top; ip++) {
			if (ip > n->data.sequence.items.start)
				sb_str(s, ",");
			compact(t, yaml_document_get_node(&t->doc, *ip), s,
			    depth + 1);
		}
	} else if (n->type == YAML_MAPPING_NODE) {
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
		     p < n->data.mapping.pairs.top; p++) {
			if (p > n->data.mapping.pairs.start)
				sb_str(s, depth ? "," : "; ");
			compact(t, yaml_document_get_node(&t->doc, p->key), s,
			    depth + 1);
			sb_str(s, depth ? ":" : " ");
			compact(t, yaml_document_get_node(&t->doc, p->value), s,
			    depth + 1);
		}
	}
}

static int
token_list(const char *path)
{
	struct tfile t;
	char err[600];
	int rc = 1;

	if (tf_read(&t, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "mgrok: token list: %s\n", err);
		tf_free(&t);
		return 1;
	}
	printf("%-20s %-26s %-12s %s\n", "NAME", "KIND", "EXPIRES", "POLICY");
	if (t.tokens == NULL || t.tokens->type != YAML_SEQUENCE_NODE) {
		/* `tokens: SECRET`: one unnamed token */
		if (t.tokens && t.tokens->type == YAML_SCALAR_NODE &&
		    scalar(t.tokens)[0] != '\0' &&
		    !(strcmp(scalar(t.tokens), "~") == 0 ||
		        strcasecmp(scalar(t.tokens), "null") == 0))
			printf("%-20s %-26s %-12s %s\n", "(unnamed)", "clear",
			    "-", "-");
		else
			fprintf(
			    stderr, "mgrok: token list: %s: no tokens\n", path);
		rc = 0;
		goto out;
	}
	for (yaml_node_item_t *ip = t.tokens->data.sequence.items.start;
	     ip < t.tokens->data.sequence.items.top; ip++) {
		yaml_node_t *it = yaml_document_get_node(&t.doc, *ip);
		struct sbuf pol = {0};
		struct tentry e;
		const char *exp = NULL, *kind;
		if (it == NULL)
			continue;
		entry_of(&t, it, &e);
		if (it->type == YAML_MAPPING_NODE) {
			yaml_node_t *a = map_get(&t.doc, it, "allow", NULL);
			yaml_node_t *l = map_get(&t.doc, it, "limits", NULL);
			exp = scalar(map_get(&t.doc, it, "expires", NULL));
			if (a) {
				compact(&t, a, &pol, 0);
			}
			if (l) {
				if (pol.len)
					sb_str(&pol, "; ");
				compact(&t, l, &pol, 0);
			}
		}
		if (e.nclear + e.nhashed == 2)
			kind = e.nhashed == 2  ? "rotating (hashed)"
			       : e.nclear == 2 ? "rotating (clear)"
			                       : "rotating (clear, hashed)";
		else if (e.nclear + e.nhashed == 1)
			kind = e.nhashed ? "hashed" : "clear";
		else
			kind = "(no secret)";
		{
			char nb[TOK_NAME_MAX + 1], xb[64], pb[1024];
			printf("%-20s %-26s %-12s %s\n",
			    e.name ? printable(e.name, nb, sizeof(nb)) :
			    "(unnamed)", kind,
			    exp ? printable(exp, xb, sizeof(xb)) : "-",
			    pol.len ? printable(pol.p, pb, sizeof(pb)) : "-");
		}
		free(pol.p);
	}
	rc = 0;
out:
	tf_free(&t);
	return rc;
}

/* ------------------------------------------------------------ hash */

static int
token_hash(void)
{
	char line[CTRL_TOKEN_MAX + 3], hex[TOK_HEX_LEN + 1];
	size_t n;

	if (isatty(STDIN_FILENO))
		fprintf(stderr, "mgrok: token hash: type the secret and "
		                "Enter (it is echoed)\n");
	if (fgets(line, sizeof(line), stdin) == NULL) {
		fprintf(stderr, "mgrok: token hash: no secret on stdin\n");
		return 1;
	}
	n = strlen(line);
	if (n > 0 && line[n - 1] != '\n' && !feof(stdin)) {
		fprintf(stderr, "mgrok: token hash: a secret is at most 1019 "
		                "bytes\n");
		memset(line, 0, sizeof(line));
		return 1;
	}
	if (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	if (n == 0 || n > CTRL_TOKEN_MAX) {
		fprintf(stderr, "mgrok: token hash: a secret is 1 to 1019 "
		                "bytes\n");
		memset(line, 0, sizeof(line));
		return 1;
	}
	hex_sha256(line, hex);
	memset(line, 0, sizeof(line));
	printf("%s\n", hex);
	return 0;
}

/* ------------------------------------------------------------ main */

int
cli_token(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"clear", no_argument, NULL, 'C'},
	    {"expires", required_argument, NULL, 'e'},
	    {"finish", no_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *sub, *path = NULL, *expires = NULL, *name = NULL;
	int ch, clear = 0, finish = 0;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0) {
		token_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	sub = argv[1];
	if (strcmp(sub, "hash") == 0 && argc == 2)
		return token_hash();
	if (strcmp(sub, "add") != 0 && strcmp(sub, "list") != 0 &&
	    strcmp(sub, "rotate") != 0) {
		fprintf(stderr, "mgrok: token: unknown command \"%s\"\n", sub);
		token_usage(stderr);
		return 2;
	}
	optind = 0; /* glibc: full re-initialisation */
	while ((ch = getopt_long(argc - 1, argv + 1, "c:h", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			clear = 1;
			break;
		case 'e':
			expires = optarg;
			break;
		case 'f':
			finish = 1;
			break;
		case 'h':
			token_usage(stdout);
			return 0;
		default:
			token_usage(stderr);
			return 2;
		}
	}
	if (optind < argc - 1)
		name = argv[1 + optind++];
	if (optind < argc - 1 || (name == NULL) != (strcmp(sub, "list") == 0) ||
	    (expires && strcmp(sub, "add") != 0) ||
	    (finish && strcmp(sub, "rotate") != 0) ||
	    (clear && strcmp(sub, "list") == 0) || (clear && finish)) {
		fprintf(stderr, "mgrok: token %s: unexpected arguments\n", sub);
		token_usage(stderr);
		return 2;
	}
	if (path == NULL)
		path = getenv("MGROK_SERVER_CONFIG");
	if (path == NULL || *path == '\0')
		path = "/etc/mgrok/server.yml";
	if (strcmp(sub, "list") == 0)
		return token_list(path);
	if (strcmp(sub, "add") == 0)
		return token_add(path, name, clear, expires);
	return token_rotate(path, name, clear, finish);
}
