/* net.c: see net.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/err.h"
#include "util/net.h"

int
net_split_hostport(const char *s, char *host, size_t hostcap, uint16_t *port,
    const char **err)
{
	const char *colon, *ps, *hs = s;
	size_t hl;
	char *end;
	long v;

	*err = NULL;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':') {
			*err = "expected [ipv6]:port";
			return MG_EINVAL;
		}
		hs = s + 1;
		hl = (size_t)(rb - hs);
		ps = rb + 2;
	} else if ((colon = strrchr(s, ':')) != NULL) {
		if (strchr(s, ':') != colon) {
			*err = "an IPv6 address needs brackets: [addr]:port";
			return MG_EINVAL;
		}
		hl = (size_t)(colon - s);
		ps = colon + 1;
	} else {
		hl = 0;
		ps = s;
	}
	if (hl >= hostcap) {
		*err = "host name too long";
		return MG_EINVAL;
	}
	memcpy(host, hs, hl);
	host[hl] = '\0';
	errno = 0;
	v = strtol(ps, &end, 10);
	if (*ps == '\0' || *end != '\0' || errno || v < 0 || v > 65535) {
		*err = "port must be a number from 0 to 65535";
		return MG_EINVAL;
	}
	*port = (uint16_t)v;
	return 0;
}

const char *
net_addr_str(const struct sockaddr *sa, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
		snprintf(buf, cap, "%s:%u", a, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], a,
			    sizeof(a));
			snprintf(buf, cap, "%s:%u", a, ntohs(in6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
			snprintf(buf, cap, "[%s]:%u", a,
			    ntohs(in6->sin6_port));
		}
	} else {
		snprintf(buf, cap, "?");
	}
	return buf;
}

void
net_sock_tune(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

int
net_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

int
net_is_wildcard(const char *host)
{
	return host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 ||
	    strcmp(host, "::") == 0 || strcmp(host, "*") == 0;
}

static int
net_bind_any(const char *host, uint16_t port, int type, int backlog)
{
	struct addrinfo hints, *res = NULL, *ai;
	char pstr[8];
	int fd = -1, one = 1, zero = 0, rc, saved = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = type;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	hints.ai_family = AF_UNSPEC;
	snprintf(pstr, sizeof(pstr), "%u", port);
	if (net_is_wildcard(host)) {
		/* dual stack when the host has IPv6, else IPv4 */
		hints.ai_family = strcmp(host, "0.0.0.0") == 0 ? AF_INET :
		    AF_INET6;
		rc = getaddrinfo(NULL, pstr, &hints, &res);
		if (rc != 0 && hints.ai_family == AF_INET6) {
			hints.ai_family = AF_INET;
			rc = getaddrinfo(NULL, pstr, &hints, &res);
		}
	} else {
		rc = getaddrinfo(host, pstr, &hints, &res);
	}
	if (rc != 0) {
		errno = EADDRNOTAVAIL;
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		if (type == SOCK_STREAM)
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
			    sizeof(one));
		if (ai->ai_family == AF_INET6 && net_is_wildcard(host))
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero,
			    sizeof(zero));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    (type != SOCK_STREAM || listen(fd, backlog) == 0))
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		errno = saved ? saved : EADDRNOTAVAIL;
	return fd;
}

int
net_listen_tcp(const char *host, uint16_t port, int backlog)
{
	return net_bind_any(host, port, SOCK_STREAM, backlog);
}

int
net_bind_udp(const char *host, uint16_t port)
{
	return net_bind_any(host, port, SOCK_DGRAM, 0);
}

uint16_t
net_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}
