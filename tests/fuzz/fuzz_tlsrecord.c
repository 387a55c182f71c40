/* fuzz_tlsrecord.c: libFuzzer harness for the bytes a TLS peer sends
 * before and after its handshake.
 *
 * 1. http_sni_peek (the HTTPS listener's ClientHello peek) on every prefix
 *    of the input's first 2 KiB, each at the very end of an allocation so that a read
 *    past len is caught: every prefix answers MG_EAGAIN, MG_EPROTO,
 *    MG_ENOSPC or a name, and once a prefix has an answer other than
 *    MG_EAGAIN every longer prefix gives the same one (the listener may
 *    decide on any split of the hello).
 * 2. A TLS relay (relay/tlsrelay.c, the stream proxy's and `mgrok
 *    connect`'s) after a real handshake over a socketpair: the input is a
 *    script of what the TLS peer and the plain side do: records of chosen
 *    sizes, plain bytes, raw bytes injected into the TLS stream, KeyUpdate,
 *    close_notify, a truncated connection, half-closes, each followed by a
 *    round of the event loop. Whatever reaches either side must be a prefix
 *    of what the other side sent; with nothing injected or cut, everything
 *    arrives and the relay ends cleanly once both sides closed.
 *
 * 3. With bit 2 of byte 0, the same script drives a tunnel session over
 *    TLS instead (mux_new_tls, server side: its batched record reads and
 *    writes, tls/batchio.c), the records carrying smux frames; streams the
 *    peer opens are read and freed. Nothing may crash or leak.
 *
 * Input: byte 0 selects (bit 0: run part 2; bit 1: small relay buffers;
 * bit 2: part 3 in place of the relay);
 * part 1 always runs on the whole input. Part 2 reads ops from byte 1 on:
 * op byte (low 3 bits the op, the rest scales the length), length byte,
 * then the op's bytes. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "fuzz_certs.h"
#include "http/http.h"
#include "mux/mux.h"
#include "relay/tlsrelay.h"
#include "tls/tls.h"
#include "util/err.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FT_MAX_SCRIPT 65536
#define FT_ROUNDS 64
#define FT_SNI_PREFIXES 2048

static struct tls_ctx *ft_sctx;
static SSL_CTX *ft_cctx;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct tls_server_opts o;
	char dir[4096], cert[4200], key[4200], err[512];

	log_set_level(LOG_ERROR);
	/* a write to a socket the other side closed: EPIPE, as in
	 * mgrok (src/cli ignores SIGPIPE), not the end of the fuzzer */
	signal(SIGPIPE, SIG_IGN);
	fuzz_certs_make(dir, sizeof(dir));
	snprintf(cert, sizeof(cert), "%s/server.pem", dir);
	snprintf(key, sizeof(key), "%s/server.key", dir);
	memset(&o, 0, sizeof(o));
	o.cert = cert;
	o.key = key;
	if (tls_server_ctx_new(&o, &ft_sctx, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_tlsrecord: %s\n", err);
		abort();
	}
	fuzz_certs_rm(); /* loaded */
	/* the peer: any OpenSSL client; it checks nothing */
	ft_cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ft_cctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ft_cctx, SSL_SESS_CACHE_OFF);
	return 0;
}

/* ---- part 1: the ClientHello peek ---- */

static void
ft_sni(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size > 0 ? size : 1);
	char name[HTTP_HOST_MAX + 1], first[HTTP_HOST_MAX + 1];
	int decided = 0, want = 0;

	for (size_t k = 0; k <= size; k++) {
		uint8_t *p = buf + size - k; /* the prefix ends the allocation */
		int rc;

		memcpy(p, data, k);
		rc = http_sni_peek(p, k, name, sizeof(name));
		if (rc != 0 && rc != MG_EAGAIN && rc != MG_EPROTO &&
		    rc != MG_ENOSPC)
			abort();
		if (rc == 0) {
			if (strnlen(name, sizeof(name)) == sizeof(name))
				abort();
			for (const char *q = name; *q != '\0'; q++)
				if (*q >= 'A' && *q <= 'Z')
					abort();
		}
		if (decided) {
			if (rc != want || (rc == 0 && strcmp(name, first)))
				abort();
		} else if (rc != MG_EAGAIN) {
			decided = 1;
			want = rc;
			if (rc == 0)
				memcpy(first, name, sizeof(first));
		}
	}
	free(buf);
}

/* ---- part 2: the relay ---- */

struct ft {
	struct event_base *base;
	SSL *cssl;                 /* the TLS peer (ours) */
	int tpeer, speer;          /* our ends: TLS side, plain side */
	struct evbuffer *sent_t, *sent_s; /* what each side sent */
	size_t got_s, got_t;       /* what arrived on the other side */
	int done, tampered, c_eof, s_eof, stuck;
	int is_mux;                /* part 3: what arrives is the mux's */
	char why[256];
};

