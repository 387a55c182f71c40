/* opts.c: the option table (every flag and every key of both sides) and
 * the setters that a flag and a config file key share. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <arpa/inet.h>

#include "conf/conf_int.h"
#include "conf/policy.h"
#include "util/proxyurl.h"
#include "cluster/routes.h"
#include "cluster/rstore.h"
#include "proto/ctrl.h"
#include "util/crypto.h"
#include "util/err.h"
#include "util/net.h"
#include "util/xmalloc.h"

#define PORT_RANGE_MSG "port must be 1-65535"
#define SOFF(f) offsetof(struct server_conf, f)
#define COFF(f) offsetof(struct client_conf, f)

/* ------------------------------------------------------------ values */

int
conf_split_hostport(const char *s, char *host, size_t hostcap,
    uint16_t *port, uint16_t default_port, int allow_zero, const char **err)
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

static int
parse_ulong(const char *s, unsigned long min, unsigned long max,
    unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (*s == '\0' || !isdigit((unsigned char)*s) || *end != '\0' ||
	    errno || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int
parse_bool(const char *v, int *out)
{
	static const char *yes[] = { "true", "yes", "on", "1" };
	static const char *no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

static void
why_set(char *why, size_t wl, const char *s)
{
	snprintf(why, wl, "%s", s);
}

/* ------------------------------------------------------------ server */

_Static_assert(CONF_SHA256_LEN == CRYPTO_SHA256_LEN, "one SHA-256 size");

/* one token, in clear (t) or as its hash only (t NULL) */
static int
tok_add(struct ld *L, const char *t, size_t len,
    const uint8_t hash[CONF_SHA256_LEN], const char *name)
{
	struct server_conf *c = L->s;

	if (t != NULL && (len == 0 || len > CTRL_TOKEN_MAX)) {
		ld_bad(L, "a token must be 1 to 1019 bytes", "");
		return -1;
	}
	if (c->ntokens >= CONF_MAX_TOKENS) {
		ld_bad(L, "too many tokens (at most 16)", "");
		return -1;
	}
	for (size_t i = 0; i < c->ntokens; i++) {
		/* the two secrets of one entry (rotation) share its name */
		if (name && c->token_names[i] &&
		    strcmp(name, c->token_names[i]) == 0 &&
		    (L->cur_token_entry == 0 ||
		    L->tok_entry[i] != L->cur_token_entry)) {
			ld_bad(L, "two tokens have this name", name);
			return -1;
		}
	}
	c->token_names[c->ntokens] = name ? xstrdup(name) : NULL;
	c->token_policy[c->ntokens] = L->cur_policy;
	L->tok_entry[c->ntokens] = L->cur_token_entry;
	if (t != NULL)
		crypto_sha256(t, len, c->token_sha256[c->ntokens]);
	else
		memcpy(c->token_sha256[c->ntokens], hash, CONF_SHA256_LEN);
	c->tokens[c->ntokens++] = t != NULL ? xstrndup(t, len) : NULL;
	return 0;
}

int
conf_tok_add(struct ld *L, const char *t, size_t len, const char *name)
{
	return tok_add(L, t, len, NULL, name);
}

int
conf_tok_add_hashed(struct ld *L, const uint8_t hash[CONF_SHA256_LEN],
    const char *name)
{
	return tok_add(L, NULL, 0, hash, name);
}

static int
s_token(struct ld *L, const char *v, char *why, size_t wl)
{
	return conf_tok_add(L, v, strlen(v), L->cur_token_name) ? -2 : 0;
}

static int
s_token_file(struct ld *L, const char *path, char *why, size_t wl)
{
	char line[1100];
	FILE *f = fopen(path, "r");
	struct stat st;
	size_t total = 0;
	int rc = 0;

	if (f == NULL) {
		snprintf(why, wl, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (L->cur.in_file && fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
		char w[600];
		snprintf(w, sizeof(w), "%.250s holds secrets and others can "
		    "read it (mode %03o): chmod 600 %.250s", path,
		    (unsigned)(st.st_mode & 0777), path);
		ld_warn_at(L, &L->cur, w);
	}
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		/* editors leave CR, spaces and tabs around a line: a token
		 * never starts or ends with white space */
		char *t = line;
		size_t len = strlen(line);
		if ((total += len + 1) > (1 << 20)) {
			/* not a token file (/dev/zero, say) */
			snprintf(why, wl, "%s: larger than 1 MiB", path);
			fclose(f);
			return -1;
		}
		while (len > 0 && isspace((unsigned char)t[len - 1]))
			len--;
		while (len > 0 && isspace((unsigned char)*t)) {
			t++;
			len--;
		}
		if (len == 0 || t[0] == '#')
			continue;
		rc = conf_tok_add(L, t, len, NULL);
	}
	fclose(f);
	return rc ? -2 : 0;
}

static int
s_addr(struct ld *L, const char *v, char *why, size_t wl)
{
	char host[256];
	uint16_t port;
	const char *err;

	if (conf_split_hostport(v, host, sizeof(host), &port, 0, 1, &err)) {
		why_set(why, wl, err);
		return -1;
	}
	snprintf(L->s->addr, sizeof(L->s->addr), "%s", v);
	return 0;
}

static int
s_bind_port(struct ld *L, const char *v, char *why, size_t wl)
{
	unsigned long p;

	if (parse_ulong(v, 0, 65535, &p)) {
		why_set(why, wl, "port must be 0-65535 (0: any free port)");
		return -1;
	}
	snprintf(L->bind_port, sizeof(L->bind_port), "%lu", p);
	return 0;
}

static int
s_listen_addr(struct ld *L, const char *v, char *dst, char *why, size_t wl)
{
	char host[256];
	uint16_t port;
	const char *err;

	if (conf_split_hostport(v, host, sizeof(host), &port, 0, 1, &err)) {
		why_set(why, wl, err);
		return -1;
	}
	snprintf(dst, 300, "%s", v);
	return 0;
}

static int
s_http_addr(struct ld *L, const char *v, char *why, size_t wl)
{
	return s_listen_addr(L, v, L->s->http_addr, why, wl);
}

static int
s_https_addr(struct ld *L, const char *v, char *why, size_t wl)
{
	return s_listen_addr(L, v, L->s->https_addr, why, wl);
}

static int
s_admin_addr(struct ld *L, const char *v, char *why, size_t wl)
{
	if (strcmp(v, "off") == 0 || v[0] == '\0') {
		L->s->admin_addr[0] = '\0';
		return 0;
	}
	return s_listen_addr(L, v, L->s->admin_addr, why, wl);
}

static int
s_trusted(struct ld *L, const char *v, char *why, size_t wl)
{
	return policy_parse_cidr_list(v, L->s->trusted, CONF_MAX_ALLOW,
	    &L->s->ntrusted, why, wl);
}

static int
s_domain(struct ld *L, const char *v, char *why, size_t wl)
{
	size_t i;

	if (strlen(v) == 0 || strlen(v) > 200 || strchr(v, ':') ||
	    strchr(v, '/')) {
		why_set(why, wl, "expected a domain name such as "
		    "tunnel.example.com");
		return -1;
	}
	for (i = 0; v[i]; i++)
		L->s->domain[i] = (char)tolower((unsigned char)v[i]);
	L->s->domain[i] = '\0';
	return 0;
}

static int
s_client_auth(struct ld *L, const char *v, char *why, size_t wl)
{
	if (strcmp(v, "require") == 0)
		L->s->tls_client_auth = 2;
	else if (strcmp(v, "optional") == 0)
		L->s->tls_client_auth = 1;
	else {
		why_set(why, wl, "expected require or optional");
		return -1;
	}
	return 0;
}

static int
s_allow(struct ld *L, const char *v, char *why, size_t wl)
{
	const char *err;
	struct server_conf *c = L->s;

	if (c->nstream_allow >= CONF_MAX_ALLOW) {
		why_set(why, wl, "at most 64 rules");
		return -1;
	}
	if (acl_parse(v, &c->stream_allow[c->nstream_allow], &err)) {
		why_set(why, wl, err);
		return -1;
	}
	c->nstream_allow++;
	return 0;
}

static int
window(const char *v, struct mux_config *mc, char *why, size_t wl)
{
	unsigned long n;

	if (parse_ulong(v, 262144, 64UL << 20, &n)) {
		snprintf(why, wl, "expected a number from %lu to %lu",
		    262144UL, 64UL << 20);
		return -1;
	}
	/* the bound; windows start at 1 MiB (or the bound) and grow to it */
	mc->stream_window_max = (uint32_t)n;
	if (mc->stream_window > n)
		mc->stream_window = (uint32_t)n;
	return 0;
}

static int
s_window(struct ld *L, const char *v, char *why, size_t wl)
{
	return window(v, &L->s->mux, why, wl);
}

static int
c_window(struct ld *L, const char *v, char *why, size_t wl)
{
	return window(v, &L->c->mux, why, wl);
}

/* conf_parse_bytes: "65536", "64KiB", "10MiB", "1GiB" (binary), "10MB"
 * (decimal), "64K", "10M" (binary) */
int
conf_parse_bytes(const char *v, uint64_t *out)
{
	static const struct { const char *sfx; uint64_t mul; } units[] = {
		{ "", 1 }, { "B", 1 }, { "K", 1024 }, { "KiB", 1024 },
		{ "KB", 1000 }, { "M", 1 << 20 }, { "MiB", 1 << 20 },
		{ "MB", 1000000 }, { "G", 1 << 30 }, { "GiB", 1 << 30 },
		{ "GB", 1000000000 },
	};
	char *end;
	unsigned long long n;

	if (!isdigit((unsigned char)v[0]))
		return -1;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].sfx) == 0) {
			if (n > UINT64_MAX / units[i].mul)
				return -1;
			*out = n * units[i].mul;
			return 0;
		}
	return -1;
}

static int
bytes_in(const char *v, uint64_t min, uint64_t max, size_t *out, char *why,
    size_t wl)
{
	uint64_t n;

	if (conf_parse_bytes(v, &n) || n < min || n > max) {
		snprintf(why, wl, "expected a size from %llu to %llu bytes "
		    "(suffixes K, M, G or KiB, MiB, GiB; KB, MB, GB are "
		    "decimal)", (unsigned long long)min,
		    (unsigned long long)max);
		return -1;
	}
	*out = (size_t)n;
	return 0;
}

static int
c_inspect_body_max(struct ld *L, const char *v, char *why, size_t wl)
{
	return bytes_in(v, 0, 64ULL << 20, &L->c->inspect_body_max, why, wl);
}

static int
c_inspect_max_bytes(struct ld *L, const char *v, char *why, size_t wl)
{
	return bytes_in(v, 0, 1ULL << 32, &L->c->inspect_max_bytes, why, wl);
}

static int
c_inspect_addr(struct ld *L, const char *v, char *why, size_t wl)
{
	char host[256];
	uint16_t port;
	const char *err;

	L->c->inspect_addr_set = 1;
	if (strcmp(v, "off") == 0 || v[0] == '\0') {
		L->c->inspect_addr[0] = '\0';
		return 0;
	}
	if (conf_split_hostport(v, host, sizeof(host), &port, 0, 1, &err)) {
		why_set(why, wl, err);
		return -1;
	}
	snprintf(L->c->inspect_addr, sizeof(L->c->inspect_addr), "%s", v);
	return 0;
}

static int
level(const char *v, enum log_level *out, char *why, size_t wl)
{
	if (log_level_parse(v, out)) {
		why_set(why, wl, "expected error, warn, info or debug");
		return -1;
	}
	return 0;
}

static int
s_log(struct ld *L, const char *v, char *why, size_t wl)
{
	return level(v, &L->s->log_level, why, wl);
}

static int
c_log(struct ld *L, const char *v, char *why, size_t wl)
{
	return level(v, &L->c->log_level, why, wl);
}

static int
s_cluster(struct ld *L, const char *v, char *why, size_t wl)
{
	struct rstore_url u;

	if (strcmp(v, "off") == 0 || v[0] == '\0') {
		L->s->cluster[0] = '\0';
		return 0;
	}
	if (strlen(v) >= sizeof(L->s->cluster)) {
		why_set(why, wl, "too long");
		return -1;
	}
	if (rstore_url_parse(v, &u, why, wl) != 0)
		return -1;
	snprintf(L->s->cluster, sizeof(L->s->cluster), "%s", v);
	return 0;
}

static int
s_node_id(struct ld *L, const char *v, char *why, size_t wl)
{
	if (!routes_id_ok(v)) {
		why_set(why, wl, "expected 1 to 63 of letters, digits, '.', "
		    "'_', ':' and '-'");
		return -1;
	}
	snprintf(L->s->node_id, sizeof(L->s->node_id), "%s", v);
	return 0;
}

static int
s_node_addr(struct ld *L, const char *v, char *why, size_t wl)
{
	char host[256];
	uint16_t port;
	const char *e;
	struct in6_addr a6;
	struct in_addr a4;

	if (v[0] == '\0') {
		L->s->node_addr[0] = '\0';
		return 0;
	}
	if (strlen(v) >= sizeof(L->s->node_addr) ||
	    net_split_hostport(v, host, sizeof(host), &port, &e) != 0 ||
	    port == 0) {
		why_set(why, wl, "expected IP:PORT");
		return -1;
	}
	if (inet_pton(AF_INET, host, &a4) != 1 &&
	    inet_pton(AF_INET6, host, &a6) != 1) {
		why_set(why, wl, "expected an IP address and a port (the other "
		    "nodes connect to it as it is; no name)");
		return -1;
	}
	snprintf(L->s->node_addr, sizeof(L->s->node_addr), "%s", v);
	return 0;
}

static int
s_cluster_secret(struct ld *L, const char *v, char *why, size_t wl)
{
	if (v[0] != '\0' && strlen(v) < 16) {
		why_set(why, wl, "too short: at least 16 bytes");
		return -1;
	}
	if (strlen(v) >= sizeof(L->s->cluster_secret)) {
		why_set(why, wl, "too long: at most 255 bytes");
		return -1;
	}
	snprintf(L->s->cluster_secret, sizeof(L->s->cluster_secret), "%s", v);
	return 0;
}

/* ------------------------------------------------------------ client */

/* one server, or several separated by commas, added to the list (the
 * first one given replaces the default) */
static int
c_server(struct ld *L, const char *v, char *why, size_t wl)
{
	char list[sizeof(L->c->server)], host[256], item[300];
	size_t n = 0;
	const char *p;

	if (!L->server_set) {
		L->c->server[0] = '\0';
		L->server_set = 1;
	}
	snprintf(list, sizeof(list), "%s", L->c->server);
	for (p = list; *p; p += strcspn(p, ","), p += *p == ',')
		n++;
	for (p = v; *p;) {
		size_t k = strcspn(p, ", ");
		uint16_t port;
		const char *err;

		if (k == 0) {
			p++;
			continue;
		}
		if (k >= sizeof(item)) {
			why_set(why, wl, "a server's address is too long");
			return -1;
		}
		memcpy(item, p, k);
		item[k] = '\0';
		p += k;
		/* ngrok users expect a default port: 9000 */
		if (conf_split_hostport(item, host, sizeof(host), &port, 9000, 0,
		    &err)) {
			snprintf(why, wl, "\"%s\": %s", item, err);
			return -1;
		}
		if (host[0] == '\0') {
			snprintf(why, wl, "\"%s\": expected HOST[:PORT]", item);
			return -1;
		}
		if (++n > CONF_MAX_SERVERS) {
			snprintf(why, wl, "at most %d servers", CONF_MAX_SERVERS);
			return -1;
		}
		snprintf(item, sizeof(item), strchr(host, ':') ? "[%s]:%u" :
		    "%s:%u", host, port);
		if (strlen(list) + strlen(item) + 2 > sizeof(list)) {
			why_set(why, wl, "too many servers");
			return -1;
		}
		if (list[0])
			strcat(list, ",");
		strcat(list, item);
	}
	if (n == 0) {
		why_set(why, wl, "expected HOST[:PORT]");
		return -1;
	}
	memcpy(L->c->server, list, sizeof(list));
	return 0;
}

static int
c_proxy(struct ld *L, const char *v, char *why, size_t wl)
{
	struct proxy_url u;

	if (strlen(v) >= sizeof(L->c->proxy)) {
		why_set(why, wl, "too long");
		return -1;
	}
	if (strcmp(v, "none") != 0 && strcmp(v, "off") != 0 &&
	    proxy_url_parse(v, &u, why, wl) < 0)
		return -1;
	snprintf(L->c->proxy, sizeof(L->c->proxy), "%s", v);
	return 0;
}

static int
c_local(struct ld *L, const char *v, char *why, size_t wl)
{
	struct client_conf *c = L->c;
	const char *err;

	if (!L->cur.in_file && L->cmd != SD_CLIENT) {
		why_set(why, wl, "only for mgrok client");
		return -1;
	}
	if (c->nlocals >= CONF_MAX_LOCALS) {
		why_set(why, wl, "at most 64");
		return -1;
	}
	if (conf_parse_local(v, &c->locals[c->nlocals], &err)) {
		why_set(why, wl, err);
		return -1;
	}
	if (c->locals[c->nlocals].type == PROXY_TLS) {
		why_set(why, wl, "a TLS tunnel needs --hostname: use mgrok tls");
		return -1;
	}
	c->nlocals++;
	return 0;
}

static int
c_client_id(struct ld *L, const char *v, char *why, size_t wl)
{
	if (conf_hex_id(v, L->c->client_id)) {
		why_set(why, wl, "expected 32 hex digits");
		return -1;
	}
	L->c->have_client_id = 1;
	return 0;
}

/* ------------------------------------------------------------ tunnels */

static int
t_type(struct ld *L, const char *v, char *why, size_t wl)
{
	static const struct {
		const char *n;
		uint8_t t;
	} types[] = { { "tcp", PROXY_TCP }, { "udp", PROXY_UDP },
		{ "http", PROXY_HTTP }, { "tls", PROXY_TLS } };

	for (size_t i = 0; i < 4; i++) {
		if (strcmp(v, types[i].n) == 0) {
			L->tun->spec.type = types[i].t;
			L->tun->have_type = 1;
			return 0;
		}
	}
	why_set(why, wl, "expected tcp, udp, http or tls");
	return -1;
}

static int
t_local(struct ld *L, const char *v, char *why, size_t wl)
{
	struct local_spec l;
	const char *err;
	struct conf_tun *t = L->tun;

	if (conf_parse_local(v, &l, &err)) {
		why_set(why, wl, err);
		return -1;
	}
	if (strstr(v, "://")) {
		if (t->have_type && t->spec.type != l.type) {
			why_set(why, wl, "the URL's scheme is not the "
			    "tunnel's type");
			return -1;
		}
		t->spec.type = l.type;
		t->have_type = 1;
	} else if (strncmp(v, "udp:", 4) == 0) {
		why_set(why, wl, "give HOST:PORT and type: udp");
		return -1;
	}
	snprintf(t->spec.host, sizeof(t->spec.host), "%s", l.host);
	t->spec.port = l.port;
	t->have_local = 1;
	return 0;
}

static int
t_local_ip(struct ld *L, const char *v, char *why, size_t wl)
{
	if (v[0] == '\0' || strlen(v) >= sizeof(L->tun->local_ip) ||
	    strchr(v, '/')) {
		why_set(why, wl, "expected a host name or an address");
		return -1;
	}
	snprintf(L->tun->local_ip, sizeof(L->tun->local_ip), "%s",
	    v[0] == '[' ? v + 1 : v);
	L->tun->local_ip[strcspn(L->tun->local_ip, "]")] = '\0';
	L->tun->have_local_ip = 1;
	return 0;
}

static int
t_local_port(struct ld *L, const char *v, char *why, size_t wl)
{
	unsigned long p;

	if (parse_ulong(v, 1, 65535, &p)) {
		why_set(why, wl, PORT_RANGE_MSG);
		return -1;
	}
	L->tun->spec.port = (uint16_t)p;
	L->tun->have_local_port = 1;
	return 0;
}

static int
t_remote_port(struct ld *L, const char *v, char *why, size_t wl)
{
	unsigned long p;

	if (parse_ulong(v, 1, 65535, &p)) {
		why_set(why, wl, PORT_RANGE_MSG);
		return -1;
	}
	L->tun->spec.remote_port = (uint16_t)p;
	L->tun->have_remote = 1;
	L->tun->w_remote = L->cur;
	return 0;
}

static int
t_name(struct ld *L, const char *v, char *why, size_t wl)
{
	if (strlen(v) < 1 || strlen(v) > 255) {
		why_set(why, wl, "must be 1 to 255 bytes");
		return -1;
	}
	snprintf(L->tun->spec.name, sizeof(L->tun->spec.name), "%s", v);
	L->tun->have_name = 1;
	return 0;
}

static int
t_subdomain(struct ld *L, const char *v, char *why, size_t wl)
{
	int ok = strlen(v) >= 1 && strlen(v) <= 63;

	for (size_t i = 0; ok && v[i]; i++)
		ok = isalnum((unsigned char)v[i]) || v[i] == '-';
	if (!ok) {
		why_set(why, wl, "1 to 63 letters, digits or -");
		return -1;
	}
	snprintf(L->tun->spec.subdomain, sizeof(L->tun->spec.subdomain), "%s",
	    v);
	return 0;
}

static int
t_hostname(struct ld *L, const char *v, char *why, size_t wl)
{
	if (strlen(v) < 1 || strlen(v) > 253 || strchr(v, ':') ||
	    strchr(v, '/')) {
		why_set(why, wl, "expected a host name such as www.example.org");
		return -1;
	}
	snprintf(L->tun->spec.hostname, sizeof(L->tun->spec.hostname), "%s",
	    v);
	return 0;
}

static int
t_basic_auth(struct ld *L, const char *v, char *why, size_t wl)
{
	char *pw = NULL;
	const char *colon = strchr(v, ':');
	int rc = 0;

	/* USER:file:PATH: the password from a file */
	if (L->cur.in_file && colon && strncmp(colon + 1, "file:", 5) == 0) {
		if ((pw = conf_secret_file(L, colon + 6)) == NULL)
			return -2;
		if (strlen(pw) + (size_t)(colon - v) + 1 >= 256)
			rc = -1;
		else
			snprintf(L->tun->spec.basic_auth,
			    sizeof(L->tun->spec.basic_auth), "%.*s:%s",
			    (int)(colon - v), v, pw);
		memset(pw, 0, strlen(pw));
		free(pw);
		if (rc == 0 && colon != v)
			return 0;
	} else if (colon && colon != v && strlen(v) <= 255) {
		snprintf(L->tun->spec.basic_auth,
		    sizeof(L->tun->spec.basic_auth), "%s", v);
		return 0;
	}
	why_set(why, wl, "expected user:password");
	return -1;
}

static int
t_host_header(struct ld *L, const char *v, char *why, size_t wl)
{
	if (strcmp(v, "rewrite") == 0)
		L->tun->spec.host_rewrite = 1;
	else if (strcmp(v, "preserve") == 0)
		L->tun->spec.host_rewrite = 0;
	else {
		why_set(why, wl, "expected rewrite or preserve");
		return -1;
	}
	return 0;
}

/* a tunnel's source list (--allow-cidr, --deny-cidr) into out[1024] */
static int
cidr_list(const char *v, char out[1024], char *why, size_t wl)
{
	size_t n;

	if (policy_parse_cidr_list(v, NULL, CTRL_MAX_ALLOW_SRC, &n, why,
	    wl) < 0)
		return -1;
	if (strlen(v) >= 1024) {
		why_set(why, wl, "too long");
		return -1;
	}
	snprintf(out, 1024, "%s", v);
	return 0;
}

static int
t_allow_cidr(struct ld *L, const char *v, char *why, size_t wl)
{
	return cidr_list(v, L->tun->spec.allow_cidr, why, wl);
}

static int
t_deny_cidr(struct ld *L, const char *v, char *why, size_t wl)
{
	return cidr_list(v, L->tun->spec.deny_cidr, why, wl);
}

static int
t_group(struct ld *L, const char *v, char *why, size_t wl)
{
	size_t n = strlen(v);

	if (n == 0 || n >= sizeof(L->tun->spec.group) ||
	    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789._-") != n) {
		why_set(why, wl, "expected 1 to 63 letters, digits, '.', '_' "
		    "or '-'");
		return -1;
	}
	snprintf(L->tun->spec.group, sizeof(L->tun->spec.group), "%s", v);
	return 0;
}

static int
t_group_key(struct ld *L, const char *v, char *why, size_t wl)
{
	if (v[0] == '\0' || strlen(v) >= sizeof(L->tun->spec.group_key)) {
		why_set(why, wl, "expected 1 to 255 bytes");
		return -1;
	}
	snprintf(L->tun->spec.group_key, sizeof(L->tun->spec.group_key), "%s",
	    v);
	return 0;
}

static int
t_group_strategy(struct ld *L, const char *v, char *why, size_t wl)
{
	static const char *const ok[] = { "round_robin", "least_conn",
		"hash:source_ip", "hash:host" };
	size_t n = strlen(v);
	int good = n > 12 && n < sizeof(L->tun->spec.group_strategy) &&
	    strncmp(v, "hash:header:", 12) == 0;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		good |= strcmp(v, ok[i]) == 0;
	if (!good) {
		why_set(why, wl, "expected round_robin, least_conn, "
		    "hash:source_ip, hash:host or hash:header:NAME");
		return -1;
	}
	snprintf(L->tun->spec.group_strategy,
	    sizeof(L->tun->spec.group_strategy), "%s", v);
	return 0;
}

static int
t_group_weight(struct ld *L, const char *v, char *why, size_t wl)
{
	char *e;
	unsigned long w = strtoul(v, &e, 10);

	if (*v < '0' || *v > '9' || *e != '\0' || w < 1 || w > 1000) {
		why_set(why, wl, "expected 1 to 1000");
		return -1;
	}
	L->tun->spec.group_weight = (unsigned)w;
	return 0;
}

static int
t_bandwidth(struct ld *L, const char *v, char *why, size_t wl)
{
	uint64_t x;
	const char *err;

	if (strcmp(v, "off") == 0 || strcmp(v, "none") == 0) {
		L->tun->spec.bandwidth = 0;
		return 0;
	}
	if (policy_parse_rate(v, 1, &x, &err) < 0) {
		why_set(why, wl, err);
		return -1;
	}
	if (x == 0 || x > UINT32_MAX) {
		why_set(why, wl, "expected 1B/s to 4GB/s (the protocol "
		    "carries a 32-bit rate)");
		return -1;
	}
	L->tun->spec.bandwidth = x;
	return 0;
}

static int
t_proxy_protocol(struct ld *L, const char *v, char *why, size_t wl)
{
	if (strcmp(v, "v1") == 0 || strcmp(v, "1") == 0)
		L->tun->spec.proxy_protocol = 1;
	else if (strcmp(v, "v2") == 0 || strcmp(v, "2") == 0)
		L->tun->spec.proxy_protocol = 2;
	else if (strcmp(v, "off") == 0 || strcmp(v, "none") == 0)
		L->tun->spec.proxy_protocol = 0;
	else {
		why_set(why, wl, "expected v1, v2 or off");
		return -1;
	}
	return 0;
}

/* ---- health checks (client/health.h runs them) ---- */

int
conf_parse_duration_ms(const char *v, unsigned *ms)
{
	unsigned long long ip = 0, thou = 0, unit, x;
	const char *p = v;
	int nd = 0, nf = 0;

	while (isdigit((unsigned char)*p) && nd < 8) {
		ip = ip * 10 + (unsigned long long)(*p++ - '0');
		nd++;
	}
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p) && nf < 3) {
			thou = thou * 10 + (unsigned long long)(*p++ - '0');
			nf++;
		}
		if (nf == 0)
			return MG_EINVAL;
		for (int i = nf; i < 3; i++)
			thou *= 10;
	}
	if (nd == 0 || isdigit((unsigned char)*p))
		return MG_EINVAL;
	if (*p == '\0' || strcmp(p, "s") == 0)
		unit = 1000;
	else if (strcmp(p, "ms") == 0)
		unit = 1;
	else if (strcmp(p, "m") == 0)
		unit = 60000;
	else
		return MG_EINVAL;
	/* thousandths of the unit; a part of a millisecond is refused */
	x = (ip * 1000 + thou) * unit;
	if (x % 1000 != 0 || x / 1000 > 3600000)
		return MG_EINVAL;
	*ms = (unsigned)(x / 1000);
	return 0;
}

