/* proxyproto.c: PROXY protocol v1/v2 headers (docs/internals/proxyproto.md). */
#include "proto/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "util/err.h"

#define PP_V1_SIG "PROXY "
#define PP_V1_SIG_LEN 6
/* the CR of a v1 line is at index PROXYPROTO_V1_MAX - 2 at the latest */
#define PP_V1_CR_LIMIT (PROXYPROTO_V1_MAX - 1)
#define PP_V4_TEXT_MAX 15  /* 255.255.255.255 */
#define PP_V6_TEXT_MAX 45  /* ffff:...:ffff:255.255.255.255 */

#define PP_V2_SIG "\r\n\r\n\0\r\nQUIT\n"
#define PP_V2_SIG_LEN 12
#define PP_V2_AF_UNSPEC 0x0
#define PP_V2_AF_INET 0x1
#define PP_V2_AF_INET6 0x2
#define PP_V2_AF_UNIX 0x3
#define PP_V2_UNIX_PATH 108
#define PP_SSL_FIXED 5     /* client (1) + verify (4) */

/* CRC32C, reflected polynomial 0x82F63B78, four bits at a time */
static const uint32_t pp_crc_tab[16] = {
	0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1,
	0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
	0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
	0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
};

uint32_t
proxyproto_crc32c(uint32_t crc, const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t i;

	crc = ~crc;
	for (i = 0; i < len; i++) {
		crc ^= b[i];
		crc = (crc >> 4) ^ pp_crc_tab[crc & 0xf];
		crc = (crc >> 4) ^ pp_crc_tab[crc & 0xf];
	}
	return ~crc;
}

static int
pp_fail(const char **why, const char *msg)
{
	if (why != NULL)
		*why = msg;
	return MG_EPROTO;
}

/* ---- encoders ---- */

/* an address as the encoders see it */
struct pp_addr {
	int af;              /* AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC */
	uint8_t ip[16];      /* 4 bytes used for AF_INET */
	uint16_t port;       /* host order */
	char path[PP_V2_UNIX_PATH];
};

static const uint8_t pp_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0xff, 0xff };

static void
pp_addr_get(const struct sockaddr *sa, struct pp_addr *a)
{
	const struct sockaddr_in *s4;
	const struct sockaddr_in6 *s6;
	const struct sockaddr_un *su;
	size_t n;

	memset(a, 0, sizeof(*a));
	a->af = AF_UNSPEC;
	if (sa == NULL)
		return;
	switch (sa->sa_family) {
	case AF_INET:
		s4 = (const struct sockaddr_in *)sa;
		a->af = AF_INET;
		memcpy(a->ip, &s4->sin_addr, 4);
		a->port = ntohs(s4->sin_port);
		break;
	case AF_INET6:
		s6 = (const struct sockaddr_in6 *)sa;
		a->af = AF_INET6;
		memcpy(a->ip, &s6->sin6_addr, 16);
		a->port = ntohs(s6->sin6_port);
		break;
	case AF_UNIX:
		su = (const struct sockaddr_un *)sa;
		a->af = AF_UNIX;
		n = sizeof(su->sun_path) < sizeof(a->path) ?
		    sizeof(su->sun_path) : sizeof(a->path);
		memcpy(a->path, su->sun_path, n);
		break;
	default:
		break;
	}
}

static int
pp_v4ish(const struct pp_addr *a)
{
	return a->af == AF_INET || (a->af == AF_INET6 &&
	    memcmp(a->ip, pp_mapped_prefix, sizeof(pp_mapped_prefix)) == 0);
}

/*
 * pp_pair: the two addresses in one family, mapped IPv6 ones unmapped when
 * both are IPv4; AF_UNSPEC when they cannot share one.
 */
