/* The checked-in 3.11 table must be what tools/gen-offsets produces from the
 * installed headers today (no hand edits), and be internally plausible. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offsets.h"
#include "testutil.h"

START_TEST(table_is_generated_output)
{
    const char *src = test_srcdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             
             "%s/tools/gen-offsets 3.11 | cmp -s - %s/lib/tables/py3_11.c",
             src, src);
    int rc = system(cmd);
    ck_assert_msg(rc != -1, "system() failed");
    int st = WEXITSTATUS(rc);
    ck_assert_msg(st == 0, "lib/tables/py3_11.c differs from tools/gen-offsets output "
                  "(status %d): regenerate it, never edit it", st);
}
END_TEST

START_TEST(table_is_plausible)
{
    const struct pyheap_offsets *o = &pyheap_table_py3_11.off;
    ck_assert_int_eq(pyheap_table_py3_11.major, 3);
    ck_assert_int_eq(pyheap_table_py3_11.minor, 11);
    ck_assert_uint_eq(o->ob_type, 8);
    ck_assert_uint_eq(o->pyobject, 16);
    ck_assert_uint_eq(o->gc_head, 16);
    ck_assert_uint_gt(o->type_object, o->tp_mro);
    ck_assert_uint_gt(o->heap_type_object, o->type_object);
    ck_assert_uint_ge(o->tuple_ob_item, o->pyvarobject);
}
END_TEST

Suite *suite_offsets_table(void)
{
    Suite *s = suite_create("offsets_table");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, table_is_generated_output);
    tcase_add_test(tc, table_is_plausible);
    suite_add_tcase(s, tc);
    return s;
}
