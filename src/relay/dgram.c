/* dgram.c: see dgram.h. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "relay/dgram.h"
#include "util/err.h"

int
dgram_take(struct evbuffer *rx, uint8_t *scratch, size_t cap,
    struct iovec *iov, int max, size_t *consumed)
{
	size_t have = evbuffer_get_length(rx), off = 0, used = 0;
	struct evbuffer_ptr p;
	int n = 0;

	if (evbuffer_ptr_set(rx, &p, 0, EVBUFFER_PTR_SET) != 0)
		return 0;
	/* bounded by max; p advances by each datagram taken */
	while (n < max && have - off >= 2) {
		struct evbuffer_iovec v;
		uint8_t pre[2];
		size_t len;

		if (evbuffer_copyout_from(rx, &p, pre, 2) != 2)
			break;
		len = (size_t)pre[0] << 8 | pre[1];
		if (len == 0 || len > DGRAM_MAX)
			return n > 0 ? n : MG_EPROTO;
		if (have - off < 2 + len ||
		    evbuffer_ptr_set(rx, &p, 2, EVBUFFER_PTR_ADD) != 0)
			break;
		/* in place when it lies in one chain (nearly always); only a
		 * datagram split across chains is copied, into scratch */
		if (evbuffer_peek(rx, (ev_ssize_t)len, &p, &v, 1) >= 1 &&
		    v.iov_len >= len) {
			iov[n].iov_base = v.iov_base;
		} else {
			if (used + len > cap)
				break;
			if (evbuffer_copyout_from(rx, &p, scratch + used, len) !=
			    (ev_ssize_t)len)
				break;
			iov[n].iov_base = scratch + used;
			used += len;
		}
		iov[n].iov_len = len;
		off += 2 + len;
		*consumed += 2 + len;
		n++;
		if (off < have &&
		    evbuffer_ptr_set(rx, &p, len, EVBUFFER_PTR_ADD) != 0)
			break;
	}
	return n;
}

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#define GSO_MAX_SEGS 64     /* UDP_MAX_SEGMENTS of older kernels */
#define GSO_MAX_BYTES 65000 /* under the 64 KiB of one IP packet */
#define SEND_MAX 64         /* messages in one sendmmsg */

union gso_cmsg {
	char buf[CMSG_SPACE(sizeof(uint16_t))];
	struct cmsghdr align;
};

int
dgram_gso_supported(void)
{
	static int known, ok;

	if (!known) {
		/* before Linux 4.18 a UDP_SEGMENT cmsg is silently ignored and
		 * a run would leave as one datagram: ask the socket option,
		 * which those kernels refuse */
		int fd = socket(AF_INET, SOCK_DGRAM, 0), v = 0;
		socklen_t len = sizeof(v);

		ok = fd >= 0 &&
		    getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &len) == 0;
		if (fd >= 0)
			close(fd);
		known = 1;
	}
	return ok;
}

/* One sendmmsg's worth: n <= SEND_MAX datagrams. Returns how many the
 * kernel took; *stopped is set when it stopped taking them (the rest of
 * the batch is dropped, and so would the next batch be). */
static int
dgram_send_batch(int fd, const struct sockaddr *to, unsigned tolen,
    struct iovec *iov, int n, int *gso, uint64_t *bytes, int *stopped)
{
	struct mmsghdr msgs[SEND_MAX];
	union gso_cmsg cm[SEND_MAX];
	int first[SEND_MAX + 1];
	int nm = 0, i = 0, sent = 0, done = 0;

