/* conf.c: loading a configuration: defaults, the config file, then the
 * flags (all through the option table of opts.c), and the checks across
 * options. Every problem is collected with the flag or file:line:column
 * and key that caused it; nothing is printed here. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf_int.h"
#include "proto/ctrl.h"
#include "util/err.h"
#include "util/xmalloc.h"

/* ------------------------------------------------------------ diagnostics */

void
conf_diag_init(struct conf_diag *d)
{
	memset(d, 0, sizeof(*d));
}

void
conf_diag_free(struct conf_diag *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].text);
	free(d->v);
	memset(d, 0, sizeof(*d));
}

void
conf_diag_add(struct conf_diag *d, int is_error, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (is_error)
		d->nerrors++;
	if (d->n >= CONF_DIAG_MAX) {
		d->dropped++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (d->n == d->cap) {
		d->cap = d->cap ? 2 * d->cap : 8;
		d->v = xrealloc(d->v, d->cap * sizeof(*d->v));
	}
	d->v[d->n].is_error = is_error;
	d->v[d->n].text = xstrdup(buf);
	d->n++;
}

const char *
ld_name(struct ld *L, const struct conf_where *w, const char *flag,
    char *buf, size_t cap)
{
	if (w && w->in_file)
		snprintf(buf, cap, "%s:%d:%d: %s", L->file ? L->file : "?",
		    w->line, w->col, w->key);
	else if (w && w->set && w->key[0])
		snprintf(buf, cap, "%s", w->key);
	else
		snprintf(buf, cap, "%s", flag ? flag : "mgrok");
	return buf;
}

static void
report(struct ld *L, int is_error, const struct conf_where *w,
    const char *why, const char *v)
{
	char name[1200];

	ld_name(L, w, NULL, name, sizeof(name));
	if (v && *v)
		conf_diag_add(L->d, is_error, "%s: %s (got \"%s\")", name, why,
		    v);
	else
		conf_diag_add(L->d, is_error, "%s: %s", name, why);
	if (is_error && w && !w->in_file)
		L->flag_errors++;
}

void
ld_bad(struct ld *L, const char *why, const char *v)
{
	report(L, 1, &L->cur, why, v);
}

void
ld_bad_at(struct ld *L, const struct conf_where *w, const char *why,
    const char *v)
{
	report(L, 1, w, why, v);
}

void
ld_warn_at(struct ld *L, const struct conf_where *w, const char *why)
{
	report(L, 0, w, why, NULL);
}

/* an error not about one option: "what: why" */
static void
bad_plain(struct ld *L, const char *what, const char *why, const char *v)
{
	struct conf_where w = { .set = 1 };

	snprintf(w.key, sizeof(w.key), "%.500s", what);
	report(L, 1, &w, why, v);
}

static size_t
opt_index(int server, const char *flag)
{
	const struct conf_opt *o = conf_opt_by_flag(server, flag);

	return o ? (size_t)(o - conf_opts) : 0;
}

/* where the option with this flag was set (a zeroed place if never) */
static const struct conf_where *
org_of(struct ld *L, const char *flag)
{
	return &L->org[opt_index(L->server, flag)];
}

/* how to name the option in a message: --flag, or the key when the
 * value came from the file */
static const char *
oname(struct ld *L, const char *flag, char *buf, size_t cap)
{
	const struct conf_opt *o = conf_opt_by_flag(L->server, flag);

	if (o && org_of(L, flag)->in_file)
		snprintf(buf, cap, "%s", o->key);
	else
		snprintf(buf, cap, "--%s", flag);
	return buf;
}

/* an error about the option of this flag, at the place it was set */
static void
bad_opt(struct ld *L, const char *flag, const char *why)
{
	const struct conf_where *w = org_of(L, flag);
	struct conf_where fw = { .set = 1 };

	if (!w->set) {
		snprintf(fw.key, sizeof(fw.key), "--%s", flag);
		w = &fw;
	}
	report(L, 1, w, why, NULL);
}

/* ------------------------------------------------------------ the file */

/* the default config file of a side, if it exists: into buf */
static const char *
default_file(int server, char *buf, size_t cap)
{
	const char *e, *home;

	if (server) {
		e = getenv("MGROK_SERVER_CONFIG");
		snprintf(buf, cap, "%s", e && *e ? e : "/etc/mgrok/server.yml");
	} else if ((e = getenv("MGROK_CONFIG")) != NULL && *e) {
		snprintf(buf, cap, "%s", e);
	} else if ((e = getenv("XDG_CONFIG_HOME")) != NULL && *e == '/') {
		snprintf(buf, cap, "%s/mgrok/mgrok.yml", e);
	} else if ((home = getenv("HOME")) != NULL && *home) {
		snprintf(buf, cap, "%s/.config/mgrok/mgrok.yml", home);
	} else {
		return NULL;
	}
	return access(buf, F_OK) == 0 ? buf : NULL;
}

/* ------------------------------------------------------------ flags */

static unsigned
cmd_side(const char *cmd)
{
	static const struct {
		const char *n;
		unsigned s;
	} cmds[] = { { "server", SD_SERVER }, { "tcp", SD_TCP },
		{ "udp", SD_UDP }, { "http", SD_HTTP }, { "tls", SD_TLS },
		{ "client", SD_CLIENT }, { "start", SD_START } };

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmd, cmds[i].n) == 0)
			return cmds[i].s;
	return SD_TCP;
}

