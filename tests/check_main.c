/* The one Check runner: runs every suite found in tests/ (test_<area>.c) (the Makefile
 * writes $(BUILD)/tests/suites.h from their `Suite *suite_x(void)` lines).
 * CK_RUN_SUITE / CK_RUN_CASE select a subset (Check's own variables). */
#include <check.h>
#include <stdlib.h>

#define SUITE(name) Suite *name(void);
#include "suites.h"
#undef SUITE

int main(void)
{
    SRunner *sr = srunner_create(NULL);
#define SUITE(name) srunner_add_suite(sr, name());
#include "suites.h"
#undef SUITE
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
