/* fuzz_mux.c: libFuzzer harness for the smux session state machine
 * (mux/mux.h): the input is what the peer sends, frames and all, written
 * into a socketpair in pieces while the event loop runs a bounded number of
 * rounds, with the session as the server or the client, v1 or v2.
 *
 * Input: byte 0 flags (FM_*), byte 1 seeds the piece sizes, byte 2 the
 * streams' behaviour; the rest is the peer's bytes. Streams the peer opens
 * are refused, read in message mode, drained through a sink socket, or
 * queued and consumed (all or half), echoed, fed from a socket
 * (mux_stream_send_from_fd), half-closed and freed, chosen
 * per stream id; the session may open streams of its own and write to
 * them, so SYN, FIN, PSH, UPD, NOP, windows, growth and id checks all run.
 * Everything the session writes back must be well-formed frames of one
 * version with ids of its own parity on SYN. Everything is freed per input
 * (LeakSanitizer checks). */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mux/mux.h"
#include "proto/frame.h"
#include "util/err.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FM_CLIENT 0x01     /* the session is the client */
#define FM_V1 0x02         /* client: speak v1 */
#define FM_SMALL 0x04      /* small frames, output marks, v1 queue cap */
#define FM_MAXSTREAMS 0x08 /* at most 3 streams */
#define FM_EOF 0x10        /* the peer closes at the end */
#define FM_FREE_IN_CB 0x20 /* mux_free from the closed callback */
#define FM_OPEN 0x40       /* the session opens streams too */
#define FM_CLOSE 0x80      /* mux_close at the end instead */

#define FZ_STREAMS 64
#define FZ_ROUNDS 256

enum fz_mode { FZ_REFUSE, FZ_MSG, FZ_SINK, FZ_ALL, FZ_HALF, FZ_DGRAM,
	FZ_NMODES };

struct fz;

struct fz_st {
	struct fz *z;
	struct mux_stream *st;
	int mode;
	int writes;
	int sink_fd;
	uint8_t b;
};

struct fz {
	struct event_base *base;
	struct mux *m;
	int peer;              /* our end of the session socket */
	int sink[2];           /* [0] the streams' sink, [1] drained here */
	int src[2];            /* [0] a producer's socket, [1] kept full */
	uint8_t flags, bseed;
	int closed, opened;
	struct fz_st sts[FZ_STREAMS];
	/* the check of what the session writes */
	uint8_t hdr[FRAME_HDR_LEN];
	size_t hdr_have, skip;
	int out_ver;
};

static const uint8_t fz_zeros[70000];

static struct fz_st *
fz_slot(struct fz *z)
{
	for (int i = 0; i < FZ_STREAMS; i++)
		if (z->sts[i].st == NULL)
			return &z->sts[i];
	return NULL;
}

static void
fz_drop(struct fz_st *s)
{
	memset(s, 0, sizeof(*s));
}

static void
fz_release(struct fz_st *s)
{
	struct mux_stream *st = s->st;

	fz_drop(s);
	mux_stream_free(st);
}

/* A producer: bytes from a socket straight into frames, as a relay does,
 * bounded by the peer's window (its UPDs come from the input). */
static void
fz_produce(struct fz_st *s, struct mux_stream *st)
{
	ssize_t n = mux_stream_send_from_fd(st, s->z->src[0],
	    (size_t)s->b * 64 + 1);

	if (n < 0 && n != MG_EAGAIN && n != MG_ELIMIT && n != MG_ECLOSED &&
	    n != MG_EIO)
		abort();
}

static void
fz_readable(struct mux_stream *st, void *arg)
{
	struct fz_st *s = arg;
	struct evbuffer *rx;
	size_t q, n;

	if (s->mode == FZ_SINK)
		(void)mux_stream_flush_to_fd(st, s->sink_fd);
	rx = mux_stream_rx(st);
	q = mux_stream_queued(st);
	if (evbuffer_get_length(rx) != q)
		abort();
	n = s->mode == FZ_HALF ? (q + 1) / 2 : q;
	evbuffer_drain(rx, n);
	mux_stream_consumed(st, n);
	if (n > 0 && s->writes < 4) {
		s->writes++;
		if (s->mode == FZ_HALF)
			(void)mux_stream_write(st, "echo", 4);
		else if (s->mode == FZ_ALL && (s->b & 0x10))
			fz_produce(s, st);
		else if (s->mode == FZ_DGRAM)
			(void)mux_stream_send_datagram(st, fz_zeros,
			    (size_t)s->b * 257 % 70000);
	}
	if (mux_stream_eof(st) || (s->mode == FZ_HALF && (s->b & 0x40) &&
	    mux_stream_fin_received(st))) {
		if (s->b & 0x20)
			mux_stream_shutdown(st);
		fz_release(s);
	}
}

