/* xmalloc.h: allocation that aborts on failure (an application, not a
 * library: every peer-driven buffer has a cap, so only a real shortage of
 * memory can get here). */
#ifndef MG_XMALLOC_H
#define MG_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
