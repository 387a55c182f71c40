/* proxyurl.c: see proxyurl.h. */
#include <arpa/inet.h>
#include <sys/socket.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/proxyurl.h"

#define PX_DEFAULT_PORT 1080 /* curl's, for every kind */

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* percent-decode s[0..n) into out[cap]; -1 if bad or too long */
static int
pct_decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= n || (h = hexval(s[i + 1])) < 0 ||
			    (l = hexval(s[i + 2])) < 0)
				return -1;
			c = h * 16 + l;
			i += 2;
		}
		if (c == 0 || o + 1 >= cap)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

int
proxy_url_parse(const char *s, struct proxy_url *u, char *why, size_t wl)
{
	const char *p = strstr(s, "://"), *auth, *end, *at, *hp, *colon;
	char portbuf[8];

	memset(u, 0, sizeof(*u));
	u->kind = PROXY_URL_HTTP;
	if (p != NULL) {
		size_t sl = (size_t)(p - s);
		if (sl == 4 && strncasecmp(s, "http", 4) == 0)
			u->kind = PROXY_URL_HTTP;
		else if (sl == 6 && strncasecmp(s, "socks5", 6) == 0)
			u->kind = PROXY_URL_SOCKS5;
		else if (sl == 7 && strncasecmp(s, "socks5h", 7) == 0)
			u->kind = PROXY_URL_SOCKS5H;
		else if (sl == 5 && strncasecmp(s, "https", 5) == 0) {
			snprintf(why, wl, "https:// proxies (TLS to the proxy) "
			    "are not supported: use http:// (the connection to "
			    "the server inside it is TLS all the same)");
			return -1;
		} else {
			snprintf(why, wl, "unknown proxy scheme \"%.*s\" (expected "
			    "http, socks5 or socks5h)", (int)(sl > 20 ? 20 : sl),
			    s);
			return -1;
		}
		auth = p + 3;
	} else
		auth = s;
	end = auth + strcspn(auth, "/?#");
	if (*end != '\0' && strcmp(end, "/") != 0) {
		snprintf(why, wl, "a proxy URL has no path, query or fragment");
		return -1;
	}
	/* user[:pass]@ (the last @: a password may hold one, encoded or
	 * not) */
	at = NULL;
	for (const char *q = auth; q < end; q++)
		if (*q == '@')
			at = q;
	hp = auth;
	if (at != NULL) {
		const char *c = memchr(auth, ':', (size_t)(at - auth));
		size_t ul = (size_t)((c ? c : at) - auth);
		if (pct_decode(auth, ul, u->user, sizeof(u->user)) < 0 ||
		    (c && pct_decode(c + 1, (size_t)(at - c - 1), u->pass,
		    sizeof(u->pass)) < 0)) {
			snprintf(why, wl, "bad user name or password in the proxy "
			    "URL (percent-encoding, or longer than 255 bytes)");
			return -1;
		}
		hp = at + 1;
	}
	if (*hp == '[') {
		const char *rb = memchr(hp, ']', (size_t)(end - hp));
		if (rb == NULL || (size_t)(rb - hp - 1) >= sizeof(u->host)) {
			snprintf(why, wl, "bad IPv6 address in the proxy URL");
			return -1;
		}
		memcpy(u->host, hp + 1, (size_t)(rb - hp - 1));
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
		if (rb + 1 < end && colon == NULL) {
			snprintf(why, wl, "bad proxy address after ']'");
			return -1;
		}
	} else {
		colon = memchr(hp, ':', (size_t)(end - hp));
		size_t hl = (size_t)((colon ? colon : end) - hp);
		if (hl >= sizeof(u->host)) {
			snprintf(why, wl, "proxy host name too long");
			return -1;
		}
		memcpy(u->host, hp, hl);
	}
	if (u->host[0] == '\0') {
		snprintf(why, wl, "no proxy host in the URL");
		return -1;
	}
	u->port = PX_DEFAULT_PORT;
	if (colon != NULL) {
		size_t pl = (size_t)(end - colon - 1);
		char *e;
		unsigned long v;
		if (pl == 0 || pl >= sizeof(portbuf)) {
			snprintf(why, wl, "bad proxy port");
			return -1;
		}
		memcpy(portbuf, colon + 1, pl);
		portbuf[pl] = '\0';
		v = strtoul(portbuf, &e, 10);
		if (*e != '\0' || v == 0 || v > 65535 || !isdigit(
		    (unsigned char)portbuf[0])) {
			snprintf(why, wl, "bad proxy port \"%s\"", portbuf);
			return -1;
		}
		u->port = (uint16_t)v;
	}
	return 0;
}

