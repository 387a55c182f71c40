/* ctrl.c: encode and decode control-stream messages and the handshake. */
#include "proto/ctrl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/hmac.h>

#include "util/err.h"

#define CTRL_MAC_LABEL "mgrok-auth-v1"

/*
 * Reader over one whole message. Every getter checks the bytes left first,
 * so a decoder can never read past len; "ok" turns 0 at the first short
 * read and stays 0, which lets a decoder check once per field group.
 */
struct ctrl_rd {
	const uint8_t *p;
	size_t len;
	size_t off;
	int ok;
};

static size_t
ctrl_rd_left(const struct ctrl_rd *r)
{
	return r->len - r->off;
}

static const uint8_t *
ctrl_rd_bytes(struct ctrl_rd *r, size_t n)
{
	const uint8_t *q;

	if (!r->ok || n > ctrl_rd_left(r)) {
		r->ok = 0;
		return NULL;
	}
	q = r->p + r->off;
	r->off += n;
	return q;
}

static uint8_t
ctrl_rd_u8(struct ctrl_rd *r)
{
	const uint8_t *q = ctrl_rd_bytes(r, 1);

	return q != NULL ? q[0] : 0;
}

static uint16_t
ctrl_rd_u16(struct ctrl_rd *r)
{
	const uint8_t *q = ctrl_rd_bytes(r, 2);

	return q != NULL ? (uint16_t)(q[0] << 8 | q[1]) : 0;
}

static uint32_t
ctrl_rd_u32(struct ctrl_rd *r)
{
	const uint8_t *q = ctrl_rd_bytes(r, 4);

	if (q == NULL)
		return 0;
	return (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 |
	    (uint32_t)q[2] << 8 | (uint32_t)q[3];
}

/* ctrl_rd_str: n bytes as a view; s is left untouched on a short read. */
static void
ctrl_rd_str(struct ctrl_rd *r, size_t n, struct ctrl_str *s)
{
	const uint8_t *q = ctrl_rd_bytes(r, n);

	if (q != NULL) {
		s->p = q;
		s->len = n;
	}
}

static void
ctrl_rd_rest(struct ctrl_rd *r, struct ctrl_str *s)
{
	ctrl_rd_str(r, ctrl_rd_left(r), s);
}

/*
 * Writer. It counts every byte asked for but stores only what fits in cap,
 * so one pass both writes the message and learns its size: the caller then
 * tells "too big for the protocol" (MG_EINVAL) from "too big for this
 * buffer" (MG_ENOSPC). n is clamped just above CTRL_MSG_MAX so that
 * caller-supplied lengths can never overflow it.
 */
struct ctrl_wr {
	uint8_t *p;
	size_t cap;
	size_t n;
};

static void
ctrl_wr_bytes(struct ctrl_wr *w, const void *src, size_t len)
{
	if (len > CTRL_MSG_MAX || w->n > CTRL_MSG_MAX) {
		w->n = CTRL_MSG_MAX + 1;
		return;
	}
	if (len > 0 && len <= w->cap && w->n <= w->cap - len)
		memcpy(w->p + w->n, src, len);
	w->n += len;
}

static void
ctrl_wr_u8(struct ctrl_wr *w, uint8_t v)
{
	ctrl_wr_bytes(w, &v, 1);
}

static void
ctrl_wr_u16(struct ctrl_wr *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	ctrl_wr_bytes(w, b, sizeof(b));
}

static void
ctrl_wr_u32(struct ctrl_wr *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
		(uint8_t)(v >> 8), (uint8_t)v };

	ctrl_wr_bytes(w, b, sizeof(b));
}

static void
ctrl_wr_str(struct ctrl_wr *w, const struct ctrl_str *s)
{
	ctrl_wr_bytes(w, s->p, s->len);
}

static int
ctrl_wr_done(const struct ctrl_wr *w)
{
	if (w->n > CTRL_MSG_MAX)
		return MG_EINVAL;
	if (w->n > w->cap)
		return MG_ENOSPC;
	return (int)w->n;
}

