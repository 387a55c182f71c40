/*
 * mux.h: an smux session (docs/protocol.md section 3) over one connected,
 * non-blocking socket, driven by a libevent base, through a transport
 * (mux/xprt.h: a plain socket, TLS from src/tls, or a test's faults).
 *
 * Data path: a producer reads its socket straight into the session's output
 * buffer behind a frame header (mux_stream_send_from_fd); inbound PSH
 * payloads are written straight from the session's input buffer to the
 * consumer's socket when it keeps up (mux_stream_set_sink), and only the
 * rest is queued on the stream. Payload is never copied in user space on
 * the fast path, and an idle stream holds no buffer chains.
 */
#ifndef MG_MUX_H
#define MG_MUX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct evbuffer;
struct mux;
struct mux_stream;
struct mux_xprt_ops;

struct mux_config {
	uint8_t version;        /* client: version to speak (1 or 2); server:
				   ignored, the client's first frame sets it */
	uint32_t stream_window; /* our per-stream receive window at the
				   start (v2) */
	uint32_t stream_window_max; /* a stream's window grows toward this
				   while its sender waits on it and its
				   consumer keeps up (v2); <= stream_window:
				   no growth */
	size_t window_growth_max; /* growth of all the session's windows
				   together, beyond their start */
	uint32_t frame_size;    /* largest PSH payload we send */
	size_t session_rx_max;  /* v1: inbound bytes queued on all streams
				   before the socket stops being read */
	size_t out_high;        /* output queued above this: producers wait */
	size_t out_hard;        /* above this: stop reading the socket too */
	unsigned keepalive_ms;  /* NOP when nothing was sent for this long */
	unsigned dead_ms;       /* no inbound frame for this long: dead */
	unsigned max_streams;   /* open streams at once; 0 = no limit */
};

/* mux_config_default: 1 MiB windows growing to 8 MiB (64 MiB of growth a
 * session), 32 KiB frames, 10 s keepalive, 30 s dead, version 2. */
void mux_config_default(struct mux_config *c);

struct mux_callbacks {
	/* The peer opened st. Set its callbacks here (mux_stream_set_cbs),
	 * or mux_stream_free(st) to refuse it. Required. */
	void (*accept)(struct mux *m, struct mux_stream *st, void *arg);
	/* The session died: err is MG_ECLOSED (peer closed), MG_EIO,
	 * MG_EPROTO or MG_ETIMEDOUT. Every stream's closed callback has run
	 * already. The owner calls mux_free(m) (it may from here). */
	void (*closed)(struct mux *m, int err, void *arg);
};

struct mux_stream_cbs {
	/* New data on the stream's queue, the peer's FIN, or its reset mark
	 * (mux_stream_reset). */
	void (*readable)(struct mux_stream *st, void *arg);
	/* Room again (window or session output) after MG_EAGAIN. */
	void (*writable)(struct mux_stream *st, void *arg);
	/* Message mode (control stream): one whole PSH payload. */
	void (*message)(struct mux_stream *st, const uint8_t *p, size_t len,
	    void *arg);
	/* The session died; st is freed right after this returns. */
	void (*closed)(struct mux_stream *st, void *arg);
};

/*
 * mux_new_xprt: start a session on fd (connected, non-blocking) through the
 * transport xo with its context xctx (mux/xprt.h). The mux owns fd and
 * xctx: mux_free shuts the transport down, closes xctx (xo->close) and
 * then fd. is_client selects the id parity and who sends first. Returns the
 * session; free with mux_free. (TLS: mux_new_tls in tls/tls.h.)
 */
struct mux *mux_new_xprt(struct event_base *base, int fd,
    const struct mux_xprt_ops *xo, void *xctx, int is_client,
    const struct mux_config *cfg, const struct mux_callbacks *cbs,
    void *arg);

/* mux_new: mux_new_xprt over the plain socket fd (mux_xprt_plain). */
struct mux *mux_new(struct event_base *base, int fd, int is_client,
    const struct mux_config *cfg, const struct mux_callbacks *cbs, void *arg);