static void
fz_writable(struct mux_stream *st, void *arg)
{
	struct fz_st *s = arg;
	struct evbuffer *b;

	if (s->writes >= 6)
		return;
	s->writes++;
	if (s->mode == FZ_ALL && (s->b & 0x10)) {
		fz_produce(s, st);
		return;
	}
	b = evbuffer_new();
	evbuffer_add(b, fz_zeros, (size_t)s->b * 211 % 70000 + 1);
	(void)mux_stream_send_buffer(st, b);
	evbuffer_free(b);
}

static void
fz_message(struct mux_stream *st, const uint8_t *p, size_t len, void *arg)
{
	struct fz_st *s = arg;
	volatile uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum += p[i]; /* the whole payload is readable */
	(void)sum;
	if (len > 0 && s->writes < 4) {
		s->writes++;
		(void)mux_stream_send_msg(st, p, len > 100 ? 100 : len);
	}
	if (len > 0 && p[0] == 0xff)
		fz_release(s); /* freed inside its own message callback */
}

static void
fz_closed(struct mux_stream *st, void *arg)
{
	fz_drop(arg);
}

static const struct mux_stream_cbs fz_cbs = { fz_readable, fz_writable,
	NULL, fz_closed };
static const struct mux_stream_cbs fz_msg_cbs = { fz_readable, fz_writable,
	fz_message, fz_closed };

static void
fz_setup(struct fz *z, struct mux_stream *st, uint8_t b)
{
	struct fz_st *s = fz_slot(z);

	if (s == NULL) {
		mux_stream_free(st);
		return;
	}
	s->z = z;
	s->st = st;
	s->b = b;
	s->mode = (b & 7) % FZ_NMODES; /* the high bits are flags */
	if (b & 0x80)
		mux_stream_set_window(st, 262144);
	switch (s->mode) {
	case FZ_REFUSE:
		fz_drop(s);
		mux_stream_free(st);
		return;
	case FZ_MSG:
		mux_stream_set_cbs(st, &fz_msg_cbs, s);
		return;
	case FZ_SINK:
		mux_stream_set_cbs(st, &fz_cbs, s);
		s->sink_fd = z->sink[0];
		mux_stream_set_sink(st, z->sink[0]);
		return;
	case FZ_DGRAM:
		mux_stream_set_batched(st);
		break;
	}
	mux_stream_set_cbs(st, &fz_cbs, s);
}

static void
fz_accept(struct mux *m, struct mux_stream *st, void *arg)
{
	struct fz *z = arg;

	fz_setup(z, st, (uint8_t)(z->bseed ^ (mux_stream_id(st) * 37)));
}

static void
fz_session_closed(struct mux *m, int err, void *arg)
{
	struct fz *z = arg;

	if (err != MG_ECLOSED && err != MG_EIO && err != MG_EPROTO &&
	    err != MG_ETIMEDOUT)
		abort();
	for (int i = 0; i < FZ_STREAMS; i++)
		if (z->sts[i].st != NULL)
			abort(); /* every stream's closed came first */
	z->closed = 1;
	if (z->flags & FM_FREE_IN_CB) {
		mux_free(m);
		z->m = NULL;
	}
}

/* The session's output: whole frames of one version. */
static void
fz_check_out(struct fz *z, const uint8_t *p, size_t n)
{
	struct frame_hdr h;

	while (n > 0) {
		if (z->skip > 0) {
			size_t k = n < z->skip ? n : z->skip;
			z->skip -= k;
			p += k;
			n -= k;
			continue;
		}
		z->hdr[z->hdr_have++] = *p++;
		n--;
		if (z->hdr_have < FRAME_HDR_LEN)
			continue;
		z->hdr_have = 0;
		if (frame_decode(z->hdr, FRAME_HDR_LEN, &h) != FRAME_HDR_LEN)
			abort();
		if (z->out_ver == 0)
			z->out_ver = h.ver;
		if (h.ver != z->out_ver)
			abort();
		if (h.cmd == FRAME_SYN &&
		    (h.sid & 1) != ((z->flags & FM_CLIENT) ? 1 : 0))
			abort();
		z->skip = h.len;
	}
}

static void
fz_drain(struct fz *z)
{
	static uint8_t buf[65536];
	ssize_t n;

	for (int i = 0; i < 64; i++) {
		if ((n = read(z->peer, buf, sizeof(buf))) <= 0)
			break;
		fz_check_out(z, buf, (size_t)n);
	}
	for (int i = 0; i < 64; i++)
		if (read(z->sink[1], buf, sizeof(buf)) <= 0)
			break;
	/* keep the producers' socket topped up */
	(void)write(z->src[1], fz_zeros, 16384);
}