int
ctrl_hello_decode(const uint8_t *p, size_t len, struct ctrl_hello *h)
{
	struct ctrl_rd r = { p, len, 0, 1 };
	const uint8_t *q;
	size_t n;

#define HELLO_FAIL(rc, why)                                                    \
	do {                                                                   \
		h->err = (why);                                                \
		return (rc);                                                   \
	} while (0)
	memset(h, 0, sizeof(*h));
	q = ctrl_rd_bytes(&r, 4);
	if (q == NULL || memcmp(q, CTRL_MAGIC, 4) != 0)
		HELLO_FAIL(MG_EPROTO, "not an mgrok handshake (it must start "
		    "with GRT1)");
	h->method = ctrl_rd_u8(&r);
	if (!r.ok)
		HELLO_FAIL(MG_EPROTO, "handshake without a method byte after "
		    "GRT1");
	n = ctrl_rd_left(&r);

	switch (h->method) {
	case CTRL_METHOD_TOKEN:
		if (n < 1)
			HELLO_FAIL(MG_EPROTO, "TOKEN handshake with an empty "
			    "token");
		if (n > CTRL_TOKEN_MAX)
			HELLO_FAIL(MG_EPROTO, "TOKEN handshake with a token "
			    "longer than 1019 bytes");
		ctrl_rd_rest(&r, &h->token);
		return 0;
	case CTRL_METHOD_MTLS:
		if (n != CTRL_ID_LEN)
			HELLO_FAIL(MG_EPROTO, "MTLS handshake whose client id "
			    "is not 16 bytes");
		memcpy(h->client_id, ctrl_rd_bytes(&r, CTRL_ID_LEN),
		    CTRL_ID_LEN);
		return 0;
	case CTRL_METHOD_HMAC:
		h->hmac_ver = ctrl_rd_u8(&r);
		if (!r.ok)
			HELLO_FAIL(MG_EPROTO, "HMAC handshake without its "
			    "version byte");
		/* Another version may lay out the rest differently, so the
		 * version is judged before the length. */
		if (h->hmac_ver != 1)
			HELLO_FAIL(MG_EUNSUPP, "HMAC handshake of an unknown "
			    "version (this server speaks version 1)");
		q = ctrl_rd_bytes(&r, CTRL_NONCE_LEN + CTRL_ID_LEN);
		h->caps = ctrl_rd_u32(&r);
		n = ctrl_rd_u8(&r);
		if (!r.ok)
			HELLO_FAIL(MG_EPROTO, "HMAC handshake cut short: it "
			    "needs a 16-byte nonce, a 16-byte client id, caps "
			    "and the agent length");
		if (ctrl_rd_left(&r) != n)
			HELLO_FAIL(MG_EPROTO, "HMAC handshake whose agent "
			    "string is not as long as its length byte says");
		memcpy(h->client_nonce, q, CTRL_NONCE_LEN);
		memcpy(h->client_id, q + CTRL_NONCE_LEN, CTRL_ID_LEN);
		ctrl_rd_rest(&r, &h->agent);
		return 0;
	}
	HELLO_FAIL(MG_EUNSUPP, "unknown authentication method");
#undef HELLO_FAIL
}

