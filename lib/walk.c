/*
 * Enumerating the live objects of a target: GC lists and interpreter /
 * thread roots seed a work list; decoders (decode_*.c) report referents
 * until closure. Non-stop: every read may be torn or freed, so every
 * candidate is validated (readable header, sane refcount, ob_type a
 * validated type object), every loop is bounded, and rejects are counted.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "addrset.h"
#include "proc_maps.h"
#include "snapshot.h"
#include "walk.h"

#define DEFAULT_MAX_OBJECTS 100000000ULL
#define MAX_INTERPRETERS    256
#define MAX_THREADS         100000
#define MAX_FRAMES          100000
#define MAX_EXC_CHAIN       10000
#define MAX_GC_LIST         200000000ULL
#define MAX_GC_MENDS        64   /* torn links mended per pass over a list */
#define GC_LIST_AGAIN       3    /* passes again over a list torn beyond mending */
#define GC_MEND_WAIT_MS     200  /* for collections in progress, per walker */
#define WALK_NLITS          8    /* literal labels remembered per walker */

#define MODE_EVERY          4096 /* steps between decisions on page reads */
#define MODE_PAGES_AT       4    /* ... taken above 1 read per this many steps */
#define NPAGES              256  /* pages kept for scattered reads (1 MiB) */

/* The GC links kept at the visits (sh->links): tables of 2^16, 2^17, ...
 * slots (24 bytes each), each filled to three quarters before the next is
 * made, so that the memory follows the links kept (a process whose
 * resident memory is mostly buffers has few GC objects), up to
 * LINKS_LEVELS of them (2^16 .. 2^24 slots: 12.6M links, 768 MiB). */
#define LINKS_MIN_SHIFT     16
#define LINKS_LEVELS        9
#define LINKS_PROBES        32
#define LINKS_BATCH         64

/* Candidates carry a flag in the low bit (object addresses are 8-aligned). */
#define REF_MAYBE 1ULL
/* Taken from a batch of far objects (drain): visited without looking at the
 * cache again. Only on the stack. */
#define REF_NEAR 2ULL

/* Interned strings: index by content. */
struct strtab {
    char **s;
    size_t n, cap;
    /* open addressing: (hash >> 32) << 32 | (index + 1), 0 empty; the
     * slot is the hash's high bits, so the table grows without reading
     * the strings, and a probe reads a string only when they match */
    uint64_t *slots;
    size_t slot_cap;
};

/* Label texts: interned in shards by hash, each with its lock (one table
 * under one lock kept a thread walking a huge dict's keys waiting on the
 * other), indexed by one count in the order they are added, into blocks
 * that never move. */
#define LABEL_SHARDS 16
#define LABEL_BLOCK 65536
#define LABELS_MAX (WALK_LBL_PAYLOAD_MAX + 1u)
#define LABEL_BLOCKS (LABELS_MAX / LABEL_BLOCK)
#define LABELS_FULL (UINT32_MAX - 1)     /* labeltab_intern: over the budget */
#define LABELS_TOOMANY (UINT32_MAX - 2)  /* more than a payload indexes */

/* Open addressing as a strtab's (the index into the blocks); a grown
 * table keeps the one it replaced (old), which a reader without the lock
 * may still probe, until the walk ends. */
struct label_slots {
    struct label_slots *old;
    size_t cap;
    uint64_t slot[];   /* atomic */
};

struct label_shard {
    _Alignas(64) pthread_mutex_t lock;
    struct label_slots *tab;   /* atomic */
    size_t n;
};

struct labeltab {
    struct label_shard shard[LABEL_SHARDS];
    char **blk[LABEL_BLOCKS]; /* atomic: LABEL_BLOCK texts each */
    uint32_t n;               /* atomic: texts */
    size_t bytes;             /* atomic: their bytes, NULs included */
};

/* Label I's text (I < lt->n, as returned by labeltab_intern). */
static const char *labeltab_text(struct labeltab *lt, uint32_t i)
{
    char **blk = __atomic_load_n(&lt->blk[i / LABEL_BLOCK], __ATOMIC_ACQUIRE);
    const char *s = blk ? __atomic_load_n(&blk[i % LABEL_BLOCK], __ATOMIC_ACQUIRE) : NULL;
    return s ? s : "";
}

#define MAX_EDGES   ((size_t)UINT32_MAX - 1)
#define MAX_ROOTS   1000000
#define KEY_TEXT_MAX 40 /* bytes of a dict key shown in a label */


#define TCACHE_SIZE 256
#define DEFAULT_CACHE_MIN ((uint64_t)8 << 20)   /* a walker's cache, by default */
#define DEFAULT_CACHE_MAX ((uint64_t)64 << 20)
#define KC_SIZE 8192       /* key labels remembered per walker */
/* Dict key texts kept as labels, in bytes (pyheap_scan_opts.max_label_bytes) */
#define DEFAULT_LABEL_BUDGET ((size_t)8 << 20)
/* Pending key labels (WALK_KEY_DEFER): blocks of slots, reserved by a
 * walker PEND_RESERVE at a time (a reservation never straddles blocks). */
#define PEND_SHIFT   16
#define PEND_BLOCKS  ((WALK_LBL_PAYLOAD_MAX + 1u) >> PEND_SHIFT)
#define PEND_RESERVE 1024u
#define PEND_CACHE   ((uint64_t)1 << 20) /* each reader's cache meanwhile */
#define PEND_SLICE_MIN 16384  /* pending keys shared out between threads */
#define SPLIT_CACHE_SIZE 16

struct typemap_entry {
    uint64_t addr;
    int32_t idx;  /* index into types; -1 invalid; -2 being described */
};

/* What the walker threads share. Under `lock` (recursive: a type's
 * description looks up its metatype and interns labels): the type map,
 * the type descriptions and both string tables. The seen set is updated
 * with atomics (pyheap_addrset_insert_mt) when several threads run. */
/* A GC list node and its two links as a visit read them; node 0: an
 * empty slot, node | 1: being written. */
struct gc_link {
    uint64_t node, next, prev;
};

struct walk_shared {
    bool mt;                 /* several threads are running */
    bool stopped;            /* the caller stopped the target (opts->stopped) */
    pthread_mutex_t lock;
    pthread_mutex_t seen_lock;
    struct addrset seen;
    /* Several threads: the main interpreter's GC lists are walked from
     * both ends at once, the first thread from the heads along gc_next,
     * another from the tails along gc_prev; each claims list nodes it
     * passes here (a node and its address + 8, one bit each: see
     * pyheap_addrset_claim_mt) and stops at one the other has claimed, if
     * the other has got to that list (else the address was freed and
     * reused during the scan). Not every node is claimed: the first and
     * last of a list and one in CLAIM_EVERY others, chosen by a hash
     * of the address so that both ends choose the same (a claim is an
     * atomic OR in a second bitmap as large as the seen set: claiming every
     * node cost ~5% of a census). The two ends then pass each other by the
     * nodes between two claimed ones, which both walk (the seen set seeds
     * them once) and the head's walker takes off its count
     * (gc_list_pass). (One thread alone walking both ends in turns
     * gains nothing: on a heap whose list holds instances first and their
     * lists after, its visits from the head read every list before the
     * turns from the tail get to them.) */
    struct addrset listed;
    /* The GC lists' links of objects visited in page mode (a churned
     * heap), kept as the visit finds them in the page at hand, so that the
     * lists' walkers need not read those nodes again for their links
     * alone (gc_links_keep, gc_links_find). */
    struct gc_link *links[LINKS_LEVELS]; /* atomic pointers, set once: level
                              * k has 2^(LINKS_MIN_SHIFT + k) slots, a mapping */
    unsigned links_top;      /* atomic: levels made (links are kept in the last) */
    uint64_t links_used[LINKS_LEVELS]; /* atomic, in batches of LINKS_BATCH */
    pthread_mutex_t links_lock; /* making a level */
    bool links_failed;       /* atomic: a level could not be made: no more */
    bool links_any;          /* atomic: one was kept (the lists look them up) */
    bool lists_paged[2];     /* atomic: the walker of the lists from their
                              * heads [0], tails [1] finds their nodes
                              * scattered: the visits keep links */
    bool lists_probed;       /* one walker of the lists: their tails' nodes
                              * lie scattered (lists_probe), the visits
                              * keep links for the whole walk */
    uint64_t interp_both;    /* the main interpreter (the last listed); 0:
                              * one thread, both ends are not walked */
    int back_started;        /* atomic: a thread walks its lists backwards */
    int fwd_at, back_at;     /* atomic: the list (gc_list_heads order) each
                              * end walks: fwd_at only grows (-1 before,
                              * LISTS_DONE after), back_at only shrinks
                              * (LISTS_DONE before, -1 after) */
    int producers;           /* under qlock: walkers still handing out
                              * seeds; qdone when none is left */
    unsigned walkers;        /* threads walking (set before they start) */

    struct typemap_entry *tmap;
    size_t tmap_cap, tmap_used;
    struct walk_type **types; /* stable: decoders keep pointers */
    size_t ntypes, captypes;

    struct strtab names;  /* type names */
    /* Label strings, under their shards' locks (taken inside `lock`,
     * never around it). New dict key texts stop being added once the
     * texts pass label_budget bytes (key_label_compute). */
    struct labeltab labels;
    size_t label_budget;
    /* Dict key labels left pending (WALK_KEY_DEFER), resolved after the
     * walk (pend_resolve): slot i of block i >> PEND_SHIFT holds the key's
     * address, | 1 when its text draws on the budget; 0: unused. */
    uint64_t *pend[PEND_BLOCKS]; /* atomic pointers, set once */
    uint64_t pend_next;          /* atomic: indices reserved */

    /* Several threads: the thread walking the GC lists hands the seeds out
     * in blocks, in list order (about allocation order: neighbours stay
     * together), through a queue the others take from while it walks. */
    pthread_mutex_t qlock;
    pthread_cond_t qcv;
    struct seed_block *qhead, *qtail;
    size_t qlen;             /* blocks in the queue (read without the lock
                              * as a hint) */
    bool qdone;              /* no GC list walker is left */
    int busy;                /* under qlock: threads visiting what they
                              * took or found, which may hand out a huge
                              * array's chunks (pyheap_walk_ref_array):
                              * the queue is done when qdone and none is
                              * busy */
    uint64_t nrecs;          /* atomic: records flushed by all threads */
    int stop;                /* atomic: a thread hit the process's end,
                              * memory or the object limit */
};

/* One walker thread's state (the first thread also walks the roots). */
struct walk {
    /* First member: the inline helpers of walk.h read it (windows, t). */
    struct walk_head h;    /* h.t: the target */
    pyheap_mem *mem;
    struct walk_shared *sh;
    struct addrset_cursor cursor;
    struct addrset_cursor lcursor; /* of sh->listed */
    struct seed_block *block; /* seeds being gathered (several threads) */
    uint64_t max_objects;
    uint64_t max_seen;     /* addresses this thread may add to the seen set */
    bool gone;             /* the process vanished: stop */
    bool truncated;
    bool nomem;

    uint64_t *stack;
    size_t nstack, capstack;
    /* One walker: the referents of a huge container found while it walks
     * the GC lists wait here, unseen, until the lists are walked (walk_later). */
    uint64_t *later;
    size_t nlater, caplater;
    bool in_lists;         /* walking the GC lists, one walker */
    bool defer;            /* decoding such a container: pushes go to later */
    /* Far objects: popped while their chunk was not in the cache, visited
     * later in address order (drain). */
    uint64_t *far;
    size_t nfar, capfar;
    /* Scattered reads: when the last MODE_EVERY steps (visits, GC list
     * nodes) read the target more than once per MODE_PAGES_AT of them,
     * a read outside the cached chunks takes only its 4 KiB page, kept in
     * `pages` (direct-mapped), instead of a 64 KiB chunk (read_slow). */
    bool pages_on;
    unsigned mode_steps;
    uint64_t mode_reads;   /* the reader's count of reads at the last decision */
    struct walk_page { uint64_t base; unsigned char data[4096]; } *pages; /* [NPAGES] */
    unsigned links_batch;  /* links kept since the last count in sh->links_used */
    unsigned list_looked, list_far; /* list_sample's counts */
    bool list_decided;
    uint64_t links_hits;   /* GC list nodes whose links were kept */

    struct snapshot_in found; /* objects and their edges, discovery order */
    size_t nrecs_flushed;  /* of found.n, counted in sh->nrecs */
    size_t recs_check_at;  /* found.n at which to count them again */
    /* Addresses visited but not recorded (not an object, torn, freed): the
     * seen set less these is the set of objects, which the build indexes
     * without going through the objects (unrec_lost: one was not kept). */
    uint64_t *unrec;
    size_t nunrec, capunrec;
    bool unrec_lost;

    /* The graph: edges of the object being visited go to `found` (they
     * belong to the next object recorded); outside an object (walking
     * roots) references become roots named root_prefix + label. */
    struct snapshot_root_in *roots;
    size_t nroots, caproots;
    bool in_obj;
    char root_prefix[200];
    int root_prio;

    /* key object address -> label of the values stored under it,
     * direct-mapped (a huge dict's keys pass through once each: a table
     * of every key cost more to probe than the labels it saved) */
    struct key_label { uint64_t key; uint32_t label; } *kc; /* [KC_SIZE] */
    uint32_t pend_at, pend_end; /* this walker's reserved pending indices */
    uint64_t key_labels_elided; /* key texts left out: label_budget */
    uint64_t key_labels_later;  /* pending key labels resolved (pend_resolve) */
    struct walk_lit {          /* pyheap_walk_label_lit, direct-mapped */
        const char *text;
        enum walk_label_kind kind;
        uint32_t label;
    } lits[WALK_NLITS];

    uint64_t skipped;
    uint64_t gc_tracked;
    uint64_t gc_tracked_back;  /* of which from a list's tail */
    uint64_t gc_mended;        /* torn list links read again and mended */
    uint64_t gc_again;         /* passes again over torn lists */
    unsigned gc_wait_ms;       /* spent waiting for collections to end */
    uint64_t shared_arrays;    /* huge arrays this thread shared out */
    uint64_t shared_chunks;    /* chunks of them other threads walked */

    /* In front of the type map: valid types by address, direct-mapped
     * (types are never removed during a walk, their descriptions do not
     * move). */
    struct {
        uint64_t addr;
        const struct walk_type *t;
        bool pushed;       /* the type object itself was pushed */
    } tcache[TCACHE_SIZE];
    struct walk_split_cache split[SPLIT_CACHE_SIZE];
};

struct walk_split_cache *pyheap_walk_split_cache(struct walk *w, uint64_t keys)
{
    return &w->split[(keys >> 6) & (SPLIT_CACHE_SIZE - 1)];
}

static void sh_lock(struct walk *w)
{
    if (w->sh->mt)
        pthread_mutex_lock(&w->sh->lock);
}

static void sh_unlock(struct walk *w)
{
    if (w->sh->mt)
        pthread_mutex_unlock(&w->sh->lock);
}

/* 1 if ADDR is new to the walk, 0 if seen, -1 out of memory. */
static int seen_insert(struct walk *w, uint64_t addr)
{
    if (!w->sh->mt)
        return addrset_insert_fast(&w->sh->seen, addr);
    return addrset_insert_mt_fast(&w->sh->seen, &w->cursor, &w->sh->seen_lock, addr);
}

/* Take ADDR out of the seen set (pushed, then dropped unvisited). */
static void seen_remove(struct walk *w, uint64_t addr)
{
    if (!w->sh->mt)
        pyheap_addrset_remove(&w->sh->seen, addr);
    else
        pyheap_addrset_remove_mt(&w->sh->seen, &w->cursor, &w->sh->seen_lock, addr);
}

#define SEED_BLOCK 2048
#define CLAIM_EVERY 64     /* a power of two: sh->listed */
#define GC_LISTS_MAX 9     /* generations (at most 8) + the permanent one */
#define LISTS_DONE 100     /* above any list index */

struct split_task;

/* Seeds, or (TASK set, N 0) a huge array's chunks to help with. */
struct seed_block {
    struct seed_block *next;
    struct split_task *task;
    size_t n;
    uint64_t seeds[SEED_BLOCK];
};

/* Whether the GC lists of sh->interp_both are walked from both ends: with
 * several threads running. */
static bool two_ended(const struct walk_shared *sh)
{
    return sh->mt && sh->interp_both;
}

/* Whether this thread hit the process's end, memory or the object limit. */
static bool ended(const struct walk *w)
{
    return w->gone || w->nomem || w->truncated;
}

/* Whether this thread should stop: its own end, or another thread's. */
static bool stopping(const struct walk *w)
{
    return ended(w) || (w->sh->mt && __atomic_load_n(&w->sh->stop, __ATOMIC_RELAXED));
}

/* ---- small containers ---- */

static inline uint64_t hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static bool near_now(struct walk *w, uint64_t addr);

/* ---- the GC lists' links kept at the visits ---- */

static size_t links_cap(unsigned level)
{
    return (size_t)1 << (LINKS_MIN_SHIFT + level);
}

/* Free the levels: no link is kept any more (the visits after the lists'
 * walk, with one walker, would make them again). */
static void gc_links_close(struct walk_shared *sh)
{
    for (unsigned k = 0; k < LINKS_LEVELS; k++) {
        if (sh->links[k])
            munmap(sh->links[k], links_cap(k) * sizeof *sh->links[k]);
        sh->links[k] = NULL;
        sh->links_used[k] = 0;
    }
    sh->links_top = 0;
    sh->links_failed = true;
    sh->links_any = false;
}

/* The level links are kept in now (its slots filled to three quarters
 * at most: then the next is made), or -1: no more (out of memory, or
 * LINKS_LEVELS full). */