static int
pp_pair(const struct sockaddr *src, const struct sockaddr *dst,
    struct pp_addr *s, struct pp_addr *d)
{
	pp_addr_get(src, s);
	pp_addr_get(dst, d);
	if (pp_v4ish(s) && pp_v4ish(d)) {
		if (s->af == AF_INET6)
			memmove(s->ip, s->ip + 12, 4);
		if (d->af == AF_INET6)
			memmove(d->ip, d->ip + 12, 4);
		s->af = d->af = AF_INET;
		return AF_INET;
	}
	if (s->af == d->af && (s->af == AF_INET6 || s->af == AF_UNIX))
		return s->af;
	return AF_UNSPEC;
}

int
proxyproto_v1(const struct sockaddr *src, const struct sockaddr *dst,
    char *out, size_t cap)
{
	char line[PROXYPROTO_V1_MAX + 1];
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	struct pp_addr s, d;
	int af, n;

	if (out == NULL)
		return MG_EINVAL;
	af = pp_pair(src, dst, &s, &d);
	if (af == AF_INET || af == AF_INET6) {
		if (inet_ntop(af, s.ip, a, sizeof(a)) == NULL ||
		    inet_ntop(af, d.ip, b, sizeof(b)) == NULL)
			return MG_EINVAL;
		n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
		    af == AF_INET ? "TCP4" : "TCP6", a, b, (unsigned)s.port,
		    (unsigned)d.port);
	} else {
		n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
	}
	if (n < 0 || n > PROXYPROTO_V1_MAX)
		return MG_EINVAL;
	if ((size_t)n > cap)
		return MG_ENOSPC;
	memcpy(out, line, (size_t)n);
	return n;
}

static uint8_t *
pp_put16(uint8_t *q, uint16_t v)
{
	q[0] = (uint8_t)(v >> 8);
	q[1] = (uint8_t)v;
	return q + 2;
}

/* pp_tlvs_len: the encoded size of tlvs, or MG_EINVAL past 65535 bytes or
 * with a TLV the encoder must make itself (CRC32C). */
static int
pp_tlvs_len(const struct proxyproto_tlv *tlvs, size_t ntlvs, int top)
{
	size_t i, n = 0;

	for (i = 0; i < ntlvs; i++) {
		if (tlvs[i].len > 0 && tlvs[i].value == NULL)
			return MG_EINVAL;
		if (top && tlvs[i].type == PP2_TYPE_CRC32C)
			return MG_EINVAL;
		if (top && tlvs[i].type == PP2_TYPE_UNIQUE_ID &&
		    tlvs[i].len > PP2_UNIQUE_ID_MAX)
			return MG_EINVAL;
		n += 3 + (size_t)tlvs[i].len;
		if (n > UINT16_MAX)
			return MG_EINVAL;
	}
	return (int)n;
}

static uint8_t *
pp_put_tlvs(uint8_t *q, const struct proxyproto_tlv *tlvs, size_t ntlvs)
{
	size_t i;

	for (i = 0; i < ntlvs; i++) {
		*q++ = tlvs[i].type;
		q = pp_put16(q, tlvs[i].len);
		if (tlvs[i].len > 0)
			memcpy(q, tlvs[i].value, tlvs[i].len);
		q += tlvs[i].len;
	}
	return q;
}