int
ctrl_hello_encode(const struct ctrl_hello *h, uint8_t *out, size_t cap)
{
	struct ctrl_wr w = { out, cap, 0 };

	ctrl_wr_bytes(&w, CTRL_MAGIC, 4);
	ctrl_wr_u8(&w, h->method);
	switch (h->method) {
	case CTRL_METHOD_TOKEN:
		if (h->token.len < 1 || h->token.len > CTRL_TOKEN_MAX)
			return MG_EINVAL;
		ctrl_wr_str(&w, &h->token);
		break;
	case CTRL_METHOD_MTLS:
		ctrl_wr_bytes(&w, h->client_id, CTRL_ID_LEN);
		break;
	case CTRL_METHOD_HMAC:
		if (h->agent.len > 255)
			return MG_EINVAL;
		ctrl_wr_u8(&w, h->hmac_ver);
		ctrl_wr_bytes(&w, h->client_nonce, CTRL_NONCE_LEN);
		ctrl_wr_bytes(&w, h->client_id, CTRL_ID_LEN);
		ctrl_wr_u32(&w, h->caps);
		ctrl_wr_u8(&w, (uint8_t)h->agent.len);
		ctrl_wr_str(&w, &h->agent);
		break;
	default:
		return MG_EINVAL;
	}
	return ctrl_wr_done(&w);
}

/* Bits of the options seen so far, to refuse a repeated one. */
static unsigned
ctrl_opt_bit(uint8_t tag)
{
	return tag == REGOPT_DESCRIPTION ? 1u << 0 : 1u << tag;
}

static int
ctrl_decode_opts(struct ctrl_rd *r, struct ctrl_register *reg)
{
	struct ctrl_str v, *text;
	unsigned seen = 0;
	int unknown = 0;
	uint8_t tag;
	uint16_t vlen;

	while (ctrl_rd_left(r) > 0) {
		tag = ctrl_rd_u8(r);
		vlen = ctrl_rd_u16(r);
		ctrl_rd_str(r, vlen, &v);
		if (!r->ok)
			return MG_EPROTO;

		text = NULL;
		switch (tag) {
		case REGOPT_SUBDOMAIN:
			text = &reg->subdomain;
			break;
		case REGOPT_HOSTNAME:
			text = &reg->hostname;
			break;
		case REGOPT_BASIC_AUTH:
			text = &reg->basic_auth;
			break;
		case REGOPT_GROUP:
			text = &reg->group;
			break;
		case REGOPT_GROUP_KEY:
			text = &reg->group_key;
			break;
		case REGOPT_GROUP_STRATEGY:
			text = &reg->group_strategy;
			break;
		case REGOPT_GROUP_WEIGHT:
			/* 0 would read back as "not given" */
			if (vlen != 2 || (v.p[0] == 0 && v.p[1] == 0))
				return MG_EPROTO;
			reg->group_weight = (uint16_t)(v.p[0] << 8 | v.p[1]);
			break;
		case REGOPT_DESCRIPTION:
			text = &reg->description;
			break;
		case REGOPT_BANDWIDTH:
			if (vlen != 4)
				return MG_EPROTO;
			reg->bandwidth = (uint32_t)v.p[0] << 24 |
			    (uint32_t)v.p[1] << 16 | (uint32_t)v.p[2] << 8 |
			    (uint32_t)v.p[3];
			break;
		case REGOPT_PROXY_PROTOCOL:
			/* 0 would read back as "none"; anything else is no
			 * PROXY protocol version. */
			if (vlen != 1 || (v.p[0] != 1 && v.p[0] != 2))
				return MG_EPROTO;
			reg->proxy_protocol = v.p[0];
			break;
		case REGOPT_ALLOW_SRC:
			if (reg->n_allow_src >= CTRL_MAX_ALLOW_SRC)
				return MG_EPROTO;
			reg->allow_src[reg->n_allow_src++] = v;
			continue;
		case REGOPT_DENY_SRC:
			if (reg->n_deny_src >= CTRL_MAX_ALLOW_SRC)
				return MG_EPROTO;
			reg->deny_src[reg->n_deny_src++] = v;
			continue;
		default:
			/* Keep parsing: a malformed option later still makes
			 * the whole message a protocol error. */
			if (tag < 0x80 && !unknown) {
				reg->unknown_tag = tag;
				unknown = 1;
			}
			continue;
		}
		/* A repeated option is ambiguous (which subdomain?): refuse
		 * it rather than let one reader pick the first, another the
		 * last. */
		if (seen & ctrl_opt_bit(tag))
			return MG_EPROTO;
		seen |= ctrl_opt_bit(tag);
		if (text != NULL)
			*text = v;
	}
	return unknown ? MG_EUNSUPP : 0;
}

