/* fuzz_sthdr.c: libFuzzer harness for the data-stream header codec. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sthdr.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[STHDR_MAX_LEN];
	struct sthdr h, h2;
	int n, m;

	n = sthdr_decode(data, size, &h);
	if (n == MG_EAGAIN || n == MG_EPROTO)
		return 0;
	if (n <= 0 || (size_t)n > size || n > STHDR_MAX_LEN)
		abort();
	/* One byte less is an incomplete prefix, never an error. */
	if (sthdr_decode(data, (size_t)n - 1, &h2) != MG_EAGAIN)
		abort();
	if (strlen(h.name) > h.name_len)
		abort();
	/* Canonical format: re-encoding gives back the same bytes. */
	m = sthdr_encode(&h, out, sizeof(out));
	if (m != n || memcmp(out, data, (size_t)n) != 0)
		abort();
	return 0;
}