static void
ft_done(void *arg, uint64_t t2s, uint64_t s2t, const char *why)
{
	struct ft *f = arg;

	f->done = 1;
	snprintf(f->why, sizeof(f->why), "%s", why);
}

/* bytes that arrived must continue what was sent */
static void
ft_match(struct evbuffer *sent, size_t *got, const uint8_t *p, size_t n)
{
	uint8_t *want;

	if (*got + n > evbuffer_get_length(sent))
		abort(); /* more arrived than was sent */
	want = evbuffer_pullup(sent, -1);
	if (memcmp(want + *got, p, n) != 0)
		abort(); /* not the bytes that were sent */
	*got += n;
}

static void
ft_drain(struct ft *f)
{
	static uint8_t buf[65536];
	ssize_t n;
	int r;

	for (int i = 0; i < 64; i++) {
		if ((n = read(f->speer, buf, sizeof(buf))) <= 0) {
			if (n == 0)
				f->s_eof = 1;
			break;
		}
		ft_match(f->sent_t, &f->got_s, buf, (size_t)n);
	}
	for (int i = 0; i < 64 && !f->c_eof; i++) {
		if ((r = SSL_read(f->cssl, buf, sizeof(buf))) <= 0) {
			int e = SSL_get_error(f->cssl, r);
			if (e != SSL_ERROR_WANT_READ &&
			    e != SSL_ERROR_WANT_WRITE)
				f->c_eof = 1;
			break;
		}
		if (!f->tampered && !f->is_mux)
			ft_match(f->sent_s, &f->got_t, buf, (size_t)r);
	}
	ERR_clear_error();
}

static void
ft_round(struct ft *f)
{
	event_base_loop(f->base, EVLOOP_NONBLOCK);
	ft_drain(f);
}

static int
ft_nonblock(int fd)
{
	return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* part 3: streams the peer opens are read to the end and freed */
static void
ftm_readable(struct mux_stream *st, void *arg)
{
	size_t q = mux_stream_queued(st);

	evbuffer_drain(mux_stream_rx(st), q);
	mux_stream_consumed(st, q);
	if (mux_stream_eof(st))
		mux_stream_free(st);
	else if (q > 0)
		(void)mux_stream_write(st, "ok", 2);
}

static const struct mux_stream_cbs ftm_cbs = { ftm_readable, NULL, NULL,
	NULL };

static void
ftm_accept(struct mux *m, struct mux_stream *st, void *arg)
{
	mux_stream_set_cbs(st, &ftm_cbs, arg);
}

static void
ftm_closed(struct mux *m, int err, void *arg)
{
	struct ft *f = arg;

	f->done = 1;
}

/* Both ends of the handshake in turn; 0 when both are done. */
static int
ft_handshake(SSL *c, SSL *s)
{
	int cd = 0, sd = 0;

	for (int i = 0; i < 64 && !(cd && sd); i++) {
		int r;
		if (!cd) {
			r = SSL_do_handshake(c);
			if (r == 1)
				cd = 1;
			else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ &&
			    SSL_get_error(c, r) != SSL_ERROR_WANT_WRITE)
				return -1;
		}
		if (!sd) {
			r = SSL_do_handshake(s);
			if (r == 1)
				sd = 1;
			else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ &&
			    SSL_get_error(s, r) != SSL_ERROR_WANT_WRITE)
				return -1;
		}
	}
	return cd && sd ? 0 : -1;
}

/* The TLS peer writes p[0..n) as one record (or a few, past 16 KiB),
 * running the loop while the socket is full. */
static void
ft_client_write(struct ft *f, const uint8_t *p, size_t n)
{
	for (int i = 0; i < FT_ROUNDS && n > 0; i++) {
		int r = SSL_write(f->cssl, p, (int)n);
		if (r > 0) {
			evbuffer_add(f->sent_t, p, (size_t)r);
			p += r;
			n -= (size_t)r;
			continue;
		}
		if (SSL_get_error(f->cssl, r) != SSL_ERROR_WANT_WRITE &&
		    SSL_get_error(f->cssl, r) != SSL_ERROR_WANT_READ)
			break;
		ft_round(f);
	}
	if (n > 0)
		f->stuck = 1; /* an SSL_write to retry: write nothing more */
	ERR_clear_error();
}

