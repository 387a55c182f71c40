/* test_proxyurl.c: proxy URLs (schemes, credentials with percent-encoding,
 * IPv6, default ports, what is refused and how it is said) and NO_PROXY
 * as curl reads it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/proxyurl.h"

static void
test_parse(void **state)
{
	struct proxy_url u;
	char why[300], buf[600];

	(void)state;
	assert_int_equal(proxy_url_parse("http://alice:s%3Acr%40t@proxy.corp:3128/",
	    &u, why, sizeof(why)), 0);
	assert_int_equal(u.kind, PROXY_URL_HTTP);
	assert_string_equal(u.host, "proxy.corp");
	assert_int_equal(u.port, 3128);
	assert_string_equal(u.user, "alice");
	assert_string_equal(u.pass, "s:cr@t");
	/* the password never shows */
	assert_string_equal(proxy_url_str(&u, buf, sizeof(buf)),
	    "http://alice@proxy.corp:3128");

	/* a bare host:port is HTTP; curl's default port is 1080 */
	assert_int_equal(proxy_url_parse("10.0.0.1", &u, why, sizeof(why)), 0);
	assert_int_equal(u.kind, PROXY_URL_HTTP);
	assert_int_equal(u.port, 1080);
	assert_int_equal(proxy_url_parse("SOCKS5H://[::1]:9050", &u, why,
	    sizeof(why)), 0);
	assert_int_equal(u.kind, PROXY_URL_SOCKS5H);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 9050);
	assert_string_equal(proxy_url_str(&u, buf, sizeof(buf)),
	    "socks5h://[::1]:9050");
	assert_int_equal(proxy_url_parse("socks5://u@h", &u, why, sizeof(why)),
	    0);
	assert_string_equal(u.user, "u");
	assert_string_equal(u.pass, "");
	/* an @ in a password that was not encoded: the last one ends it */
	assert_int_equal(proxy_url_parse("http://a:b@c@h:1", &u, why,
	    sizeof(why)), 0);
	assert_string_equal(u.pass, "b@c");
	assert_string_equal(u.host, "h");

	/* refused, each saying why, never with the password */
	assert_int_equal(proxy_url_parse("https://h:1", &u, why, sizeof(why)),
	    -1);
	assert_non_null(strstr(why, "not supported"));
	assert_int_equal(proxy_url_parse("socks4://h:1", &u, why, sizeof(why)),
	    -1);
	assert_non_null(strstr(why, "\"socks4\""));
	assert_int_equal(proxy_url_parse("http://h:0", &u, why, sizeof(why)),
	    -1);
	assert_int_equal(proxy_url_parse("http://h:65536", &u, why,
	    sizeof(why)), -1);
	assert_int_equal(proxy_url_parse("http://h:8x", &u, why, sizeof(why)),
	    -1);
	assert_int_equal(proxy_url_parse("http://h:1/path", &u, why,
	    sizeof(why)), -1);
	assert_int_equal(proxy_url_parse("http://u:secret%zz@h:1", &u, why,
	    sizeof(why)), -1);
	assert_null(strstr(why, "secret"));
	assert_int_equal(proxy_url_parse("http://u:p@:1", &u, why, sizeof(why)),
	    -1);
	assert_null(strstr(why, "u:p"));
	assert_int_equal(proxy_url_parse("http://[::1", &u, why, sizeof(why)),
	    -1);
	assert_int_equal(proxy_url_parse("http://u:%00@h:1", &u, why,
	    sizeof(why)), -1);
}

static void
test_no_proxy(void **state)
{
	(void)state;
	assert_int_equal(proxy_no_proxy("*", "anything.example"), 1);
	assert_int_equal(proxy_no_proxy("example.com", "example.com"), 1);
	assert_int_equal(proxy_no_proxy("example.com", "a.b.EXAMPLE.com"), 1);
	assert_int_equal(proxy_no_proxy(".example.com", "a.example.com"), 1);
	assert_int_equal(proxy_no_proxy("example.com", "badexample.com"), 0);
	assert_int_equal(proxy_no_proxy("a.example.com", "example.com"), 0);
	assert_int_equal(proxy_no_proxy("localhost, 127.0.0.0/8", "127.9.0.1"),
	    1);
	assert_int_equal(proxy_no_proxy("10.0.0.0/8", "11.0.0.1"), 0);
	assert_int_equal(proxy_no_proxy("10.1.2.3", "10.1.2.3"), 1);
	assert_int_equal(proxy_no_proxy("10.1.2.3", "10.1.2.4"), 0);
	assert_int_equal(proxy_no_proxy("fd00::/8", "fd12::1"), 1);
	assert_int_equal(proxy_no_proxy("fd00::/8", "fe80::1"), 0);
	assert_int_equal(proxy_no_proxy("::1", "::1"), 1);
	assert_int_equal(proxy_no_proxy("10.0.0.0/33", "10.0.0.1"), 0);
	assert_int_equal(proxy_no_proxy("a.com,*", "b.com"), 1);
	assert_int_equal(proxy_no_proxy("*.com", "b.com"), 0);
	assert_int_equal(proxy_no_proxy("", "b.com"), 0);
	assert_int_equal(proxy_no_proxy(NULL, "b.com"), 0);
	assert_int_equal(proxy_no_proxy(" , ,", "b.com"), 0);
}

static void
test_env(void **state)
{
	const char *name;

	(void)state;
	unsetenv("HTTPS_PROXY");
	unsetenv("https_proxy");
	unsetenv("ALL_PROXY");
	unsetenv("all_proxy");
	unsetenv("NO_PROXY");
	unsetenv("no_proxy");
	assert_null(proxy_from_env("srv.example", &name));
	setenv("all_proxy", "socks5://p:1", 1);
	assert_string_equal(proxy_from_env("srv.example", &name),
	    "socks5://p:1");
	assert_string_equal(name, "all_proxy");
	setenv("https_proxy", "http://q:2", 1);
	assert_string_equal(proxy_from_env("srv.example", &name), "http://q:2");
	assert_string_equal(name, "https_proxy");
	setenv("HTTPS_PROXY", "http://r:3", 1);
	assert_string_equal(proxy_from_env("srv.example", &name), "http://r:3");
	assert_string_equal(name, "HTTPS_PROXY");
	setenv("no_proxy", "example", 1);
	assert_null(proxy_from_env("srv.example", &name));
	assert_non_null(proxy_from_env("srv.example.org", &name));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_no_proxy),
		cmocka_unit_test(test_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