/* getopt_long's table: every flag of the side (a client command takes
 * every client flag; the checks say which do not apply to it) */
static struct option *
build_longopts(int server)
{
	struct option *v = xcalloc(conf_nopts + 1, sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; i < conf_nopts; i++) {
		const struct conf_opt *o = &conf_opts[i];
		if (o->flag == NULL || !(o->sides & (server ? SD_SERVER :
		    SD_AGENT)))
			continue;
		v[n].name = o->flag;
		v[n].has_arg = o->arg ? required_argument : no_argument;
		v[n].flag = NULL;
		v[n].val = 256 + (int)i;
		n++;
	}
	return v;
}

/*
 * One pass over argv. apply 0: only find --config and --help; apply 1:
 * set every flag. Returns 1 when --help was given. Positional arguments
 * are left from *first_arg on (getopt moves them to the end).
 */
static int
flags_pass(struct ld *L, int argc, char **argv, int apply,
    const char **config, int *first_arg)
{
	struct option *lo = build_longopts(L->server);
	int o, help = 0;

	optind = 0; /* GNU: start over, as for a new argv */
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		const struct conf_opt *opt;
		if (o == ':' || o == '?' || o < 256) {
			const char *a = argv[optind - 1], *near;
			char why[200];
			if (apply && o == ':') {
				bad_plain(L, a, "needs a value", "");
			} else if (apply) {
				near = strncmp(a, "--", 2) == 0 ?
				    conf_flag_nearest(L->server, a + 2) : NULL;
				if (near)
					snprintf(why, sizeof(why), "unknown "
					    "option (did you mean --%s?)", near);
				else
					snprintf(why, sizeof(why), "unknown "
					    "option");
				bad_plain(L, a, why, "");
			}
			continue;
		}
		opt = &conf_opts[o - 256];
		if (strcmp(opt->flag, "help") == 0) {
			help = 1;
			continue;
		}
		if (strcmp(opt->flag, "config") == 0) {
			if (config)
				*config = optarg;
			continue;
		}
		if (!apply)
			continue;
		memset(&L->cur, 0, sizeof(L->cur));
		L->cur.set = 1;
		snprintf(L->cur.key, sizeof(L->cur.key), "--%s", opt->flag);
		if ((opt->flags & OF_TUNNEL) && L->cmd == SD_START) {
			char why[200];
			snprintf(why, sizeof(why), "mgrok start takes its "
			    "tunnels from the config file: set tunnels.NAME.%s "
			    "there", opt->key);
			ld_bad(L, why, "");
			continue;
		}
		L->tun = &L->flagtun;
		conf_opt_set(L, opt, optarg);
		L->tun = NULL;
	}
	*first_arg = optind;
	free(lo);
	return help;
}

/* ------------------------------------------------------------ checks */

static void
check_file(struct ld *L, const char *flag, const char *path)
{
	const struct conf_where *w = org_of(L, flag);
	struct stat st;
	FILE *f;

	if (path == NULL)
		return;
	if ((f = fopen(path, "r")) == NULL) {
		char why[1200], name[1200];
		if (w->in_file) {
			snprintf(why, sizeof(why), "%s: %s", path,
			    strerror(errno));
			ld_bad_at(L, w, why, "");
		} else {
			/* the historical form: "--tls-cert F: reason" */
			snprintf(name, sizeof(name), "--%s %s", flag, path);
			bad_plain(L, name, strerror(errno), "");
		}
		return;
	}
	if (w->in_file && (conf_opt_by_flag(L->server, flag)->flags &
	    OF_KEYFILE) && fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
		char why[600];
		snprintf(why, sizeof(why), "%s holds a secret and others can "
		    "read it (mode %03o): chmod 600 %s", path,
		    (unsigned)(st.st_mode & 0777), path);
		ld_warn_at(L, w, why);
	}
	fclose(f);
}