static int
ctrl_decode_register(struct ctrl_rd *r, struct ctrl_register *reg, int ex)
{
	reg->ex = (uint8_t)ex;
	reg->proxy_type = ctrl_rd_u8(r);
	reg->remote_port = ctrl_rd_u16(r);
	reg->local_port = ctrl_rd_u16(r);
	if (!r->ok)
		return MG_EPROTO;
	if (!ex) {
		ctrl_rd_rest(r, &reg->name);
		if (reg->name.len > CTRL_NAME_MAX) {
			reg->name.len = CTRL_NAME_MAX;
			return MG_ETOOLONG;
		}
		return 0;
	}
	ctrl_rd_str(r, ctrl_rd_u8(r), &reg->name);
	if (!r->ok)
		return MG_EPROTO;
	return ctrl_decode_opts(r, reg);
}

int
ctrl_decode(const uint8_t *p, size_t len, struct ctrl_msg *m)
{
	struct ctrl_rd r = { p, len, 0, 1 };
	const uint8_t *q;

	memset(m, 0, sizeof(*m));
	m->type = ctrl_rd_u8(&r);
	if (!r.ok)
		return MG_EPROTO;

	switch (m->type) {
	case CTRL_REGISTER:
	case CTRL_REGISTER_EX:
		return ctrl_decode_register(&r, &m->u.reg,
		    m->type == CTRL_REGISTER_EX);
	case CTRL_HEARTBEAT:
		break;
	case CTRL_STREAM_REJECT:
		m->u.reject.stream_id = ctrl_rd_u32(&r);
		m->u.reject.code = ctrl_rd_u8(&r);
		ctrl_rd_rest(&r, &m->u.reject.text);
		break;
	case CTRL_UNREGISTER:
		if (ctrl_rd_left(&r) > CTRL_NAME_MAX)
			return MG_EPROTO;
		ctrl_rd_rest(&r, &m->u.name);
		break;
	case CTRL_GOODBYE:
	case CTRL_AUTH_ERR:
	case CTRL_ERROR:
		m->u.err.code = ctrl_rd_u8(&r);
		ctrl_rd_rest(&r, &m->u.err.text);
		break;
	case CTRL_CHALLENGE:
		q = ctrl_rd_bytes(&r, CTRL_NONCE_LEN);
		if (q != NULL)
			memcpy(m->u.challenge.server_nonce, q, CTRL_NONCE_LEN);
		/* 16 bytes, or 20 with the session's caps (an extension) */
		if (r.ok && ctrl_rd_left(&r) == 4) {
			m->u.challenge.has_caps = 1;
			m->u.challenge.caps = ctrl_rd_u32(&r);
		}
		break;
	case CTRL_AUTH_PROOF:
		q = ctrl_rd_bytes(&r, CTRL_MAC_LEN);
		if (q != NULL)
			memcpy(m->u.mac, q, CTRL_MAC_LEN);
		break;
	case CTRL_AUTH_OK:
		m->u.auth_ok.caps = ctrl_rd_u32(&r);
		m->u.auth_ok.heartbeat_s = ctrl_rd_u16(&r);
		ctrl_rd_str(&r, ctrl_rd_u8(&r), &m->u.auth_ok.agent);
		break;
	case CTRL_REGISTER_OK:
		m->u.reg_ok.proxy_type = ctrl_rd_u8(&r);
		m->u.reg_ok.remote_port = ctrl_rd_u16(&r);
		ctrl_rd_str(&r, ctrl_rd_u8(&r), &m->u.reg_ok.name);
		ctrl_rd_rest(&r, &m->u.reg_ok.url);
		break;
	case CTRL_REGISTER_ERR:
	case CTRL_TUNNEL_CLOSED:
		m->u.reg_err.code = ctrl_rd_u8(&r);
		ctrl_rd_str(&r, ctrl_rd_u8(&r), &m->u.reg_err.name);
		ctrl_rd_rest(&r, &m->u.reg_err.text);
		break;
	case CTRL_HEALTH_REPORT:
		m->u.health.state = ctrl_rd_u8(&r);
		ctrl_rd_str(&r, ctrl_rd_u8(&r), &m->u.health.name);
		ctrl_rd_rest(&r, &m->u.health.reason);
		/* a state the server would have to guess at, a tunnel
		 * without a name or an essay: refused */
		if (!r.ok || m->u.health.state > 1 ||
		    m->u.health.name.len == 0 ||
		    m->u.health.reason.len > CTRL_HEALTH_REASON_MAX)
			return MG_EPROTO;
		break;
	default:
		return MG_EPROTO;
	}
	/* Every body above either ends in "rest" or has a fixed size, so
	 * bytes left over mean a malformed message. */
	if (!r.ok || ctrl_rd_left(&r) != 0)
		return MG_EPROTO;
	return 0;
}

