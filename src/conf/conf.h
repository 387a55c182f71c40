/* conf.h: server and client settings, and their command-line parsing. */
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

struct server_conf {
	char addr[300];          /* control listener host:port */
	char bind_addr[256];     /* public listeners' host; "" = all */
	char public_host[256];   /* host in URLs; "" = derived */
	uint16_t start_port, end_port;
	char *tokens[CONF_MAX_TOKENS];
	size_t ntokens;
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
	size_t nstream_allow;
	unsigned busy_poll_us; /* --busy-poll: 0 = sleep at once (util/loop.h) */
	enum log_level log_level;
	struct mux_config mux;
};

struct local_spec {
	uint8_t type;            /* enum proxy_type */
	char subdomain[64];      /* HTTP */
	char hostname[256];      /* HTTP, TLS: a custom domain */
	char basic_auth[256];    /* HTTP: "user:pass" */
	int host_rewrite;        /* HTTP: send Host: localhost:PORT */
	char host[256];
	uint16_t port;
	uint16_t remote_port;
	char name[256];
};

struct client_conf {
	char server[300];        /* host:port */
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
};

/*
 * conf_server_parse: defaults, then argv (argv[0] is "server"). Returns 0,
 * 1 when --help was asked for (print conf_server_usage), or MG_EINVAL after
 * printing "mgrok: ..." on stderr naming the bad option. Free with
 * conf_server_free.
 */
int conf_server_parse(struct server_conf *c, int argc, char **argv);
void conf_server_free(struct server_conf *c);

/* conf_client_parse: argv[0] is the subcommand (tcp, udp, http, tls or
 * client); the same return values as conf_server_parse (1: print
 * conf_client_usage). */
int conf_client_parse(struct client_conf *c, int argc, char **argv);
void conf_client_free(struct client_conf *c);

/* conf_server_usage, conf_client_usage: the options of `mgrok server` and
 * of `mgrok CMD` (only those that apply to CMD), to f. */
void conf_server_usage(FILE *f);
void conf_client_usage(FILE *f, const char *cmd);

/* conf_parse_local: "[tcp:]HOST:PORT" or "PORT" into *l; 0 or MG_EINVAL
 * with a reason in *err. */
int conf_parse_local(const char *s, struct local_spec *l, const char **err);

/* conf_hex_id: 32 hex characters to 16 bytes; 0 or MG_EINVAL. */
int conf_hex_id(const char *s, uint8_t out[16]);

#endif
