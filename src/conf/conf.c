/* conf.c: command-line options for `mgrok server`, `mgrok tcp`, `mgrok
 * client`. Every error names the option and what was wrong with it. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "proto/ctrl.h"
#include "util/err.h"
#include "util/net.h"
#include "util/xmalloc.h"

static int
bad(const char *opt, const char *why, const char *val)
{
	if (val && *val)
		fprintf(stderr, "mgrok: %s: %s (got \"%s\")\n", opt, why, val);
	else
		fprintf(stderr, "mgrok: %s: %s\n", opt, why);
	return MG_EINVAL;
}

static int
parse_uint(const char *opt, const char *s, unsigned long min,
    unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (*s == '\0' || *s == '-' || *end != '\0' || errno || v < min ||
	    v > max) {
		char why[96];
		snprintf(why, sizeof(why), "expected a number from %lu to %lu",
		    min, max);
		return bad(opt, why, s);
	}
	*out = v;
	return 0;
}

#define PORT_RANGE_MSG "port must be 1-65535"

static int
parse_port(const char *opt, const char *s, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (*s == '\0' || !isdigit((unsigned char)*s) || *end != '\0' ||
	    errno || v < 1 || v > 65535)
		return bad(opt, PORT_RANGE_MSG, s);
	*out = v;
	return 0;
}

/*
 * "host:port", "[v6]:port", ":port", "port" or, with default_port != 0,
 * "host" alone. allow_zero: port 0 (a listener on any free port). 0, or
 * MG_EINVAL with the reason in *err (static text); host may come back
 * empty.
 */
static int
split_hostport(const char *s, char *host, size_t hostcap, uint16_t *port,
    uint16_t default_port, int allow_zero, const char **err)
{
	const char *colon = strrchr(s, ':'), *rb = strchr(s, ']');
	int digits = *s != '\0';

	for (const char *p = s; *p; p++)
		digits &= isdigit((unsigned char)*p) != 0;
	if (default_port && !digits && (colon == NULL ||
	    (s[0] == '[' && rb && rb[1] == '\0'))) {
		/* a host without a port */
		size_t hl = s[0] == '[' ? (size_t)(rb - s - 1) : strlen(s);
		if (hl >= hostcap) {
			*err = "host name too long";
			return MG_EINVAL;
		}
		memcpy(host, s[0] == '[' ? s + 1 : s, hl);
		host[hl] = '\0';
		*port = default_port;
		return 0;
	}
	if (net_split_hostport(s, host, hostcap, port, err) != 0) {
		if (strstr(*err, "port must be"))
			*err = allow_zero ? PORT_RANGE_MSG " (0: any free port)" :
			    PORT_RANGE_MSG;
		return MG_EINVAL;
	}
	if (*port == 0 && !allow_zero) {
		*err = PORT_RANGE_MSG;
		return MG_EINVAL;
	}
	return 0;
}

/* A file that a later step reads: say now, naming the option, when it
 * cannot be read (a TLS library's message would name another option). */
static int
check_readable(const char *opt, const char *path)
{
	FILE *f;

	if (path == NULL)
		return 0;
	if ((f = fopen(path, "r")) == NULL) {
		fprintf(stderr, "mgrok: %s %s: %s\n", opt, path,
		    strerror(errno));
		return MG_EINVAL;
	}
	fclose(f);
	return 0;
}

static int
add_token(char **tokens, size_t *n, const char *opt, const char *t,
    size_t len)
{
	if (len == 0 || len > CTRL_TOKEN_MAX)
		return bad(opt, "a token must be 1 to 1019 bytes", "");
	if (*n >= CONF_MAX_TOKENS)
		return bad(opt, "too many tokens (at most 16)", "");
	tokens[(*n)++] = xstrndup(t, len);
	return 0;
}

static int
read_token_file(struct server_conf *c, const char *path)
{
	char line[1100];
	FILE *f = fopen(path, "r");
	int rc = 0;

	if (f == NULL) {
		fprintf(stderr, "mgrok: --token-file: cannot open %s: %s\n",
		    path, strerror(errno));
		return MG_EINVAL;
	}
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		/* editors leave CR, spaces and tabs around a line: a token
		 * never starts or ends with white space */
		char *t = line;
		size_t len = strlen(line);
		while (len > 0 && isspace((unsigned char)t[len - 1]))
			len--;
		while (len > 0 && isspace((unsigned char)*t)) {
			t++;
			len--;
		}
		if (len == 0 || t[0] == '#')
			continue;
		rc = add_token(c->tokens, &c->ntokens, "--token-file", t,
		    len);
	}
	fclose(f);
	return rc;
}