static void
server_checks(struct ld *L)
{
	struct server_conf *c = L->s;
	char a[200], b[300];

	if (L->bind_port[0] && !org_of(L, "addr")->set)
		snprintf(c->addr, sizeof(c->addr),
		    strchr(c->bind_addr, ':') ? "[%s]:%s" : "%s:%s",
		    c->bind_addr, L->bind_port);
	else if (L->bind_port[0])
		ld_warn_at(L, org_of(L, "bind-port"), "ignored: addr (--addr) "
		    "names the control listener");
	if (c->end_port < c->start_port) {
		snprintf(b, sizeof(b), "must not be below %s",
		    oname(L, "start-port", a, sizeof(a)));
		bad_opt(L, "end-port", b);
	}
	check_file(L, "tls-cert", c->tls_cert);
	check_file(L, "tls-key", c->tls_key);
	check_file(L, "tls-client-ca", c->tls_client_ca);
	check_file(L, "https-cert", c->https_cert);
	check_file(L, "https-key", c->https_key);
	check_file(L, "admin-cert", c->admin_cert);
	check_file(L, "admin-key", c->admin_key);
	check_file(L, "admin-client-ca", c->admin_client_ca);
	if (L->d->nerrors)
		return; /* the rest would repeat these */
	if ((c->admin_cert == NULL) != (c->admin_key == NULL))
		bad_opt(L, c->admin_cert ? "admin-cert" : "admin-key",
		    "--admin-cert and --admin-key go together");
	if (c->admin_client_ca && c->admin_cert == NULL)
		bad_opt(L, "admin-client-ca", "needs --admin-cert and "
		    "--admin-key (client certificates need HTTPS)");
	if (c->admin_token && c->admin_token[0] == '\0')
		bad_opt(L, "admin-token", "must not be empty");
	if ((c->tls_cert || c->tls_key || c->tls_client_ca) && !c->tls)
		c->tls = 1; /* certificate options imply --tls */
	if (c->tls && (c->tls_cert == NULL || c->tls_key == NULL))
		bad_opt(L, "tls", org_of(L, "tls")->in_file ?
		    "needs tls_cert and tls_key" :
		    "needs --tls-cert and --tls-key");
	if (c->tls_client_auth && c->tls_client_ca == NULL)
		bad_opt(L, "tls-client-auth", "needs --tls-client-ca");
	if (c->tls_client_ca && c->tls_client_auth == 0)
		c->tls_client_auth = 2;
	if ((c->https_cert == NULL) != (c->https_key == NULL))
		bad_opt(L, c->https_cert ? "https-cert" : "https-key",
		    "--https-cert and --https-key go together");
	if ((c->https_cert || c->https_cert_dir) && c->https_addr[0] == '\0')
		bad_opt(L, c->https_cert ? "https-cert" : "https-cert-dir",
		    "needs --https-addr");
	if (c->nstream_allow && c->tls_client_ca == NULL)
		bad_opt(L, "stream-allow", "the stream proxy needs mTLS: give "
		    "--tls-cert, --tls-key and --tls-client-ca");
	if (c->ntokens == 0) {
		const char *env = getenv("MGROK_TOKEN");
		if (env && *env) {
			memset(&L->cur, 0, sizeof(L->cur));
			L->cur.set = 1;
			snprintf(L->cur.key, sizeof(L->cur.key), "MGROK_TOKEN");
			conf_tok_add(L, env, strlen(env), NULL);
		}
	}
	if (c->ntokens == 0 && !L->check_only)
		bad_plain(L, "server", "no token given: use --token, "
		    "--token-file or MGROK_TOKEN (or tokens: in the config "
		    "file)", "");
	c->mux.keepalive_ms = c->heartbeat_s * 1000;
	c->mux.dead_ms = c->heartbeat_s * 3000;
}

static const char *
type_name(uint8_t t)
{
	return t == PROXY_UDP ? "udp" : t == PROXY_HTTP ? "http" :
	    t == PROXY_TLS ? "tls" : "tcp";
}

/* the duration for a message: "2 s", "1.5 s" or "150 ms" */
static const char *
ms_text(unsigned ms, char *buf, size_t cap)
{
	if (ms % 1000 == 0)
		snprintf(buf, cap, "%u s", ms / 1000);
	else if (ms >= 1000 && ms % 100 == 0)
		snprintf(buf, cap, "%u.%u s", ms / 1000, ms % 1000 / 100);
	else
		snprintf(buf, cap, "%u ms", ms);
	return buf;
}

/* t's health check: complete (defaults filled in) and consistent? 0 or
 * -1 (reported at where the check was set: flag or file) */
