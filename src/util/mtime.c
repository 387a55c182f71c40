/* mtime.c: the monotonic clock; see mtime.h. */
#include <stdlib.h>
#include <time.h>

#include "util/mtime.h"

static void
mtime_read(struct timespec *ts)
{
	/* cannot fail for CLOCK_MONOTONIC on Linux; if it did, every
	 * timeout would be wrong, which is worse than stopping */
	if (clock_gettime(CLOCK_MONOTONIC, ts) != 0)
		abort();
}

uint64_t
mtime_ms(void)
{
	struct timespec ts;

	mtime_read(&ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t
mtime_us(void)
{
	struct timespec ts;

	mtime_read(&ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
