/* certs.c: `mgrok certs`: a small ECDSA P-256 PKI (CA, server, client)
 * for --tls, --tls-client-ca and --tls-pin. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"
#include "tls/tls_int.h"
#include "util/err.h"
#include "util/xmalloc.h"

#define LEAF_DAYS 825
#define CA_DAYS 3650
#define MAX_HOSTS 32


static const char *
ossl_err(void)
{
	unsigned long e, last = 0;
	const char *r;

	while ((e = ERR_get_error()) != 0)
		last = e;
	r = last != 0 ? ERR_reason_error_string(last) : NULL;
	return r != NULL ? r : "OpenSSL error";
}

/* A host from --hosts: an IP literal or a DNS name (letters, digits, '-',
 * '.', a leading "*." wildcard). */
static int
host_ok(const char *h, int *is_ip)
{
	unsigned char buf[16];
	size_t n = strlen(h);

	*is_ip = inet_pton(AF_INET, h, buf) == 1 ||
	    inet_pton(AF_INET6, h, buf) == 1;
	if (*is_ip)
		return 1;
	if (n == 0 || n > 253)
		return 0;
	if (strncmp(h, "*.", 2) == 0)
		h += 2;
	for (; *h != '\0'; h++)
		if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
		    (*h >= '0' && *h <= '9') || *h == '-' || *h == '.' ||
		    *h == '_'))
			return 0;
	return 1;
}

static EVP_PKEY *
gen_key(void)
{
	return EVP_EC_gen("P-256");
}

static int
rand_serial(X509 *x)
{
	unsigned char b[16];
	BIGNUM *bn = NULL;
	int ok = 0;

	if (RAND_bytes(b, sizeof(b)) != 1)
		return 0;
	b[0] &= 0x7f; /* positive */
	b[0] |= 0x40; /* and 127 bits long, never 0 */
	if ((bn = BN_bin2bn(b, sizeof(b), NULL)) != NULL &&
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL)
		ok = 1;
	BN_free(bn);
	return ok;
}

static int
add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *val)
{
	X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, v3, nid, val);
	int ok;

	if (ex == NULL)
		return 0;
	ok = X509_add_ext(x, ex, -1);
	X509_EXTENSION_free(ex);
	return ok;
}

static int
add_san(X509 *x, char **hosts, int nhosts)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	int ok = 0;

	if (gens == NULL)
		return 0;
	for (int i = 0; i < nhosts; i++) {
		GENERAL_NAME *g = NULL;
		int is_ip;

		(void)host_ok(hosts[i], &is_ip);
		if (is_ip) {
			ASN1_OCTET_STRING *ip = a2i_IPADDRESS(hosts[i]);

			if (ip == NULL || (g = GENERAL_NAME_new()) == NULL) {
				ASN1_OCTET_STRING_free(ip);
				goto out;
			}
			GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
		} else {
			ASN1_IA5STRING *s = ASN1_IA5STRING_new();

			if (s == NULL || !ASN1_STRING_set(s, hosts[i], -1) ||
			    (g = GENERAL_NAME_new()) == NULL) {
				ASN1_IA5STRING_free(s);
				goto out;
			}
			GENERAL_NAME_set0_value(g, GEN_DNS, s);
		}
		if (!sk_GENERAL_NAME_push(gens, g)) {
			GENERAL_NAME_free(g);
			goto out;
		}
	}
	ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
	    X509V3_ADD_DEFAULT) == 1;
out:
	GENERAL_NAMES_free(gens);
	return ok;
}

enum cert_kind { CERT_CA = 0, CERT_SERVER, CERT_CLIENT };

/*
 * One certificate for key, signed by ca/ca_key (NULL: self-signed CA).
 * Valid from 1 h before now to days from now, both moved by shift_s.
 */
