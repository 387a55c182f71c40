/* fuzz_dgram.c: libFuzzer harness for the datagram framing of UDP flow
 * streams, "len u16 BE | payload" (relay/dgram.c dgram_take).
 *
 * The input is the stream's bytes. They arrive in pieces whose sizes come
 * from the input itself (each piece its own allocation of exactly its size,
 * added by reference, so rx has many chains and a datagram often spans
 * two); after each piece dgram_take runs with a batch size from the input
 * until it takes nothing. A flat model of the same bytes says what every
 * take must return: the same datagrams, byte for byte, the same count of
 * bytes consumed, MG_EPROTO exactly at a length of 0 or above DGRAM_MAX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <event2/buffer.h>

#include "relay/dgram.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FD_BATCH_MAX 16

static void
fd_free_piece(const void *p, size_t len, void *arg)
{
	free(arg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t scratch[DGRAM_MAX];
	struct iovec iov[FD_BATCH_MAX];
	struct evbuffer *rx = evbuffer_new();
	size_t fed = 0, model = 0, i = 0, guard = 0;
	int dead = 0;

	while (fed < size && !dead) {
		uint8_t k = data[(i++ * 7919) % size];
		size_t piece = k & 0x80 ? size - fed : (size_t)(k & 0x1f) + 1;
		uint8_t *p;

		if (piece > size - fed)
			piece = size - fed;
		p = malloc(piece);
		memcpy(p, data + fed, piece);
		if (k & 0x40)
			evbuffer_add_reference(rx, p, piece, fd_free_piece, p);
		else {
			evbuffer_add(rx, p, piece);
			free(p);
		}
		fed += piece;
		for (;;) {
			size_t consumed = 0, want = 0;
			int max = (k >> 2) % FD_BATCH_MAX + 1, n, m = 0;

			if (++guard > 2 * size + 16)
				abort(); /* no progress */
			n = dgram_take(rx, scratch, sizeof(scratch), iov, max,
			    &consumed);
			/* the model: the datagrams complete in data[model..fed) */
			for (size_t at = model; m < max && fed - at >= 2;) {
				size_t len = (size_t)data[at] << 8 | data[at + 1];
				if (len == 0 || len > DGRAM_MAX) {
					if (m == 0)
						m = MG_EPROTO;
					break;
				}
				if (fed - at < 2 + len)
					break;
				if (m >= n || iov[m].iov_len != len ||
				    memcmp(iov[m].iov_base, data + at + 2, len))
					abort();
				at += 2 + len;
				want += 2 + len;
				m++;
			}
			if (n != m)
				abort();
			if (n == MG_EPROTO) {
				if (consumed != 0)
					abort();
				dead = 1; /* the flow would be closed */
				break;
			}
			if (consumed != want ||
			    evbuffer_get_length(rx) != fed - model)
				abort();
			evbuffer_drain(rx, consumed);
			model += consumed;
			if (n == 0)
				break;
		}
	}
	evbuffer_free(rx);
	return 0;
}
