/* libFuzzer harness: the snapshot file reader (lib/snapfile.c) on arbitrary
 * bytes. When the first byte is odd, the checksums are recomputed first
 * (pyheap_snapfile_seal) so that mutations reach the structural checks
 * behind them. Whatever parses is then used: histogram, every edge and
 * label, roots, and a referrers report. Build and run: `make fuzz`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pyheap.h"
#include "snapfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int seal = data[0] & 1;
    data++;
    size--;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (seal)
        pyheap_snapfile_seal(buf, size);
    pyheap_snapshot *s = NULL;
    pyheap_error err;
    memset(&err, 0, sizeof err);
    if (pyheap_snapfile_parse(buf, size, &s, NULL, &err) < 0) {
        if (err.code == PYHEAP_OK || memchr(err.msg, '\0', sizeof err.msg) == NULL)
            abort();
        free(buf);
        return 0;
    }
    size_t n = pyheap_snapshot_count(s);
    char label[128];
    for (size_t i = 0; i < n; i++) {
        if (pyheap_snapshot_type(s, (size_t)i) >= pyheap_snapshot_ntypes(s))
            abort();
        for (size_t k = 0; k < pyheap_snapshot_nedges(s, i); k++) {
            if (pyheap_snapshot_edge_target(s, i, k) >= n)
                abort();
            pyheap_snapshot_edge_label(s, i, k, label, sizeof label);
        }
    }
    for (size_t r = 0; r < pyheap_snapshot_nroots(s); r++)
        if (pyheap_snapshot_root_object(s, r) >= n || !pyheap_snapshot_root_name(s, r))
            abort();
    pyheap_type_stat *hist = NULL;
    size_t nh = 0;
    if (pyheap_histogram(s, PYHEAP_SORT_BYTES, &hist, &nh, &err) == 0 && nh > 0) {
        uint32_t t = hist[0].type;
        pyheap_referrers *ref = NULL;
        pyheap_referrers_opts ro = { 0 };
        if (pyheap_referrers_compute(s, &t, 1, &ro, &ref, &err) == 0)
            pyheap_referrers_free(ref);
    }
    free(hist);
    pyheap_snapshot_free(s);
    free(buf);
    return 0;
}
