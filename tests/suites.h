/* Every Check suite, one line each: SUITE(name) declares Suite *name(void)
 * defined in tests/test_<area>.c. Add yours here. */
SUITE(suite_offsets_table)
