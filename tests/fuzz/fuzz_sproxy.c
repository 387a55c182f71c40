/* fuzz_sproxy.c: libFuzzer harness for the stream-proxy header. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "proto/sproxy.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const uint8_t *p, size_t len)
{
	uint8_t out[SPROXY_HDR_LEN];
	struct sproxy_hdr h, h2;
	int rc;

	rc = sproxy_decode(p, len, &h);
	if (rc == MG_EAGAIN && len >= SPROXY_HDR_LEN)
		abort();
	if (rc != 0) {
		if (rc != MG_EAGAIN && rc != MG_EPROTO && rc != MG_ECRC)
			abort();
		return;
	}
	if (strlen(h.host) != p[8] || h.port == 0)
		abort();
	/* What decodes re-encodes, and decodes to the same thing. */
	if (sproxy_encode(h.host, h.port, out) != 0)
		abort();
	if (sproxy_decode(out, sizeof(out), &h2) != 0 ||
	    strcmp(h.host, h2.host) != 0 || h.port != h2.port)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t b[SPROXY_HDR_LEN];
	uint32_t c;

	check(data, size);
	/* Again with a correct checksum, or the fuzzer would hardly ever
	 * get past it to the field checks. */
	if (size >= SPROXY_HDR_LEN) {
		memcpy(b, data, sizeof(b));
		c = (uint32_t)crc32(0L, b, SPROXY_HDR_LEN - 4);
		b[270] = (uint8_t)(c >> 24);
		b[271] = (uint8_t)(c >> 16);
		b[272] = (uint8_t)(c >> 8);
		b[273] = (uint8_t)c;
		check(b, sizeof(b));
	}
	return 0;
}