void
conf_server_usage(FILE *f)
{
	fputs("usage: mgrok server [options]\n"
	      "  --addr HOST:PORT          control listener (default :9000)\n"
	      "  --start-port N            first public port (default 10000)\n"
	      "  --end-port N              last public port (default 65535)\n"
	      "  --token T                 accepted token (repeatable)\n"
	      "  --token-file F            tokens, one per line\n"
	      "  --no-plain-token          refuse the legacy TOKEN method\n"
	      "  --bind-addr HOST          address of public listeners\n"
	      "  --public-host HOST        host name shown in URLs\n"
	      "  --max-sessions N          (default 1000)\n"
	      "  --max-streams-per-session N (default 10000)\n"
	      "  --max-proxies N           per session (default 64)\n"
	      "  --lease-grace S           keep ports of a lost client (30)\n"
	      "  --heartbeat S             heartbeat interval (10)\n"
	      "  --drain-timeout S         shutdown drain deadline (10)\n"
	      "  --stream-window BYTES     largest per-stream receive window (8 MiB);\n"
	      "                            windows start at 1 MiB and grow\n"
	      "  --udp-idle-timeout S      close idle UDP flows (60)\n"
	      "  --udp-max-flows N         flows per UDP proxy (1024)\n"
	      "  --http-idle-timeout S     close idle HTTP keep-alive (60)\n"
	      "  --http-max-conns N        public HTTP(S) connections (10000)\n"
	      "  --http-max-conns-per-tunnel N  per HTTP tunnel (1000)\n"
	      "  --max-handshakes N        TLS handshakes and SNI peeks\n"
	      "                            under way at once (1000)\n"
	      "  --tls                     TLS on the control port\n"
	      "  --tls-cert F, --tls-key F the server's certificate and key\n"
	      "  --tls-client-ca F         CA for client certificates (mTLS)\n"
	      "  --tls-client-auth M       require (default) or optional\n"
	      "  --domain D                subdomains of HTTP tunnels: *.D\n"
	      "  --http-addr HOST:PORT     HTTP listener for HTTP tunnels\n"
	      "  --https-addr HOST:PORT    HTTPS listener (TLS tunnels by SNI)\n"
	      "  --https-cert F, --https-key F  certificate for HTTPS (e.g. "
	      "*.D)\n"
	      "  --https-cert-dir DIR      NAME.pem + NAME.key per host, by SNI\n"
	      "  --stream-allow RULE       stream proxy destination: host:port,\n"
	      "                            host:*, CIDR:port, CIDR:* (repeat)\n"
	      "  --busy-poll USEC          poll, not sleep, for USEC after I/O\n"
	      "                            (latency for CPU; default 0: off)\n"
	      "  --log-level L             error|warn|info|debug\n",
	    f);
}

enum {
	O_ADDR = 256, O_START, O_END, O_TOKEN, O_TOKFILE, O_NOPLAIN, O_BIND,
	O_PUBHOST, O_MAXSESS, O_MAXSTREAMS, O_MAXPROX, O_GRACE, O_HB,
	O_DRAIN, O_WINDOW, O_LOG, O_HELP, O_SERVER, O_LOCAL, O_REMOTE, O_NAME,
	O_NORECONN, O_ATTEMPTS, O_CLIENTID, O_UDPIDLE, O_UDPFLOWS,
	O_TLS, O_TLSCERT, O_TLSKEY, O_TLSCLIENTCA, O_TLSCLIENTAUTH, O_TLSCA,
	O_TLSNAME, O_TLSPIN, O_ALLOW, O_DOMAIN, O_HTTPADDR, O_HTTPSADDR,
	O_HTTPSCERT, O_HTTPSKEY, O_SUBDOMAIN, O_HOSTNAME, O_BASICAUTH,
	O_HOSTHEADER, O_HTTPSCERTDIR, O_BUSYPOLL, O_HTTPIDLE, O_HTTPMAX,
	O_HTTPMAXTUN, O_MAXHS,
};

static void
set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = xstrdup(v);
}

static int
parse_window(const char *s, struct mux_config *mc)
{
	unsigned long v;

	if (parse_uint("--stream-window", s, 262144, 64UL << 20, &v))
		return MG_EINVAL;
	/* the bound; windows start at 1 MiB (or the bound) and grow to it */
	mc->stream_window_max = (uint32_t)v;
	if (mc->stream_window > v)
		mc->stream_window = (uint32_t)v;
	return 0;
}

