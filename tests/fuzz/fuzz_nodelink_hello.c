/* fuzz_nodelink_hello.c: libFuzzer harness for the listening end of a node
 * link (cluster/nodelink.h): the input is what a dialling node sends, over
 * a socketpair the set takes as an incoming link (nodelink_adopt_fd)
 * with an smux client of the harness on the other end: messages on the
 * link's first stream (Hello, Auth, Status, Error, or any bytes), streams
 * opened with headers of any shape (the u16 length too), their bytes, FINs
 * and aborts.
 *
 * Input: byte 0 flags (FN_*); then ops, each "op u8, len u8, len bytes":
 * op % 6 is 0 a message on the first stream, 1 a new stream with the bytes
 * written on it, 2 the bytes on stream bytes[0], 3 its FIN, 4 its abort,
 * 5 len % 8 extra rounds of the loop. With FN_HANDSHAKE the harness first
 * answers the challenge as a node holding the secret would, so the ops
 * reach a link that is up (headers, statuses, messages out of turn).
 *
 * Checks besides the sanitizers: without the handshake no link comes up
 * and no stream reaches the accept hook; with it, the link is up and every
 * stream the hook sees comes from the dialler's id with a header of
 * 1..NODELINK_HDR_MAX bytes; streams the hook kept hear of the end of the
 * set (their closed callback) by the time nodelink_free returns. Everything
 * is freed per input (LeakSanitizer checks). */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "cluster/nodelink.h"
#include "mux/mux.h"
#include "util/err.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FN_HANDSHAKE 0x01 /* a correct Hello and Auth first */
#define FN_V1 0x02        /* the dialler speaks smux v1 */
#define FN_EOF 0x04       /* the dialler's session closes at the end */
#define FN_WRONG 0x08     /* handshake: Hello for another node id */

#define FN_SECRET "fuzz-secret-0123456789"
#define FN_DIALER "fz-dialer"
#define FN_SELF "fz-listener"
#define FN_STREAMS 16
#define FN_KEPT 16

struct fn {
	struct event_base *base;
	struct nodelink_set *ls;
	struct mux *m;          /* the dialler's session */
	struct mux_stream *ctl;
	struct mux_stream *sts[FN_STREAMS];
	struct mux_stream *kept[FN_KEPT]; /* streams the hook kept */
	int closed;
	int have_chal;
	uint8_t nc[16], ns[16];
	int handshake;
};

/* ---- the set's end ---- */

static void
fn_kept_readable(struct mux_stream *st, void *arg)
{
	size_t n = mux_stream_queued(st);

	(void)arg;
	evbuffer_drain(mux_stream_rx(st), n);
	mux_stream_consumed(st, n);
}

static void
fn_kept_closed(struct mux_stream *st, void *arg)
{
	struct mux_stream **slot = arg;

	(void)st;
	*slot = NULL;
}

static const struct mux_stream_cbs fn_kept_cbs = {
	.readable = fn_kept_readable,
	.closed = fn_kept_closed,
};

static void
fn_accept(void *arg, const char *from, struct mux_stream *st,
    const uint8_t *hdr, size_t len)
{
	struct fn *z = arg;

	if (!z->handshake || strcmp(from, FN_DIALER) != 0 || len == 0 ||
	    len > NODELINK_HDR_MAX)
		abort();
	switch (hdr[0] & 3) {
	case 0:
		mux_stream_free(st);
		return;
	case 1:
		mux_stream_abort(st);
		return;
	case 2:
		for (int i = 0; i < FN_KEPT; i++)
			if (z->kept[i] == NULL) {
				z->kept[i] = st;
				mux_stream_set_cbs(st, &fn_kept_cbs,
				    &z->kept[i]);
				fn_kept_readable(st, NULL);
				return;
			}
		mux_stream_free(st);
		return;
	default:
		(void)mux_stream_write(st, hdr, len);
		mux_stream_free(st);
	}
}

/* ---- the dialler's end ---- */

static void
fn_st_readable(struct mux_stream *st, void *arg)
{
	size_t n = mux_stream_queued(st);

	(void)arg;
	evbuffer_drain(mux_stream_rx(st), n);
	mux_stream_consumed(st, n);
}

static void
fn_st_closed(struct mux_stream *st, void *arg)
{
	struct mux_stream **slot = arg;

	(void)st;
	*slot = NULL;
}

static const struct mux_stream_cbs fn_st_cbs = {
	.readable = fn_st_readable,
	.closed = fn_st_closed,
};

static void
fn_ctl_message(struct mux_stream *st, const uint8_t *p, size_t len,
    void *arg)
{
	struct fn *z = arg;

	(void)st;
	if (len >= 1 + 16 + 32 + 2 && p[0] == 'C') {
		memcpy(z->ns, p + 1, 16);
		z->have_chal = 1;
	}
}

static void
fn_ctl_closed(struct mux_stream *st, void *arg)
{
	struct fn *z = arg;

	(void)st;
	z->ctl = NULL;
}

static const struct mux_stream_cbs fn_ctl_cbs = {
	.message = fn_ctl_message,
	.closed = fn_ctl_closed,
};

static void
fn_m_accept(struct mux *m, struct mux_stream *st, void *arg)
{
	(void)m;
	(void)arg;
	mux_stream_free(st); /* the listener never opens one */
}

static void
fn_m_closed(struct mux *m, int err, void *arg)
{
	struct fn *z = arg;

	(void)m;
	(void)err;
	z->closed = 1;
}

static void
fn_round(struct fn *z)
{
	event_base_loop(z->base, EVLOOP_NONBLOCK);
}

