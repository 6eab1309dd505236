/* unit-main.h - the CUnit runner every unit test program shares: one suite
 * built from a table of tests, verbose output, and an exit status that is
 * non-zero on any failed assertion, test, suite set-up or CUnit error. */
#ifndef REPVOL_UNIT_MAIN_H
#define REPVOL_UNIT_MAIN_H

#include <stddef.h>
#include <CUnit/Basic.h>

struct unit_test {
    const char *name;
    CU_TestFunc fn;
};

static inline int unit_run(const char *suite, CU_InitializeFunc init, CU_CleanupFunc cleanup,
                           const struct unit_test *tests, size_t n)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite(suite, init, cleanup);
    for (size_t i = 0; s && i < n; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            s = NULL;
    if (!s) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed() +
                      CU_get_number_of_suites_failed();
    int err = CU_get_error();
    CU_cleanup_registry();
    return failed || err ? 1 : 0;
}

#define UNIT_RUN(suite, init, cleanup, tests) \
    unit_run((suite), (init), (cleanup), (tests), sizeof(tests) / sizeof((tests)[0]))

#endif
