/*
 * ctrl.h: control-stream messages (docs/protocol.md section 4), pure codecs.
 * A control message is the whole payload of one PSH frame, so decoders take
 * the whole message and never report "need more".
 * Decoded structs point into the input buffer (fields named *_p with a
 * *_len); they are valid only while that buffer is.
 */
#ifndef MG_CTRL_H
#define MG_CTRL_H

#include <stddef.h>
#include <stdint.h>

#define CTRL_MAGIC "GRT1"
#define CTRL_NONCE_LEN 16
#define CTRL_ID_LEN 16
#define CTRL_MAC_LEN 32
#define CTRL_TOKEN_MAX 1019
#define CTRL_NAME_MAX 255
#define CTRL_MSG_MAX 65535
#define CTRL_MAX_ALLOW_SRC 16 /* allowed-source options kept per Register */
#define CTRL_HEALTH_REASON_MAX 200 /* bytes of a HealthReport's reason */

enum ctrl_method {
	CTRL_METHOD_TOKEN = 0x01,
	CTRL_METHOD_MTLS = 0x02,
	CTRL_METHOD_HMAC = 0x03,
};

enum ctrl_caps {
	CTRL_CAP_STREAM_EX = 1u << 0,
	CTRL_CAP_UDP_FLOWS = 1u << 1,
	CTRL_CAP_LEASES = 1u << 2,
	/* extensions proposed in docs/internals/protocol-ext.md */
	CTRL_CAP_HASHED_SECRET = 1u << 3, /* HMAC key = SHA-256(token) */
	CTRL_CAP_STREAM_META = 1u << 4,   /* NewStreamEx2 (0x0B) headers */
	CTRL_CAP_HEALTH = 1u << 5,        /* HealthReport (0x18) */
	/* the servers at this agent's addresses share state: names and
	 * ports one of them gave hold on the others */
	CTRL_CAP_CLUSTER = 1u << 6,
};

enum ctrl_type {
	CTRL_REGISTER = 0x01,
	CTRL_HEARTBEAT = 0x05,
	CTRL_STREAM_REJECT = 0x07,
	CTRL_REGISTER_EX = 0x08,
	CTRL_UNREGISTER = 0x09,
	CTRL_GOODBYE = 0x0A,
	CTRL_CHALLENGE = 0x10,
	CTRL_AUTH_PROOF = 0x11,
	CTRL_AUTH_OK = 0x12,
	CTRL_AUTH_ERR = 0x13,
	CTRL_REGISTER_OK = 0x14,
	CTRL_REGISTER_ERR = 0x15,
	CTRL_ERROR = 0x16,
	CTRL_TUNNEL_CLOSED = 0x17, /* extension, to CTRL_CAP_CLUSTER
				      clients: body as REGISTER_ERR's */
	CTRL_HEALTH_REPORT = 0x18, /* extension: internals/protocol-ext.md */
};

enum proxy_type {
	PROXY_TCP = 0x01,
	PROXY_UDP = 0x02,
	PROXY_HTTP = 0x03,
	PROXY_HTTPS = 0x04,
	PROXY_TLS = 0x05,
};

enum ctrl_code {
	CODE_PROTOCOL = 1,
	CODE_AUTH_FAILED = 2,
	CODE_METHOD_NOT_ALLOWED = 3,
	CODE_IN_USE = 4,
	CODE_NOT_ALLOWED = 5,
	CODE_LIMIT = 6,
	CODE_UNSUPPORTED = 7,
	CODE_SHUTDOWN = 8,
	CODE_UNREACHABLE = 9,
	CODE_INTERNAL = 10,
	CODE_REPLACED = 11,
};

enum reg_opt_tag {
	REGOPT_SUBDOMAIN = 0x01,
	REGOPT_HOSTNAME = 0x02,
	REGOPT_BASIC_AUTH = 0x03,
	REGOPT_BANDWIDTH = 0x04,
	REGOPT_GROUP = 0x05,
	REGOPT_PROXY_PROTOCOL = 0x06,
	REGOPT_ALLOW_SRC = 0x07,
	REGOPT_DENY_SRC = 0x08,     /* extension: denied source CIDR */
	REGOPT_GROUP_KEY = 0x09,    /* extension: the group's shared key */
	REGOPT_GROUP_STRATEGY = 0x0A, /* extension: how members are chosen */
	REGOPT_GROUP_WEIGHT = 0x0B, /* extension: u16, 1..1000 */
	REGOPT_DESCRIPTION = 0x81,
};

/* A length-delimited view into an input buffer. */
struct ctrl_str {
	const uint8_t *p;
	size_t len;
};