int
conf_parse_expect(const char *v, struct health_spec *h, const char **err)
{
	uint16_t lo[HEALTH_MAX_RANGES], hi[HEALTH_MAX_RANGES];
	unsigned n = 0;
	const char *p = v;

	if (strlen(v) >= sizeof(h->expect)) {
		*err = "too long";
		return MG_EINVAL;
	}
	for (;;) {
		unsigned long a, b;
		char *end;

		while (*p == ' ')
			p++;
		if (!isdigit((unsigned char)*p))
			goto bad;
		a = strtoul(p, &end, 10);
		p = end;
		b = a;
		if (*p == '-') {
			p++;
			if (!isdigit((unsigned char)*p))
				goto bad;
			b = strtoul(p, &end, 10);
			p = end;
		}
		if (a < 100 || b > 599 || a > b) {
			*err = "status codes are 100 to 599, a range low-high";
			return MG_EINVAL;
		}
		if (n == HEALTH_MAX_RANGES) {
			*err = "at most 8 codes or ranges";
			return MG_EINVAL;
		}
		lo[n] = (uint16_t)a;
		hi[n++] = (uint16_t)b;
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		if (*p++ != ',')
			goto bad;
	}
	snprintf(h->expect, sizeof(h->expect), "%s", v);
	memcpy(h->expect_lo, lo, sizeof(lo));
	memcpy(h->expect_hi, hi, sizeof(hi));
	h->nexpect = n;
	return 0;
bad:
	*err = "expected a status, a range or a list (200, 200-399, "
	       "200,204)";
	return MG_EINVAL;
}

