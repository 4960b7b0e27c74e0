// A minimal test harness: TEST(name) functions registered in main.c, CHECK* macros that
// record a failure and keep going, and a closing line "N passed, M failed".
#ifndef QSBR_TEST_HARNESS_H
#define QSBR_TEST_HARNESS_H

#include <inttypes.h>
#include <stdio.h>

extern int harness_failures;   // failures in the running test

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "    %s:%d: CHECK(%s) failed\n",                \
                    __FILE__, __LINE__, #cond);                             \
            harness_failures++;                                             \
        }                                                                   \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                  \
    do {                                                                    \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                    \
        if (a_ != b_) {                                                     \
            fprintf(stderr, "    %s:%d: %s == %s failed: %" PRIu64          \
                    " != %" PRIu64 "\n", __FILE__, __LINE__, #a, #b, a_, b_);\
            harness_failures++;                                             \
        }                                                                   \
    } while (0)

#define CHECK_EQ_I64(a, b)                                                  \
    do {                                                                    \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                       \
        if (a_ != b_) {                                                     \
            fprintf(stderr, "    %s:%d: %s == %s failed: %" PRId64          \
                    " != %" PRId64 "\n", __FILE__, __LINE__, #a, #b, a_, b_);\
            harness_failures++;                                             \
        }                                                                   \
    } while (0)

typedef void (*test_fn)(void);
typedef struct {
    const char *name;
    const char *facts;      // the S-... fact ids the test checks
    test_fn fn;
} test_case;

// Each test file exports a table ending with {NULL, NULL, NULL}.
extern const test_case unit_tests[];
extern const test_case thread_tests[];
extern const test_case fork_tests[];

#endif  // QSBR_TEST_HARNESS_H
