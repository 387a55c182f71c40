/* log.c: one logger for the process; lines go to stderr, unbuffered, but
 * for the deferred ones (log_info_later), see log.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "util/err.h"
#include "util/log.h"

static enum log_level cur_level = LOG_INFO;

#define DEFER_CAP 16384 /* written at once when full */
#define DEFER_MS 50      /* or this long after the first line waits */
static char defer_buf[DEFER_CAP];
static size_t defer_len;
static struct event *defer_ev;

/* One write(2) for the whole batch: through the line-buffered stderr it
 * would be a write per line. */
void
log_flush(void)
{
	size_t off = 0;

	if (defer_len == 0)
		return;
	fflush(stderr);
	/* bounded: each round writes bytes or stops (EINTR aside) */
	while (off < defer_len) {
		ssize_t n = write(STDERR_FILENO, defer_buf + off,
		    defer_len - off);

		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno == EINTR)
			continue;
		else
			break; /* nowhere to log: the lines are lost, not the process */
	}
	defer_len = 0;
}

static void
defer_on_flush(evutil_socket_t fd, short what, void *arg)
{
	log_flush();
}

void
log_defer_start(struct event_base *base)
{
	static int registered;

	if (!registered && atexit(log_flush) == 0)
		registered = 1; /* an exit() from a callback loses nothing */
	log_defer_stop();
	defer_ev = event_new(base, -1, 0, defer_on_flush, NULL);
}

void
log_defer_stop(void)
{
	log_flush();
	if (defer_ev != NULL)
		event_free(defer_ev);
	defer_ev = NULL;
}

void
log_set_level(enum log_level level)
{
	cur_level = level;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return MG_EINVAL;
}

int
log_enabled(enum log_level level)
{
	return level <= cur_level;
}

static void
log_vmsg(enum log_level level, int later, const char *fmt, va_list ap)
{
	static const char *tags[] = { "ERROR", "WARN ", "INFO ", "DEBUG" };
	/* the date and time to the second, formatted once a second */
	static char stamp[32];
	static size_t stamp_len;
	static time_t stamp_sec = -1;
	char line[2048];
	struct timeval tv;
	size_t n;

	gettimeofday(&tv, NULL);
	if (tv.tv_sec != stamp_sec) {
		struct tm tm;

		gmtime_r(&tv.tv_sec, &tm);
		stamp_len = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S",
		    &tm);
		stamp_sec = tv.tv_sec;
	}
	memcpy(line, stamp, stamp_len);
	n = stamp_len;
	n += snprintf(line + n, sizeof(line) - n, ".%03dZ %s ",
	    (int)(tv.tv_usec / 1000), tags[level]);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	n = strlen(line);
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (later && defer_ev != NULL) {
		if (defer_len + n > DEFER_CAP)
			log_flush();
		memcpy(defer_buf + defer_len, line, n);
		if (defer_len == 0) {
			struct timeval delay = { 0, DEFER_MS * 1000 };
			event_add(defer_ev, &delay);
		}
		defer_len += n;
		return;
	}
	log_flush();
	fwrite(line, 1, n, stderr);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level > cur_level)
		return;
	va_start(ap, fmt);
	log_vmsg(level, 0, fmt, ap);
	va_end(ap);
}

void
log_msg_later(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level > cur_level)
		return;
	va_start(ap, fmt);
	log_vmsg(level, 1, fmt, ap);
	va_end(ap);
}

char *
log_esc(const void *p, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = p;
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		size_t need = (c >= 0x20 && c < 0x7f) ? (c == '\\' ? 2 : 1) : 4;
		if (o + need + 4 > cap) { /* room for "..." and the NUL */
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
		} else if (c >= 0x20 && c < 0x7f) {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}