static int
check_health(struct ld *L, struct conf_tun *t, int file)
{
	struct health_spec *h = &t->spec.health;
	char why[300], a[32], b[32];

	if (h->type == HEALTH_OFF) {
		if (t->have_health_opt && !t->have_health_type) {
			ld_bad_at(L, &t->w_health, file ? "give type: tcp, "
			    "http or tls" : "the --health-* options need "
			    "--health tcp|http|tls", "");
			return -1;
		}
		memset(h, 0, sizeof(*h));
		return 0;
	}
	if (t->spec.type == PROXY_UDP) {
		ld_bad_at(L, &t->w_health, "health checks are for tcp, http "
		    "and tls tunnels", "");
		return -1;
	}
	conf_health_defaults(h);
	if (h->timeout_ms >= h->interval_ms) {
		snprintf(why, sizeof(why), "%s (%s) must be shorter than %s "
		    "(%s)", file ? "timeout" : "--health-timeout",
		    ms_text(h->timeout_ms, a, sizeof(a)),
		    file ? "interval" : "--health-interval",
		    ms_text(h->interval_ms, b, sizeof(b)));
		ld_bad_at(L, &t->w_health, why, "");
		return -1;
	}
	return 0;
}

/* a tunnel of the file: complete and consistent? 0 or -1 (reported) */
static int
check_tunnel(struct ld *L, struct conf_tun *t)
{
	struct local_spec *s = &t->spec;
	uint8_t ty = s->type;
	char why[300];

	if (!t->have_local && !t->have_local_port) {
		ld_bad_at(L, &t->where, "needs local: [HOST:]PORT (or "
		    "local_port)", "");
		return -1;
	}
	if (t->have_local_ip && t->have_local) {
		ld_bad_at(L, &t->where, "give local or local_ip, not both", "");
		return -1;
	}
	if (t->have_local_ip)
		snprintf(s->host, sizeof(s->host), "%s", t->local_ip);
	else if (!t->have_local) /* local_port alone: frp's and the
				   original mgrok's default host */
		snprintf(s->host, sizeof(s->host), "127.0.0.1");
	if (t->have_remote && (ty == PROXY_HTTP || ty == PROXY_TLS)) {
		ld_bad_at(L, &t->w_remote, "HTTP and TLS tunnels are routed by "
		    "host name, not by port", "");
		return -1;
	}
	if ((s->subdomain[0] || s->hostname[0] || s->basic_auth[0] ||
	    s->host_rewrite) && ty != PROXY_HTTP && ty != PROXY_TLS) {
		snprintf(why, sizeof(why), "subdomain, hostname, basic_auth "
		    "and host_header are for http (and tls) tunnels; this one "
		    "is %s", type_name(ty));
		ld_bad_at(L, &t->where, why, "");
		return -1;
	}
	if (ty == PROXY_TLS && (s->basic_auth[0] || s->host_rewrite)) {
		ld_bad_at(L, &t->where, "a TLS tunnel is not decrypted: no "
		    "basic_auth or host_header", "");
		return -1;
	}
	if (ty == PROXY_TLS && !s->hostname[0] && !s->subdomain[0]) {
		ld_bad_at(L, &t->where, "a tls tunnel needs hostname (routed "
		    "by SNI)", "");
		return -1;
	}
	if (s->proxy_protocol && ty != PROXY_TCP && ty != PROXY_TLS &&
	    ty != PROXY_UDP) {
		snprintf(why, sizeof(why), "proxy_protocol is for tcp, tls "
		    "and udp tunnels (an http tunnel's service gets "
		    "X-Forwarded-For); this one is %s", type_name(ty));
		ld_bad_at(L, &t->where, why, "");
		return -1;
	}
	if ((s->group[0] != '\0') != (s->group_key[0] != '\0') ||
	    (!s->group[0] && (s->group_strategy[0] || s->group_weight))) {
		ld_bad_at(L, &t->where, s->group[0] ? "a group needs its key "
		    "(group_key, --group-key)" : "group_key, group_strategy and "
		    "group_weight go with a group (group, --group)", "");
		return -1;
	}
	if (s->proxy_protocol == 1 && ty == PROXY_UDP) {
		ld_bad_at(L, &t->where, "proxy_protocol v1 is a text line for "
		    "streams: a udp tunnel takes v2 (a binary header in front "
		    "of each datagram)", "");
		return -1;
	}
	return check_health(L, t, 1);
}

