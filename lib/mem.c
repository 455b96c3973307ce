/*
 * The remote reader: process_vm_readv with a cache of aligned chunks.
 *
 * One read per small object costs a syscall (~1-2 us); a 64 KiB chunk costs
 * about the same, so the walker reads through the cache and decodes locally.
 * A chunk keeps the bytes first read until the cache is cleared or full
 * (then every chunk is forgotten at once and the buffers are reused).
 * Unreadable pages inside a chunk (mapping edges, freed arenas) are
 * remembered per page so they fail like EFAULT without asking the kernel
 * again.
 *
 * For unit tests the same API serves reads from in-memory "images".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "internal.h"

#define CHUNK_SHIFT 16
#define CHUNK_SIZE ((uint64_t)1 << CHUNK_SHIFT)
#define PAGE_SHIFT_ 12
#define PAGE_SIZE_ ((uint64_t)1 << PAGE_SHIFT_)
#define PAGES_PER_CHUNK (CHUNK_SIZE / PAGE_SIZE_)
/* Small enough to stay well below the target's heap, large enough that the
 * walk's locality (allocation order) keeps re-reads to one extra pass. */
#define DEFAULT_CACHE_CAP ((uint64_t)64 << 20)
#define MIN_CACHE_CAP (CHUNK_SIZE * 16)

static void cache_evict(pyheap_mem *m);
static void windows_empty(pyheap_mem *m);

struct chunk {
    uint64_t base;          /* chunk-aligned remote address; 0 = empty slot */
    uint16_t valid;         /* bit i: page i readable */
    unsigned char *data;    /* CHUNK_SIZE bytes, or NULL if no page readable */
};

struct image {
    uint64_t addr;
    size_t len;
    unsigned char *data;
};

struct pyheap_mem {
    pid_t pid;
    int is_image;
    /* cache: open addressing over chunk bases */
    struct chunk *slots;
    size_t nslots;          /* power of two */
    size_t nused;
    uint64_t cache_bytes;
    uint64_t cache_cap;
    uint64_t open_cap;      /* the cap given to pyheap_mem_open */
    /* images */
    struct image *images;
    size_t nimages;
    /* the chunk of the last hit (most reads fall in the chunk before) */
    struct chunk *last;
    /* the caller's windows into chunks (pyheap_mem_window_get): emptied
     * when chunk buffers are evicted or freed */
    struct pyheap_mem_window *wins;
    size_t nwin;
    /* buffers of evicted chunks, reused before asking malloc (fresh pages
     * cost a page fault each) */
    unsigned char **spare;
    size_t nspare, capspare;
    /* counters */
    uint64_t reads;
    uint64_t bytes;
    /* time budget (pyheap_mem_set_deadline): CLOCK_MONOTONIC ns, 0 = none */
    uint64_t deadline_ns;
    unsigned deadline_tick;
    int deadline_hit;
};

/* Past the deadline? Looked at every 64 reads (clock_gettime is cheap but
 * not free); once hit, every later read fails until the deadline is reset. */
static int over_deadline(pyheap_mem *m)
{
    if (!m->deadline_ns)
        return 0;
    if (m->deadline_hit)
        return 1;
    if ((m->deadline_tick++ & 63) != 0)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if (now >= m->deadline_ns)
        m->deadline_hit = 1;
    return m->deadline_hit;
}

void pyheap_mem_set_deadline(pyheap_mem *m, uint64_t deadline_ns)
{
    m->deadline_ns = deadline_ns;
    m->deadline_tick = 0;
    m->deadline_hit = 0;
}

int pyheap_mem_deadline_hit(const pyheap_mem *m)
{
    return m->deadline_hit;
}

uint64_t pyheap_mem_deadline(const pyheap_mem *m)
{
    return m->deadline_ns;
}

void pyheap_mem_deadline_merge(pyheap_mem *m, const pyheap_mem *other)
{
    if (other->deadline_hit)
        m->deadline_hit = 1;
}

_Static_assert(PAGES_PER_CHUNK <= 16, "valid bitmap is 16 bits");
#define ALL_PAGES ((uint16_t)((1u << PAGES_PER_CHUNK) - 1))

int pyheap_mem_open(pid_t pid, uint64_t max_cache_bytes, pyheap_mem **out,
                    pyheap_error *err)
{
    if (pid <= 0)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0, "invalid PID %d", (int)pid);
    pyheap_mem *m = calloc(1, sizeof *m);
    if (!m)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    m->pid = pid;
    m->open_cap = max_cache_bytes ? max_cache_bytes : DEFAULT_CACHE_CAP;
    pyheap_mem_set_cache_cap(m, 0);
    *out = m;
    return 0;
}

