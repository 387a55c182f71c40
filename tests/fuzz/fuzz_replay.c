/* fuzz_replay.c: libFuzzer harness for the inspector's replay input
 * (inspect_replay_parse): any POST body either builds a request whose
 * head is one well-formed request line, headers without CR/LF inside, and
 * a blank line, within HTTP_HEAD_MAX, or is refused with 400/409 and a
 * message, leaving the output untouched. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "client/inspect.h"
#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = { "Host", "Authorization",
	"Transfer-Encoding" };
static const char *const values[] = { "web.example.com", "[redacted]",
	"chunked" };
static const unsigned char red[] = { 0, 1, 0 };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct inspect_req_view v = { "POST", "/hook", "HTTP/1.1", 3, names,
		values, red, (const uint8_t *)"5\r\nhello\r\n0\r\n\r\n", 15,
		15, (int)(size & 1), NULL };
	struct evbuffer *out = evbuffer_new();
	char err[256];
	int code = 0, rc;

	rc = inspect_replay_parse((const char *)data, size, &v, "r1", out,
	    &code, err, sizeof(err));
	if (rc < 0) {
		if ((code != 400 && code != 409) || err[0] == '\0' ||
		    evbuffer_get_length(out) != 0)
			abort();
	} else {
		size_t len = evbuffer_get_length(out), hl, i;
		const char *p = (const char *)evbuffer_pullup(out, -1);
		struct evbuffer_ptr e = evbuffer_search(out, "\r\n\r\n", 4,
		    NULL);
		const char *sp1, *sp2, *eol;

		if (rc != 0 || e.pos < 0)
			abort();
		hl = (size_t)e.pos + 4;
		if (hl > HTTP_HEAD_MAX || hl > len)
			abort();
		/* request line: TOKEN SP /URI SP HTTP/1.x CRLF */
		eol = memchr(p, '\r', hl);
		sp1 = memchr(p, ' ', hl);
		if (eol == NULL || sp1 == NULL || sp1 > eol || sp1 == p ||
		    sp1[1] != '/')
			abort();
		sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
		if (sp2 == NULL || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
			abort();
		/* every LF of the head ends a CRLF line */
		for (i = 0; i < hl; i++)
			if ((p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) ||
			    p[i] == '\0')
				abort();
		/* what http_track makes of it is a request head, too */
		{
			struct http_track *t = http_track_new(1);
			struct http_head h;
			size_t used;
			enum http_track_ev ev = http_track_feed(t,
			    (const uint8_t *)p, hl, &used, &h);
			/* a token method http-parser does not know is an
			 * error there, not here; a head it takes must be
			 * whole */
			if ((ev == HTTP_T_HEAD || ev == HTTP_T_UPGRADE) &&
			    used != hl)
				abort();
			http_track_free(t);
		}
	}
	evbuffer_free(out);
	return 0;
}
