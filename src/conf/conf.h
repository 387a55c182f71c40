/* conf.h: server and client settings from one option table: defaults, a
 * YAML config file, command-line flags (in that order of precedence, the
 * last wins), --help, the man page and `mgrok config`. */
#ifndef MG_CONF_H
#define MG_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mux/mux.h"
#include "util/acl.h"
#include "util/log.h"

#define CONF_MAX_TOKENS 16
#define CONF_MAX_LOCALS 64
#define CONF_MAX_ALLOW 64
#define CONF_MAX_CERTS 256  /* certs: entries */
#define CONF_SHA256_LEN 32

struct conf_policy;

struct server_conf {
	char addr[300];          /* control listener host:port */
	char bind_addr[256];     /* public listeners' host; "" = all */
	char public_host[256];   /* host in URLs; "" = derived */
	char cluster[512];       /* redis://... of the cluster's state; "" =
				    a single server (docs/internals/cluster.md) */
	char node_id[64];        /* this node's id in the cluster */
	char node_addr[300];     /* where other nodes reach it (HOST:PORT) */
	char cluster_secret[256]; /* node links' shared secret ("" none) */
	uint16_t start_port, end_port;
	/* tokens[i]: an accepted secret; NULL for an entry stored as a hash
	 * (`secret_sha256:`), of which only token_sha256[i] is known */
	char *tokens[CONF_MAX_TOKENS];
	/* token_sha256[i]: SHA-256 of the secret, for every token (computed
	 * for a secret in clear): the TOKEN method compares it, the HMAC
	 * method's hashed key (capability 3) is it, and the token's derived
	 * identity comes from it */
	uint8_t token_sha256[CONF_MAX_TOKENS][CONF_SHA256_LEN];
	/* token_names[i] names tokens[i] (`tokens: [{name, secret}]` in the
	 * file); NULL for an unnamed token (--token, auth_token, a token
	 * file, MGROK_TOKEN) */
	char *token_names[CONF_MAX_TOKENS];
	/* token_policy[i]: tokens[i]'s policy (conf/policy.h), borrowed
	 * from policies[]; NULL = unrestricted. Both secrets of a rotating
	 * entry (`secret: [old, new]`) share the entry's name and policy. */
	struct conf_policy *token_policy[CONF_MAX_TOKENS];
	size_t ntokens;
	/* every policy of the file (the tokens: entries' that have any,
	 * then certs:), owned; see policy_for_token, policy_for_subject */
	struct conf_policy **policies;
	size_t npolicies;
	int no_plain_token;
	unsigned max_sessions;
	unsigned max_proxies;    /* per session */
	unsigned lease_grace_s;
	unsigned heartbeat_s;
	unsigned drain_s;
	unsigned max_pending;    /* public conns waiting per lease */
	unsigned udp_idle_s;     /* a UDP flow idle this long is closed */
	unsigned udp_max_flows;  /* per UDP proxy */
	unsigned http_idle_s;    /* an idle keep-alive connection is closed */
	unsigned http_max_conns; /* public HTTP(S) connections in all */
	unsigned http_max_conns_tunnel; /* ... routed to one tunnel */
	unsigned max_handshakes; /* TLS handshakes and SNI peeks at once */
	int tls;
	char *tls_cert, *tls_key, *tls_client_ca;
	int tls_client_auth;     /* 0 none, 1 optional, 2 require */
	char domain[256];        /* subdomains of HTTP tunnels live here */
	char http_addr[300], https_addr[300];
	char *https_cert, *https_key;
	char *https_cert_dir;
	struct acl_rule stream_allow[CONF_MAX_ALLOW]; /* the stream proxy */
	/* load balancers in front of the public ports: they send a PROXY
	 * protocol header; nobody else may connect (TCP tunnels) */
	struct acl_rule trusted[CONF_MAX_ALLOW];
	size_t ntrusted;
	size_t nstream_allow;
	unsigned busy_poll_us; /* --busy-poll: 0 = sleep at once (util/loop.h) */
	enum log_level log_level;
	struct mux_config mux;
	char *config_file;       /* the YAML file read, or NULL (to watch it) */
	/* the admin listener (API, /metrics, dashboard); "" = off */
	char admin_addr[300];
	char *admin_token;       /* Bearer token, or NULL */
	char *admin_cert, *admin_key; /* HTTPS for the admin listener */
	char *admin_client_ca;   /* require client certificates (mTLS) */
	unsigned metrics_max_series; /* per family with open labels */
};

/* A tunnel's health check, run by the agent (client/health.h); type
 * HEALTH_OFF: none. The times are milliseconds. */
