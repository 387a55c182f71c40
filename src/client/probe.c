/* probe.c: ask what listens at an address by what it answers to a
 * ClientHello, an HTTP GET or an mgrok handshake (see probe.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "client/probe.h"
#include "proto/ctrl.h"
#include "proto/frame.h"
#include "relay/dial.h"
#include "util/xmalloc.h"

#define PROBE_KEEP 16 /* bytes enough to tell the kinds apart */

struct probe {
	struct event_base *base;
	struct dial *dial;
	struct event *ev;
	int fd;
	uint8_t req[512];
	size_t reqlen;
	uint8_t got[PROBE_KEEP];
	size_t n;
	unsigned timeout_s;
	probe_done_fn done;
	void *arg;
};

/* A TLS 1.2 ClientHello (ECDHE with AES-GCM, P-256, ECDSA or RSA
 * signatures): any TLS server answers it with a ServerHello or an alert,
 * both TLS records. */
static const uint8_t probe_client_hello[] = {
	0x16, 0x03, 0x01, 0x00, 0x4d, 0x01, 0x00, 0x00, 0x49, 0x03, 0x03,
	/* random: zeros will do, nothing is negotiated */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0x00,                                           /* session id */
	0x00, 0x08, 0xc0, 0x2f, 0xc0, 0x30, 0xc0, 0x2b, 0x13, 0x01,
	0x01, 0x00,                                     /* no compression */
	0x00, 0x18,                                     /* extensions */
	0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, /* groups: P-256 */
	0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,             /* point formats */
	0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x04, 0x01,
};

static const char probe_http_get[] =
    "GET / HTTP/1.0\r\nHost: mgrok-probe\r\nUser-Agent: mgrok-probe\r\n\r\n";

const uint8_t *
probe_request(enum probe_kind kind, size_t *len)
{
	static uint8_t mg[128];
	static size_t mglen;

	switch (kind) {
	case PROBE_TLS:
		*len = sizeof(probe_client_hello);
		return probe_client_hello;
	case PROBE_HTTP:
		*len = sizeof(probe_http_get) - 1;
		return (const uint8_t *)probe_http_get;
	default:
		break;
	}
	if (mglen == 0) {
		/* SYN of stream 1, then the HMAC handshake as one PSH: a
		 * plain mgrok server answers with a challenge */
		struct frame_hdr h = { 2, FRAME_SYN, 0, 1 };
		struct ctrl_hello hello;
		int n;

		memset(&hello, 0, sizeof(hello));
		hello.method = CTRL_METHOD_HMAC;
		hello.hmac_ver = 1;
		n = ctrl_hello_encode(&hello, mg + 2 * FRAME_HDR_LEN,
		    sizeof(mg) - 2 * FRAME_HDR_LEN);
		if (n < 0)
			abort(); /* a constant message that always fits */
		frame_encode(mg, &h);
		h.cmd = FRAME_PSH;
		h.len = (uint16_t)n;
		frame_encode(mg + FRAME_HDR_LEN, &h);
		mglen = 2 * FRAME_HDR_LEN + (size_t)n;
	}
	*len = mglen;
	return mg;
}

enum probe_kind
probe_classify(const uint8_t *p, size_t n)
{
	if (n == 0)
		return PROBE_CLOSED;
	/* a record: handshake (22) or alert (21), then version 3.x */
	if ((p[0] == 0x15 || p[0] == 0x16) && (n < 2 || p[1] == 0x03))
		return PROBE_TLS;
	if (n >= 5 && memcmp(p, "HTTP/", 5) == 0)
		return PROBE_HTTP;
	if (n < 5 && memcmp(p, "HTTP/", n) == 0)
		return PROBE_HTTP; /* a short read of it */
	if ((p[0] == 1 || p[0] == 2) && (n < 2 || p[1] <= FRAME_UPD))
		return PROBE_MGROK;
	return PROBE_OTHER;
}

const char *
probe_kind_name(enum probe_kind k)
{
	switch (k) {
	case PROBE_SILENT: return "a server that accepts but does not answer";
	case PROBE_CLOSED: return "a server that closes without answering";
	case PROBE_TLS: return "a TLS server";
	case PROBE_HTTP: return "an HTTP server";
	case PROBE_MGROK: return "a plain (non-TLS) mgrok server";
	case PROBE_OTHER: return "a server of another protocol";
	case PROBE_UNREACHABLE: return "nothing reachable";
	}
	return "?";
}

static void
probe_free(struct probe *p)
{
	dial_cancel(p->dial);
	if (p->ev)
		event_free(p->ev);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}

void
probe_cancel(struct probe *p)
{
	if (p)
		probe_free(p);
}

static void
probe_finish(struct probe *p, enum probe_kind k)
{
	probe_done_fn done = p->done;
	void *arg = p->arg;

	probe_free(p);
	done(k, arg);
}

static void
probe_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	ssize_t r;

	if (what & EV_TIMEOUT) {
		probe_finish(p, p->n ? probe_classify(p->got, p->n) :
		    PROBE_SILENT);
		return;
	}
	r = recv(fd, p->got + p->n, sizeof(p->got) - p->n, 0);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r > 0)
		p->n += (size_t)r;
	/* enough to tell, or the end: a reset after some bytes keeps them */
	if (r <= 0 || p->n >= 5 || probe_classify(p->got, p->n) ==
	    PROBE_TLS || probe_classify(p->got, p->n) == PROBE_OTHER)
		probe_finish(p, probe_classify(p->got, p->n));
}

static void
probe_on_dialed(int fd, int err, const struct sockaddr *sa, void *arg)
{
	struct probe *p = arg;
	struct timeval tv = { (time_t)p->timeout_s, 0 };

	p->dial = NULL;
	if (fd < 0) {
		probe_finish(p, PROBE_UNREACHABLE);
		return;
	}
	p->fd = fd;
	/* a few hundred bytes on a fresh socket: the buffer takes them */
	if (send(fd, p->req, p->reqlen, MSG_NOSIGNAL) < 0) {
		probe_finish(p, PROBE_CLOSED);
		return;
	}
	p->ev = event_new(p->base, fd, EV_READ | EV_PERSIST, probe_on_read,
	    p);
	event_add(p->ev, &tv);
}

struct probe *
probe_start(struct event_base *base, const struct addrinfo *ai,
    const uint8_t *req, size_t len, unsigned timeout_s, probe_done_fn done,
    void *arg)
{
	struct probe *p;

	if (len > sizeof(p->req))
		return NULL;
	p = xcalloc(1, sizeof(*p));
	p->base = base;
	p->fd = -1;
	memcpy(p->req, req, len);
	p->reqlen = len;
	p->timeout_s = timeout_s;
	p->done = done;
	p->arg = arg;
	p->dial = dial_start(base, ai, SOCK_STREAM, timeout_s, NULL,
	    probe_on_dialed, p);
	if (p->dial == NULL) {
		free(p);
		return NULL;
	}
	return p;
}