static void
ctrl_wr_opt(struct ctrl_wr *w, uint8_t tag, const struct ctrl_str *s)
{
	if (s->p == NULL)
		return;
	ctrl_wr_u8(w, tag);
	ctrl_wr_u16(w, (uint16_t)s->len);
	ctrl_wr_str(w, s);
}

static int
ctrl_encode_register(struct ctrl_wr *w, uint8_t type,
    const struct ctrl_register *reg)
{
	const struct ctrl_str *texts[] = { &reg->subdomain, &reg->hostname,
		&reg->basic_auth, &reg->group, &reg->description,
		&reg->group_key, &reg->group_strategy };
	unsigned i;

	if (reg->name.len > CTRL_NAME_MAX)
		return MG_EINVAL;
	ctrl_wr_u8(w, reg->proxy_type);
	ctrl_wr_u16(w, reg->remote_port);
	ctrl_wr_u16(w, reg->local_port);
	if (type == CTRL_REGISTER) {
		ctrl_wr_str(w, &reg->name);
		return 0;
	}

	if (reg->n_allow_src > CTRL_MAX_ALLOW_SRC ||
	    reg->n_deny_src > CTRL_MAX_ALLOW_SRC ||
	    reg->proxy_protocol > 2)
		return MG_EINVAL;
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		if (texts[i]->len > UINT16_MAX)
			return MG_EINVAL;
	for (i = 0; i < reg->n_allow_src; i++)
		if (reg->allow_src[i].len > UINT16_MAX)
			return MG_EINVAL;
	for (i = 0; i < reg->n_deny_src; i++)
		if (reg->deny_src[i].len > UINT16_MAX)
			return MG_EINVAL;

	ctrl_wr_u8(w, (uint8_t)reg->name.len);
	ctrl_wr_str(w, &reg->name);
	ctrl_wr_opt(w, REGOPT_SUBDOMAIN, &reg->subdomain);
	ctrl_wr_opt(w, REGOPT_HOSTNAME, &reg->hostname);
	ctrl_wr_opt(w, REGOPT_BASIC_AUTH, &reg->basic_auth);
	if (reg->bandwidth != 0) {
		ctrl_wr_u8(w, REGOPT_BANDWIDTH);
		ctrl_wr_u16(w, 4);
		ctrl_wr_u32(w, reg->bandwidth);
	}
	ctrl_wr_opt(w, REGOPT_GROUP, &reg->group);
	ctrl_wr_opt(w, REGOPT_GROUP_KEY, &reg->group_key);
	ctrl_wr_opt(w, REGOPT_GROUP_STRATEGY, &reg->group_strategy);
	if (reg->group_weight != 0) {
		ctrl_wr_u8(w, REGOPT_GROUP_WEIGHT);
		ctrl_wr_u16(w, 2);
		ctrl_wr_u16(w, reg->group_weight);
	}
	if (reg->proxy_protocol != 0) {
		ctrl_wr_u8(w, REGOPT_PROXY_PROTOCOL);
		ctrl_wr_u16(w, 1);
		ctrl_wr_u8(w, reg->proxy_protocol);
	}
	for (i = 0; i < reg->n_allow_src; i++)
		ctrl_wr_opt(w, REGOPT_ALLOW_SRC, &reg->allow_src[i]);
	for (i = 0; i < reg->n_deny_src; i++)
		ctrl_wr_opt(w, REGOPT_DENY_SRC, &reg->deny_src[i]);
	ctrl_wr_opt(w, REGOPT_DESCRIPTION, &reg->description);
	return 0;
}