static void
fn_handshake(struct fn *z, int wrong)
{
	uint8_t m[2 + 16 + 2 + 64 + 64], mac[32], a[33];
	size_t n = 0;
	const char *want = wrong ? "fz-other" : FN_SELF;

	for (int i = 0; i < 16; i++)
		z->nc[i] = (uint8_t)(i * 17 + 3);
	m[n++] = 'H';
	m[n++] = 1;
	memcpy(m + n, z->nc, 16);
	n += 16;
	m[n++] = (uint8_t)strlen(FN_DIALER);
	memcpy(m + n, FN_DIALER, strlen(FN_DIALER));
	n += strlen(FN_DIALER);
	m[n++] = (uint8_t)strlen(want);
	memcpy(m + n, want, strlen(want));
	n += strlen(want);
	(void)mux_stream_send_msg(z->ctl, m, n);
	for (int r = 0; r < 16 && !z->have_chal && !z->closed; r++)
		fn_round(z);
	if (wrong) {
		if (z->have_chal)
			abort(); /* another node's Hello is refused */
		return;
	}
	if (!z->have_chal || z->ctl == NULL)
		abort();
	nodelink_hmac(FN_SECRET, 'c', z->nc, z->ns, FN_DIALER, FN_SELF, mac);
	a[0] = 'A';
	memcpy(a + 1, mac, 32);
	(void)mux_stream_send_msg(z->ctl, a, sizeof(a));
	z->handshake = 1;
	for (int r = 0; r < 16; r++) {
		struct nodelink_stats s;
		nodelink_stats(z->ls, &s);
		if (s.links == 1)
			return;
		fn_round(z);
	}
	abort(); /* a correct handshake brings the link up */
}

static struct mux_stream **
fn_pick(struct fn *z, const uint8_t *p, size_t len)
{
	return &z->sts[(len > 0 ? p[0] : 0) % FN_STREAMS];
}

static void
fn_op(struct fn *z, uint8_t op, const uint8_t *p, size_t len)
{
	struct mux_stream **slot;

	switch (op % 6) {
	case 0:
		if (z->ctl != NULL && len > 0)
			(void)mux_stream_send_msg(z->ctl, p, len);
		break;
	case 1:
		for (int i = 0; i < FN_STREAMS; i++) {
			if (z->sts[i] != NULL)
				continue;
			if ((z->sts[i] = mux_stream_open(z->m)) == NULL)
				break;
			mux_stream_set_cbs(z->sts[i], &fn_st_cbs, &z->sts[i]);
			if (len > 0)
				(void)mux_stream_write(z->sts[i], p, len);
			break;
		}
		break;
	case 2:
		slot = fn_pick(z, p, len);
		if (*slot != NULL && len > 1)
			(void)mux_stream_write(*slot, p + 1, len - 1);
		break;
	case 3:
		slot = fn_pick(z, p, len);
		if (*slot != NULL)
			mux_stream_shutdown(*slot);
		break;
	case 4:
		slot = fn_pick(z, p, len);
		if (*slot != NULL) {
			mux_stream_abort(*slot);
			*slot = NULL;
		}
		break;
	default:
		for (size_t r = 0; r < len % 8; r++)
			fn_round(z);
	}
	fn_round(z);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nodelink_hooks h;
	struct mux_callbacks cbs = { fn_m_accept, fn_m_closed };
	struct mux_config cfg;
	struct nodelink_stats s;
	struct fn z;
	char err[256];
	int sv[2];
	size_t pos = 1;
	uint8_t flags;

	if (size < 1)
		return 0;
	flags = data[0];
	memset(&z, 0, sizeof(z));
	z.base = event_base_new();
	h.accept = fn_accept;
	h.arg = &z;
	z.ls = nodelink_new(z.base, FN_SELF, "", FN_SECRET, &h, err,
	    sizeof(err));
	if (z.ls == NULL ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		abort();
	if (nodelink_adopt_fd(z.ls, sv[0], NULL) != 0)
		abort();
	mux_config_default(&cfg);
	cfg.version = (flags & FN_V1) ? 1 : 2;
	cfg.keepalive_ms = 0; /* no timers of ours */
	cfg.dead_ms = 0;
	z.m = mux_new(z.base, sv[1], 1, &cfg, &cbs, &z);
	z.ctl = mux_stream_open(z.m);
	mux_stream_set_cbs(z.ctl, &fn_ctl_cbs, &z);
	if (flags & FN_HANDSHAKE)
		fn_handshake(&z, (flags & FN_WRONG) != 0);

	while (pos + 2 <= size && !z.closed) {
		uint8_t op = data[pos], len = data[pos + 1];
		pos += 2;
		if (len > size - pos)
			len = (uint8_t)(size - pos);
		fn_op(&z, op, data + pos, len);
		pos += len;
	}
	for (int r = 0; r < 4 && !z.closed; r++)
		fn_round(&z);

	nodelink_stats(z.ls, &s);
	if (!z.handshake && (s.links_up != 0 || s.accepted != 0))
		abort(); /* up without proof of the secret */
	if ((flags & FN_EOF) && !z.closed) {
		mux_close(z.m, MG_EIO);
		for (int r = 0; r < 4; r++)
			fn_round(&z);
	}
	nodelink_free(z.ls);
	for (int i = 0; i < FN_KEPT; i++)
		if (z.kept[i] != NULL)
			abort(); /* its owner never heard of the end */
	mux_free(z.m);
	for (int r = 0; r < 2; r++)
		fn_round(&z);
	event_base_free(z.base);
	return 0;
}