static void
check_tunnels(struct ld *L)
{
	for (size_t i = 0; i < L->ntuns; i++) {
		struct conf_tun *t = &L->tuns[i];
		if (check_tunnel(L, t))
			continue;
		for (size_t j = 0; j < i; j++) {
			struct conf_tun *u = &L->tuns[j];
			int tcp_t = t->spec.type != PROXY_UDP;
			int tcp_u = u->spec.type != PROXY_UDP;
			char why[1600];
			if (strcmp(t->spec.name, u->spec.name) == 0) {
				snprintf(why, sizeof(why), "the name \"%s\" is "
				    "also tunnels.%s's (line %d)", t->spec.name,
				    u->key, u->where.line);
				ld_bad_at(L, &t->where, why, "");
			}
			/* TCP and UDP have separate port spaces */
			if (t->have_remote && u->have_remote &&
			    t->spec.remote_port == u->spec.remote_port &&
			    tcp_t == tcp_u) {
				snprintf(why, sizeof(why), "remote port %u is "
				    "also tunnels.%s's (line %d)",
				    t->spec.remote_port, u->key,
				    u->w_remote.line);
				ld_bad_at(L, &t->w_remote, why, "");
			}
		}
	}
}

/* mgrok start [NAME...]: the file's tunnels into c->locals */
static void
start_tunnels(struct ld *L, int argc, char **argv, int first)
{
	struct client_conf *c = L->c;
	char known[600] = "";
	size_t kl = 0;

	if (L->file == NULL) {
		bad_plain(L, "start", "no config file: give --config FILE (or "
		    "write $XDG_CONFIG_HOME/mgrok/mgrok.yml)", "");
		return;
	}
	for (size_t i = 0; i < L->ntuns && kl < sizeof(known) - 1; i++)
		kl += (size_t)snprintf(known + kl, sizeof(known) - kl, "%s%s",
		    i ? ", " : "", L->tuns[i].key);
	/* which of the file's tunnels this agent runs: with the file, its
	 * identity (agentid.c), so that editing a tunnel keeps it */
	if (first >= argc)
		snprintf(c->start_select, sizeof(c->start_select), "*");
	for (int a = first; a < argc; a++) {
		size_t l = strlen(c->start_select);
		snprintf(c->start_select + l, sizeof(c->start_select) - l,
		    "%s%s", l ? " " : "", argv[a]);
	}
	for (size_t i = 0; i < L->ntuns; i++) {
		int want = first >= argc;
		for (int a = first; a < argc && !want; a++)
			want = strcmp(argv[a], L->tuns[i].key) == 0;
		if (!want)
			continue;
		if (c->nlocals >= CONF_MAX_LOCALS) {
			bad_plain(L, "start", "at most 64 tunnels", "");
			return;
		}
		c->locals[c->nlocals++] = L->tuns[i].spec;
	}
	for (int a = first; a < argc; a++) {
		size_t i;
		for (i = 0; i < L->ntuns; i++)
			if (strcmp(argv[a], L->tuns[i].key) == 0)
				break;
		if (i == L->ntuns) {
			char why[900];
			snprintf(why, sizeof(why), "no tunnel \"%s\" in %s "
			    "(it has: %s)", argv[a], L->file,
			    L->ntuns ? known : "none");
			bad_plain(L, "start", why, "");
		}
	}
	if (c->nlocals == 0 && L->d->nerrors == 0) {
		char why[600];
		snprintf(why, sizeof(why), "%s has no tunnels (tunnels: NAME: "
		    "{type: tcp, local: PORT})", L->file);
		bad_plain(L, "start", why, "");
	}
}