void pyheap_mem_set_cache_cap(pyheap_mem *m, uint64_t cap)
{
    if (!cap)
        cap = m->open_cap;
    if (cap < MIN_CACHE_CAP)
        cap = MIN_CACHE_CAP;
    m->cache_cap = cap;
    if (m->cache_bytes >= m->cache_cap)
        cache_evict(m);
}

int pyheap_mem_open_image(pyheap_mem **out, pyheap_error *err)
{
    pyheap_mem *m = calloc(1, sizeof *m);
    if (!m)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    m->is_image = 1;
    m->pid = 0;
    *out = m;
    return 0;
}

int pyheap_mem_image_add(pyheap_mem *m, uint64_t addr, const void *data,
                         size_t len, pyheap_error *err)
{
    if (!m || !m->is_image || len == 0 || addr + len < addr)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, addr, "invalid image region");
    struct image *n = realloc(m->images, (m->nimages + 1) * sizeof *n);
    if (!n)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    m->images = n;
    unsigned char *copy = malloc(len);
    if (!copy)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    memcpy(copy, data, len);
    m->images[m->nimages++] = (struct image){ .addr = addr, .len = len, .data = copy };
    return 0;
}

static void windows_empty(pyheap_mem *m)
{
    for (size_t i = 0; i < m->nwin; i++)
        m->wins[i] = (struct pyheap_mem_window){ 0 };
}

void pyheap_mem_cache_clear(pyheap_mem *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nslots; i++)
        free(m->slots[i].data);
    free(m->slots);
    m->slots = NULL;
    m->nslots = 0;
    m->nused = 0;
    m->cache_bytes = 0;
    m->last = NULL;
    windows_empty(m);
    for (size_t i = 0; i < m->nspare; i++)
        free(m->spare[i]);
    free(m->spare);
    m->spare = NULL;
    m->nspare = m->capspare = 0;
}

/* The cache is full: forget every chunk but keep the buffers for reuse. */
static void cache_evict(pyheap_mem *m)
{
    size_t need = m->nspare + m->nused;
    if (need > m->capspare) {
        unsigned char **n = realloc(m->spare, need * sizeof *n);
        if (!n) {
            pyheap_mem_cache_clear(m);
            return;
        }
        m->spare = n;
        m->capspare = need;
    }
    for (size_t i = 0; i < m->nslots; i++) {
        if (m->slots[i].data)
            m->spare[m->nspare++] = m->slots[i].data;
        m->slots[i] = (struct chunk){ 0 };
    }
    m->nused = 0;
    m->cache_bytes = 0;
    m->last = NULL;
    windows_empty(m);
}

void pyheap_mem_cache_forget(pyheap_mem *m)
{
    if (m)
        cache_evict(m);
}

void pyheap_mem_free(pyheap_mem *m)
{
    if (!m)
        return;
    pyheap_mem_cache_clear(m);
    for (size_t i = 0; i < m->nimages; i++)
        free(m->images[i].data);
    free(m->images);
    free(m);
}

void pyheap_mem_counters(const pyheap_mem *m, uint64_t *reads, uint64_t *bytes)
{
    if (reads)
        *reads = m ? m->reads : 0;
    if (bytes)
        *bytes = m ? m->bytes : 0;
}

/* Serve [addr, addr+len) from the images; the range may span adjacent
 * images. Returns 0 or -1 (EFAULT). */
static int image_read(pyheap_mem *m, uint64_t addr, unsigned char *buf, size_t len)
{
    while (len > 0) {
        const struct image *hit = NULL;
        for (size_t i = 0; i < m->nimages; i++) {
            const struct image *im = &m->images[i];
            if (addr >= im->addr && addr - im->addr < im->len) {
                hit = im;
                break;
            }
        }
        if (!hit)
            return -1;
        size_t off = (size_t)(addr - hit->addr);
        size_t n = hit->len - off;
        if (n > len)
            n = len;
        memcpy(buf, hit->data + off, n);
        buf += n;
        addr += n;
        len -= n;
    }
    return 0;
}

/* One process_vm_readv of LEN bytes. Returns bytes read (may be short) or
 * -1 with errno set. */