void
conf_health_defaults(struct health_spec *h)
{
	const char *err;

	if (h->path[0] == '\0')
		snprintf(h->path, sizeof(h->path), "/");
	if (h->nexpect == 0)
		(void)conf_parse_expect(HEALTH_DEF_EXPECT, h, &err);
	if (h->interval_ms == 0)
		h->interval_ms = HEALTH_DEF_INTERVAL_MS;
	/* a short interval brings the timeout down with it */
	if (h->timeout_ms == 0)
		h->timeout_ms = h->interval_ms / 2 < HEALTH_DEF_TIMEOUT_MS ?
		    h->interval_ms / 2 : HEALTH_DEF_TIMEOUT_MS;
	if (h->rise == 0)
		h->rise = HEALTH_DEF_RISE;
	if (h->fall == 0)
		h->fall = HEALTH_DEF_FALL;
}

static int
t_health(struct ld *L, const char *v, char *why, size_t wl)
{
	struct health_spec *h = &L->tun->spec.health;

	if (strcmp(v, "tcp") == 0)
		h->type = HEALTH_TCP;
	else if (strcmp(v, "http") == 0)
		h->type = HEALTH_HTTP;
	else if (strcmp(v, "tls") == 0)
		h->type = HEALTH_TLS;
	else if (strcmp(v, "off") == 0 || strcmp(v, "none") == 0)
		h->type = HEALTH_OFF;
	else {
		why_set(why, wl, "expected tcp, http, tls or off");
		return -1;
	}
	L->tun->have_health_type = 1;
	if (!L->tun->w_health.set)
		L->tun->w_health = L->cur;
	return 0;
}

