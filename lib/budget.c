/* The per-scan time budget of a target (pyheap.h), kept by its reader. */
#include <time.h>

#include "internal.h"

void pyheap_target_set_time_budget(pyheap_target *t, uint64_t ms)
{
    if (!t || !t->mem)
        return;
    uint64_t deadline = 0;
    if (ms) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        deadline = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + ms * 1000000u;
    }
    pyheap_mem_set_deadline(t->mem, deadline);
}

int pyheap_target_budget_spent(const pyheap_target *t)
{
    return t && t->mem && pyheap_mem_deadline_hit(t->mem);
}