static int links_level(struct walk_shared *sh)
{
    unsigned top = __atomic_load_n(&sh->links_top, __ATOMIC_ACQUIRE);
    if (top > 0 && __atomic_load_n(&sh->links_used[top - 1], __ATOMIC_RELAXED) <=
                       links_cap(top - 1) / 4 * 3)
        return (int)top - 1;
    if (top == LINKS_LEVELS || __atomic_load_n(&sh->links_failed, __ATOMIC_RELAXED))
        return -1;
    pthread_mutex_lock(&sh->links_lock);
    if (__atomic_load_n(&sh->links_top, __ATOMIC_RELAXED) == top) {
        size_t len = links_cap(top) * sizeof *sh->links[top];
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            (void)madvise(p, len, MADV_HUGEPAGE);   /* a hint: lookups at random */
            __atomic_store_n(&sh->links[top], (struct gc_link *)p, __ATOMIC_RELAXED);
            __atomic_store_n(&sh->links_top, top + 1, __ATOMIC_RELEASE);
        } else {
            __atomic_store_n(&sh->links_failed, true, __ATOMIC_RELAXED);   /* (not again) */
        }
    }
    pthread_mutex_unlock(&sh->links_lock);
    top = __atomic_load_n(&sh->links_top, __ATOMIC_ACQUIRE);
    return top > 0 && __atomic_load_n(&sh->links_used[top - 1], __ATOMIC_RELAXED) <=
                          links_cap(top - 1) / 4 * 3
               ? (int)top - 1 : -1;
}

/* Keep the links of the GC object at ADDR, just visited while the lists'
 * nodes lie scattered, when its GC head lies in memory at hand (no
 * read). */
static void gc_links_keep(struct walk *w, uint64_t addr)
{
    struct walk_shared *sh = w->sh;
    const struct pyheap_offsets *off = &w->h.t->off;
    uint64_t node = addr - off->gc_head;
    if (node >= addr)
        return;
    int level = links_level(sh);
    if (level < 0 || !near_now(w, node))
        return;
    uint64_t g[2];
    if (pyheap_walk_read(w, node + off->gc_next, &g[0], 8) < 0 ||
        pyheap_walk_read(w, node + off->gc_prev, &g[1], 8) < 0 || g[0] == 0)
        return;   /* (0: not tracked, in no list) */
    if (++w->links_batch == LINKS_BATCH) {
        w->links_batch = 0;
        __atomic_add_fetch(&sh->links_used[level], LINKS_BATCH, __ATOMIC_RELAXED);
    }
    if (!__atomic_load_n(&sh->links_any, __ATOMIC_RELAXED))
        __atomic_store_n(&sh->links_any, true, __ATOMIC_RELAXED);
    struct gc_link *tab = __atomic_load_n(&sh->links[level], __ATOMIC_RELAXED);
    size_t mask = links_cap((unsigned)level) - 1;
    size_t i = (size_t)hash64(node) & mask;
    for (unsigned probe = 0; probe < LINKS_PROBES; probe++, i = (i + 1) & mask) {
        struct gc_link *e = &tab[i];
        uint64_t k = __atomic_load_n(&e->node, __ATOMIC_RELAXED);
        if (k == 0) {
            if (!__atomic_compare_exchange_n(&e->node, &k, node | 1, false, __ATOMIC_ACQ_REL,
                                             __ATOMIC_RELAXED)) {
                if ((k & ~(uint64_t)1) == node)
                    return;
                continue;   /* taken by another node: probe on */
            }
            __atomic_store_n(&e->next, g[0], __ATOMIC_RELAXED);
            __atomic_store_n(&e->prev, g[1], __ATOMIC_RELAXED);
            __atomic_store_n(&e->node, node, __ATOMIC_RELEASE);
            return;
        }
        if ((k & ~(uint64_t)1) == node)
            return;
    }
}

/* The links of list node NODE kept by a visit, as gc_list_pass reads
 * them (BACK: G[0] the link back, G[1] the link on); false if not kept.
 * The newest level first (it holds the most). */
static bool gc_links_find(const struct walk *w, uint64_t node, bool back, uint64_t g[2])
{
    struct walk_shared *sh = w->sh;
    unsigned top = __atomic_load_n(&sh->links_top, __ATOMIC_ACQUIRE);
    uint64_t h = hash64(node);
    for (unsigned level = top; level-- > 0;) {
        const struct gc_link *tab = __atomic_load_n(&sh->links[level], __ATOMIC_RELAXED);
        size_t mask = links_cap(level) - 1;
        size_t i = (size_t)h & mask;
        for (unsigned probe = 0; probe < LINKS_PROBES; probe++, i = (i + 1) & mask) {
            const struct gc_link *e = &tab[i];
            uint64_t k = __atomic_load_n(&e->node, __ATOMIC_ACQUIRE);
            if (k == 0 || k == (node | 1))
                break;
            if (k == node) {
                uint64_t next = __atomic_load_n(&e->next, __ATOMIC_RELAXED);
                uint64_t prev = __atomic_load_n(&e->prev, __ATOMIC_RELAXED);
                g[0] = back ? prev : next;
                g[1] = back ? next : prev;
                return true;
            }
        }
    }
    return false;
}

/* ---- services for decoders ---- */

/* One step of the walk (an object visited, a GC list node read): every
 * MODE_EVERY of them, decide between chunk and page reads from how often
 * the steps since the last decision read the target. */
static inline void mode_step(struct walk *w)
{
    if (++w->mode_steps < MODE_EVERY)
        return;
    uint64_t reads;
    pyheap_mem_counters(w->mem, &reads, NULL);
    w->pages_on = (reads - w->mode_reads) * MODE_PAGES_AT > w->mode_steps;
    w->mode_reads = reads;
    w->mode_steps = 0;
}

/* The kept page of ADDR, or NULL. */
static struct walk_page *page_kept(const struct walk *w, uint64_t addr)
{
    struct walk_page *p = w->pages ? &w->pages[(addr >> 12) & (NPAGES - 1)] : NULL;
    return p && p->base == (addr & ~(uint64_t)4095) ? p : NULL;
}

/* LEN bytes at ADDR (within one page) from its kept page, read alone if
 * need be. -1: the page does not read whole (the caller reads otherwise). */
static int page_read(struct walk *w, uint64_t addr, void *buf, size_t len)
{
    struct walk_page *p = page_kept(w, addr);
    if (!p) {
        if (!w->pages && !(w->pages = calloc(NPAGES, sizeof *w->pages)))
            return -1;
        p = &w->pages[(addr >> 12) & (NPAGES - 1)];
        p->base = 0;
        if (pyheap_mem_read(w->mem, addr & ~(uint64_t)4095, p->data, sizeof p->data, NULL) < 0)
            return -1;
        p->base = addr & ~(uint64_t)4095;
    }
    memcpy(buf, p->data + (addr & 4095), len);
    return 0;
}

int pyheap_walk_read_slow(struct walk *w, uint64_t addr, void *buf, size_t len)
{
    if (w->gone || addr == 0 || addr + len < addr)
        return -1;
    /* Scattered reads: the page, unless the chunk is cached already. */
    if (w->pages_on && len <= 4096 - (addr & 4095) && !pyheap_mem_cached(w->mem, addr) &&
        page_read(w, addr, buf, len) == 0)
        return 0;
    /* Move the window to ADDR's chunk; serve from it if the range fits. */
    struct pyheap_mem_window *win = &w->h.win[(addr >> WALK_WIN_SHIFT) & (WALK_NWIN - 1)];
    if (len <= WALK_WINDOW_MAX_READ &&
        pyheap_mem_window_get(w->mem, addr, w->h.win, WALK_NWIN, win) == 0 &&
        addr - win->base <= win->len - len) {
        memcpy(buf, win->data + (addr - win->base), len);
        return 0;
    }
    pyheap_error e;
    if (pyheap_mem_read_cached(w->mem, addr, buf, len, &e) == 0)
        return 0;
    if (e.code == PYHEAP_E_GONE)
        w->gone = true;
    return -1;
}


ssize_t pyheap_walk_read_cstr(struct walk *w, uint64_t addr, char *buf, size_t cap)
{
    return pyheap_mem_read_cstr(w->mem, addr, buf, cap, NULL);
}

static bool plausible_addr(uint64_t a)
{
    return a >= 0x1000 && a < 0x800000000000ULL && (a & 7) == 0;
}

/* Put ITEM on W's work stack; false (and nomem) when memory runs out. */
/* Append V to the grown array *A of *N (room *CAP); false when out of
 * memory (nothing appended). */
static bool append_u64(uint64_t **a, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap && !pyheap_grow((void **)a, cap, *n + 1, sizeof **a))
        return false;
    (*a)[(*n)++] = v;
    return true;
}

static bool stack_grow_add(struct walk *w, uint64_t item)
{
    if (!append_u64(&w->stack, &w->nstack, &w->capstack, item)) {
        w->nomem = true;
        return false;
    }
    return true;
}

static inline bool stack_add(struct walk *w, uint64_t item)
{
    if (w->nstack == w->capstack)
        return stack_grow_add(w, item);
    w->stack[w->nstack++] = item;
    return true;
}

/* push() of a plausible ADDR. */
static void later_add(struct walk *w, uint64_t item);

static inline void push_plausible(struct walk *w, uint64_t addr, uint64_t flag)
{
    if (w->defer) {
        later_add(w, addr | flag);
        return;
    }
    int r = seen_insert(w, addr);
    if (r < 0) {
        w->nomem = true;
        return;
    }
    if (r == 0)
        return;
    /* Bound the set (a torn heap could feed it forever): in total, or per
     * thread when several share it. */
    if ((w->sh->mt ? w->cursor.inserted : w->sh->seen.used) > w->max_seen) {
        w->truncated = true;
        return;
    }
    stack_add(w, addr | flag);
}

static void push(struct walk *w, uint64_t addr, uint64_t flag)
{
    if (!plausible_addr(addr)) {
        if (!flag && addr != 0)
            w->skipped++;
        return;
    }
    push_plausible(w, addr, flag);
}

void pyheap_walk_ref(struct walk *w, uint64_t addr)
{
    pyheap_walk_edge(w, addr, WALK_LBL(LBL_NONE, 0));
}

void pyheap_walk_ref_maybe(struct walk *w, uint64_t addr)
{
    pyheap_walk_edge(w, addr, WALK_LBL_WITH_FLAGS(WALK_LBL(LBL_NONE, 0), PYHEAP_EDGE_INFERRED));
}

void pyheap_walk_skip(struct walk *w)
{
    w->skipped++;
}


static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return hash64(h);   /* (FNV's high bits are its best mixed) */
}

static const struct walk_type *type_lookup(struct walk *w, uint64_t addr, int depth);
static inline const struct walk_type *type_cached(struct walk *w, uint64_t addr);

/* Whether WORD, the first word of an object header, is a plausible
 * reference count. 3.14+ (refcnt_split): a uint32 count, a zero
 * ob_overflow and known ob_flags bits (static immortal objects read as
 * 0x0005_0000_C000_0000); before: a positive Py_ssize_t below a bound. */
static bool refcnt_ok(const struct walk *w, uint64_t word)
{
    const struct pyheap_consts *k = &w->h.t->k;
    if (k->refcnt_split) {
        uint32_t cnt = (uint32_t)word;
        uint16_t overflow = (uint16_t)(word >> 32), flags = (uint16_t)(word >> 48);
        return cnt > 0 && overflow == 0 && (flags & ~k->ob_flags_valid) == 0;
    }
    int64_t refcnt = (int64_t)word;
    return refcnt > 0 && refcnt < WALK_MAX_REFCNT;
}

/* Insert the used slots of the open-addressing table FROM (CAP slots of
 * (hash >> 32) << 32 | index + 1; 0 empty) into the empty TO (NCAP). */
static void slots_rehash(const uint64_t *from, size_t cap, uint64_t *to, size_t ncap)
{
    for (size_t i = 0; i < cap; i++) {
        if (!from[i])
            continue;
        size_t j = (size_t)(from[i] >> 32) & (ncap - 1);
        while (to[j])
            j = (j + 1) & (ncap - 1);
        to[j] = from[i];
    }
}

/* Rehash the table *SLOTS of *CAP slots into NCAP slots. 0, or -1 out of
 * memory. */
static int grow_slots(uint64_t **slots, size_t *cap, size_t ncap)
{
    uint64_t *n = calloc(ncap, sizeof *n);
    if (!n)
        return -1;
    slots_rehash(*slots, *cap, n, ncap);
    free(*slots);
    *slots = n;
    *cap = ncap;
    return 0;
}

/* Index of NAME in T, added if new; UINT32_MAX on allocation failure. */
static uint32_t strtab_intern(struct strtab *t, const char *name)
{
    if ((t->n + 1) * 2 > t->slot_cap) {
        size_t ncap = t->slot_cap ? t->slot_cap * 2 : 1024;
        if (grow_slots(&t->slots, &t->slot_cap, ncap) < 0)
            return UINT32_MAX;
    }
    uint64_t tag = str_hash(name) >> 32;
    size_t j = (size_t)tag & (t->slot_cap - 1);
    while (t->slots[j]) {
        uint64_t v = t->slots[j];
        if (v >> 32 == tag && strcmp(t->s[(uint32_t)v - 1], name) == 0)
            return (uint32_t)v - 1;
        j = (j + 1) & (t->slot_cap - 1);
    }
    if (t->n >= UINT32_MAX - 1 ||
        !pyheap_grow((void **)&t->s, &t->cap, t->n + 1, sizeof *t->s))
        return UINT32_MAX;
    char *copy = strdup(name);
    if (!copy)
        return UINT32_MAX;
    t->s[t->n] = copy;
    t->slots[j] = tag << 32 | (uint64_t)(t->n + 1);
    return (uint32_t)t->n++;
}

/* ---- the label texts ---- */

/* Index of NAME (tag: HASH >> 32) in slot table T, or UINT32_MAX; *AT:
 * where it would go. Lock-free: T's slots are published (release) after
 * the texts they index. */
static uint32_t label_find(struct labeltab *lt, const struct label_slots *t, const char *name,
                           uint64_t hash, size_t *at)
{
    uint64_t tag = hash >> 32;
    size_t j = (size_t)tag & (t->cap - 1);
    uint64_t v;
    while ((v = __atomic_load_n(&t->slot[j], __ATOMIC_ACQUIRE)) != 0) {
        if (v >> 32 == tag && strcmp(labeltab_text(lt, (uint32_t)v - 1), name) == 0)
            return (uint32_t)v - 1;
        j = (j + 1) & (t->cap - 1);
    }
    *at = j;
    return UINT32_MAX;
}

/* Double SD's slot table (under its lock). 0, or -1 out of memory. */
static int label_slots_grow(struct label_shard *sd)
{
    struct label_slots *t = sd->tab;
    size_t ncap = t ? t->cap * 2 : 256;
    struct label_slots *n = calloc(1, sizeof *n + ncap * sizeof n->slot[0]);
    if (!n)
        return -1;
    n->cap = ncap;
    n->old = t;
    if (t)
        slots_rehash(t->slot, t->cap, n->slot, ncap);
    __atomic_store_n(&sd->tab, n, __ATOMIC_RELEASE);
    return 0;
}

/* Index of NAME (hash HASH: str_hash) among the labels, added if new;
 * UINT32_MAX on allocation failure; LABELS_TOOMANY when the labels are as
 * many as a label's payload can index (LABELS_MAX); LABELS_FULL if new and
 * the texts would pass BUDGET bytes. A text there is found without a lock;
 * a new one is added under the lock of the shard the hash picks (MT). */
