/*
 * proxyproto.h: the PROXY protocol, versions 1 (text) and 2 (binary), as
 * HAProxy's proxy-protocol.txt defines it. Pure encoders and a decoder over
 * ptr+len; no I/O (docs/internals/proxyproto.md).
 *
 * Ownership: nothing here allocates or keeps a pointer. The decoder copies
 * the addresses into struct proxyproto_hdr and records each TLV as an
 * offset and length into the bytes it parsed; to read a TLV's value the
 * caller passes those same bytes again (still in its input buffer, or a
 * copy of the header) to proxyproto_tlv_find / proxyproto_ssl_find.
 */
#ifndef MG_PROXYPROTO_H
#define MG_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* v2 commands (low nibble of byte 12); PP_CRC32C may be or'ed into the
 * command given to proxyproto_v2 to append a CRC32C TLV. */
#define PP_LOCAL 0x0
#define PP_PROXY 0x1
#define PP_CRC32C 0x100

/* transports (low nibble of byte 13) */
#define PP_UNSPEC 0x0
#define PP_STREAM 0x1
#define PP_DGRAM 0x2

/* standard TLV types */
#define PP2_TYPE_ALPN 0x01
#define PP2_TYPE_AUTHORITY 0x02
#define PP2_TYPE_CRC32C 0x03
#define PP2_TYPE_NOOP 0x04
#define PP2_TYPE_UNIQUE_ID 0x05      /* at most PP2_UNIQUE_ID_MAX bytes */
#define PP2_TYPE_SSL 0x20
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CN 0x22
#define PP2_SUBTYPE_SSL_CIPHER 0x23
#define PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define PP2_TYPE_NETNS 0x30
/* mgrok's own, in the range 0xE0-0xEF the spec leaves to applications */
#define PP2_TYPE_MGROK_TOKEN 0xE0    /* the name of the tunnel's token */
#define PP2_TYPE_MGROK_SUBJECT 0xE1  /* the agent's mTLS certificate subject */

/* PP2_TYPE_SSL's client bits */
#define PP2_CLIENT_SSL 0x01
#define PP2_CLIENT_CERT_CONN 0x02
#define PP2_CLIENT_CERT_SESS 0x04

#define PP2_UNIQUE_ID_MAX 128

/* a v1 line is at most 107 bytes, CRLF included */
#define PROXYPROTO_V1_MAX 107
/* the fixed part of a v2 header: signature, ver_cmd, fam, len */
#define PROXYPROTO_V2_FIXED 16
/* the decoder's cap on a v2 header's declared length (the spec allows
 * 65535); a longer one is refused */
#define PROXYPROTO_V2_MAX_LEN 4096
/* the most TLVs (SSL sub-TLVs included, NOOPs not) the decoder records; a
 * header with more is refused */
#define PROXYPROTO_MAX_TLVS 32

/* one TLV to encode: value[0..len) is copied into the header */
struct proxyproto_tlv {
	uint8_t type;
	const void *value;
	uint16_t len;
};

/* one TLV the decoder found: its value is p[off..off+len) of the parsed
 * bytes p; parent is 0 for a top-level TLV, PP2_TYPE_SSL for a sub-TLV */
struct proxyproto_tlv_ref {
	uint8_t type;
	uint8_t parent;
	uint16_t len;
	uint32_t off;
};

struct proxyproto_hdr {
	int version;   /* 1 or 2 */
	int command;   /* PP_PROXY, or PP_LOCAL (v2 only) */
	int transport; /* PP_STREAM, PP_DGRAM or PP_UNSPEC */
	/*
	 * AF_INET, AF_INET6, AF_UNIX (v2 only) or AF_UNSPEC: v1 UNKNOWN, v2
	 * LOCAL or UNSPEC; then src and dst are zero and the receiver uses
	 * the connection's own addresses.
	 */
	int family;
	struct sockaddr_storage src, dst;
	int has_crc;   /* a CRC32C TLV was there and matched */
	size_t ntlvs;
	struct proxyproto_tlv_ref tlvs[PROXYPROTO_MAX_TLVS];
};

