/* policy.c: per-identity policy values and their matchers (policy.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/policy.h"
#include "proto/ctrl.h"

int
policy_restricts(const struct conf_policy *p)
{
	const struct policy_limits *l;

	if (p == NULL)
		return 0;
	l = &p->limits;
	return p->expires || p->nports || p->nsubdomains || p->nhostnames ||
	    p->types || p->ncidrs || p->ndeny_cidrs || l->tunnels ||
	    l->visitors || l->bw_in || l->bw_out || l->new_conns ||
	    l->http_requests;
}

/* ------------------------------------------------------------ parsing */

static int
port_num(const char *s, size_t n, uint16_t *out)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int
policy_parse_port(const char *s, struct policy_range *r, const char **err)
{
	const char *dash = strchr(s, '-');

	if (dash == NULL) {
		if (port_num(s, strlen(s), &r->lo)) {
			*err = "expected a port 1-65535 or a range LOW-HIGH";
			return -1;
		}
		r->hi = r->lo;
		return 0;
	}
	if (port_num(s, (size_t)(dash - s), &r->lo) ||
	    port_num(dash + 1, strlen(dash + 1), &r->hi)) {
		*err = "expected a range LOW-HIGH of ports 1-65535";
		return -1;
	}
	if (r->hi < r->lo) {
		*err = "the range ends before it starts";
		return -1;
	}
	return 0;
}

static int
label_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

int
policy_parse_subdomain(const char *s, char out[64], const char **err)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63) {
		*err = "a subdomain pattern is 1 to 63 characters";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int c = tolower((unsigned char)s[i]);
		if (c == '.') {
			*err = "a subdomain is one label (no dots): for "
			       "names with dots use hostnames";
			return -1;
		}
		if (!label_char(c) && c != '*') {
			*err = "a subdomain pattern has letters, digits, - "
			       "and *";
			return -1;
		}
		if (c == '*' && i > 0 && s[i - 1] == '*') {
			*err = "** is one * (it matches one or more "
			       "characters)";
			return -1;
		}
		out[i] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

int
policy_parse_hostname(const char *s, char out[256], const char **err)
{
	size_t n = strlen(s), lab = 0;

	if (n == 0 || n > 253) {
		*err = "a host name is 1 to 253 characters";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int c = tolower((unsigned char)s[i]);
		if (c == '*') {
			if (i != 0 || s[1] != '.') {
				*err = "* stands only for whole labels on the "
				       "left (*.example.org)";
				return -1;
			}
		} else if (c == '.') {
			if (lab == 0 && !(i == 1 && s[0] == '*')) {
				*err = "an empty label (two dots, or a dot at "
				       "the start)";
				return -1;
			}
			lab = 0;
		} else if (!label_char(c)) {
			*err = "a host name has letters, digits, - and dots";
			return -1;
		} else if (++lab > 63) {
			*err = "a label is at most 63 characters";
			return -1;
		}
		out[i] = (char)c;
	}
	out[n] = '\0';
	if (lab == 0) {
		*err = out[0] == '*' && n <= 2 ? "*. needs a domain after it" :
		    "a host name does not end with a dot";
		return -1;
	}
	return 0;
}

static const struct {
	const char *name;
	uint8_t type;
} types[] = {
	{ "tcp", PROXY_TCP }, { "udp", PROXY_UDP }, { "http", PROXY_HTTP },
	{ "https", PROXY_HTTPS }, { "tls", PROXY_TLS },
};
#define NTYPES (sizeof(types) / sizeof(types[0]))

int
policy_parse_type(const char *s, uint8_t *type, const char **err)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (strcasecmp(s, types[i].name) == 0) {
			*type = types[i].type;
			return 0;
		}
	*err = "expected tcp, udp, http, https or tls";
	return -1;
}

const char *
policy_type_name(uint8_t type)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (types[i].type == type)
			return types[i].name;
	return "?";
}

int
policy_parse_cidr(const char *s, struct acl_rule *r, const char **err)
{
	char rule[300];
	int full, rest;

	if (strlen(s) > 200 || s[0] == '\0' || strchr(s, ']') ||
	    strchr(s, '[')) {
		*err = "expected an address or a network (10.0.0.0/8, "
		       "fd00::/8)";
		return -1;
	}
	/* util/acl's rule syntax, for any port */
	snprintf(rule, sizeof(rule), strchr(s, ':') ? "[%s]:*" : "%s:*", s);
	if (acl_parse(rule, r, err) != 0 || !r->is_cidr) {
		*err = "expected an address or a network (10.0.0.0/8, "
		       "fd00::/8)";
		return -1;
	}
	full = r->prefix / 8;
	rest = r->prefix % 8;
	for (int i = full; i < (r->family == AF_INET ? 4 : 16); i++) {
		uint8_t mask = i == full && rest ? (uint8_t)(0xff >> rest) :
		    0xff;
		if (r->net[i] & mask) {
			*err = "the address has bits set beyond the prefix "
			       "(give the network's first address)";
			return -1;
		}
	}
	return 0;
}

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), without the time zone of the process */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* n digits at s into *v; 0 or -1 */
static int
digits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