static uint32_t labeltab_intern(struct labeltab *lt, bool mt, const char *name, uint64_t hash,
                                size_t budget)
{
    struct label_shard *sd = &lt->shard[hash & (LABEL_SHARDS - 1)];
    size_t len = strlen(name) + 1, j;
    bool full = budget != SIZE_MAX &&
                (len > budget || __atomic_load_n(&lt->bytes, __ATOMIC_RELAXED) > budget - len);
    const struct label_slots *t = __atomic_load_n(&sd->tab, __ATOMIC_ACQUIRE);
    uint32_t r = t ? label_find(lt, t, name, hash, &j) : UINT32_MAX;
    if (r != UINT32_MAX)
        return r;
    if (full)   /* (one added meanwhile by another thread is missed) */
        return LABELS_FULL;
    if (mt)
        pthread_mutex_lock(&sd->lock);
    if ((sd->n + 1) * 2 > (sd->tab ? sd->tab->cap : 0) && label_slots_grow(sd) < 0)
        goto out;
    if ((r = label_find(lt, sd->tab, name, hash, &j)) != UINT32_MAX)
        goto out;
    char *copy = malloc(len);
    if (!copy)
        goto out;
    memcpy(copy, name, len);
    uint32_t i = __atomic_load_n(&lt->n, __ATOMIC_RELAXED);
    do {
        if (i >= LABELS_MAX) {
            free(copy);
            r = LABELS_TOOMANY;
            goto out;
        }
    } while (!__atomic_compare_exchange_n(&lt->n, &i, i + 1, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    char ***bp = &lt->blk[i / LABEL_BLOCK];
    char **blk = __atomic_load_n(bp, __ATOMIC_ACQUIRE);
    if (!blk) {
        /* ours, or the block another thread installed meanwhile */
        char **fresh = calloc(LABEL_BLOCK, sizeof *fresh);
        if (fresh && __atomic_compare_exchange_n(bp, &blk, fresh, false, __ATOMIC_ACQ_REL,
                                                 __ATOMIC_ACQUIRE)) {
            blk = fresh;
        } else {
            free(fresh);   /* (a failed exchange loaded the other's into blk) */
            if (!blk)
                blk = __atomic_load_n(bp, __ATOMIC_ACQUIRE);
        }
        if (!blk) {
            free(copy);   /* a hole at i: the walk fails (nomem) */
            goto out;
        }
    }
    __atomic_store_n(&blk[i % LABEL_BLOCK], copy, __ATOMIC_RELEASE);
    __atomic_add_fetch(&lt->bytes, len, __ATOMIC_RELAXED);
    __atomic_store_n(&sd->tab->slot[j], (hash >> 32) << 32 | (uint64_t)(i + 1), __ATOMIC_RELEASE);
    sd->n++;
    r = i;
out:
    if (mt)
        pthread_mutex_unlock(&sd->lock);
    return r;
}

/* The labels' texts as one array of *N (taken: the table is emptied);
 * NULL if that cannot be allocated. */
static char **labeltab_take(struct labeltab *lt, size_t *n)
{
    *n = lt->n;
    char **all = malloc((lt->n ? lt->n : 1) * sizeof *all);
    if (!all)
        return NULL;
    for (size_t i = 0; i < lt->n; i++)
        all[i] = lt->blk[i / LABEL_BLOCK] ? lt->blk[i / LABEL_BLOCK][i % LABEL_BLOCK] : NULL;
    for (size_t b = 0; b < LABEL_BLOCKS; b++) {
        free(lt->blk[b]);
        lt->blk[b] = NULL;
    }
    lt->n = 0;
    lt->bytes = 0;
    return all;
}

static void labeltab_free(struct labeltab *lt)
{
    for (size_t i = 0; i < lt->n; i++)
        if (lt->blk[i / LABEL_BLOCK])
            free(lt->blk[i / LABEL_BLOCK][i % LABEL_BLOCK]);
    for (size_t b = 0; b < LABEL_BLOCKS; b++)
        free(lt->blk[b]);
    for (size_t k = 0; k < LABEL_SHARDS; k++) {
        for (struct label_slots *t = lt->shard[k].tab, *o; t; t = o) {
            o = t->old;
            free(t);
        }
        pthread_mutex_destroy(&lt->shard[k].lock);
    }
    memset(lt, 0, sizeof *lt);
}

static void strtab_free(struct strtab *t)
{
    if (t->s)
        for (size_t i = 0; i < t->n; i++)
            free(t->s[i]);
    free(t->s);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

uint32_t pyheap_walk_name_intern(struct walk *w, const char *name)
{
    sh_lock(w);
    uint32_t i = strtab_intern(&w->sh->names, name);
    sh_unlock(w);
    return i;
}

/* ---- edges, labels and roots ---- */

/* Whether LABEL's payload indexes the label texts. */
static bool label_has_text(uint32_t label)
{
    unsigned k = WALK_LBL_KIND(label);
    return k == LBL_KEY_STR || k == LBL_KEY_TEXT || k == LBL_ATTR || k == LBL_LOCAL ||
           k == LBL_TEXT;
}

/* The label of KIND for TEXT, interned unless it is new and the texts
 * would pass BUDGET bytes (then *FULL is set and LBL_NONE returned). */
static uint32_t label_intern(struct walk *w, enum walk_label_kind kind, const char *text,
                             size_t budget, bool *full)
{
    uint32_t i = labeltab_intern(&w->sh->labels, w->sh->mt, text, str_hash(text), budget);
    if (i == LABELS_FULL) {
        *full = true;
        return WALK_LBL(LBL_NONE, 0);
    }
    if (i == LABELS_TOOMANY)
        return WALK_LBL(LBL_NONE, 0);
    if (i == UINT32_MAX) {
        w->nomem = true;
        return WALK_LBL(LBL_NONE, 0);
    }
    return WALK_LBL(kind, i);
}

uint32_t pyheap_walk_label(struct walk *w, enum walk_label_kind kind, const char *text)
{
    bool full = false;
    return label_intern(w, kind, text, SIZE_MAX, &full);
}

uint32_t pyheap_walk_label_lit(struct walk *w, enum walk_label_kind kind, const char *text)
{
    struct walk_lit *c = &w->lits[((uintptr_t)text >> 3) % WALK_NLITS];
    if (c->text != text || c->kind != kind) {
        uint32_t l = pyheap_walk_label(w, kind, text);
        if (w->nomem)
            return l;
        *c = (struct walk_lit){ text, kind, l };
    }
    return c->label;
}

const char *pyheap_walk_label_text(struct walk *w, uint32_t label)
{
    uint32_t p = WALK_LBL_PAYLOAD(label);
    if (!label_has_text(label))
        return "";
    /* The texts stay put until the walk ends. */
    if (p >= __atomic_load_n(&w->sh->labels.n, __ATOMIC_ACQUIRE))
        return "";
    return labeltab_text(&w->sh->labels, p);
}

uint32_t pyheap_walk_label_index(uint64_t i)
{
    return i <= WALK_LBL_PAYLOAD_MAX ? WALK_LBL(LBL_INDEX, i) : WALK_LBL(LBL_ITEM, 0);
}

/* Copy up to KEY_TEXT_MAX bytes of SRC into DST (cap >= 4 * KEY_TEXT_MAX + 4)
 * with quotes, backslashes and control characters escaped; "..." marks a cut. */
static void escape_key(const char *src, char *dst)
{
    size_t n = strlen(src), o = 0;
    bool cut = n > KEY_TEXT_MAX;
    if (cut) {
        n = KEY_TEXT_MAX;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--; /* do not split a UTF-8 sequence */
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '\'' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    if (cut) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = 0;
}

/* Value of the int object at ADDR if it fits in int64. 0 or -1. */
static int read_small_int(struct walk *w, uint64_t addr, int64_t *out)
{
    const struct pyheap_offsets *off = &w->h.t->off;
    uint64_t size;
    uint32_t d[3] = { 0, 0, 0 };
    if (pyheap_walk_read_u64(w, addr + off->ob_size, &size) < 0)
        return -1;
    int64_t n = (int64_t)size;
    if (w->h.t->k.long_lv_tag) {
        /* 3.12+: lv_tag = ndigits << shift | sign (0 +, 1 zero, 2 -) */
        uint64_t sign = size & w->h.t->k.long_sign_mask;
        n = (int64_t)(size >> w->h.t->k.long_ndigits_shift);
        if (sign == 2)
            n = -n;
        else if (sign != 0 && sign != 1)
            return -1;
    }
    int64_t an = n < 0 ? -n : n;
    if (an > 2 || (an > 0 && pyheap_walk_read(w, addr + off->long_ob_digit, d,
                                              (size_t)an * sizeof d[0]) < 0))
        return -1;
    uint64_t v = (uint64_t)(d[0] & 0x3fffffffu) | ((uint64_t)(d[1] & 0x3fffffffu) << 30);
    *out = n < 0 ? -(int64_t)v : (int64_t)v;
    return 0;
}

/* The label of the values stored under KEY. Str and int keys are
 * labelled by their text, interned; with BUDGETED, once the texts pass the
 * budget, a new one is left out, the label naming the key's type (*ELIDED
 * set). */
static uint32_t key_label_compute(struct walk *w, uint64_t key, bool budgeted, bool *elided)
{
    uint64_t hdr[2];
    const struct walk_type *t = NULL;
    size_t budget = budgeted ? w->sh->label_budget : SIZE_MAX;
    if (pyheap_walk_read(w, key, hdr, sizeof hdr) == 0)
        t = type_cached(w, hdr[1]);
    if (!t)
        return pyheap_walk_label_lit(w, LBL_KEY_TEXT, "<?>");
    char buf[4 * KEY_TEXT_MAX + 8];
    if (t->kind == WALK_STR) {
        char raw[KEY_TEXT_MAX * 2 + 8];
        if (pyheap_walk_str_utf8(w, key, raw, sizeof raw) < 0)
            return pyheap_walk_label_lit(w, LBL_KEY_TEXT, "<str>");
        escape_key(raw, buf);
        uint32_t l = label_intern(w, LBL_KEY_STR, buf, budget, elided);
        return *elided ? pyheap_walk_label_lit(w, LBL_KEY_TEXT, "<str>") : l;
    }
    int64_t v;
    if (t->addr == w->h.t->wk.int_ && read_small_int(w, key, &v) == 0) {
        if (v >= 0 && v <= (int64_t)WALK_LBL_PAYLOAD_MAX)
            return WALK_LBL(LBL_KEY_INT, (uint32_t)v);
        snprintf(buf, sizeof buf, "%lld", (long long)v);
        uint32_t l = label_intern(w, LBL_KEY_TEXT, buf, budget, elided);
        return *elided ? pyheap_walk_label_lit(w, LBL_KEY_TEXT, "<int>") : l;
    }
    if (t->addr == w->h.t->wk.bool_ && read_small_int(w, key, &v) == 0)
        return pyheap_walk_label(w, LBL_KEY_TEXT, v ? "True" : "False");
    if (t->addr == w->h.t->wk.none_type)
        return pyheap_walk_label_lit(w, LBL_KEY_TEXT, "None");
    sh_lock(w);
    const char *tn = t->name < w->sh->names.n ? w->sh->names.s[t->name] : "?";
    snprintf(buf, sizeof buf, "<%.*s>", 60, tn);
    sh_unlock(w);
    return pyheap_walk_label(w, LBL_KEY_TEXT, buf);
}

/* Pending slot I: its key's address, | 1 if it draws on the budget (0: no
 * key, or its block is gone). */
static uint64_t pend_slot(const struct walk_shared *sh, uint64_t i)
{
    const uint64_t *b = sh->pend[i >> PEND_SHIFT];
    return b ? b[i & (((uint64_t)1 << PEND_SHIFT) - 1)] : 0;
}

/* A pending label for KEY (BUDGETED: its text draws on the budget), or 0
 * when none is left or memory runs out (the caller computes it now). */
static uint32_t pend_defer(struct walk *w, uint64_t key, bool budgeted)
{
    struct walk_shared *sh = w->sh;
    if (w->pend_at == w->pend_end) {
        if (__atomic_load_n(&sh->pend_next, __ATOMIC_RELAXED) > PEND_BLOCKS << PEND_SHIFT)
            return 0;
        uint64_t at = __atomic_fetch_add(&sh->pend_next, PEND_RESERVE, __ATOMIC_RELAXED);
        if (at + PEND_RESERVE > (uint64_t)PEND_BLOCKS << PEND_SHIFT)
            return 0;
        uint64_t **slot = &sh->pend[at >> PEND_SHIFT];
        if (!__atomic_load_n(slot, __ATOMIC_ACQUIRE)) {
            sh_lock(w);
            if (!*slot)
                __atomic_store_n(slot, calloc((size_t)1 << PEND_SHIFT, sizeof **slot),
                                 __ATOMIC_RELEASE);
            sh_unlock(w);
            if (!__atomic_load_n(slot, __ATOMIC_ACQUIRE))
                return 0;   /* (the range is lost: its indices stay unused) */
        }
        w->pend_at = (uint32_t)at;
        w->pend_end = (uint32_t)(at + PEND_RESERVE);
    }
    uint32_t i = w->pend_at++;
    sh->pend[i >> PEND_SHIFT][i & ((1u << PEND_SHIFT) - 1)] = key | (budgeted ? 1 : 0);
    return WALK_LBL(WALK_LBL_PENDING, i);
}

/* Whether the pending LABEL's text draws on the budget. */
static bool pend_budgeted(const struct walk *w, uint32_t label)
{
    return (pend_slot(w->sh, WALK_LBL_PAYLOAD(label)) & 1) != 0;
}

uint32_t pyheap_walk_label_key(struct walk *w, uint64_t key, unsigned how)
{
    if (!plausible_addr(key))
        return WALK_LBL(LBL_NONE, 0);
    if (!w->kc && !(w->kc = calloc(KC_SIZE, sizeof *w->kc))) {
        w->nomem = true;
        return WALK_LBL(LBL_NONE, 0);
    }
    size_t j = hash64(key) & (KC_SIZE - 1);
    uint32_t l;
    /* a pending label serves only a caller that takes one, and one that
     * draws on the budget only such a caller */
    bool defer = (how & (WALK_KEY_DEFER | WALK_KEY_ATTR)) == WALK_KEY_DEFER && w->in_obj;
    if (w->kc[j].key == key &&
        (WALK_LBL_KIND(w->kc[j].label) != WALK_LBL_PENDING ||
         (defer && ((how & WALK_KEY_BUDGET) || !pend_budgeted(w, w->kc[j].label))))) {
        l = w->kc[j].label;
    } else if (defer && !near_now(w, key) &&
               (l = pend_defer(w, key, (how & WALK_KEY_BUDGET) != 0)) != 0) {
        w->kc[j].key = key, w->kc[j].label = l;
    } else {
        bool elided = false;
        l = key_label_compute(w, key, (how & WALK_KEY_BUDGET) != 0, &elided);
        if (elided)   /* not remembered: a use without budget wants it */
            w->key_labels_elided += w->in_obj;   /* (outside: a root's name) */
        else
            w->kc[j].key = key, w->kc[j].label = l;
    }
    if ((how & WALK_KEY_ATTR) && WALK_LBL_KIND(l) == LBL_KEY_STR)
        l = WALK_LBL(LBL_ATTR, WALK_LBL_PAYLOAD(l));
    return l;
}

static void add_root(struct walk *w, uint64_t addr, uint32_t label)
{
    if (w->nroots >= MAX_ROOTS || !plausible_addr(addr))
        return;
    char lb[300], name[600];
    lb[0] = 0;
    if (WALK_LBL_KIND(label) != LBL_NONE) {
        /* the text as label 0 of its own table (a payload without text
         * is a number) */
        char *text[1] = { (char *)pyheap_walk_label_text(w, label) };
        pyheap_label_render(text, 1, label_has_text(label) ? label & ~WALK_LBL_PAYLOAD_MAX : label,
                            lb, sizeof lb);
    }
    snprintf(name, sizeof name, "%s%s", w->root_prefix, lb);
    char *copy = strdup(name);
    if (!copy || !pyheap_grow((void **)&w->roots, &w->caproots, w->nroots + 1, sizeof *w->roots)) {
        free(copy);
        w->nomem = true;
        return;
    }
    w->roots[w->nroots++] = (struct snapshot_root_in){ .addr = addr, .name = copy,
                                                       .prio = w->root_prio };
}

void pyheap_walk_edge(struct walk *w, uint64_t addr, uint32_t label)
{
    if (!addr)
        return;
    bool maybe = (WALK_LBL_FLAGS(label) & PYHEAP_EDGE_INFERRED) != 0;
    if (w->in_obj) {
        if (plausible_addr(addr)) {
            if (w->found.nedges >= MAX_EDGES || snapshot_in_edge(&w->found, addr, label) < 0)
                w->nomem = w->found.nedges < MAX_EDGES;
            push_plausible(w, addr, maybe ? REF_MAYBE : 0);
            return;
        }
    } else if (w->root_prefix[0] && !maybe &&
               !(WALK_LBL_FLAGS(label) & PYHEAP_EDGE_CUT)) {
        /* A frame's globals and builtins are no roots of their own: their
         * module names them better. */
        add_root(w, addr, label);
    }
    push(w, addr, maybe ? REF_MAYBE : 0);
}

/* ---- the type cache ---- */

static struct typemap_entry *tmap_find(struct walk_shared *sh, uint64_t addr, bool insert)
{
    if (insert && (sh->tmap_used + 1) * 2 > sh->tmap_cap) {
        size_t ncap = sh->tmap_cap ? sh->tmap_cap * 2 : 4096;
        struct typemap_entry *n = calloc(ncap, sizeof *n);
        if (!n)
            return NULL;
        for (size_t i = 0; i < sh->tmap_cap; i++) {
            if (!sh->tmap[i].addr)
                continue;
            size_t j = hash64(sh->tmap[i].addr) & (ncap - 1);
            while (n[j].addr)
                j = (j + 1) & (ncap - 1);
            n[j] = sh->tmap[i];
        }
        free(sh->tmap);
        sh->tmap = n;
        sh->tmap_cap = ncap;
    }
    if (!sh->tmap_cap)
        return NULL;
    size_t j = hash64(addr) & (sh->tmap_cap - 1);
    while (sh->tmap[j].addr) {
        if (sh->tmap[j].addr == addr)
            return &sh->tmap[j];
        j = (j + 1) & (sh->tmap_cap - 1);
    }
    if (!insert)
        return NULL;
    sh->tmap[j].addr = addr;
    sh->tmap[j].idx = -2;
    sh->tmap_used++;
    return &sh->tmap[j];
}

static bool printable_name(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

static const struct walk_type *type_lookup_locked(struct walk *w, uint64_t addr, int depth);

static const struct walk_type *type_lookup(struct walk *w, uint64_t addr, int depth)
{
    sh_lock(w);
    const struct walk_type *t = type_lookup_locked(w, addr, depth);
    sh_unlock(w);
    return t;
}

static const struct walk_type *type_lookup_locked(struct walk *w, uint64_t addr, int depth)
{
    struct walk_shared *sh = w->sh;
    if (!plausible_addr(addr) || depth > 8)
        return NULL;
    struct typemap_entry *e = tmap_find(sh, addr, false);
    if (e)
        return e->idx >= 0 ? sh->types[e->idx] : NULL;
    e = tmap_find(sh, addr, true);
    if (!e) {
        w->nomem = true;
        return NULL;
    }
    const struct pyheap_offsets *off = &w->h.t->off;
    uint64_t hdr[2];
    int ok = 0;
    uint64_t meta = 0;
    if (pyheap_walk_read(w, addr, hdr, sizeof hdr) == 0) {
        meta = hdr[1];
        if (refcnt_ok(w, hdr[0])) {
            if (meta == w->h.t->wk.type)
                ok = 1;
            else if (meta != addr) {
                const struct walk_type *mt = type_lookup_locked(w, meta, depth + 1);
                ok = mt && (mt->flags & w->h.t->k.tpflags_type_subclass);
            }
        }
    }
    uint64_t name_ptr = 0;
    if (ok && pyheap_walk_read_u64(w, addr + off->tp_name, &name_ptr) == 0) {
        char name[128];
        ssize_t n = pyheap_mem_read_cstr(w->mem, name_ptr, name, sizeof name, NULL);
        ok = n > 0 && printable_name(name, (size_t)n);
    } else {
        ok = 0;
    }
    struct walk_type wt;
    if (ok && pyheap_walk_type_describe(w, addr, meta, &wt) < 0)
        ok = 0;
    /* The map may have been resized by recursive lookups. */
    e = tmap_find(sh, addr, false);
    if (!e)
        return NULL;
    if (!ok) {
        e->idx = -1;
        return NULL;
    }
    struct walk_type *copy = malloc(sizeof *copy);
    if (!copy ||
        !pyheap_grow((void **)&sh->types, &sh->captypes, sh->ntypes + 1, sizeof *sh->types)) {
        free(copy);
        free(wt.members);
        free(wt.member_labels);
        w->nomem = true;
        e->idx = -1;
        return NULL;
    }
    *copy = wt;
    sh->types[sh->ntypes] = copy;
    e->idx = (int32_t)sh->ntypes++;
    return copy;
}

/* type_lookup through this thread's cache of valid types (which keeps
 * the shared lock out of most lookups). */
static inline const struct walk_type *type_cached(struct walk *w, uint64_t addr)
{
    size_t ci = (size_t)(addr >> 4) & (TCACHE_SIZE - 1);
    if (w->tcache[ci].addr == addr && addr)
        return w->tcache[ci].t;
    const struct walk_type *t = type_lookup(w, addr, 0);
    if (t) {
        w->tcache[ci].addr = addr;
        w->tcache[ci].t = t;
        w->tcache[ci].pushed = false;
    }
    return t;
}

const struct walk_type *pyheap_walk_type_get(struct walk *w, uint64_t addr)
{
    return type_cached(w, addr);
}

/* ---- visiting one object ---- */

static int decode(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    switch (o->type->kind) {
    case WALK_TUPLE: return pyheap_walk_decode_tuple(w, o, size);
    case WALK_LIST: return pyheap_walk_decode_list(w, o, size);
    case WALK_DICT: return pyheap_walk_decode_dict(w, o, size);
    case WALK_SET: return pyheap_walk_decode_set(w, o, size);
    case WALK_STR: return pyheap_walk_decode_str(w, o, size);
    case WALK_BYTES: return pyheap_walk_decode_bytes(w, o, size);
    case WALK_BYTEARRAY: return pyheap_walk_decode_bytearray(w, o, size);
    case WALK_INT: return pyheap_walk_decode_int(w, o, size);
    case WALK_TYPE: return pyheap_walk_decode_type(w, o, size);
    case WALK_MODULE: return pyheap_walk_decode_module(w, o, size);
    case WALK_FUNCTION: return pyheap_walk_decode_function(w, o, size);
    case WALK_CODE: return pyheap_walk_decode_code(w, o, size);
    case WALK_CELL: return pyheap_walk_decode_cell(w, o, size);
    case WALK_METHOD: return pyheap_walk_decode_method(w, o, size);
    case WALK_FRAME: return pyheap_walk_decode_frame(w, o, size);
    case WALK_GEN: return pyheap_walk_decode_gen(w, o, size);
    case WALK_DEQUE: return pyheap_walk_decode_deque(w, o, size);
    case WALK_ODICT: return pyheap_walk_decode_odict(w, o, size);
    case WALK_DEFAULTDICT: return pyheap_walk_decode_defaultdict(w, o, size);
    case WALK_PARTIAL: return pyheap_walk_decode_partial(w, o, size);
    case WALK_WEAKREF: return pyheap_walk_decode_weakref(w, o, size);
    case WALK_LOCAL: return pyheap_walk_decode_local(w, o, size);
    case WALK_LOCAL_DICTS: return pyheap_walk_decode_local_dicts(w, o, size);
    case WALK_LOCALDUMMY: return pyheap_walk_decode_localdummy(w, o, size);
    case WALK_PROPERTY: return pyheap_walk_decode_property(w, o, size);
    case WALK_CLASSMETHOD: return pyheap_walk_decode_classmethod(w, o, size);
    case WALK_MEMORYVIEW: return pyheap_walk_decode_memoryview(w, o, size);
    case WALK_MANAGEDBUF: return pyheap_walk_decode_managedbuf(w, o, size);
    case WALK_FLOAT:
    case WALK_COMPLEX:
    case WALK_OBJECT:
    case WALK_UNKNOWN:
    case WALK_NKINDS:
        break;
    }
    return pyheap_walk_decode_fixed(w, o, size);
}

/* ADDR, in the seen set, is not recorded. */
static void unrecorded(struct walk *w, uint64_t addr)
{
    if (!append_u64(&w->unrec, &w->nunrec, &w->capunrec, addr))
        w->unrec_lost = true;
}

/* The records of all threads count against the object limit, added up in
 * batches: W's go into the total here, and W checks again when it has
 * recorded enough more to pass the limit, or 4096 more. */
static void recs_check(struct walk *w)
{
    size_t pending = w->found.n - w->nrecs_flushed;
    uint64_t total = __atomic_add_fetch(&w->sh->nrecs, pending, __ATOMIC_RELAXED);
    w->nrecs_flushed = w->found.n;
    uint64_t limit = w->max_objects < UINT32_MAX - 1 ? w->max_objects : UINT32_MAX - 1;
    /* Past the limit, not at it: a heap of exactly the limit is whole (the
     * records past it are trimmed off at the end). */
    if (total > limit) {
        w->truncated = true;
        return;
    }
    w->recs_check_at = w->found.n + (limit - total < 4096 ? (size_t)(limit - total) + 1 : 4096);
}

/* Kinds whose objects are cut off when paths and retained sizes are
 * computed (edges into them are PYHEAP_EDGE_CUT). */
#define CUT_KINDS ((1u << WALK_MODULE) | (1u << WALK_TYPE) | (1u << WALK_CODE))
_Static_assert(WALK_NKINDS <= 32, "CUT_KINDS is a 32-bit mask of walk kinds");

static void visit(struct walk *w, uint64_t item)
{
    uint64_t addr = item & ~REF_MAYBE;
    bool maybe = item & REF_MAYBE;
    mode_step(w);
    uint64_t hdr[2];
    if (pyheap_walk_read(w, addr, hdr, sizeof hdr) < 0) {
        unrecorded(w, addr);
        if (!maybe)
            w->skipped++;
        return;
    }
    const struct walk_type *t = NULL;
    size_t ci = (size_t)(hdr[1] >> 4) & (TCACHE_SIZE - 1);
    if (refcnt_ok(w, hdr[0]))
        t = type_cached(w, hdr[1]);
    if (!t) {
        unrecorded(w, addr);
        if (!maybe)
            w->skipped++;
        return;
    }
    struct walk_obj o = { .addr = addr, .type = t };
    uint64_t size = 0;
    size_t before = w->nstack, later_before = w->nlater;
    struct snapshot_in_mark edges_before = snapshot_in_mark(&w->found);
    uint64_t elided_before = w->key_labels_elided;
    w->in_obj = true;
    if (decode(w, &o, &size) < 0) {
        w->key_labels_elided = elided_before;   /* (their edges go) */
        /* Drop what a half-decoded object reported, and take its
         * referents (pushed, not visited) out of the seen set again: an
         * object that refers to one of them later has it visited. */
        w->in_obj = false;
        for (size_t k = before; k < w->nstack; k++)
            seen_remove(w, w->stack[k] & ~(REF_MAYBE | REF_NEAR));
        w->nstack = before;
        w->nlater = later_before;
        snapshot_in_rollback(&w->found, edges_before);
        unrecorded(w, addr);
        if (!maybe)
            w->skipped++;
        return;
    }
    uint32_t name = t->name;
    uint64_t type_addr = t->addr;
    enum walk_kind kind = t->kind;
    if (pyheap_walk_has_extra(t))
        pyheap_walk_decode_extra(w, &o);
    w->in_obj = false;
    /* The type is discovered through its instances, but ob_type is not
     * kept as an edge (it would make every instance a referrer of its
     * class); see docs/graph.md. Pushed once per cached type (the seen set
     * drops repeats, but asking it for every instance costs). */
    if (!w->tcache[ci].pushed || w->tcache[ci].t != t) {
        push(w, type_addr, 0);
        if (w->tcache[ci].t == t)
            w->tcache[ci].pushed = true;
    }
    bool cut = ((1u << kind) & CUT_KINDS) != 0;
    if (snapshot_in_object(&w->found, addr, size, name | (cut ? SNAPSHOT_IN_CUT : 0)) < 0) {
        w->nomem = true;
        snapshot_in_rollback(&w->found, edges_before);
        unrecorded(w, addr);
        return;
    }
    if (w->found.n >= w->recs_check_at)
        recs_check(w);
    if (t->gc && (__atomic_load_n(&w->sh->lists_paged[0], __ATOMIC_RELAXED) ||
                  __atomic_load_n(&w->sh->lists_paged[1], __ATOMIC_RELAXED) ||
                  w->sh->lists_probed))
        gc_links_keep(w, addr);
}

/* ---- discovery: GC lists and roots ---- */

static void add_seed(struct walk *w, uint64_t addr);

/* The node after PREV on its list as it is now (uncached reads): 0 with
 * *NEXT and its own links G (G[0] at STEP_AT, G[1] at CHECK_AT) when its
 * link back names PREV, else -1. */
static int gc_link_now(struct walk *w, uint64_t prev, size_t step_at, size_t check_at,
                       uint64_t *next, uint64_t g[2])
{
    uint64_t nx;
    if (pyheap_mem_read(w->mem, prev + step_at, &nx, sizeof nx, NULL) < 0)
        return -1;
    nx &= ~(uint64_t)3;
    if (!plausible_addr(nx) ||
        pyheap_mem_read(w->mem, nx + step_at, &g[0], sizeof g[0], NULL) < 0 ||
        pyheap_mem_read(w->mem, nx + check_at, &g[1], sizeof g[1], NULL) < 0 ||
        (g[1] & ~(uint64_t)3) != prev)
        return -1;
    *next = nx;
    return 0;
}

/* Mend a torn link after PREV (gc_link_now). While the collector of the
 * GC state at GC runs, the lists' back links hold reference counts: wait
 * for it to finish (GC_MEND_WAIT_MS per walker in all; not when the
 * target is stopped), then read the link again. */
static int gc_link_fresh(struct walk *w, uint64_t gc, uint64_t prev, size_t step_at,
                         size_t check_at, uint64_t *next, uint64_t g[2])
{
    if (gc_link_now(w, prev, step_at, check_at, next, g) == 0)
        return 0;
    const struct pyheap_offsets *off = &w->h.t->off;
    if (off->gcstate_collecting == PYHEAP_OFF_ABSENT || w->h.t->pid <= 0 || w->sh->stopped)
        return -1;
    bool waited = false;
    while (w->gc_wait_ms < GC_MEND_WAIT_MS && !stopping(w)) {
        int32_t collecting = 0;
        if (pyheap_mem_read(w->mem, gc + off->gcstate_collecting, &collecting,
                            sizeof collecting, NULL) < 0 || !collecting)
            break;
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
        w->gc_wait_ms++;
        waited = true;
    }
    return waited ? gc_link_now(w, prev, step_at, check_at, next, g) : -1;
}

/* Whether the list nodes this walker reads lie scattered (a churned heap):
 * each of the first LIST_DECIDE nodes it reads (the visits of their
 * seeds start after SEED_BLOCK of them, and may reach the whole heap),
 * then one in LIST_SAMPLE (N: the node's count in its list) is looked up
 * in the memory at hand; after LIST_DECIDE looked up, more than one in
 * LIST_FAR_AT not at hand tells the visits to keep links
 * (sh->lists_paged[BACK]). */
#define LIST_SAMPLE  16
#define LIST_DECIDE  256
#define LIST_FAR_AT  8
static void list_sample(struct walk *w, uint64_t at, bool back, uint64_t n)
{
    if (w->list_decided && n % LIST_SAMPLE)
        return;
    w->list_far += !near_now(w, at);
    if (++w->list_looked < LIST_DECIDE)
        return;
    bool scattered = w->list_far * LIST_FAR_AT > w->list_looked;
    if (scattered != __atomic_load_n(&w->sh->lists_paged[back], __ATOMIC_RELAXED))
        __atomic_store_n(&w->sh->lists_paged[back], scattered, __ATOMIC_RELAXED);
    w->list_far = w->list_looked = 0;
    w->list_decided = true;
}

/* One pass over the GC list at HEAD: from the head along gc_next, or
 * (BACK) from the tail along gc_prev, seeding every object not seen yet.
 * CLAIM (the main interpreter's lists, several threads): both ends are
 * walked at once, and this one stops where the other has been
 * (sh->listed); IDX is the list's place in gc_list_heads; GC is the GC
 * state's address; AGAIN: a pass before tore. 1 when torn beyond mending,
 * else 0. */
static int gc_list_pass(struct walk *w, uint64_t gc, uint64_t head, bool back, int idx,
                        bool claim, bool again)
{
    const struct pyheap_offsets *off = &w->h.t->off;
    const size_t step_at = back ? off->gc_prev : off->gc_next;
    const size_t check_at = back ? off->gc_next : off->gc_prev;
    uint64_t prev = head, cur;
    if (pyheap_walk_read_u64(w, head + step_at, &cur) < 0) {
        w->skipped++;
        return 0;
    }
    cur &= ~(uint64_t)3;
    /* Torn links could close a cycle that never returns to HEAD: Brent's
     * cycle finding (compare with a mark moved at powers of two) stops it
     * without remembering the list. (The seen set cannot tell: with
     * several threads, list members may be reached before the list gets to
     * them.) */
    uint64_t mark = head, power = 1, lam = 0;
    unsigned mended = 0;
    /* Nodes counted since the last claimed one: where the two ends meet,
     * both walked them. */
    uint64_t since = 0;
    for (uint64_t n = 0; cur != head; n++) {
        /* (the object limit is the records': recs_check) */
        if (n >= MAX_GC_LIST || stopping(w)) {
            w->truncated = w->truncated || n >= MAX_GC_LIST;
            return 0;
        }
        uint64_t g[2];
        /* (a node whose links a visit kept is no step: it reads nothing) */
        bool kept = !again && plausible_addr(cur) &&
                    __atomic_load_n(&w->sh->links_any, __ATOMIC_RELAXED) &&
                    gc_links_find(w, cur, back, g);
        /* A node kept as its list's last may have had others appended
         * since: its links are read. */
        if (kept && ((back ? g[1] : g[0]) & ~(uint64_t)3) == head)
            kept = false;
        if (!kept) {
            mode_step(w);
            list_sample(w, cur + step_at, back, n);
        }
        if (!plausible_addr(cur) ||
            (!kept && (pyheap_walk_read(w, cur + step_at, &g[0], 8) < 0 ||
                       pyheap_walk_read(w, cur + check_at, &g[1], 8) < 0)) ||
            (g[1] & ~(uint64_t)3) != prev) {
            /* A torn or freed link: CUR left the list (freed, or moved by
             * a collection) after PREV's link to it was read, or the
             * cached copies are of different moments. Read PREV's link
             * and the node it names afresh, and go on from there if that
             * node links back to PREV now; else the rest of this list is
             * unreliable from this end as cached (walk_gc_list reads it
             * again). */
            if (mended >= MAX_GC_MENDS ||
                gc_link_fresh(w, gc, prev, step_at, check_at, &cur, g) < 0) {
                w->skipped++;
                return 1;
            }
            mended++;
            w->gc_mended++;
            kept = false;   /* (CUR is another node now, read) */
            if (cur == head) {
                /* PREV is the last now: claimed as the last is (its
                 * link on, read before, did not name the head) */
                if (claim && pyheap_addrset_claim_mt(&w->sh->listed, &w->lcursor,
                                                     &w->sh->seen_lock,
                                                     back ? prev ^ 8 : prev) < 0)
                    w->nomem = true;
                return 0;
            }
        }
        w->links_hits += kept;
        if (cur == mark) {
            w->skipped++; /* a cycle: torn links */
            return 1;
        }
        if (++lam == power) {
            mark = cur;
            power <<= 1;
            lam = 0;
        }
        if (!plausible_addr(cur + off->gc_head)) {
            w->skipped++;
            return 1;
        }
        bool claimed = claim && (n == 0 || (g[0] & ~(uint64_t)3) == head ||
                                 (hash64(cur) & (CLAIM_EVERY - 1)) == 0);
        if (claimed) {
            /* the head's walker claims CUR, the tail's CUR ^ 8 */
            int c = pyheap_addrset_claim_mt(&w->sh->listed, &w->lcursor, &w->sh->seen_lock,
                                            back ? cur ^ 8 : cur);
            if (c < 0) {
                w->nomem = true;
                return 0;
            }
            /* Claimed by the other end: met, if it has got to this list
             * (it walks the lists in the other order). Claimed by this
             * end before: an address reused during the scan (a cycle of
             * torn links is Brent's). */
            if (c & 2) {
                int other = __atomic_load_n(back ? &w->sh->fwd_at : &w->sh->back_at,
                                            __ATOMIC_ACQUIRE);
                if (back ? other >= idx : other <= idx) {
                    /* Met: the head's walker stops at a node the tail's
                     * claimed on its way, which went on past it up to the
                     * head's last claim: the nodes since that claim were
                     * walked by both, and the head's walker takes them
                     * off its count. (Not the tail's: it also stops at
                     * the last node the head's walker claimed when that
                     * walked the whole list, and the nodes appended after
                     * that were walked by the tail's alone.) */
                    if (!back)
                        w->gc_tracked -= since;
                    return 0;
                }
            }
            since = 0;
        }
        /* (a node whose links a visit kept was seen before that visit) */
        int fresh = kept ? 0 : seen_insert(w, cur + off->gc_head);
        if (fresh < 0) {
            w->nomem = true;
            return 0;
        }
        if (fresh > 0)
            add_seed(w, cur + off->gc_head);
        if (!again || fresh > 0) {   /* (a pass again counts what it adds) */
            w->gc_tracked++;
            w->gc_tracked_back += back;
            since += !claimed;
        }
        prev = cur;
        cur = g[0] & ~(uint64_t)3;
    }
    return 0;
}

/* Walk a GC list (gc_list_pass). A list whose links tear beyond mending
 * (a collection reordered it during the scan: the links this walker
 * cached are then of another order) is walked again from its end, its
 * chunks read afresh, up to GC_LIST_AGAIN times: objects held only by C
 * code (module state, caches) are found through their list alone. The
 * seen set makes the passes again cheap (links only); with claims, a pass
 * again stops where the other end has been, as the first does (its own
 * earlier claims are not the other's). A stopped target's lists do not
 * change: they are not walked again. */
static void walk_gc_list(struct walk *w, uint64_t gc, uint64_t head, bool back, int idx,
                         bool claim)
{
    for (int pass = 0; gc_list_pass(w, gc, head, back, idx, claim, pass > 0); pass++) {
        if (pass == GC_LIST_AGAIN || stopping(w) || w->h.t->pid <= 0 || w->sh->stopped)
            return;
        pyheap_mem_cache_forget(w->mem);
        for (size_t i = 0; w->pages && i < NPAGES; i++)
            w->pages[i].base = 0;
        w->gc_again++;
    }
}

/* The object pointed to by the word at ADDR is a root named NAME. */
static void root_at(struct walk *w, uint64_t addr, const char *name, int prio)
{
    uint64_t v;
    if (pyheap_walk_read_u64(w, addr, &v) < 0 || !v)
        return;
    snprintf(w->root_prefix, sizeof w->root_prefix, "%s", name);
    w->root_prio = prio;
    pyheap_walk_ref(w, v);
    w->root_prefix[0] = 0;
}

static int module_root(struct walk *w, uint64_t key, uint64_t value, void *arg)
{
    (void)arg;
    char name[160];
    if (pyheap_walk_str_utf8(w, key, name, sizeof name) < 0 || !name[0])
        snprintf(name, sizeof name, "<module>");
    snprintf(w->root_prefix, sizeof w->root_prefix, "%s", name);
    w->root_prio = 0;
    pyheap_walk_ref(w, value);
    w->root_prefix[0] = 0;
    return 0;
}

uint64_t pyheap_walk_stackref(const struct walk *w, uint64_t bits)
{
    const struct pyheap_consts *k = &w->h.t->k;
    if (!k->stackref_tagged)
        return bits;
    if (bits == 0 || bits == k->stackref_null_bits)
        return 0;
    uint64_t tag = bits & k->stackref_tag_mask;
    if (tag == k->stackref_int_tag || tag == 2)
        return 0; /* a tagged int, or an invalid (debug) reference */
    return bits & ~k->stackref_tag_mask;
}

int pyheap_walk_iframe_code(struct walk *w, uint64_t iframe, uint64_t *code)
{
    const struct pyheap_offsets *off = &w->h.t->off;
    uint64_t v;
    if (off->iframe_f_code != PYHEAP_OFF_ABSENT) {
        if (pyheap_walk_read_u64(w, iframe + off->iframe_f_code, &v) < 0)
            return -1;
        *code = v;
        return 0;
    }
    /* 3.13+: f_executable is a code object, None or another executable. */
    if (off->iframe_f_executable == PYHEAP_OFF_ABSENT ||
        pyheap_walk_read_u64(w, iframe + off->iframe_f_executable, &v) < 0)
        return -1;
    v = pyheap_walk_stackref(w, v);
    uint64_t type;
    if (!v || pyheap_walk_read_u64(w, v + off->ob_type, &type) < 0 || type != w->h.t->wk.code)
        return -1;
    *code = v;
    return 0;
}

/* Whether the _PyInterpreterFrame at F is an entry / sentinel frame with no
 * code object (owned by the C stack or the interpreter, 3.12+). */
static bool frame_is_shim(struct walk *w, uint64_t f)
{
    const struct pyheap_consts *k = &w->h.t->k;
    const struct pyheap_offsets *off = &w->h.t->off;
    if (off->iframe_f_code != PYHEAP_OFF_ABSENT)
        return false; /* 3.11: the chain holds Python frames only */
    uint8_t owner;
    if (pyheap_walk_read(w, f + off->iframe_owner, &owner, 1) < 0)
        return false;
    return (k->frame_owned_by_cstack >= 0 && owner == (unsigned)k->frame_owned_by_cstack) ||
           (k->frame_owned_by_interpreter >= 0 &&
            owner == (unsigned)k->frame_owned_by_interpreter);
}

static void walk_frames(struct walk *w, uint64_t tstate, const char *thread)
{
    const struct pyheap_offsets *off = &w->h.t->off;
    uint64_t cframe, f;
    if (off->tstate_cframe != PYHEAP_OFF_ABSENT) {
        if (pyheap_walk_read_u64(w, tstate + off->tstate_cframe, &cframe) < 0 || !cframe ||
            pyheap_walk_read_u64(w, cframe + off->cframe_current_frame, &f) < 0)
            return;
    } else if (off->tstate_current_frame == PYHEAP_OFF_ABSENT ||
               pyheap_walk_read_u64(w, tstate + off->tstate_current_frame, &f) < 0) {
        return;
    }
    for (int n = 0; f && n < MAX_FRAMES && !w->gone; n++) {
        if (frame_is_shim(w, f)) {
            if (pyheap_walk_read_u64(w, f + off->iframe_previous, &f) < 0)
                return;
            continue;
        }
        char fn[64] = "?";
        uint64_t code, cname;
        if (pyheap_walk_iframe_code(w, f, &code) == 0 &&
            off->code_co_name != PYHEAP_OFF_ABSENT &&
            pyheap_walk_read_u64(w, code + off->code_co_name, &cname) == 0 &&
            pyheap_walk_str_utf8(w, cname, fn, sizeof fn) < 0)
            snprintf(fn, sizeof fn, "?");
        snprintf(w->root_prefix, sizeof w->root_prefix, "%s %s()", thread, fn);
        w->root_prio = 1;
        int rc = pyheap_walk_iframe_refs(w, f, NULL);
        w->root_prefix[0] = 0;
        if (rc < 0) {
            w->skipped++;
            return;
        }
        if (pyheap_walk_read_u64(w, f + off->iframe_previous, &f) < 0)
            return;
    }
}

static void walk_thread(struct walk *w, uint64_t ts)
{
    const struct pyheap_offsets *off = &w->h.t->off;
    uint64_t tid = 0;
    if (off->tstate_native_thread_id == PYHEAP_OFF_ABSENT ||
        pyheap_walk_read_u64(w, ts + off->tstate_native_thread_id, &tid) < 0 || !tid) {
        if (off->tstate_thread_id == PYHEAP_OFF_ABSENT ||
            pyheap_walk_read_u64(w, ts + off->tstate_thread_id, &tid) < 0)
            tid = 0;
    }
    char thread[48];
    snprintf(thread, sizeof thread, "<thread %llu>", (unsigned long long)tid);
    struct { size_t off; const char *what; } fields[] = {
        { off->tstate_dict, "dict" }, { off->tstate_curexc_type, "curexc_type" },
        { off->tstate_current_exception, "current_exception" },
        { off->tstate_curexc_value, "curexc_value" },
        { off->tstate_curexc_traceback, "curexc_traceback" },
        { off->tstate_async_exc, "async_exc" }, { off->tstate_c_profileobj, "c_profileobj" },
        { off->tstate_c_traceobj, "c_traceobj" }, { off->tstate_context, "context" } };
    char name[96];
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (fields[i].off == PYHEAP_OFF_ABSENT)
            continue;
        snprintf(name, sizeof name, "%s.%s", thread, fields[i].what);
        root_at(w, ts + fields[i].off, name, 1);
    }
    uint64_t item;
    if (off->tstate_exc_info != PYHEAP_OFF_ABSENT &&
        pyheap_walk_read_u64(w, ts + off->tstate_exc_info, &item) == 0) {
        snprintf(name, sizeof name, "%s.exc_info", thread);
        for (int n = 0; item && n < MAX_EXC_CHAIN; n++) {
            root_at(w, item + off->err_stackitem_exc_value, name, 1);
            if (pyheap_walk_read_u64(w, item + off->err_stackitem_previous_item, &item) < 0)
                break;
        }
    }
    walk_frames(w, ts, thread);
}

/* 3.12+: static builtin types keep their tp_dict and tp_subclasses per
 * interpreter (interp->types.builtins / for_extensions.initialized[]). */
static void walk_static_types_in(struct walk *w, uint64_t arr, uint64_t num_at, uint64_t cap)
{
    const struct pyheap_offsets *off = &w->h.t->off;
    uint64_t num = 0;
    size_t es = off->managed_static_type_state;
    if (pyheap_walk_read(w, num_at, &num, sizeof num) < 0 || es == PYHEAP_OFF_ABSENT ||
        es == 0 || es > 4096)
        return;
    num &= 0xffffffffu; /* a size_t; keep it small */
    if (num > cap)
        num = cap;
    for (uint64_t i = 0; i < num && !w->gone; i++) {
        uint64_t e = arr + i * es, type = 0, name_ptr = 0;
        char tn[80] = "?";
        if (off->msts_type != PYHEAP_OFF_ABSENT &&
            pyheap_walk_read_u64(w, e + off->msts_type, &type) == 0 && type &&
            pyheap_walk_read_u64(w, type + off->tp_name, &name_ptr) == 0 &&
            pyheap_mem_read_cstr(w->mem, name_ptr, tn, sizeof tn, NULL) <= 0)
            snprintf(tn, sizeof tn, "?");
        char name[128];
        if (off->msts_tp_dict != PYHEAP_OFF_ABSENT) {
            snprintf(name, sizeof name, "<type %s>.__dict__", tn);
            root_at(w, e + off->msts_tp_dict, name, 1);
        }
        if (off->msts_tp_subclasses != PYHEAP_OFF_ABSENT) {
            snprintf(name, sizeof name, "<type %s>.<tp_subclasses>", tn);
            root_at(w, e + off->msts_tp_subclasses, name, 1);
        }
    }
}

static void walk_static_types(struct walk *w, uint64_t interp)
{
    const struct pyheap_offsets *off = &w->h.t->off;
    if (!w->h.t->k.static_types_per_interp || off->interp_types_builtins_num == PYHEAP_OFF_ABSENT ||
        off->interp_types_builtins_initialized == PYHEAP_OFF_ABSENT)
        return;
    /* _Py_MAX_MANAGED_STATIC_BUILTIN_TYPES is ~200, the extension array 10. */
    walk_static_types_in(w, interp + off->interp_types_builtins_initialized,
                         interp + off->interp_types_builtins_num, 512);
    if (off->interp_types_for_ext_num != PYHEAP_OFF_ABSENT &&
        off->interp_types_for_ext_initialized != PYHEAP_OFF_ABSENT)
        walk_static_types_in(w, interp + off->interp_types_for_ext_initialized,
                             interp + off->interp_types_for_ext_num, 64);
}

/* The heads of INTERP's GC lists, youngest first, into HEADS (room for
 * GC_LISTS_MAX); their number. */
static size_t gc_list_heads(const struct walk *w, uint64_t interp, uint64_t *heads)
{
    const struct pyheap_offsets *off = &w->h.t->off;
    uint64_t gc = interp + off->interp_gc;
    unsigned ngen = w->h.t->k.gc_generations ? w->h.t->k.gc_generations : 3;
    /* 3.14.0-3.14.4 (incremental GC): young + old[2] are three consecutive
     * gc_generation structs where the other versions have generations[3]. */
    size_t gens = off->gcstate_generations != PYHEAP_OFF_ABSENT ? off->gcstate_generations
                                                                : off->gcstate_young;
    size_t n = 0;
    for (unsigned i = 0; i < ngen && i < 8; i++)
        heads[n++] = gc + gens + (uint64_t)i * off->gc_generation + off->gc_generation_head;
    if (off->gcstate_permanent_generation != PYHEAP_OFF_ABSENT)
        heads[n++] = gc + off->gcstate_permanent_generation + off->gc_generation_head;
    return n;
}

/* One walker of the lists, from their heads (one thread): whether the
 * oldest lists' nodes lie scattered is told by LIST_DECIDE of them from
 * their tails, before the walk. The walk's own samples come too late: the
 * youngest lists, and the start of the oldest, hold objects allocated in
 * order (at start-up, or last), and the visits of the first seeds from
 * the scattered part may reach all of it before the walk has sampled
 * enough. When they are scattered, the visits keep links for the whole
 * walk (sh->lists_probed). Returns whether LIST_DECIDE nodes were seen. */
static bool lists_probe(struct walk *w, uint64_t head)
{
    const struct pyheap_offsets *off = &w->h.t->off;
    uint64_t cur;
    unsigned far = 0, n = 0;
    if (pyheap_walk_read_u64(w, head + off->gc_prev, &cur) < 0)
        return false;
    for (; n < LIST_DECIDE; n++) {
        cur &= ~(uint64_t)3;
        if (cur == head || !plausible_addr(cur))
            break;
        far += !near_now(w, cur + off->gc_prev);
        if (pyheap_walk_read_u64(w, cur + off->gc_prev, &cur) < 0)
            break;
    }
    if (n < LIST_DECIDE)
        return false;
    if (far * LIST_FAR_AT > n)
        w->sh->lists_probed = true;
    return true;
}

static void drain(struct walk *w);

static void later_add(struct walk *w, uint64_t item)
{
    if (!append_u64(&w->later, &w->nlater, &w->caplater, item))
        w->nomem = true;
}

/* The lists are walked: push what waited (walk_later), most of it seen by
 * now. */
static void walk_later(struct walk *w)
{
    for (size_t i = 0; i < w->nlater && !stopping(w); i++)
        push_plausible(w, w->later[i] & ~REF_MAYBE, w->later[i] & REF_MAYBE);
    free(w->later);
    w->later = NULL;
    w->nlater = w->caplater = 0;
}

static void walk_interp(struct walk *w, uint64_t interp)
{
    const struct pyheap_offsets *off = &w->h.t->off;
    uint64_t gc = interp + off->interp_gc;
    uint64_t heads[GC_LISTS_MAX];
    size_t nheads = gc_list_heads(w, interp, heads);
    struct walk_shared *sh = w->sh;
    bool both = two_ended(sh) && interp == sh->interp_both;
    /* The oldest generation's list first, then the younger ones, the
     * permanent generation's (gc.freeze(): start-up objects) last. */
    size_t ngens = off->gcstate_permanent_generation != PYHEAP_OFF_ABSENT && nheads > 0
                       ? nheads - 1 : nheads;
    bool probed = both || sh->mt || sh->lists_probed;
    for (size_t i = ngens; !probed && i-- > 0;)
        probed = lists_probe(w, heads[i]);
    if (!probed && ngens < nheads)
        (void)lists_probe(w, heads[ngens]);
    w->in_lists = !sh->mt;
    for (size_t i = 0; i < nheads; i++) {
        if (both)
            __atomic_store_n(&sh->fwd_at, (int)i, __ATOMIC_RELEASE);
        walk_gc_list(w, gc, heads[i], false, (int)i, both);
    }
    if (w->in_lists) {
        drain(w);   /* (the last seeds first, while their chunks are at hand) */
        w->in_lists = false;
        walk_later(w);
    }
    if (both)
        __atomic_store_n(&sh->fwd_at, LISTS_DONE, __ATOMIC_RELEASE);
    /* Modules first, by their name in sys.modules. */
    uint64_t modules;
    if (off->interp_modules != PYHEAP_OFF_ABSENT &&
        pyheap_walk_read_u64(w, interp + off->interp_modules, &modules) == 0 && modules &&
        pyheap_walk_dict_foreach(w, modules, module_root, NULL) < 0)
        w->skipped++;
    w->root_prefix[0] = 0;
    struct { size_t off; const char *name; } roots[] = {
        { off->interp_modules, "sys.modules" },
        { off->interp_modules_by_index, "<interp>.modules_by_index" },
        { off->interp_sysdict, "<interp>.sysdict" }, { off->interp_builtins, "<interp>.builtins" },
        { off->interp_importlib, "<interp>.importlib" }, { off->interp_dict, "<interp>.dict" },
        { off->interp_builtins_copy, "<interp>.builtins_copy" },
        { off->interp_import_func, "<interp>.import_func" },
        { off->interp_codec_search_path, "<interp>.codec_search_path" },
        { off->interp_codec_search_cache, "<interp>.codec_search_cache" },
        { off->interp_codec_error_registry, "<interp>.codec_error_registry" } };
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++)
        if (roots[i].off != PYHEAP_OFF_ABSENT)
            root_at(w, interp + roots[i].off, roots[i].name, 1);
    walk_static_types(w, interp);
    if (off->gcstate_garbage != PYHEAP_OFF_ABSENT)
        root_at(w, gc + off->gcstate_garbage, "gc.garbage", 1);
    if (off->gcstate_callbacks != PYHEAP_OFF_ABSENT)
        root_at(w, gc + off->gcstate_callbacks, "gc.callbacks", 1);
    uint64_t ts;
    if (pyheap_walk_read_u64(w, interp + off->interp_threads_head, &ts) < 0)
        return;
    for (int n = 0; ts && n < MAX_THREADS && !w->gone; n++) {
        walk_thread(w, ts);
        if (pyheap_walk_read_u64(w, ts + off->tstate_next, &ts) < 0)
            break;
    }
}

static void walk_free(struct walk *w);
static int walker_reader_open(const struct walk *w, struct walk *x, uint64_t cache_cap);
static void walker_reader_end(struct walk *w, struct walk *x, uint64_t *reads, uint64_t *bytes);

/* Slice [lo, hi) of the sorted pending keys A (pend_resolve), resolved by
 * walker W into RES. */
struct pend_slice {
    struct walk *w;
    const uint64_t *a;
    size_t lo, hi;
    uint32_t *res;
};

static void *pend_slice_run(void *arg)
{
    const struct pend_slice *p = arg;
    struct walk *w = p->w;
    for (size_t k = p->lo; k < p->hi; k++) {
        uint32_t i = (uint32_t)(p->a[k] & WALK_LBL_PAYLOAD_MAX);
        uint64_t v = pend_slot(w->sh, i), key = v & ~(uint64_t)1;
        size_t j = hash64(key) & (KC_SIZE - 1);
        if (w->kc[j].key == key) {
            p->res[i] = w->kc[j].label;
            continue;
        }
        bool elided = false;
        p->res[i] = key_label_compute(w, key, (v & 1) != 0, &elided);
        if (elided)   /* (counted by the build, per edge kept) */
            p->res[i] |= WALK_LBL_PENDING_ELIDED;
        else
            w->kc[j].key = key, w->kc[j].label = p->res[i];
    }
    return NULL;
}

/* Resolve the key labels left pending (pend_defer), now that the walk is
 * done, reading the keys in address order (one chunk read serves all the
 * keys in it): W and, for many keys, up to NTHREADS - 1 more walkers,
 * each with a reader of its own (their reads are added to *XREADS and
 * *XBYTES), on slices of the keys in order. *OUT (allocated) maps each
 * pending index below *N to its label (LBL_NONE: reserved, never used).
 * -1: out of memory. */
static int pend_resolve(struct walk *w, unsigned nthreads, uint32_t **out, size_t *nout,
                        uint64_t *xreads, uint64_t *xbytes)
{
    struct walk_shared *sh = w->sh;
    uint64_t n = __atomic_load_n(&sh->pend_next, __ATOMIC_RELAXED);
    if (n > (uint64_t)PEND_BLOCKS << PEND_SHIFT)
        n = (uint64_t)PEND_BLOCKS << PEND_SHIFT;
    *out = NULL;
    *nout = 0;
    size_t m = 0;
    for (uint64_t i = 0; i < n; i++)
        m += pend_slot(sh, i) != 0;
    if (m == 0)
        return 0;
    w->key_labels_later = m;
    /* In address order a few chunks serve: the walk's cached chunks make
     * room for the tables below. */
    pyheap_mem_cache_clear(w->mem);
    pyheap_mem_set_cache_cap(w->mem, PEND_CACHE);
    uint64_t *a = malloc(m * sizeof *a), *tmp = malloc(m * sizeof *tmp);
    uint32_t *res = calloc((size_t)n, sizeof *res);
    if (!a || !tmp || !res || (!w->kc && !(w->kc = calloc(KC_SIZE, sizeof *w->kc)))) {
        free(a);
        free(tmp);
        free(res);
        return -1;
    }
    /* Those that do not draw on the budget first (their texts are kept
     * in any case, and the budgeted ones then find them), each kind by
     * chunk (addresses are below 2^47: 31 bits above 16), then index. */
    size_t k = 0, u = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v = pend_slot(sh, i);
        if (v) {
            a[k++] = (v & 1) << 55 | (v >> 16) << 24 | i;
            u += !(v & 1);
        }
    }
    unsigned nw = nthreads < 1 ? 1 : nthreads > PYHEAP_MAX_SCAN_THREADS
                                         ? PYHEAP_MAX_SCAN_THREADS : nthreads;
    if (m < PEND_SLICE_MIN)
        nw = 1;   /* (images have one reader: nthreads is 1) */
    (void)pyheap_radix_sort(a, tmp, m, 24, nw);   /* (unsorted: more reads) */
    free(tmp);
    w->pages_on = false;   /* in address order, whole chunks serve best */
    memset(w->kc, 0, KC_SIZE * sizeof *w->kc);
    /* The other walkers: W's first fields, a reader and a key cache. */
    struct walk *xs = nw > 1 ? calloc(nw, sizeof *xs) : NULL;
    unsigned ready = 1;
    for (; xs && ready < nw; ready++) {
        struct walk *x = &xs[ready];
        x->h.t = w->h.t;
        x->sh = sh;
        if (!(x->kc = calloc(KC_SIZE, sizeof *x->kc)) || walker_reader_open(w, x, PEND_CACHE) < 0)
            break;
    }
    if (xs && ready < nw)
        free(xs[ready].kc);   /* (that one did not get its reader) */
    nw = xs ? ready : 1;
    /* Two rounds, the second after the first: each slice's keys in
     * address order. */
    struct pend_slice sl[PYHEAP_MAX_SCAN_THREADS];
    sh->mt = nw > 1;   /* (the labels' and types' locks) */
    for (int round = 0; round < 2; round++) {
        size_t from = round ? u : 0, to = round ? m : u;
        for (unsigned j = 0; j < nw; j++)
            sl[j] = (struct pend_slice){ .w = j ? &xs[j] : w, .a = a, .res = res,
                                         .lo = from + (to - from) * j / nw,
                                         .hi = from + (to - from) * (j + 1) / nw };
        pyheap_run_slices(pend_slice_run, sl, sizeof *sl, nw);
    }
    sh->mt = false;
    for (unsigned j = 1; xs && j < nw; j++) {
        /* (its nomem too: a label table's hole fails the scan) */
        walker_reader_end(w, &xs[j], xreads, xbytes);
        walk_free(&xs[j]);
    }
    free(xs);
    free(a);
    for (size_t b = 0; b < PEND_BLOCKS; b++) {   /* (before the build allocates) */
        free(sh->pend[b]);
        sh->pend[b] = NULL;
    }
    *out = res;
    *nout = (size_t)n;
    return 0;
}

/* The scan's reads so far into ST: MEM's since it counted READS0 and
 * BYTES0, and the other readers' XREADS and XBYTES. */
static void stats_reads(pyheap_scan_stats *st, const pyheap_mem *mem, uint64_t reads0,
                        uint64_t bytes0, uint64_t xreads, uint64_t xbytes)
{
    uint64_t r, b;
    pyheap_mem_counters(mem, &r, &b);
    st->remote_reads = r - reads0 + xreads;
    st->remote_bytes = b - bytes0 + xbytes;
}

/* -1 (ERR set) if W's process exited during the walk or is not the one
 * opened any more, else 0. */
static int walk_gone(struct walk *w, pyheap_error *err)
{
    const pyheap_target *t = w->h.t;
    pyheap_error gone_err;
    if (!w->gone && (t->pid <= 0 || pyheap_target_check_alive(t, &gone_err) == 0))
        return 0;
    if (err) {
        if (w->gone)
            pyheap_err_set(err, PYHEAP_E_GONE, ESRCH, 0, "process %d exited during the scan",
                           (int)t->pid);
        else
            *err = gone_err;
    }
    return -1;
}

static void walk_free(struct walk *w)
{
    free(w->stack);
    free(w->later);
    free(w->far);
    free(w->pages);
    free(w->unrec);
    free(w->kc);
    pyheap_snapshot_in_free(&w->found);
    for (size_t i = 0; i < w->nroots; i++)
        free(w->roots[i].name);
    free(w->roots);
    memset(w, 0, sizeof *w);
}

static void shared_free(struct walk_shared *sh)
{
    pyheap_addrset_free(&sh->seen);
    pyheap_addrset_free(&sh->listed);
    gc_links_close(sh);
    free(sh->tmap);
    for (size_t i = 0; i < sh->ntypes; i++) {
        free(sh->types[i]->members);
        free(sh->types[i]->member_labels);
        free(sh->types[i]);
    }
    free(sh->types);
    strtab_free(&sh->names);
    labeltab_free(&sh->labels);
    for (size_t i = 0; i < PEND_BLOCKS; i++)
        free(sh->pend[i]);
    pthread_mutex_destroy(&sh->lock);
    pthread_mutex_destroy(&sh->seen_lock);
    pthread_mutex_destroy(&sh->qlock);
    pthread_mutex_destroy(&sh->links_lock);
    pthread_cond_destroy(&sh->qcv);
}

/* ---- the parallel phase ---- */

/* Whether ADDR's chunk is in this walker's cache (a window on it, or the
 * cache's table): visiting it reads nothing from the target. */
static bool near_now(struct walk *w, uint64_t addr)
{
    const struct pyheap_mem_window *win = w->h.win + ((addr >> WALK_WIN_SHIFT) & (WALK_NWIN - 1));
    if (win->data && addr - win->base < win->len)
        return true;
    return pyheap_mem_cached(w->mem, addr) != 0 || page_kept(w, addr) != NULL;
}

/* Sort A (N) by the 64 KiB chunk of each address (within a chunk, in any
 * order): a few by insertion, more by pyheap_radix_sort above bit 16 on
 * this thread with TMP (room for N). Out of memory, they stay as they
 * are (the order only saves reads). */
static void sort_by_chunk(uint64_t *a, uint64_t *tmp, size_t n)
{
    if (n > 64) {
        (void)pyheap_radix_sort(a, tmp, n, 16, 1);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        uint64_t x = a[i];
        size_t j = i;
        for (; j > 0 && (a[j - 1] >> 16) > (x >> 16); j--)
            a[j] = a[j - 1];
        a[j] = x;
    }
}

/* Move the far objects to the stack, ordered so that they are popped in
 * address order and each flagged REF_NEAR: the first of a chunk reads it,
 * the others find it cached. The stack's new room is the sort's other
 * buffer (16 bytes an item in all). false (nothing moved) when the stack
 * cannot grow. */
static bool far_flush(struct walk *w)
{
    size_t n = w->nfar;
    if (w->capstack < w->nstack + n &&
        !pyheap_grow((void **)&w->stack, &w->capstack, w->nstack + n, sizeof *w->stack))
        return false;
    uint64_t *to = w->stack + w->nstack;
    sort_by_chunk(w->far, to, n);
    for (size_t i = 0; i < n; i++)   /* descending: the lowest address on top */
        to[i] = w->far[n - 1 - i] | REF_NEAR;
    w->nstack += n;
    w->nfar = 0;
    return true;
}

/* Visit everything on the stack and what it leads to. An object whose
 * chunk is not in the cache is put aside (far) instead, and the far ones
 * are visited in address order once the stack is empty: where the heap's
 * objects lie in no order (a long-lived, churned heap), a walk that
 * followed every reference at once would read a 64 KiB chunk for almost
 * every object it visits; in address order, one chunk serves all the far
 * objects in it. Objects near their referrers (in the cache) are visited
 * at once, as before. Each address is put aside at most once. */
static void drain(struct walk *w)
{
    for (;;) {
        while (w->nstack > 0 && !stopping(w)) {
            uint64_t item = w->stack[--w->nstack];
            if (!(item & REF_NEAR) && !near_now(w, item & ~REF_MAYBE)) {
                if (w->nfar < w->capfar ||
                    pyheap_grow((void **)&w->far, &w->capfar, w->nfar + 1, sizeof *w->far)) {
                    w->far[w->nfar++] = item;
                    continue;
                }
            }
            visit(w, item & ~REF_NEAR);
        }
        if (w->nfar == 0 || stopping(w))
            return;
        if (!far_flush(w)) {
            /* no room to sort them in: visit them as they are (what they
             * push goes on the stack, drained next time round) */
            uint64_t *items = w->far;
            size_t n = w->nfar;
            w->far = NULL;
            w->nfar = w->capfar = 0;
            for (size_t i = 0; i < n && !stopping(w); i++)
                visit(w, items[i]);
            free(items);
        }
    }
}

/* Put B at the end of the queue and wake one waiting thread (ALL: every
 * one). */
static void queue_put(struct walk_shared *sh, struct seed_block *b, bool all)
{
    pthread_mutex_lock(&sh->qlock);
    if (sh->qtail)
        sh->qtail->next = b;
    else
        sh->qhead = b;
    sh->qtail = b;
    __atomic_store_n(&sh->qlen, sh->qlen + 1, __ATOMIC_RELAXED);
    if (all)
        pthread_cond_broadcast(&sh->qcv);
    else
        pthread_cond_signal(&sh->qcv);
    pthread_mutex_unlock(&sh->qlock);
}

/* Hand W's block of seeds to the other threads. */
static void seeds_publish(struct walk *w)
{
    struct seed_block *b = w->block;
    w->block = NULL;
    if (!b || b->n == 0) {
        free(b);
        return;
    }
    queue_put(w->sh, b, false);
}

/* A thread is visiting something it may share out (busy_enter) or is
 * done with it: when the GC lists' walkers are done and no thread is
 * busy, the threads waiting for blocks end. */
static void busy_enter(struct walk_shared *sh)
{
    pthread_mutex_lock(&sh->qlock);
    sh->busy++;
    pthread_mutex_unlock(&sh->qlock);
}

static void busy_leave(struct walk_shared *sh)
{
    pthread_mutex_lock(&sh->qlock);
    if (--sh->busy == 0 && sh->qdone)
        pthread_cond_broadcast(&sh->qcv);
    pthread_mutex_unlock(&sh->qlock);
}

/* The next block, waiting for the walkers of the GC lists or a busy
 * thread if needed; NULL when there are no more (or a thread asked all to
 * stop). A block returned makes this thread busy (busy_leave when done). */
static struct seed_block *seeds_take(struct walk *w)
{
    struct walk_shared *sh = w->sh;
    pthread_mutex_lock(&sh->qlock);
    while (!sh->qhead && !(sh->qdone && sh->busy == 0) && !stopping(w))
        pthread_cond_wait(&sh->qcv, &sh->qlock);
    struct seed_block *b = stopping(w) ? NULL : sh->qhead;
    if (b) {
        sh->qhead = b->next;
        if (!sh->qhead)
            sh->qtail = NULL;
        __atomic_store_n(&sh->qlen, sh->qlen - 1, __ATOMIC_RELAXED);
        sh->busy++;
    }
    pthread_mutex_unlock(&sh->qlock);
    return b;
}

/* ---- huge arrays shared out ---- */

/* The items of a list, tuple or dict of SPLIT_MIN items or more are walked
 * in chunks of SPLIT_CHUNK by the thread that found it and every walker
 * thread waiting for work, not by the first alone: a heap's biggest
 * container (the list of every instance, a cache) is found when the walk
 * gets to it, often last, and one thread took 0.2 s over the 8M edges of
 * the bench heap's list at the end of its census while the other waited.
 * Each chunk's edges go to a stream of their own, as deltas from the
 * finder's previous object (its found.prev, which does not move until the
 * container is recorded); the finder appends them in order, so the
 * snapshot is the one a single thread makes. The referents a helper
 * pushes are its own to visit (they stay seen if the container is then
 * given up, unlike the finder's). */
#define SPLIT_CHUNK 65536
#define SPLIT_MIN WALK_SPLIT_MIN
_Static_assert(SPLIT_MIN >= 2 * SPLIT_CHUNK, "a shared container has two chunks or more");

struct split_task {
    int refs;                 /* atomic: the finder's and the queue's */
    struct walk_range r;      /* the container's items */
    uint64_t base;            /* the finder's found.prev */
    unsigned nchunks;
    unsigned next;            /* atomic: the next chunk to take */
    int failed;               /* atomic: one did not read */
    unsigned helped;          /* atomic: chunks other threads walked */
    uint64_t elided;          /* atomic: the chunks' key_labels_elided */
    struct snapshot_in *part; /* [nchunks]: each chunk's edges */
    unsigned char *walked;    /* [nchunks], atomic: part[c] is walked or
                               * given up */
};

static void split_release(struct split_task *k)
{
    if (__atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (unsigned c = 0; c < k->nchunks; c++)
        pyheap_snapshot_in_free(&k->part[c]);
    free(k->part);
    free(k->walked);
    free(k);
}

/* Free a block taken off the queue, or dropped from it. */
static void block_free(struct seed_block *b)
{
    if (b && b->task)
        split_release(b->task);
    free(b);
}

/* Report the items [FROM, TO) of the array at ITEMS as edges labelled by
 * index. -1 if they do not read. */
static int ref_range(struct walk *w, uint64_t items, uint64_t from, uint64_t to)
{
    uint64_t buf[512];
    for (uint64_t i = from; i < to; i += 512) {
        uint64_t m = to - i < 512 ? to - i : 512;
        if (pyheap_walk_read(w, items + i * 8, buf, m * 8) < 0)
            return -1;
        for (uint64_t j = 0; j < m; j++)
            pyheap_walk_edge(w, buf[j], pyheap_walk_label_index(i + j));
    }
    return 0;
}

/* Walk chunk C of K into its own stream (FINDER: W found the array). */
static void split_chunk(struct walk *w, struct split_task *k, unsigned c, bool finder)
{
    bool failed = stopping(w) || w->nomem;
    if (!failed) {
        struct snapshot_in mine = w->found;
        bool in_obj = w->in_obj;
        memset(&w->found, 0, sizeof w->found);
        w->found.prev = k->base;
        w->in_obj = true;
        uint64_t from = (uint64_t)c * SPLIT_CHUNK;
        uint64_t to = k->r.n - from < SPLIT_CHUNK ? k->r.n : from + SPLIT_CHUNK;
        uint64_t elided = w->key_labels_elided;
        failed = k->r.fn(w, &k->r, from, to) < 0 || w->nomem;
        /* the finder counts them with the container */
        __atomic_add_fetch(&k->elided, w->key_labels_elided - elided, __ATOMIC_RELAXED);
        w->key_labels_elided = elided;
        k->part[c] = w->found;
        w->found = mine;
        w->in_obj = in_obj;
    }
    if (failed)
        __atomic_store_n(&k->failed, 1, __ATOMIC_RELAXED);
    else if (!finder)
        __atomic_add_fetch(&k->helped, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&k->walked[c], 1, __ATOMIC_RELEASE);
}

/* The finder appends K's chunks from *AT on, in order, as long as they are
 * walked (no thread touches a chunk once it is), and frees them; *RC
 * becomes -1 once one failed or memory ran out. */
static void split_append(struct walk *w, struct split_task *k, unsigned *at, int *rc)
{
    for (; *at < k->nchunks && __atomic_load_n(&k->walked[*at], __ATOMIC_ACQUIRE); ++*at) {
        if (__atomic_load_n(&k->failed, __ATOMIC_RELAXED))
            *rc = -1;
        if (*rc == 0 && pyheap_snapshot_in_add_edges(&w->found, &k->part[*at]) < 0) {
            w->nomem = true;
            *rc = -1;
        }
        pyheap_snapshot_in_free(&k->part[*at]);
    }
}

/* Take K's chunks until none is left; the finder appends those walked
 * after each of its own (AT, RC: split_append). */
static void split_run(struct walk *w, struct split_task *k, bool finder, unsigned *at, int *rc)
{
    unsigned c;
    while ((c = __atomic_fetch_add(&k->next, 1, __ATOMIC_RELAXED)) < k->nchunks) {
        split_chunk(w, k, c, finder);
        if (finder)
            split_append(w, k, at, rc);
    }
}

static int array_range(struct walk *w, const struct walk_range *r, uint64_t from, uint64_t to)
{
    return ref_range(w, r->arg[0], from, to);
}

int pyheap_walk_ref_array(struct walk *w, uint64_t items, uint64_t n)
{
    return pyheap_walk_split(w, &(struct walk_range){ .fn = array_range, .n = n,
                                                      .arg = { items } });
}

int pyheap_walk_split(struct walk *w, const struct walk_range *r)
{
    struct walk_shared *sh = w->sh;
    uint64_t n = r->n;
    if (n >= SPLIT_MIN && w->in_lists && !sh->lists_probed && w->in_obj && !w->defer) {
        /* One walker on GC lists in allocation order: the lists reach the
         * container's referents in their order, near what the walk reads
         * at the time; visited from here at once (the stack's order), they
         * would be read in another order, and the lists' nodes among them
         * read again after (the 8M heap read twice). Their edges are
         * recorded now; what the lists did not reach is visited after
         * them. (On scattered lists the visits from here keep the links
         * the lists then need: gc_links_keep.) */
        w->defer = true;
        int rc = r->fn(w, r, 0, n);
        w->defer = false;
        return rc;
    }
    if (n < SPLIT_MIN || !sh->mt || !w->in_obj)
        return r->fn(w, r, 0, n);
    unsigned nchunks = (unsigned)((n + SPLIT_CHUNK - 1) / SPLIT_CHUNK);
    struct split_task *k = calloc(1, sizeof *k);
    struct snapshot_in *part = calloc(nchunks, sizeof *part);
    unsigned char *walked = calloc(nchunks, 1);
    if (!k || !part || !walked) {   /* alone, then */
        free(k);
        free(part);
        free(walked);
        return r->fn(w, r, 0, n);
    }
    /* One block for each other thread that may help (one taker each;
     * blocks taken once the chunks are gone cost a look), each holding
     * the task; without any, the finder walks every chunk. */
    unsigned copies = sh->walkers - 1 < nchunks - 1 ? sh->walkers - 1 : nchunks - 1;
    *k = (struct split_task){ .refs = 1 + (int)copies, .r = *r,
                              .base = w->found.prev, .nchunks = nchunks, .part = part,
                              .walked = walked };
    for (unsigned i = 0; i < copies; i++) {
        struct seed_block *b = malloc(sizeof *b);
        if (!b) {
            split_release(k);   /* the reference it would have held */
            continue;
        }
        *b = (struct seed_block){ .task = k };
        queue_put(sh, b, true);
    }
    unsigned at = 0;
    int rc = 0;
    split_run(w, k, true, &at, &rc);
    /* The chunks others took are being walked (a chunk is never left
     * half done): a millisecond or two. (The task itself lives until the
     * queue lets it go.) */
    for (split_append(w, k, &at, &rc); at < nchunks; split_append(w, k, &at, &rc))
        sched_yield();
    w->shared_arrays++;
    w->shared_chunks += __atomic_load_n(&k->helped, __ATOMIC_RELAXED);
    if (rc == 0)
        w->key_labels_elided += __atomic_load_n(&k->elided, __ATOMIC_RELAXED);
    split_release(k);
    return rc;
}

/* Visit the closure of BLOCK's seeds (or help with its array) on this
 * thread, and free it. */
static void visit_block(struct walk *w, struct seed_block *b)
{
    if (b->task) {
        split_run(w, b->task, false, NULL, NULL);
        block_free(b);
        drain(w);
        return;
    }
    if (w->capstack < w->nstack + b->n &&
        !pyheap_grow((void **)&w->stack, &w->capstack, w->nstack + b->n, sizeof *w->stack)) {
        w->nomem = true;
        free(b);
        return;
    }
    memcpy(w->stack + w->nstack, b->seeds, b->n * sizeof *w->stack);
    w->nstack += b->n;
    free(b);
    drain(w);
}

/* A seed: on the stack (one thread), or into the block being gathered.
 * The walker of the GC lists visits seeds itself while what it just read
 * of them is still in its cache: every SEED_BLOCK seeds with one thread,
 * and with several the blocks the others have no room for (two are
 * queued already), so that no thread waits and less is read twice. */
static void add_seed(struct walk *w, uint64_t addr)
{
    if (!w->sh->mt) {
        stack_add(w, addr);
        if (w->nstack >= SEED_BLOCK)   /* the seeds since the last drain */
            drain(w);
        return;
    }
    if (!w->block) {
        w->block = malloc(sizeof *w->block);
        if (!w->block) {
            w->nomem = true;
            return;
        }
        w->block->next = NULL;
        w->block->task = NULL;
        w->block->n = 0;
    }
    w->block->seeds[w->block->n++] = addr;
    if (w->block->n < SEED_BLOCK)
        return;
    if (__atomic_load_n(&w->sh->qlen, __ATOMIC_RELAXED) >= 2) {
        struct seed_block *b = w->block;
        w->block = NULL;
        visit_block(w, b);
    } else {
        seeds_publish(w);
    }
}

/* Tell every thread to stop (out of memory, process gone, limit). */
static void stop_all(struct walk_shared *sh)
{
    pthread_mutex_lock(&sh->qlock);
    __atomic_store_n(&sh->stop, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&sh->qcv);
    pthread_mutex_unlock(&sh->qlock);
}

/* A walker of GC lists has handed out its last seeds: when none is left
 * walking, the queue is done (the threads waiting for blocks see it). */
static void producer_done(struct walk_shared *sh)
{
    pthread_mutex_lock(&sh->qlock);
    if (--sh->producers <= 0) {
        sh->qdone = true;
        pthread_cond_broadcast(&sh->qcv);
    }
    pthread_mutex_unlock(&sh->qlock);
}

/* A walker thread: visit the closure of each block of seeds (or help with
 * a huge array) until the walkers of the GC lists are done, the queue is
 * empty and no thread is busy. */
static void *walk_thread_main(void *arg)
{
    struct walk *w = arg;
    struct walk_shared *sh = w->sh;
    struct seed_block *b;
    /* The first thread to get here walks the main interpreter's GC lists
     * from their tails (oldest list first: the forward walker starts with
     * the youngest), then joins the others on the queue. (Should the first
     * thread get here first, after its own walk, the first node it claims
     * was the other's last, and this stops at once.) */
    if (two_ended(sh) && !__atomic_exchange_n(&sh->back_started, 1, __ATOMIC_ACQ_REL)) {
        uint64_t heads[GC_LISTS_MAX];
        size_t nheads = gc_list_heads(w, sh->interp_both, heads);
        for (size_t i = nheads; i-- > 0 && !stopping(w);) {
            __atomic_store_n(&sh->back_at, (int)i, __ATOMIC_RELEASE);
            walk_gc_list(w, sh->interp_both + w->h.t->off.interp_gc, heads[i], true, (int)i,
                         true);
        }
        __atomic_store_n(&sh->back_at, -1, __ATOMIC_RELEASE);
        seeds_publish(w);
        producer_done(sh);
    }
    /* (seeds_take returns no block once this thread has ended) */
    while ((b = seeds_take(w)) != NULL) {
        visit_block(w, b);
        busy_leave(sh);
    }
    if (ended(w))
        stop_all(w->sh);
    return NULL;
}

/* Take over what thread walker X noted besides its records: the addresses
 * it could not record, its counts and flags. */
static void walk_merge_notes(struct walk *w, const struct walk *x)
{
    if (!w->unrec_lost && x->nunrec > 0) {
        if (pyheap_grow((void **)&w->unrec, &w->capunrec, w->nunrec + x->nunrec,
                        sizeof *w->unrec)) {
            memcpy(w->unrec + w->nunrec, x->unrec, x->nunrec * sizeof *w->unrec);
            w->nunrec += x->nunrec;
        } else {
            w->unrec_lost = true;
        }
    }
    w->unrec_lost |= x->unrec_lost;
    w->skipped += x->skipped;
    w->gc_tracked += x->gc_tracked;
    w->gc_tracked_back += x->gc_tracked_back;
    w->gc_mended += x->gc_mended;
    w->gc_again += x->gc_again;
    w->shared_arrays += x->shared_arrays;
    w->shared_chunks += x->shared_chunks;
    w->key_labels_elided += x->key_labels_elided;
    w->links_hits += x->links_hits;
    w->gone |= x->gone;
    w->nomem |= x->nomem;
    w->truncated |= x->truncated;
}

/* Give walker X of W's scan a reader of its own, with CACHE_CAP bytes of
 * cache and W's deadline. 0, or -1. */
static int walker_reader_open(const struct walk *w, struct walk *x, uint64_t cache_cap)
{
    if (pyheap_mem_open(w->h.t->pid, cache_cap, &x->mem, NULL) < 0)
        return -1;
    pyheap_mem_set_deadline(x->mem, pyheap_mem_deadline(w->h.t->mem));
    return 0;
}

/* Walker X is done: add its reader's reads to *READS and *BYTES, its
 * deadline to W's, free its reader, and W takes over its notes. */
static void walker_reader_end(struct walk *w, struct walk *x, uint64_t *reads, uint64_t *bytes)
{
    uint64_t r, b;
    pyheap_mem_counters(x->mem, &r, &b);
    *reads += r;
    *bytes += b;
    pyheap_mem_deadline_merge(w->h.t->mem, x->mem);
    pyheap_mem_window_drop(x->mem);
    pyheap_mem_free(x->mem);
    x->mem = NULL;
    walk_merge_notes(w, x);
}

/* Append the objects and edges of thread walker X to W's, then free X. */
/* Offsets the decoders index local buffers with: they must be present and
 * small (a corrupt source must not make us read outside our own buffers). */
static int offsets_usable(const struct pyheap_offsets *off, pyheap_error *err)
{
#define F(name) { #name, offsetof(struct pyheap_offsets, name) }
    static const struct { const char *name; size_t at; } required[] = {
    F(ob_type), F(ob_size), F(gc_head), F(gc_next), F(gc_prev),
    F(runtime_interpreters_head), F(interp_next), F(interp_threads_head), F(interp_gc),
    F(gc_generation), F(gc_generation_head), F(tstate_next),
    F(err_stackitem_exc_value), F(iframe_owner),
    F(err_stackitem_previous_item), F(iframe_previous),
    F(iframe_localsplus), F(frame_f_frame), F(frame_f_frame_data),
    F(type_object), F(heap_type_object), F(tp_name), F(tp_basicsize), F(tp_itemsize),
    F(tp_flags), F(tp_members), F(tp_base), F(tp_dict), F(tp_dictoffset),
    F(tp_weaklistoffset), F(tp_mro), F(tp_bases), F(tp_cache), F(tp_subclasses),
    F(ht_name), F(ht_slots), F(ht_qualname), F(ht_cached_keys), F(ht_module),
    F(member_def), F(member_def_name), F(member_def_type), F(member_def_offset),
    F(tuple_ob_item), F(list_ob_item), F(list_allocated), F(dict_ma_keys),
    F(dict_ma_values), F(dict_keys_object), F(dk_refcnt), F(dk_log2_size),
    F(dk_log2_index_bytes), F(dk_kind), F(dk_usable), F(dk_nentries), F(dk_indices),
    F(dict_key_entry), F(dke_key), F(dke_value), F(dict_unicode_entry), F(due_key),
    F(due_value), F(set_fill), F(set_used), F(set_mask), F(set_table), F(set_smalltable),
    F(set_entry), F(setentry_key), F(setentry_hash), F(ascii_object),
    F(compact_unicode_object), F(unicode_object), F(unicode_length), F(unicode_state),
    F(unicode_utf8_length), F(unicode_utf8),
    F(unicode_data), F(bytearray_ob_alloc), F(long_ob_digit), F(cell_ob_ref),
    F(code_co_nlocalsplus), F(code_co_stacksize), F(gen_frame_state),
    F(gen_iframe), F(gen_exc_state),
    };
    /* Version-shaped fields: 3.11 (first) or 3.13+ (second) must be there. */
#define G(name) #name, offsetof(struct pyheap_offsets, name)
    static const struct { const char *a; size_t at_a; const char *b; size_t at_b; } either[] = {
        { G(gcstate_generations), G(gcstate_young) },
        { G(tstate_cframe), G(tstate_current_frame) },
        { G(cframe_current_frame), G(tstate_current_frame) },
        { G(iframe_f_code), G(iframe_f_executable) },
        { G(iframe_stacktop), G(iframe_stackpointer) },
        { G(gen_code), G(iframe_f_executable) },
    };
#undef G
#undef F
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        size_t v;
        memcpy(&v, (const char *)off + required[i].at, sizeof v);
        if (v == PYHEAP_OFF_ABSENT || v >= 8192)
            return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                                  "offset %s is %s: the walker cannot decode objects "
                                  "without it", required[i].name,
                                  v == PYHEAP_OFF_ABSENT ? "missing" : "implausible");
    }
    for (size_t i = 0; i < sizeof either / sizeof either[0]; i++) {
        size_t va, vb;
        memcpy(&va, (const char *)off + either[i].at_a, sizeof va);
        memcpy(&vb, (const char *)off + either[i].at_b, sizeof vb);
        if ((va == PYHEAP_OFF_ABSENT || va >= 8192) && (vb == PYHEAP_OFF_ABSENT || vb >= 8192))
            return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                                  "offsets %s and %s are both missing or implausible: the "
                                  "walker cannot decode objects without one", either[i].a,
                                  either[i].b);
    }
    /* Fields read out of a local copy of their struct lie inside it, and
     * the structs fit the decoders' buffers. */
    const struct { size_t field, width, end; } inside[] = {
        { off->tp_name, 8, off->type_object }, { off->tp_basicsize, 8, off->type_object },
        { off->tp_itemsize, 8, off->type_object }, { off->tp_flags, 8, off->type_object },
        { off->tp_members, 8, off->type_object }, { off->tp_base, 8, off->type_object },
        { off->tp_dict, 8, off->type_object }, { off->tp_dictoffset, 8, off->type_object },
        { off->tp_weaklistoffset, 8, off->type_object }, { off->tp_mro, 8, off->type_object },
        { off->tp_bases, 8, off->type_object }, { off->tp_cache, 8, off->type_object },
        { off->tp_subclasses, 8, off->type_object },
        { off->type_object, 0, off->heap_type_object }, { off->heap_type_object, 0, 2048 },
        { off->ht_name, 8, off->heap_type_object }, { off->ht_slots, 8, off->heap_type_object },
        { off->ht_qualname, 8, off->heap_type_object },
        { off->ht_cached_keys, 8, off->heap_type_object },
        { off->ht_module, 8, off->heap_type_object },
        { off->member_def_name, 8, off->member_def }, { off->member_def_type, 4, off->member_def },
        { off->member_def_offset, 8, off->member_def }, { off->member_def, 0, 64 },
        { off->dk_refcnt, 8, off->dict_keys_object }, { off->dk_log2_size, 1, off->dict_keys_object },
        { off->dk_log2_index_bytes, 1, off->dict_keys_object },
        { off->dk_kind, 1, off->dict_keys_object }, { off->dk_usable, 8, off->dict_keys_object },
        { off->dk_nentries, 8, off->dict_keys_object }, { off->dict_keys_object, 0, 64 },
        { off->dke_key, 8, off->dict_key_entry }, { off->dke_value, 8, off->dict_key_entry },
        { off->due_key, 8, off->dict_unicode_entry }, { off->due_value, 8, off->dict_unicode_entry },
        { off->dict_key_entry, 0, 4096 }, { off->set_entry, 0, 64 },
        { off->setentry_key, 8, off->set_entry }, { off->setentry_hash, 8, off->set_entry },
        { off->unicode_length, 8, off->ascii_object }, { off->unicode_state, 4, off->ascii_object },
        { off->unicode_wstr, 8, off->ascii_object },
        { off->ascii_object, 0, off->compact_unicode_object },
        { off->unicode_utf8, 8, off->compact_unicode_object },
        { off->unicode_utf8_length, 8, off->compact_unicode_object },
        { off->unicode_wstr_length, 8, off->compact_unicode_object },
        { off->unicode_data, 8, off->unicode_object }, { off->unicode_object, 0, 128 },
        { off->iframe_f_code, 8, off->iframe_localsplus },
        { off->iframe_stacktop, 4, off->iframe_localsplus }, { off->iframe_localsplus, 0, 256 },
        { off->gen_code, 8, off->gen_iframe }, { off->gen_frame_state, 1, off->gen_iframe },
        { off->iframe_f_executable, 8, off->iframe_localsplus },
        { off->iframe_stackpointer, 8, off->iframe_localsplus },
        { off->iframe_f_funcobj, 8, off->iframe_localsplus },
        { off->iframe_owner, 1, off->iframe_localsplus },
        { off->gen_exc_state + off->err_stackitem_exc_value, 8, off->gen_iframe },
        { off->gen_iframe, 0, 128 },
    };
    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++)
        if (inside[i].field != PYHEAP_OFF_ABSENT &&
            inside[i].field + inside[i].width > inside[i].end)
            return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                                  "the offsets are inconsistent (check %zu: field at %zu "
                                  "outside its struct of %zu bytes)", i, inside[i].field,
                                  inside[i].end);
    if (off->type_object == 0 || off->dict_key_entry == 0 || off->dict_unicode_entry == 0 ||
        off->set_entry == 0 || off->member_def == 0 || off->gc_generation == 0)
        return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                              "a struct size in the offsets is zero: the offsets are corrupt");
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The other walker threads of a scan. */
struct walk_pool {
    unsigned n;              /* threads asked for, the caller included */
    struct walk *ws;         /* [n]; [0] unused (the caller's is its own) */
    pthread_t *th;
    bool *started;
};