/* a health option other than the type: noted for check_health */
static void
health_opt_seen(struct ld *L)
{
	L->tun->have_health_opt = 1;
	if (!L->tun->w_health.set)
		L->tun->w_health = L->cur;
}

static int
t_health_path(struct ld *L, const char *v, char *why, size_t wl)
{
	int ok = v[0] == '/' && strlen(v) < sizeof(L->tun->spec.health.path);

	for (const char *p = v; ok && *p; p++)
		ok = (unsigned char)*p > 0x20 && *p != 0x7f;
	if (!ok) {
		why_set(why, wl, "expected a path such as /healthz (up to 255 "
		    "bytes, no spaces)");
		return -1;
	}
	snprintf(L->tun->spec.health.path, sizeof(L->tun->spec.health.path),
	    "%s", v);
	health_opt_seen(L);
	return 0;
}

static int
t_health_expect(struct ld *L, const char *v, char *why, size_t wl)
{
	const char *err;

	if (conf_parse_expect(v, &L->tun->spec.health, &err)) {
		why_set(why, wl, err);
		return -1;
	}
	health_opt_seen(L);
	return 0;
}

static int
t_health_interval(struct ld *L, const char *v, char *why, size_t wl)
{
	unsigned ms;

	if (conf_parse_duration_ms(v, &ms) || ms < 100) {
		why_set(why, wl, "expected a duration from 100ms to 1h (5s, "
		    "500ms, 1m)");
		return -1;
	}
	L->tun->spec.health.interval_ms = ms;
	health_opt_seen(L);
	return 0;
}

static int
t_health_timeout(struct ld *L, const char *v, char *why, size_t wl)
{
	unsigned ms;

	if (conf_parse_duration_ms(v, &ms) || ms < 10) {
		why_set(why, wl, "expected a duration from 10ms to 1h (2s, "
		    "500ms)");
		return -1;
	}
	L->tun->spec.health.timeout_ms = ms;
	L->tun->have_health_timeout = 1;
	health_opt_seen(L);
	return 0;
}

static int
t_health_count(struct ld *L, const char *v, char *why, size_t wl,
    unsigned *out)
{
	unsigned long n;

	if (parse_ulong(v, 1, 100, &n)) {
		why_set(why, wl, "expected a number from 1 to 100");
		return -1;
	}
	*out = (unsigned)n;
	health_opt_seen(L);
	return 0;
}

static int
t_health_rise(struct ld *L, const char *v, char *why, size_t wl)
{
	return t_health_count(L, v, why, wl, &L->tun->spec.health.rise);
}

static int
t_health_fall(struct ld *L, const char *v, char *why, size_t wl)
{
	return t_health_count(L, v, why, wl, &L->tun->spec.health.fall);
}

static int
no_op(struct ld *L, const char *v, char *why, size_t wl)
{
	return 0;
}

/* ------------------------------------------------------------ the table */

#define SRV(fl, k, ...) { .flag = fl, .key = k, .sides = SD_SERVER, __VA_ARGS__ }

