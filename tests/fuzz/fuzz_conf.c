/* fuzz_conf.c: libFuzzer harness for the inputs an operator or a user
 * hands mgrok: command lines (conf_server_parse, conf_client_parse), the
 * --token-file reader, --stream-allow rules and their matching (util/acl),
 * the --https-cert-dir choice of a certificate by SNI (tls_certdir_find on
 * a directory made at start), local addresses and client ids.
 *
 * Input: byte 0 picks the part, byte 1 a variant; the rest, cut at '\n'
 * where a part takes several strings, is its input. The parsers print
 * their errors and --help on stderr and stdout: both go to /dev/null
 * around each call (the replay's log stays readable; libFuzzer and the
 * sanitizers report on a descriptor of their own, so run a crashing input
 * with the libFuzzer binary, build-fuzz/fuzz_conf FILE, to see it). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/conf.h"
#include "fuzz_certs.h"
#include "tls/certdir.h"
#include "util/acl.h"
#include "util/err.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FC_MAX_ARGS 24
#define FC_MAX_RULES 16

static struct tls_certdir *fc_certdir;
static struct tls_ctx *fc_any; /* the one context of the directory */
static char fc_tokfile[4200];
static int fc_devnull = -1;
static int fc_tokfd = -1;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[4096], sub[4200], err[512];
	int fd;

	log_set_level(LOG_ERROR);
	fuzz_certs_make(dir, sizeof(dir));
	snprintf(sub, sizeof(sub), "%s/certdir", dir);
	if (tls_certdir_load(sub, &fc_certdir, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_conf: %s\n", err);
		abort();
	}
	if ((fc_any = tls_certdir_find(fc_certdir, "demo.example.com")) ==
	    NULL)
		abort();
	fuzz_certs_rm(); /* loaded */
	if ((fc_devnull = open("/dev/null", O_WRONLY)) < 0)
		abort();
	/* the token file: unlinked at once, reached through /proc, so that
	 * nothing is left behind however the process ends */
	snprintf(fc_tokfile, sizeof(fc_tokfile), "%s/mgrok-fuzz-tokens.XXXXXX",
	    getenv("TMPDIR") != NULL && *getenv("TMPDIR") != '\0' ?
	    getenv("TMPDIR") : "/tmp");
	if ((fd = mkstemp(fc_tokfile)) < 0)
		abort();
	unlink(fc_tokfile);
	fc_tokfd = fd;
	snprintf(fc_tokfile, sizeof(fc_tokfile), "/proc/self/fd/%d", fd);
	return 0;
}

/* Cut data at '\n' into at most max NUL-terminated strings in one
 * allocation (*buf, freed by the caller). */