int
proxyproto_v2(int command, int transport, const struct sockaddr *src,
    const struct sockaddr *dst, const struct proxyproto_tlv *tlvs,
    size_t ntlvs, uint8_t *out, size_t cap)
{
	struct pp_addr s, d;
	size_t alen = 0, total;
	uint8_t fam = 0, *q, *crcp = NULL;
	uint32_t crc;
	int af = AF_UNSPEC, tl, cmd = command & ~PP_CRC32C;

	if ((cmd != PP_LOCAL && cmd != PP_PROXY) ||
	    (command & ~(PP_CRC32C | 0xf)) != 0 ||
	    (transport != PP_STREAM && transport != PP_DGRAM) ||
	    out == NULL || (ntlvs > 0 && tlvs == NULL))
		return MG_EINVAL;
	if ((tl = pp_tlvs_len(tlvs, ntlvs, 1)) < 0)
		return tl;
	if (cmd == PP_PROXY)
		af = pp_pair(src, dst, &s, &d);
	switch (af) {
	case AF_INET:
		fam = PP_V2_AF_INET << 4 | (uint8_t)transport;
		alen = 12;
		break;
	case AF_INET6:
		fam = PP_V2_AF_INET6 << 4 | (uint8_t)transport;
		alen = 36;
		break;
	case AF_UNIX:
		fam = PP_V2_AF_UNIX << 4 | (uint8_t)transport;
		alen = 2 * PP_V2_UNIX_PATH;
		break;
	default:
		break;
	}
	total = alen + (size_t)tl + ((command & PP_CRC32C) ? 7 : 0);
	if (total > UINT16_MAX)
		return MG_EINVAL;
	if (PROXYPROTO_V2_FIXED + total > cap)
		return MG_ENOSPC;

	q = out;
	memcpy(q, PP_V2_SIG, PP_V2_SIG_LEN);
	q += PP_V2_SIG_LEN;
	*q++ = (uint8_t)(0x20 | cmd);
	*q++ = fam;
	q = pp_put16(q, (uint16_t)total);
	switch (af) {
	case AF_INET:
		memcpy(q, s.ip, 4);
		memcpy(q + 4, d.ip, 4);
		q = pp_put16(q + 8, s.port);
		q = pp_put16(q, d.port);
		break;
	case AF_INET6:
		memcpy(q, s.ip, 16);
		memcpy(q + 16, d.ip, 16);
		q = pp_put16(q + 32, s.port);
		q = pp_put16(q, d.port);
		break;
	case AF_UNIX:
		memcpy(q, s.path, PP_V2_UNIX_PATH);
		memcpy(q + PP_V2_UNIX_PATH, d.path, PP_V2_UNIX_PATH);
		q += 2 * PP_V2_UNIX_PATH;
		break;
	default:
		break;
	}
	q = pp_put_tlvs(q, tlvs, ntlvs);
	if (command & PP_CRC32C) {
		*q++ = PP2_TYPE_CRC32C;
		q = pp_put16(q, 4);
		crcp = q;
		memset(q, 0, 4);
		q += 4;
		crc = proxyproto_crc32c(0, out, (size_t)(q - out));
		crcp[0] = (uint8_t)(crc >> 24);
		crcp[1] = (uint8_t)(crc >> 16);
		crcp[2] = (uint8_t)(crc >> 8);
		crcp[3] = (uint8_t)crc;
	}
	return (int)(q - out);
}

int
proxyproto_ssl_value(uint8_t client, uint32_t verify,
    const struct proxyproto_tlv *subs, size_t nsubs, uint8_t *out,
    size_t cap)
{
	uint8_t *q;
	int tl;

	if (out == NULL || (nsubs > 0 && subs == NULL))
		return MG_EINVAL;
	if ((tl = pp_tlvs_len(subs, nsubs, 0)) < 0)
		return tl;
	if (PP_SSL_FIXED + (size_t)tl > UINT16_MAX)
		return MG_EINVAL;
	if (PP_SSL_FIXED + (size_t)tl > cap)
		return MG_ENOSPC;
	q = out;
	*q++ = client;
	*q++ = (uint8_t)(verify >> 24);
	*q++ = (uint8_t)(verify >> 16);
	*q++ = (uint8_t)(verify >> 8);
	*q++ = (uint8_t)verify;
	q = pp_put_tlvs(q, subs, nsubs);
	return (int)(q - out);
}

/* ---- v1 decoder ---- */

enum pp_tok { PP_TOK_PROTO, PP_TOK_SRC, PP_TOK_DST, PP_TOK_SPORT,
	PP_TOK_DPORT, PP_TOK_N };

