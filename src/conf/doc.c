/* doc.c: what the option table says to people: --help of each command,
 * the man page mgrok(1), and `mgrok config example`. One table, so the
 * three never disagree with the parser. */
#include <stdio.h>
#include <string.h>

#include "conf/conf_int.h"

#define HELP_COL 28

/* ------------------------------------------------------------ --help */

static void
help_opt(FILE *f, const struct conf_opt *o)
{
	char left[80], text[600];
	const char *h;
	int n, col;

	n = snprintf(left, sizeof(left), "  --%s%s%s", o->flag,
	    o->arg ? " " : "", o->arg ? o->arg : "");
	fputs(left, f);
	if (n >= HELP_COL - 1) {
		fputc(' ', f);
		col = n + 1;
	} else {
		fprintf(f, "%*s", HELP_COL - n, "");
		col = HELP_COL;
	}
	snprintf(text, sizeof(text), "%s", o->help);
	if (o->def && strstr(o->help, "default") == NULL &&
	    strcmp(o->flag, "config") != 0 && o->arg)
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
		    " (default %s)", o->def);
	/* words, wrapped at 79 columns; '\n' in the help breaks a line */
	h = text;
	while (*h) {
		size_t wl = strcspn(h, " \n");
		if (col > HELP_COL && col + 1 + (int)wl > 79) {
			fprintf(f, "\n%*s", HELP_COL, "");
			col = HELP_COL;
		} else if (col > HELP_COL) {
			fputc(' ', f);
			col++;
		}
		fprintf(f, "%.*s", (int)wl, h);
		col += (int)wl;
		h += wl;
		if (*h == '\n') {
			fprintf(f, "\n%*s", HELP_COL, "");
			col = HELP_COL;
		}
		while (*h == ' ' || *h == '\n')
			h++;
	}
	fputc('\n', f);
}

void
conf_server_usage(FILE *f)
{
	fputs("usage: mgrok server [--config FILE] [options]\n", f);
	for (size_t i = 0; i < conf_nopts; i++) {
		const struct conf_opt *o = &conf_opts[i];
		if ((o->sides & SD_SERVER) && o->flag)
			help_opt(f, o);
	}
	fputs("Every option is also a key of the config file (`mgrok config "
	      "example server`).\n", f);
}

void
conf_client_usage(FILE *f, const char *cmd)
{
	unsigned side = SD_TCP;
	int is_http = strcmp(cmd, "http") == 0;

	if (strcmp(cmd, "udp") == 0)
		side = SD_UDP;
	else if (is_http)
		side = SD_HTTP;
	else if (strcmp(cmd, "tls") == 0)
		side = SD_TLS;
	else if (strcmp(cmd, "client") == 0)
		side = SD_CLIENT;
	else if (strcmp(cmd, "start") == 0)
		side = SD_START;
	if (side == SD_CLIENT)
		fputs("usage: mgrok client --local [tcp:|udp:]HOST:PORT ... "
		      "[options]\n", f);
	else if (side == SD_START)
		fputs("usage: mgrok start [NAME...] [--config FILE] "
		      "[options]\n"
		      "  runs every tunnel of the config file's tunnels: (or "
		      "the named ones)\n  over one session\n", f);
	else
		fprintf(f, "usage: mgrok %s [HOST:]PORT [options]\n"
		    "       mgrok %s %s://HOST%s [options]\n", cmd, cmd, cmd,
		    is_http ? "[:PORT]" : ":PORT");
	for (size_t i = 0; i < conf_nopts; i++) {
		const struct conf_opt *o = &conf_opts[i];
		if ((o->sides & side) && o->flag && !(o->sides & SD_SERVER))
			help_opt(f, o);
	}
}

/* ------------------------------------------------------------ man */

/* roff text: backslashes and hyphens escaped, no line starting with a
 * control character */
static void
roff(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", f);
		else if (*s == '-')
			fputs("\\-", f);
		else if (*s == '\n')
			fputc(' ', f);
		else
			fputc(*s, f);
	}
}

