/* http_int.h: what the files of src/http share and nobody else uses. */
#ifndef MG_HTTP_INT_H
#define MG_HTTP_INT_H

#include <stddef.h>
#include <stdint.h>

/*
 * http_request_head_check: is head[0..len) a request head that
 * http_rewrite_head accepts (request line, "name: value" lines, no obs-fold,
 * ending exactly with the empty line)? 0 or MG_EPROTO. The tracker holds
 * requests to it, because Debian's http-parser is built non-strict (it
 * takes "Bad Header: x" and "HTTQ/1.1").
 */
int http_request_head_check(const uint8_t *head, size_t len);

#endif
