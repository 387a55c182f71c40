/* conf_int.h: the option table and the loader's state, shared by the
 * files of src/conf (opts.c: table and setters; yaml.c: the file;
 * conf.c: flags, checks and the load API; doc.c: help, man, example). */
#ifndef MG_CONF_INT_H
#define MG_CONF_INT_H

#include <stddef.h>

#include "conf/conf.h"

/* where an option applies: the server, or client subcommands */
#define SD_SERVER 0x01u
#define SD_TCP 0x02u
#define SD_UDP 0x04u
#define SD_HTTP 0x08u
#define SD_TLS 0x10u
#define SD_CLIENT 0x20u /* mgrok client --local ... */
#define SD_START 0x40u  /* mgrok start: tunnels from the file */
#define SD_ONE (SD_TCP | SD_UDP | SD_HTTP | SD_TLS)
#define SD_AGENT (SD_ONE | SD_CLIENT | SD_START)

/* option flags */
#define OF_TUNNEL 0x01u  /* per tunnel: a key under tunnels.NAME */
#define OF_SECRET 0x02u  /* ${ENV} and file:PATH; the value never echoed */
#define OF_LIST 0x04u    /* repeatable; a YAML sequence */
#define OF_NOKEY 0x08u   /* a flag without a key (--config, --help) */
#define OF_NOFLAG 0x10u  /* a key without a flag (tunnel type, local) */
#define OF_FILE 0x20u    /* a path: ~ expanded, must be readable */
#define OF_KEYFILE 0x40u /* a path to a secret: warn if others can read */
#define OF_HIDDEN 0x80u  /* accepted but not in this command's --help */

/* the lists that a first flag replaces (--token and --token-file are
 * one list, the server's tokens) */
enum { LG_NONE, LG_TOKENS, LG_ALLOW, LG_LOCAL, LG_SERVER, LG_N };

enum conf_type {
	CT_BOOL = 1, /* int at off */
	CT_UINT,     /* unsigned at off, min..max */
	CT_PORT,     /* uint16_t at off, 1..65535 */
	CT_STRP,     /* char * at off */
	CT_BUF,      /* char[max] at off */
	CT_FN,       /* fn does it */
};

struct ld;
struct conf_tun;

struct conf_opt {
	const char *flag;  /* without "--" */
	const char *key;   /* the YAML key */
	const char *alias; /* the original mgrok's key for it, or NULL */
	unsigned sides;    /* SD_*: in whose --help and man section */
	unsigned flags;    /* OF_* */
	enum conf_type type;
	unsigned char list; /* LG_*: a list a first flag replaces */
	size_t off;
	unsigned long min, max;
	/* CT_FN: set from the value v (already ${ENV}/file: resolved);
	 * 0, or -1 with the reason in why */
	int (*fn)(struct ld *L, const char *v, char *why, size_t wl);
	const char *arg;   /* the value's name in --help, NULL for a bool */
	const char *def;   /* the default, as text, or NULL */
	const char *help;  /* '\n' separates lines */
	const char *example; /* a value for `mgrok config example`, or NULL */
};

extern const struct conf_opt conf_opts[];
extern const size_t conf_nopts;

/* where a value came from: a flag, or the file at line:col (1-based) */
struct conf_where {
	int set;           /* 0: the default */
	int in_file;
	int line, col;
	char key[600];     /* "tunnels.web.subdomain" */
};

/* a tunnel, from the file or from a subcommand's argument and flags */
struct conf_tun {
	struct local_spec spec;
	char key[256];           /* its key in tunnels: (NAME) */
	int have_type, have_local, have_remote, have_name;
	int have_local_ip, have_local_port;
	char local_ip[256];
	struct conf_where where; /* its name's place in the file */
	struct conf_where w_remote;
	/* the health check: its type given (even off), another of its
	 * options given, where it was set (for check_health's errors) */
	int have_health_type, have_health_opt, have_health_timeout;
	struct conf_where w_health;
};