static void
man_opt(FILE *f, const struct conf_opt *o, int server)
{
	static const struct {
		unsigned s;
		const char *n;
	} cmds[] = { { SD_TCP, "tcp" }, { SD_UDP, "udp" }, { SD_HTTP, "http" },
		{ SD_TLS, "tls" }, { SD_CLIENT, "client" },
		{ SD_START, "start" } };

	fputs(".TP\n", f);
	if (o->flag) {
		fputs("\\fB", f);
		roff(f, "--");
		roff(f, o->flag);
		fputs("\\fR", f);
		if (o->arg) {
			fputs(" \\fI", f);
			roff(f, o->arg);
			fputs("\\fR", f);
		}
	} else {
		fputs("\\fB", f);
		roff(f, o->key);
		fputs(":\\fR \\fI", f);
		roff(f, o->arg);
		fputs("\\fR", f);
	}
	fputs("\n", f);
	roff(f, o->help);
	fputs(".", f);
	if (o->def) {
		fputs(" Default: ", f);
		roff(f, o->def);
		fputs(".", f);
	}
	if (o->key && o->flag) {
		fputs(" Key: \\fB", f);
		if (o->flags & OF_TUNNEL)
			fputs("tunnels.\\fINAME\\fB.", f);
		roff(f, o->key);
		fputs("\\fR", f);
		if (o->alias) {
			fputs(" (or \\fB", f);
			roff(f, o->alias);
			fputs("\\fR)", f);
		}
		fputs(".", f);
	} else if (o->alias) {
		fputs(" Also \\fB", f);
		roff(f, o->alias);
		fputs("\\fR.", f);
	}
	if (!server && o->flag && (o->sides & SD_AGENT) != SD_AGENT) {
		int first = 1;
		fputs(" For:", f);
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (o->sides & cmds[i].s) {
				fprintf(f, "%s %s", first ? "" : ",",
				    cmds[i].n);
				first = 0;
			}
		fputs(".", f);
	}
	if ((o->flags & OF_SECRET) && o->key)
		fputs(" In the file, \\fBfile:\\fIPATH\\fR reads it from a "
		      "file.", f);
	fputs("\n", f);
}

