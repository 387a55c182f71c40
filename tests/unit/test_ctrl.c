/* test_ctrl.c: control messages and handshake against docs/protocol.md section 4. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/ctrl.h"
#include "util/crypto.h"
#include "util/err.h"

#define S(lit) ((struct ctrl_str){ (const uint8_t *)(lit), sizeof(lit) - 1 })
#define GUARD 0xA5

/* ---- helpers ------------------------------------------------------ */

static void
assert_str(struct ctrl_str got, struct ctrl_str want)
{
	assert_int_equal(got.p == NULL, want.p == NULL);
	assert_int_equal(got.len, want.len);
	if (want.len > 0)
		assert_memory_equal(got.p, want.p, want.len);
}

static void
assert_reg(const struct ctrl_register *a, const struct ctrl_register *b)
{
	unsigned i;

	assert_int_equal(a->ex, b->ex);
	assert_int_equal(a->proxy_type, b->proxy_type);
	assert_int_equal(a->remote_port, b->remote_port);
	assert_int_equal(a->local_port, b->local_port);
	assert_str(a->name, b->name);
	assert_str(a->subdomain, b->subdomain);
	assert_str(a->hostname, b->hostname);
	assert_str(a->basic_auth, b->basic_auth);
	assert_int_equal(a->bandwidth, b->bandwidth);
	assert_str(a->group, b->group);
	assert_int_equal(a->proxy_protocol, b->proxy_protocol);
	assert_int_equal(a->n_allow_src, b->n_allow_src);
	for (i = 0; i < a->n_allow_src && i < CTRL_MAX_ALLOW_SRC; i++)
		assert_str(a->allow_src[i], b->allow_src[i]);
	assert_str(a->description, b->description);
	assert_int_equal(a->unknown_tag, b->unknown_tag);
}

static void
assert_msg(const struct ctrl_msg *a, const struct ctrl_msg *b)
{
	assert_int_equal(a->type, b->type);
	switch (a->type) {
	case CTRL_REGISTER:
	case CTRL_REGISTER_EX:
		assert_reg(&a->u.reg, &b->u.reg);
		break;
	case CTRL_UNREGISTER:
		assert_str(a->u.name, b->u.name);
		break;
	case CTRL_CHALLENGE:
		assert_memory_equal(a->u.challenge.server_nonce,
		    b->u.challenge.server_nonce, CTRL_NONCE_LEN);
		assert_int_equal(a->u.challenge.has_caps,
		    b->u.challenge.has_caps);
		assert_int_equal(a->u.challenge.caps, b->u.challenge.caps);
		break;
	case CTRL_AUTH_PROOF:
		assert_memory_equal(a->u.mac, b->u.mac, CTRL_MAC_LEN);
		break;
	case CTRL_AUTH_OK:
		assert_int_equal(a->u.auth_ok.caps, b->u.auth_ok.caps);
		assert_int_equal(a->u.auth_ok.heartbeat_s,
		    b->u.auth_ok.heartbeat_s);
		assert_str(a->u.auth_ok.agent, b->u.auth_ok.agent);
		break;
	case CTRL_AUTH_ERR:
	case CTRL_GOODBYE:
	case CTRL_ERROR:
		assert_int_equal(a->u.err.code, b->u.err.code);
		assert_str(a->u.err.text, b->u.err.text);
		break;
	case CTRL_REGISTER_OK:
		assert_int_equal(a->u.reg_ok.proxy_type,
		    b->u.reg_ok.proxy_type);
		assert_int_equal(a->u.reg_ok.remote_port,
		    b->u.reg_ok.remote_port);
		assert_str(a->u.reg_ok.name, b->u.reg_ok.name);
		assert_str(a->u.reg_ok.url, b->u.reg_ok.url);
		break;
	case CTRL_REGISTER_ERR:
		assert_int_equal(a->u.reg_err.code, b->u.reg_err.code);
		assert_str(a->u.reg_err.name, b->u.reg_err.name);
		assert_str(a->u.reg_err.text, b->u.reg_err.text);
		break;
	case CTRL_STREAM_REJECT:
		assert_int_equal(a->u.reject.stream_id, b->u.reject.stream_id);
		assert_int_equal(a->u.reject.code, b->u.reject.code);
		assert_str(a->u.reject.text, b->u.reject.text);
		break;
	case CTRL_HEARTBEAT:
		break;
	default:
		fail_msg("unexpected type %u", a->type);
	}
}

/* ---- one vector per message type ---------------------------------- */

struct vec {
	const char *what;
	const uint8_t *b;
	size_t len;
	/*
	 * Which strict prefixes still decode: none when exact; else every
	 * prefix of at least min bytes (the body ends in "rest"), or just
	 * the listed ones (RegisterEx: option boundaries).
	 */
	int exact;
	size_t min;
	const size_t *ok;
	size_t n_ok;
	void (*build)(struct ctrl_msg *);
};

#define REG_WIRE "\x01\x01\x27\x10\x1f\x90" "web"
static void
build_register(struct ctrl_msg *m)
{
	m->type = CTRL_REGISTER;
	m->u.reg.proxy_type = PROXY_TCP;
	m->u.reg.remote_port = 10000;
	m->u.reg.local_port = 8080;
	m->u.reg.name = S("web");
}

#define REGEX_HEAD "\x08\x03\x00\x00\x00\x50\x03" "web"
#define REGEX_OPTS                                                      \
	"\x01\x00\x04" "demo"                                           \
	"\x02\x00\x0b" "example.com"                                    \
	"\x03\x00\x07" "user:pw"                                        \
	"\x04\x00\x04\x00\x01\x00\x00"                                  \
	"\x05\x00\x02" "g1"                                             \
	"\x06\x00\x01\x02"                                              \
	"\x07\x00\x0a" "10.0.0.0/8"                                     \
	"\x07\x00\x0e" "192.168.0.0/16"                                 \
	"\x81\x00\x04" "desc"
#define REGEX_WIRE REGEX_HEAD REGEX_OPTS
/* The end of the name and of each option. */
static const size_t regex_ok[] = { 10, 17, 31, 41, 48, 53, 57, 70, 87 };

static void
build_register_ex(struct ctrl_msg *m)
{
	struct ctrl_register *r = &m->u.reg;

	m->type = CTRL_REGISTER_EX;
	r->ex = 1;
	r->proxy_type = PROXY_HTTP;
	r->remote_port = 0;
	r->local_port = 80;
	r->name = S("web");
	r->subdomain = S("demo");
	r->hostname = S("example.com");
	r->basic_auth = S("user:pw");
	r->bandwidth = 65536;
	r->group = S("g1");
	r->proxy_protocol = 2;
	r->allow_src[0] = S("10.0.0.0/8");
	r->allow_src[1] = S("192.168.0.0/16");
	r->n_allow_src = 2;
	r->description = S("desc");
}

#define REJECT_WIRE "\x07\x00\x00\x00\x05\x09" "refused"
static void
build_reject(struct ctrl_msg *m)
{
	m->type = CTRL_STREAM_REJECT;
	m->u.reject.stream_id = 5;
	m->u.reject.code = CODE_UNREACHABLE;
	m->u.reject.text = S("refused");
}

#define UNREG_WIRE "\x09" "web"
static void
build_unregister(struct ctrl_msg *m)
{
	m->type = CTRL_UNREGISTER;
	m->u.name = S("web");
}

#define HB_WIRE "\x05"
static void
build_heartbeat(struct ctrl_msg *m)
{
	m->type = CTRL_HEARTBEAT;
}

#define BYE_WIRE "\x0a\x0b" "replaced"
static void
build_goodbye(struct ctrl_msg *m)
{
	m->type = CTRL_GOODBYE;
	m->u.err.code = CODE_REPLACED;
	m->u.err.text = S("replaced");
}

