/* certdir.h: HTTPS certificates chosen by SNI from a directory. */
#ifndef MG_CERTDIR_H
#define MG_CERTDIR_H

#include <stddef.h>

struct tls_certdir;
struct tls_ctx;

/*
 * tls_certdir_load: every NAME.pem in dir with its NAME.key becomes a
 * server context for the DNS names of its subjectAltName (or its CN).
 * 0, or an error with the reason in err. Free with tls_certdir_free.
 */
int tls_certdir_load(const char *dir, struct tls_certdir **out, char *err,
    size_t errcap);

/* tls_certdir_find: the context for host (exact name first, then a
 * "*.parent" wildcard), or NULL. */
struct tls_ctx *tls_certdir_find(const struct tls_certdir *d,
    const char *host);

void tls_certdir_free(struct tls_certdir *d);

#endif