/* Start up to NTHREADS - 1 walker threads, each with its own reader of
 * CACHE_CAP bytes: from now on W gathers seeds in blocks for them. None
 * started (or NTHREADS 1): W walks alone, as before. */
static void walk_pool_start(struct walk *w, struct walk_pool *p, unsigned nthreads,
                            uint64_t cache_cap)
{
    memset(p, 0, sizeof *p);
    struct walk_shared *sh = w->sh;
    if (nthreads < 2)
        return;
    p->ws = calloc(nthreads, sizeof *p->ws);
    p->th = calloc(nthreads, sizeof *p->th);
    p->started = calloc(nthreads, sizeof *p->started);
    if (!p->ws || !p->th || !p->started) {
        free(p->ws);
        free(p->th);
        free(p->started);
        memset(p, 0, sizeof *p);
        return;
    }
    p->n = nthreads;
    sh->mt = true; /* before any thread starts */
    sh->producers = two_ended(sh) ? 2 : 1;
    sh->walkers = nthreads;
    sh->fwd_at = -1;
    sh->back_at = LISTS_DONE;
    unsigned ran = 0;
    for (unsigned i = 1; i < nthreads; i++) {
        struct walk *x = &p->ws[i];
        x->h.t = w->h.t;
        x->sh = sh;
        x->max_objects = w->max_objects;
        x->max_seen = w->max_seen;
        x->found.tallying = w->found.tallying;
        if (walker_reader_open(w, x, cache_cap) < 0)
            continue;
        if (pthread_create(&p->th[i], NULL, walk_thread_main, x) == 0) {
            p->started[i] = true;
            ran++;
        } else {
            pyheap_mem_free(x->mem);
            x->mem = NULL;
        }
    }
    if (ran == 0)
        sh->mt = false; /* nobody to share with: plain stack */
}