static ssize_t raw_read(pyheap_mem *m, uint64_t addr, void *buf, size_t len)
{
    struct iovec local = { .iov_base = buf, .iov_len = len };
    struct iovec remote = { .iov_base = (void *)(uintptr_t)addr, .iov_len = len };
    m->reads++;
    ssize_t n = process_vm_readv(m->pid, &local, 1, &remote, 1, 0);
    if (n > 0)
        m->bytes += (uint64_t)n;
    return n;
}

/* What both readers check first: a range that cannot be an object, and
 * the scan's deadline. 0: go on. */
static int read_check(pyheap_mem *m, uint64_t addr, size_t len, pyheap_error *err)
{
    if (addr == 0 || addr + len < addr)
        return pyheap_err_remote(err, EFAULT, m->pid, addr, len);
    if (over_deadline(m))
        return pyheap_err_set(err, PYHEAP_E_READ, ETIMEDOUT, addr,
                              "the scan's time budget is spent");
    return 0;
}

/* The uncached read, after read_check. */
static int read_direct(pyheap_mem *m, uint64_t addr, void *buf, size_t len,
                       pyheap_error *err)
{
    if (m->is_image) {
        if (image_read(m, addr, buf, len) < 0)
            return pyheap_err_remote(err, EFAULT, m->pid, addr, len);
        return 0;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = raw_read(m, addr + done, (char *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return pyheap_err_remote(err, errno, m->pid, addr, len);
        }
        if (n == 0)
            return pyheap_err_remote(err, EFAULT, m->pid, addr, len);
        done += (size_t)n;
    }
    return 0;
}

int pyheap_mem_read(pyheap_mem *m, uint64_t addr, void *buf, size_t len,
                    pyheap_error *err)
{
    if (len == 0)
        return 0;
    if (read_check(m, addr, len, err) < 0)
        return -1;
    return read_direct(m, addr, buf, len, err);
}

static size_t hash_base(uint64_t base, size_t mask)
{
    uint64_t h = (base >> CHUNK_SHIFT) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & mask;
}

static int grow_slots(pyheap_mem *m)
{
    size_t nn = m->nslots ? m->nslots * 2 : 1024;
    struct chunk *ns = calloc(nn, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->nslots; i++) {
        struct chunk *c = &m->slots[i];
        if (!c->base)
            continue;
        size_t j = hash_base(c->base, nn - 1);
        while (ns[j].base)
            j = (j + 1) & (nn - 1);
        ns[j] = *c;
    }
    free(m->slots);
    m->slots = ns;
    m->nslots = nn;
    m->last = NULL;
    return 0;
}

/* Fill a fresh chunk: one bulk read, then page by page past a fault. */
static void fill_chunk(pyheap_mem *m, struct chunk *c)
{
    c->valid = 0;
    c->data = m->nspare ? m->spare[--m->nspare] : malloc(CHUNK_SIZE);
    if (!c->data)
        return;
    ssize_t n;
    do {
        n = raw_read(m, c->base, c->data, CHUNK_SIZE);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)CHUNK_SIZE) {
        c->valid = ALL_PAGES;
        return;
    }
    if (n < 0 && (errno == ESRCH || errno == EPERM || errno == EACCES)) {
        free(c->data);
        c->data = NULL;
        return;
    }
    size_t good = n > 0 ? (size_t)n >> PAGE_SHIFT_ : 0;
    for (size_t p = 0; p < good; p++)
        c->valid |= (uint16_t)(1u << p);
    /* The page that faulted is unreadable; try each later page alone. */
    for (size_t p = good + 1; p < PAGES_PER_CHUNK; p++) {
        ssize_t k = raw_read(m, c->base + p * PAGE_SIZE_,
                             c->data + p * PAGE_SIZE_, PAGE_SIZE_);
        if (k == (ssize_t)PAGE_SIZE_)
            c->valid |= (uint16_t)(1u << p);
    }
    if (!c->valid) {
        free(c->data);
        c->data = NULL;
    }
}

/* The cached chunk holding BASE, or NULL. */
static struct chunk *find_chunk(const pyheap_mem *m, uint64_t base)
{
    if (m->last && m->last->base == base)
        return m->last;
    if (!m->nslots)
        return NULL;
    size_t mask = m->nslots - 1;
    for (size_t j = hash_base(base, mask); m->slots[j].base; j = (j + 1) & mask)
        if (m->slots[j].base == base)
            return &m->slots[j];
    return NULL;
}