/*
 * proxyproto_v1: write the v1 line "PROXY TCP4 src dst sport dport\r\n"
 * (TCP6 for IPv6) for a connection from src to dst. An IPv4-mapped IPv6
 * address is written as IPv4 when both addresses are IPv4 or mapped; when a
 * family is neither IPv4 nor IPv6, the two differ, or either is NULL, the
 * line is "PROXY UNKNOWN\r\n". Returns its length (at most
 * PROXYPROTO_V1_MAX, no NUL written), MG_ENOSPC if cap is too small, or
 * MG_EINVAL without out.
 */
int proxyproto_v1(const struct sockaddr *src, const struct sockaddr *dst,
    char *out, size_t cap);

/*
 * proxyproto_v2: write a v2 header. command is PP_LOCAL (src and dst are
 * ignored, no address block) or PP_PROXY, optionally | PP_CRC32C to append
 * a CRC32C TLV computed over the whole header; transport is PP_STREAM or
 * PP_DGRAM. Addresses as for v1 (mapped ones unmapped when both are IPv4),
 * AF_UNIX pairs too; others, different families or NULL give the UNSPEC
 * family with no address block. tlvs[0..ntlvs) follow in order (their
 * values copied; the caller keeps ownership); a CRC32C TLV among them, a
 * UNIQUE_ID above PP2_UNIQUE_ID_MAX bytes or a total above 65535 bytes is
 * MG_EINVAL. Returns the header's length, or MG_ENOSPC / MG_EINVAL.
 */
int proxyproto_v2(int command, int transport, const struct sockaddr *src,
    const struct sockaddr *dst, const struct proxyproto_tlv *tlvs,
    size_t ntlvs, uint8_t *out, size_t cap);

/*
 * proxyproto_ssl_value: write the value of a PP2_TYPE_SSL TLV: the client
 * bits, verify (0 when a client certificate was verified) and the
 * sub-TLVs subs[0..nsubs) (PP2_SUBTYPE_SSL_*). Returns its length, or
 * MG_ENOSPC / MG_EINVAL (over 65535 bytes). Pass the result to
 * proxyproto_v2 as a struct proxyproto_tlv of type PP2_TYPE_SSL.
 */
int proxyproto_ssl_value(uint8_t client, uint32_t verify,
    const struct proxyproto_tlv *subs, size_t nsubs, uint8_t *out,
    size_t cap);

/*
 * proxyproto_parse: decode a v1 or v2 header from the first bytes of a
 * connection (or of a datagram), from an untrusted peer. Returns the
 * number of bytes it takes (> 0; what follows is the peer's data) and
 * fills *out; MG_EAGAIN if p[0..len) is a valid but incomplete prefix (at
 * most PROXYPROTO_V1_MAX, or PROXYPROTO_V2_FIXED + PROXYPROTO_V2_MAX_LEN
 * bytes are ever needed); MG_EPROTO if it is not a header or a malformed
 * one, as soon as the bytes show it, with *why (if why is not NULL) set to
 * a static English reason. Never reads past p[len). *out is written only on
 * success; its TLVs are offsets into p (see the ownership note above).
 */
int proxyproto_parse(const uint8_t *p, size_t len, struct proxyproto_hdr *out,
    const char **why);

/*
 * proxyproto_tlv_find: the value of the first top-level TLV of type type
 * in h, which proxyproto_parse filled from p. Returns a pointer into p and
 * sets *lenp (if not NULL), or NULL if there is none.
 */
const uint8_t *proxyproto_tlv_find(const struct proxyproto_hdr *h,
    const uint8_t *p, uint8_t type, size_t *lenp);

/*
 * proxyproto_ssl_find: the same for a sub-TLV of the PP2_TYPE_SSL TLV
 * (PP2_SUBTYPE_SSL_CN, ...). The SSL TLV's client bits and verify field
 * are the first 5 bytes of its value (proxyproto_tlv_find).
 */
const uint8_t *proxyproto_ssl_find(const struct proxyproto_hdr *h,
    const uint8_t *p, uint8_t subtype, size_t *lenp);

/* proxyproto_crc32c: extend crc (0 to start) by the CRC32C (Castagnoli)
 * of p[0..len), as the CRC32C TLV carries it. */
uint32_t proxyproto_crc32c(uint32_t crc, const void *p, size_t len);

#endif
