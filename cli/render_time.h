/* Rendering of the issue 5 replies: growth, diff, stats, snapshots,
 * snapshot (stdout). Each takes an ok reply (borrowed). */
#ifndef PYHEAP_CLI_RENDER_TIME_H
#define PYHEAP_CLI_RENDER_TIME_H

#include <jansson.h>

void pyheap_render_growth(const json_t *rep);
void pyheap_render_diff(const json_t *rep);
void pyheap_render_stats(const json_t *rep);
void pyheap_render_snapshots(const json_t *rep);

#endif
