/* policy.h: who may do what, per token entry and per mTLS subject (the
 * server file's `tokens:` and `certs:`): the data model, the parsers of
 * its values, and pure matchers that name the rule they refuse by. */
#ifndef MG_POLICY_H
#define MG_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "util/acl.h"

#define POLICY_MAX_PORTS 64     /* entries (ranges or ports) of ports: */
#define POLICY_MAX_PATTERNS 32  /* of subdomains: and of hostnames: */
#define POLICY_MAX_CIDRS 32     /* of cidrs: and of deny_cidrs: */
#define POLICY_MAX_RATE 1000000000000ULL /* per second, any rate */

struct policy_range {
	uint16_t lo, hi;        /* lo <= hi; a single port has lo == hi */
};

/* the limits; 0 = none (a limit of 0 is refused by the loader) */
struct policy_limits {
	unsigned tunnels;       /* tunnels registered at once */
	unsigned visitors;      /* public connections at once, all tunnels */
	uint64_t bw_in, bw_out; /* bytes per second (visitor to / from) */
	uint64_t new_conns;     /* new connections per s, per IP per tunnel */
	uint64_t http_requests; /* HTTP requests per s, per IP per tunnel */
};

/*
 * One identity's policy. An empty list allows anything of its kind
 * (except subdomains/hostnames: once either is given, a name the given
 * lists do not cover is refused). A zeroed policy is unrestricted.
 */
struct conf_policy {
	int is_cert;            /* 1: a certs: entry (name is the subject) */
	char name[512];         /* token name, or certificate subject */
	int64_t expires;        /* Unix time of the first instant it is no
				   longer valid; 0 = never */
	char expires_text[40];  /* as written, for messages */
	struct policy_range ports[POLICY_MAX_PORTS];
	size_t nports;
	char subdomains[POLICY_MAX_PATTERNS][64];
	size_t nsubdomains;
	char hostnames[POLICY_MAX_PATTERNS][256];
	size_t nhostnames;
	unsigned types;         /* bit (1u << PROXY_*); 0 = any */
	struct acl_rule cidrs[POLICY_MAX_CIDRS];      /* port 0, CIDR */
	size_t ncidrs;
	struct acl_rule deny_cidrs[POLICY_MAX_CIDRS];
	size_t ndeny_cidrs;
	struct policy_limits limits;
};

/* policy_restricts: 1 when p has any rule or limit or an expiry (a NULL
 * or zeroed policy is unrestricted: 0). */
int policy_restricts(const struct conf_policy *p);

/* ------------------------------------------------------------ parsing:
 * each returns 0, or -1 with a reason (static text) in *err */

/* policy_parse_port: "22022" or "20000-20099" into *r. */
int policy_parse_port(const char *s, struct policy_range *r,
    const char **err);
/* policy_parse_subdomain: a glob of one label ([a-z0-9-], * = one or
 * more such characters), lower-cased into out[64]. */
int policy_parse_subdomain(const char *s, char out[64], const char **err);
/* policy_parse_hostname: a host name, or "*." and a host name (the *
 * stands for one or more whole labels), lower-cased into out[256]. */
int policy_parse_hostname(const char *s, char out[256], const char **err);
/* policy_parse_type: tcp, udp, http, https or tls into its PROXY_*. */
int policy_parse_type(const char *s, uint8_t *type, const char **err);
/* policy_parse_cidr: "10.0.0.0/8", "::1/128" or an address (a /32 or
 * /128) into *r (a CIDR rule of util/acl.h for any port); host bits
 * beyond the prefix are an error. */
int policy_parse_cidr(const char *s, struct acl_rule *r, const char **err);
/* policy_parse_cidr_list: "CIDR,CIDR ..." (commas and/or spaces) into
 * out[0..max) (out NULL: only checked), their number in *n; 0, or -1 with
 * a message naming the bad one in why */
int policy_parse_cidr_list(const char *s, struct acl_rule *out, size_t max,
    size_t *n, char *why, size_t wl);
/* policy_parse_expires: "YYYY-MM-DD" (valid to the end of that day, UTC)
 * or an RFC 3339 timestamp ("2027-06-30T18:00:00Z", "...+02:00",
 * fractions of a second ignored) into the first instant it no longer
 * holds, Unix seconds. */
int policy_parse_expires(const char *s, int64_t *out, const char **err);
/* policy_parse_rate: "N/s" into *out (per second). bytes 1: N is a size
 * as conf_parse_bytes reads it ("10MB/s", "1MiB/s"); 0: a plain count
 * ("50/s"). 0 itself is accepted here (the loader refuses it). */
int policy_parse_rate(const char *s, int bytes, uint64_t *out,
    const char **err);

/* ------------------------------------------------------------ matching:
 * each returns NULL when the policy allows it (always for p NULL), or buf
 * holding a message that names the rule, e.g. "port 30000 is outside
 * alice's ports 20000-20099, 22022"; buf is cut to cap */

const char *policy_check_port(const struct conf_policy *p, uint16_t port,
    char *buf, size_t cap);
/* policy_check_host: a tunnel's subdomain and/or hostname (either may be
 * NULL or ""); names are compared without case */
const char *policy_check_host(const struct conf_policy *p,
    const char *subdomain, const char *hostname, char *buf, size_t cap);
const char *policy_check_type(const struct conf_policy *p, uint8_t type,
    char *buf, size_t cap);
/* policy_expired: "token alice expired on 2027-06-30" when now (Unix
 * seconds, the wall clock) is at or past p->expires */
const char *policy_expired(const struct conf_policy *p, int64_t now,
    char *buf, size_t cap);
/* policy_allows_addr: a visitor from sa (IPv4, IPv6, or IPv4-mapped IPv6,
 * read as IPv4) must be in cidrs (when given) and not in deny_cidrs */
const char *policy_allows_addr(const struct conf_policy *p,
    const struct sockaddr *sa, char *buf, size_t cap);

/* policy_match_subdomain, policy_match_hostname: one pattern (as the
 * parsers store it) against a lower-case name; 1 or 0 */
int policy_match_subdomain(const char *pat, const char *name);
int policy_match_hostname(const char *pat, const char *name);

/* ------------------------------------------------------------ text */

/* policy_format_ports: "20000-20099, 22022" into buf (cut to cap);
 * returns buf */
const char *policy_format_ports(const struct conf_policy *p, char *buf,
    size_t cap);
/* policy_format_types: "tcp, http"; policy_format_cidrs: "10.0.0.0/8,
 * ::1/128"; both return buf */
const char *policy_format_types(unsigned types, char *buf, size_t cap);
const char *policy_format_cidrs(const struct acl_rule *r, size_t n,
    char *buf, size_t cap);
/* policy_type_name: "tcp", "udp", "http", "https", "tls" or "?" */
const char *policy_type_name(uint8_t type);

/* ------------------------------------------------------------ lookup */

struct server_conf;

/* policy_for_token: the policy of the server's token number i (both
 * secrets of a rotating entry share one), or NULL (unrestricted: an
 * unnamed token, or an entry without expires/allow/limits). Borrowed
 * from c; valid until conf_server_free(c). */
const struct conf_policy *policy_for_token(const struct server_conf *c,
    size_t i);
/* policy_for_subject: the certs: entry whose subject is exactly subject,
 * or NULL (unrestricted). Borrowed likewise. */
const struct conf_policy *policy_for_subject(const struct server_conf *c,
    const char *subject);

#endif