const struct conf_opt conf_opts[] = {
	/* the server */
	SRV("config", NULL, .flags = OF_NOKEY, .type = CT_FN, .fn = no_op,
	    .arg = "FILE", .def = "/etc/mgrok/server.yml if it exists",
	    .help = "read settings from this YAML file; a flag overrides "
		    "its key"),
	SRV("addr", "addr", .type = CT_FN, .fn = s_addr, .arg = "HOST:PORT",
	    .def = ":9000", .help = "control listener (all addresses when "
				    "HOST is empty)", .example = "\":9000\""),
	SRV("bind-port", "bind_port", .type = CT_FN, .fn = s_bind_port,
	    .arg = "N", .help = "control listener port, on --bind-addr (the "
				"original mgrok's form of --addr)"),
	SRV("start-port", "start_port", .alias = "port_range_start",
	    .type = CT_PORT, .off = SOFF(start_port), .arg = "N",
	    .def = "10000", .help = "first public port", .example = "10000"),
	SRV("end-port", "end_port", .alias = "port_range_end",
	    .type = CT_PORT, .off = SOFF(end_port), .arg = "N", .def = "65535",
	    .help = "last public port", .example = "10999"),
	SRV("token", "tokens", .alias = "auth_token",
	    .flags = OF_LIST | OF_SECRET, .list = LG_TOKENS, .type = CT_FN,
	    .fn = s_token, .arg = "T", .help = "accepted token (repeatable; "
			 "in the file a list of\nsecrets or of {name, secret})"),
	SRV("token-file", "token_file", .flags = OF_FILE | OF_KEYFILE,
	    .list = LG_TOKENS, .type = CT_FN, .fn = s_token_file, .arg = "F",
	    .help = "tokens, one per line"),
	SRV("no-plain-token", "no_plain_token", .type = CT_BOOL,
	    .off = SOFF(no_plain_token), .def = "false",
	    .help = "refuse the legacy TOKEN method"),
	SRV("bind-addr", "bind_addr", .type = CT_BUF, .off = SOFF(bind_addr),
	    .max = 256, .arg = "HOST", .def = "all",
	    .help = "address of public listeners"),
	SRV("cluster", "cluster", .type = CT_FN, .fn = s_cluster,
	    .flags = OF_SECRET, .arg = "redis://HOST:PORT/DB", .def = "off",
	    .help = "share tunnels with the other nodes of a\ncluster, whose "
		    "state is in this Redis"),
	SRV("node-id", "node_id", .type = CT_FN, .fn = s_node_id, .arg = "ID",
	    .def = "the node address", .help = "this node's name in the "
					       "cluster"),
	SRV("node-addr", "node_addr", .type = CT_FN, .fn = s_node_addr,
	    .arg = "IP:PORT", .help = "where the other nodes reach this one\n"
				      "for node links (listened on)"),
	SRV("cluster-secret", "cluster_secret", .type = CT_FN,
	    .fn = s_cluster_secret, .flags = OF_SECRET, .arg = "SECRET",
	    .help = "authenticates node links (16 bytes or\nmore, the same "
		    "on every node; without\nit no visitor is forwarded)"),
	SRV("public-host", "public_host", .type = CT_BUF,
	    .off = SOFF(public_host), .max = 256, .arg = "HOST",
	    .help = "host name shown in URLs"),
	SRV("max-sessions", "max_sessions", .type = CT_UINT,
	    .off = SOFF(max_sessions), .min = 1, .max = 1000000, .arg = "N",
	    .def = "1000", .help = "authenticated sessions at once"),
	SRV("max-streams-per-session", "max_streams_per_session",
	    .type = CT_UINT, .off = SOFF(mux.max_streams), .min = 1,
	    .max = 1000000, .arg = "N", .def = "10000",
	    .help = "open streams per session"),
	SRV("max-proxies", "max_proxies", .type = CT_UINT,
	    .off = SOFF(max_proxies), .min = 1, .max = 10000, .arg = "N",
	    .def = "64", .help = "tunnels per session"),
	SRV("lease-grace", "lease_grace", .type = CT_UINT,
	    .off = SOFF(lease_grace_s), .min = 0, .max = 86400, .arg = "S",
	    .def = "30", .help = "keep ports of a lost client"),
	SRV("heartbeat", "heartbeat", .type = CT_UINT,
	    .off = SOFF(heartbeat_s), .min = 1, .max = 3600, .arg = "S",
	    .def = "10", .help = "heartbeat interval"),
	SRV("drain-timeout", "drain_timeout", .type = CT_UINT,
	    .off = SOFF(drain_s), .min = 0, .max = 3600, .arg = "S",
	    .def = "10", .help = "shutdown drain deadline"),
	SRV("stream-window", "stream_window", .type = CT_FN, .fn = s_window,
	    .arg = "BYTES", .def = "8388608",
	    .help = "largest per-stream receive window;\nwindows start at "
		    "1 MiB and grow"),
	SRV("udp-idle-timeout", "udp_idle_timeout", .type = CT_UINT,
	    .off = SOFF(udp_idle_s), .min = 1, .max = 86400, .arg = "S",
	    .def = "60", .help = "close idle UDP flows"),
	SRV("udp-max-flows", "udp_max_flows", .type = CT_UINT,
	    .off = SOFF(udp_max_flows), .min = 1, .max = 1000000, .arg = "N",
	    .def = "1024", .help = "flows per UDP proxy"),
	SRV("http-idle-timeout", "http_idle_timeout", .type = CT_UINT,
	    .off = SOFF(http_idle_s), .min = 1, .max = 86400, .arg = "S",
	    .def = "60", .help = "close idle HTTP keep-alive"),
	SRV("http-max-conns", "http_max_conns", .type = CT_UINT,
	    .off = SOFF(http_max_conns), .min = 1, .max = 1000000, .arg = "N",
	    .def = "10000", .help = "public HTTP(S) connections"),
	SRV("http-max-conns-per-tunnel", "http_max_conns_per_tunnel",
	    .type = CT_UINT, .off = SOFF(http_max_conns_tunnel), .min = 1,
	    .max = 1000000, .arg = "N", .def = "1000",
	    .help = "per HTTP tunnel"),
	SRV("max-handshakes", "max_handshakes", .type = CT_UINT,
	    .off = SOFF(max_handshakes), .min = 1, .max = 1000000, .arg = "N",
	    .def = "1000", .help = "TLS handshakes and SNI peeks\nunder way "
				   "at once"),
	SRV("tls", "tls", .alias = "enable_tls", .type = CT_BOOL,
	    .off = SOFF(tls), .def = "false", .help = "TLS on the control port"),
	SRV("tls-cert", "tls_cert", .alias = "tls_cert_file",
	    .flags = OF_FILE, .type = CT_STRP, .off = SOFF(tls_cert),
	    .arg = "F", .help = "the server's certificate"),
	SRV("tls-key", "tls_key", .alias = "tls_key_file",
	    .flags = OF_FILE | OF_KEYFILE, .type = CT_STRP,
	    .off = SOFF(tls_key), .arg = "F", .help = "the server's key"),
	SRV("tls-client-ca", "tls_client_ca", .flags = OF_FILE,
	    .type = CT_STRP, .off = SOFF(tls_client_ca), .arg = "F",
	    .help = "CA for client certificates (mTLS)"),
	SRV("tls-client-auth", "tls_client_auth", .type = CT_FN,
	    .fn = s_client_auth, .arg = "M", .def = "require",
	    .help = "require or optional"),
	SRV("domain", "domain", .type = CT_FN, .fn = s_domain, .arg = "D",
	    .help = "subdomains of HTTP tunnels: *.D"),
	SRV("http-addr", "http_addr", .type = CT_FN, .fn = s_http_addr,
	    .arg = "HOST:PORT", .help = "HTTP listener for HTTP tunnels"),
	SRV("https-addr", "https_addr", .type = CT_FN, .fn = s_https_addr,
	    .arg = "HOST:PORT", .help = "HTTPS listener (TLS tunnels by SNI)"),
	SRV("https-cert", "https_cert", .flags = OF_FILE, .type = CT_STRP,
	    .off = SOFF(https_cert), .arg = "F",
	    .help = "certificate for HTTPS (e.g. *.D)"),
	SRV("https-key", "https_key", .flags = OF_FILE | OF_KEYFILE,
	    .type = CT_STRP, .off = SOFF(https_key), .arg = "F",
	    .help = "its key"),
	SRV("https-cert-dir", "https_cert_dir", .type = CT_STRP,
	    .off = SOFF(https_cert_dir), .arg = "DIR",
	    .help = "NAME.pem + NAME.key per host, by SNI"),
	SRV("stream-allow", "stream_allow", .flags = OF_LIST,
	    .list = LG_ALLOW, .type = CT_FN, .fn = s_allow, .arg = "RULE",
	    .help = "stream proxy destination: host:port,\nhost:*, CIDR:port, "
		    "CIDR:* (repeat)"),
	SRV("trusted-proxies", "trusted_proxies", .type = CT_FN,
	    .fn = s_trusted, .arg = "CIDR,...", .help = "load balancers in "
		"front of the public\nlisteners: they send a PROXY protocol "
		"header\n(v1 or v2; HTTP: or X-Forwarded-For) with\nthe "
		"visitor's address; connections from\nanyone else are "
		"refused"),
	SRV("busy-poll", "busy_poll", .type = CT_UINT,
	    .off = SOFF(busy_poll_us), .min = 0, .max = 1000000, .arg = "USEC",
	    .def = "0", .help = "poll, not sleep, for USEC after I/O\n(latency "
				"for CPU; default 0: off)"),
	SRV("admin-addr", "admin_addr", .type = CT_FN, .fn = s_admin_addr,
	    .arg = "HOST:PORT", .def = "off", .help = "admin listener: /metrics, "
		"the JSON API,\nthe dashboard (loopback, or with a token\nor "
		"a client CA)", .example = "\"127.0.0.1:9100\""),
	SRV("admin-token", "admin_token", .flags = OF_SECRET, .type = CT_STRP,
	    .off = SOFF(admin_token), .arg = "T",
	    .help = "Bearer token the admin listener requires"),
	SRV("admin-cert", "admin_cert", .flags = OF_FILE, .type = CT_STRP,
	    .off = SOFF(admin_cert), .arg = "F",
	    .help = "HTTPS certificate for the admin listener"),
	SRV("admin-key", "admin_key", .flags = OF_FILE | OF_KEYFILE,
	    .type = CT_STRP, .off = SOFF(admin_key), .arg = "F",
	    .help = "its key"),
	SRV("admin-client-ca", "admin_client_ca", .flags = OF_FILE,
	    .type = CT_STRP, .off = SOFF(admin_client_ca), .arg = "F",
	    .help = "require admin clients' certificates\nsigned by this CA "
		    "(with --admin-cert)"),
	SRV("metrics-max-series", "metrics_max_series", .type = CT_UINT,
	    .off = SOFF(metrics_max_series), .min = 1, .max = 1000000,
	    .arg = "N", .def = "1000", .help = "per-tunnel or per-client series\nof a metric; more fold "
		"into \"other\""),
	SRV("log-level", "log_level", .type = CT_FN, .fn = s_log, .arg = "L",
	    .def = "info", .help = "error|warn|info|debug",
	    .example = "info"),
	SRV("help", NULL, .flags = OF_NOKEY, .type = CT_FN, .fn = no_op,
	    .help = "print this and exit"),

	/* the client */
	{ .flag = "config", .sides = SD_AGENT, .flags = OF_NOKEY,
	    .type = CT_FN, .fn = no_op, .arg = "FILE",
	    .def = "$XDG_CONFIG_HOME/mgrok/mgrok.yml if it exists",
	    .help = "read settings (and for start, tunnels) from\nthis YAML "
		    "file; a flag overrides its key" },
	{ .flag = "local", .key = "local", .sides = SD_CLIENT,
	    .flags = OF_LIST, .list = LG_LOCAL, .type = CT_FN, .fn = c_local,
	    .arg = "SPEC", .help = "a local service (repeat): [HOST:]PORT,\n"
				   "tcp:HOST:PORT, udp:HOST:PORT, or a URL:\n"
				   "tcp://, udp://, http://HOST:PORT" },
	{ .flag = "server", .key = "server", .sides = SD_AGENT,
	    .flags = OF_LIST, .list = LG_SERVER,
	    .type = CT_FN, .fn = c_server, .arg = "HOST[:PORT],...",
	    .def = "localhost:9000", .help = "the mgrok server (port 9000 "
					     "when not given); several\n(a "
					     "list, or repeat): the first "
					     "that\nanswers, the next one "
					     "when it is lost",
	    .example = "tunnel.example.com:9000" },
	{ .flag = "proxy", .key = "proxy", .sides = SD_AGENT,
	    .flags = OF_SECRET, .type = CT_FN, .fn = c_proxy, .arg = "URL",
	    .def = "$HTTPS_PROXY or $ALL_PROXY, unless\n$NO_PROXY lists the "
		   "server",
	    .help = "reach the server through an HTTP CONNECT\nor SOCKS5 "
		    "proxy: http://[USER:PASS@]HOST:PORT,\nsocks5://..., "
		    "socks5h://... (the proxy\nresolves the name); none: "
		    "no proxy",
	    .example = "http://proxy.corp.example:3128" },
	{ .flag = "token", .key = "token", .sides = SD_AGENT,
	    .flags = OF_SECRET, .type = CT_STRP, .off = COFF(token),
	    .arg = "T", .help = "auth token (or MGROK_TOKEN)" },
	/* per tunnel: in the file, keys of tunnels.NAME */
	{ .key = "type", .sides = SD_START, .flags = OF_TUNNEL | OF_NOFLAG,
	    .type = CT_FN, .fn = t_type, .arg = "tcp|udp|http|tls",
	    .def = "tcp", .help = "the tunnel's type (the subcommand)" },
	{ .key = "local", .alias = "local_addr", .sides = SD_START,
	    .flags = OF_TUNNEL | OF_NOFLAG, .type = CT_FN, .fn = t_local,
	    .arg = "[HOST:]PORT|URL", .help = "the local service (the "
			"subcommand's argument)" },
	{ .key = "local_ip", .sides = SD_START, .flags = OF_TUNNEL | OF_NOFLAG,
	    .type = CT_FN, .fn = t_local_ip, .arg = "HOST",
	    .def = "127.0.0.1", .help = "the local service's host (with "
					"local_port)" },
	{ .key = "local_port", .sides = SD_START,
	    .flags = OF_TUNNEL | OF_NOFLAG, .type = CT_FN, .fn = t_local_port,
	    .arg = "N", .help = "the local service's port" },
	{ .flag = "remote-port", .key = "remote_port",
	    .sides = SD_TCP | SD_UDP, .flags = OF_TUNNEL, .type = CT_FN,
	    .fn = t_remote_port, .arg = "N", .help = "public port to ask for" },
	{ .flag = "name", .key = "name", .sides = SD_ONE, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_name, .arg = "NAME",
	    .help = "tunnel name (in the file: the tunnel's key)" },
	{ .flag = "subdomain", .key = "subdomain", .sides = SD_HTTP | SD_TLS,
	    .flags = OF_TUNNEL, .type = CT_FN, .fn = t_subdomain, .arg = "S",
	    .help = "S.<server domain>" },
	{ .flag = "hostname", .key = "hostname", .sides = SD_HTTP | SD_TLS,
	    .flags = OF_TUNNEL, .type = CT_FN, .fn = t_hostname, .arg = "H",
	    .help = "a custom domain" },
	{ .flag = "basic-auth", .key = "basic_auth", .sides = SD_HTTP,
	    .flags = OF_TUNNEL | OF_SECRET, .type = CT_FN, .fn = t_basic_auth,
	    .arg = "USER:PASS", .help = "password-protect the tunnel" },
	{ .flag = "host-header", .key = "host_header", .sides = SD_HTTP,
	    .flags = OF_TUNNEL, .type = CT_FN, .fn = t_host_header,
	    .arg = "rewrite|preserve", .def = "preserve",
	    .help = "send Host: localhost:PORT to the\nlocal service, or the "
		    "visitor's (default)" },
	{ .flag = "allow-cidr", .key = "allow_cidr",
	    .sides = SD_TCP | SD_UDP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_allow_cidr, .arg = "CIDR,...",
	    .help = "only visitors from these networks\n(checked by the "
		    "server, within the\ntoken's own lists)" },
	{ .flag = "deny-cidr", .key = "deny_cidr",
	    .sides = SD_TCP | SD_UDP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_deny_cidr, .arg = "CIDR,...",
	    .help = "refuse visitors from these networks\n(checked by the "
		    "server)" },
	{ .flag = "group", .key = "group",
	    .sides = SD_TCP | SD_UDP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_group, .arg = "NAME",
	    .help = "share one public side with the other\ntunnels of this "
		    "group (any agent, any\nmachine): the server spreads the "
		    "visitors" },
	{ .flag = "group-key", .key = "group_key",
	    .sides = SD_TCP | SD_UDP | SD_HTTP | SD_TLS,
	    .flags = OF_TUNNEL | OF_SECRET, .type = CT_FN, .fn = t_group_key,
	    .arg = "SECRET", .help = "the group's key: every member gives "
				     "the\nsame" },
	{ .flag = "group-strategy", .key = "group_strategy",
	    .sides = SD_TCP | SD_UDP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_group_strategy, .arg = "S",
	    .def = "round_robin",
	    .help = "round_robin, least_conn, hash:source_ip,\nhash:host or "
		    "hash:header:NAME (the\ngroup's first member sets it)" },
	{ .flag = "group-weight", .key = "group_weight",
	    .sides = SD_TCP | SD_UDP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_group_weight, .arg = "N", .def = "1",
	    .help = "this member's share of the visitors\n(1-1000)" },
	{ .flag = "bandwidth", .key = "bandwidth",
	    .sides = SD_TCP | SD_UDP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_bandwidth, .arg = "RATE", .def = "off",
	    .help = "at most RATE (e.g. 5MB/s) each way,\nenforced by the "
		    "server" },
	{ .flag = "proxy-protocol", .key = "proxy_protocol",
	    .sides = SD_TCP | SD_UDP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_proxy_protocol, .arg = "v1|v2",
	    .def = "off",
	    .help = "write a PROXY protocol header with the\nvisitor's address "
		    "to the local service\n(udp: v2 only, one per datagram)" },
	/* the health check: in the file one mapping, health: {type: http,
	 * path: ..., ...}; yaml.c reads its keys as health.KEY */
	{ .flag = "health", .key = "health", .sides = SD_TCP | SD_HTTP | SD_TLS,
	    .flags = OF_TUNNEL, .type = CT_FN, .fn = t_health,
	    .arg = "tcp|http|tls|off", .def = "off",
	    .help = "check the local service: connect (tcp),\nGET a path "
		    "(http) or a TLS handshake\n(tls); the server is told "
		    "when it goes\ndown or up. In the file a mapping:\n"
		    "health: {type: http, path: /healthz,\nexpect, interval, "
		    "timeout, rise, fall}" },
	{ .flag = "health-path", .key = "health.path",
	    .sides = SD_TCP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_health_path, .arg = "PATH", .def = "/",
	    .help = "the path an http check asks for" },
	{ .flag = "health-expect", .key = "health.expect",
	    .sides = SD_TCP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_health_expect, .arg = "CODES",
	    .def = "200-399", .help = "statuses an http check takes as up:\n"
				      "200, 200-399 or 200,204" },
	{ .flag = "health-interval", .key = "health.interval",
	    .sides = SD_TCP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_health_interval, .arg = "DURATION",
	    .def = "5s", .help = "time between checks (5s, 500ms, 1m)" },
	{ .flag = "health-timeout", .key = "health.timeout",
	    .sides = SD_TCP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_health_timeout, .arg = "DURATION",
	    .def = "2s, or half the interval if shorter",
	    .help = "a check not done by then failed; shorter\nthan the "
		    "interval" },
	{ .flag = "health-rise", .key = "health.rise",
	    .sides = SD_TCP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_health_rise, .arg = "N", .def = "2",
	    .help = "checks passed in a row to be up (1-100)" },
	{ .flag = "health-fall", .key = "health.fall",
	    .sides = SD_TCP | SD_HTTP | SD_TLS, .flags = OF_TUNNEL,
	    .type = CT_FN, .fn = t_health_fall, .arg = "N", .def = "3",
	    .help = "checks failed in a row to be down (1-100)" },
	/* the agent */
	{ .flag = "udp-idle-timeout", .key = "udp_idle_timeout",
	    .sides = SD_UDP | SD_CLIENT | SD_START, .type = CT_UINT,
	    .off = COFF(udp_idle_s), .min = 1, .max = 86400, .arg = "S",
	    .def = "60", .help = "close idle UDP flows" },
	{ .flag = "no-reconnect", .key = "no_reconnect", .sides = SD_AGENT,
	    .type = CT_BOOL, .off = COFF(no_reconnect), .def = "false",
	    .help = "exit when the session is lost" },
	{ .flag = "reconnect-attempts", .key = "reconnect_attempts",
	    .sides = SD_AGENT, .type = CT_UINT, .off = COFF(reconnect_attempts),
	    .min = 0, .max = 1000000, .arg = "N", .def = "0",
	    .help = "give up after N failed attempts in a row\n(default 0: "
		    "retry forever, every 30 s at most)" },
	{ .flag = "client-id", .key = "client_id", .sides = SD_AGENT,
	    .type = CT_FN, .fn = c_client_id, .arg = "HEX",
	    .help = "32 hex digits (default: one per agent, derived\nfrom "
		    "$XDG_STATE_HOME/mgrok/client_id, the\nserver and the "
		    "tunnels)" },
	{ .flag = "tls", .key = "tls", .sides = SD_AGENT, .type = CT_BOOL,
	    .off = COFF(tls), .def = "false", .help = "TLS to the server" },
	{ .flag = "tls-ca", .key = "tls_ca", .sides = SD_AGENT,
	    .flags = OF_FILE, .type = CT_STRP, .off = COFF(tls_ca), .arg = "F",
	    .help = "CA for the server (default: system)" },
	{ .flag = "tls-server-name", .key = "tls_server_name",
	    .sides = SD_AGENT, .type = CT_STRP, .off = COFF(tls_server_name),
	    .arg = "N", .help = "name to verify (default: --server)" },
	{ .flag = "tls-pin", .key = "tls_pin", .sides = SD_AGENT,
	    .type = CT_STRP, .off = COFF(tls_pin), .arg = "sha256:HEX",
	    .help = "pin the server's certificate" },
	{ .flag = "tls-cert", .key = "tls_cert", .sides = SD_AGENT,
	    .flags = OF_FILE, .type = CT_STRP, .off = COFF(tls_cert),
	    .arg = "F", .help = "client certificate (mTLS)" },
	{ .flag = "tls-key", .key = "tls_key", .sides = SD_AGENT,
	    .flags = OF_FILE | OF_KEYFILE, .type = CT_STRP,
	    .off = COFF(tls_key), .arg = "F", .help = "its key" },
	{ .flag = "stream-window", .key = "stream_window", .sides = SD_AGENT,
	    .type = CT_FN, .fn = c_window, .arg = "BYTES", .def = "8388608",
	    .help = "largest per-stream receive window;\nwindows start at "
		    "1 MiB and grow" },
	{ .flag = "busy-poll", .key = "busy_poll", .sides = SD_AGENT,
	    .type = CT_UINT, .off = COFF(busy_poll_us), .min = 0,
	    .max = 1000000, .arg = "USEC", .def = "0",
	    .help = "poll, not sleep, for USEC after I/O\n(latency for CPU; "
		    "default 0: off)" },
	{ .flag = "inspect-addr", .key = "inspect_addr", .sides = SD_AGENT,
	    .type = CT_FN, .fn = c_inspect_addr, .arg = "HOST:PORT|off",
	    .def = "127.0.0.1:4040", .help = "the inspector: requests, replay, "
		"/metrics\n(the default moves to the next free port\nup to "
		"4049 when taken)" },
	{ .flag = "inspect-capture-secrets", .key = "inspect_capture_secrets",
	    .sides = SD_AGENT, .type = CT_BOOL,
	    .off = COFF(inspect_capture_secrets), .def = "false",
	    .help = "keep Authorization, Cookie and\nSet-Cookie values "
		    "(redacted by default)" },
	{ .flag = "inspect-body-max", .key = "inspect_body_max",
	    .sides = SD_AGENT, .type = CT_FN, .fn = c_inspect_body_max,
	    .arg = "BYTES", .def = "65536",
	    .help = "bytes of each request and response body\nkept" },
	{ .flag = "inspect-max-bytes", .key = "inspect_max_bytes",
	    .sides = SD_AGENT, .type = CT_FN, .fn = c_inspect_max_bytes,
	    .arg = "BYTES", .def = "10485760",
	    .help = "bytes of captures kept in all; the\noldest go first" },
	{ .flag = "inspect-max-requests", .key = "inspect_max_requests",
	    .sides = SD_AGENT, .type = CT_UINT,
	    .off = COFF(inspect_max_requests), .min = 1, .max = 1000000,
	    .arg = "N", .def = "1000", .help = "requests kept" },
	{ .flag = "inspect-max-connections", .key = "inspect_max_connections",
	    .sides = SD_AGENT, .type = CT_UINT,
	    .off = COFF(inspect_max_conns), .min = 1, .max = 1000000,
	    .arg = "N", .def = "1000", .help = "connection records kept" },
	{ .flag = "metrics-max-series", .key = "metrics_max_series",
	    .sides = SD_AGENT, .type = CT_UINT,
	    .off = COFF(metrics_max_series), .min = 1, .max = 1000000,
	    .arg = "N", .def = "1000", .help = "per-tunnel series of a metric;\nmore fold into \"other\"" },
	{ .flag = "log-level", .key = "log_level", .sides = SD_AGENT,
	    .type = CT_FN, .fn = c_log, .arg = "L", .def = "info",
	    .help = "error|warn|info|debug", .example = "info" },
	{ .flag = "help", .sides = SD_AGENT, .flags = OF_NOKEY, .type = CT_FN,
	    .fn = no_op, .help = "print this and exit" },
};
const size_t conf_nopts = sizeof(conf_opts) / sizeof(conf_opts[0]);