#define ERROR_WIRE "\x16\x01" "bad"
static void
build_error(struct ctrl_msg *m)
{
	m->type = CTRL_ERROR;
	m->u.err.code = CODE_PROTOCOL;
	m->u.err.text = S("bad");
}

#define AUTHERR_WIRE "\x13\x02" "denied"
static void
build_auth_err(struct ctrl_msg *m)
{
	m->type = CTRL_AUTH_ERR;
	m->u.err.code = CODE_AUTH_FAILED;
	m->u.err.text = S("denied");
}

#define CHAL_WIRE                                                       \
	"\x10\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\xad\xae\xaf"
static void
build_challenge(struct ctrl_msg *m)
{
	int i;

	m->type = CTRL_CHALLENGE;
	for (i = 0; i < CTRL_NONCE_LEN; i++)
		m->u.challenge.server_nonce[i] = (uint8_t)(0xA0 + i);
}

#define PROOF_WIRE                                                      \
	"\x11\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e"  \
	"\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e"  \
	"\x1f"
static void
build_proof(struct ctrl_msg *m)
{
	int i;

	m->type = CTRL_AUTH_PROOF;
	for (i = 0; i < CTRL_MAC_LEN; i++)
		m->u.mac[i] = (uint8_t)i;
}

#define AUTHOK_WIRE "\x12\x00\x00\x00\x07\x00\x0a\x0b" "mgrok/0.1.0"
static void
build_auth_ok(struct ctrl_msg *m)
{
	m->type = CTRL_AUTH_OK;
	m->u.auth_ok.caps = CTRL_CAP_STREAM_EX | CTRL_CAP_UDP_FLOWS |
	    CTRL_CAP_LEASES;
	m->u.auth_ok.heartbeat_s = 10;
	m->u.auth_ok.agent = S("mgrok/0.1.0");
}

#define REGOK_WIRE "\x14\x01\x27\x10\x03" "web" "tcp://example.com:10000"
static void
build_reg_ok(struct ctrl_msg *m)
{
	m->type = CTRL_REGISTER_OK;
	m->u.reg_ok.proxy_type = PROXY_TCP;
	m->u.reg_ok.remote_port = 10000;
	m->u.reg_ok.name = S("web");
	m->u.reg_ok.url = S("tcp://example.com:10000");
}

#define REGERR_WIRE "\x15\x04\x03" "web" "in use"
static void
build_reg_err(struct ctrl_msg *m)
{
	m->type = CTRL_REGISTER_ERR;
	m->u.reg_err.code = CODE_IN_USE;
	m->u.reg_err.name = S("web");
	m->u.reg_err.text = S("in use");
}

#define W(lit) (const uint8_t *)(lit), sizeof(lit) - 1
static const struct vec vecs[] = {
	{ "Register", W(REG_WIRE), 0, 6, NULL, 0, build_register },
	{ "RegisterEx", W(REGEX_WIRE), 0, 0, regex_ok,
	    sizeof(regex_ok) / sizeof(regex_ok[0]), build_register_ex },
	{ "StreamReject", W(REJECT_WIRE), 0, 6, NULL, 0, build_reject },
	{ "Unregister", W(UNREG_WIRE), 0, 1, NULL, 0, build_unregister },
	{ "Heartbeat", W(HB_WIRE), 1, 0, NULL, 0, build_heartbeat },
	{ "Goodbye", W(BYE_WIRE), 0, 2, NULL, 0, build_goodbye },
	{ "Error", W(ERROR_WIRE), 0, 2, NULL, 0, build_error },
	{ "AuthErr", W(AUTHERR_WIRE), 0, 2, NULL, 0, build_auth_err },
	{ "Challenge", W(CHAL_WIRE), 1, 0, NULL, 0, build_challenge },
	{ "AuthProof", W(PROOF_WIRE), 1, 0, NULL, 0, build_proof },
	{ "AuthOK", W(AUTHOK_WIRE), 1, 0, NULL, 0, build_auth_ok },
	{ "RegisterOK", W(REGOK_WIRE), 0, 8, NULL, 0, build_reg_ok },
	{ "RegisterErr", W(REGERR_WIRE), 0, 6, NULL, 0, build_reg_err },
};
#define NVECS (sizeof(vecs) / sizeof(vecs[0]))

static void
test_vec_sizes(void **state)
{
	/* Guards the hand-written wire strings themselves. */
	assert_int_equal(vecs[0].len, 9);
	assert_int_equal(vecs[1].len, 94);
	assert_int_equal(vecs[8].len, 1 + CTRL_NONCE_LEN);
	assert_int_equal(vecs[9].len, 1 + CTRL_MAC_LEN);
	assert_int_equal(vecs[10].len, 19);
}

static void
test_decode_vectors(void **state)
{
	struct ctrl_msg got, want;
	size_t i;

	for (i = 0; i < NVECS; i++) {
		memset(&want, 0, sizeof(want));
		vecs[i].build(&want);
		memset(&got, 0xEE, sizeof(got));
		assert_int_equal(ctrl_decode(vecs[i].b, vecs[i].len, &got), 0);
		assert_msg(&got, &want);
	}
}

static void
test_encode_vectors(void **state)
{
	uint8_t out[512];
	struct ctrl_msg m;
	size_t i;

	for (i = 0; i < NVECS; i++) {
		memset(&m, 0, sizeof(m));
		vecs[i].build(&m);
		memset(out, GUARD, sizeof(out));
		assert_int_equal(ctrl_encode(&m, out, sizeof(out)),
		    (int)vecs[i].len);
		assert_memory_equal(out, vecs[i].b, vecs[i].len);
		assert_int_equal(out[vecs[i].len], GUARD);
	}
}

static void
test_round_trip(void **state)
{
	struct ctrl_msg a, b;
	uint8_t out[512];
	size_t i;
	int n;

	for (i = 0; i < NVECS; i++) {
		memset(&a, 0, sizeof(a));
		vecs[i].build(&a);
		n = ctrl_encode(&a, out, sizeof(out));
		assert_true(n > 0);
		assert_int_equal(ctrl_decode(out, (size_t)n, &b), 0);
		assert_msg(&b, &a);
	}
}

static int
prefix_ok(const struct vec *v, size_t n)
{
	size_t i;

	if (v->exact)
		return 0;
	if (v->ok == NULL)
		return n >= v->min;
	for (i = 0; i < v->n_ok; i++)
		if (v->ok[i] == n)
			return 1;
	return 0;
}

/* Every prefix, in a buffer of exactly that size so ASan sees overreads. */
static void
test_truncated(void **state)
{
	struct ctrl_msg m;
	uint8_t *buf;
	size_t i, n;
	int want;

	for (i = 0; i < NVECS; i++) {
		for (n = 0; n < vecs[i].len; n++) {
			buf = malloc(n > 0 ? n : 1);
			assert_non_null(buf);
			memcpy(buf, vecs[i].b, n);
			want = prefix_ok(&vecs[i], n) ? 0 : MG_EPROTO;
			if (ctrl_decode(buf, n, &m) != want)
				fail_msg("%s: prefix of %zu bytes: want %d",
				    vecs[i].what, n, want);
			free(buf);
		}
	}
}

static void
test_trailing(void **state)
{
	uint8_t buf[64];
	struct ctrl_msg m;
	size_t i;

	/* Only the fixed-size bodies; the others end in free text. */
	for (i = 0; i < NVECS; i++) {
		if (!vecs[i].exact)
			continue;
		assert_true(vecs[i].len + 1 <= sizeof(buf));
		memcpy(buf, vecs[i].b, vecs[i].len);
		buf[vecs[i].len] = 0;
		assert_int_equal(ctrl_decode(buf, vecs[i].len + 1, &m),
		    MG_EPROTO);
	}
}