/* mux_free: close the socket and free every stream without callbacks.
 * Accepts NULL. From inside this session's callbacks (or a stream's) the
 * free waits until the mux's own call chain has unwound; anywhere else,
 * even after the loop stopped, it is done before mux_free returns. */
void mux_free(struct mux *m);

/* mux_close: end the session now, as if the peer had closed it, after
 * trying to send what is queued (bounded, non-blocking). Runs the stream
 * closed callbacks and then the session's closed callback with err. */
void mux_close(struct mux *m, int err);

/* mux_tls_error: the transport's reason for its last failure (TLS: a
 * refused client certificate, ...); NULL for plain sessions or none. */
const char *mux_tls_error(const struct mux *m);

/* mux_tls_params: the transport's parameters ("TLSv1.3
 * TLS_AES_128_GCM_SHA256", protocol and cipher suite, for TLS) in buf, NULL
 * for a plain session. */
const char *mux_tls_params(const struct mux *m, char *buf, size_t cap);

/* mux_version: the session's version, 0 while unknown (server side). */
int mux_version(const struct mux *m);
/* mux_nstreams: streams open now. */
unsigned mux_nstreams(const struct mux *m);
/* mux_output_len: bytes queued for the socket. */
size_t mux_output_len(const struct mux *m);
/* mux_stats: bytes of payload sent and received so far. */
void mux_stats(const struct mux *m, uint64_t *tx, uint64_t *rx);

/* mux_cork, mux_uncork: between them, frames queue without being written,
 * so a burst (datagrams of one recvmmsg) goes out in one write. Nest. */
void mux_cork(struct mux *m);
void mux_uncork(struct mux *m);

/* mux_stream_open: open a stream (SYN). NULL when the session is closing
 * or max_streams is reached. Free with mux_stream_free. */
struct mux_stream *mux_stream_open(struct mux *m);

/* mux_stream_free: the caller is done with st: FIN if not yet sent; later
 * inbound data is dropped (but credited, so the peer is not stalled). Do
 * not use st afterwards. Accepts NULL. */
void mux_stream_free(struct mux_stream *st);

void mux_stream_set_cbs(struct mux_stream *st,
    const struct mux_stream_cbs *cbs, void *arg);
uint32_t mux_stream_id(const struct mux_stream *st);
struct mux *mux_stream_session(const struct mux_stream *st);

/* mux_stream_set_window: this stream's receive window (advertised in its
 * UPDs; at least 262144), for consumers that never hold bytes long (UDP
 * flows drain at once, dropping what the socket does not take). */
void mux_stream_set_window(struct mux_stream *st, uint32_t window);

/* mux_stream_set_batched: call readable once per read from the session's
 * socket, after all the frames it brought are handled, rather than once per
 * PSH frame: a burst of datagrams reaches the owner together (UDP flows,
 * one frame per datagram, send a run of them with one system call). */
void mux_stream_set_batched(struct mux_stream *st);

/*
 * mux_stream_set_sink: when fd >= 0, inbound payload is written to fd
 * directly while the stream's queue is empty; bytes fd does not take are
 * queued and readable is called. The caller keeps owning fd. -1 turns it
 * off.
 */
void mux_stream_set_sink(struct mux_stream *st, int fd);

/*
 * A budget for the sink (a bandwidth limit, src/relay): before each direct
 * write take(arg, want) says how many of want bytes may go (0..want);
 * after it put(arg, n) gives back the n of those the socket did not take.
 * Bytes beyond the budget are queued and readable is called, as when the
 * socket is full: the owner writes them from the queue when it may.
 */
struct mux_sink_gate {
	size_t (*take)(void *arg, size_t want);
	void (*put)(void *arg, size_t n);
	void *arg;
};

/* mux_stream_set_sink_gate: the sink's budget (copied), or NULL for
 * none (the default). */