void
conf_man(FILE *f, const char *version)
{
	fprintf(f, ".TH MGROK 1 \"\" \"mgrok %s\" \"User Commands\"\n",
	    version);
	/* keys and paths read better whole: no hyphenation, ragged right */
	fputs(".nh\n.ad l\n", f);
	fputs(".SH NAME\n"
	      "mgrok \\- a self\\-hosted reverse tunnel (TCP, UDP, HTTP, TLS)\n"
	      ".SH SYNOPSIS\n"
	      ".B mgrok server\n[\\fB\\-\\-config\\fR \\fIFILE\\fR] "
	      "[\\fIoptions\\fR]\n.br\n"
	      ".B mgrok\n\\fBtcp\\fR|\\fBudp\\fR|\\fBhttp\\fR|\\fBtls\\fR "
	      "[\\fIHOST\\fR:]\\fIPORT\\fR [\\fIoptions\\fR]\n.br\n"
	      ".B mgrok client\n\\fB\\-\\-local\\fR \\fISPEC\\fR ... "
	      "[\\fIoptions\\fR]\n.br\n"
	      ".B mgrok start\n[\\fINAME\\fR...] [\\fB\\-\\-config\\fR "
	      "\\fIFILE\\fR] [\\fIoptions\\fR]\n.br\n"
	      ".B mgrok config\n\\fBcheck\\fR [\\fB\\-\\-server\\fR] "
	      "\\fIFILE\\fR | \\fBexample\\fR \\fBclient\\fR|\\fBserver\\fR\n"
	      ".br\n"
	      ".B mgrok token\n\\fBadd\\fR|\\fBrotate\\fR \\fINAME\\fR | "
	      "\\fBlist\\fR | \\fBhash\\fR [\\fB\\-\\-config\\fR "
	      "\\fIFILE\\fR]\n.br\n"
	      ".B mgrok\n\\fBconnect\\fR|\\fBcerts\\fR|\\fBmux\\-peer\\fR|"
	      "\\fBman\\fR|\\fBversion\\fR ...\n"
	      ".SH DESCRIPTION\n"
	      "\\fBmgrok server\\fR runs on a public host; the agents "
	      "(\\fBmgrok tcp\\fR, \\fBudp\\fR, \\fBhttp\\fR, \\fBtls\\fR, "
	      "\\fBclient\\fR, \\fBstart\\fR) run behind NAT and make local "
	      "services reachable through it, over one multiplexed "
	      "connection, optionally in TLS.\n"
	      ".PP\n"
	      "Settings come from the defaults, then a YAML config file, then "
	      "the command line: a flag overrides the file's key, and a "
	      "repeatable flag replaces the file's list. Every flag below "
	      "names its key.\n"
	      ".SH COMMANDS\n"
	      ".TP\n\\fBserver\\fR\nthe tunnel server.\n"
	      ".TP\n\\fBtcp\\fR, \\fBudp\\fR \\fI[HOST:]PORT\\fR\nexpose a "
	      "local TCP or UDP service on a public port.\n"
	      ".TP\n\\fBhttp\\fR \\fI[HOST:]PORT\\fR\nexpose a local web "
	      "service by host name.\n"
	      ".TP\n\\fBtls\\fR \\fI[HOST:]PORT\\fR\nexpose a local TLS "
	      "service by SNI (never decrypted).\n"
	      ".TP\n\\fBclient \\-\\-local\\fR \\fISPEC\\fR...\nexpose "
	      "several local services over one session.\n"
	      ".TP\n\\fBstart\\fR [\\fINAME\\fR...]\nrun every tunnel of the "
	      "config file (or only the named ones) over one session.\n"
	      ".TP\n\\fBconfig check\\fR [\\fB\\-\\-server\\fR|"
	      "\\fB\\-\\-client\\fR] \\fIFILE\\fR\nreport every problem of a "
	      "config file with its line and column; exit 0 when there is "
	      "none, 1 otherwise.\n"
	      ".TP\n\\fBconfig example\\fR \\fBclient\\fR|\\fBserver\\fR\n"
	      "print a complete, commented config file.\n"
	      ".TP\n\\fBtoken add\\fR \\fINAME\\fR [\\fB\\-\\-clear\\fR] "
	      "[\\fB\\-\\-expires\\fR \\fIDATE\\fR]\na new token with a random "
	      "secret in the server file's \\fBtokens:\\fR, stored as its "
	      "SHA\\-256 (\\fBsecret_sha256\\fR) unless \\fB\\-\\-clear\\fR; "
	      "the secret is printed once. The file is edited in place "
	      "(comments kept), checked, and replaced atomically.\n"
	      ".TP\n\\fBtoken rotate\\fR \\fINAME\\fR [\\fB\\-\\-finish\\fR]\n"
	      "a second secret next to the old one (both work); "
	      "\\fB\\-\\-finish\\fR removes the old one.\n"
	      ".TP\n\\fBtoken list\\fR, \\fBtoken hash\\fR\nthe tokens "
	      "(name, kind, expiry, policy; never a secret); the SHA\\-256 of a "
	      "secret read from stdin.\n"
	      ".TP\n\\fBconnect\\fR, \\fBcerts\\fR, \\fBmux\\-peer\\fR\nthe "
	      "stream proxy client, a certificate maker and a raw smux peer "
	      "(see their \\fB\\-\\-help\\fR).\n"
	      ".TP\n\\fBman\\fR\nprint this page in roff.\n"
	      ".SH SERVER OPTIONS\n", f);
	for (size_t i = 0; i < conf_nopts; i++)
		if ((conf_opts[i].sides & SD_SERVER) && conf_opts[i].flag)
			man_opt(f, &conf_opts[i], 1);
	fputs(".SH CLIENT OPTIONS\n", f);
	for (size_t i = 0; i < conf_nopts; i++)
		if ((conf_opts[i].sides & SD_AGENT) && conf_opts[i].flag)
			man_opt(f, &conf_opts[i], 0);
	fputs(".SH CONFIGURATION FILE\n"
	      "YAML, one file per side; \\fBversion: 1\\fR. The keys are "
	      "those of the options above, plus, on the server, "
	      "\\fBtokens:\\fR as a list of secrets or of \\fB{name: "
	      "\\fINAME\\fB, secret: \\fISECRET\\fB}\\fR, and on the "
	      "client, \\fBtunnels:\\fR (or \\fBproxies:\\fR), a mapping "
	      "from a tunnel's name to its keys:\n", f);
	for (size_t i = 0; i < conf_nopts; i++)
		if (conf_opts[i].flags & OF_TUNNEL)
			man_opt(f, &conf_opts[i], 0);
	fputs(".PP\n"
	      "An unknown key, a value of the wrong type or out of range, "
	      "two tunnels with one name or one remote port, and a missing "
	      "file are errors naming the file, line, column and key. "
	      "\\fB${VAR}\\fR in a value is the environment variable VAR "
	      "(\\fB$${\\fR is a literal \\fB${\\fR); a leading \\fB~/\\fR "
	      "in a path is \\fB$HOME/\\fR. Tokens and basic auth take "
	      "\\fBfile:\\fIPATH\\fR (basic auth also "
	      "\\fIUSER\\fB:file:\\fIPATH\\fR) to read the secret from a "
	      "file; a file holding a secret that others can read gets a "
	      "warning. The original mgrok's keys (\\fBbind_addr\\fR, "
	      "\\fBbind_port\\fR, \\fBauth_token\\fR, "
	      "\\fBport_range_start\\fR, \\fBport_range_end\\fR, "
	      "\\fBenable_tls\\fR, \\fBtls_cert_file\\fR, "
	      "\\fBtls_key_file\\fR; \\fBserver\\fR, \\fBtoken\\fR, "
	      "\\fBproxies\\fR with \\fBtype\\fR, \\fBlocal_ip\\fR, "
	      "\\fBlocal_port\\fR, \\fBremote_port\\fR) are keys like the "
	      "others.\n"
	      ".SH ENVIRONMENT\n"
	      ".TP\n\\fBMGROK_TOKEN\\fR\nthe token when neither a flag nor "
	      "the file gives one.\n"
	      ".TP\n\\fBMGROK_CONFIG\\fR\nthe client's config file when "
	      "\\fB\\-\\-config\\fR is not given.\n"
	      ".TP\n\\fBMGROK_SERVER_CONFIG\\fR\nthe server's config file "
	      "when \\fB\\-\\-config\\fR is not given.\n"
	      ".TP\n\\fBXDG_CONFIG_HOME\\fR, \\fBXDG_STATE_HOME\\fR\nwhere "
	      "the client's config file and its identity live.\n"
	      ".SH FILES\n"
	      ".TP\n\\fI$XDG_CONFIG_HOME/mgrok/mgrok.yml\\fR "
	      "(\\fI~/.config/mgrok/mgrok.yml\\fR)\nthe client's config "
	      "file, read when it exists and \\fB\\-\\-config\\fR is not "
	      "given.\n"
	      ".TP\n\\fI/etc/mgrok/server.yml\\fR\nthe server's.\n"
	      ".TP\n\\fI$XDG_STATE_HOME/mgrok/client_id\\fR\nthe seed of "
	      "each agent's identity.\n"
	      ".SH EXAMPLES\n"
	      ".nf\n"
	      "mgrok server \\-\\-config /etc/mgrok/server.yml\n"
	      "mgrok tcp 3000 \\-\\-server tunnel.example.com:9000 "
	      "\\-\\-token s3cret\n"
	      "mgrok http 3000 \\-\\-subdomain shop \\-\\-basic\\-auth "
	      "admin:pw ...\n"
	      "mgrok start \\-\\-config ~/.config/mgrok/mgrok.yml\n"
	      "mgrok start web db \\-\\-config mgrok.yml\n"
	      "mgrok config check mgrok.yml\n"
	      "mgrok config example server > server.yml\n"
	      ".fi\n"
	      ".SH SEE ALSO\n"
	      "docs/usage.md, docs/config.md and docs/tls.md in the source.\n",
	    f);
}