static void
test_encode_nospace(void **state)
{
	uint8_t out[512];
	struct ctrl_msg m;
	size_t i, cap;

	for (i = 0; i < NVECS; i++) {
		memset(&m, 0, sizeof(m));
		vecs[i].build(&m);
		for (cap = 0; cap < vecs[i].len; cap++) {
			memset(out, GUARD, sizeof(out));
			assert_int_equal(ctrl_encode(&m, out, cap),
			    MG_ENOSPC);
			/* Nothing past cap is touched. */
			assert_int_equal(out[cap], GUARD);
		}
	}
}

static void
test_unknown_type(void **state)
{
	static const uint8_t known[] = { 0x01, 0x05, 0x07, 0x08, 0x09, 0x0A,
		0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18 };
	uint8_t buf[40] = { 0 };
	struct ctrl_msg m;
	uint8_t out[64];
	unsigned t;

	assert_int_equal(ctrl_decode(buf, 0, &m), MG_EPROTO);
	for (t = 0; t <= 0xFF; t++) {
		if (memchr(known, (int)t, sizeof(known)) != NULL)
			continue;
		buf[0] = (uint8_t)t;
		assert_int_equal(ctrl_decode(buf, sizeof(buf), &m), MG_EPROTO);
		assert_int_equal(ctrl_decode(buf, 1, &m), MG_EPROTO);
		memset(&m, 0, sizeof(m));
		m.type = (uint8_t)t;
		assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);
	}
	/* The "GRT1" handshake is not a control message. */
	assert_int_equal(ctrl_decode((const uint8_t *)"GRT1\x01x", 6, &m),
	    MG_EPROTO);
}

/* ---- HealthReport (extension, docs/internals/protocol-ext.md) ----- */

static void
test_health_report(void **state)
{
	/* down, "web", "HTTP 503" */
	static const uint8_t down[] = { 0x18, 0x00, 0x03, 'w', 'e', 'b', 'H',
		'T', 'T', 'P', ' ', '5', '0', '3' };
	static const uint8_t up[] = { 0x18, 0x01, 0x01, 'a' };
	uint8_t out[512], big[300];
	struct ctrl_msg m, d;
	int n;

	assert_int_equal(ctrl_decode(down, sizeof(down), &m), 0);
	assert_int_equal(m.type, CTRL_HEALTH_REPORT);
	assert_int_equal(m.u.health.state, 0);
	assert_str(m.u.health.name, S("web"));
	assert_str(m.u.health.reason, S("HTTP 503"));
	n = ctrl_encode(&m, out, sizeof(out));
	assert_int_equal(n, sizeof(down));
	assert_memory_equal(out, down, sizeof(down));

	/* up, empty reason */
	assert_int_equal(ctrl_decode(up, sizeof(up), &m), 0);
	assert_int_equal(m.u.health.state, 1);
	assert_str(m.u.health.name, S("a"));
	assert_int_equal(m.u.health.reason.len, 0);
	memset(&d, 0, sizeof(d));
	d.type = CTRL_HEALTH_REPORT;
	d.u.health.state = 1;
	d.u.health.name = S("a");
	assert_int_equal(ctrl_encode(&d, out, sizeof(out)), sizeof(up));
	assert_memory_equal(out, up, sizeof(up));

	/* a state other than 0 and 1 */
	memcpy(out, up, sizeof(up));
	out[1] = 2;
	assert_int_equal(ctrl_decode(out, sizeof(up), &m), MG_EPROTO);
	d.u.health.state = 2;
	assert_int_equal(ctrl_encode(&d, out, sizeof(out)), MG_EINVAL);
	d.u.health.state = 0;
	/* name_len 0, name past the end, truncated */
	assert_int_equal(ctrl_decode((const uint8_t *)"\x18\x00\x00", 3, &m),
	    MG_EPROTO);
	assert_int_equal(ctrl_decode((const uint8_t *)"\x18\x00\x05web", 6,
	    &m), MG_EPROTO);
	assert_int_equal(ctrl_decode((const uint8_t *)"\x18\x00", 2, &m),
	    MG_EPROTO);
	assert_int_equal(ctrl_decode((const uint8_t *)"\x18", 1, &m),
	    MG_EPROTO);
	d.u.health.name = S("");
	assert_int_equal(ctrl_encode(&d, out, sizeof(out)), MG_EINVAL);
	d.u.health.name = S("a");

	/* a reason of 200 bytes is fine, 201 is not */
	big[0] = 0x18;
	big[1] = 0x00;
	big[2] = 0x01;
	big[3] = 'a';
	memset(big + 4, 'r', sizeof(big) - 4);
	assert_int_equal(ctrl_decode(big, 4 + CTRL_HEALTH_REASON_MAX, &m), 0);
	assert_int_equal(m.u.health.reason.len, CTRL_HEALTH_REASON_MAX);
	assert_int_equal(ctrl_decode(big, 4 + CTRL_HEALTH_REASON_MAX + 1, &m),
	    MG_EPROTO);
	d.u.health.reason.p = big + 4;
	d.u.health.reason.len = CTRL_HEALTH_REASON_MAX;
	assert_int_equal(ctrl_encode(&d, out, sizeof(out)),
	    4 + CTRL_HEALTH_REASON_MAX);
	d.u.health.reason.len = CTRL_HEALTH_REASON_MAX + 1;
	assert_int_equal(ctrl_encode(&d, out, sizeof(out)), MG_EINVAL);
	/* too small a buffer */
	d.u.health.reason.len = 10;
	assert_int_equal(ctrl_encode(&d, out, 5), MG_ENOSPC);
	/* the capability's bit */
	assert_int_equal(CTRL_CAP_HEALTH, 1u << 5);
}

/* ---- names -------------------------------------------------------- */

static void
test_register_long_name(void **state)
{
	uint8_t buf[6 + 300];
	struct ctrl_msg m;
	size_t i;

	memcpy(buf, REG_WIRE, 6);
	for (i = 0; i < 300; i++)
		buf[6 + i] = (uint8_t)('a' + i % 26);

	assert_int_equal(ctrl_decode(buf, 6 + 255, &m), 0);
	assert_int_equal(m.u.reg.name.len, 255);

	assert_int_equal(ctrl_decode(buf, 6 + 256, &m), MG_ETOOLONG);
	assert_int_equal(m.type, CTRL_REGISTER);
	assert_int_equal(m.u.reg.proxy_type, PROXY_TCP);
	assert_int_equal(m.u.reg.remote_port, 10000);
	assert_int_equal(m.u.reg.local_port, 8080);
	assert_ptr_equal(m.u.reg.name.p, buf + 6);
	assert_int_equal(m.u.reg.name.len, 255);

	assert_int_equal(ctrl_decode(buf, sizeof(buf), &m), MG_ETOOLONG);
	assert_int_equal(m.u.reg.name.len, 255);
	assert_memory_equal(m.u.reg.name.p, buf + 6, 255);

	/* An empty name is well-formed: the server names the proxy. */
	assert_int_equal(ctrl_decode(buf, 6, &m), 0);
	assert_int_equal(m.u.reg.name.len, 0);
}

static void
test_encode_long_names(void **state)
{
	static uint8_t name[256];
	uint8_t out[1024];
	struct ctrl_msg m;
	struct ctrl_str n255 = { name, 255 }, n256 = { name, 256 };

	memset(name, 'n', sizeof(name));

	memset(&m, 0, sizeof(m));
	build_register(&m);
	m.u.reg.name = n255;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), 6 + 255);
	m.u.reg.name = n256;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);

	memset(&m, 0, sizeof(m));
	build_register_ex(&m);
	m.u.reg.name = n255;
	assert_true(ctrl_encode(&m, out, sizeof(out)) > 0);
	assert_int_equal(out[6], 255);
	m.u.reg.name = n256;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);

	memset(&m, 0, sizeof(m));
	build_reg_ok(&m);
	m.u.reg_ok.name = n256;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);

	memset(&m, 0, sizeof(m));
	build_reg_err(&m);
	m.u.reg_err.name = n256;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);

	memset(&m, 0, sizeof(m));
	build_unregister(&m);
	m.u.name = n256;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);
	m.u.name = n255;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), 256);

	memset(&m, 0, sizeof(m));
	build_auth_ok(&m);
	m.u.auth_ok.agent = n256;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);
}