static int
opt_side_ok(const struct conf_opt *o, int server)
{
	return server ? (o->sides & SD_SERVER) != 0 :
	    (o->sides & SD_AGENT) != 0;
}

const struct conf_opt *
conf_opt_by_key(int server, int tunnel, const char *key)
{
	for (size_t i = 0; i < conf_nopts; i++) {
		const struct conf_opt *o = &conf_opts[i];
		if (!opt_side_ok(o, server) || o->key == NULL ||
		    !(o->flags & OF_TUNNEL) != !tunnel)
			continue;
		if (strcmp(o->key, key) == 0 ||
		    (o->alias && strcmp(o->alias, key) == 0))
			return o;
	}
	return NULL;
}

const struct conf_opt *
conf_opt_by_flag(int server, const char *flag)
{
	for (size_t i = 0; i < conf_nopts; i++) {
		const struct conf_opt *o = &conf_opts[i];
		if (opt_side_ok(o, server) && o->flag &&
		    strcmp(o->flag, flag) == 0)
			return o;
	}
	return NULL;
}

static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[64], prev, tmp;

	if (la > 60 || lb > 60)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t best = prev + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			tmp = row[j];
			row[j] = best;
			prev = tmp;
		}
	}
	return row[lb];
}

const char *
conf_opt_nearest(int server, int tunnel, const char *key)
{
	static const char *extra_c[] = { "version", "tunnels", "proxies" };
	static const char *extra_s[] = { "version", "certs" };
	const char *best = NULL;
	size_t bd = 99, lim = strlen(key) <= 4 ? 1 : strlen(key) <= 8 ? 2 : 3;

	for (size_t i = 0; i < conf_nopts; i++) {
		const struct conf_opt *o = &conf_opts[i];
		const char *ks[2] = { o->key, o->alias };
		if (!opt_side_ok(o, server) || o->key == NULL ||
		    !(o->flags & OF_TUNNEL) != !tunnel)
			continue;
		for (int k = 0; k < 2; k++) {
			size_t dd;
			/* health.KEY: a key of the health mapping */
			if (ks[k] == NULL || strchr(ks[k], '.') != NULL)
				continue;
			dd = edit_distance(key, ks[k]);
			if (dd < bd) {
				bd = dd;
				best = ks[k];
			}
		}
	}
	if (!tunnel) {
		const char **ex = server ? extra_s : extra_c;
		size_t n = server ? 2 : 3;
		for (size_t i = 0; i < n; i++) {
			size_t dd = edit_distance(key, ex[i]);
			if (dd < bd) {
				bd = dd;
				best = ex[i];
			}
		}
	}
	return bd <= lim ? best : NULL;
}