int
ctrl_encode(const struct ctrl_msg *m, uint8_t *out, size_t cap)
{
	struct ctrl_wr w = { out, cap, 0 };
	int rc;

	ctrl_wr_u8(&w, m->type);
	switch (m->type) {
	case CTRL_REGISTER:
	case CTRL_REGISTER_EX:
		rc = ctrl_encode_register(&w, m->type, &m->u.reg);
		if (rc != 0)
			return rc;
		break;
	case CTRL_HEARTBEAT:
		break;
	case CTRL_STREAM_REJECT:
		ctrl_wr_u32(&w, m->u.reject.stream_id);
		ctrl_wr_u8(&w, m->u.reject.code);
		ctrl_wr_str(&w, &m->u.reject.text);
		break;
	case CTRL_UNREGISTER:
		if (m->u.name.len > CTRL_NAME_MAX)
			return MG_EINVAL;
		ctrl_wr_str(&w, &m->u.name);
		break;
	case CTRL_GOODBYE:
	case CTRL_AUTH_ERR:
	case CTRL_ERROR:
		ctrl_wr_u8(&w, m->u.err.code);
		ctrl_wr_str(&w, &m->u.err.text);
		break;
	case CTRL_CHALLENGE:
		ctrl_wr_bytes(&w, m->u.challenge.server_nonce, CTRL_NONCE_LEN);
		if (m->u.challenge.has_caps)
			ctrl_wr_u32(&w, m->u.challenge.caps);
		break;
	case CTRL_AUTH_PROOF:
		ctrl_wr_bytes(&w, m->u.mac, CTRL_MAC_LEN);
		break;
	case CTRL_AUTH_OK:
		if (m->u.auth_ok.agent.len > 255)
			return MG_EINVAL;
		ctrl_wr_u32(&w, m->u.auth_ok.caps);
		ctrl_wr_u16(&w, m->u.auth_ok.heartbeat_s);
		ctrl_wr_u8(&w, (uint8_t)m->u.auth_ok.agent.len);
		ctrl_wr_str(&w, &m->u.auth_ok.agent);
		break;
	case CTRL_REGISTER_OK:
		if (m->u.reg_ok.name.len > CTRL_NAME_MAX)
			return MG_EINVAL;
		ctrl_wr_u8(&w, m->u.reg_ok.proxy_type);
		ctrl_wr_u16(&w, m->u.reg_ok.remote_port);
		ctrl_wr_u8(&w, (uint8_t)m->u.reg_ok.name.len);
		ctrl_wr_str(&w, &m->u.reg_ok.name);
		ctrl_wr_str(&w, &m->u.reg_ok.url);
		break;
	case CTRL_REGISTER_ERR:
	case CTRL_TUNNEL_CLOSED:
		if (m->u.reg_err.name.len > CTRL_NAME_MAX)
			return MG_EINVAL;
		ctrl_wr_u8(&w, m->u.reg_err.code);
		ctrl_wr_u8(&w, (uint8_t)m->u.reg_err.name.len);
		ctrl_wr_str(&w, &m->u.reg_err.name);
		ctrl_wr_str(&w, &m->u.reg_err.text);
		break;
	case CTRL_HEALTH_REPORT:
		if (m->u.health.state > 1 || m->u.health.name.len == 0 ||
		    m->u.health.name.len > CTRL_NAME_MAX ||
		    m->u.health.reason.len > CTRL_HEALTH_REASON_MAX)
			return MG_EINVAL;
		ctrl_wr_u8(&w, m->u.health.state);
		ctrl_wr_u8(&w, (uint8_t)m->u.health.name.len);
		ctrl_wr_str(&w, &m->u.health.name);
		ctrl_wr_str(&w, &m->u.health.reason);
		break;
	default:
		return MG_EINVAL;
	}
	return ctrl_wr_done(&w);
}