/* The GC lists and roots are walked: hand out the last block, help with
 * the queue and join the threads; W takes over their notes (flags, counts,
 * unrecorded addresses), their records stay theirs (walk_pool_merge). RAN:
 * threads that walked, the caller included. */
static void walk_pool_join(struct walk *w, struct walk_pool *p, uint64_t *reads,
                           uint64_t *bytes, unsigned *ran)
{
    struct walk_shared *sh = w->sh;
    *ran = 1;
    if (sh->mt) {
        busy_enter(sh);
        seeds_publish(w);
        producer_done(sh);
        drain(w); /* the roots' objects */
        busy_leave(sh);
        walk_thread_main(w);
    }
    for (unsigned i = 1; i < p->n; i++) {
        if (!p->started[i])
            continue;
        pthread_join(p->th[i], NULL);
        ++*ran;
        walker_reader_end(w, &p->ws[i], reads, bytes);
    }
    sh->mt = false;
    /* Blocks left by threads that stopped early are dropped like a
     * truncated stack. */
    free(w->block);
    w->block = NULL;
    while (sh->qhead) {
        struct seed_block *b = sh->qhead;
        sh->qhead = b->next;
        block_free(b);
    }
    sh->qtail = NULL;
}

/* How many walkers the scan had: W and the pool's threads. */
static unsigned pool_walkers(const struct walk_pool *p)
{
    return p->n ? p->n : 1;
}