/* tcp, udp, http, tls and client: the argument and the tunnel flags */
static void
command_tunnel(struct ld *L, int argc, char **argv, int first)
{
	struct client_conf *c = L->c;
	struct conf_tun *ft = &L->flagtun;
	const char *cmd = L->cmdname, *err;
	int optind_ = first;

	if (L->cmd & SD_ONE) {
		uint8_t type = L->cmd == SD_UDP ? PROXY_UDP :
		    L->cmd == SD_HTTP ? PROXY_HTTP :
		    L->cmd == SD_TLS ? PROXY_TLS : PROXY_TCP;
		const char *a;
		int url;
		if (optind_ >= argc) {
			bad_plain(L, cmd, "missing the local [HOST:]PORT", "");
			return;
		}
		a = argv[optind_];
		url = strstr(a, "://") != NULL;
		if (!url && (strncmp(a, "tcp:", 4) == 0 ||
		    strncmp(a, "udp:", 4) == 0)) {
			bad_plain(L, cmd, "give HOST:PORT without a type prefix",
			    a);
			return;
		}
		if (conf_parse_local(a, &c->locals[0], &err)) {
			bad_plain(L, cmd, err, a);
			return;
		}
		if (url && c->locals[0].type != type) {
			char why[96];
			snprintf(why, sizeof(why), "mgrok %s takes [HOST:]PORT "
			    "or %s://HOST:PORT", cmd, cmd);
			bad_plain(L, cmd, why, a);
			return;
		}
		c->locals[0].type = type;
		c->nlocals = 1;
		optind_++;
	}
	if (optind_ < argc) {
		bad_plain(L, cmd, "unexpected argument", argv[optind_]);
		return;
	}
	if (L->cmd == SD_CLIENT && c->nlocals == 0 && L->ntuns > 0) {
		/* mgrok client --config FILE: the file's tunnels, as the
		 * original mgrok's client ran its proxies */
		if (ft->have_remote || ft->have_name || ft->spec.subdomain[0] ||
		    ft->spec.hostname[0] || ft->spec.basic_auth[0] ||
		    ft->spec.host_rewrite) {
			bad_plain(L, cmd, "the tunnels come from the config "
			    "file: set their options there", "");
			return;
		}
		for (size_t i = 0; i < L->ntuns; i++)
			c->locals[c->nlocals++] = L->tuns[i].spec;
		/* the same agent as `mgrok start` with this file */
		snprintf(c->start_select, sizeof(c->start_select), "*");
		return;
	}
	if (c->nlocals == 0) {
		bad_plain(L, cmd, "nothing to forward: give --local", "");
		return;
	}
	if ((ft->have_remote || ft->have_name) && c->nlocals > 1) {
		bad_plain(L, ft->have_remote ? "--remote-port" : "--name",
		    "applies to a single local service", "");
		return;
	}
	if ((ft->spec.subdomain[0] || ft->spec.hostname[0] ||
	    ft->spec.basic_auth[0] || ft->spec.host_rewrite) &&
	    c->locals[0].type != PROXY_HTTP && c->locals[0].type != PROXY_TLS) {
		bad_plain(L, cmd, "--subdomain, --hostname, --basic-auth and "
		    "--host-header are for mgrok http (and tls)", "");
		return;
	}
	if (c->locals[0].type == PROXY_TLS && (ft->spec.basic_auth[0] ||
	    ft->spec.host_rewrite)) {
		bad_plain(L, "tls", "a TLS tunnel is not decrypted: no "
		    "--basic-auth or --host-header", "");
		return;
	}
	if (c->locals[0].type == PROXY_TLS && !ft->spec.hostname[0] &&
	    !ft->spec.subdomain[0]) {
		bad_plain(L, "tls", "give --hostname (routed by SNI)", "");
		return;
	}
	{
		/* the subcommand's options, all of them, but what its
		 * argument said (type, host, port) and what only an explicit
		 * flag sets (remote port, name: below) */
		struct local_spec a = c->locals[0];
		c->locals[0] = ft->spec;
		c->locals[0].type = a.type;
		memcpy(c->locals[0].host, a.host, sizeof(a.host));
		c->locals[0].port = a.port;
		c->locals[0].remote_port = a.remote_port;
		memcpy(c->locals[0].name, a.name, sizeof(a.name));
	}
	if (c->locals[0].proxy_protocol == 1 &&
	    c->locals[0].type == PROXY_UDP) {
		bad_plain(L, "--proxy-protocol", "v1 is a text line for "
		    "streams: a udp tunnel takes v2 (a binary header in front "
		    "of each datagram)", "");
		return;
	}
	ft->spec.type = c->locals[0].type;
	if (check_health(L, ft, 0))
		return;
	c->locals[0].health = ft->spec.health; /* as checked (defaults) */
	if (ft->have_remote && (c->locals[0].type == PROXY_HTTP ||
	    c->locals[0].type == PROXY_TLS)) {
		bad_plain(L, "--remote-port", "HTTP and TLS tunnels are routed "
		    "by host name, not by port", "");
		return;
	}
	if (ft->have_remote)
		c->locals[0].remote_port = ft->spec.remote_port;
	if (ft->have_name)
		memcpy(c->locals[0].name, ft->spec.name,
		    sizeof(c->locals[0].name));
}