int
conf_server_parse(struct server_conf *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "addr", required_argument, NULL, O_ADDR },
		{ "start-port", required_argument, NULL, O_START },
		{ "end-port", required_argument, NULL, O_END },
		{ "token", required_argument, NULL, O_TOKEN },
		{ "token-file", required_argument, NULL, O_TOKFILE },
		{ "no-plain-token", no_argument, NULL, O_NOPLAIN },
		{ "bind-addr", required_argument, NULL, O_BIND },
		{ "public-host", required_argument, NULL, O_PUBHOST },
		{ "max-sessions", required_argument, NULL, O_MAXSESS },
		{ "max-streams-per-session", required_argument, NULL,
		    O_MAXSTREAMS },
		{ "max-proxies", required_argument, NULL, O_MAXPROX },
		{ "lease-grace", required_argument, NULL, O_GRACE },
		{ "heartbeat", required_argument, NULL, O_HB },
		{ "drain-timeout", required_argument, NULL, O_DRAIN },
		{ "stream-window", required_argument, NULL, O_WINDOW },
		{ "udp-idle-timeout", required_argument, NULL, O_UDPIDLE },
		{ "udp-max-flows", required_argument, NULL, O_UDPFLOWS },
		{ "http-idle-timeout", required_argument, NULL, O_HTTPIDLE },
		{ "http-max-conns", required_argument, NULL, O_HTTPMAX },
		{ "http-max-conns-per-tunnel", required_argument, NULL,
		    O_HTTPMAXTUN },
		{ "max-handshakes", required_argument, NULL, O_MAXHS },
		{ "tls", no_argument, NULL, O_TLS },
		{ "tls-cert", required_argument, NULL, O_TLSCERT },
		{ "tls-key", required_argument, NULL, O_TLSKEY },
		{ "tls-client-ca", required_argument, NULL, O_TLSCLIENTCA },
		{ "tls-client-auth", required_argument, NULL, O_TLSCLIENTAUTH },
		{ "stream-allow", required_argument, NULL, O_ALLOW },
		{ "domain", required_argument, NULL, O_DOMAIN },
		{ "http-addr", required_argument, NULL, O_HTTPADDR },
		{ "https-addr", required_argument, NULL, O_HTTPSADDR },
		{ "https-cert", required_argument, NULL, O_HTTPSCERT },
		{ "https-key", required_argument, NULL, O_HTTPSKEY },
		{ "https-cert-dir", required_argument, NULL, O_HTTPSCERTDIR },
		{ "busy-poll", required_argument, NULL, O_BUSYPOLL },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long v;
	int o;
	const char *err;
	char host[256];
	uint16_t port;

	memset(c, 0, sizeof(*c));
	snprintf(c->addr, sizeof(c->addr), ":9000");
	c->start_port = 10000;
	c->end_port = 65535;
	c->max_sessions = 1000;
	c->max_proxies = 64;
	c->lease_grace_s = 30;
	c->heartbeat_s = 10;
	c->drain_s = 10;
	c->max_pending = 64;
	c->udp_idle_s = 60;
	c->udp_max_flows = 1024;
	c->http_idle_s = 60;
	c->http_max_conns = 10000;
	c->http_max_conns_tunnel = 1000;
	c->max_handshakes = 1000;
	c->log_level = LOG_INFO;
	mux_config_default(&c->mux);
	c->mux.max_streams = 10000;
	optind = 1;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (o) {
		case O_ADDR:
			if (split_hostport(optarg, host, sizeof(host), &port,
			    0, 1, &err))
				return bad("--addr", err, optarg);
			snprintf(c->addr, sizeof(c->addr), "%s", optarg);
			break;
		case O_START:
			if (parse_port("--start-port", optarg, &v))
				return MG_EINVAL;
			c->start_port = (uint16_t)v;
			break;
		case O_END:
			if (parse_port("--end-port", optarg, &v))
				return MG_EINVAL;
			c->end_port = (uint16_t)v;
			break;
		case O_TOKEN:
			if (add_token(c->tokens, &c->ntokens, "--token",
			    optarg, strlen(optarg)))
				return MG_EINVAL;
			break;
		case O_TOKFILE:
			if (read_token_file(c, optarg))
				return MG_EINVAL;
			break;
		case O_NOPLAIN:
			c->no_plain_token = 1;
			break;
		case O_BIND:
			snprintf(c->bind_addr, sizeof(c->bind_addr), "%s",
			    optarg);
			break;
		case O_PUBHOST:
			snprintf(c->public_host, sizeof(c->public_host), "%s",
			    optarg);
			break;
		case O_MAXSESS:
			if (parse_uint("--max-sessions", optarg, 1, 1000000,
			    &v))
				return MG_EINVAL;
			c->max_sessions = (unsigned)v;
			break;
		case O_MAXSTREAMS:
			if (parse_uint("--max-streams-per-session", optarg, 1,
			    1000000, &v))
				return MG_EINVAL;
			c->mux.max_streams = (unsigned)v;
			break;
		case O_MAXPROX:
			if (parse_uint("--max-proxies", optarg, 1, 10000, &v))
				return MG_EINVAL;
			c->max_proxies = (unsigned)v;
			break;
		case O_GRACE:
			if (parse_uint("--lease-grace", optarg, 0, 86400, &v))
				return MG_EINVAL;
			c->lease_grace_s = (unsigned)v;
			break;
		case O_HB:
			if (parse_uint("--heartbeat", optarg, 1, 3600, &v))
				return MG_EINVAL;
			c->heartbeat_s = (unsigned)v;
			break;
		case O_DRAIN:
			if (parse_uint("--drain-timeout", optarg, 0, 3600, &v))
				return MG_EINVAL;
			c->drain_s = (unsigned)v;
			break;
		case O_WINDOW:
			if (parse_window(optarg, &c->mux))
				return MG_EINVAL;
			break;
		case O_UDPIDLE:
			if (parse_uint("--udp-idle-timeout", optarg, 1, 86400,
			    &v))
				return MG_EINVAL;
			c->udp_idle_s = (unsigned)v;
			break;
		case O_UDPFLOWS:
			if (parse_uint("--udp-max-flows", optarg, 1, 1000000,
			    &v))
				return MG_EINVAL;
			c->udp_max_flows = (unsigned)v;
			break;
		case O_HTTPIDLE:
			if (parse_uint("--http-idle-timeout", optarg, 1, 86400,
			    &v))
				return MG_EINVAL;
			c->http_idle_s = (unsigned)v;
			break;
		case O_HTTPMAX:
			if (parse_uint("--http-max-conns", optarg, 1, 1000000,
			    &v))
				return MG_EINVAL;
			c->http_max_conns = (unsigned)v;
			break;
		case O_HTTPMAXTUN:
			if (parse_uint("--http-max-conns-per-tunnel", optarg, 1,
			    1000000, &v))
				return MG_EINVAL;
			c->http_max_conns_tunnel = (unsigned)v;
			break;
		case O_MAXHS:
			if (parse_uint("--max-handshakes", optarg, 1, 1000000,
			    &v))
				return MG_EINVAL;
			c->max_handshakes = (unsigned)v;
			break;
		case O_TLS:
			c->tls = 1;
			break;
		case O_TLSCERT:
			set_str(&c->tls_cert, optarg);
			break;
		case O_TLSKEY:
			set_str(&c->tls_key, optarg);
			break;
		case O_TLSCLIENTCA:
			set_str(&c->tls_client_ca, optarg);
			break;
		case O_TLSCLIENTAUTH:
			if (strcmp(optarg, "require") == 0)
				c->tls_client_auth = 2;
			else if (strcmp(optarg, "optional") == 0)
				c->tls_client_auth = 1;
			else
				return bad("--tls-client-auth",
				    "expected require or optional", optarg);
			break;
		case O_DOMAIN:
			if (strlen(optarg) == 0 || strlen(optarg) > 200 ||
			    strchr(optarg, ':') || strchr(optarg, '/'))
				return bad("--domain", "expected a domain name "
				    "such as tunnel.example.com", optarg);
			for (size_t i = 0; optarg[i]; i++)
				c->domain[i] = (char)tolower(
				    (unsigned char)optarg[i]);
			break;
		case O_HTTPADDR:
		case O_HTTPSADDR:
			if (split_hostport(optarg, host, sizeof(host), &port,
			    0, 1, &err))
				return bad(o == O_HTTPADDR ? "--http-addr" :
				    "--https-addr", err, optarg);
			snprintf(o == O_HTTPADDR ? c->http_addr : c->https_addr,
			    sizeof(c->http_addr), "%s", optarg);
			break;
		case O_HTTPSCERT:
			set_str(&c->https_cert, optarg);
			break;
		case O_HTTPSKEY:
			set_str(&c->https_key, optarg);
			break;
		case O_HTTPSCERTDIR:
			set_str(&c->https_cert_dir, optarg);
			break;
		case O_ALLOW:
			if (c->nstream_allow >= CONF_MAX_ALLOW)
				return bad("--stream-allow", "at most 64 rules",
				    optarg);
			if (acl_parse(optarg,
			    &c->stream_allow[c->nstream_allow], &err))
				return bad("--stream-allow", err, optarg);
			c->nstream_allow++;
			break;
		case O_BUSYPOLL:
			if (parse_uint("--busy-poll", optarg, 0, 1000000, &v))
				return MG_EINVAL;
			c->busy_poll_us = (unsigned)v;
			break;
		case O_LOG:
			if (log_level_parse(optarg, &c->log_level))
				return bad("--log-level",
				    "expected error, warn, info or debug",
				    optarg);
			break;
		case O_HELP:
			return 1; /* the front end prints conf_server_usage */
		case ':':
			return bad(argv[optind - 1], "needs a value", "");
		default:
			return bad(argv[optind - 1], "unknown option", "");
		}
	}
	if (optind < argc)
		return bad("server", "unexpected argument", argv[optind]);
	if (c->end_port < c->start_port)
		return bad("--end-port", "must not be below --start-port", "");
	if (check_readable("--tls-cert", c->tls_cert) ||
	    check_readable("--tls-key", c->tls_key) ||
	    check_readable("--tls-client-ca", c->tls_client_ca) ||
	    check_readable("--https-cert", c->https_cert) ||
	    check_readable("--https-key", c->https_key))
		return MG_EINVAL;
	if ((c->tls_cert || c->tls_key || c->tls_client_ca) && !c->tls)
		c->tls = 1; /* certificate options imply --tls */
	if (c->tls && (c->tls_cert == NULL || c->tls_key == NULL))
		return bad("--tls", "needs --tls-cert and --tls-key", "");
	if (c->tls_client_auth && c->tls_client_ca == NULL)
		return bad("--tls-client-auth", "needs --tls-client-ca", "");
	if (c->tls_client_ca && c->tls_client_auth == 0)
		c->tls_client_auth = 2;
	if ((c->https_cert == NULL) != (c->https_key == NULL))
		return bad("--https-cert", "--https-cert and --https-key go "
		    "together", "");
	if ((c->https_cert || c->https_cert_dir) && c->https_addr[0] == '\0')
		return bad(c->https_cert ? "--https-cert" : "--https-cert-dir",
		    "needs --https-addr", "");
	if (c->nstream_allow && c->tls_client_ca == NULL)
		return bad("--stream-allow", "the stream proxy needs mTLS: "
		    "give --tls-cert, --tls-key and --tls-client-ca", "");
	if (c->ntokens == 0) {
		const char *env = getenv("MGROK_TOKEN");
		if (env && *env && add_token(c->tokens, &c->ntokens,
		    "MGROK_TOKEN", env, strlen(env)))
			return MG_EINVAL;
	}
	if (c->ntokens == 0) {
		fprintf(stderr, "mgrok: server: no token given: use --token, "
				"--token-file or MGROK_TOKEN\n");
		return MG_EINVAL;
	}
	c->mux.keepalive_ms = c->heartbeat_s * 1000;
	c->mux.dead_ms = c->heartbeat_s * 3000;
	return 0;
}