static void
test_unregister_long_name(void **state)
{
	uint8_t buf[1 + 256];
	struct ctrl_msg m;

	memset(buf, 'x', sizeof(buf));
	buf[0] = CTRL_UNREGISTER;
	assert_int_equal(ctrl_decode(buf, 1 + 255, &m), 0);
	assert_int_equal(m.u.name.len, 255);
	assert_int_equal(ctrl_decode(buf, 1 + 256, &m), MG_EPROTO);
}

static void
test_name_len_past_end(void **state)
{
	/* name_len 4 with 3 bytes of name and nothing after. */
	static const uint8_t regex[] = "\x08\x01\x00\x00\x00\x50\x04" "web";
	static const uint8_t regok[] = "\x14\x01\x27\x10\x04" "web";
	static const uint8_t regerr[] = "\x15\x04\x04" "web";
	static const uint8_t authok[] = "\x12\x00\x00\x00\x00\x00\x0a\x04"
					"abc";
	struct ctrl_msg m;

	assert_int_equal(ctrl_decode(regex, sizeof(regex) - 1, &m),
	    MG_EPROTO);
	assert_int_equal(ctrl_decode(regok, sizeof(regok) - 1, &m),
	    MG_EPROTO);
	assert_int_equal(ctrl_decode(regerr, sizeof(regerr) - 1, &m),
	    MG_EPROTO);
	assert_int_equal(ctrl_decode(authok, sizeof(authok) - 1, &m),
	    MG_EPROTO);
	/* AuthOK agent_len shorter than the rest: trailing bytes. */
	assert_int_equal(ctrl_decode((const uint8_t *)AUTHOK_WIRE "x",
	    sizeof(AUTHOK_WIRE), &m), MG_EPROTO);
}

/* ---- RegisterEx options ------------------------------------------- */

/* decode_ex: decode REGEX_HEAD followed by opts. */
static int
decode_ex(const void *opts, size_t olen, struct ctrl_msg *m)
{
	static uint8_t buf[70000];
	size_t hlen = sizeof(REGEX_HEAD) - 1;

	assert_true(hlen + olen <= sizeof(buf));
	memcpy(buf, REGEX_HEAD, hlen);
	memcpy(buf + hlen, opts, olen);
	return ctrl_decode(buf, hlen + olen, m);
}
#define DECODE_EX(lit, m) decode_ex(lit, sizeof(lit) - 1, m)

/* the group extension options: key, strategy, weight round trip; a
 * weight of 0 or of another size is malformed */
static void
test_opt_group_ext(void **state)
{
	struct ctrl_msg m, d;
	uint8_t buf[512];
	int n;

	memset(&m, 0, sizeof(m));
	m.type = CTRL_REGISTER_EX;
	m.u.reg.ex = 1;
	m.u.reg.proxy_type = PROXY_TCP;
	m.u.reg.name = S("web");
	m.u.reg.group = S("pool");
	m.u.reg.group_key = S("k3y");
	m.u.reg.group_strategy = S("hash:header:X-User");
	m.u.reg.group_weight = 300;
	n = ctrl_encode(&m, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(ctrl_decode(buf, (size_t)n, &d), 0);
	assert_str(d.u.reg.group, S("pool"));
	assert_str(d.u.reg.group_key, S("k3y"));
	assert_str(d.u.reg.group_strategy, S("hash:header:X-User"));
	assert_int_equal(d.u.reg.group_weight, 300);
	assert_int_equal(DECODE_EX("\x0b\x00\x02\x00\x00", &d), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x0b\x00\x01\x05", &d), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x09\x00\x01" "a" "\x09\x00\x01" "b", &d),
	    MG_EPROTO);
}

static void
test_opt_unknown_low(void **state)
{
	static const uint8_t low[] = { 0x00, 0x0C, 0x42, 0x7F };
	uint8_t opt[16];
	struct ctrl_msg m;
	size_t i;

	for (i = 0; i < sizeof(low); i++) {
		/* subdomain, the unknown tag with 2 bytes, group */
		memcpy(opt, "\x01\x00\x01" "s" "\xee\x00\x02" "zz"
			    "\x05\x00\x01" "g", 13);
		opt[4] = low[i];
		memset(&m, 0, sizeof(m));
		assert_int_equal(decode_ex(opt, 13, &m), MG_EUNSUPP);
		assert_int_equal(m.u.reg.unknown_tag, low[i]);
		/* The rest of the message is still there for RegisterErr. */
		assert_int_equal(m.type, CTRL_REGISTER_EX);
		assert_str(m.u.reg.name, S("web"));
		assert_str(m.u.reg.subdomain, S("s"));
		assert_str(m.u.reg.group, S("g"));
	}
	/* The first unknown tag is the one reported. */
	assert_int_equal(DECODE_EX("\x20\x00\x00" "\x21\x00\x00", &m),
	    MG_EUNSUPP);
	assert_int_equal(m.u.reg.unknown_tag, 0x20);
	/* A malformed option after an unknown one is still malformed. */
	assert_int_equal(DECODE_EX("\x20\x00\x00" "\x01\x00\x09" "abc", &m),
	    MG_EPROTO);
}

static void
test_opt_unknown_high(void **state)
{
	static const uint8_t high[] = { 0x80, 0x82, 0xC0, 0xFF };
	uint8_t opt[16];
	struct ctrl_msg m;
	size_t i;

	for (i = 0; i < sizeof(high); i++) {
		memcpy(opt, "\xee\x00\x03" "zzz" "\x01\x00\x01" "s", 10);
		opt[0] = high[i];
		assert_int_equal(decode_ex(opt, 10, &m), 0);
		assert_int_equal(m.u.reg.unknown_tag, 0);
		assert_str(m.u.reg.subdomain, S("s"));
		assert_null(m.u.reg.description.p);
	}
	/* 0x81 is known: the description. */
	assert_int_equal(DECODE_EX("\x81\x00\x02" "hi", &m), 0);
	assert_str(m.u.reg.description, S("hi"));
}

