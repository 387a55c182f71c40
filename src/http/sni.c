/* sni.c: the server name of a TLS ClientHello, for routing TLS tunnels
 * without decrypting them (see http.h, RFC 8446 4.1.2, RFC 6066 3), and
 * the ALPN protocols it offers (RFC 7301), for the PROXY protocol. */
#include <string.h>

#include "http/http.h"
#include "util/err.h"

#define SNI_REC_HDR 5
#define SNI_REC_MAX 16384       /* a TLSPlaintext fragment, 2^14 */
#define SNI_HS_MAX 16384        /* the ClientHello with its 4-byte header */
#define SNI_CONTENT_HANDSHAKE 22
#define SNI_HS_CLIENT_HELLO 1
#define SNI_EXT_SERVER_NAME 0
#define SNI_NAME_HOST 0
#define SNI_EXT_ALPN 16

/*
 * A cursor over the ClientHello body: `avail` bytes are here, `end` were
 * announced. Reading past a structure's limit is a malformed hello; past
 * avail (but within the limit) needs more bytes.
 */
struct sni_cur {
	const uint8_t *b;
	size_t pos, avail;
};

static int
sni_need(const struct sni_cur *c, size_t n, size_t lim)
{
	if (n > lim - c->pos)
		return MG_EPROTO;
	if (n > c->avail - c->pos)
		return MG_EAGAIN;
	return 0;
}

/* sni_get: read an n-byte big-endian integer (n <= 3) below lim. */
static int
sni_get(struct sni_cur *c, size_t n, size_t lim, size_t *v)
{
	int rc;

	if ((rc = sni_need(c, n, lim)) != 0)
		return rc;
	*v = 0;
	for (size_t i = 0; i < n; i++)
		*v = *v << 8 | c->b[c->pos + i];
	c->pos += n;
	return 0;
}

/* sni_skip: skip n bytes below lim (they must be here: what follows
 * them is read next). */
static int
sni_skip(struct sni_cur *c, size_t n, size_t lim)
{
	int rc;

	if ((rc = sni_need(c, n, lim)) != 0)
		return rc;
	c->pos += n;
	return 0;
}

static int
sni_name_char(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_';
}

/* sni_server_name: the server_name extension's data [pos, lim). */
static int
sni_server_name(struct sni_cur *c, size_t lim, char *out, size_t cap)
{
	size_t list, type, n;
	int rc, found = 0;

	if ((rc = sni_get(c, 2, lim, &list)) != 0)
		return rc;
	if (list != lim - c->pos || list == 0)
		return MG_EPROTO;
	while (c->pos < lim) {
		if ((rc = sni_get(c, 1, lim, &type)) != 0 ||
		    (rc = sni_get(c, 2, lim, &n)) != 0 ||
		    (rc = sni_need(c, n, lim)) != 0)
			return rc;
		if (type == SNI_NAME_HOST && !found) {
			if (n == 0 || n > HTTP_HOST_MAX)
				return MG_EPROTO;
			if (n >= cap)
				return MG_ENOSPC;
			for (size_t i = 0; i < n; i++) {
				uint8_t ch = c->b[c->pos + i];

				if (!sni_name_char(ch))
					return MG_EPROTO;
				out[i] = (char)(ch >= 'A' && ch <= 'Z' ?
				    ch + 32 : ch);
			}
			out[n] = '\0';
			found = 1;
		}
		c->pos += n;
	}
	return 0;
}

/* Where the ALPN list goes (http_hello_peek), or all NULL. */
struct sni_alpn {
	uint8_t *out;
	size_t cap, *len;
};

/* sni_alpn: the ALPN extension's data [pos, lim), all here: copies the
 * whole entries that fit; a malformed list copies nothing. Never fails:
 * the ALPN list is information, not routing. */
static void
sni_alpn(const struct sni_cur *c, size_t lim, const struct sni_alpn *a)
{
	const uint8_t *q = c->b + c->pos;
	size_t n = lim - c->pos, i, keep = 0;

	if (a->out == NULL || n < 2 || ((size_t)q[0] << 8 | q[1]) != n - 2)
		return;
	for (i = 2; i < n; i += 1 + (size_t)q[i]) {
		if (q[i] == 0 || q[i] > n - i - 1)
			return; /* empty or overlong: none at all */
		if (i - 2 + 1 + (size_t)q[i] <= a->cap)
			keep = i - 2 + 1 + (size_t)q[i];
	}
	memcpy(a->out, q + 2, keep);
	*a->len = keep;
}