static const char *const pp_v1_bad[PP_TOK_N] = {
	"v1: unknown protocol (not TCP4, TCP6 or UNKNOWN)",
	"v1: bad source address",
	"v1: bad destination address",
	"v1: bad source port",
	"v1: bad destination port",
};

/* pp_v1_port: 1 if t[0..n) is a port, 0-65535 without leading zeros; a
 * partial token is judged as a prefix of one. */
static int
pp_v1_port(const uint8_t *t, size_t n, int partial, uint16_t *port)
{
	uint32_t v = 0;
	size_t i;

	if (n == 0)
		return partial;
	if (n > 5 || (t[0] == '0' && n > 1))
		return 0;
	for (i = 0; i < n; i++) {
		if (t[i] < '0' || t[i] > '9')
			return 0;
		v = v * 10 + (uint32_t)(t[i] - '0');
	}
	if (v > 65535)
		return 0;
	*port = (uint16_t)v;
	return 1;
}

/* pp_v1_addr: 1 if t[0..n) is an address of af (AF_INET or AF_INET6) in
 * inet_pton's form; a partial token only has its characters checked. */
static int
pp_v1_addr(const uint8_t *t, size_t n, int partial, int af, void *ip)
{
	char buf[PP_V6_TEXT_MAX + 1];
	size_t i, max = af == AF_INET ? PP_V4_TEXT_MAX : PP_V6_TEXT_MAX;
	uint8_t c;

	if (n > max || (n == 0 && !partial))
		return 0;
	for (i = 0; i < n; i++) {
		c = t[i];
		if (c >= '0' && c <= '9')
			continue;
		if (c == '.')
			continue;
		if (af == AF_INET6 && (c == ':' || (c >= 'a' && c <= 'f') ||
		    (c >= 'A' && c <= 'F')))
			continue;
		return 0;
	}
	if (partial)
		return 1;
	memcpy(buf, t, n);
	buf[n] = '\0';
	return inet_pton(af, buf, ip) == 1;
}

static int
pp_v1_proto(const uint8_t *t, size_t n, int partial)
{
	static const char *const names[] = { "TCP4", "TCP6", "UNKNOWN" };
	size_t i, l;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		l = strlen(names[i]);
		if (partial ? n <= l && memcmp(t, names[i], n) == 0 :
		    n == l && memcmp(t, names[i], n) == 0)
			return (int)i + 1;
	}
	return 0;
}

static void
pp_set_in(struct sockaddr_storage *ss, const void *ip, uint16_t port)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	s4->sin_family = AF_INET;
	memcpy(&s4->sin_addr, ip, 4);
	s4->sin_port = htons(port);
}

static void
pp_set_in6(struct sockaddr_storage *ss, const void *ip, uint16_t port)
{
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	s6->sin6_family = AF_INET6;
	memcpy(&s6->sin6_addr, ip, 16);
	s6->sin6_port = htons(port);
}

