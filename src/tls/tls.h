/*
 * tls.h: OpenSSL contexts for the tunnel port (docs/protocol.md sections 1, 2,
 * 4.2, 6): server and client set-up, verification (CA, host name or IP,
 * SHA-256 pin, mTLS), ALPN, a libevent-driven non-blocking handshake that
 * reports failures as one clear line, non-blocking I/O helpers for the mux,
 * and `mgrok certs`.
 *
 * OpenSSL is initialised only when one of these functions first needs it,
 * so a plain (non-TLS) process never pays for it.
 */
#ifndef MG_TLS_H
#define MG_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <openssl/types.h> /* SSL, SSL_CTX */

struct event_base;
struct evbuffer;

/* ALPN protocol names (docs/protocol.md section 1). */
#define TLS_ALPN_TUNNEL "mgrok/1"
#define TLS_ALPN_STREAM "mgrok-stream/1"
#define TLS_ALPN_HTTP "http/1.1"

/* Room for "sha256:" and 64 hex digits and the NUL. */
#define TLS_PIN_MAX 72

enum tls_client_auth {
	TLS_CLIENT_AUTH_NONE = 0,     /* no client certificate asked for */
	TLS_CLIENT_AUTH_OPTIONAL = 1, /* asked for; verified when sent */
	TLS_CLIENT_AUTH_REQUIRE = 2,  /* a verified one is required */
};

/*
 * Server options. Paths are copied; the struct may go after the call.
 * client_ca set with client_auth NONE means REQUIRE (a CA given for client
 * certificates that did not ask for them would be a silent hole); client_auth
 * other than NONE without client_ca is an error.
 */
struct tls_server_opts {
	const char *cert;      /* PEM chain: leaf first (required) */
	const char *key;       /* PEM private key, unencrypted (required) */
	const char *client_ca; /* PEM CA(s) for client certificates, or NULL */
	int client_auth;       /* enum tls_client_auth */
};

/*
 * Client options. Strings are copied.
 * - ca: PEM CA file; NULL = the system roots.
 * - server_name: the name (or IP literal) the server's certificate must
 *   carry, also sent as SNI unless it is an IP; NULL or "" = no name check
 *   (the caller passes the host of --server, so leave it NULL only with a
 *   pin).
 * - pin: "sha256:HEX" (upper or lower case, ':' separators allowed) of the
 *   server's leaf certificate DER. With a pin, the pin replaces CA and name
 *   verification: the handshake succeeds if and only if the leaf matches,
 *   which is what makes self-signed servers usable.
 * - cert/key: client certificate for mTLS (both or neither).
 * - alpn: the protocol to offer; NULL = "mgrok/1", "" = offer none.
 */
struct tls_client_opts {
	const char *ca, *cert, *key, *server_name, *pin;
	const char *alpn;
};

struct tls_ctx; /* an SSL_CTX plus what verification needs */

/*
 * tls_server_ctx_new / tls_client_ctx_new: build a context (TLS 1.2 minimum,
 * 1.3 preferred, ECDHE with AES-GCM or ChaCha20 only, no compression, no
 * renegotiation, no session tickets). 0 and *out set (free with
 * tls_ctx_free), or MG_EINVAL / MG_EIO with a one-line reason in err (e.g.
 * "--tls-cert pki/x.pem: No such file or directory", "--tls-key k.pem does
 * not match the certificate in --tls-cert c.pem").
 */
int tls_server_ctx_new(const struct tls_server_opts *o, struct tls_ctx **out,
    char *err, size_t errcap);
int tls_client_ctx_new(const struct tls_client_opts *o, struct tls_ctx **out,
    char *err, size_t errcap);

/*
 * tls_server_reload: read the server's certificate, key and client CA again
 * (SIGHUP) into a new SSL_CTX and use it for connections made from now on.
 * Connections already made keep the SSL_CTX they hold a reference to. 0, or
 * an error with the reason in err and the old context left in place.
 */
int tls_server_reload(struct tls_ctx *c, char *err, size_t errcap);