/* ------------------------------------------------------------ example */

static void
comment(FILE *f, const char *indent, const char *s)
{
	fprintf(f, "%s# ", indent);
	for (; *s; s++) {
		if (*s == '\n')
			fprintf(f, "\n%s# ", indent);
		else
			fputc(*s, f);
	}
}

static void
example_opt(FILE *f, const struct conf_opt *o, const char *indent)
{
	comment(f, indent, o->help);
	if (o->flag)
		fprintf(f, " (--%s)", o->flag);
	fputc('\n', f);
	if (o->example)
		fprintf(f, "%s%s: %s\n", indent, o->key, o->example);
	else if (o->flags & OF_LIST)
		fprintf(f, "%s# %s: [%s, ...]\n", indent, o->key,
		    o->arg ? o->arg : "");
	else
		fprintf(f, "%s# %s: %s\n", indent, o->key,
		    o->def ? o->def : o->arg ? o->arg : "true");
}

void
conf_example(FILE *f, int server)
{
	fprintf(f, "# mgrok %s configuration (YAML). `mgrok config check "
	    "FILE` checks it.\n"
	    "# A command-line flag overrides a key; ${VAR} is read from the "
	    "environment,\n"
	    "# file:PATH (tokens, basic auth) from a file. Commented keys "
	    "show defaults.\n"
	    "version: 1\n\n", server ? "server" : "agent (`mgrok start`)");
	if (server) {
		fputs("# Accepted tokens (--token), each with a name that logs and "
		      "leases use.\n"
		      "# auth_token: SECRET (the original mgrok's key) adds an unnamed "
		      "one.\n"
		      "# A named token may carry a policy (expires, allow, limits;\n"
		      "# docs/config.md says which rules are enforced so far);\n"
		      "# without one it may do anything. secret: [OLD, NEW] "
		      "accepts both\n"
		      "# while rotating. secret_sha256: HEX stores only the "
		      "secret's SHA-256\n"
		      "# (`mgrok token add|rotate --config FILE` writes them).\n"
		      "tokens:\n"
		      "  - name: alice\n"
		      "    secret: change-me-alice   # or ${ALICE_TOKEN}, "
		      "or file:/etc/mgrok/alice.token\n"
		      "    expires: 2027-06-30       # to the end of that day "
		      "UTC; or 2027-06-30T18:00:00Z\n"
		      "    allow:                    # a list left out allows "
		      "any\n"
		      "      ports: [20000-20099, 22022]\n"
		      "      subdomains: [\"alice-*\", demo]   # * is one or "
		      "more of [a-z0-9-]\n"
		      "      hostnames: [\"*.alice.example.org\"]  # * is one "
		      "or more labels\n"
		      "      types: [tcp, udp, http, https, tls]\n"
		      "      cidrs: [10.0.0.0/8, \"::1/128\"]  # who may reach "
		      "its tunnels\n"
		      "      deny_cidrs: [10.1.0.0/16]\n"
		      "    limits:                   # a limit left out is none\n"
		      "      tunnels: 5\n"
		      "      visitors: 200           # public connections at "
		      "once\n"
		      "      bandwidth: {in: 10MB/s, out: 10MB/s}\n"
		      "      new_connections: 50/s   # per source IP per tunnel\n"
		      "      http_requests: 100/s    # per source IP per tunnel\n"
		      "  - name: bob\n"
		      "    secret: change-me-bob\n\n"
		      "# mTLS identities (the client certificate's subject as "
		      "mgrok logs it)\n"
		      "# take the same allow and limits.\n"
		      "# certs:\n"
		      "#   - subject: \"CN=edge-1\"\n"
		      "#     allow: {ports: [30000-30009], types: [tcp]}\n"
		      "#     limits: {tunnels: 2}\n\n", f);
	} else {
		fputs("# The token (--token); or ${MGROK_TOKEN}, or "
		      "file:~/.config/mgrok/token\n"
		      "token: change-me\n\n", f);
	}
	for (size_t i = 0; i < conf_nopts; i++) {
		const struct conf_opt *o = &conf_opts[i];
		if (!(o->sides & (server ? SD_SERVER : SD_AGENT)) ||
		    o->key == NULL || (o->flags & OF_TUNNEL) ||
		    strcmp(o->key, server ? "tokens" : "token") == 0)
			continue;
		example_opt(f, o, "");
		fputc('\n', f);
	}
	if (server)
		return;
	fputs("# The tunnels `mgrok start` runs (`mgrok start NAME...`: "
	      "only those).\n"
	      "# Each is NAME: {keys}; the keys of a tunnel are:\n", f);
	for (size_t i = 0; i < conf_nopts; i++) {
		const struct conf_opt *o = &conf_opts[i];
		if (!(o->flags & OF_TUNNEL))
			continue;
		fprintf(f, "#   %s: %s: ", o->key, o->arg);
		for (const char *s = o->help; *s; s++)
			fputc(*s == '\n' ? ' ' : *s, f);
		fputc('\n', f);
	}
	fputs("tunnels:\n"
	      "  web:\n"
	      "    type: http\n"
	      "    local: 3000                 # or http://localhost:3000\n"
	      "    subdomain: shop\n"
	      "    # hostname: www.example.org\n"
	      "    # basic_auth: admin:${WEB_PASSWORD}   # or "
	      "admin:file:/run/secrets/web\n"
	      "    host_header: preserve\n"
	      "    # health: {type: http, path: /healthz, expect: 200-399, "
	      "interval: 5s,\n"
	      "    #          timeout: 2s, rise: 2, fall: 3}\n"
	      "  ssh:\n"
	      "    type: tcp\n"
	      "    local_ip: 127.0.0.1\n"
	      "    local_port: 22\n"
	      "    remote_port: 10022\n"
	      "  dns:\n"
	      "    type: udp\n"
	      "    local: 127.0.0.1:53\n"
	      "  secure:\n"
	      "    type: tls\n"
	      "    local: 8443\n"
	      "    hostname: secure.example.org\n", f);
}
