/* certdir.c: --https-cert-dir: a directory of certificates (NAME.pem with
 * NAME.key), each serving the host names in its subjectAltName (or its CN
 * when it has none), chosen per connection by SNI. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/certdir.h"
#include "tls/tls.h"
#include "util/err.h"
#include "util/log.h"
#include "util/xmalloc.h"

#define CERTDIR_MAX 1024

struct certdir_entry {
	char name[256];          /* lower case; "*.example.com" for wildcards */
	struct tls_ctx *ctx;     /* shared by the names of one certificate */
	int owner;               /* this entry frees ctx */
};

struct tls_certdir {
	struct certdir_entry *e;
	size_t n, cap;
};

static void
certdir_add(struct tls_certdir *d, const char *name, size_t len,
    struct tls_ctx *ctx, int owner)
{
	if (len == 0 || len > 255)
		return;
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		d->e = xrealloc(d->e, d->cap * sizeof(*d->e));
	}
	for (size_t i = 0; i < len; i++)
		d->e[d->n].name[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ?
		    name[i] + 32 : name[i]);
	d->e[d->n].name[len] = '\0';
	d->e[d->n].ctx = ctx;
	d->e[d->n].owner = owner;
	d->n++;
}

/* The DNS names of the certificate in path; 0 names is an error. */
static int
certdir_names(struct tls_certdir *d, const char *path, struct tls_ctx *ctx)
{
	FILE *f = fopen(path, "r");
	X509 *x;
	GENERAL_NAMES *gens;
	size_t before = d->n;

	if (f == NULL)
		return MG_EIO;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL)
		return MG_EINVAL;
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == GEN_DNS)
			certdir_add(d, (const char *)ASN1_STRING_get0_data(
			    g->d.dNSName), (size_t)ASN1_STRING_length(
			    g->d.dNSName), ctx, d->n == before);
	}
	GENERAL_NAMES_free(gens);
	if (d->n == before) {
		char cn[256];
		int l = X509_NAME_get_text_by_NID(X509_get_subject_name(x),
		    NID_commonName, cn, sizeof(cn));
		if (l > 0)
			certdir_add(d, cn, (size_t)l, ctx, 1);
	}
	X509_free(x);
	return d->n > before ? 0 : MG_EINVAL;
}

int
tls_certdir_load(const char *dir, struct tls_certdir **out, char *err,
    size_t errcap)
{
	struct tls_certdir *d = xcalloc(1, sizeof(*d));
	DIR *dh = opendir(dir);
	struct dirent *de;
	int files = 0, rc = 0;

	*out = NULL;
	if (dh == NULL) {
		snprintf(err, errcap, "--https-cert-dir %s: cannot open it",
		    dir);
		free(d);
		return MG_EIO;
	}
	while ((de = readdir(dh)) != NULL && files < CERTDIR_MAX) {
		size_t l = strlen(de->d_name);
		char pem[4096], key[4096], terr[512];
		struct tls_server_opts o;
		struct tls_ctx *ctx;
		if (l < 5 || strcmp(de->d_name + l - 4, ".pem") != 0)
			continue;
		snprintf(pem, sizeof(pem), "%s/%s", dir, de->d_name);
		snprintf(key, sizeof(key), "%s/%.*s.key", dir, (int)(l - 4),
		    de->d_name);
		memset(&o, 0, sizeof(o));
		o.cert = pem;
		o.key = key;
		if (tls_server_ctx_new(&o, &ctx, terr, sizeof(terr)) < 0) {
			snprintf(err, errcap, "--https-cert-dir: %s", terr);
			rc = MG_EINVAL;
			break;
		}
		if (certdir_names(d, pem, ctx) < 0) {
			tls_ctx_free(ctx);
			snprintf(err, errcap, "--https-cert-dir: %s names no "
					      "host",
			    pem);
			rc = MG_EINVAL;
			break;
		}
		files++;
	}
	closedir(dh);
	if (rc == 0 && d->n == 0) {
		snprintf(err, errcap, "--https-cert-dir %s: no NAME.pem with "
				      "NAME.key in it",
		    dir);
		rc = MG_EINVAL;
	}
	if (rc < 0) {
		tls_certdir_free(d);
		return rc;
	}
	log_info("https: %d certificates for %zu host names from %s", files,
	    d->n, dir);
	*out = d;
	return 0;
}

struct tls_ctx *
tls_certdir_find(const struct tls_certdir *d, const char *host)
{
	const char *dot;

	if (d == NULL || host[0] == '\0')
		return NULL;
	for (size_t i = 0; i < d->n; i++)
		if (strcasecmp(d->e[i].name, host) == 0)
			return d->e[i].ctx;
	/* a wildcard covers exactly one label */
	if ((dot = strchr(host, '.')) == NULL)
		return NULL;
	for (size_t i = 0; i < d->n; i++)
		if (d->e[i].name[0] == '*' && d->e[i].name[1] == '.' &&
		    strcasecmp(d->e[i].name + 1, dot) == 0)
			return d->e[i].ctx;
	return NULL;
}

void
tls_certdir_free(struct tls_certdir *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n; i++)
		if (d->e[i].owner)
			tls_ctx_free(d->e[i].ctx);
	free(d->e);
	free(d);
}
