/* acl.c: see acl.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/acl.h"
#include "util/err.h"

int
acl_parse(const char *s, struct acl_rule *r, const char **err)
{
	char host[300];
	const char *colon, *hs = s;
	size_t hl;
	char *slash;

	memset(r, 0, sizeof(*r));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':') {
			*err = "expected [IPv6/prefix]:port";
			return MG_EINVAL;
		}
		hs = s + 1;
		hl = (size_t)(rb - hs);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			*err = "expected HOST:PORT, HOST:*, CIDR:PORT or CIDR:*";
			return MG_EINVAL;
		}
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host) || hl > 255) {
		*err = "the host part is empty or too long";
		return MG_EINVAL;
	}
	memcpy(host, hs, hl);
	host[hl] = '\0';
	if (strcmp(colon + 1, "*") == 0) {
		r->port = 0;
	} else {
		char *end;
		long p = strtol(colon + 1, &end, 10);
		if (colon[1] == '\0' || *end != '\0' || p < 1 || p > 65535) {
			*err = "the port must be 1 to 65535 or *";
			return MG_EINVAL;
		}
		r->port = (uint16_t)p;
	}
	if ((slash = strchr(host, '/')) != NULL || inet_pton(AF_INET, host,
	    r->net) == 1 || inet_pton(AF_INET6, host, r->net) == 1) {
		int max;
		if (slash)
			*slash = '\0';
		if (inet_pton(AF_INET, host, r->net) == 1) {
			r->family = AF_INET;
			max = 32;
		} else if (inet_pton(AF_INET6, host, r->net) == 1) {
			r->family = AF_INET6;
			max = 128;
		} else {
			*err = "not an IP network (expected e.g. 10.0.0.0/8)";
			return MG_EINVAL;
		}
		r->prefix = max;
		if (slash) {
			char *end;
			long pl = strtol(slash + 1, &end, 10);
			if (slash[1] == '\0' || *end != '\0' || pl < 0 ||
			    pl > max) {
				*err = "bad prefix length";
				return MG_EINVAL;
			}
			r->prefix = (int)pl;
		}
		r->is_cidr = 1;
		return 0;
	}
	for (size_t i = 0; i < hl; i++) {
		unsigned char c = (unsigned char)host[i];
		if (!isalnum(c) && c != '-' && c != '.' && c != '_') {
			*err = "not a host name";
			return MG_EINVAL;
		}
		r->host[i] = (char)tolower(c);
	}
	return 0;
}

static int
in_net(const struct acl_rule *r, const uint8_t *a)
{
	int full = r->prefix / 8, rest = r->prefix % 8;

	if (memcmp(a, r->net, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	return ((a[full] ^ r->net[full]) & (0xff << (8 - rest))) == 0;
}

int
acl_match_addr(const struct acl_rule *rules, size_t n,
    const struct sockaddr *sa, uint16_t port)
{
	uint8_t a[16];
	int fam;

	if (sa->sa_family == AF_INET) {
		memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		fam = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			memcpy(a, &in6->sin6_addr.s6_addr[12], 4);
			fam = AF_INET;
		} else {
			memcpy(a, &in6->sin6_addr, 16);
			fam = AF_INET6;
		}
	} else {
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		const struct acl_rule *r = &rules[i];
		if (r->is_cidr && r->family == fam &&
		    (r->port == 0 || r->port == port) && in_net(r, a))
			return 1;
	}
	return 0;
}

int
acl_match_name(const struct acl_rule *rules, size_t n, const char *host,
    uint16_t port)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	for (size_t i = 0; i < n; i++) {
		const struct acl_rule *r = &rules[i];
		if (!r->is_cidr && (r->port == 0 || r->port == port) &&
		    strcasecmp(r->host, host) == 0)
			return 1;
	}
	/* an IP literal is judged by the CIDR rules */
	if (inet_pton(AF_INET, host,
	    &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		return acl_match_addr(rules, n, (struct sockaddr *)&ss, port);
	}
	if (inet_pton(AF_INET6, host,
	    &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		return acl_match_addr(rules, n, (struct sockaddr *)&ss, port);
	}
	return 0;
}
