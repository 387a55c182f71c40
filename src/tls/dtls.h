/*
 * dtls.h: DTLS 1.2 for the UDP side of the stream proxy (docs/protocol.md
 * section 6): server and client contexts, the stateless cookie exchange,
 * handing a listened-for connection to its own connected socket, and
 * one-record-per-datagram I/O.
 *
 * The contexts are struct tls_ctx (tls.h), so verification, pins, the
 * one-line failure reasons (tls_why), tls_peer_subject, tls_server_reload
 * and the handshake driver are the TLS ones: tls_handshake_start on an SSL
 * from dtls_ssl_new drives the DTLS handshake, retransmissions included
 * (DTLSv1_get_timeout / DTLSv1_handle_timeout).
 */
#ifndef MG_DTLS_H
#define MG_DTLS_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <openssl/types.h>

struct tls_ctx;
struct tls_server_opts;
struct tls_client_opts;

/* The largest datagram carried: one DTLS record's plaintext. */
#define DTLS_MAX_RECORD 16384

/*
 * dtls_server_ctx_new: a DTLS 1.2 server context from o's certificate, key
 * and client CA. A verified client certificate is always required
 * (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT; o->client_ca must be
 * set, o->client_auth is ignored); cookies are an HMAC-SHA256 of the
 * peer's address under a random per-process key. 0 and *out (free with
 * tls_ctx_free), or MG_EINVAL / MG_EIO with the reason in err.
 */
int dtls_server_ctx_new(const struct tls_server_opts *o, struct tls_ctx **out,
    char *err, size_t errcap);

/*
 * dtls_client_ctx_new: a DTLS 1.2 client context; o as for
 * tls_client_ctx_new (CA, pin, server name, client certificate), no ALPN
 * unless o->alpn is set and not "". Same returns as dtls_server_ctx_new.
 */
int dtls_client_ctx_new(const struct tls_client_opts *o, struct tls_ctx **out,
    char *err, size_t errcap);

/*
 * dtls_ssl_new: an SSL from c on the non-blocking UDP socket fd. A client
 * fd must be connect()ed already (peer is taken from it); a server SSL
 * starts on the listening socket, for dtls_listen. The caller owns the SSL
 * (SSL_free) and fd (never closed by OpenSSL). NULL if OpenSSL fails.
 */
SSL *dtls_ssl_new(struct tls_ctx *c, int fd);

/*
 * dtls_listen: one step of the stateless cookie exchange on a server SSL
 * from dtls_ssl_new: reads at most one datagram from the listening socket.
 * Returns 1 when it was a ClientHello with a valid cookie (the sender in
 * *peer and *peerlen; ssl keeps the datagram: dtls_accept_on), 0 when
 * there was nothing, or junk was dropped, or a HelloVerifyRequest was sent;
 * MG_EIO when the SSL is unusable (free it and make another).
 */
int dtls_listen(SSL *ssl, struct sockaddr_storage *peer, socklen_t *peerlen);

/*
 * dtls_accept_on: after dtls_listen returned 1, move ssl to fd, a new
 * non-blocking UDP socket bound to the listening address and connect()ed
 * to peer; the ClientHello dtls_listen read stays inside ssl. Continue
 * with tls_handshake_start. 0, or MG_EIO if OpenSSL fails to allocate.
 */
int dtls_accept_on(SSL *ssl, int fd, const struct sockaddr *peer);

/*
 * dtls_read: one record into buf (cap bytes at most; a longer record is
 * an error). Returns its length (> 0; an empty record reads as EAGAIN); 0
 * when the peer closed (close_notify); -1 with errno EAGAIN when nothing
 * is ready; -1 with errno ECONNREFUSED, EHOSTUNREACH, ENETUNREACH or
 * EHOSTDOWN for an ICMP error reported on the socket (count it, call
 * again: nothing was lost); -1 with errno EIO on a fatal error (tls_why).
 */
ssize_t dtls_read(SSL *ssl, void *buf, size_t cap);

/*
 * dtls_write: send buf as one record in one datagram (1..DTLS_MAX_RECORD
 * bytes). 0 when sent; MG_EAGAIN when it was dropped (socket buffer full,
 * an ICMP error pending on the socket: errno says; DTLS keeps no partial
 * record, so the next call is independent); MG_EINVAL for a bad length;
 * MG_EIO on a fatal error (tls_why).
 */
int dtls_write(SSL *ssl, const void *buf, size_t len);

/* dtls_transient: errno e is an ICMP error or a full buffer on a UDP
 * socket, something to count and carry on after. */
int dtls_transient(int e);

#endif