/* The handshake: "GRT1" | method | payload. */
struct ctrl_hello {
	uint8_t method;             /* enum ctrl_method */
	struct ctrl_str token;      /* TOKEN: 1..1019 bytes */
	uint8_t hmac_ver;           /* HMAC: must be 1 */
	uint8_t client_nonce[CTRL_NONCE_LEN]; /* HMAC */
	uint8_t client_id[CTRL_ID_LEN];       /* HMAC and MTLS */
	uint32_t caps;              /* HMAC */
	struct ctrl_str agent;      /* HMAC: 0..255 bytes */
	const char *err;            /* after a failed decode: what was wrong,
				       for the peer and the log (static) */
};

/* Register (0x01) and RegisterEx (0x08), decoded to one form. */
struct ctrl_register {
	uint8_t ex;                 /* 1 if RegisterEx */
	uint8_t proxy_type;         /* enum proxy_type (not validated) */
	uint16_t remote_port;
	uint16_t local_port;
	struct ctrl_str name;       /* 0..255 bytes (see ctrl_decode) */
	/* RegisterEx options; a missing option has p == NULL */
	struct ctrl_str subdomain;
	struct ctrl_str hostname;
	struct ctrl_str basic_auth;
	uint32_t bandwidth;         /* 0 = none */
	struct ctrl_str group;
	struct ctrl_str group_key;      /* extension 0x09 */
	struct ctrl_str group_strategy; /* extension 0x0A */
	uint16_t group_weight;          /* extension 0x0B; 0 = not given */
	uint8_t proxy_protocol;     /* 0 = none, else 1 or 2 */
	struct ctrl_str allow_src[CTRL_MAX_ALLOW_SRC];
	unsigned n_allow_src;
	struct ctrl_str deny_src[CTRL_MAX_ALLOW_SRC]; /* 0x08, extension */
	unsigned n_deny_src;
	struct ctrl_str description;
	uint8_t unknown_tag;        /* first unknown tag < 0x80; meaningful
				     * only when ctrl_decode returned
				     * MG_EUNSUPP (tag 0x00 is possible) */
};

/* Every message after the handshake. */
struct ctrl_msg {
	uint8_t type; /* enum ctrl_type */
	union {
		struct ctrl_register reg;       /* REGISTER, REGISTER_EX */
		struct ctrl_str name;           /* UNREGISTER */
		struct {
			uint8_t server_nonce[CTRL_NONCE_LEN];
			/* the extended form (HASHED_SECRET, proposed in
			 * docs/internals/protocol-ext.md): server_nonce |
			 * caps u32, sent only to a client whose Hello had
			 * CTRL_CAP_HASHED_SECRET; 0 = the 16-byte form */
			uint8_t has_caps;
			uint32_t caps;  /* the session's caps (as AuthOK's) */
		} challenge;                    /* CHALLENGE */
		uint8_t mac[CTRL_MAC_LEN];      /* AUTH_PROOF */
		struct {
			uint32_t caps;
			uint16_t heartbeat_s;
			struct ctrl_str agent;
		} auth_ok;                      /* AUTH_OK */
		struct {
			uint8_t code;
			struct ctrl_str text;
		} err;                          /* AUTH_ERR, GOODBYE, ERROR */
		struct {
			uint8_t proxy_type;
			uint16_t remote_port;
			struct ctrl_str name;
			struct ctrl_str url;
		} reg_ok;                       /* REGISTER_OK */
		struct {
			uint8_t code;
			struct ctrl_str name;
			struct ctrl_str text;
		} reg_err;                      /* REGISTER_ERR, TUNNEL_CLOSED */
		struct {
			uint32_t stream_id;
			uint8_t code;
			struct ctrl_str text;
		} reject;                       /* STREAM_REJECT */
		struct {
			uint8_t state;          /* 0 down, 1 up */
			struct ctrl_str name;   /* 1..255 bytes */
			struct ctrl_str reason; /* 0..200 bytes, UTF-8 */
		} health;                       /* HEALTH_REPORT */
	} u;
};

/*
 * ctrl_hello_decode: parse the handshake message p[0..len).
 * Returns 0; MG_EPROTO if it does not start with "GRT1" or is truncated or
 * has trailing bytes or a TOKEN of 0 or more than 1019 bytes; MG_EUNSUPP
 * for an unknown method or an HMAC ver other than 1 (h->method is set, and
 * h->hmac_ver for HMAC). The version is judged before the length, since
 * another version may lay out the rest differently. *h is zeroed first.
 */
int ctrl_hello_decode(const uint8_t *p, size_t len, struct ctrl_hello *h);