static void
test_opt_bad_lengths(void **state)
{
	struct ctrl_msg m;

	/* Option header cut short. */
	assert_int_equal(DECODE_EX("\x01", &m), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x01\x00", &m), MG_EPROTO);
	/* Value runs past the end (also for tags that are skipped). */
	assert_int_equal(DECODE_EX("\x01\x00\x05" "abcd", &m), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x90\x00\x05" "abcd", &m), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x30\x00\x05" "abcd", &m), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x01\xff\xff" "abcd", &m), MG_EPROTO);
	/* Bandwidth is exactly a u32. */
	assert_int_equal(DECODE_EX("\x04\x00\x03\x00\x00\x01", &m), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x04\x00\x05\x00\x00\x00\x00\x01", &m),
	    MG_EPROTO);
	assert_int_equal(DECODE_EX("\x04\x00\x00", &m), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x04\x00\x04\x12\x34\x56\x78", &m), 0);
	assert_int_equal(m.u.reg.bandwidth, 0x12345678);
	/* PROXY protocol is one byte, 1 or 2. */
	assert_int_equal(DECODE_EX("\x06\x00\x00", &m), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x06\x00\x02\x00\x01", &m), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x06\x00\x01\x00", &m), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x06\x00\x01\x03", &m), MG_EPROTO);
	assert_int_equal(DECODE_EX("\x06\x00\x01\x01", &m), 0);
	assert_int_equal(m.u.reg.proxy_protocol, 1);
}

static void
test_opt_repeated(void **state)
{
	struct ctrl_msg m;

	assert_int_equal(DECODE_EX("\x01\x00\x01" "a" "\x01\x00\x01" "b", &m),
	    MG_EPROTO);
	assert_int_equal(DECODE_EX("\x04\x00\x04\x00\x00\x00\x01"
				   "\x04\x00\x04\x00\x00\x00\x02", &m),
	    MG_EPROTO);
	assert_int_equal(DECODE_EX("\x81\x00\x00" "\x81\x00\x00", &m),
	    MG_EPROTO);
	/* Skipped tags may repeat. */
	assert_int_equal(DECODE_EX("\x90\x00\x00" "\x90\x00\x00", &m), 0);
}

static void
test_opt_empty_text(void **state)
{
	uint8_t out[64];
	struct ctrl_msg m;
	int n;

	/* An empty option is present (p set) and survives re-encoding. */
	assert_int_equal(DECODE_EX("\x02\x00\x00", &m), 0);
	assert_non_null(m.u.reg.hostname.p);
	assert_int_equal(m.u.reg.hostname.len, 0);
	assert_null(m.u.reg.subdomain.p);
	n = ctrl_encode(&m, out, sizeof(out));
	assert_int_equal(n, sizeof(REGEX_HEAD) - 1 + 3);
	assert_memory_equal(out + n - 3, "\x02\x00\x00", 3);
}

static void
test_opt_allow_src_limit(void **state)
{
	uint8_t opts[3 * (CTRL_MAX_ALLOW_SRC + 1) + 1];
	struct ctrl_msg m;
	uint8_t out[256];
	size_t i;
	int n;

	for (i = 0; i <= CTRL_MAX_ALLOW_SRC; i++)
		memcpy(opts + 3 * i, "\x07\x00\x00", 3);
	assert_int_equal(decode_ex(opts, 3 * CTRL_MAX_ALLOW_SRC, &m), 0);
	assert_int_equal(m.u.reg.n_allow_src, CTRL_MAX_ALLOW_SRC);
	n = ctrl_encode(&m, out, sizeof(out));
	assert_int_equal(n, sizeof(REGEX_HEAD) - 1 + 3 * CTRL_MAX_ALLOW_SRC);
	assert_int_equal(decode_ex(opts, 3 * (CTRL_MAX_ALLOW_SRC + 1), &m),
	    MG_EPROTO);

	memset(&m, 0, sizeof(m));
	build_register_ex(&m);
	m.u.reg.n_allow_src = CTRL_MAX_ALLOW_SRC + 1;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);
}

static void
test_opt_encode_invalid(void **state)
{
	static uint8_t big[65536];
	static uint8_t out[70000];
	struct ctrl_msg m;

	memset(&m, 0, sizeof(m));
	build_register_ex(&m);
	m.u.reg.proxy_protocol = 3;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);

	memset(&m, 0, sizeof(m));
	build_register_ex(&m);
	m.u.reg.description.p = big;
	m.u.reg.description.len = sizeof(big);
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);

	/* Optional fields left out are not written at all. */
	memset(&m, 0, sizeof(m));
	m.type = CTRL_REGISTER_EX;
	m.u.reg.name = S("x");
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), 8);
	assert_memory_equal(out, "\x08\x00\x00\x00\x00\x00\x01" "x", 8);
}

static void
test_encode_msg_max(void **state)
{
	static uint8_t text[CTRL_MSG_MAX];
	static uint8_t out[CTRL_MSG_MAX + 16];
	struct ctrl_msg m, d;

	memset(text, 't', sizeof(text));
	memset(&m, 0, sizeof(m));
	m.type = CTRL_ERROR;
	m.u.err.code = CODE_INTERNAL;
	m.u.err.text.p = text;
	m.u.err.text.len = CTRL_MSG_MAX - 2;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), CTRL_MSG_MAX);
	assert_int_equal(ctrl_decode(out, CTRL_MSG_MAX, &d), 0);
	assert_int_equal(d.u.err.text.len, CTRL_MSG_MAX - 2);
	/* One byte more no longer fits in a frame, whatever the buffer. */
	m.u.err.text.len = CTRL_MSG_MAX - 1;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);
	m.u.err.text.len = (size_t)-1;
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), MG_EINVAL);
}

/* ---- handshake ---------------------------------------------------- */

#define HELLO_TOKEN "GRT1\x01" "s3cret"
#define HELLO_MTLS                                                      \
	"GRT1\x02\x20\x21\x22\x23\x24\x25\x26\x27\x28\x29\x2a\x2b\x2c\x2d"  \
	"\x2e\x2f"
#define HELLO_HMAC                                                      \
	"GRT1\x03\x01"                                                  \
	"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"  \
	"\x20\x21\x22\x23\x24\x25\x26\x27\x28\x29\x2a\x2b\x2c\x2d\x2e\x2f"  \
	"\x00\x00\x00\x05\x0b" "mgrok/0.1.0"

static void
seq(uint8_t *p, size_t n, uint8_t first)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(first + i);
}

static void
test_hello_token(void **state)
{
	struct ctrl_hello h, e;
	uint8_t out[64];

	assert_int_equal(ctrl_hello_decode(W(HELLO_TOKEN), &h), 0);
	assert_int_equal(h.method, CTRL_METHOD_TOKEN);
	assert_str(h.token, S("s3cret"));
	assert_int_equal(h.caps, 0);

	memset(&e, 0, sizeof(e));
	e.method = CTRL_METHOD_TOKEN;
	e.token = S("s3cret");
	assert_int_equal(ctrl_hello_encode(&e, out, sizeof(out)),
	    sizeof(HELLO_TOKEN) - 1);
	assert_memory_equal(out, HELLO_TOKEN, sizeof(HELLO_TOKEN) - 1);
}

static void
test_hello_token_bounds(void **state)
{
	static uint8_t buf[5 + CTRL_TOKEN_MAX + 1];
	uint8_t out[sizeof(buf)];
	struct ctrl_hello h, e;

	memcpy(buf, "GRT1\x01", 5);
	memset(buf + 5, 'k', sizeof(buf) - 5);
	assert_int_equal(ctrl_hello_decode(buf, 5, &h), MG_EPROTO);
	assert_int_equal(ctrl_hello_decode(buf, 6, &h), 0);
	assert_int_equal(h.token.len, 1);
	assert_int_equal(ctrl_hello_decode(buf, 5 + CTRL_TOKEN_MAX, &h), 0);
	assert_int_equal(h.token.len, CTRL_TOKEN_MAX);
	assert_int_equal(ctrl_hello_decode(buf, sizeof(buf), &h), MG_EPROTO);

	memset(&e, 0, sizeof(e));
	e.method = CTRL_METHOD_TOKEN;
	e.token.p = buf + 5;
	e.token.len = 0;
	assert_int_equal(ctrl_hello_encode(&e, out, sizeof(out)), MG_EINVAL);
	e.token.len = CTRL_TOKEN_MAX + 1;
	assert_int_equal(ctrl_hello_encode(&e, out, sizeof(out)), MG_EINVAL);
	e.token.len = CTRL_TOKEN_MAX;
	assert_int_equal(ctrl_hello_encode(&e, out, sizeof(out)),
	    5 + CTRL_TOKEN_MAX);
}

static void
test_hello_mtls(void **state)
{
	struct ctrl_hello h, e;
	uint8_t id[CTRL_ID_LEN], out[64];

	seq(id, sizeof(id), 0x20);
	assert_int_equal(ctrl_hello_decode(W(HELLO_MTLS), &h), 0);
	assert_int_equal(h.method, CTRL_METHOD_MTLS);
	assert_memory_equal(h.client_id, id, CTRL_ID_LEN);
	assert_null(h.token.p);

	memset(&e, 0, sizeof(e));
	e.method = CTRL_METHOD_MTLS;
	memcpy(e.client_id, id, CTRL_ID_LEN);
	assert_int_equal(ctrl_hello_encode(&e, out, sizeof(out)),
	    sizeof(HELLO_MTLS) - 1);
	assert_memory_equal(out, HELLO_MTLS, sizeof(HELLO_MTLS) - 1);
}

