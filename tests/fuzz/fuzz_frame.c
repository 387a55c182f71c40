/* fuzz_frame.c: libFuzzer harness for the smux frame header codec. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[FRAME_HDR_LEN];
	struct frame_hdr h;
	uint32_t c, w;
	int rc;

	rc = frame_decode(data, size, &h);
	if (rc == MG_EAGAIN && size >= FRAME_HDR_LEN)
		abort();
	if (rc == FRAME_HDR_LEN) {
		/* A valid header re-encodes to the same bytes. */
		if ((h.ver != 1 && h.ver != 2) || h.cmd > FRAME_UPD)
			abort();
		frame_encode(out, &h);
		if (memcmp(out, data, FRAME_HDR_LEN) != 0)
			abort();
	} else if (rc != MG_EAGAIN && rc != MG_EPROTO) {
		abort();
	}

	if (size >= FRAME_HDR_LEN) {
		rc = frame_upd_decode(data + FRAME_HDR_LEN,
		    size - FRAME_HDR_LEN, &c, &w);
		if (rc == 0) {
			frame_upd_encode(out, c, w);
			if (memcmp(out, data + FRAME_HDR_LEN, FRAME_UPD_LEN))
				abort();
		} else if (rc != MG_EPROTO) {
			abort();
		}
	}
	return 0;
}
