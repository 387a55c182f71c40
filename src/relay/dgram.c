/* dgram.c: see dgram.h. */
#include <sys/uio.h>

#include <event2/buffer.h>

#include "relay/dgram.h"
#include "util/err.h"

int
dgram_next(struct evbuffer *rx, uint8_t **p)
{
	uint8_t pre[2];
	size_t len;
	uint8_t *q;

	if (evbuffer_copyout(rx, pre, 2) < 2)
		return MG_EAGAIN;
	len = (size_t)pre[0] << 8 | pre[1];
	if (len == 0 || len > DGRAM_MAX)
		return MG_EPROTO;
	if (evbuffer_get_length(rx) < 2 + len)
		return MG_EAGAIN;
	q = evbuffer_pullup(rx, (ev_ssize_t)(2 + len));
	*p = q + 2;
	return (int)len;
}

int
dgram_take(struct evbuffer *rx, uint8_t *scratch, size_t cap,
    struct iovec *iov, int max, size_t *consumed)
{
	size_t used = 0;
	int n = 0;

	while (n < max) {
		uint8_t pre[2];
		size_t len;

		if (evbuffer_copyout(rx, pre, 2) < 2)
			break;
		len = (size_t)pre[0] << 8 | pre[1];
		if (len == 0 || len > DGRAM_MAX)
			return n > 0 ? n : MG_EPROTO;
		if (evbuffer_get_length(rx) < 2 + len || used + len > cap)
			break;
		evbuffer_drain(rx, 2);
		evbuffer_remove(rx, scratch + used, len);
		iov[n].iov_base = scratch + used;
		iov[n].iov_len = len;
		used += len;
		*consumed += 2 + len;
		n++;
	}
	return n;
}