struct ld {
	int server;                /* 1: server_conf, 0: client_conf */
	unsigned cmd;              /* SD_* of argv[0] */
	const char *cmdname;
	struct server_conf *s;
	struct client_conf *c;
	struct conf_diag *d;
	const char *file;          /* the config file's name, or NULL */
	struct conf_where cur;     /* the value being set */
	struct conf_where *org;    /* [conf_nopts]: the last setting's place */
	unsigned char list_flagged[LG_N]; /* a flag replaced the file's
					     list already */
	int server_set;            /* the default server was replaced */
	struct conf_tun *tun;      /* what per-tunnel setters write into */
	struct conf_tun flagtun;   /* the subcommand's tunnel */
	struct conf_tun *tuns;     /* the file's tunnels */
	size_t ntuns, captuns;
	int flag_errors;           /* errors while reading argv */
	char bind_port[16];        /* the original mgrok's bind_port */
	const char *cur_token_name; /* `tokens: [{name: ...}]` */
	/* the tokens: entry being read (1-based; 0 = not an entry) and its
	 * policy (owned by s->policies, or NULL); tok_entry[i]: the entry
	 * of s->tokens[i], so that an entry's two secrets may share its
	 * name */
	unsigned cur_token_entry, ntoken_entries;
	struct conf_policy *cur_policy;
	unsigned tok_entry[CONF_MAX_TOKENS];
	int check_only;            /* `config check`: tunnels of any cmd */
};

/* diagnostics */
void conf_diag_add(struct conf_diag *d, int is_error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* ld_bad: an error about the value at L->cur: "--flag: why (got "v")" or
 * "FILE:L:C: key: why (got "v")"; v NULL or "" leaves out the got part */
void ld_bad(struct ld *L, const char *why, const char *v);
/* ld_bad_at: the same at w (a remembered place) */
void ld_bad_at(struct ld *L, const struct conf_where *w, const char *why,
    const char *v);
void ld_warn_at(struct ld *L, const struct conf_where *w, const char *why);
/* ld_name: "--flag" or "FILE:L:C: key" for w into buf */
const char *ld_name(struct ld *L, const struct conf_where *w,
    const char *flag, char *buf, size_t cap);

/* opts.c */
const struct conf_opt *conf_opt_by_key(int server, int tunnel,
    const char *key);
const struct conf_opt *conf_opt_by_flag(int server, const char *flag);
/* conf_opt_set: apply v to o for the loader L (at L->cur); 0 or -1
 * (reported) */
int conf_opt_set(struct ld *L, const struct conf_opt *o, const char *v);
/* conf_opt_nearest: the key of side server (tunnel keys if tunnel) that
 * is nearest to key by edit distance, or NULL when none is close */
const char *conf_opt_nearest(int server, int tunnel, const char *key);
/* conf_flag_nearest: the flag of the side nearest to flag (without the
 * dashes), or NULL */
const char *conf_flag_nearest(int server, const char *flag);
/* conf_word_nearest: the word of words[n] nearest to key by edit
 * distance, or NULL when none is close */
const char *conf_word_nearest(const char *key, const char *const *words,
    size_t n);
int conf_split_hostport(const char *s, char *host, size_t hostcap,
    uint16_t *port, uint16_t default_port, int allow_zero, const char **err);
void conf_server_defaults(struct server_conf *c);
void conf_client_defaults(struct client_conf *c);
/* conf_tok_add: one server token (name may be NULL) */
int conf_tok_add(struct ld *L, const char *t, size_t len, const char *name);
/* conf_tok_add_hashed: one server token known by its SHA-256 only
 * (`secret_sha256:`); 0 or -1 (reported) */
int conf_tok_add_hashed(struct ld *L, const uint8_t hash[CONF_SHA256_LEN],
    const char *name);
/* conf_secret_file: the first line of path (a secret), trimmed, into a
 * malloc'd string; NULL with the reason reported at L->cur */
char *conf_secret_file(struct ld *L, const char *path);
/* conf_expand: ${VAR} of v (and ~/ at the start when tilde), malloc'd;
 * NULL with the reason reported */
char *conf_expand(struct ld *L, const char *v, int tilde);

/* yaml.c: read the file (or buffer) into L; 0, or -1 when it could not be
 * read or parsed at all (reported); problems with keys and values are
 * reported and do not stop the reading */
int conf_yaml_file(struct ld *L, const char *path);
int conf_yaml_buf(struct ld *L, const char *name, const char *buf,
    size_t len);
/* conf_yaml_sniff: 1 when buf looks like a server file, 0 a client one */
int conf_yaml_sniff(const char *buf, size_t len);

#endif
