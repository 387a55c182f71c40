/* jtext.c: JSON strings of bytes from peers (jtext.h). */
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "metrics/jtext.h"
#include "util/xmalloc.h"

/* The length of the valid UTF-8 sequence at p (n > 0 bytes), or 0. */
static size_t
utf8_seq(const unsigned char *p, size_t n)
{
	size_t len;
	uint32_t c;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, c = p[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
	    (len == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	return len;
}

int
jtext_utf8_ok(const void *v, size_t n)
{
	const uint8_t *p = v;
	size_t i = 0, l;

	while (i < n) {
		if (p[i] == 0 || (l = utf8_seq(p + i, n - i)) == 0)
			return 0;
		i += l;
	}
	return 1;
}

json_t *
jtextn(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	char *tmp;
	size_t i = 0, o = 0, l;
	json_t *j;

	if (s == NULL)
		return json_null();
	if (jtext_utf8_ok(p, n))
		return json_stringn(s, n);
	tmp = xmalloc(n * 3 + 1);
	while (i < n) {
		if (p[i] != 0 && (l = utf8_seq(p + i, n - i)) > 0) {
			memcpy(tmp + o, p + i, l);
			o += l;
			i += l;
		} else {
			memcpy(tmp + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	j = json_stringn(tmp, o);
	free(tmp);
	return j;
}

json_t *
jtext(const char *s)
{
	return s == NULL ? json_null() : jtextn(s, strlen(s));
}