void mux_stream_set_sink_gate(struct mux_stream *st,
    const struct mux_sink_gate *g);

/* mux_stream_rx: the stream's inbound queue. Take bytes out of it, then
 * report them with mux_stream_consumed. */
struct evbuffer *mux_stream_rx(struct mux_stream *st);
/* mux_stream_queued: bytes on the inbound queue. */
size_t mux_stream_queued(const struct mux_stream *st);
/* mux_stream_consumed: credit n bytes taken from the queue (UPD). */
void mux_stream_consumed(struct mux_stream *st, size_t n);
/* mux_stream_flush_to_fd: write the queue to fd and credit what was
 * written. Returns bytes written, MG_EAGAIN when fd is full, or MG_EIO
 * (errno set). */
ssize_t mux_stream_flush_to_fd(struct mux_stream *st, int fd);
/* mux_stream_delivered: payload bytes the consumer has taken so far (to
 * the sink directly or through the queue). */
uint64_t mux_stream_delivered(const struct mux_stream *st);
/* mux_stream_fin_received: the peer sent FIN (bytes may still be queued). */
int mux_stream_fin_received(const struct mux_stream *st);
/* mux_stream_eof: the peer sent FIN and the queue is empty. */
int mux_stream_eof(const struct mux_stream *st);

/* mux_stream_write: queue len bytes of data (for headers and small
 * writes; not window-limited beyond the session caps). 0, or MG_ECLOSED. */
int mux_stream_write(struct mux_stream *st, const void *p, size_t len);
/* mux_stream_send_msg: one whole message as one PSH frame (len <= 65535). */
int mux_stream_send_msg(struct mux_stream *st, const void *p, size_t len);

/*
 * mux_stream_send_from_fd: read from fd straight into framed output, up to
 * max bytes in frames of at most frame_size, limited by the peer's window
 * and the session's output mark. Returns the bytes read (> 0), 0 on EOF of
 * fd, MG_EAGAIN when fd has nothing now, MG_ELIMIT when the window or the
 * session is full (writable is called when that changes), MG_ECLOSED when
 * the stream cannot send, MG_EIO on a read error (errno set).
 */
ssize_t mux_stream_send_from_fd(struct mux_stream *st, int fd, size_t max);

/*
 * mux_stream_send_buffer: move bytes from src into framed output, limited
 * like mux_stream_send_from_fd. Returns the bytes moved (> 0), 0 when src
 * is empty, MG_ELIMIT (writable follows) or MG_ECLOSED.
 */
ssize_t mux_stream_send_buffer(struct mux_stream *st, struct evbuffer *src);

/*
 * mux_stream_send_datagram: queue "len u16 BE | payload" (PROTOCOL 5, UDP
 * flows) whole or not at all: MG_ELIMIT when the peer's window or the
 * session's output has no room for it now (the caller drops and counts;
 * no writable callback is arranged), MG_EINVAL when len > 65535,
 * MG_ECLOSED when the stream cannot send. 0 when queued.
 */
int mux_stream_send_datagram(struct mux_stream *st, const void *p,
    size_t len);

/* mux_stream_shutdown: FIN (half-close); data queued before it goes first. */
void mux_stream_shutdown(struct mux_stream *st);

/*
 * mux_stream_abort: the caller's side of st failed (its socket was reset,
 * say): what st carried may be cut short. Sends an empty PSH and then FIN,
 * and lets go of st as mux_stream_free does. smux has no stream reset;
 * the empty PSH is mgrok's mark for one (docs/internals/mux.md): an mgrok
 * peer reports it (mux_stream_reset), other smux peers never send one and
 * ignore it, so for them the stream just ends. No mark once FIN was sent.
 * Accepts NULL.
 */
void mux_stream_abort(struct mux_stream *st);

/* mux_stream_reset: the peer aborted st (mux_stream_abort): whatever it
 * sent may be incomplete; readable was called when the mark arrived. */
int mux_stream_reset(const struct mux_stream *st);

#endif