/* The chunk holding BASE, reading it if needed; NULL on allocation failure. */
static struct chunk *get_chunk(pyheap_mem *m, uint64_t base)
{
    struct chunk *found = find_chunk(m, base);
    if (found)
        return m->last = found;
    /* A miss: make room, then read the chunk. */
    if (m->cache_bytes >= m->cache_cap)
        cache_evict(m);
    if (m->nslots == 0 || (m->nused + 1) * 2 > m->nslots) {
        if (grow_slots(m) < 0)
            return NULL;
    }
    size_t mask = m->nslots - 1;
    size_t j = hash_base(base, mask);
    while (m->slots[j].base)
        j = (j + 1) & mask;
    struct chunk *c = &m->slots[j];
    c->base = base;
    m->nused++;
    fill_chunk(m, c);
    if (c->data)
        m->cache_bytes += CHUNK_SIZE;
    return m->last = c;
}

int pyheap_mem_cached(const pyheap_mem *m, uint64_t addr)
{
    return m->is_image || find_chunk(m, addr & ~(CHUNK_SIZE - 1)) != NULL;
}

int pyheap_mem_read_cached(pyheap_mem *m, uint64_t addr, void *buf, size_t len,
                           pyheap_error *err)
{
    if (len == 0)
        return 0;
    if (read_check(m, addr, len, err) < 0)
        return -1;
    /* Images, and reads larger than the cache itself, go straight to the
     * source. */
    if (m->is_image || len > m->cache_cap / 4)
        return read_direct(m, addr, buf, len, err);
    unsigned char *out = buf;
    uint64_t a = addr;
    size_t left = len;
    while (left > 0) {
        uint64_t base = a & ~(CHUNK_SIZE - 1);
        struct chunk *c = get_chunk(m, base);
        if (!c)
            return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, addr,
                                  "out of memory caching target memory");
        size_t off = (size_t)(a - base);
        size_t n = (size_t)(CHUNK_SIZE - off);
        if (n > left)
            n = left;
        if (!c->data) {
            /* Tell a vanished process from an unreadable page. */
            if (kill(m->pid, 0) < 0 && errno == ESRCH)
                return pyheap_err_remote(err, ESRCH, m->pid, addr, len);
            return pyheap_err_remote(err, EFAULT, m->pid, addr, len);
        }
        for (size_t p = off >> PAGE_SHIFT_;
             c->valid != ALL_PAGES && p <= (off + n - 1) >> PAGE_SHIFT_; p++) {
            if (!(c->valid & (1u << p)))
                return pyheap_err_remote(err, EFAULT, m->pid, addr, len);
        }
        memcpy(out, c->data + off, n);
        out += n;
        a += n;
        left -= n;
    }
    return 0;
}

int pyheap_mem_window_get(pyheap_mem *m, uint64_t addr, struct pyheap_mem_window *wins,
                          size_t nwin, struct pyheap_mem_window *win)
{
    m->wins = wins;
    m->nwin = nwin;
    *win = (struct pyheap_mem_window){ 0 };
    if (m->is_image || read_check(m, addr, 1, NULL) < 0)
        return -1;
    struct chunk *c = get_chunk(m, addr & ~(CHUNK_SIZE - 1));
    if (!c || !c->data || c->valid != ALL_PAGES)
        return -1;
    *win = (struct pyheap_mem_window){ .base = c->base, .len = CHUNK_SIZE, .data = c->data };
    return 0;
}

void pyheap_mem_window_drop(pyheap_mem *m)
{
    windows_empty(m);
    m->wins = NULL;
    m->nwin = 0;
}

ssize_t pyheap_mem_read_cstr(pyheap_mem *m, uint64_t addr, char *buf,
                             size_t max, pyheap_error *err)
{
    if (max == 0)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, addr, "empty string buffer");
    size_t have = 0;
    while (have < max - 1) {
        /* Never cross a page boundary in one read: the next page may be
         * unmapped although the string ends before it. */
        uint64_t a = addr + have;
        size_t n = (size_t)(PAGE_SIZE_ - (a & (PAGE_SIZE_ - 1)));
        if (n > max - 1 - have)
            n = max - 1 - have;
        if (pyheap_mem_read_cached(m, a, buf + have, n, err) < 0)
            return -1;
        void *nul = memchr(buf + have, '\0', n);
        if (nul)
            return (ssize_t)((char *)nul - buf);
        have += n;
    }
    buf[max - 1] = '\0';
    return (ssize_t)(max - 1);
}
