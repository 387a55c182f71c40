/* fuzz_certs.h: a throw-away certificate set for the TLS harnesses, made
 * once per process with `mgrok certs`'s generator (tls_certs_generate) in
 * a new directory under $TMPDIR or /tmp: server.pem/server.key for the
 * host names below, and certdir/, an --https-cert-dir holding the same
 * pair as site.pem/site.key. The harness loads what it needs and then
 * removes it all with fuzz_certs_rm (libFuzzer may end with _Exit, which
 * runs no atexit handler). */
#ifndef FUZZ_CERTS_H
#define FUZZ_CERTS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls/tls.h"

#define FUZZ_CERT_HOSTS "demo.example.com,*.wild.example.com,Mixed.Case.Org,127.0.0.1"

static char fuzz_certs_dir[4096];

/* fuzz_certs_rm: remove what fuzz_certs_make wrote, the directory too. */
static void
fuzz_certs_rm(void)
{
	static const char *const files[] = { "certdir/site.pem",
		"certdir/site.key", "certdir", "ca.pem", "ca.key",
		"server.pem", "server.key", "client.pem", "client.key", "" };
	char p[4200];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", fuzz_certs_dir, files[i]);
		if (unlink(p) != 0)
			rmdir(p);
	}
}

/* fuzz_certs_make: the directory's path in dir (cap bytes); aborts if
 * anything fails (the harness cannot run without them). */
static void
fuzz_certs_make(char *dir, size_t cap)
{
	const char *tmp = getenv("TMPDIR");
	struct tls_certs_opts o;
	char err[512], a[4200], b[4200];

	snprintf(dir, cap, "%s/mgrok-fuzz-certs.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(fuzz_certs_dir, sizeof(fuzz_certs_dir), "%s", dir);
	memset(&o, 0, sizeof(o));
	o.out_dir = dir;
	o.hosts = FUZZ_CERT_HOSTS;
	o.force = 1;
	if (tls_certs_generate(&o, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_certs_make: %s\n", err);
		abort();
	}
	snprintf(a, sizeof(a), "%s/certdir", dir);
	if (mkdir(a, 0700) != 0)
		abort();
	snprintf(a, sizeof(a), "%s/server.pem", dir);
	snprintf(b, sizeof(b), "%s/certdir/site.pem", dir);
	if (link(a, b) != 0)
		abort();
	snprintf(a, sizeof(a), "%s/server.key", dir);
	snprintf(b, sizeof(b), "%s/certdir/site.key", dir);
	if (link(a, b) != 0)
		abort();
}

#endif