/* The records of walker I (below pool_walkers(P)): W's for I 0, else its
 * thread I's; NULL for a thread that did not start. */
static const struct snapshot_in *pool_found(const struct walk *w, const struct walk_pool *p,
                                            unsigned i)
{
    return i == 0 ? &w->found : p->started[i] ? &p->ws[i].found : NULL;
}

/* The records of W and of the joined threads: how many, and whether each
 * has its tally. */
static size_t walk_pool_records(const struct walk *w, const struct walk_pool *p, bool *tallied)
{
    size_t n = 0;
    *tallied = true;
    for (unsigned i = 0; i < pool_walkers(p); i++) {
        const struct snapshot_in *in = pool_found(w, p, i);
        if (in) {
            n += in->n;
            *tallied = *tallied && in->tallying && !in->tally_lost;
        }
    }
    return n;
}

/* The tallies of W and the joined threads added up: a new array of *N
 * entries, or NULL (out of memory). */
static struct snapshot_type_total *walk_pool_tally(const struct walk *w,
                                                   const struct walk_pool *p, size_t *n)
{
    size_t nt = 0;
    for (unsigned i = 0; i < pool_walkers(p); i++) {
        const struct snapshot_in *in = pool_found(w, p, i);
        if (in && in->ntally > nt)
            nt = in->ntally;
    }
    struct snapshot_type_total *t = calloc(nt ? nt : 1, sizeof *t);
    if (!t)
        return NULL;
    for (unsigned i = 0; i < pool_walkers(p); i++) {
        const struct snapshot_in *in = pool_found(w, p, i);
        for (size_t k = 0; in && k < in->ntally; k++) {
            t[k].count += in->tally[k].count;
            t[k].bytes += in->tally[k].bytes;
        }
    }
    *n = nt;
    return t;
}