int
policy_parse_expires(const char *s, int64_t *out, const char **err)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
		30, 31 };
	int y, mo, d, h = 0, mi = 0, sec = 0, leap, off = 0;
	const char *p;

	*err = "expected a date YYYY-MM-DD or an RFC 3339 time "
	       "(2027-06-30T18:00:00Z)";
	if (strlen(s) < 10 || digits(s, 4, &y) || s[4] != '-' ||
	    digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d))
		return -1;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 ||
	    d > mdays[mo - 1] + (mo == 2 && leap)) {
		*err = "no such date";
		return -1;
	}
	if (s[10] == '\0') {
		/* a date: valid to the end of that day, UTC */
		*out = (days_from_civil(y, (unsigned)mo, (unsigned)d) + 1) *
		    86400;
		return 0;
	}
	p = s + 10;
	if ((*p != 'T' && *p != 't' && *p != ' ') || digits(p + 1, 2, &h) ||
	    p[3] != ':' || digits(p + 4, 2, &mi) || p[6] != ':' ||
	    digits(p + 7, 2, &sec))
		return -1;
	p += 9;
	if (*p == '.') {
		if (!isdigit((unsigned char)p[1]))
			return -1;
		for (p++; isdigit((unsigned char)*p); p++)
			;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (digits(p + 1, 2, &oh) || p[3] != ':' ||
		    digits(p + 4, 2, &om) || oh > 23 || om > 59)
			return -1;
		off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		*err = "an RFC 3339 time needs its offset (Z or +HH:MM)";
		return -1;
	}
	if (*p != '\0')
		return -1;
	if (h > 23 || mi > 59 || sec > 60) {
		*err = "no such time of day";
		return -1;
	}
	if (sec == 60)
		sec = 59; /* a leap second: near enough */
	*out = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 +
	    h * 3600 + mi * 60 + sec - off;
	return 0;
}

int
policy_parse_rate(const char *s, int bytes, uint64_t *out, const char **err)
{
	char num[64];
	size_t n = strlen(s);
	uint64_t v = 0;

	if (n < 3 || n - 2 >= sizeof(num) || strcmp(s + n - 2, "/s") != 0) {
		*err = bytes ? "expected a rate per second such as 10MB/s "
			       "or 512KiB/s" :
			       "expected a count per second such as 50/s";
		return -1;
	}
	memcpy(num, s, n - 2);
	num[n - 2] = '\0';
	if (bytes) {
		if (conf_parse_bytes(num, &v) != 0) {
			*err = "expected a size per second: N, NK/NKiB, NM/"
			       "NMiB, NG/NGiB (binary) or NKB, NMB, NGB "
			       "(decimal), then /s";
			return -1;
		}
	} else {
		for (size_t i = 0; num[i]; i++) {
			if (!isdigit((unsigned char)num[i]) || v > POLICY_MAX_RATE) {
				*err = "expected a whole number per second "
				       "such as 50/s";
				return -1;
			}
			v = v * 10 + (uint64_t)(num[i] - '0');
		}
	}
	if (v > POLICY_MAX_RATE) {
		*err = "too large";
		return -1;
	}
	*out = v;
	return 0;
}

/* ------------------------------------------------------------ text */

/* append to buf at *len, cut at cap */
static void
cat(char *buf, size_t cap, size_t *len, const char *fmt, const char *a,
    unsigned x, unsigned y)
{
	int r;

	if (*len >= cap)
		return;
	r = snprintf(buf + *len, cap - *len, fmt, a, x, y);
	if (r > 0)
		*len += (size_t)r;
	if (*len >= cap)
		*len = cap; /* cut */
}

const char *
policy_format_ports(const struct conf_policy *p, char *buf, size_t cap)
{
	size_t len = 0;

	if (cap == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; p && i < p->nports; i++) {
		const struct policy_range *r = &p->ports[i];
		if (r->lo == r->hi)
			cat(buf, cap, &len, "%s%u", i ? ", " : "", r->lo, 0);
		else
			cat(buf, cap, &len, "%s%u-%u", i ? ", " : "", r->lo,
			    r->hi);
	}
	return buf;
}