const char *
conf_word_nearest(const char *key, const char *const *words, size_t n)
{
	const char *best = NULL;
	size_t bd = 99, lim = strlen(key) <= 4 ? 1 : strlen(key) <= 8 ? 2 : 3;

	for (size_t i = 0; i < n; i++) {
		size_t dd = edit_distance(key, words[i]);
		if (dd < bd) {
			bd = dd;
			best = words[i];
		}
	}
	return bd <= lim ? best : NULL;
}

const char *
conf_flag_nearest(int server, const char *flag)
{
	const char *best = NULL;
	char name[64];
	size_t bd = 99, lim;

	snprintf(name, sizeof(name), "%.*s", (int)strcspn(flag, "="), flag);
	lim = strlen(name) <= 4 ? 1 : strlen(name) <= 8 ? 2 : 3;
	for (size_t i = 0; i < conf_nopts; i++) {
		const struct conf_opt *o = &conf_opts[i];
		size_t dd;
		if (!opt_side_ok(o, server) || o->flag == NULL)
			continue;
		if ((dd = edit_distance(name, o->flag)) < bd) {
			bd = dd;
			best = o->flag;
		}
	}
	return bd <= lim ? best : NULL;
}

/* ------------------------------------------------------------ setting */

static void
list_clear(struct ld *L, int lg)
{
	if (lg == LG_TOKENS) {
		for (size_t i = 0; i < L->s->ntokens; i++) {
			if (L->s->tokens[i])
				memset(L->s->tokens[i], 0,
				    strlen(L->s->tokens[i]));
			free(L->s->tokens[i]);
			free(L->s->token_names[i]);
			L->s->tokens[i] = L->s->token_names[i] = NULL;
			/* the file's policies stay owned by s->policies */
			L->s->token_policy[i] = NULL;
		}
		L->s->ntokens = 0;
	} else if (lg == LG_ALLOW) {
		L->s->nstream_allow = 0;
	} else if (lg == LG_LOCAL) {
		L->c->nlocals = 0;
	} else if (lg == LG_SERVER) {
		L->c->server[0] = '\0';
		L->server_set = 1;
	}
}