/* tls_ctx_free: NULL is fine. SSL objects made from c stay usable. */
void tls_ctx_free(struct tls_ctx *c);

/*
 * tls_ssl_new: an SSL bound to the connected non-blocking socket fd, in
 * server or client state as c is; for a client, SNI, the name or IP check,
 * the pin and ALPN are set. The caller owns the SSL (SSL_free) and fd
 * (SSL_free does not close it). NULL only if OpenSSL fails to allocate.
 */
SSL *tls_ssl_new(struct tls_ctx *c, int fd);

/* tls_ssl_new_name: the same for a client, with name (not NULL; at most
 * 255 bytes) in place of the context's server_name: one context for
 * several servers, each checked against its own name. */
SSL *tls_ssl_new_name(struct tls_ctx *c, int fd, const char *name);

/*
 * tls_handshake_start: drive SSL_do_handshake on ssl (from tls_ssl_new)
 * from base. done(ssl, err, why, arg) is called exactly once, from the
 * event loop (never from inside this call): err 0 and why "" on success;
 * otherwise MG_ETIMEDOUT, MG_EAUTH (verification), MG_EPROTO, MG_ECLOSED or
 * MG_EIO and why a one-line reason for the user ("the server's certificate
 * is not signed by the CA in --tls-ca"). why stays valid until SSL_free.
 * The handle is freed once done returns: done may free ssl and close fd,
 * but must not cancel. The caller owns ssl and fd throughout.
 *
 * TLS 1.3 note: a client's handshake completes before the server has
 * checked the client certificate. If the server then refuses it, the
 * client learns it on its first tls_readv (-1, EIO) and tls_why(ssl) says
 * "the server requires a client certificate (--tls-cert/--tls-key)".
 *
 * Returns NULL (and never calls done) if ssl was not made by tls_ssl_new or
 * libevent fails.
 */
struct tls_hs;
struct tls_hs *tls_handshake_start(struct event_base *base, SSL *ssl,
    int is_server, unsigned timeout_s,
    void (*done)(SSL *ssl, int err, const char *why, void *arg), void *arg);

/* tls_handshake_cancel: stop a handshake in progress without calling done;
 * frees hs. NULL is fine. */
void tls_handshake_cancel(struct tls_hs *hs);

/* tls_alpn: the ALPN protocol selected in the handshake, or "" (the server:
 * "" means the client offered none, i.e. a tunnel session). Static or
 * owned by ssl. */
const char *tls_alpn(SSL *ssl);

/*
 * tls_peer_subject: the subject of the peer's certificate, verified against
 * the configured CA, as one RFC 2253 line into buf. 0; MG_EAUTH when the
 * peer sent no certificate or it was not verified; MG_ENOSPC if cap is too
 * small.
 */
int tls_peer_subject(SSL *ssl, char *buf, size_t cap);

/* tls_peer_pin: "sha256:HEX" of the peer's leaf certificate into out.
 * 0, MG_EAUTH (no certificate) or MG_ENOSPC. */
int tls_peer_pin(SSL *ssl, char *out, size_t cap);

/* tls_cert_pin: "sha256:HEX" (upper-case hex, no separators) of the first
 * certificate in the PEM file. 0, MG_EIO (unreadable or not PEM) or
 * MG_ENOSPC (cap < TLS_PIN_MAX). */
int tls_cert_pin(const char *pem_path, char *out, size_t cap);

/*
 * tls_pin_parse: "sha256:HEX" (case-insensitive, ':' separators allowed)
 * to 32 bytes. 0 or MG_EINVAL.
 */
int tls_pin_parse(const char *s, unsigned char md[32]);

/*
 * tls_readv: read decrypted bytes into iov[0..n), filling each in turn
 * until TLS has no more ready. Returns >0 bytes; 0 at the end of the
 * connection (close_notify or plain EOF); -1 with errno EAGAIN when
 * nothing is ready (wait for readable, or writable if *want_write is set);
 * -1 with errno EIO on error (tls_why(ssl) says what).
 */