const char *
policy_format_types(unsigned t, char *buf, size_t cap)
{
	size_t len = 0;
	int first = 1;

	if (cap == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < NTYPES; i++) {
		if (!(t & (1u << types[i].type)))
			continue;
		cat(buf, cap, &len, first ? "%s" : ", %s", types[i].name, 0,
		    0);
		first = 0;
	}
	return buf;
}

const char *
policy_format_cidrs(const struct acl_rule *r, size_t n, char *buf,
    size_t cap)
{
	size_t len = 0;

	if (cap == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char a[INET6_ADDRSTRLEN];
		if (inet_ntop(r[i].family, r[i].net, a, sizeof(a)) == NULL)
			snprintf(a, sizeof(a), "?");
		cat(buf, cap, &len, i ? ", %s/%u" : "%s/%u", a,
		    (unsigned)r[i].prefix, 0);
	}
	return buf;
}

static void
format_list(const char *v, size_t stride, size_t n, char *buf, size_t cap)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++)
		cat(buf, cap, &len, i ? ", %s" : "%s", v + i * stride, 0, 0);
}

/* ------------------------------------------------------------ matching */

/* a glob of one label: * is one or more characters; dynamic
 * programming, so a hostile name costs at most 64 x 64 steps */
static int
glob1(const char *pat, const char *s)
{
	size_t pl = strlen(pat), sl = strlen(s);
	unsigned char m[65][65];

	if (pl > 64 || sl > 64)
		return 0;
	/* m[i][j]: pat + i matches s + j */
	for (size_t i = pl + 1; i-- > 0;)
		for (size_t j = sl + 1; j-- > 0;) {
			if (i == pl)
				m[i][j] = j == sl;
			else if (j == sl)
				m[i][j] = 0;
			else if (pat[i] == '*')
				m[i][j] = m[i + 1][j + 1] || m[i][j + 1];
			else
				m[i][j] = pat[i] == s[j] && m[i + 1][j + 1];
		}
	return m[0][0];
}

int
policy_match_subdomain(const char *pat, const char *name)
{
	for (const char *c = name; *c; c++)
		if (!label_char(*c))
			return 0;
	return *name && glob1(pat, name);
}

int
policy_match_hostname(const char *pat, const char *name)
{
	size_t pl, nl = strlen(name);

	if (pat[0] != '*')
		return strcmp(pat, name) == 0;
	/* "*.example.org": one or more labels, then ".example.org" */
	pl = strlen(pat + 1);
	return nl > pl && strcmp(name + nl - pl, pat + 1) == 0 &&
	    name[nl - pl - 1] != '.' && name[0] != '.';
}

static const char *
who(const struct conf_policy *p)
{
	return p->name[0] ? p->name : "this token";
}

const char *
policy_check_port(const struct conf_policy *p, uint16_t port, char *buf,
    size_t cap)
{
	char list[600];

	if (p == NULL || p->nports == 0)
		return NULL;
	for (size_t i = 0; i < p->nports; i++)
		if (port >= p->ports[i].lo && port <= p->ports[i].hi)
			return NULL;
	snprintf(buf, cap, "port %u is outside %s's ports %s", port, who(p),
	    policy_format_ports(p, list, sizeof(list)));
	return buf;
}

static void
lower(const char *s, char *out, size_t cap)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < cap; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[i] = '\0';
}

const char *
policy_check_host(const struct conf_policy *p, const char *subdomain,
    const char *hostname, char *buf, size_t cap)
{
	char name[300], list[1200];
	size_t i;

	if (p == NULL || (p->nsubdomains == 0 && p->nhostnames == 0))
		return NULL;
	if (subdomain && *subdomain) {
		lower(subdomain, name, sizeof(name));
		for (i = 0; i < p->nsubdomains; i++)
			if (policy_match_subdomain(p->subdomains[i], name))
				break;
		if (i == p->nsubdomains) {
			if (p->nsubdomains == 0)
				snprintf(buf, cap, "subdomain \"%.100s\" is "
				    "not allowed: %s may only use hostnames",
				    name, who(p));
			else
				snprintf(buf, cap, "subdomain \"%.100s\" does "
				    "not match %s's subdomains %s", name,
				    who(p), (format_list(p->subdomains[0], 64,
				    p->nsubdomains, list, sizeof(list)),
				    list));
			return buf;
		}
	}
	if (hostname && *hostname) {
		lower(hostname, name, sizeof(name));
		for (i = 0; i < p->nhostnames; i++)
			if (policy_match_hostname(p->hostnames[i], name))
				break;
		if (i == p->nhostnames) {
			if (p->nhostnames == 0)
				snprintf(buf, cap, "hostname \"%.260s\" is not "
				    "allowed: %s may only use subdomains",
				    name, who(p));
			else
				snprintf(buf, cap, "hostname \"%.260s\" does "
				    "not match %s's hostnames %s", name,
				    who(p), (format_list(p->hostnames[0], 256,
				    p->nhostnames, list, sizeof(list)),
				    list));
			return buf;
		}
	}
	return NULL;
}