int
conf_opt_set(struct ld *L, const struct conf_opt *o, const char *v)
{
	char why[200] = "";
	char *base = L->server ? (char *)L->s : (char *)L->c;
	unsigned long n;
	int b, rc = 0;

	if (o->list && !L->cur.in_file && !L->list_flagged[o->list]) {
		/* the first flag of a list replaces what the file said */
		list_clear(L, o->list);
		L->list_flagged[o->list] = 1;
	}
	switch (o->type) {
	case CT_BOOL:
		if (v == NULL)
			b = 1;
		else if (parse_bool(v, &b)) {
			rc = -1;
			why_set(why, sizeof(why), "expected true or false");
			break;
		}
		*(int *)(void *)(base + o->off) = b;
		break;
	case CT_UINT:
		if (parse_ulong(v, o->min, o->max, &n)) {
			rc = -1;
			snprintf(why, sizeof(why), "expected a number from %lu "
			    "to %lu", o->min, o->max);
			break;
		}
		*(unsigned *)(void *)(base + o->off) = (unsigned)n;
		break;
	case CT_PORT:
		if (parse_ulong(v, 1, 65535, &n)) {
			rc = -1;
			why_set(why, sizeof(why), PORT_RANGE_MSG);
			break;
		}
		*(uint16_t *)(void *)(base + o->off) = (uint16_t)n;
		break;
	case CT_STRP: {
		char **dst = (char **)(void *)(base + o->off);
		if (*dst && (o->flags & OF_SECRET))
			memset(*dst, 0, strlen(*dst));
		free(*dst);
		*dst = xstrdup(v);
		break;
	}
	case CT_BUF:
		if (strlen(v) >= o->max) {
			rc = -1;
			why_set(why, sizeof(why), "too long");
			break;
		}
		snprintf(base + o->off, o->max, "%s", v);
		break;
	case CT_FN:
		rc = o->fn(L, v, why, sizeof(why));
		break;
	}
	if (rc == -1)
		ld_bad(L, why, (o->flags & OF_SECRET) ? "(hidden)" : v);
	if (rc == 0 && !(o->flags & OF_TUNNEL))
		L->org[o - conf_opts] = L->cur;
	return rc ? -1 : 0;
}

/* ------------------------------------------------------------ secrets */

char *
conf_secret_file(struct ld *L, const char *path)
{
	char line[1100], *res = NULL, *t = line;
	struct stat st;
	FILE *f = NULL;
	size_t len;

	if ((f = fopen(path, "r")) == NULL) {
		char why[400];
		snprintf(why, sizeof(why), "file:%s: %s", path,
		    strerror(errno));
		ld_bad(L, why, "");
		goto out;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
		char why[400];
		snprintf(why, sizeof(why), "%s holds a secret and others can "
		    "read it (mode %03o): chmod 600 %s", path,
		    (unsigned)(st.st_mode & 0777), path);
		ld_warn_at(L, &L->cur, why);
	}
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	len = strlen(line);
	while (len > 0 && isspace((unsigned char)t[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)*t)) {
		t++;
		len--;
	}
	if (len == 0) {
		char why[400];
		snprintf(why, sizeof(why), "file:%s is empty", path);
		ld_bad(L, why, "");
		goto out;
	}
	res = xstrndup(t, len);
out:
	if (f)
		fclose(f);
	memset(line, 0, sizeof(line));
	return res;
}

char *
conf_expand(struct ld *L, const char *v, int tilde)
{
	size_t cap = strlen(v) + 1, len = 0;
	char *out = xmalloc(cap);
	const char *p = v;

	if (tilde && v[0] == '~' && (v[1] == '/' || v[1] == '\0')) {
		const char *home = getenv("HOME");
		if (home == NULL || *home == '\0') {
			ld_bad(L, "~ but HOME is not set", v);
			free(out);
			return NULL;
		}
		cap += strlen(home);
		out = xrealloc(out, cap);
		len = (size_t)snprintf(out, cap, "%s", home);
		p = v + 1;
	}
	while (*p) {
		if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
			out[len++] = '$'; /* $${ is a literal ${ */
			p += 2;
			continue;
		}
		if (p[0] == '$' && p[1] == '{') {
			const char *end = strchr(p + 2, '}'), *val;
			char name[128];
			size_t nl, vl;
			if (end == NULL || end == p + 2 ||
			    (size_t)(end - p - 2) >= sizeof(name)) {
				ld_bad(L, "expected ${NAME}", "");
				free(out);
				return NULL;
			}
			nl = (size_t)(end - p - 2);
			memcpy(name, p + 2, nl);
			name[nl] = '\0';
			for (size_t i = 0; i < nl; i++) {
				if (!isalnum((unsigned char)name[i]) &&
				    name[i] != '_') {
					ld_bad(L, "expected ${NAME} (letters, "
					    "digits, _)", "");
					free(out);
					return NULL;
				}
			}
			if ((val = getenv(name)) == NULL) {
				char why[200];
				snprintf(why, sizeof(why), "${%s} is not set "
				    "in the environment", name);
				ld_bad(L, why, "");
				free(out);
				return NULL;
			}
			vl = strlen(val);
			cap += vl;
			out = xrealloc(out, cap);
			memcpy(out + len, val, vl);
			len += vl;
			p = end + 1;
			continue;
		}
		out[len++] = *p++;
	}
	out[len] = '\0';
	return out;
}

/* ------------------------------------------------------------ defaults */

void
conf_server_defaults(struct server_conf *c)
{
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
	c->metrics_max_series = 1000;
	c->log_level = LOG_INFO;
	mux_config_default(&c->mux);
	c->mux.max_streams = 10000;
}

void
conf_client_defaults(struct client_conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->server, sizeof(c->server), "localhost:9000");
	c->reconnect_attempts = 0; /* forever, as frpc and ngrok do */
	c->udp_idle_s = 60;
	snprintf(c->inspect_addr, sizeof(c->inspect_addr), "127.0.0.1:4040");
	c->inspect_body_max = 64 << 10;
	c->inspect_max_bytes = 10 << 20;
	c->inspect_max_requests = 1000;
	c->inspect_max_conns = 1000;
	c->metrics_max_series = 1000;
	c->log_level = LOG_INFO;
	mux_config_default(&c->mux);
}