ssize_t tls_readv(SSL *ssl, struct iovec *iov, int n, int *want_write);

/*
 * tls_write_evbuffer: encrypt and send as much of out as the socket takes,
 * draining what was sent. Returns >0 bytes taken (0 if out is empty); -1
 * with errno EAGAIN when nothing could be sent (wait for writable, or
 * readable if *want_read is set); -1 with errno EIO on error (tls_why).
 * Between calls the caller may append to out but must not remove from it:
 * TLS retries a blocked record with the same leading bytes.
 */
ssize_t tls_write_evbuffer(SSL *ssl, struct evbuffer *out, int *want_read);

/*
 * tls_batch_io: for a bulk session after its handshake: gather ssl's
 * outgoing records, up to cap bytes, and send them to fd with one writev
 * instead of a write(2) per record, and read incoming records from fd up
 * to cap bytes at a time (see batchio.c). 0 or MG_ENOMEM. Afterwards
 * records may wait in the outgoing batch: tls_write_evbuffer and tls_shutdown flush it at their end,
 * tls_wpending tells how many bytes still wait (the socket was full; wait
 * for writable), tls_flush sends them: 0 when none is left, -1 with errno
 * (EAGAIN: the socket is full). Without batching, tls_wpending is 0 and
 * tls_flush does nothing.
 */
int tls_batch_io(SSL *ssl, int fd, size_t cap);
size_t tls_wpending(SSL *ssl);
/*
 * tls_read_dry: 1 when, with batching, the last read found the socket
 * empty and no byte waits in the batch or inside OpenSSL: reading again
 * before the socket is readable would only fail with EAGAIN. 0 otherwise
 * (and always without batching).
 */
int tls_read_dry(SSL *ssl);
int tls_flush(SSL *ssl);

/*
 * mux_new_tls: an smux session (mux/mux.h) over the TLS connection ssl
 * (from tls_ssl_new on fd) whose handshake is done, its records batched
 * (tls_batch_io); with ssl NULL, over the plain socket fd (mux_new). The
 * session owns fd and ssl: mux_free sends close_notify and frees ssl. Named for the mux, whose constructor it is, but here,
 * because only src/tls knows OpenSSL (tlsxprt.c, the mux's TLS transport).
 */
struct mux;
struct mux_config;
struct mux_callbacks;
struct mux *mux_new_tls(struct event_base *base, int fd, SSL *ssl,
    int is_client, const struct mux_config *cfg,
    const struct mux_callbacks *cbs, void *arg);

/* tls_shutdown: send close_notify (best effort, non-blocking). */
void tls_shutdown(SSL *ssl);

/* tls_why: the one-line reason of ssl's last failure, or "". Owned by ssl. */
const char *tls_why(SSL *ssl);

/*
 * Certificate generation (`mgrok certs`). Files in out_dir: ca.pem,
 * ca.key, server.pem, server.key, client.pem, client.key; keys 0600,
 * certificates 0644. ECDSA P-256, SHA-256, random 128-bit serials,
 * validity from 1 h before now.
 */
struct tls_certs_opts {
	const char *out_dir; /* created (0755) if missing */
	const char *hosts;   /* "h1,h2": DNS names or IPv4/IPv6 literals */
	int days;            /* leaves; 0 = 825 */
	int ca_days;         /* 0 = 3650 */
	int force;           /* overwrite existing files */
	const char *ca_dir;  /* sign with ca.pem/ca.key from here instead of
				making a new CA (ca.pem is copied to out_dir);
				NULL = new CA */
	long shift_s;        /* move every validity by this many seconds
				(tests make expired certificates); 0 */
};

/* tls_certs_generate: 0, or MG_EINVAL / MG_EINUSE (a file exists and not
 * force) / MG_EIO with the reason in err. Writes nothing if a file would be
 * overwritten. */
int tls_certs_generate(const struct tls_certs_opts *o, char *err,
    size_t errcap);

#endif
