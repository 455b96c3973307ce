/* Running tests/targets/known_heap.py (with its in-process ground truth)
 * under a host interpreter or, with chroot, under one of the cached Debian
 * sid root (tools/sid-root), and checking a scan against it
 * (tests/knownheap.c; used by test_walk.c and test_walk_versions.c). */
#ifndef PYHEAP_KNOWNHEAP_H
#define PYHEAP_KNOWNHEAP_H

#include <stdbool.h>
#include <sys/types.h>

#include "pyheap.h"

struct kh {
    pid_t pid;
    char script[64];  /* tests/targets/ script name */
    char dir[512];    /* the output directory, as the host sees it */
    char root[256];   /* chroot directory, "" for a host interpreter */
    char label[128];  /* "python3.14 (sid chroot)" etc., for messages */
};

/* The cached sid root ($PYHEAP_SID_ROOT or /var/cache/pyheap/sid-root). */
const char *kh_sid_root(void);

/* Start PYTHON known_heap.py DIR [EXTRA] and wait for DIR/ready. ROOT NULL:
 * PYTHON is a host path; else the target runs as `chroot ROOT PYTHON`,
 * with the scripts copied to ROOT/tmp/pyheap-kh-XXXXXX (removed by
 * kh_stop). The target dies with the test process. */
void kh_start(struct kh *k, const char *root, const char *python, const char *extra);
/* The same for another script of tests/targets/ that takes OUTDIR [EXTRA]
 * and writes OUTDIR/ready (e.g. referrers.py). */
void kh_start_script(struct kh *k, const char *root, const char *python, const char *script,
                     const char *extra);
/* Kill the target and remove everything kh_start created. */
void kh_stop(struct kh *k);
/* The target's progress counter (-1 if unreadable). */
long kh_counter(const struct kh *k);
void kh_path(const struct kh *k, const char *name, char *out, size_t cap);

/* Open the started target (SOURCES: pyheap_open_opts.allowed_sources),
 * check it reports WANT_SOURCE, scan it while it runs and compare with
 * its ground truth: counts of known_heap's own classes exact; dict, list,
 * tuple, str, int, float, bytes, set counts and bytes within 2%; total
 * objects within 2%, bytes within 5%; per object same address, type and
 * size for >= 99.5% of the common objects. Prints the figures to stderr.
 * MORE (if not NULL) runs further checks on the snapshot. */
void kh_check_accuracy(struct kh *k, unsigned sources, pyheap_offsets_source want_source,
                       void (*more)(struct kh *k, const pyheap_snapshot *s));

/* For a started tests/targets/attrs.py: scan it with 1 and 2 walker
 * threads; every Holder's .a/.b/.c/.d edge to its value (a str, bytes,
 * tuple, float: a swapped label shows) is found, no other edge from a
 * Holder, and each value is an object of its own. Prints the counts to
 * stderr. */
void kh_check_attrs(struct kh *k);

#endif
