/*
 * jtext.h: a JSON string of bytes that came from a peer or a user (a URI,
 * a header, a tunnel's name, a certificate subject): jansson refuses
 * invalid UTF-8 (json_string returns NULL, and a json_pack with it fails
 * whole), so invalid sequences and NUL bytes become U+FFFD here.
 */
#ifndef MG_JTEXT_H
#define MG_JTEXT_H

#include <stddef.h>

#include <jansson.h>

/* jtextn: the JSON string of s[0..n); jtext: of the C string s. NULL s
 * gives JSON null. A new reference (for "o" in json_pack). */
json_t *jtextn(const char *s, size_t n);
json_t *jtext(const char *s);
/* jtext_utf8_ok: p[0..n) is valid UTF-8 without NUL bytes (a body that
 * can go into JSON as text, not base64) */
int jtext_utf8_ok(const void *p, size_t n);

#endif
