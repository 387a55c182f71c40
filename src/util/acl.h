/* acl.h: destination allow-lists for the stream proxy: "host:port",
 * "host:*", "CIDR:port", "CIDR:*" (IPv6 CIDRs in brackets: "[::1/128]:*"). */
#ifndef MG_ACL_H
#define MG_ACL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct acl_rule {
	int is_cidr;
	char host[256];        /* lower case, for name rules */
	int family;            /* AF_INET or AF_INET6, for CIDR rules */
	uint8_t net[16];
	int prefix;
	uint16_t port;         /* 0 = any */
};

/* acl_parse: one rule; 0, or MG_EINVAL with a reason in *err. */
int acl_parse(const char *s, struct acl_rule *r, const char **err);

/* acl_match_name: a name rule (or a CIDR rule, when host is an IP
 * literal inside it) allows host:port. */
int acl_match_name(const struct acl_rule *rules, size_t n, const char *host,
    uint16_t port);

/* acl_match_addr: a CIDR rule allows the resolved address sa (port taken
 * from the request, not from sa). */
int acl_match_addr(const struct acl_rule *rules, size_t n,
    const struct sockaddr *sa, uint16_t port);

#endif