	/* one message per run of equal lengths (plus a shorter tail) */
	while (i < n) {
		struct msghdr *h = &msgs[nm].msg_hdr;
		size_t len = iov[i].iov_len, total = len;
		int j = i + 1;

		if (*gso) {
			while (j < n && j - i < GSO_MAX_SEGS &&
			    iov[j].iov_len <= len &&
			    total + iov[j].iov_len <= GSO_MAX_BYTES) {
				total += iov[j].iov_len;
				if (iov[j++].iov_len < len)
					break; /* a shorter one ends the run */
			}
		}
		memset(h, 0, sizeof(*h));
		h->msg_name = (void *)to;
		h->msg_namelen = to != NULL ? tolen : 0;
		h->msg_iov = &iov[i];
		h->msg_iovlen = (size_t)(j - i);
		if (j - i > 1) {
			struct cmsghdr *c;
			uint16_t seg = (uint16_t)len;

			memset(&cm[nm], 0, sizeof(cm[nm]));
			h->msg_control = cm[nm].buf;
			h->msg_controllen = sizeof(cm[nm].buf);
			c = CMSG_FIRSTHDR(h);
			c->cmsg_level = SOL_UDP;
			c->cmsg_type = UDP_SEGMENT;
			c->cmsg_len = CMSG_LEN(sizeof(seg));
			memcpy(CMSG_DATA(c), &seg, sizeof(seg));
		}
		first[nm++] = i;
		i = j;
	}
	first[nm] = n;
	/* bounded: each round takes at least one message or stops */
	while (done < nm) {
		int r = sendmmsg(fd, msgs + done, (unsigned)(nm - done),
		    MSG_DONTWAIT);
		if (r > 0) {
			for (int k = done; k < done + r; k++) {
				for (int d = first[k]; d < first[k + 1]; d++)
					*bytes += iov[d].iov_len;
				sent += first[k + 1] - first[k];
			}
			done += r;
			continue;
		}
		if (r < 0 && msgs[done].msg_hdr.msg_controllen > 0 &&
		    (errno == EINVAL || errno == EIO || errno == EMSGSIZE ||
			errno == ENOPROTOOPT || errno == EOPNOTSUPP)) {
			/* no GSO on this socket or route: plain from here */
			*gso = 0;
			return sent + dgram_send_batch(fd, to, tolen,
			    iov + first[done], n - first[done], gso, bytes,
			    stopped);
		}
		if (r < 0 && (errno == ECONNREFUSED || errno == EMSGSIZE)) {
			done++; /* this message only (an earlier ICMP error, too
				 * big): drop it, go on */
			continue;
		}
		*stopped = 1; /* a full buffer, no route, ...: drop the rest */
		break;
	}
	return sent;
}

int
dgram_send(int fd, const struct sockaddr *to, unsigned tolen,
    struct iovec *iov, int n, int *gso, uint64_t *bytes)
{
	int sent = 0, stopped = 0;

	/* bounded: each round handles up to SEND_MAX datagrams or stops */
	while (n > 0 && !stopped) {
		int k = n > SEND_MAX ? SEND_MAX : n;

		sent += dgram_send_batch(fd, to, tolen, iov, k, gso, bytes,
		    &stopped);
		iov += k;
		n -= k;
	}
	return sent;
}

int
dgram_recv(int fd, uint8_t *buf, size_t slot, int n,
    struct sockaddr_storage *from, unsigned *fromlen, size_t *len)
{
	struct mmsghdr msgs[64];
	struct iovec iov[64];
	int got;

	if (n > 64)
		n = 64;
	for (int i = 0; i < n; i++) {
		iov[i].iov_base = buf + (size_t)i * slot;
		iov[i].iov_len = slot;
		memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = &from[i];
		msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
	}
	got = recvmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT, NULL);
	if (got <= 0)
		return 0;
	for (int i = 0; i < got; i++) {
		len[i] = msgs[i].msg_len;
		fromlen[i] = msgs[i].msg_hdr.msg_namelen;
	}
	return got;
}

uint32_t
dgram_addr_hash(const struct sockaddr *sa, unsigned len)
{
	const uint8_t *p = (const uint8_t *)sa;
	uint32_t h = 2166136261u;

	for (unsigned i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}