static void
client_checks(struct ld *L, int argc, char **argv, int first)
{
	struct client_conf *c = L->c;
	size_t before = L->d->nerrors;

	check_tunnels(L);
	if (L->cmd == SD_START && !L->check_only)
		start_tunnels(L, argc, argv, first);
	else if (!L->check_only)
		command_tunnel(L, argc, argv, first);
	if (L->d->nerrors > before && !L->check_only)
		return;
	if (c->tls_ca || c->tls_cert || c->tls_key || c->tls_server_name ||
	    c->tls_pin)
		c->tls = 1; /* TLS options imply --tls */
	check_file(L, "tls-ca", c->tls_ca);
	check_file(L, "tls-cert", c->tls_cert);
	check_file(L, "tls-key", c->tls_key);
	if (L->d->nerrors > before)
		return;
	if ((c->tls_cert == NULL) != (c->tls_key == NULL))
		bad_opt(L, c->tls_cert ? "tls-cert" : "tls-key",
		    "--tls-cert and --tls-key go together");
	if (c->token == NULL) {
		const char *env = getenv("MGROK_TOKEN");
		if (env && *env)
			c->token = xstrdup(env);
	}
	if (c->token == NULL && c->tls_cert == NULL && !L->check_only)
		conf_diag_add(L->d, 1, "no token: use --token or set "
		    "MGROK_TOKEN (or token: in the config file, or a client "
		    "certificate with --tls-cert/--tls-key)");
	if (c->token && (strlen(c->token) > CTRL_TOKEN_MAX ||
	    c->token[0] == '\0'))
		bad_opt(L, "token", "a token must be 1 to 1019 bytes");
}

/* ------------------------------------------------------------ loading */

static void
ld_init(struct ld *L, int server, const char *cmd, struct conf_diag *d)
{
	memset(L, 0, sizeof(*L));
	L->server = server;
	L->cmdname = cmd;
	L->cmd = server ? SD_SERVER : cmd_side(cmd);
	L->d = d;
	L->org = xcalloc(conf_nopts, sizeof(*L->org));
	L->flagtun.spec.type = PROXY_TCP;
}

static void
ld_free(struct ld *L)
{
	for (size_t i = 0; i < L->ntuns; i++)
		memset(L->tuns[i].spec.basic_auth, 0,
		    sizeof(L->tuns[i].spec.basic_auth));
	free(L->tuns);
	free(L->org);
	memset(L->flagtun.spec.basic_auth, 0,
	    sizeof(L->flagtun.spec.basic_auth));
}

/* both sides: find the file, read it, then the flags; 1 for --help */
static int
load(struct ld *L, int argc, char **argv, char **config_file)
{
	const char *path = NULL;
	char defbuf[4096];
	int first;

	if (flags_pass(L, argc, argv, 0, &path, &first))
		return 1;
	if (path == NULL)
		path = default_file(L->server, defbuf, sizeof(defbuf));
	if (path) {
		*config_file = xstrdup(path);
		conf_yaml_file(L, *config_file);
	}
	flags_pass(L, argc, argv, 1, NULL, &first);
	return -first; /* 0 or the first positional argument, negated */
}

int
conf_server_load(struct server_conf *out, int argc, char **argv,
    struct conf_diag *d)
{
	struct ld L;
	int r;

	conf_server_defaults(out);
	ld_init(&L, 1, "server", d);
	L.s = out;
	if ((r = load(&L, argc, argv, &out->config_file)) == 1)
		goto out;
	r = -r;
	/* after a bad flag, its value may look like an argument */
	if (L.flag_errors == 0 && r < argc)
		bad_plain(&L, "server", "unexpected argument", argv[r]);
	if (L.flag_errors == 0)
		server_checks(&L);
	r = d->nerrors ? MG_EINVAL : 0;
out:
	ld_free(&L);
	return r;
}

int
conf_client_load(struct client_conf *out, int argc, char **argv,
    struct conf_diag *d)
{
	struct ld L;
	int r;

	conf_client_defaults(out);
	ld_init(&L, 0, argv[0], d);
	L.c = out;
	if ((r = load(&L, argc, argv, &out->config_file)) == 1)
		goto out;
	if (L.flag_errors == 0)
		client_checks(&L, argc, argv, -r);
	r = d->nerrors ? MG_EINVAL : 0;
out:
	ld_free(&L);
	return r;
}

static void
print_diag(struct conf_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "mgrok: %s%s\n", d->v[i].is_error ? "" :
		    "warning: ", d->v[i].text);
}

int
conf_server_parse(struct server_conf *c, int argc, char **argv)
{
	struct conf_diag d;
	int rc;

	conf_diag_init(&d);
	rc = conf_server_load(c, argc, argv, &d);
	print_diag(&d);
	conf_diag_free(&d);
	return rc;
}

int
conf_client_parse(struct client_conf *c, int argc, char **argv)
{
	struct conf_diag d;
	int rc;

	conf_diag_init(&d);
	rc = conf_client_load(c, argc, argv, &d);
	print_diag(&d);
	conf_diag_free(&d);
	return rc;
}

int
conf_check_buf(const char *name, const char *buf, size_t len, int server,
    struct conf_diag *d)
{
	struct server_conf *s = NULL;
	struct client_conf *c = NULL;
	struct ld L;
	int rc;

