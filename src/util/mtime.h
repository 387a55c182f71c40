/*
 * mtime.h: the monotonic clock that every timeout and interval reads
 * (CLOCK_MONOTONIC: never stepped by settimeofday, NTP or a person), so a
 * wall-clock step neither expires every session at once nor makes an
 * interval wrap. The wall clock is only for what a person reads (log
 * stamps, certificates).
 */
#ifndef MG_MTIME_H
#define MG_MTIME_H

#include <stdint.h>

/* mtime_ms, mtime_us: milliseconds / microseconds since an arbitrary
 * fixed point (the boot, on Linux). Only differences mean anything. */
uint64_t mtime_ms(void);
uint64_t mtime_us(void);

#endif