static int
pp_v1_parse(const uint8_t *p, size_t len, struct proxyproto_hdr *out,
    const char **why)
{
	uint8_t sip[16], dip[16];
	uint16_t sport = 0, dport = 0;
	size_t end, pos, t, n;
	int closed, partial, proto = 0, af = AF_UNSPEC, f, ok;

	for (pos = 0; pos < len && pos < PP_V1_SIG_LEN; pos++)
		if (p[pos] != (uint8_t)PP_V1_SIG[pos])
			return pp_fail(why, pos < 5 ?
			    "not a PROXY protocol header" :
			    "v1: no space after PROXY");
	if (len < PP_V1_SIG_LEN)
		return MG_EAGAIN;
	for (end = PP_V1_SIG_LEN; end < len && end < PP_V1_CR_LIMIT &&
	    p[end] != '\r'; end++)
		;
	closed = end < len && end < PP_V1_CR_LIMIT;
	if (closed && end + 1 < len && p[end + 1] != '\n')
		return pp_fail(why, "v1: CR not followed by LF");

	/* the fields, each judged as soon as it is there */
	pos = PP_V1_SIG_LEN;
	for (f = 0; f < PP_TOK_N; f++) {
		for (t = pos; t < end && p[t] != ' '; t++)
			;
		n = t - pos;
		partial = t == end && !closed;
		switch (f) {
		case PP_TOK_PROTO:
			ok = (proto = pp_v1_proto(p + pos, n, partial)) != 0;
			af = proto == 1 ? AF_INET : AF_INET6;
			break;
		case PP_TOK_SRC:
			ok = pp_v1_addr(p + pos, n, partial, af, sip);
			break;
		case PP_TOK_DST:
			ok = pp_v1_addr(p + pos, n, partial, af, dip);
			break;
		case PP_TOK_SPORT:
			ok = pp_v1_port(p + pos, n, partial, &sport);
			break;
		default:
			ok = pp_v1_port(p + pos, n, partial, &dport);
			break;
		}
		if (!ok)
			return pp_fail(why, n == 0 ? "v1: empty field" :
			    pp_v1_bad[f]);
		if (partial)
			goto more;
		if (f == PP_TOK_PROTO && proto == 3)
			break;  /* UNKNOWN: the rest of the line is ignored */
		if (t == end && f < PP_TOK_DPORT)
			return pp_fail(why, "v1: missing fields");
		if (t < end && f == PP_TOK_DPORT)
			return pp_fail(why, "v1: extra field after the ports");
		pos = t + 1;
	}
	if (!closed)
		goto more;
	if (end + 1 >= len)
		return MG_EAGAIN;

	memset(out, 0, sizeof(*out));
	out->version = 1;
	out->command = PP_PROXY;
	if (proto == 3) {
		out->family = AF_UNSPEC;
		out->transport = PP_UNSPEC;
	} else {
		out->family = af;
		out->transport = PP_STREAM;
		if (af == AF_INET) {
			pp_set_in(&out->src, sip, sport);
			pp_set_in(&out->dst, dip, dport);
		} else {
			pp_set_in6(&out->src, sip, sport);
			pp_set_in6(&out->dst, dip, dport);
		}
	}
	return (int)(end + 2);
more:
	if (end >= PP_V1_CR_LIMIT)
		return pp_fail(why, "v1: no CRLF within 107 bytes");
	return MG_EAGAIN;
}

/* ---- v2 decoder ---- */

static uint16_t
pp_get16(const uint8_t *q)
{
	return (uint16_t)(q[0] << 8 | q[1]);
}

static int
pp_tlv_add(struct proxyproto_hdr *h, uint8_t type, uint8_t parent,
    size_t off, size_t len)
{
	if (h->ntlvs >= PROXYPROTO_MAX_TLVS)
		return -1;
	h->tlvs[h->ntlvs].type = type;
	h->tlvs[h->ntlvs].parent = parent;
	h->tlvs[h->ntlvs].off = (uint32_t)off;
	h->tlvs[h->ntlvs].len = (uint16_t)len;
	h->ntlvs++;
	return 0;
}

/* pp_v2_ssl: the sub-TLVs of the SSL TLV whose value is p[off..off+len) */
static int
pp_v2_ssl(const uint8_t *p, size_t off, size_t len, struct proxyproto_hdr *h,
    const char **why)
{
	size_t pos = off + PP_SSL_FIXED, end = off + len, tl;

	if (len < PP_SSL_FIXED)
		return pp_fail(why, "v2: SSL TLV shorter than 5 bytes");
	while (pos < end) {
		if (end - pos < 3)
			return pp_fail(why,
			    "v2: an SSL sub-TLV runs past the SSL TLV");
		tl = pp_get16(p + pos + 1);
		if (tl > end - pos - 3)
			return pp_fail(why,
			    "v2: an SSL sub-TLV runs past the SSL TLV");
		if (pp_tlv_add(h, p[pos], PP2_TYPE_SSL, pos + 3, tl) < 0)
			return pp_fail(why, "v2: too many TLVs");
		pos += 3 + tl;
	}
	return 0;
}

