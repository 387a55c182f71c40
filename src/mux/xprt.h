/*
 * xprt.h: the transport under an smux session, as HAProxy's xprt_ops sit
 * under its muxes. The mux reads and writes its connection only through
 * this table, which a plain socket fills in here (mux_xprt_plain), TLS in
 * src/tls (tls/tlsxprt.c), and unit tests with injected faults. The mux
 * still owns the socket's readiness events: fd is what it polls.
 */
#ifndef MG_MUX_XPRT_H
#define MG_MUX_XPRT_H

#include <stddef.h>
#include <sys/types.h>

struct evbuffer;
struct iovec;

struct mux_xprt_ops {
	/* readv: read into iov[0..n) as much as is ready: bytes (> 0), 0 at
	 * the end of the connection, or -1 with errno: EAGAIN when nothing
	 * is ready (with *want_write set: retry once fd is writable, not
	 * readable), anything else is fatal. Required. */
	ssize_t (*readv)(void *ctx, int fd, struct iovec *iov, int n,
	    int *want_write);
	/* write: send what the connection takes of out, draining it from
	 * out; called only when out or pending() holds bytes. Bytes taken
	 * (>= 0) or -1 with errno: EAGAIN when full (with *want_read set:
	 * retry once fd is readable), anything else is fatal. Between calls
	 * the mux only appends to out. Required. */
	ssize_t (*write)(void *ctx, int fd, struct evbuffer *out,
	    int *want_read);
	/* pending: bytes taken by write but not yet on the socket. NULL:
	 * always 0. */
	size_t (*pending)(void *ctx);
	/* buffered: 1 when input may wait inside the transport, where a
	 * readiness event on fd would never report it: the mux then reads
	 * again from the loop. 0 when a read before fd is readable could only
	 * fail with EAGAIN. NULL: always 0. */
	int (*buffered)(void *ctx);
	/* shutdown: the session is over: say goodbye (close_notify) and shut
	 * fd both ways, best effort, never blocking. Required. */
	void (*shutdown)(void *ctx, int fd);
	/* error: the reason of the last failure, one line for the user, or
	 * NULL. NULL op: never one. */
	const char *(*error)(void *ctx);
	/* describe: the connection's parameters for a log line ("TLSv1.3
	 * TLS_AES_128_GCM_SHA256") in buf, or NULL. NULL op: NULL. */
	const char *(*describe)(void *ctx, char *buf, size_t cap);
	/* close: release ctx; the mux closes fd right after. NULL: nothing
	 * to release. */
	void (*close)(void *ctx);
};

/* The plain socket: readv(2) and writev(2) (through evbuffer_write) on fd,
 * shutdown(2); ctx is unused (NULL). */
extern const struct mux_xprt_ops mux_xprt_plain;

#endif
