/* sproxy.c: the fixed 274-byte header of a stream-proxy connection. */
#include "proto/sproxy.h"

#include <string.h>

#include <zlib.h>

#include "util/err.h"

#define SPROXY_VER_LEN 8
#define SPROXY_OFF_HOSTLEN 8
#define SPROXY_OFF_HOST 9
#define SPROXY_HOST_MAX 255
#define SPROXY_OFF_PORTLEN 264
#define SPROXY_OFF_PORT 265
#define SPROXY_PORT_MAX 5
#define SPROXY_OFF_CRC 270

static uint32_t
sproxy_crc(const uint8_t *p)
{
	return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, SPROXY_OFF_CRC);
}

int
sproxy_encode(const char *host, uint16_t port, uint8_t out[SPROXY_HDR_LEN])
{
	char digits[SPROXY_PORT_MAX];
	size_t hlen, plen, i;
	uint32_t crc;

	hlen = strlen(host);
	if (hlen > SPROXY_HOST_MAX || port == 0)
		return MG_EINVAL;
	/* Digits come out least significant first; reverse them below. */
	for (plen = 0; port != 0; port /= 10)
		digits[plen++] = (char)('0' + port % 10);

	memset(out, 0, SPROXY_HDR_LEN);
	memcpy(out, SPROXY_VERSION, sizeof(SPROXY_VERSION) - 1);
	out[SPROXY_OFF_HOSTLEN] = (uint8_t)hlen;
	memcpy(out + SPROXY_OFF_HOST, host, hlen);
	out[SPROXY_OFF_PORTLEN] = (uint8_t)plen;
	for (i = 0; i < plen; i++)
		out[SPROXY_OFF_PORT + i] = (uint8_t)digits[plen - 1 - i];
	crc = sproxy_crc(out);
	out[SPROXY_OFF_CRC] = (uint8_t)(crc >> 24);
	out[SPROXY_OFF_CRC + 1] = (uint8_t)(crc >> 16);
	out[SPROXY_OFF_CRC + 2] = (uint8_t)(crc >> 8);
	out[SPROXY_OFF_CRC + 3] = (uint8_t)crc;
	return 0;
}

int
sproxy_decode(const uint8_t *p, size_t len, struct sproxy_hdr *h)
{
	static const uint8_t ver[SPROXY_VER_LEN] = SPROXY_VERSION;
	const uint8_t *q;
	uint32_t crc, port;
	size_t hlen, plen, i;

	if (len < SPROXY_HDR_LEN)
		return MG_EAGAIN;
	/* The version first: a peer of another version may not even lay
	 * out the checksum where this one does. */
	if (memcmp(p, ver, SPROXY_VER_LEN) != 0)
		return MG_EPROTO;
	q = p + SPROXY_OFF_CRC;
	crc = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 |
	    (uint32_t)q[2] << 8 | (uint32_t)q[3];
	if (crc != sproxy_crc(p))
		return MG_ECRC;

	hlen = p[SPROXY_OFF_HOSTLEN];
	plen = p[SPROXY_OFF_PORTLEN];
	if (plen < 1 || plen > SPROXY_PORT_MAX)
		return MG_EPROTO;
	/* A NUL inside the host would make the C string that the allow-list
	 * checks differ from the bytes the client sent. */
	if (memchr(p + SPROXY_OFF_HOST, '\0', hlen) != NULL)
		return MG_EPROTO;
	port = 0;
	for (i = 0; i < plen; i++) {
		q = p + SPROXY_OFF_PORT + i;
		if (*q < '0' || *q > '9')
			return MG_EPROTO;
		port = port * 10 + (uint32_t)(*q - '0');
	}
	if (port < 1 || port > 65535)
		return MG_EPROTO;

	memcpy(h->host, p + SPROXY_OFF_HOST, hlen);
	h->host[hlen] = '\0';
	h->port = (uint16_t)port;
	return 0;
}
