/* fuzz_proxyproto.c: libFuzzer harness for the PROXY protocol v1/v2 decoder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proxyproto.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUT_MAX (PROXYPROTO_V2_FIXED + PROXYPROTO_V2_MAX_LEN)

/* enc: write h (parsed from p) again, v1 as v1, v2 as v2 with its
 * top-level TLVs and a CRC32C if it had one. Returns the length. */
static int
enc(const struct proxyproto_hdr *h, const uint8_t *p, uint8_t *out)
{
	struct proxyproto_tlv t[PROXYPROTO_MAX_TLVS];
	const struct sockaddr *s = NULL, *d = NULL;
	size_t i, nt = 0;
	int n;

	if (h->family != AF_UNSPEC) {
		s = (const struct sockaddr *)&h->src;
		d = (const struct sockaddr *)&h->dst;
	}
	if (h->version == 1)
		return proxyproto_v1(s, d, (char *)out, OUT_MAX);
	for (i = 0; i < h->ntlvs; i++) {
		if (h->tlvs[i].parent != 0)
			continue;
		t[nt].type = h->tlvs[i].type;
		t[nt].value = p + h->tlvs[i].off;
		t[nt].len = h->tlvs[i].len;
		nt++;
	}
	n = proxyproto_v2(h->command | (h->has_crc ? PP_CRC32C : 0),
	    h->transport == PP_DGRAM ? PP_DGRAM : PP_STREAM, s, d, t, nt, out,
	    OUT_MAX);
	return n;
}

static size_t
top_tlvs(const struct proxyproto_hdr *h)
{
	size_t i, n = 0;

	for (i = 0; i < h->ntlvs; i++)
		n += h->tlvs[i].parent == 0;
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t a[OUT_MAX], b[OUT_MAX];
	struct proxyproto_hdr h, h2, h3;
	const char *why = NULL;
	size_t i;
	int n, m, k;

	n = proxyproto_parse(data, size, &h, &why);
	if (n == MG_EPROTO) {
		if (why == NULL)
			abort();
		return 0;
	}
	if (n == MG_EAGAIN) {
		if (size >= OUT_MAX)
			abort();  /* a bounded wait */
		return 0;
	}
	if (n <= 0 || (size_t)n > size || (size_t)n > OUT_MAX)
		abort();
	if (h.version == 1 && n > PROXYPROTO_V1_MAX)
		abort();
	/* a proper prefix is incomplete, never an error */
	if (proxyproto_parse(data, (size_t)n - 1, &h2, NULL) != MG_EAGAIN ||
	    proxyproto_parse(data, (size_t)n / 2, &h2, NULL) != MG_EAGAIN)
		abort();
	for (i = 0; i < h.ntlvs; i++)
		if ((size_t)h.tlvs[i].off + h.tlvs[i].len > (size_t)n)
			abort();

	/* what parsed encodes, parses back the same, and is then a fixed point */
	m = enc(&h, data, a);
	if (m <= 0)
		abort();
	if (proxyproto_parse(a, (size_t)m, &h2, NULL) != m)
		abort();
	if (h2.version != h.version || h2.command != h.command ||
	    h2.has_crc != h.has_crc || top_tlvs(&h2) != top_tlvs(&h))
		abort();
	if (h2.family == h.family && h.family != AF_UNSPEC &&
	    (memcmp(&h2.src, &h.src, sizeof(h.src)) != 0 ||
	    memcmp(&h2.dst, &h.dst, sizeof(h.dst)) != 0))
		abort();
	k = enc(&h2, a, b);
	if (k != m || memcmp(a, b, (size_t)m) != 0)
		abort();
	if (proxyproto_parse(b, (size_t)k, &h3, NULL) != k)
		abort();
	return 0;
}
