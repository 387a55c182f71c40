/* log.c: one logger for the process; lines go to stderr, unbuffered. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "util/err.h"
#include "util/log.h"

static enum log_level cur_level = LOG_INFO;

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

void
log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *tags[] = { "ERROR", "WARN ", "INFO ", "DEBUG" };
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	va_list ap;

	if (level > cur_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += snprintf(line + n, sizeof(line) - n, ".%03dZ %s ",
	    (int)(tv.tv_usec / 1000), tags[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	n = strlen(line);
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}