static int
pp_v2_parse(const uint8_t *p, size_t len, struct proxyproto_hdr *out,
    const char **why)
{
	struct proxyproto_hdr h;
	size_t i, alen = 0, hlen, pos, tl, crc_off = 0;
	uint32_t want, got;
	uint8_t cmd, fam, tr;
	int known = 1, rc;

	for (i = 0; i < len && i < PP_V2_SIG_LEN; i++)
		if (p[i] != (uint8_t)PP_V2_SIG[i])
			return pp_fail(why, "not a PROXY protocol header");
	if (len <= PP_V2_SIG_LEN)
		return MG_EAGAIN;
	if (p[12] >> 4 != 2)
		return pp_fail(why, "v2: version is not 2");
	cmd = p[12] & 0xf;
	if (cmd != PP_LOCAL && cmd != PP_PROXY)
		return pp_fail(why, "v2: command is neither LOCAL nor PROXY");
	if (len < 14)
		return MG_EAGAIN;
	fam = p[13] >> 4;
	tr = p[13] & 0xf;
	if (fam > PP_V2_AF_UNIX || tr > PP_DGRAM ||
	    (fam == PP_V2_AF_UNSPEC) != (tr == PP_UNSPEC)) {
		/* a LOCAL header's family is ignored, whatever it is */
		if (cmd == PP_PROXY)
			return pp_fail(why, fam > PP_V2_AF_UNIX ?
			    "v2: unknown address family" :
			    "v2: bad transport for the address family");
		known = 0;
	}
	if (len < PROXYPROTO_V2_FIXED)
		return MG_EAGAIN;
	hlen = pp_get16(p + 14);
	if (hlen > PROXYPROTO_V2_MAX_LEN)
		return pp_fail(why, "v2: declared length above the 4096-byte cap");
	if (known) {
		alen = fam == PP_V2_AF_INET ? 12 : fam == PP_V2_AF_INET6 ? 36 :
		    fam == PP_V2_AF_UNIX ? 2 * PP_V2_UNIX_PATH : 0;
		if (hlen < alen) {
			if (cmd == PP_PROXY)
				return pp_fail(why,
				    fam == PP_V2_AF_INET ?
				    "v2: length too short for AF_INET addresses" :
				    fam == PP_V2_AF_INET6 ?
				    "v2: length too short for AF_INET6 addresses" :
				    "v2: length too short for AF_UNIX addresses");
			known = 0;
		}
	}
	if (len < PROXYPROTO_V2_FIXED + hlen)
		return MG_EAGAIN;

	memset(&h, 0, sizeof(h));
	h.version = 2;
	h.command = cmd;
	h.family = AF_UNSPEC;
	h.transport = known ? tr : PP_UNSPEC;
	if (cmd == PP_PROXY) {
		pos = PROXYPROTO_V2_FIXED;
		if (fam == PP_V2_AF_INET) {
			h.family = AF_INET;
			pp_set_in(&h.src, p + pos, pp_get16(p + pos + 8));
			pp_set_in(&h.dst, p + pos + 4, pp_get16(p + pos + 10));
		} else if (fam == PP_V2_AF_INET6) {
			h.family = AF_INET6;
			pp_set_in6(&h.src, p + pos, pp_get16(p + pos + 32));
			pp_set_in6(&h.dst, p + pos + 16,
			    pp_get16(p + pos + 34));
		} else if (fam == PP_V2_AF_UNIX) {
			struct sockaddr_un *su;

			h.family = AF_UNIX;
			su = (struct sockaddr_un *)&h.src;
			su->sun_family = AF_UNIX;
			memcpy(su->sun_path, p + pos, PP_V2_UNIX_PATH);
			su = (struct sockaddr_un *)&h.dst;
			su->sun_family = AF_UNIX;
			memcpy(su->sun_path, p + pos + PP_V2_UNIX_PATH,
			    PP_V2_UNIX_PATH);
		}
	}

	/* the TLVs, when the address block's size is known */
	pos = PROXYPROTO_V2_FIXED + alen;
	hlen += PROXYPROTO_V2_FIXED;
	while (known && pos < hlen) {
		if (hlen - pos < 3)
			return pp_fail(why, "v2: a TLV header runs past the header");
		tl = pp_get16(p + pos + 1);
		if (tl > hlen - pos - 3)
			return pp_fail(why, "v2: a TLV runs past the header");
		switch (p[pos]) {
		case PP2_TYPE_NOOP:
			break;
		case PP2_TYPE_CRC32C:
			if (tl != 4)
				return pp_fail(why, "v2: CRC32C TLV is not 4 bytes");
			if (crc_off != 0)
				return pp_fail(why, "v2: two CRC32C TLVs");
			crc_off = pos + 3;
			break;
		case PP2_TYPE_UNIQUE_ID:
			if (tl > PP2_UNIQUE_ID_MAX)
				return pp_fail(why,
				    "v2: UNIQUE_ID longer than 128 bytes");
			goto add;
		case PP2_TYPE_SSL:
			if (pp_tlv_add(&h, p[pos], 0, pos + 3, tl) < 0)
				return pp_fail(why, "v2: too many TLVs");
			if ((rc = pp_v2_ssl(p, pos + 3, tl, &h, why)) < 0)
				return rc;
			break;
		default:
		add:
			if (pp_tlv_add(&h, p[pos], 0, pos + 3, tl) < 0)
				return pp_fail(why, "v2: too many TLVs");
			break;
		}
		pos += 3 + tl;
	}
	if (crc_off != 0) {
		static const uint8_t zero[4];

		want = (uint32_t)p[crc_off] << 24 | (uint32_t)p[crc_off + 1] << 16 |
		    (uint32_t)p[crc_off + 2] << 8 | (uint32_t)p[crc_off + 3];
		got = proxyproto_crc32c(0, p, crc_off);
		got = proxyproto_crc32c(got, zero, 4);
		got = proxyproto_crc32c(got, p + crc_off + 4,
		    hlen - crc_off - 4);
		if (got != want)
			return pp_fail(why, "v2: CRC32C mismatch");
		h.has_crc = 1;
	}
	*out = h;
	return (int)hlen;
}

