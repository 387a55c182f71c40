/* tls_int.h: what tls.c shares with dtls.c and certs.c only (not part of tls.h's API). */
#ifndef MG_TLS_INT_H
#define MG_TLS_INT_H

#include <stddef.h>

#include <openssl/types.h>

struct tls_ctx;
struct tls_server_opts;

/* tls_errf: format a one-line reason into err (when err is not NULL). */
void tls_errf(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct tls_client_opts;

/*
 * tls_dgram_server_ctx_new / tls_dgram_client_ctx_new: as
 * tls_server_ctx_new / tls_client_ctx_new (same options, verification,
 * messages; tls_ssl_new, tls_handshake_start, tls_peer_subject, tls_why and
 * tls_server_reload work on them), but DTLS 1.2 only. setup, when not NULL,
 * is applied to every SSL_CTX made for the context, reloads included.
 * tls_handshake_start then also drives DTLS retransmissions.
 */
int tls_dgram_server_ctx_new(const struct tls_server_opts *o,
    void (*setup)(SSL_CTX *sc), struct tls_ctx **out, char *err,
    size_t errcap);
int tls_dgram_client_ctx_new(const struct tls_client_opts *o,
    void (*setup)(SSL_CTX *sc), struct tls_ctx **out, char *err,
    size_t errcap);

/*
 * tls_io_failed: after an SSL call on ssl (from tls_ssl_new) failed with
 * SSL_get_error sslerr and errno sys_errno, set the one-line reason that
 * tls_why(ssl) returns and clear OpenSSL's error queue. Returns the MG_E*
 * code for it.
 */
int tls_io_failed(SSL *ssl, int sslerr, int sys_errno);

#endif