void
conf_server_free(struct server_conf *c)
{
	free(c->tls_cert);
	free(c->tls_key);
	free(c->tls_client_ca);
	free(c->https_cert);
	free(c->https_key);
	free(c->https_cert_dir);
	c->https_cert_dir = NULL;
	c->tls_cert = c->tls_key = c->tls_client_ca = NULL;
	c->https_cert = c->https_key = NULL;
	for (size_t i = 0; i < c->ntokens; i++) {
		memset(c->tokens[i], 0, strlen(c->tokens[i]));
		free(c->tokens[i]);
	}
	c->ntokens = 0;
}

int
conf_hex_id(const char *s, uint8_t out[16])
{
	if (strlen(s) != 32)
		return MG_EINVAL;
	for (int i = 0; i < 16; i++) {
		unsigned x;
		if (sscanf(s + 2 * i, "%2x", &x) != 1 ||
		    strchr("0123456789abcdefABCDEF", s[2 * i]) == NULL ||
		    strchr("0123456789abcdefABCDEF", s[2 * i + 1]) == NULL)
			return MG_EINVAL;
		out[i] = (uint8_t)x;
	}
	return 0;
}

/* "scheme://HOST[:PORT][/]" (the ngrok habit) into l: the type from the
 * scheme, the port from the scheme when absent. */
