/*
 * proxyurl.h: the proxy settings of an agent: a proxy URL
 * ("http://user:pass@host:port", "socks5://...", "socks5h://...") and the
 * environment as curl reads it (HTTPS_PROXY, ALL_PROXY, NO_PROXY, also in
 * lower case). Pure parsing; relay/proxydial.h dials through one.
 */
#ifndef MG_PROXYURL_H
#define MG_PROXYURL_H

#include <stddef.h>
#include <stdint.h>

enum proxy_kind {
	PROXY_URL_HTTP = 1,     /* http://: CONNECT */
	PROXY_URL_SOCKS5,       /* socks5://: the name resolved here */
	PROXY_URL_SOCKS5H,      /* socks5h://: the proxy resolves it */
};

struct proxy_url {
	enum proxy_kind kind;
	char host[256];
	uint16_t port;          /* default 1080 for SOCKS, 8080 for HTTP */
	char user[256], pass[256]; /* percent-decoded; "" when none */
};

/*
 * proxy_url_parse: "http://[user[:pass]@]host[:port]",
 * "socks5://...", "socks5h://..." (a bare "host:port" is HTTP, as curl
 * reads it; IPv6 hosts in brackets) into *u. 0, or -1 with why naming the
 * problem (the text never repeats the password).
 */
int proxy_url_parse(const char *s, struct proxy_url *u, char *why,
    size_t wl);

/* proxy_url_str: u without its password, for messages:
 * "http://alice@proxy.example:3128"; returns buf */
const char *proxy_url_str(const struct proxy_url *u, char *buf, size_t cap);

/*
 * proxy_no_proxy: does a NO_PROXY list ("a.example, .b.example,
 * 10.0.0.0/8, ::1, *") exempt host (a name or an address, no brackets)?
 * As curl: "*" alone exempts all; a name entry matches the host or any
 * name under it (a leading dot is optional); an address or CIDR entry
 * matches addresses. 1 or 0.
 */
int proxy_no_proxy(const char *list, const char *host);

/*
 * proxy_from_env: the proxy to reach host through, from getenv:
 * HTTPS_PROXY (then https_proxy), else ALL_PROXY (then all_proxy); none
 * when NO_PROXY (or no_proxy) exempts host. Returns the variable's value
 * (borrowed from the environment) and its name in *name, or NULL.
 */
const char *proxy_from_env(const char *host, const char **name);

#endif