int
proxyproto_parse(const uint8_t *p, size_t len, struct proxyproto_hdr *out,
    const char **why)
{
	if (len == 0)
		return MG_EAGAIN;
	if (p[0] == 'P')
		return pp_v1_parse(p, len, out, why);
	if (p[0] == '\r')
		return pp_v2_parse(p, len, out, why);
	return pp_fail(why, "not a PROXY protocol header");
}

static const uint8_t *
pp_find(const struct proxyproto_hdr *h, const uint8_t *p, uint8_t parent,
    uint8_t type, size_t *lenp)
{
	size_t i;

	for (i = 0; i < h->ntlvs; i++) {
		if (h->tlvs[i].parent != parent || h->tlvs[i].type != type)
			continue;
		if (lenp != NULL)
			*lenp = h->tlvs[i].len;
		return p + h->tlvs[i].off;
	}
	return NULL;
}

const uint8_t *
proxyproto_tlv_find(const struct proxyproto_hdr *h, const uint8_t *p,
    uint8_t type, size_t *lenp)
{
	return pp_find(h, p, 0, type, lenp);
}

const uint8_t *
proxyproto_ssl_find(const struct proxyproto_hdr *h, const uint8_t *p,
    uint8_t subtype, size_t *lenp)
{
	return pp_find(h, p, PP2_TYPE_SSL, subtype, lenp);
}
