/* clock.h -- wall-clock time for names and logs (Lua scripts use Redis's
 * own TIME for anything that is compared across the fleet). */
#ifndef FK_CLOCK_H
#define FK_CLOCK_H

/* Milliseconds since the epoch (CLOCK_REALTIME). */
long long fk_now_ms(void);

#endif