static int
parse_local_url(const char *s, struct local_spec *l, const char **err)
{
	static const struct {
		const char *scheme;
		uint8_t type;
		uint16_t port;
	} schemes[] = {
		{ "http://", PROXY_HTTP, 80 },
		{ "tcp://", PROXY_TCP, 0 },
		{ "udp://", PROXY_UDP, 0 },
		{ "tls://", PROXY_TLS, 0 },
	};
	char hp[300];
	const char *rest = NULL;
	size_t n;

	if (strncmp(s, "https://", 8) == 0) {
		*err = "an https:// local service is not supported: mgrok http "
		       "speaks plain HTTP to it (give http://HOST:PORT), or "
		       "pass TLS through with mgrok tls HOST:PORT --hostname H";
		return MG_EINVAL;
	}
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t sl = strlen(schemes[i].scheme);
		if (strncmp(s, schemes[i].scheme, sl) == 0) {
			rest = s + sl;
			l->type = schemes[i].type;
			l->port = schemes[i].port;
			break;
		}
	}
	if (rest == NULL) {
		*err = "expected http://, tcp://, udp:// or tls:// before "
		       "HOST:PORT";
		return MG_EINVAL;
	}
	n = strcspn(rest, "/");
	if (rest[n] == '/' && rest[n + 1] != '\0') {
		*err = "a path is not forwarded: give scheme://HOST:PORT";
		return MG_EINVAL;
	}
	if (n == 0 || n >= sizeof(hp)) {
		*err = "expected scheme://HOST:PORT";
		return MG_EINVAL;
	}
	memcpy(hp, rest, n);
	hp[n] = '\0';
	if (strchr(hp, '@')) {
		*err = "user:password@ does not belong in the local address "
		       "(use --basic-auth for the public side)";
		return MG_EINVAL;
	}
	if (split_hostport(hp, l->host, sizeof(l->host), &l->port,
	    l->port, 0, err) != 0) {
		if (l->port == 0 && strchr(hp, ':') == NULL)
			*err = "give the port: scheme://HOST:PORT";
		return MG_EINVAL;
	}
	return 0;
}

int
conf_parse_local(const char *s, struct local_spec *l, const char **err)
{
	const char *rest = s;

	memset(l, 0, sizeof(*l));
	l->type = PROXY_TCP;
	if (strstr(s, "://") != NULL) {
		if (parse_local_url(s, l, err) != 0)
			return MG_EINVAL;
	} else {
		if (strncmp(s, "tcp:", 4) == 0) {
			rest = s + 4;
		} else if (strncmp(s, "udp:", 4) == 0) {
			l->type = PROXY_UDP;
			rest = s + 4;
		}
		if (split_hostport(rest, l->host, sizeof(l->host), &l->port, 0,
		    0, err))
			return MG_EINVAL;
	}
	if (l->host[0] == '\0')
		snprintf(l->host, sizeof(l->host), "localhost");
	return 0;
}