static X509 *
make_cert(enum cert_kind kind, const char *cn, EVP_PKEY *key, X509 *ca,
    EVP_PKEY *ca_key, char **hosts, int nhosts, int days, long shift_s)
{
	X509 *x = X509_new();
	X509_NAME *name;
	X509V3_CTX v3;

	if (x == NULL || !X509_set_version(x, 2) || !rand_serial(x))
		goto fail;
	if (X509_gmtime_adj(X509_getm_notBefore(x), shift_s - 3600) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), days, shift_s,
	    NULL) == NULL)
		goto fail;
	name = X509_get_subject_name(x);
	if (kind == CERT_CA && !X509_NAME_add_entry_by_txt(name, "O",
	    MBSTRING_UTF8, (const unsigned char *)"mgrok", -1, -1, 0))
		goto fail;
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0))
		goto fail;
	if (!X509_set_issuer_name(x, ca != NULL ? X509_get_subject_name(ca) :
	    name) || !X509_set_pubkey(x, key))
		goto fail;
	X509V3_set_ctx(&v3, ca != NULL ? ca : x, x, NULL, NULL, 0);
	if (!add_ext(x, &v3, NID_subject_key_identifier, "hash") ||
	    !add_ext(x, &v3, NID_authority_key_identifier, "keyid:always"))
		goto fail;
	switch (kind) {
	case CERT_CA:
		if (!add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE") ||
		    !add_ext(x, &v3, NID_key_usage,
		    "critical,keyCertSign,cRLSign,digitalSignature"))
			goto fail;
		break;
	case CERT_SERVER:
	case CERT_CLIENT:
		if (!add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") ||
		    !add_ext(x, &v3, NID_key_usage,
		    "critical,digitalSignature") ||
		    !add_ext(x, &v3, NID_ext_key_usage, kind == CERT_SERVER ?
		    "serverAuth" : "clientAuth"))
			goto fail;
		if (kind == CERT_SERVER && !add_san(x, hosts, nhosts))
			goto fail;
		break;
	}
	if (X509_sign(x, ca_key != NULL ? ca_key : key, EVP_sha256()) <= 0)
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

/* Write one PEM file with exactly mode; O_EXCL unless force. */
static int
write_pem(const char *path, mode_t mode, int force, X509 *x, EVP_PKEY *k,
    char *err, size_t errcap)
{
	int fd, ok;
	FILE *f;

	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC |
	    (force ? O_TRUNC : O_EXCL), mode);
	if (fd < 0) {
		tls_errf(err, errcap, "%s: %s", path, strerror(errno));
		return errno == EEXIST ? MG_EINUSE : MG_EIO;
	}
	if (fchmod(fd, mode) != 0 || (f = fdopen(fd, "w")) == NULL) {
		tls_errf(err, errcap, "%s: %s", path, strerror(errno));
		close(fd);
		return MG_EIO;
	}
	ok = x != NULL ? PEM_write_X509(f, x) :
	    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	if (fclose(f) != 0)
		ok = 0;
	if (!ok) {
		tls_errf(err, errcap, "%s: write failed: %s", path, ossl_err());
		return MG_EIO;
	}
	return 0;
}

static int
load_ca(const char *dir, X509 **ca, EVP_PKEY **key, char *err,
    size_t errcap)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/ca.pem", dir);
	if ((f = fopen(path, "r")) == NULL) {
		tls_errf(err, errcap, "%s: %s", path, strerror(errno));
		return MG_EIO;
	}
	*ca = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (*ca == NULL) {
		tls_errf(err, errcap, "%s: not a PEM certificate", path);
		ERR_clear_error();
		return MG_EINVAL;
	}
	snprintf(path, sizeof(path), "%s/ca.key", dir);
	if ((f = fopen(path, "r")) == NULL) {
		tls_errf(err, errcap, "%s: %s", path, strerror(errno));
		return MG_EIO;
	}
	*key = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
	fclose(f);
	if (*key == NULL) {
		tls_errf(err, errcap, "%s: not an unencrypted PEM private key",
		    path);
		ERR_clear_error();
		return MG_EINVAL;
	}
	if (X509_check_private_key(*ca, *key) != 1) {
		tls_errf(err, errcap, "%s/ca.key does not match %s/ca.pem", dir,
		    dir);
		ERR_clear_error();
		return MG_EINVAL;
	}
	return 0;
}

static const char *const files[] = { "ca.pem", "ca.key", "server.pem",
	"server.key", "client.pem", "client.key" };

