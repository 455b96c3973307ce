/* Growth scoring (lib/growth.c) on hand-made series: a steady leak ranks,
 * a type that grows then shrinks back, a churning type and a one-off jump
 * do not; the ranking prefers steadier growth. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "pyheap.h"

enum { NP = 12, NT = 6 };
enum { LEAK, BUMP, CHURN, JUMP, SLOWLEAK, STAIR };

static void series(uint64_t cnt[NP][NT], uint64_t byt[NP][NT], pyheap_growth_point *pts)
{
    unsigned seed = 7;
    for (int i = 0; i < NP; i++) {
        cnt[i][LEAK] = 1000 + 100 * (uint64_t)i;                 /* steady */
        cnt[i][BUMP] = 1000 + (uint64_t)(i < 6 ? 300 * i : 300 * (11 - i)); /* up then back */
        seed = seed * 1103515245u + 12345u;
        cnt[i][CHURN] = 5000 + (seed >> 16) % 2000;               /* noise */
        cnt[i][JUMP] = i < 6 ? 1000 : 9000;                       /* one step */
        cnt[i][SLOWLEAK] = 1000 + 10 * (uint64_t)i + (i % 3 == 0 ? 0 : 1);
        cnt[i][STAIR] = 1000 + 5 * (uint64_t)(i / 2);             /* grows every other interval */
        for (int t = 0; t < NT; t++)
            byt[i][t] = cnt[i][t] * 64;
        pts[i] = (pyheap_growth_point){ .t = 0.5 * i, .count = cnt[i], .bytes = byt[i] };
    }
}

START_TEST(ranks_steady_growth_only)
{
    uint64_t cnt[NP][NT], byt[NP][NT];
    pyheap_growth_point pts[NP];
    series(cnt, byt, pts);
    pyheap_growth_row *rows = NULL;
    size_t n = 0;
    pyheap_error err;
    ck_assert_int_eq(pyheap_growth_rank(pts, NP, NT, &rows, &n, &err), 0);
    ck_assert_uint_ge(n, 1);
    ck_assert_uint_eq(rows[0].type, LEAK);
    ck_assert_uint_eq(rows[0].grew_in, NP - 1);
    ck_assert_uint_eq(rows[0].intervals, NP - 1);
    ck_assert_int_eq(rows[0].delta_count, 100 * (NP - 1));
    ck_assert_int_eq(rows[0].delta_bytes, 6400 * (NP - 1));
    /* 6400 bytes per 0.5 s */
    ck_assert(fabs(rows[0].per_min_bytes - 6400.0 * 120) < 1e-6);
    int stair = 0, slow = 0;
    for (size_t i = 0; i < n; i++) {
        stair |= rows[i].type == STAIR;
        slow |= rows[i].type == SLOWLEAK;
        ck_assert_uint_ne(rows[i].type, BUMP);
        ck_assert_uint_ne(rows[i].type, CHURN);
        ck_assert_uint_ne(rows[i].type, JUMP);
    }
    /* slow and stepwise leaks rank too, below the fast one */
    ck_assert(stair && slow);
    free(rows);
}
END_TEST

START_TEST(needs_two_points)
{
    uint64_t cnt[NP][NT], byt[NP][NT];
    pyheap_growth_point pts[NP];
    series(cnt, byt, pts);
    pyheap_growth_row *rows = NULL;
    size_t n = 0;
    pyheap_error err;
    ck_assert_int_eq(pyheap_growth_rank(pts, 1, NT, &rows, &n, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_INVAL);
    ck_assert_int_eq(pyheap_growth_rank(pts, 2, NT, &rows, &n, &err), 0);
    free(rows);
}
END_TEST

/* Pure noise (uniform, fixed seeds: deterministic) over 12 points: none of
 * 1000 series may rank as growth. */
START_TEST(noise_does_not_rank)
{
    uint64_t cnt[NP][1], byt[NP][1];
    pyheap_growth_point pts[NP];
    unsigned seed = 12345;
    size_t ranked = 0;
    for (int rep = 0; rep < 1000; rep++) {
        for (int i = 0; i < NP; i++) {
            seed = seed * 1103515245u + 12345u;
            cnt[i][0] = 100 + (seed >> 16) % 800;
            byt[i][0] = cnt[i][0] * 40;
            pts[i] = (pyheap_growth_point){ .t = 0.3 * i, .count = cnt[i], .bytes = byt[i] };
        }
        pyheap_growth_row *rows = NULL;
        size_t n = 0;
        pyheap_error err;
        ck_assert_int_eq(pyheap_growth_rank(pts, NP, 1, &rows, &n, &err), 0);
        ranked += n;
        free(rows);
    }
    ck_assert_uint_eq(ranked, 0);
}
END_TEST

Suite *suite_growth(void)
{
    Suite *s = suite_create("growth");
    TCase *tc = tcase_create("score");
    tcase_add_test(tc, ranks_steady_growth_only);
    tcase_add_test(tc, needs_two_points);
    tcase_add_test(tc, noise_does_not_rank);
    suite_add_tcase(s, tc);
    return s;
}