/* Each subcommand's help lists only the options that apply to it. */
void
conf_client_usage(FILE *f, const char *cmd)
{
	int is_http = strcmp(cmd, "http") == 0, is_tls = strcmp(cmd, "tls") == 0;
	int is_udp = strcmp(cmd, "udp") == 0, is_tcp = strcmp(cmd, "tcp") == 0;
	int is_multi = strcmp(cmd, "client") == 0;

	if (is_multi)
		fputs("usage: mgrok client --local [tcp:|udp:]HOST:PORT ... "
		      "[options]\n"
		      "  --local SPEC              a local service (repeat): "
		      "[HOST:]PORT,\n"
		      "                            tcp:HOST:PORT, udp:HOST:PORT, "
		      "or a URL:\n"
		      "                            tcp://, udp://, http://HOST:PORT\n",
		    f);
	else
		fprintf(f, "usage: mgrok %s [HOST:]PORT [options]\n"
		    "       mgrok %s %s://HOST%s [options]\n", cmd, cmd, cmd,
		    is_http ? "[:PORT]" : ":PORT");
	fputs("  --server HOST[:PORT]      the mgrok server (localhost:9000; "
	      "port 9000\n"
	      "                            when not given)\n"
	      "  --token T                 auth token (or MGROK_TOKEN)\n",
	    f);
	if (is_tcp || is_udp)
		fputs("  --remote-port N           public port to ask for\n",
		    f);
	if (!is_multi)
		fputs("  --name NAME               tunnel name\n", f);
	if (is_http || is_tls)
		fputs("  --subdomain S             S.<server domain>\n"
		      "  --hostname H              a custom domain\n",
		    f);
	if (is_http)
		fputs("  --basic-auth USER:PASS    password-protect the tunnel\n"
		      "  --host-header rewrite|preserve  send Host: "
		      "localhost:PORT to the\n"
		      "                            local service, or the "
		      "visitor's (default)\n",
		    f);
	if (is_udp || is_multi)
		fputs("  --udp-idle-timeout S      close idle UDP flows (60)\n",
		    f);
	fputs("  --no-reconnect            exit when the session is lost\n"
	      "  --reconnect-attempts N    give up after N failed attempts "
	      "in a row\n"
	      "                            (default 0: retry forever, every "
	      "30 s at most)\n"
	      "  --client-id HEX           32 hex digits (default: one per "
	      "agent, derived\n"
	      "                            from $XDG_STATE_HOME/mgrok/"
	      "client_id, the\n"
	      "                            server and the tunnels)\n"
	      "  --tls                     TLS to the server\n"
	      "  --tls-ca F                CA for the server (default: system)\n"
	      "  --tls-server-name N       name to verify (default: --server)\n"
	      "  --tls-pin sha256:HEX      pin the server's certificate\n"
	      "  --tls-cert F, --tls-key F client certificate (mTLS)\n"
	      "  --stream-window BYTES     largest per-stream receive window "
	      "(8 MiB);\n"
	      "                            windows start at 1 MiB and grow\n"
	      "  --busy-poll USEC          poll, not sleep, for USEC after I/O\n"
	      "                            (latency for CPU; default 0: off)\n"
	      "  --log-level L             error|warn|info|debug\n",
	    f);
}