int
tls_certs_generate(const struct tls_certs_opts *o, char *err, size_t errcap)
{
	char *hostbuf = NULL, *hosts[MAX_HOSTS], *save = NULL, *h;
	char path[PATH_MAX], cn[65];
	EVP_PKEY *ca_key = NULL, *srv_key = NULL, *cli_key = NULL;
	X509 *ca = NULL, *srv = NULL, *cli = NULL;
	int nhosts = 0, rc = MG_EINVAL, days, ca_days, new_ca;
	struct stat st;

	if (o->out_dir == NULL || *o->out_dir == '\0') {
		tls_errf(err, errcap, "--out DIR is required");
		goto out;
	}
	if (o->hosts == NULL || *o->hosts == '\0') {
		tls_errf(err, errcap, "--hosts h1,h2 is required (the names or "
		    "addresses clients use to reach the server)");
		goto out;
	}
	days = o->days > 0 ? o->days : LEAF_DAYS;
	ca_days = o->ca_days > 0 ? o->ca_days : CA_DAYS;
	if (ca_days < days)
		ca_days = days;
	hostbuf = xstrdup(o->hosts);
	for (h = strtok_r(hostbuf, ",", &save); h != NULL;
	    h = strtok_r(NULL, ",", &save)) {
		int is_ip;

		while (*h == ' ')
			h++;
		if (*h == '\0')
			continue;
		if (!host_ok(h, &is_ip)) {
			tls_errf(err, errcap, "--hosts: \"%s\" is neither a DNS "
			    "name nor an IP address", h);
			goto out;
		}
		if (nhosts == MAX_HOSTS) {
			tls_errf(err, errcap, "--hosts: at most %d", MAX_HOSTS);
			goto out;
		}
		hosts[nhosts++] = h;
	}
	if (nhosts == 0) {
		tls_errf(err, errcap, "--hosts: no host given");
		goto out;
	}
	new_ca = o->ca_dir == NULL;

	/* Refuse before writing anything. */
	if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST) {
		tls_errf(err, errcap, "--out %s: %s", o->out_dir, strerror(errno));
		rc = MG_EIO;
		goto out;
	}
	if (!o->force) {
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			if (!new_ca && strcmp(files[i], "ca.key") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", o->out_dir,
			    files[i]);
			if (lstat(path, &st) == 0) {
				tls_errf(err, errcap, "%s exists (--force "
				    "overwrites)", path);
				rc = MG_EINUSE;
				goto out;
			}
		}
	}

	if (new_ca) {
		unsigned char r[4];
		char hx[9];

		if (RAND_bytes(r, sizeof(r)) != 1)
			goto ossl;
		snprintf(hx, sizeof(hx), "%02X%02X%02X%02X", r[0], r[1], r[2],
		    r[3]);
		snprintf(cn, sizeof(cn), "mgrok CA %s", hx);
		if ((ca_key = gen_key()) == NULL ||
		    (ca = make_cert(CERT_CA, cn, ca_key, NULL, NULL, NULL, 0,
		    ca_days, o->shift_s)) == NULL)
			goto ossl;
	} else if ((rc = load_ca(o->ca_dir, &ca, &ca_key, err, errcap)) != 0)
		goto out;
	snprintf(cn, sizeof(cn), "%.64s", hosts[0]);
	if ((srv_key = gen_key()) == NULL ||
	    (srv = make_cert(CERT_SERVER, cn, srv_key, ca, ca_key, hosts,
	    nhosts, days, o->shift_s)) == NULL ||
	    (cli_key = gen_key()) == NULL ||
	    (cli = make_cert(CERT_CLIENT, "mgrok-client", cli_key, ca, ca_key,
	    NULL, 0, days, o->shift_s)) == NULL)
		goto ossl;

#define PUT(name, mode, x, k)                                                 \
	do {                                                                  \
		snprintf(path, sizeof(path), "%s/%s", o->out_dir, name);      \
		if ((rc = write_pem(path, mode, o->force, x, k, err,          \
		    errcap)) != 0)                                            \
			goto out;                                             \
	} while (0)
	PUT("ca.pem", 0644, ca, NULL);
	if (new_ca)
		PUT("ca.key", 0600, NULL, ca_key);
	PUT("server.pem", 0644, srv, NULL);
	PUT("server.key", 0600, NULL, srv_key);
	PUT("client.pem", 0644, cli, NULL);
	PUT("client.key", 0600, NULL, cli_key);
#undef PUT
	rc = 0;
	goto out;
ossl:
	tls_errf(err, errcap, "certificate generation failed: %s", ossl_err());
	rc = MG_EIO;
out:
	free(hostbuf);
	X509_free(ca);
	X509_free(srv);
	X509_free(cli);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(srv_key);
	EVP_PKEY_free(cli_key);
	return rc;
}
