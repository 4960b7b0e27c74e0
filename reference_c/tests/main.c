// Runs every registered test (or those whose name contains argv[1]) and prints
// "N passed, M failed" last.
#include <stdio.h>
#include <string.h>

#include "harness.h"

int harness_failures;

int
main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    const test_case *tables[] = {unit_tests, thread_tests, fork_tests};
    int passed = 0, failed = 0;
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        for (const test_case *tc = tables[t]; tc->name != NULL; tc++) {
            if (filter != NULL && strstr(tc->name, filter) == NULL) {
                continue;
            }
            harness_failures = 0;
            tc->fn();
            if (harness_failures == 0) {
                passed++;
                printf("PASS %-44s [%s]\n", tc->name, tc->facts);
            }
            else {
                failed++;
                printf("FAIL %-44s [%s]\n", tc->name, tc->facts);
            }
            fflush(stdout);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