/* sni_hello: walk a ClientHello body of hs_len bytes, avail of them here. */
static int
sni_hello(const uint8_t *b, size_t avail, size_t hs_len, char *out,
    size_t cap, const struct sni_alpn *alpn)
{
	struct sni_cur c = { b, 0, avail };
	size_t v, ext_end, type, n, ext_lim;
	int rc, seen = 0;

	/* legacy_version (3.x), random */
	if ((rc = sni_need(&c, 1, hs_len)) != 0)
		return rc;
	if (b[0] != 3)
		return MG_EPROTO;
	if ((rc = sni_skip(&c, 2 + 32, hs_len)) != 0)
		return rc;
	/* legacy_session_id <0..32> */
	if ((rc = sni_get(&c, 1, hs_len, &v)) != 0)
		return rc;
	if (v > 32)
		return MG_EPROTO;
	if ((rc = sni_skip(&c, v, hs_len)) != 0)
		return rc;
	/* cipher_suites <2..2^16-2>, pairs */
	if ((rc = sni_get(&c, 2, hs_len, &v)) != 0)
		return rc;
	if (v < 2 || v % 2 != 0)
		return MG_EPROTO;
	if ((rc = sni_skip(&c, v, hs_len)) != 0)
		return rc;
	/* legacy_compression_methods <1..2^8-1> */
	if ((rc = sni_get(&c, 1, hs_len, &v)) != 0)
		return rc;
	if (v < 1)
		return MG_EPROTO;
	if ((rc = sni_skip(&c, v, hs_len)) != 0)
		return rc;
	out[0] = '\0';
	if (c.pos == hs_len)
		return 0;               /* an old hello without extensions */
	if ((rc = sni_get(&c, 2, hs_len, &v)) != 0)
		return rc;
	if (v != hs_len - c.pos)
		return MG_EPROTO;
	ext_end = hs_len;
	while (c.pos < ext_end) {
		if ((rc = sni_get(&c, 2, ext_end, &type)) != 0 ||
		    (rc = sni_get(&c, 2, ext_end, &n)) != 0)
			return rc;
		if (n > ext_end - c.pos)
			return MG_EPROTO;
		ext_lim = c.pos + n;
		if (type == SNI_EXT_SERVER_NAME) {
			/* RFC 8446 4.2: no extension twice. */
			if (seen++)
				return MG_EPROTO;
			if ((rc = sni_server_name(&c, ext_lim, out, cap)) != 0)
				return rc;
		} else if (type == SNI_EXT_ALPN && alpn->out != NULL &&
		    *alpn->len == 0 && (rc = sni_need(&c, n, ext_end)) == 0) {
			sni_alpn(&c, ext_lim, alpn);
			c.pos = ext_lim;
		} else if ((rc = sni_skip(&c, n, ext_end)) != 0)
			return rc;
	}
	return 0;
}

int
http_sni_peek(const uint8_t *p, size_t len, char *out, size_t cap)
{
	return http_hello_peek(p, len, out, cap, NULL, 0, NULL);
}

int
http_hello_peek(const uint8_t *p, size_t len, char *out, size_t cap,
    uint8_t *alpn, size_t alpn_cap, size_t *alpn_len)
{
	uint8_t hs[SNI_HS_MAX];
	size_t off = 0, have = 0, want = 0, rlen, take, hs_len = 0;
	size_t alpn_n = 0;
	struct sni_alpn a = { alpn, alpn_cap, alpn_len ? alpn_len : &alpn_n };
	int rc;

	*a.len = 0;
	if (cap == 0)
		return MG_ENOSPC;
	out[0] = '\0';
	/* Gather the handshake bytes of the records that are here: a
	 * ClientHello may be split over several records. */
	while (off < len) {
		if (p[off] != SNI_CONTENT_HANDSHAKE)
			return MG_EPROTO;
		if (len - off >= 2 && p[off + 1] != 3)
			return MG_EPROTO;
		if (len - off < SNI_REC_HDR)
			break;
		rlen = (size_t)p[off + 3] << 8 | p[off + 4];
		if (rlen == 0 || rlen > SNI_REC_MAX)
			return MG_EPROTO;
		off += SNI_REC_HDR;
		take = len - off < rlen ? len - off : rlen;
		if (take > sizeof(hs) - have)
			take = sizeof(hs) - have;
		memcpy(hs + have, p + off, take);
		have += take;
		off += take;
		if (have >= 4) {
			want = 4 + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 |
			    hs[3]);
			if (want > SNI_HS_MAX)
				return MG_EPROTO;
			if (have >= want)
				break;
		}
		if (have == sizeof(hs))
			break;
	}
	if (have >= 1 && hs[0] != SNI_HS_CLIENT_HELLO)
		return MG_EPROTO;
	if (have < 4)
		return MG_EAGAIN;
	hs_len = want - 4;
	rc = sni_hello(hs + 4, (have < want ? have : want) - 4, hs_len, out,
	    cap, &a);
	if (rc != 0) {
		out[0] = '\0';
		*a.len = 0;
	}
	return rc;
}
