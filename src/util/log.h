/* log.h: the process-wide logger (levels, timestamps, to stderr). */
#ifndef MG_LOG_H
#define MG_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* log_set_level: messages above level are dropped. */
void log_set_level(enum log_level level);
/* log_level_parse: "error|warn|info|debug" to *out; 0 or MG_EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * log_defer_start: from now on, lines logged with log_info_later (one per
 * HTTP request, say) are gathered and written 50 ms after the first of
 * them, or at 16 KiB: the write to stderr (some microseconds, more to a
 * file) never sits between reading an answer and passing it on, and a busy
 * tunnel writes many lines in one write(2). Any other line, log_flush and log_defer_stop write what is
 * gathered first, so the order holds. log_defer_stop before the base is
 * freed.
 */
struct event_base;
void log_defer_start(struct event_base *base);
void log_defer_stop(void);
void log_flush(void);
void log_msg_later(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * log_esc: bytes a peer chose (a name, a host, a path, an agent string),
 * made safe for a log line, as OpenSSH's strnvis: printable ASCII as is
 * but a backslash doubled, every other byte as \xHH; cut with "..." to fit cap
 * (at least 4). Returns out, always NUL-terminated.
 */
char *log_esc(const void *p, size_t len, char *out, size_t cap);
/* LOG_ESC_MAX: room for a 255-byte name escaped in full. */
#define LOG_ESC_MAX (255 * 4 + 4)

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_info_later(...) log_msg_later(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                        \
	do {                                                                  \
		if (log_enabled(LOG_DEBUG))                                   \
			log_msg(LOG_DEBUG, __VA_ARGS__);                      \
	} while (0)

#endif