int
conf_client_parse(struct client_conf *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, O_SERVER },
		{ "token", required_argument, NULL, O_TOKEN },
		{ "local", required_argument, NULL, O_LOCAL },
		{ "remote-port", required_argument, NULL, O_REMOTE },
		{ "name", required_argument, NULL, O_NAME },
		{ "no-reconnect", no_argument, NULL, O_NORECONN },
		{ "reconnect-attempts", required_argument, NULL, O_ATTEMPTS },
		{ "client-id", required_argument, NULL, O_CLIENTID },
		{ "stream-window", required_argument, NULL, O_WINDOW },
		{ "udp-idle-timeout", required_argument, NULL, O_UDPIDLE },
		{ "tls", no_argument, NULL, O_TLS },
		{ "tls-ca", required_argument, NULL, O_TLSCA },
		{ "tls-cert", required_argument, NULL, O_TLSCERT },
		{ "tls-key", required_argument, NULL, O_TLSKEY },
		{ "tls-server-name", required_argument, NULL, O_TLSNAME },
		{ "tls-pin", required_argument, NULL, O_TLSPIN },
		{ "subdomain", required_argument, NULL, O_SUBDOMAIN },
		{ "hostname", required_argument, NULL, O_HOSTNAME },
		{ "basic-auth", required_argument, NULL, O_BASICAUTH },
		{ "host-header", required_argument, NULL, O_HOSTHEADER },
		{ "busy-poll", required_argument, NULL, O_BUSYPOLL },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = argv[0], *err, *name = NULL;
	unsigned long v, remote = 0;
	int o, have_remote = 0, host_rewrite = 0;
	char subdomain[64] = "", hostname[256] = "", basic[256] = "";
	char host[256];
	uint16_t port;

	memset(c, 0, sizeof(*c));
	snprintf(c->server, sizeof(c->server), "localhost:9000");
	c->reconnect_attempts = 0; /* forever, as frpc and ngrok do */
	c->udp_idle_s = 60;
	c->log_level = LOG_INFO;
	mux_config_default(&c->mux);
	optind = 1;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (o) {
		case O_SERVER:
			/* ngrok users expect a default port: 9000 */
			if (split_hostport(optarg, host, sizeof(host), &port,
			    9000, 0, &err))
				return bad("--server", err, optarg);
			if (host[0] == '\0')
				return bad("--server", "expected HOST[:PORT]",
				    optarg);
			snprintf(c->server, sizeof(c->server), strchr(host,
			    ':') ? "[%s]:%u" : "%s:%u", host, port);
			break;
		case O_TOKEN:
			free(c->token);
			c->token = xstrdup(optarg);
			break;
		case O_LOCAL:
			if (strcmp(cmd, "client") != 0)
				return bad("--local", "only for mgrok client",
				    optarg);
			if (c->nlocals >= CONF_MAX_LOCALS)
				return bad("--local", "at most 64", optarg);
			if (conf_parse_local(optarg, &c->locals[c->nlocals],
			    &err))
				return bad("--local", err, optarg);
			if (c->locals[c->nlocals].type == PROXY_TLS)
				return bad("--local", "a TLS tunnel needs "
				    "--hostname: use mgrok tls", optarg);
			c->nlocals++;
			break;
		case O_REMOTE:
			if (parse_port("--remote-port", optarg, &remote))
				return MG_EINVAL;
			have_remote = 1;
			break;
		case O_NAME:
			if (strlen(optarg) < 1 || strlen(optarg) > 255)
				return bad("--name", "must be 1 to 255 bytes",
				    optarg);
			name = optarg;
			break;
		case O_NORECONN:
			c->no_reconnect = 1;
			break;
		case O_ATTEMPTS:
			if (parse_uint("--reconnect-attempts", optarg, 0,
			    1000000, &v))
				return MG_EINVAL;
			c->reconnect_attempts = (unsigned)v;
			break;
		case O_UDPIDLE:
			if (parse_uint("--udp-idle-timeout", optarg, 1, 86400,
			    &v))
				return MG_EINVAL;
			c->udp_idle_s = (unsigned)v;
			break;
		case O_TLS:
			c->tls = 1;
			break;
		case O_TLSCA:
			set_str(&c->tls_ca, optarg);
			break;
		case O_TLSCERT:
			set_str(&c->tls_cert, optarg);
			break;
		case O_TLSKEY:
			set_str(&c->tls_key, optarg);
			break;
		case O_TLSNAME:
			set_str(&c->tls_server_name, optarg);
			break;
		case O_TLSPIN:
			set_str(&c->tls_pin, optarg);
			break;
		case O_SUBDOMAIN:
			if (strlen(optarg) < 1 || strlen(optarg) > 63)
				return bad("--subdomain", "1 to 63 letters, "
				    "digits or -", optarg);
			for (size_t i = 0; optarg[i]; i++)
				if (!isalnum((unsigned char)optarg[i]) &&
				    optarg[i] != '-')
					return bad("--subdomain", "1 to 63 "
					    "letters, digits or -", optarg);
			snprintf(subdomain, sizeof(subdomain), "%s", optarg);
			break;
		case O_HOSTNAME:
			if (strlen(optarg) < 1 || strlen(optarg) > 253 ||
			    strchr(optarg, ':') || strchr(optarg, '/'))
				return bad("--hostname", "expected a host name "
				    "such as www.example.org", optarg);
			snprintf(hostname, sizeof(hostname), "%s", optarg);
			break;
		case O_BASICAUTH:
			if (strchr(optarg, ':') == NULL || optarg[0] == ':' ||
			    strlen(optarg) > 255)
				return bad("--basic-auth", "expected "
				    "user:password", "(hidden)");
			snprintf(basic, sizeof(basic), "%s", optarg);
			break;
		case O_HOSTHEADER:
			if (strcmp(optarg, "rewrite") == 0)
				host_rewrite = 1;
			else if (strcmp(optarg, "preserve") == 0)
				host_rewrite = 0;
			else
				return bad("--host-header", "expected rewrite "
				    "or preserve", optarg);
			break;
		case O_CLIENTID:
			if (conf_hex_id(optarg, c->client_id))
				return bad("--client-id",
				    "expected 32 hex digits", optarg);
			c->have_client_id = 1;
			break;
		case O_WINDOW:
			if (parse_window(optarg, &c->mux))
				return MG_EINVAL;
			break;
		case O_BUSYPOLL:
			if (parse_uint("--busy-poll", optarg, 0, 1000000, &v))
				return MG_EINVAL;
			c->busy_poll_us = (unsigned)v;
			break;
		case O_LOG:
			if (log_level_parse(optarg, &c->log_level))
				return bad("--log-level",
				    "expected error, warn, info or debug",
				    optarg);
			break;
		case O_HELP:
			return 1; /* the front end prints conf_client_usage */
		case ':':
			return bad(argv[optind - 1], "needs a value", "");
		default:
			return bad(argv[optind - 1], "unknown option", "");
		}
	}
	if (strcmp(cmd, "tcp") == 0 || strcmp(cmd, "udp") == 0 ||
	    strcmp(cmd, "http") == 0 || strcmp(cmd, "tls") == 0) {
		uint8_t type = strcmp(cmd, "udp") == 0 ? PROXY_UDP :
		    strcmp(cmd, "http") == 0 ? PROXY_HTTP :
		    strcmp(cmd, "tls") == 0 ? PROXY_TLS : PROXY_TCP;
		int url;
		if (optind >= argc)
			return bad(cmd, "missing the local [HOST:]PORT", "");
		url = strstr(argv[optind], "://") != NULL;
		if (!url && (strncmp(argv[optind], "tcp:", 4) == 0 ||
		    strncmp(argv[optind], "udp:", 4) == 0))
			return bad(cmd, "give HOST:PORT without a type prefix",
			    argv[optind]);
		if (conf_parse_local(argv[optind], &c->locals[0], &err))
			return bad(cmd, err, argv[optind]);
		if (url && c->locals[0].type != type) {
			char why[96];
			snprintf(why, sizeof(why), "mgrok %s takes [HOST:]PORT "
			    "or %s://HOST:PORT", cmd, cmd);
			return bad(cmd, why, argv[optind]);
		}
		c->locals[0].type = type;
		c->nlocals = 1;
		optind++;
	}
	if (optind < argc)
		return bad(cmd, "unexpected argument", argv[optind]);
	if (c->nlocals == 0)
		return bad(cmd, "nothing to forward: give --local", "");
	if ((have_remote || name) && c->nlocals > 1)
		return bad(have_remote ? "--remote-port" : "--name",
		    "applies to a single local service", "");
	if ((subdomain[0] || hostname[0] || basic[0] || host_rewrite) &&
	    c->locals[0].type != PROXY_HTTP && c->locals[0].type != PROXY_TLS)
		return bad(cmd, "--subdomain, --hostname, --basic-auth and "
		    "--host-header are for mgrok http (and tls)", "");
	if (c->locals[0].type == PROXY_TLS && (basic[0] || host_rewrite))
		return bad("tls", "a TLS tunnel is not decrypted: no "
		    "--basic-auth or --host-header", "");
	if (c->locals[0].type == PROXY_TLS && !hostname[0] && !subdomain[0])
		return bad("tls", "give --hostname (routed by SNI)", "");
	snprintf(c->locals[0].subdomain, sizeof(c->locals[0].subdomain), "%s",
	    subdomain);
	snprintf(c->locals[0].hostname, sizeof(c->locals[0].hostname), "%s",
	    hostname);
	snprintf(c->locals[0].basic_auth, sizeof(c->locals[0].basic_auth),
	    "%s", basic);
	c->locals[0].host_rewrite = host_rewrite;
	if (have_remote && (c->locals[0].type == PROXY_HTTP ||
	    c->locals[0].type == PROXY_TLS))
		return bad("--remote-port", "HTTP and TLS tunnels are routed "
		    "by host name, not by port", "");
	if (have_remote)
		c->locals[0].remote_port = (uint16_t)remote;
	if (name)
		snprintf(c->locals[0].name, sizeof(c->locals[0].name), "%s",
		    name);
	if (c->tls_ca || c->tls_cert || c->tls_key || c->tls_server_name ||
	    c->tls_pin)
		c->tls = 1; /* TLS options imply --tls */
	if (check_readable("--tls-ca", c->tls_ca) ||
	    check_readable("--tls-cert", c->tls_cert) ||
	    check_readable("--tls-key", c->tls_key))
		return MG_EINVAL;
	if ((c->tls_cert == NULL) != (c->tls_key == NULL))
		return bad(c->tls_cert ? "--tls-cert" : "--tls-key",
		    "--tls-cert and --tls-key go together", "");
	if (c->token == NULL) {
		const char *env = getenv("MGROK_TOKEN");
		if (env && *env)
			c->token = xstrdup(env);
	}
	if (c->token == NULL && c->tls_cert == NULL) {
		fprintf(stderr, "mgrok: no token: use --token or set "
				"MGROK_TOKEN (or a client certificate with "
				"--tls-cert/--tls-key)\n");
		return MG_EINVAL;
	}
	if (c->token && strlen(c->token) > CTRL_TOKEN_MAX)
		return bad("--token", "a token must be 1 to 1019 bytes", "");
	return 0;
}

void
conf_client_free(struct client_conf *c)
{
	free(c->tls_ca);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->tls_server_name);
	free(c->tls_pin);
	c->tls_ca = c->tls_cert = c->tls_key = NULL;
	c->tls_server_name = c->tls_pin = NULL;
	if (c->token) {
		memset(c->token, 0, strlen(c->token));
		free(c->token);
		c->token = NULL;
	}
}