const char *
proxy_url_str(const struct proxy_url *u, char *buf, size_t cap)
{
	const char *k = u->kind == PROXY_URL_HTTP ? "http" :
	    u->kind == PROXY_URL_SOCKS5 ? "socks5" : "socks5h";
	int v6 = strchr(u->host, ':') != NULL;

	snprintf(buf, cap, "%s://%s%s%s%s%s:%u", k, u->user, u->user[0] ? "@" :
	    "", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
	return buf;
}

/* one NO_PROXY entry (trimmed, not empty) against host */
static int
no_proxy_entry(const char *e, size_t n, const char *host)
{
	char ent[300];
	size_t hl = strlen(host);
	struct in6_addr a6, h6;
	struct in_addr a4, h4;

	if (n >= sizeof(ent))
		return 0;
	memcpy(ent, e, n);
	ent[n] = '\0';
	if (strchr(ent, '/') != NULL) {
		/* a CIDR: matches addresses inside it */
		uint8_t net[16], h[16];
		char *slash = strchr(ent, '/'), *end;
		int af = strchr(ent, ':') ? AF_INET6 : AF_INET;
		size_t bytes = af == AF_INET ? 4 : 16;
		long bits;

		*slash = '\0';
		bits = strtol(slash + 1, &end, 10);
		if (*end != '\0' || bits < 0 || bits > (long)bytes * 8 ||
		    inet_pton(af, ent, net) != 1 || inet_pton(af, host, h) != 1)
			return 0;
		for (size_t i = 0; i < bytes && bits > 0; i++, bits -= 8) {
			uint8_t mask = bits >= 8 ? 0xff :
			    (uint8_t)(0xff << (8 - bits));
			if ((net[i] & mask) != (h[i] & mask))
				return 0;
		}
		return 1;
	}
	if (inet_pton(AF_INET, ent, &a4) == 1)
		return inet_pton(AF_INET, host, &h4) == 1 && a4.s_addr ==
		    h4.s_addr;
	if (inet_pton(AF_INET6, ent, &a6) == 1)
		return inet_pton(AF_INET6, host, &h6) == 1 && memcmp(&a6, &h6,
		    sizeof(a6)) == 0;
	/* a name: the host itself or any name under it */
	if (ent[0] == '.')
		memmove(ent, ent + 1, strlen(ent));
	n = strlen(ent);
	if (n == 0 || n > hl)
		return 0;
	if (strcasecmp(host + hl - n, ent) != 0)
		return 0;
	return hl == n || host[hl - n - 1] == '.';
}

int
proxy_no_proxy(const char *list, const char *host)
{
	const char *p = list;

	if (list == NULL)
		return 0;
	while (*p) {
		size_t n;
		p += strspn(p, ", \t");
		n = strcspn(p, ", \t");
		if (n == 0)
			break;
		if (n == 1 && *p == '*')
			return 1;
		if (no_proxy_entry(p, n, host))
			return 1;
		p += n;
	}
	return 0;
}

static const char *
env2(const char *upper, const char *lower, const char **name)
{
	const char *v = getenv(upper);

	*name = upper;
	if (v == NULL || *v == '\0') {
		v = getenv(lower);
		*name = lower;
	}
	return v && *v ? v : NULL;
}

const char *
proxy_from_env(const char *host, const char **name)
{
	const char *v, *np, *n2;

	if ((v = env2("HTTPS_PROXY", "https_proxy", name)) == NULL &&
	    (v = env2("ALL_PROXY", "all_proxy", name)) == NULL)
		return NULL;
	np = env2("NO_PROXY", "no_proxy", &n2);
	if (np != NULL && proxy_no_proxy(np, host))
		return NULL;
	return v;
}