	if (server < 0)
		server = conf_yaml_sniff(buf, len);
	ld_init(&L, server, server ? "server" : "start", d);
	L.check_only = 1;
	if (server) {
		s = xcalloc(1, sizeof(*s));
		conf_server_defaults(s);
		L.s = s;
	} else {
		c = xcalloc(1, sizeof(*c));
		conf_client_defaults(c);
		L.c = c;
	}
	conf_yaml_buf(&L, name, buf, len);
	if (server)
		server_checks(&L);
	else
		client_checks(&L, 0, NULL, 0);
	rc = d->nerrors ? MG_EINVAL : 0;
	ld_free(&L);
	if (s) {
		conf_server_free(s);
		free(s);
	}
	if (c) {
		conf_client_free(c);
		free(c);
	}
	return rc;
}

int
conf_check_file(const char *path, int server, int *is_server,
    struct conf_diag *d)
{
	int is_stdin = strcmp(path, "-") == 0;
	FILE *f = is_stdin ? stdin : fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	int rc = MG_EINVAL;

	if (f == NULL) {
		conf_diag_add(d, 1, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (is_stdin)
		path = "(stdin)";
	buf = xmalloc((1 << 20) + 1);
	len = fread(buf, 1, (1 << 20) + 1, f);
	if (len > (1 << 20)) {
		conf_diag_add(d, 1, "%s: larger than 1 MiB", path);
		goto out;
	}
	if (server < 0)
		server = conf_yaml_sniff(buf, len);
	if (is_server)
		*is_server = server;
	rc = conf_check_buf(path, buf, len, server, d);
out:
	if (f && !is_stdin)
		fclose(f);
	if (buf) {
		memset(buf, 0, len);
		free(buf);
	}
	return rc;
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
	free(c->config_file);
	free(c->admin_cert);
	free(c->admin_key);
	free(c->admin_client_ca);
	c->admin_cert = c->admin_key = c->admin_client_ca = NULL;
	if (c->admin_token) {
		memset(c->admin_token, 0, strlen(c->admin_token));
		free(c->admin_token);
		c->admin_token = NULL;
	}
	c->https_cert_dir = c->config_file = NULL;
	c->tls_cert = c->tls_key = c->tls_client_ca = NULL;
	c->https_cert = c->https_key = NULL;
	for (size_t i = 0; i < c->ntokens; i++) {
		if (c->tokens[i])
			memset(c->tokens[i], 0, strlen(c->tokens[i]));
		free(c->tokens[i]);
		free(c->token_names[i]);
		c->tokens[i] = c->token_names[i] = NULL;
		c->token_policy[i] = NULL;
	}
	memset(c->token_sha256, 0, sizeof(c->token_sha256));
	c->ntokens = 0;
	for (size_t i = 0; i < c->npolicies; i++)
		free(c->policies[i]);
	free(c->policies);
	c->policies = NULL;
	c->npolicies = 0;
}

void
conf_client_free(struct client_conf *c)
{
	free(c->tls_ca);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->tls_server_name);
	free(c->tls_pin);
	free(c->config_file);
	c->tls_ca = c->tls_cert = c->tls_key = NULL;
	c->tls_server_name = c->tls_pin = c->config_file = NULL;
	if (c->token) {
		memset(c->token, 0, strlen(c->token));
		free(c->token);
		c->token = NULL;
	}
	for (size_t i = 0; i < c->nlocals; i++)
		memset(c->locals[i].basic_auth, 0,
		    sizeof(c->locals[i].basic_auth));
}

/* ------------------------------------------------------------ values */

static int
hex_bytes(const char *s, uint8_t *out, int n)
{
	if (strlen(s) != (size_t)n * 2)
		return MG_EINVAL;
	for (int i = 0; i < n; i++) {
		unsigned x;
		if (sscanf(s + 2 * i, "%2x", &x) != 1 ||
		    strchr("0123456789abcdefABCDEF", s[2 * i]) == NULL ||
		    strchr("0123456789abcdefABCDEF", s[2 * i + 1]) == NULL)
			return MG_EINVAL;
		out[i] = (uint8_t)x;
	}
	return 0;
}

int
conf_hex_id(const char *s, uint8_t out[16])
{
	return hex_bytes(s, out, 16);
}

int
conf_hex_sha256(const char *s, uint8_t out[CONF_SHA256_LEN])
{
	return hex_bytes(s, out, CONF_SHA256_LEN);
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
	if (conf_split_hostport(hp, l->host, sizeof(l->host), &l->port,
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
		if (conf_split_hostport(rest, l->host, sizeof(l->host),
		    &l->port, 0, 0, err))
			return MG_EINVAL;
	}
	if (l->host[0] == '\0')
		snprintf(l->host, sizeof(l->host), "localhost");
	return 0;
}