enum health_type {
	HEALTH_OFF = 0,
	HEALTH_TCP,              /* connected = up */
	HEALTH_HTTP,             /* GET path; a status within expect = up */
	HEALTH_TLS,              /* a TLS handshake done = up */
};
#define HEALTH_MAX_RANGES 8
struct health_spec {
	uint8_t type;            /* enum health_type */
	char path[256];          /* HTTP: the request target ("/") */
	char expect[64];         /* HTTP: as written ("200-399") */
	uint16_t expect_lo[HEALTH_MAX_RANGES], expect_hi[HEALTH_MAX_RANGES];
	unsigned nexpect;        /* ranges in expect_lo/hi */
	unsigned interval_ms, timeout_ms; /* timeout < interval */
	unsigned rise, fall;     /* 1..100 results in a row */
};
#define HEALTH_DEF_INTERVAL_MS 5000
#define HEALTH_DEF_TIMEOUT_MS 2000
#define HEALTH_DEF_RISE 2
#define HEALTH_DEF_FALL 3
#define HEALTH_DEF_EXPECT "200-399"

struct local_spec {
	uint8_t type;            /* enum proxy_type */
	char subdomain[64];      /* HTTP */
	char hostname[256];      /* HTTP, TLS: a custom domain */
	char basic_auth[256];    /* HTTP: "user:pass" */
	int host_rewrite;        /* HTTP: send Host: localhost:PORT */
	int proxy_protocol;      /* TCP, TLS: a PROXY header (1: v1, 2: v2)
				    to the local service before the bytes */
	char allow_cidr[1024];   /* who may visit: "CIDR,CIDR" (the server
				    checks; within the token's own lists) */
	char deny_cidr[1024];    /* who may not, though allowed (0x08) */
	char group[64];          /* a load-balancing group (0x05) ... */
	char group_key[256];     /* ... its key (0x09) */
	char group_strategy[80]; /* ... how members are chosen (0x0A) */
	unsigned group_weight;   /* this member's weight (0x0B), 0 = 1 */
	uint64_t bandwidth;      /* bytes per second each way, 0 = none
				    (RegisterEx 0x04; at most 2^32-1) */
	char host[256];
	uint16_t port;
	uint16_t remote_port;
	char name[256];
	struct health_spec health; /* TCP, HTTP, TLS: the agent's check */
};

#define CONF_MAX_SERVERS 8

struct client_conf {
	char server[1024];       /* host:port, or several: "a:9000,b:9000"
				    (tried in turn; CONF_MAX_SERVERS) */
	char proxy[1024];        /* reach it through this proxy URL ("none":
				    not even HTTPS_PROXY's); "" = the
				    environment's, as curl reads it */
	char *token;
	struct local_spec locals[CONF_MAX_LOCALS];
	size_t nlocals;
	int no_reconnect;
	unsigned reconnect_attempts; /* 0 = forever */
	unsigned udp_idle_s;
	int tls;
	char *tls_ca, *tls_cert, *tls_key, *tls_server_name, *tls_pin;
	uint8_t client_id[16];
	int have_client_id;
	unsigned busy_poll_us; /* --busy-poll: 0 = sleep at once (util/loop.h) */
	enum log_level log_level;
	struct mux_config mux;
	char *config_file;       /* the YAML file read, or NULL (to watch it) */
	char start_select[512];  /* mgrok start: "*", or the names asked for */
	/* the inspector: "" = off; inspect_addr_set: given by the user (else
	 * the default 127.0.0.1:4040 falls back to the next free port) */
	char inspect_addr[300];
	int inspect_addr_set;
	int inspect_capture_secrets; /* keep Authorization/Cookie values */
	size_t inspect_body_max; /* bytes of each body kept */
	size_t inspect_max_bytes; /* bytes of all captures kept */
	unsigned inspect_max_requests; /* requests kept */
	unsigned inspect_max_conns; /* connection records kept */
	unsigned metrics_max_series; /* per family with open labels */
};

/*
 * Diagnostics of a load: every error (and warning) found, in order, each
 * one line without the "mgrok: " prefix, e.g.
 *   "--end-port: port must be 1-65535 (got \"70000\")"
 *   "mgrok.yml:4:3: tunnels.web.subdomian: unknown key (did you mean
 *    subdomain?)"
 * Filled by the conf_*_load functions; the caller prints them. Bounded
 * (CONF_DIAG_MAX messages; more are counted in `dropped`).
 */
#define CONF_DIAG_MAX 200
struct conf_diag_msg {
	int is_error;            /* 0: a warning */
	char *text;
};
struct conf_diag {
	struct conf_diag_msg *v;
	size_t n, cap;
	size_t nerrors, dropped;
};

/* conf_diag_init: an empty set; conf_diag_free releases the texts (and
 * leaves it empty, ready for another load). */
void conf_diag_init(struct conf_diag *d);
void conf_diag_free(struct conf_diag *d);

