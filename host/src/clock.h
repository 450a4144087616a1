/* clock - milliseconds and condition variables on the monotonic clock, so
 * timed waits survive wall-clock jumps. */
#ifndef SPOKE_CLOCK_H
#define SPOKE_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC / since the Unix epoch. */
int64_t clock_mono_ms(void);
int64_t clock_wall_ms(void);
int64_t clock_mono_ns(void);
/* Nanoseconds since the Unix epoch as of the kernel's last clock tick
 * (CLOCK_REALTIME_COARSE): a few ns where a precise read costs ~35, and it
 * changes once per tick (1-4 ms), so a change means a tick passed. */
int64_t clock_wall_tick_ns(void);
/* A condition variable whose timed waits use CLOCK_MONOTONIC. */
void clock_cond_init(pthread_cond_t *c);
/* The absolute timespec of a CLOCK_MONOTONIC deadline in ms. */
void clock_deadline_ts(struct timespec *ts, int64_t deadline_ms);

#endif