/* End the pool. With INS (room for pool_walkers(P)): move W's records and
 * the joined threads', in that order, to INS[0..*NIN); else drop the
 * threads'. */
static void walk_pool_end(struct walk *w, struct walk_pool *p, struct snapshot_in *ins,
                          size_t *nin)
{
    if (ins) {
        *nin = 0;
        ins[(*nin)++] = w->found;
        memset(&w->found, 0, sizeof w->found);
    }
    for (unsigned i = 1; i < p->n; i++) {
        if (!p->started[i])
            continue;
        if (ins) {
            ins[(*nin)++] = p->ws[i].found;
            memset(&p->ws[i].found, 0, sizeof p->ws[i].found);
        }
        walk_free(&p->ws[i]);
    }
    free(p->ws);
    free(p->th);
    free(p->started);
    memset(p, 0, sizeof *p);
}

/* Keep the first MAX objects of the NIN streams INS, in their order. */
static void ins_keep(struct snapshot_in *ins, size_t nin, uint64_t max)
{
    for (size_t k = 0; k < nin; k++) {
        snapshot_in_keep(&ins[k], ins[k].n < max ? ins[k].n : (size_t)max);
        max -= ins[k].n;
    }
}

int pyheap_walk(pyheap_target *t, const pyheap_scan_opts *opts,
                pyheap_snapshot **out, pyheap_error *err)
{
    if (!t || !t->mem || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_walk needs an opened target");
    if (!pyheap_target_walk_supported(t))
        return pyheap_err_set(err, PYHEAP_E_UNSUPPORTED, 0, 0,
                              "walking Python %s heaps is not supported (tested: 3.11, "
                              "3.13, 3.14, 3.15 default builds)", t->version);
    if (offsets_usable(&t->off, err) < 0)
        return -1;
    unsigned nthreads = opts && opts->threads ? opts->threads : 1;
    if (nthreads > PYHEAP_MAX_SCAN_THREADS)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "%u scan threads asked for; at most %d", nthreads,
                              PYHEAP_MAX_SCAN_THREADS);
    if (t->pid <= 0)
        nthreads = 1; /* in-memory images: one reader */
    const struct pyheap_offsets *off = &t->off;
    uint64_t interp = 0;
    if (pyheap_mem_read(t->mem, t->runtime_addr + off->runtime_interpreters_head,
                        &interp, sizeof interp, err) < 0)
        return -1;
    if (!interp)
        return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, t->runtime_addr,
                              "process %d has no Python interpreter state (exiting or not "
                              "yet initialised); try again", (int)t->pid);
    double t0 = now_ms();
    struct walk_shared sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&sh.lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_mutex_init(&sh.seen_lock, NULL);
    for (size_t k = 0; k < LABEL_SHARDS; k++)
        pthread_mutex_init(&sh.labels.shard[k].lock, NULL);
    pthread_mutex_init(&sh.qlock, NULL);
    pthread_mutex_init(&sh.links_lock, NULL);
    pthread_cond_init(&sh.qcv, NULL);
    struct walk w;
    memset(&w, 0, sizeof w);
    w.h.t = t;
    w.mem = t->mem;
    w.sh = &sh;
    w.max_objects = opts && opts->max_objects ? opts->max_objects : DEFAULT_MAX_OBJECTS;
    w.max_seen = w.max_objects * 2 + 1000000;
    w.found.tallying = opts && opts->census;
    sh.stopped = opts && opts->stopped != 0;
    sh.label_budget = opts && opts->max_label_bytes ? opts->max_label_bytes
                                                    : DEFAULT_LABEL_BUDGET;
    uint64_t reads0, bytes0, xreads = 0, xbytes = 0;
    unsigned ran = 1;
    pyheap_mem_counters(t->mem, &reads0, &bytes0);
    w.mode_reads = reads0;
    pyheap_mem_cache_clear(t->mem);
    /* Each walker's cache: an eighth of the target's resident memory,
     * between 8 and 64 MiB, unless the caller says (on a 150 MiB heap two
     * 64 MiB caches read no less and held as much as the heap). */
    uint64_t cache_cap = opts ? opts->max_cache_bytes : 0;
    if (!cache_cap) {
        uint64_t rss = t->pid > 0 ? pyheap_proc_rss(t->pid) : 0;
        cache_cap = rss ? rss / 8 : DEFAULT_CACHE_MAX;
        cache_cap = cache_cap < DEFAULT_CACHE_MIN ? DEFAULT_CACHE_MIN
                    : cache_cap > DEFAULT_CACHE_MAX ? DEFAULT_CACHE_MAX : cache_cap;
    }
    pyheap_mem_set_cache_cap(t->mem, cache_cap);

    /* Seeds (GC lists) and named roots, on this thread, while the other
     * threads (if any) visit the closure of the seeds handed out so far. */
    struct walk_pool pool;
    /* With threads, the main interpreter's GC lists are walked from both
     * ends: it is the last of the list (new ones are added at its head). */
    sh.interp_both = nthreads > 1 ? interp : 0;
    for (uint64_t next = interp, n = 0; sh.interp_both && n < MAX_INTERPRETERS; n++) {
        if (pyheap_mem_read(t->mem, next + off->interp_next, &next, sizeof next, NULL) < 0 ||
            !next)
            break;
        sh.interp_both = next;
    }
    walk_pool_start(&w, &pool, nthreads, cache_cap);
    for (int n = 0; interp && n < MAX_INTERPRETERS && !stopping(&w); n++) {
        walk_interp(&w, interp);
        if (pyheap_walk_read_u64(&w, interp + off->interp_next, &interp) < 0)
            break;
    }
    if (sh.mt && ended(&w))
        stop_all(&sh);
    walk_pool_join(&w, &pool, &xreads, &xbytes, &ran);
    gc_links_close(&sh);   /* (the lists are walked) */
    drain(&w);
    if (w.nstack > 0 && w.truncated)
        w.nstack = 0;
    if (w.truncated)
        w.nfar = 0;
    bool tallied;
    size_t nrecs = walk_pool_records(&w, &pool, &tallied);
    if (nrecs > w.max_objects)
        w.truncated = true;   /* the records are trimmed to the limit below */
    /* The key labels left pending are read before the caller is told the
     * walk is done (a stopped target is still stopped: its keys as the
     * walk saw them); else after the census. */
    uint32_t *pend = NULL;
    size_t npend = 0;
    bool pend_done = false;
    if ((sh.stopped || (opts && opts->walked)) && !w.nomem) {
        pend_done = true;
        if (pend_resolve(&w, nthreads, &pend, &npend, &xreads, &xbytes) < 0)
            w.nomem = true;
    }
    if (opts && opts->walked)
        opts->walked(opts->walked_arg);   /* nothing more is read */

    int rc = 0;
    pyheap_scan_stats st;
    memset(&st, 0, sizeof st);
    if (walk_gone(&w, err) < 0) {
        rc = -1;
    } else if (!w.nomem) {
        st.skipped = w.skipped;
        st.gc_tracked = w.gc_tracked;
        st.gc_tracked_back = w.gc_tracked_back;
        st.gc_mended = w.gc_mended;
        st.gc_again = w.gc_again;
        st.shared_arrays = w.shared_arrays;
        st.shared_chunks = w.shared_chunks;
        st.key_labels_elided = w.key_labels_elided;
        st.gc_links_kept = w.links_hits;
        stats_reads(&st, t->mem, reads0, bytes0, xreads, xbytes);
        st.truncated = w.truncated;
        st.threads = ran;
        st.scan_ms = now_ms() - t0;
        /* The census before the threads' records are appended and the
         * build: each record is an address the seen set let in once, so
         * when the seen set holds as many addresses as there are records,
         * once those visited and not recorded are left out (none left
         * unvisited, none unnoted), the snapshot holds these objects. */
        size_t ntally = 0;
        struct snapshot_type_total *tally = NULL;
        if (opts && opts->census && tallied && !w.truncated && !w.unrec_lost &&
            pyheap_addrset_count_except(&sh.seen, w.unrec, w.nunrec) == nrecs &&
            (tally = walk_pool_tally(&w, &pool, &ntally)) != NULL) {
            pyheap_census c = { .stats = st, .tally = tally, .ntally = ntally,
                                .names = sh.names.s, .nnames = sh.names.n };
            c.stats.objects = nrecs;
            for (size_t i = 0; i < ntally; i++)
                c.stats.bytes += tally[i].bytes;
            c.stats.scan_ms = now_ms() - t0;
            opts->census(opts->census_arg, &c);
            free(tally);
        }
    }
    if (rc == 0 && !w.nomem && !pend_done) {
        if (pend_resolve(&w, nthreads, &pend, &npend, &xreads, &xbytes) < 0)
            w.nomem = true;
        /* the process went on meanwhile: still the same, and alive? */
        if (npend && walk_gone(&w, err) < 0)
            rc = -1;
    }
    st.key_labels_elided = w.key_labels_elided;
    st.key_labels_later = w.key_labels_later;
    if (npend)   /* (their reads, after the census's) */
        stats_reads(&st, t->mem, reads0, bytes0, xreads, xbytes);
    /* The records stay in their walkers' streams: the build reads them in
     * turn (copying them into one took a quarter of a second a GB). */
    struct snapshot_in ins[PYHEAP_MAX_SCAN_THREADS];
    size_t nin = 0;
    bool keep = rc == 0 && !w.nomem;
    walk_pool_end(&w, &pool, keep ? ins : NULL, &nin);   /* (a failed scan drops them) */
    size_t nlabels = 0;
    char **labels = NULL;
    if (rc == 0 && !w.nomem && !(labels = labeltab_take(&sh.labels, &nlabels)))
        w.nomem = true;
    if (rc == 0 && w.nomem)
        rc = pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0,
                            "out of memory while scanning process %d (%zu objects so far)",
                            (int)t->pid, nrecs);
    if (rc == 0) {
        /* Threads count each other's records in batches: trim to the
         * limit (the build drops the edges of the records cut off). */
        if (nrecs > w.max_objects)
            ins_keep(ins, nin, w.max_objects);
        char **names = sh.names.s;
        size_t nnames = sh.names.n;
        sh.names.s = NULL;
        sh.names.n = 0;
        struct snapshot_graph_in g = { .labels = labels, .nlabels = nlabels,
                                       .roots = w.roots, .nroots = w.nroots,
                                       .pending = pend, .npending = npend };
        w.roots = NULL; /* names taken too */
        w.nroots = 0;
        /* What only the walk needed goes before the build allocates. */
        pyheap_mem_window_drop(t->mem);
        pyheap_mem_cache_clear(t->mem);
        pyheap_addrset_free(&sh.listed);
        free(w.stack);
        w.stack = NULL;
        w.nstack = w.capstack = 0;
        free(w.far);   /* (as large as the stack was: a 1M-key dict's values) */
        w.far = NULL;
        w.nfar = w.capfar = 0;
        free(w.pages);
        w.pages = NULL;
        /* The objects' addresses are the seen set's but those visited and
         * not recorded: unless some were left unvisited (a truncated
         * walk) or not noted, the build's index is a copy of its leaves
         * (the build checks it against the objects). */
        struct addrindex x;
        if (!w.truncated && !w.unrec_lost &&
            pyheap_addrindex_from_set(&x, &sh.seen, w.unrec, w.nunrec) == 0)
            g.index = &x;
        pyheap_addrset_free(&sh.seen);
        /* The caches' 64 KiB buffers lie among live blocks of the heap,
         * where free() keeps them: give their pages back, or they stay
         * resident under the build's peak. */
        malloc_trim(0);
        double b0 = now_ms();
        rc = pyheap_snapshot_build_ins(ins, nin, names, nnames, &g, &st, nthreads, out, err);
        nin = 0;   /* (taken) */
        free(g.roots);
        if (g.index)
            pyheap_addrindex_free(g.index);   /* (taken by the build) */
        if (rc == 0) {
            double b1 = now_ms();
            (*out)->stats.scan_ms = b1 - t0; /* including the build */
            (*out)->stats.build_ms = b1 - b0;
        }
    }
    for (size_t k = 0; k < nin; k++)   /* (not built) */
        pyheap_snapshot_in_free(&ins[k]);
    free(pend);
    pyheap_mem_window_drop(t->mem);
    pyheap_mem_cache_clear(t->mem);
    pyheap_mem_set_cache_cap(t->mem, 0);
    walk_free(&w);
    shared_free(&sh);
    return rc;
}