static void
ft_relay(const uint8_t *data, size_t size)
{
	struct tlsrelay_set set = { NULL };
	struct mux_callbacks mcbs = { ftm_accept, ftm_closed };
	struct mux *m = NULL;
	struct ft f;
	int tv[2], sv[2];
	SSL *sssl;
	size_t pos = 1;
	int small = data[0] & 2;

	memset(&f, 0, sizeof(f));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, tv) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		abort();
	for (int i = 0; i < 2; i++) {
		ft_nonblock(tv[i]);
		ft_nonblock(sv[i]);
	}
	f.tpeer = tv[1];
	f.speer = sv[1];
	f.base = event_base_new();
	f.sent_t = evbuffer_new();
	f.sent_s = evbuffer_new();
	f.cssl = SSL_new(ft_cctx);
	SSL_set_fd(f.cssl, f.tpeer);
	SSL_set_connect_state(f.cssl);
	sssl = tls_ssl_new(ft_sctx, tv[0]);
	if (sssl == NULL || ft_handshake(f.cssl, sssl) != 0)
		abort(); /* two ends of ours in memory cannot fail */
	if (data[0] & 4) {
		struct mux_config cfg;

		mux_config_default(&cfg);
		cfg.keepalive_ms = cfg.dead_ms = 0;
		if (small) {
			cfg.out_high = 4096;
			cfg.out_hard = 16384;
		}
		f.is_mux = 1;
		close(sv[0]);
		m = mux_new_tls(f.base, tv[0], sssl, 0, &cfg, &mcbs, &f);
	} else {
		tlsrelay_new(f.base, tv[0], sssl, sv[0], NULL, NULL,
		    small ? 1024 : 65536, &set, ft_done, &f);
	}
	ft_round(&f);

	while (pos + 2 <= size && !f.done) {
		uint8_t op = data[pos] & 7;
		size_t n = data[pos + 1] + ((size_t)(data[pos] >> 3) << 8);
		const uint8_t *p = data + pos + 2;

		pos += 2;
		if (op <= 2) {
			if (n > size - pos)
				n = size - pos;
			pos += n;
		}
		switch (op) {
		case 0: /* a record from the TLS peer */
			if (!f.stuck && !f.c_eof)
				ft_client_write(&f, p, n);
			break;
		case 1: /* bytes from the plain side */
			if (f.s_eof)
				break;
			{
				ssize_t w = write(f.speer, p, n);
				if (w > 0)
					evbuffer_add(f.sent_s, p, (size_t)w);
			}
			break;
		case 2: /* raw bytes into the TLS stream */
			if (n > 0 && write(f.tpeer, p, n) > 0)
				f.tampered = 1;
			break;
		case 3: /* close_notify from the TLS peer */
			if (!f.stuck)
				SSL_shutdown(f.cssl);
			f.stuck = 1;
			break;
		case 4: /* the TLS connection cut short */
			shutdown(f.tpeer, SHUT_WR);
			f.tampered = f.stuck = 1;
			break;
		case 5: /* the plain side ends */
			shutdown(f.speer, SHUT_WR);
			break;
		case 6: /* KeyUpdate from the TLS peer */
			if (!f.stuck && SSL_version(f.cssl) == TLS1_3_VERSION) {
				SSL_key_update(f.cssl, n & 1 ?
				    SSL_KEY_UPDATE_REQUESTED :
				    SSL_KEY_UPDATE_NOT_REQUESTED);
				SSL_do_handshake(f.cssl);
				ERR_clear_error();
			}
			break;
		case 7: /* time passes */
			for (size_t i = 0; i < (n & 7); i++)
				ft_round(&f);
			break;
		}
		ft_round(&f);
	}
	for (int i = 0; i < FT_ROUNDS && !f.done; i++)
		ft_round(&f);
	if (!f.tampered && !f.is_mux) {
		/* all that was sent arrived, and nothing failed */
		if (f.got_s != evbuffer_get_length(f.sent_t))
			abort();
		if (f.got_t != evbuffer_get_length(f.sent_s))
			abort();
		if (f.done && f.why[0] != '\0')
			abort();
	}
	tlsrelay_set_free(&set);
	mux_free(m); /* outside the loop: at once, with sssl and tv[0] */
	SSL_free(f.cssl);
	close(f.tpeer);
	close(f.speer);
	evbuffer_free(f.sent_t);
	evbuffer_free(f.sent_s);
	event_base_free(f.base);
	ERR_clear_error();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[HTTP_HOST_MAX + 1];

	/* every prefix is quadratic: up to 2 KiB (a large hello), then the
	 * whole input once */
	ft_sni(data, size > FT_SNI_PREFIXES ? FT_SNI_PREFIXES : size);
	if (size > FT_SNI_PREFIXES)
		(void)http_sni_peek(data, size, name, sizeof(name));
	if (size >= 1 && (data[0] & 1) && size <= FT_MAX_SCRIPT)
		ft_relay(data, size);
	return 0;
}