static void
test_hello_hmac(void **state)
{
	uint8_t nonce[CTRL_NONCE_LEN], id[CTRL_ID_LEN], out[128];
	struct ctrl_hello h, e;

	seq(nonce, sizeof(nonce), 0x00);
	seq(id, sizeof(id), 0x20);
	assert_int_equal(ctrl_hello_decode(W(HELLO_HMAC), &h), 0);
	assert_int_equal(h.method, CTRL_METHOD_HMAC);
	assert_int_equal(h.hmac_ver, 1);
	assert_memory_equal(h.client_nonce, nonce, CTRL_NONCE_LEN);
	assert_memory_equal(h.client_id, id, CTRL_ID_LEN);
	assert_int_equal(h.caps, CTRL_CAP_STREAM_EX | CTRL_CAP_LEASES);
	assert_str(h.agent, S("mgrok/0.1.0"));

	memset(&e, 0, sizeof(e));
	e.method = CTRL_METHOD_HMAC;
	e.hmac_ver = 1;
	memcpy(e.client_nonce, nonce, CTRL_NONCE_LEN);
	memcpy(e.client_id, id, CTRL_ID_LEN);
	e.caps = CTRL_CAP_STREAM_EX | CTRL_CAP_LEASES;
	e.agent = S("mgrok/0.1.0");
	assert_int_equal(ctrl_hello_encode(&e, out, sizeof(out)),
	    sizeof(HELLO_HMAC) - 1);
	assert_memory_equal(out, HELLO_HMAC, sizeof(HELLO_HMAC) - 1);

	/* An empty agent is fine. */
	e.agent.len = 0;
	assert_int_equal(ctrl_hello_encode(&e, out, sizeof(out)), 43);
	assert_int_equal(ctrl_hello_decode(out, 43, &h), 0);
	assert_int_equal(h.agent.len, 0);
}