void
ctrl_challenge_make(struct ctrl_msg *m,
    const uint8_t server_nonce[CTRL_NONCE_LEN], uint32_t client_caps,
    uint32_t server_caps)
{
	memset(m, 0, sizeof(*m));
	m->type = CTRL_CHALLENGE;
	memcpy(m->u.challenge.server_nonce, server_nonce, CTRL_NONCE_LEN);
	/* A client that did not ask may not parse 20 bytes (the original Go
	 * client reads exactly 16): only the asking client gets them. */
	if (client_caps & CTRL_CAP_HASHED_SECRET) {
		m->u.challenge.has_caps = 1;
		m->u.challenge.caps = client_caps & server_caps;
	}
}

int
ctrl_challenge_hashed(const struct ctrl_msg *m)
{
	return m->type == CTRL_CHALLENGE && m->u.challenge.has_caps &&
	    (m->u.challenge.caps & CTRL_CAP_HASHED_SECRET) != 0;
}

void
ctrl_auth_mac(const uint8_t *token, size_t token_len,
    const uint8_t client_nonce[CTRL_NONCE_LEN],
    const uint8_t server_nonce[CTRL_NONCE_LEN],
    const uint8_t client_id[CTRL_ID_LEN], uint8_t mac[CTRL_MAC_LEN])
{
	struct hmac_sha256_ctx ctx;

	/* nettle, not OpenSSL: see util/crypto.h for why */
	hmac_sha256_set_key(&ctx, token_len, token);
	hmac_sha256_update(&ctx, sizeof(CTRL_MAC_LABEL) - 1,
	    (const uint8_t *)CTRL_MAC_LABEL);
	hmac_sha256_update(&ctx, CTRL_NONCE_LEN, client_nonce);
	hmac_sha256_update(&ctx, CTRL_NONCE_LEN, server_nonce);
	hmac_sha256_update(&ctx, CTRL_ID_LEN, client_id);
	hmac_sha256_digest(&ctx, CTRL_MAC_LEN, mac);
}

const char *
ctrl_type_name(uint8_t type)
{
	switch (type) {
	case CTRL_REGISTER: return "Register";
	case CTRL_HEARTBEAT: return "Heartbeat";
	case CTRL_STREAM_REJECT: return "StreamReject";
	case CTRL_REGISTER_EX: return "RegisterEx";
	case CTRL_UNREGISTER: return "Unregister";
	case CTRL_GOODBYE: return "Goodbye";
	case CTRL_CHALLENGE: return "Challenge";
	case CTRL_AUTH_PROOF: return "AuthProof";
	case CTRL_AUTH_OK: return "AuthOK";
	case CTRL_AUTH_ERR: return "AuthErr";
	case CTRL_REGISTER_OK: return "RegisterOK";
	case CTRL_REGISTER_ERR: return "RegisterErr";
	case CTRL_TUNNEL_CLOSED: return "TunnelClosed";
	case CTRL_ERROR: return "Error";
	case CTRL_HEALTH_REPORT: return "HealthReport";
	}
	return "unknown";
}

const char *
proxy_type_name(uint8_t type)
{
	switch (type) {
	case PROXY_TCP: return "tcp";
	case PROXY_UDP: return "udp";
	case PROXY_HTTP: return "http";
	case PROXY_HTTPS: return "https";
	case PROXY_TLS: return "tls";
	}
	return NULL;
}