/* ctrl_hello_encode: write h to out; returns the length, or MG_ENOSPC or
 * MG_EINVAL (unknown method, token length out of range, agent > 255).
 * hmac_ver is written as given: set it to 1. Only the fields of h->method
 * are read. */
int ctrl_hello_encode(const struct ctrl_hello *h, uint8_t *out, size_t cap);

/*
 * ctrl_decode: parse one control message p[0..len) (not the handshake).
 * Returns 0 on success, or:
 * - MG_EPROTO: unknown type, truncated, or bad lengths (trailing bytes
 *   after a fixed-size body, an option whose length runs past the end,
 *   a RegisterEx name_len past the end, a RegisterOK name_len past the end);
 * - MG_ETOOLONG: a legacy Register whose name is longer than 255 bytes;
 *   m is filled, with the name cut to its first 255 bytes;
 * - MG_EUNSUPP: a RegisterEx with an unknown option tag below 0x80; m is
 *   filled (unknown_tag says which); unknown tags >= 0x80 are skipped.
 *   A malformed option anywhere still makes it MG_EPROTO.
 * RegisterEx options are also MG_EPROTO when: bandwidth is not exactly 4
 * bytes; PROXY protocol is not exactly 1 byte of value 1 or 2; there are
 * more than CTRL_MAX_ALLOW_SRC allowed-source options (MG_ELIMIT is not
 * part of this contract); a known option other than allowed source occurs
 * twice (which one would count is ambiguous). An empty text option is
 * present: p != NULL, len 0. An Unregister name over 255 bytes is MG_EPROTO.
 * A basic-auth value without ':' is not checked here (the caller's job).
 * A HealthReport is MG_EPROTO when its state is not 0 or 1, its name_len
 * is 0 or runs past the end, or its reason is over 200 bytes.
 * *m is zeroed first.
 */
int ctrl_decode(const uint8_t *p, size_t len, struct ctrl_msg *m);

/*
 * ctrl_encode: write m to out[0..cap); returns the length written, MG_ENOSPC
 * if it does not fit, MG_EINVAL if a field is out of range (a name over 255
 * bytes, an unknown type, an option over 65535 bytes, n_allow_src over
 * CTRL_MAX_ALLOW_SRC, proxy_protocol other than 0, 1, 2, or a message that
 * would exceed CTRL_MSG_MAX and so not fit one frame, whatever cap is;
 * a HealthReport whose state is not 0 or 1, whose name is empty, or whose
 * reason is over CTRL_HEALTH_REASON_MAX bytes).
 * m->type picks the Register layout; u.reg.ex and unknown_tag are ignored.
 * For REGISTER_EX every option whose p != NULL is written (bandwidth when
 * != 0, proxy_protocol when != 0), in tag order.
 */
int ctrl_encode(const struct ctrl_msg *m, uint8_t *out, size_t cap);

/*
 * ctrl_challenge_make: the Challenge a server sends to a client whose
 * HMAC Hello said client_caps, the server supporting server_caps: the
 * extended form (caps = client_caps & server_caps) only when the client
 * set CTRL_CAP_HASHED_SECRET, so a client of PROTOCOL.md alone gets the
 * exact 16-byte Challenge. *m is overwritten.
 */
void ctrl_challenge_make(struct ctrl_msg *m,
    const uint8_t server_nonce[CTRL_NONCE_LEN], uint32_t client_caps,
    uint32_t server_caps);

/* ctrl_challenge_hashed: 1 when the AuthProof for this Challenge (a
 * decoded CTRL_CHALLENGE) takes SHA-256(token) as its HMAC key, 0 when
 * the token itself (the 16-byte form, or caps without the bit). */
int ctrl_challenge_hashed(const struct ctrl_msg *m);

/* ctrl_auth_mac: HMAC-SHA256(key = token, "mgrok-auth-v1" | client_nonce |
 * server_nonce | client_id) into mac. An empty token is a valid HMAC key.
 * Aborts the process if OpenSSL cannot compute it (no fixed fallback MAC
 * that a peer could guess). */
void ctrl_auth_mac(const uint8_t *token, size_t token_len,
    const uint8_t client_nonce[CTRL_NONCE_LEN],
    const uint8_t server_nonce[CTRL_NONCE_LEN],
    const uint8_t client_id[CTRL_ID_LEN], uint8_t mac[CTRL_MAC_LEN]);

/* ctrl_type_name: "Register", "AuthOK", ... or "unknown". */
const char *ctrl_type_name(uint8_t type);
/* proxy_type_name: "tcp", "udp", "http", "https", "tls" or NULL. */
const char *proxy_type_name(uint8_t type);

#endif