static void
test_hello_truncated(void **state)
{
	static const struct {
		const uint8_t *b;
		size_t len;
		size_t min; /* shortest prefix that decodes */
	} hs[] = {
		{ W(HELLO_TOKEN), 6 },
		{ W(HELLO_MTLS), sizeof(HELLO_MTLS) - 1 },
		{ W(HELLO_HMAC), sizeof(HELLO_HMAC) - 1 },
	};
	struct ctrl_hello h;
	uint8_t *buf;
	size_t i, n;

	for (i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		for (n = 0; n < hs[i].len; n++) {
			buf = malloc(n > 0 ? n : 1);
			assert_non_null(buf);
			memcpy(buf, hs[i].b, n);
			if (ctrl_hello_decode(buf, n, &h) !=
			    (n >= hs[i].min ? 0 : MG_EPROTO))
				fail_msg("hello %zu: prefix %zu", i, n);
			free(buf);
		}
}

static void
test_hello_trailing(void **state)
{
	uint8_t buf[128];
	struct ctrl_hello h;

	memcpy(buf, HELLO_MTLS "x", sizeof(HELLO_MTLS));
	assert_int_equal(ctrl_hello_decode(buf, sizeof(HELLO_MTLS), &h),
	    MG_EPROTO);
	memcpy(buf, HELLO_HMAC "x", sizeof(HELLO_HMAC));
	assert_int_equal(ctrl_hello_decode(buf, sizeof(HELLO_HMAC), &h),
	    MG_EPROTO);
}

static void
test_hello_bad_magic(void **state)
{
	struct ctrl_hello h;

	assert_int_equal(ctrl_hello_decode(W("GRT2\x01" "tok"), &h),
	    MG_EPROTO);
	assert_int_equal(ctrl_hello_decode(W("grt1\x01" "tok"), &h),
	    MG_EPROTO);
	assert_int_equal(ctrl_hello_decode(W("\x01\x01\x27\x10\x1f\x90" "a"),
	    &h), MG_EPROTO);
	assert_int_equal(ctrl_hello_decode(W("GRT"), &h), MG_EPROTO);
}

static void
test_hello_unsupported(void **state)
{
	static const uint8_t methods[] = { 0x00, 0x04, 0x7F, 0xFF };
	uint8_t buf[sizeof(HELLO_HMAC)];
	struct ctrl_hello h;
	uint8_t out[128];
	size_t i;

	for (i = 0; i < sizeof(methods); i++) {
		memcpy(buf, HELLO_TOKEN, sizeof(HELLO_TOKEN) - 1);
		buf[4] = methods[i];
		assert_int_equal(ctrl_hello_decode(buf,
		    sizeof(HELLO_TOKEN) - 1, &h), MG_EUNSUPP);
		assert_int_equal(h.method, methods[i]);
		/* Also with no payload at all. */
		assert_int_equal(ctrl_hello_decode(buf, 5, &h), MG_EUNSUPP);

		memset(&h, 0, sizeof(h));
		h.method = methods[i];
		h.token = S("tok");
		assert_int_equal(ctrl_hello_encode(&h, out, sizeof(out)),
		    MG_EINVAL);
	}
	/* HMAC of another version: unsupported whatever follows. */
	memcpy(buf, HELLO_HMAC, sizeof(HELLO_HMAC) - 1);
	buf[5] = 2;
	assert_int_equal(ctrl_hello_decode(buf, sizeof(HELLO_HMAC) - 1, &h),
	    MG_EUNSUPP);
	assert_int_equal(h.method, CTRL_METHOD_HMAC);
	assert_int_equal(h.hmac_ver, 2);
	assert_int_equal(ctrl_hello_decode(buf, 6, &h), MG_EUNSUPP);
	buf[5] = 0;
	assert_int_equal(ctrl_hello_decode(buf, 6, &h), MG_EUNSUPP);
}

static void
test_hello_encode_errors(void **state)
{
	static uint8_t agent[256];
	struct ctrl_hello e;
	uint8_t out[512];
	size_t cap;

	memset(&e, 0, sizeof(e));
	e.method = CTRL_METHOD_HMAC;
	e.hmac_ver = 1;
	e.agent.p = agent;
	e.agent.len = 256;
	assert_int_equal(ctrl_hello_encode(&e, out, sizeof(out)), MG_EINVAL);
	e.agent.len = 255;
	assert_int_equal(ctrl_hello_encode(&e, out, sizeof(out)), 43 + 255);
	for (cap = 0; cap < 43 + 255; cap++) {
		memset(out, GUARD, sizeof(out));
		assert_int_equal(ctrl_hello_encode(&e, out, cap), MG_ENOSPC);
		assert_int_equal(out[cap], GUARD);
	}
}

/* ---- HMAC --------------------------------------------------------- */

/*
 * Computed once with the command line:
 *   printf 'mgrok-auth-v1\x00\x01...\x2f' | openssl dgst -sha256 -hmac secret
 * (client_nonce 00..0f, server_nonce 10..1f, client_id 20..2f).
 */
static const uint8_t mac_secret[CTRL_MAC_LEN] = { 0x3f, 0xbc, 0xe4, 0x62,
	0x32, 0xd0, 0x82, 0x45, 0x4a, 0x34, 0x61, 0x06, 0x06, 0x9b, 0x92,
	0xce, 0xbf, 0x77, 0xa2, 0x98, 0xaa, 0xfb, 0x22, 0x5e, 0x70, 0x1c,
	0x40, 0x2a, 0x7a, 0x58, 0x24, 0x35 };
/* The same data with an empty key (openssl dgst -mac HMAC -macopt
 * hexkey:00, which HMAC's zero padding makes the same key). */
static const uint8_t mac_empty[CTRL_MAC_LEN] = { 0x56, 0x8a, 0xa7, 0xe3,
	0x7e, 0xb9, 0x88, 0x28, 0xdc, 0xb5, 0x70, 0xc8, 0x41, 0x7b, 0xca,
	0x9a, 0x82, 0xad, 0xe4, 0xc1, 0x2e, 0x99, 0x9a, 0x9c, 0x63, 0x0e,
	0x02, 0x05, 0xd5, 0xcd, 0xb5, 0x73 };

static void
test_auth_mac(void **state)
{
	uint8_t cn[CTRL_NONCE_LEN], sn[CTRL_NONCE_LEN], id[CTRL_ID_LEN];
	uint8_t mac[CTRL_MAC_LEN], other[CTRL_MAC_LEN];

	seq(cn, sizeof(cn), 0x00);
	seq(sn, sizeof(sn), 0x10);
	seq(id, sizeof(id), 0x20);
	ctrl_auth_mac((const uint8_t *)"secret", 6, cn, sn, id, mac);
	assert_memory_equal(mac, mac_secret, CTRL_MAC_LEN);
	ctrl_auth_mac((const uint8_t *)"", 0, cn, sn, id, mac);
	assert_memory_equal(mac, mac_empty, CTRL_MAC_LEN);

	/* Each input is bound: swapping the nonces changes the MAC. */
	ctrl_auth_mac((const uint8_t *)"secret", 6, sn, cn, id, other);
	assert_memory_not_equal(other, mac_secret, CTRL_MAC_LEN);
	id[15] ^= 1;
	ctrl_auth_mac((const uint8_t *)"secret", 6, cn, sn, id, other);
	assert_memory_not_equal(other, mac_secret, CTRL_MAC_LEN);
	id[15] ^= 1;
	ctrl_auth_mac((const uint8_t *)"secreT", 6, cn, sn, id, other);
	assert_memory_not_equal(other, mac_secret, CTRL_MAC_LEN);
}

/* ---- the extended Challenge (HASHED_SECRET, protocol-ext.md) --------- */

/* HMAC-SHA256(key = SHA-256("secret"), "mgrok-auth-v1" | 00..0f | 10..1f |
 * 20..2f), from Python's hmac and hashlib */
static const uint8_t mac_hashed_secret[CTRL_MAC_LEN] = {
	0xa6, 0x72, 0x83, 0xe2, 0x83, 0xd4, 0xcf, 0xfa, 0x53, 0xdf, 0xec,
	0xf4, 0xb8, 0x39, 0x5c, 0x81, 0xd8, 0x7a, 0xc4, 0xda, 0xae, 0xcb,
	0xb6, 0xd5, 0x35, 0x2a, 0x74, 0x88, 0x55, 0x87, 0x66, 0x7d
};

static void
test_challenge_ext(void **state)
{
	static const uint8_t ext[] = "\x10\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7"
	    "\xa8\xa9\xaa\xab\xac\xad\xae\xaf\x00\x00\x00\x0f";
	uint8_t nonce[CTRL_NONCE_LEN], out[64], buf[32], key[32];
	uint8_t cn[CTRL_NONCE_LEN], sn[CTRL_NONCE_LEN], id[CTRL_ID_LEN];
	uint8_t mac[CTRL_MAC_LEN];
	struct ctrl_msg m;
	size_t n;

	/* 20 bytes: the nonce and the caps, and back to the same bytes */
	assert_int_equal(ctrl_decode(ext, sizeof(ext) - 1, &m), 0);
	assert_int_equal(m.type, CTRL_CHALLENGE);
	assert_int_equal(m.u.challenge.has_caps, 1);
	assert_int_equal(m.u.challenge.caps, 0x0f);
	assert_true(ctrl_challenge_hashed(&m));
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), 21);
	assert_memory_equal(out, ext, 21);
	/* the 16-byte form: no caps, the token itself is the key */
	assert_int_equal(ctrl_decode(ext, 17, &m), 0);
	assert_int_equal(m.u.challenge.has_caps, 0);
	assert_false(ctrl_challenge_hashed(&m));
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), 17);
	/* caps without the bit: the token itself */
	memcpy(buf, ext, 21);
	buf[20] = 0x07;
	assert_int_equal(ctrl_decode(buf, 21, &m), 0);
	assert_false(ctrl_challenge_hashed(&m));
	/* any other length is malformed */
	for (n = 0; n < sizeof(buf); n++) {
		buf[0] = CTRL_CHALLENGE;
		if (n == 17 || n == 21)
			continue;
		assert_int_equal(ctrl_decode(buf, n, &m), MG_EPROTO);
	}

	/* the server's choice: the extended form only when asked */
	seq(nonce, sizeof(nonce), 0xa0);
	ctrl_challenge_make(&m, nonce, CTRL_CAP_STREAM_EX | CTRL_CAP_LEASES,
	    0x1f);
	assert_int_equal(m.type, CTRL_CHALLENGE);
	assert_int_equal(m.u.challenge.has_caps, 0);
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), 17);
	assert_memory_equal(out, CHAL_WIRE, 17);
	assert_false(ctrl_challenge_hashed(&m));
	ctrl_challenge_make(&m, nonce, CTRL_CAP_HASHED_SECRET |
	    CTRL_CAP_STREAM_EX | 0x80000000u, CTRL_CAP_HASHED_SECRET |
	    CTRL_CAP_STREAM_EX | CTRL_CAP_LEASES);
	assert_int_equal(m.u.challenge.has_caps, 1);
	assert_int_equal(m.u.challenge.caps, CTRL_CAP_HASHED_SECRET |
	    CTRL_CAP_STREAM_EX);
	assert_int_equal(ctrl_encode(&m, out, sizeof(out)), 21);
	assert_memory_equal(out, CHAL_WIRE, 17);
	assert_memory_equal(out + 17, "\x00\x00\x00\x09", 4);
	assert_true(ctrl_challenge_hashed(&m));
	/* asked, but a server without the extension: caps say no */
	ctrl_challenge_make(&m, nonce, CTRL_CAP_HASHED_SECRET,
	    CTRL_CAP_STREAM_EX);
	assert_int_equal(m.u.challenge.has_caps, 1);
	assert_false(ctrl_challenge_hashed(&m));

	/* the hashed key: HMAC keyed with the 32 raw bytes of SHA-256 */
	seq(cn, sizeof(cn), 0x00);
	seq(sn, sizeof(sn), 0x10);
	seq(id, sizeof(id), 0x20);
	crypto_sha256("secret", 6, key);
	ctrl_auth_mac(key, sizeof(key), cn, sn, id, mac);
	assert_memory_equal(mac, mac_hashed_secret, CTRL_MAC_LEN);
	assert_memory_not_equal(mac, mac_secret, CTRL_MAC_LEN);
}

/* Capability bit 6, CLUSTER (internals/protocol-ext.md): no message of
 * its own; it travels in the HMAC Hello's caps and in AuthOK's, and is
 * agreed like any bit (the intersection). */
