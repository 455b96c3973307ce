/* Human-readable rendering of pyheapd replies (stdout). Each takes an ok
 * reply (borrowed) and tolerates missing fields. */
#ifndef PYHEAP_CLI_RENDER_H
#define PYHEAP_CLI_RENDER_H

#include <jansson.h>

void pyheap_render_top(const json_t *rep);
void pyheap_render_ps(const json_t *rep);
void pyheap_render_attach(const json_t *rep);
void pyheap_render_detach(const json_t *rep);
void pyheap_render_ping(const json_t *rep);
/* The referrers report: the asked type, the referrer tree indented by
 * depth (largest first), the shortest paths from roots, the unreachable
 * count. */
void pyheap_render_referrers(const json_t *rep);
/* The referrer tree as a Graphviz digraph (edges point from referrer to
 * referent, labelled with the edge). */
void pyheap_render_referrers_dot(const json_t *rep);

/* "1.5 MiB" style size into BUF. */
void pyheap_human_bytes(unsigned long long b, char *buf, size_t sz);

#endif