static void
fz_round(struct fz *z)
{
	event_base_loop(z->base, EVLOOP_NONBLOCK);
	fz_drain(z);
}

static void
fz_open(struct fz *z)
{
	for (int i = 0; i < 2 && z->m != NULL && !z->closed; i++) {
		struct mux_stream *st = mux_stream_open(z->m);
		if (st == NULL)
			return;
		fz_setup(z, st, (uint8_t)(FZ_ALL + i * 2 + (z->bseed & 0xd0)));
		if ((z->bseed & 1) == 0)
			continue;
		(void)mux_stream_write(st, "hello", 5);
		if (i == 1)
			mux_stream_shutdown(st);
	}
	z->opened = 1;
}

static int
fz_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR);
	/* a write to a socket the other side closed: EPIPE, as in
	 * mgrok (src/cli ignores SIGPIPE), not the end of the fuzzer */
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mux_callbacks cbs = { fz_accept, fz_session_closed };
	struct mux_config cfg;
	struct fz z;
	int sv[2], sndbuf = 4096, rounds = 0;
	size_t pos = 3, i = 0;
	uint8_t cseed;

	if (size < 3)
		return 0;
	memset(&z, 0, sizeof(z));
	z.flags = data[0];
	cseed = data[1];
	z.bseed = data[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, z.sink) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, z.src) != 0)
		abort();
	fz_nonblock(z.src[0]);
	fz_nonblock(z.src[1]);
	(void)write(z.src[1], fz_zeros, sizeof(fz_zeros));
	fz_nonblock(sv[0]);
	fz_nonblock(sv[1]);
	fz_nonblock(z.sink[0]);
	fz_nonblock(z.sink[1]);
	setsockopt(z.sink[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	z.peer = sv[1];

	mux_config_default(&cfg);
	cfg.version = (z.flags & FM_V1) ? 1 : 2;
	cfg.keepalive_ms = 0; /* no timers: an input replays the same */
	cfg.dead_ms = 0;
	if (z.flags & FM_SMALL) {
		cfg.frame_size = 512;
		cfg.session_rx_max = 4096;
		cfg.out_high = 4096;
		cfg.out_hard = 16384;
		cfg.stream_window_max = 2 * 1024 * 1024;
		cfg.window_growth_max = 1024 * 1024;
	}
	if (z.flags & FM_MAXSTREAMS)
		cfg.max_streams = 3;
	if (z.flags & FM_CLIENT)
		z.out_ver = cfg.version;
	z.base = event_base_new();
	z.m = mux_new(z.base, sv[0], (z.flags & FM_CLIENT) != 0, &cfg, &cbs,
	    &z);

	while (pos < size && rounds < FZ_ROUNDS && !z.closed) {
		uint8_t k = data[3 + (i++ * 7919) % (size - 3)] ^ cseed;
		size_t piece = (cseed & 0x80) ? size - pos :
		    (size_t)(k & 0x3f) + 1;
		ssize_t w;

		if (piece > size - pos)
			piece = size - pos;
		if ((z.flags & FM_OPEN) && !z.opened && z.m != NULL &&
		    mux_version(z.m) != 0)
			fz_open(&z);
		w = write(z.peer, data + pos, piece);
		if (w > 0)
			pos += (size_t)w;
		fz_round(&z);
		rounds++;
		if (w <= 0) {
			/* the session stopped reading: let it run a little */
			if (rounds > FZ_ROUNDS / 2)
				break;
		}
	}
	if ((z.flags & FM_OPEN) && !z.opened && z.m != NULL && !z.closed &&
	    mux_version(z.m) != 0)
		fz_open(&z);
	for (int r = 0; r < 4 && !z.closed; r++)
		fz_round(&z);
	if (z.flags & FM_EOF) {
		shutdown(z.peer, SHUT_WR);
		for (int r = 0; r < 8 && !z.closed; r++)
			fz_round(&z);
	} else if ((z.flags & FM_CLOSE) && z.m != NULL && !z.closed) {
		mux_close(z.m, MG_EIO);
		if (!z.closed)
			abort(); /* the closed callback runs from mux_close */
	}
	if (z.m != NULL)
		mux_free(z.m);
	/* a free deferred from a callback happens on the next round */
	for (int r = 0; r < 2; r++)
		event_base_loop(z.base, EVLOOP_NONBLOCK);
	event_base_free(z.base);
	close(z.peer);
	close(z.sink[0]);
	close(z.sink[1]);
	close(z.src[0]);
	close(z.src[1]);
	return 0;
}