/*
 * conf_server_load: a fresh *out from the defaults, then the config file
 * (--config FILE in argv, else $MGROK_SERVER_CONFIG, else
 * /etc/mgrok/server.yml when it exists), then the flags of argv (argv[0]
 * is "server"; a flag overrides the file's key; a repeatable flag given
 * once replaces the file's list). Never prints: every problem goes to d
 * (all of them, not only the first). Returns 0, 1 when --help was asked
 * for, or MG_EINVAL (d->nerrors > 0). *out is always initialized: free it
 * with conf_server_free whatever the result. Callable again at reload
 * time with the same argv (it re-reads the file); getopt_long may permute
 * argv, which does not change its meaning.
 */
/* conf_parse_bytes: a size: "65536", "64K"/"64KiB", "10M"/"10MiB",
 * "1G"/"1GiB" (binary), "10KB"/"10MB"/"1GB" (decimal). 0, or -1. */
int conf_parse_bytes(const char *v, uint64_t *out);

int conf_server_load(struct server_conf *out, int argc, char **argv,
    struct conf_diag *d);
void conf_server_free(struct server_conf *c);

/*
 * conf_client_load: the same for argv[0] = tcp, udp, http, tls, client
 * or start. The client's default file is $MGROK_CONFIG, else
 * $XDG_CONFIG_HOME/mgrok/mgrok.yml (~/.config/mgrok/mgrok.yml). `start
 * [NAME...]` takes the file's tunnels (all, or the named ones); the other
 * commands take their tunnel from argv and only the settings from the
 * file.
 */
int conf_client_load(struct client_conf *out, int argc, char **argv,
    struct conf_diag *d);
void conf_client_free(struct client_conf *c);

/* conf_server_parse, conf_client_parse: conf_*_load that prints the
 * diagnostics on stderr ("mgrok: ..."); for tests and old callers. */
int conf_server_parse(struct server_conf *c, int argc, char **argv);
int conf_client_parse(struct client_conf *c, int argc, char **argv);

/*
 * conf_check_file: what `mgrok config check` does: load path as a server
 * file (server 1), a client file (server 0), or whichever its top-level
 * keys say (server -1: more keys only a server has than keys only a client
 * has make it a server file). Nothing but the file counts (no flags, no
 * MGROK_TOKEN needed). Returns 0 or MG_EINVAL, problems in d; *is_server
 * (may be NULL) says which side it was read as. path "-" is stdin.
 */
int conf_check_file(const char *path, int server, int *is_server,
    struct conf_diag *d);

/* conf_check_buf: the same over a buffer named name (for the fuzzer). */
int conf_check_buf(const char *name, const char *buf, size_t len,
    int server, struct conf_diag *d);

/* conf_server_usage, conf_client_usage: the options of `mgrok server` and
 * of `mgrok CMD` (only those that apply to CMD), to f, from the table. */
void conf_server_usage(FILE *f);
void conf_client_usage(FILE *f, const char *cmd);

/* conf_man: the man page mgrok(1) in roff, from the same table. */
void conf_man(FILE *f, const char *version);

/* conf_example: a complete, commented example file (server 1: for
 * `mgrok server`, 0: for `mgrok start`) that passes conf_check_file. */
void conf_example(FILE *f, int server);

/* conf_parse_local: "[tcp:]HOST:PORT" or "PORT" into *l; 0 or MG_EINVAL
 * with a reason in *err. */
int conf_parse_local(const char *s, struct local_spec *l, const char **err);

/* conf_parse_duration_ms: "5s", "500ms", "1m", "0.2s" or plain seconds
 * ("5", "0.5") into milliseconds (whole ms, at most one hour); 0, or
 * MG_EINVAL. */
int conf_parse_duration_ms(const char *v, unsigned *ms);

/* conf_parse_expect: HTTP statuses a health check accepts: a code
 * ("200"), a range ("200-399") or a comma list of them ("200,204,300-
 * 302"), codes 100..599, at most HEALTH_MAX_RANGES items, into h's
 * expect (the text), expect_lo/hi and nexpect. 0, or MG_EINVAL with the
 * reason in *err (static); h is left as it was then. */
int conf_parse_expect(const char *v, struct health_spec *h,
    const char **err);

/* conf_health_defaults: fill h's unset (zero) fields with the defaults:
 * path "/", expect 200-399, every 5 s, timeout 2 s, rise 2, fall 3. */
void conf_health_defaults(struct health_spec *h);

/* conf_hex_id: 32 hex characters to 16 bytes; 0 or MG_EINVAL. */
int conf_hex_id(const char *s, uint8_t out[16]);

/* conf_hex_sha256: 64 hex characters (either case) to 32 bytes; 0 or
 * MG_EINVAL. */
int conf_hex_sha256(const char *s, uint8_t out[CONF_SHA256_LEN]);

#endif