const char *
policy_check_type(const struct conf_policy *p, uint8_t type, char *buf,
    size_t cap)
{
	char list[100];

	if (p == NULL || p->types == 0 || (type < 32 &&
	    (p->types & (1u << type))))
		return NULL;
	snprintf(buf, cap, "type %s is not among %s's types %s",
	    policy_type_name(type), who(p),
	    policy_format_types(p->types, list, sizeof(list)));
	return buf;
}

const char *
policy_expired(const struct conf_policy *p, int64_t now, char *buf,
    size_t cap)
{
	if (p == NULL || p->expires == 0 || now < p->expires)
		return NULL;
	snprintf(buf, cap, "%s %s%s%s expired on %s", p->is_cert ?
	    "certificate" : "token", p->is_cert ? "\"" : "", who(p),
	    p->is_cert ? "\"" : "", p->expires_text);
	return buf;
}

const char *
policy_allows_addr(const struct conf_policy *p, const struct sockaddr *sa,
    char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN] = "?", list[1600];
	const void *ap = NULL;
	int fam = sa->sa_family;

	if (p == NULL || (p->ncidrs == 0 && p->ndeny_cidrs == 0))
		return NULL;
	if (fam == AF_INET) {
		ap = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (fam == AF_INET6) {
		const struct in6_addr *in6 =
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		ap = in6;
		if (IN6_IS_ADDR_V4MAPPED(in6)) {
			ap = &in6->s6_addr[12];
			fam = AF_INET;
		}
	}
	if (ap)
		inet_ntop(fam, ap, a, sizeof(a));
	if (p->ncidrs && !acl_match_addr(p->cidrs, p->ncidrs, sa, 0)) {
		snprintf(buf, cap, "address %s is not in %s's cidrs %s", a,
		    who(p), policy_format_cidrs(p->cidrs, p->ncidrs, list,
		    sizeof(list)));
		return buf;
	}
	for (size_t i = 0; i < p->ndeny_cidrs; i++)
		if (acl_match_addr(&p->deny_cidrs[i], 1, sa, 0)) {
			snprintf(buf, cap, "address %s is in %s's deny_cidrs "
			    "(%s)", a, who(p), policy_format_cidrs(
			    &p->deny_cidrs[i], 1, list, sizeof(list)));
			return buf;
		}
	return NULL;
}

/* ------------------------------------------------------------ lookup */

const struct conf_policy *
policy_for_token(const struct server_conf *c, size_t i)
{
	return i < c->ntokens ? c->token_policy[i] : NULL;
}

const struct conf_policy *
policy_for_subject(const struct server_conf *c, const char *subject)
{
	for (size_t i = 0; i < c->npolicies; i++)
		if (c->policies[i]->is_cert &&
		    strcmp(c->policies[i]->name, subject) == 0)
			return c->policies[i];
	return NULL;
}

int
policy_parse_cidr_list(const char *s, struct acl_rule *out, size_t max,
    size_t *n, char *why, size_t wl)
{
	struct acl_rule scratch;
	char item[128];
	const char *err;

	*n = 0;
	while (*s) {
		size_t k = strcspn(s, ", ");
		if (k == 0) {
			s++;
			continue;
		}
		if (k >= sizeof(item)) {
			snprintf(why, wl, "a CIDR too long");
			return -1;
		}
		if (*n >= max) {
			snprintf(why, wl, "at most %zu CIDRs", max);
			return -1;
		}
		memcpy(item, s, k);
		item[k] = '\0';
		if (policy_parse_cidr(item, out ? &out[*n] : &scratch, &err)) {
			snprintf(why, wl, "\"%s\": %s", item, err);
			return -1;
		}
		(*n)++;
		s += k;
	}
	return 0;
}