static size_t
fc_split(const uint8_t *data, size_t size, char **out, size_t max,
    char **buf)
{
	size_t n = 0;
	char *p = malloc(size + 1);

	memcpy(p, data, size);
	p[size] = '\0';
	*buf = p;
	while (n < max) {
		char *nl = memchr(p, '\n', strlen(p));
		out[n++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	return n;
}

/* fc_quiet(1): stdout and stderr to /dev/null; fc_quiet(0): back. */
static void
fc_quiet(int on)
{
	static int saved[2] = { -1, -1 };

	fflush(stdout);
	fflush(stderr);
	for (int fd = 1; fd <= 2; fd++) {
		if (on) {
			saved[fd - 1] = dup(fd);
			dup2(fc_devnull, fd);
		} else if (saved[fd - 1] >= 0) {
			dup2(saved[fd - 1], fd);
			close(saved[fd - 1]);
			saved[fd - 1] = -1;
		}
	}
}

/* getopt keeps a pointer into the last argv it scanned; a new argv must
 * start from a clean state (optind 0 re-initialises glibc's getopt). */
static void
fc_getopt_reset(void)
{
	static const struct option none[] = { { NULL, 0, NULL, 0 } };
	static char arg0[] = "x";
	char *av[] = { arg0, NULL };

	optind = 0;
	(void)getopt_long(1, av, ":", none, NULL);
}

static void
fc_argv(const uint8_t *data, size_t size, int client, uint8_t variant)
{
	static const char *const cmds[] = { "tcp", "udp", "http", "tls",
		"client" };
	char *args[FC_MAX_ARGS], *argv[FC_MAX_ARGS + 2], *buf;
	char cmd[16];
	size_t n = fc_split(data, size, args, FC_MAX_ARGS, &buf);
	int argc = 0;

	snprintf(cmd, sizeof(cmd), "%s", client ? cmds[variant % 5] :
	    "server");
	argv[argc++] = cmd;
	for (size_t i = 0; i < n; i++) {
		/* a token file is read (part 2 covers it): not /dev/stdin */
		if (strstr(args[i], "token-f") != NULL)
			goto out;
		argv[argc++] = args[i];
	}
	argv[argc] = NULL;
	fc_getopt_reset();
	fc_quiet(1);
	if (client) {
		struct client_conf c;
		int rc = conf_client_parse(&c, argc, argv);
		if (rc != 0 && rc != 1 && rc != MG_EINVAL)
			abort();
		if (rc == 0 && c.nlocals > CONF_MAX_LOCALS)
			abort();
		conf_client_free(&c);
	} else {
		struct server_conf c;
		int rc = conf_server_parse(&c, argc, argv);
		if (rc != 0 && rc != 1 && rc != MG_EINVAL)
			abort();
		if (rc == 0 && (c.ntokens == 0 || c.ntokens > CONF_MAX_TOKENS ||
		    c.nstream_allow > CONF_MAX_ALLOW))
			abort();
		conf_server_free(&c);
	}
	fc_quiet(0);
out:
	free(buf);
}

static void
fc_token_file(const uint8_t *data, size_t size)
{
	static char a0[] = "server", a1[] = "--token-file";
	char *argv[] = { a0, a1, fc_tokfile, NULL };
	struct server_conf c;
	int rc;

	if (ftruncate(fc_tokfd, 0) != 0 ||
	    (size > 0 && pwrite(fc_tokfd, data, size, 0) != (ssize_t)size))
		abort();
	fc_getopt_reset();
	fc_quiet(1);
	rc = conf_server_parse(&c, 3, argv);
	fc_quiet(0);
	if (rc == 0) {
		for (size_t i = 0; i < c.ntokens; i++) {
			size_t l = strlen(c.tokens[i]);
			if (l == 0 || l > 1019 ||
			    strpbrk(c.tokens[i], "\r\n") != NULL)
				abort();
		}
	} else if (rc != MG_EINVAL) {
		abort();
	}
	conf_server_free(&c);
}

static void
fc_acl(const uint8_t *data, size_t size, uint8_t variant)
{
	struct acl_rule rules[FC_MAX_RULES];
	char *lines[FC_MAX_RULES * 2], *buf;
	size_t n = fc_split(data, size, lines, FC_MAX_RULES * 2, &buf), nr = 0;
	uint16_t port = (uint16_t)(variant * 257 + 1);

	for (size_t i = 0; i < n && nr < FC_MAX_RULES; i++) {
		struct acl_rule *r = &rules[nr];
		const char *err = NULL;
		int rc = acl_parse(lines[i], r, &err);

		if (rc == MG_EINVAL) {
			if (err == NULL)
				abort();
			continue;
		}
		if (rc != 0)
			abort();
		nr++;
		/* a rule allows what it names */
		if (!r->is_cidr) {
			char up[256];
			size_t l = strnlen(r->host, sizeof(r->host));
			if (l == 0 || l == sizeof(r->host))
				abort();
			for (size_t k = 0; k <= l; k++)
				up[k] = (char)((r->host[k] >= 'a' &&
				    r->host[k] <= 'z') ? r->host[k] - 32 :
				    r->host[k]);
			if (!acl_match_name(r, 1, r->host, r->port ? r->port :
			    port) || !acl_match_name(r, 1, up, r->port ?
			    r->port : port))
				abort();
			if (r->port && port != r->port &&
			    acl_match_name(r, 1, r->host, port))
				abort();
		} else {
			struct sockaddr_storage ss;
			memset(&ss, 0, sizeof(ss));
			if (r->prefix < 0 || r->prefix > (r->family == AF_INET ?
			    32 : 128))
				abort();
			if (r->family == AF_INET) {
				struct sockaddr_in *s4 = (void *)&ss;
				s4->sin_family = AF_INET;
				memcpy(&s4->sin_addr, r->net, 4);
			} else {
				struct sockaddr_in6 *s6 = (void *)&ss;
				s6->sin6_family = AF_INET6;
				memcpy(&s6->sin6_addr, r->net, 16);
			}
			if (!acl_match_addr(r, 1, (struct sockaddr *)&ss,
			    r->port ? r->port : port))
				abort();
			if (r->family == AF_INET) {
				/* the same address v4-mapped */
				struct sockaddr_in6 s6;
				memset(&s6, 0, sizeof(s6));
				s6.sin6_family = AF_INET6;
				s6.sin6_addr.s6_addr[10] = 0xff;
				s6.sin6_addr.s6_addr[11] = 0xff;
				memcpy(&s6.sin6_addr.s6_addr[12], r->net, 4);
				if (!acl_match_addr(r, 1,
				    (struct sockaddr *)&s6, r->port ?
				    r->port : port))
					abort();
			}
		}
	}
	/* the lines as destinations against all the rules */
	for (size_t i = 0; i < n; i++)
		(void)acl_match_name(rules, nr, lines[i], port);
	free(buf);
}

/* The reference for tls_certdir_find over the names in FUZZ_CERT_HOSTS:
 * exact (any case), else "*.wild.example.com" for one more label. */
static int
fc_cert_ref(const char *host)
{
	static const char *const names[] = { "demo.example.com",
		"*.wild.example.com", "mixed.case.org" };
	const char *dot;

	if (host[0] == '\0')
		return 0;
	for (size_t i = 0; i < 3; i++)
		if (strcasecmp(names[i], host) == 0)
			return 1;
	/* documented as "one label"; an empty one (".wild.example.com")
	 * matches too, as the code does */
	return (dot = strchr(host, '.')) != NULL &&
	    strcasecmp(dot, ".wild.example.com") == 0;
}

static void
fc_sni_cert(const uint8_t *data, size_t size)
{
	char *host = malloc(size + 1);
	struct tls_ctx *c;

	memcpy(host, data, size);
	host[size] = '\0';
	c = tls_certdir_find(fc_certdir, host);
	if ((c != NULL) != fc_cert_ref(host) || (c != NULL && c != fc_any))
		abort();
	free(host);
}

static void
fc_local(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	struct local_spec l;
	const char *err = NULL;
	uint8_t id[16];
	int rc, hex;

	memcpy(s, data, size);
	s[size] = '\0';
	rc = conf_parse_local(s, &l, &err);
	if (rc == 0 && (l.port == 0 || l.host[0] == '\0'))
		abort();
	if (rc != 0 && (rc != MG_EINVAL || err == NULL))
		abort();
	rc = conf_hex_id(s, id);
	hex = strlen(s) == 32 && strspn(s, "0123456789abcdefABCDEF") == 32;
	if ((rc == 0) != hex)
		abort();
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	switch (data[0] % 6) {
	case 0:
		fc_argv(data + 2, size - 2, 0, data[1]);
		break;
	case 1:
		fc_argv(data + 2, size - 2, 1, data[1]);
		break;
	case 2:
		fc_token_file(data + 2, size - 2);
		break;
	case 3:
		fc_acl(data + 2, size - 2, data[1]);
		break;
	case 4:
		fc_sni_cert(data + 2, size - 2);
		break;
	case 5:
		fc_local(data + 2, size - 2);
		break;
	}
	return 0;
}
