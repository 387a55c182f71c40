/* certs_cmd.c: `mgrok certs`: options, then tls_certs_generate, then the
 * flags that use what it wrote. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "tls/tls.h"

static void
certs_usage(FILE *f)
{
	fprintf(f,
	    "usage: mgrok certs --out DIR --hosts HOST[,HOST...] [--days N] "
	    "[--ca-days N] [--force]\n"
	    "  Writes a CA (ca.pem, ca.key), a server certificate (server.pem,\n"
	    "  server.key) for the given DNS names / IP addresses, and a client\n"
	    "  certificate (client.pem, client.key) to DIR. ECDSA P-256.\n"
	    "  --days N     leaf certificate lifetime (825)\n"
	    "  --ca-days N  CA lifetime (3650)\n"
	    "  --force      overwrite existing files\n");
}

static int
parse_days(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 36500)
		return -1;
	*out = (int)v;
	return 0;
}

int
cli_certs(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "hosts", required_argument, NULL, 'H' },
		{ "days", required_argument, NULL, 'd' },
		{ "ca-days", required_argument, NULL, 'c' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tls_certs_opts o = { 0 };
	char err[512], pin[TLS_PIN_MAX], path[PATH_MAX], host[256];
	const char *d;
	int ch;

	optind = 0; /* glibc: full re-initialisation */
	while ((ch = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (ch) {
		case 'o':
			o.out_dir = optarg;
			break;
		case 'H':
			o.hosts = optarg;
			break;
		case 'd':
			if (parse_days(optarg, &o.days) != 0) {
				fprintf(stderr, "mgrok certs: --days %s: "
				    "expected 1 to 36500\n", optarg);
				return 2;
			}
			break;
		case 'c':
			if (parse_days(optarg, &o.ca_days) != 0) {
				fprintf(stderr, "mgrok certs: --ca-days %s: "
				    "expected 1 to 36500\n", optarg);
				return 2;
			}
			break;
		case 'f':
			o.force = 1;
			break;
		case 'h':
			certs_usage(stdout);
			return 0;
		default:
			certs_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mgrok certs: unexpected argument \"%s\"\n",
		    argv[optind]);
		certs_usage(stderr);
		return 2;
	}
	if (o.out_dir == NULL || o.hosts == NULL) {
		fprintf(stderr, "mgrok certs: %s is required\n",
		    o.out_dir == NULL ? "--out DIR" : "--hosts HOST[,HOST...]");
		certs_usage(stderr);
		return 2;
	}
	if (tls_certs_generate(&o, err, sizeof(err)) != 0) {
		fprintf(stderr, "mgrok certs: %s\n", err);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/server.pem", o.out_dir);
	if (tls_cert_pin(path, pin, sizeof(pin)) != 0)
		snprintf(pin, sizeof(pin), "?");
	snprintf(host, sizeof(host), "%.*s", (int)strcspn(o.hosts, ","),
	    o.hosts);
	d = o.out_dir;
	printf("Wrote %s/{ca,server,client}.pem and .key (keys are 0600; keep "
	    "ca.key offline).\n\n", d);
	printf("Server:\n  mgrok server --tls --tls-cert %s/server.pem "
	    "--tls-key %s/server.key \\\n      --tls-client-ca %s/ca.pem "
	    "--tls-client-auth require\n\n", d, d, d);
	printf("Client (copy ca.pem, client.pem and client.key to it):\n"
	    "  mgrok tcp 3000 --server %s%s%s:9000 --tls --tls-ca %s/ca.pem "
	    "\\\n      --tls-cert %s/client.pem --tls-key %s/client.key\n\n",
	    strchr(host, ':') != NULL ? "[" : "", host,
	    strchr(host, ':') != NULL ? "]" : "", d, d, d);
	printf("Or pin the server certificate instead of --tls-ca:\n"
	    "  --tls-pin %s\n", pin);
	return 0;
}