static void
test_cluster_cap(void **state)
{
	uint8_t nonce[CTRL_NONCE_LEN], id[CTRL_ID_LEN], out[128];
	const uint32_t all = CTRL_CAP_STREAM_EX | CTRL_CAP_UDP_FLOWS |
	    CTRL_CAP_LEASES | CTRL_CAP_HASHED_SECRET | CTRL_CAP_STREAM_META |
	    CTRL_CAP_HEALTH;
	struct ctrl_hello h, e;
	struct ctrl_msg m, d;
	int n;

	assert_int_equal(CTRL_CAP_CLUSTER, 1u << 6);
	assert_int_equal(CTRL_CAP_CLUSTER & all, 0);
	/* the agent offers it in its Hello: caps u32 at bytes 38..41 */
	seq(nonce, sizeof(nonce), 0x00);
	seq(id, sizeof(id), 0x20);
	memset(&e, 0, sizeof(e));
	e.method = CTRL_METHOD_HMAC;
	e.hmac_ver = 1;
	memcpy(e.client_nonce, nonce, CTRL_NONCE_LEN);
	memcpy(e.client_id, id, CTRL_ID_LEN);
	e.caps = all | CTRL_CAP_CLUSTER;
	n = ctrl_hello_encode(&e, out, sizeof(out));
	assert_int_equal(n, 43);
	assert_memory_equal(out + 38, "\x00\x00\x00\x7f", 4);
	assert_int_equal(ctrl_hello_decode(out, (size_t)n, &h), 0);
	assert_int_equal(h.caps, all | CTRL_CAP_CLUSTER);
	/* AuthOK carries it back: caps u32 first */
	memset(&d, 0, sizeof(d));
	d.type = CTRL_AUTH_OK;
	d.u.auth_ok.caps = all | CTRL_CAP_CLUSTER;
	d.u.auth_ok.heartbeat_s = 10;
	n = ctrl_encode(&d, out, sizeof(out));
	assert_true(n >= 7);
	assert_memory_equal(out, "\x12\x00\x00\x00\x7f\x00\x0a", 7);
	assert_int_equal(ctrl_decode(out, (size_t)n, &m), 0);
	assert_int_equal(m.u.auth_ok.caps, all | CTRL_CAP_CLUSTER);
	/* the intersection: a server without --cluster does not have it,
	 * an agent that did not offer it does not get it */
	ctrl_challenge_make(&m, nonce, CTRL_CAP_HASHED_SECRET |
	    CTRL_CAP_CLUSTER, all);
	assert_int_equal(m.u.challenge.caps, CTRL_CAP_HASHED_SECRET);
	ctrl_challenge_make(&m, nonce, CTRL_CAP_HASHED_SECRET |
	    CTRL_CAP_CLUSTER, all | CTRL_CAP_CLUSTER);
	assert_int_equal(m.u.challenge.caps, CTRL_CAP_HASHED_SECRET |
	    CTRL_CAP_CLUSTER);
	ctrl_challenge_make(&m, nonce, CTRL_CAP_HASHED_SECRET,
	    all | CTRL_CAP_CLUSTER);
	assert_int_equal(m.u.challenge.caps, CTRL_CAP_HASHED_SECRET);
}

/* ---- names of things ---------------------------------------------- */

static void
test_type_names(void **state)
{
	assert_string_equal(ctrl_type_name(CTRL_REGISTER), "Register");
	assert_string_equal(ctrl_type_name(CTRL_HEARTBEAT), "Heartbeat");
	assert_string_equal(ctrl_type_name(CTRL_STREAM_REJECT),
	    "StreamReject");
	assert_string_equal(ctrl_type_name(CTRL_REGISTER_EX), "RegisterEx");
	assert_string_equal(ctrl_type_name(CTRL_UNREGISTER), "Unregister");
	assert_string_equal(ctrl_type_name(CTRL_GOODBYE), "Goodbye");
	assert_string_equal(ctrl_type_name(CTRL_CHALLENGE), "Challenge");
	assert_string_equal(ctrl_type_name(CTRL_AUTH_PROOF), "AuthProof");
	assert_string_equal(ctrl_type_name(CTRL_AUTH_OK), "AuthOK");
	assert_string_equal(ctrl_type_name(CTRL_AUTH_ERR), "AuthErr");
	assert_string_equal(ctrl_type_name(CTRL_REGISTER_OK), "RegisterOK");
	assert_string_equal(ctrl_type_name(CTRL_REGISTER_ERR), "RegisterErr");
	assert_string_equal(ctrl_type_name(CTRL_ERROR), "Error");
	assert_string_equal(ctrl_type_name(CTRL_HEALTH_REPORT), "HealthReport");
	assert_string_equal(ctrl_type_name(0x00), "unknown");
	assert_string_equal(ctrl_type_name(0x02), "unknown");
	assert_string_equal(ctrl_type_name(0xFF), "unknown");

	assert_string_equal(proxy_type_name(PROXY_TCP), "tcp");
	assert_string_equal(proxy_type_name(PROXY_UDP), "udp");
	assert_string_equal(proxy_type_name(PROXY_HTTP), "http");
	assert_string_equal(proxy_type_name(PROXY_HTTPS), "https");
	assert_string_equal(proxy_type_name(PROXY_TLS), "tls");
	assert_null(proxy_type_name(0));
	assert_null(proxy_type_name(6));
}

/* TunnelClosed (0x17): RegisterErr's body, both ways, and its name */
static void
test_tunnel_closed(void **state)
{
	struct ctrl_msg m, got;
	uint8_t out[512];
	const uint8_t want[] = { 0x17, 4, 4, 's', 'h', 'o', 'p', 'g', 'o',
		'n', 'e' };
	int n;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.type = CTRL_TUNNEL_CLOSED;
	m.u.reg_err.code = 4;
	m.u.reg_err.name.p = (const uint8_t *)"shop";
	m.u.reg_err.name.len = 4;
	m.u.reg_err.text.p = (const uint8_t *)"gone";
	m.u.reg_err.text.len = 4;
	n = ctrl_encode(&m, out, sizeof(out));
	assert_int_equal(n, (int)sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(ctrl_decode(out, (size_t)n, &got), 0);
	assert_int_equal(got.type, CTRL_TUNNEL_CLOSED);
	assert_int_equal(got.u.reg_err.code, 4);
	assert_int_equal(got.u.reg_err.name.len, 4);
	assert_memory_equal(got.u.reg_err.name.p, "shop", 4);
	assert_int_equal(got.u.reg_err.text.len, 4);
	assert_string_equal(ctrl_type_name(CTRL_TUNNEL_CLOSED), "TunnelClosed");
	/* a name running past the end: refused */
	out[2] = 40;
	assert_int_not_equal(ctrl_decode(out, (size_t)n, &got), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vec_sizes),
		cmocka_unit_test(test_decode_vectors),
		cmocka_unit_test(test_encode_vectors),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_trailing),
		cmocka_unit_test(test_encode_nospace),
		cmocka_unit_test(test_unknown_type),
		cmocka_unit_test(test_register_long_name),
		cmocka_unit_test(test_encode_long_names),
		cmocka_unit_test(test_unregister_long_name),
		cmocka_unit_test(test_name_len_past_end),
		cmocka_unit_test(test_opt_unknown_low),
		cmocka_unit_test(test_opt_group_ext),
		cmocka_unit_test(test_opt_unknown_high),
		cmocka_unit_test(test_opt_bad_lengths),
		cmocka_unit_test(test_opt_repeated),
		cmocka_unit_test(test_opt_empty_text),
		cmocka_unit_test(test_opt_allow_src_limit),
		cmocka_unit_test(test_opt_encode_invalid),
		cmocka_unit_test(test_encode_msg_max),
		cmocka_unit_test(test_hello_token),
		cmocka_unit_test(test_hello_token_bounds),
		cmocka_unit_test(test_hello_mtls),
		cmocka_unit_test(test_hello_hmac),
		cmocka_unit_test(test_hello_truncated),
		cmocka_unit_test(test_hello_trailing),
		cmocka_unit_test(test_hello_bad_magic),
		cmocka_unit_test(test_hello_unsupported),
		cmocka_unit_test(test_hello_encode_errors),
		cmocka_unit_test(test_auth_mac),
		cmocka_unit_test(test_challenge_ext),
		cmocka_unit_test(test_health_report),
		cmocka_unit_test(test_cluster_cap),
		cmocka_unit_test(test_tunnel_closed),
		cmocka_unit_test(test_type_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
