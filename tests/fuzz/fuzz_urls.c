/* fuzz_urls.c: libFuzzer harness for the text an operator or the
 * environment gives: proxy URLs and NO_PROXY lists (util/proxyurl.h),
 * Redis URLs (cluster/rstore.h) and group strategies (server/lb.h). The
 * input is split at its first NUL: a URL or list, then a host. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/rstore.h"
#include "server/lb.h"
#include "util/proxyurl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[2048], buf[700], why[300], hdr[LB_HEADER_MAX];
	const char *host, *err;
	struct proxy_url u;
	struct rstore_url r;
	enum lb_strategy st;
	size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;

	memcpy(s, data, n);
	s[n] = '\0';
	host = strlen(s) < n ? s + strlen(s) + 1 : "example.org";
	if (proxy_url_parse(s, &u, why, sizeof(why)) == 0) {
		/* a parsed URL has a host and a port, and prints without its
		 * password */
		if (u.host[0] == '\0' || u.port == 0)
			abort();
		char cred[600];
		proxy_url_str(&u, buf, sizeof(buf));
		snprintf(cred, sizeof(cred), "%s:%s@", u.user, u.pass);
		if (u.pass[0] && strstr(buf, cred) != NULL)
			abort();
	} else if (why[0] == '\0')
		abort(); /* a refusal names its reason */
	(void)proxy_no_proxy(s, host);
	if (rstore_url_parse(s, &r, why, sizeof(why)) == 0) {
		if (r.host[0] == '\0' || r.port < 1 || r.port > 65535 ||
		    r.db < 0)
			abort();
	} else if (why[0] == '\0')
		abort();
	if (lb_parse_strategy(s, strlen(s), &st, hdr, &err) == 0 &&
	    st == LB_HASH_HEADER && hdr[0] == '\0')
		abort();
	return 0;
}
