/*
 * harness.h - the smallest test harness that does the job.
 *
 * A test is a void function that returns early through CHECK/FAIL/SKIP.
 * Each test prints one line: "ok - name", "not ok - name: why" or
 * "skip - name: why"; test/run.sh counts those lines across suites and prints
 * the closing "N passed, N failed, N skipped". Give test names as arguments
 * to run only those.
 */
#ifndef VIV_TEST_HARNESS_H
#define VIV_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct test_case {
    const char *name;
    void (*fn)(void);
};

static char t_msg[4096];
/* Optional clean-up a suite runs after every test (e.g. stray processes). */
static void (*t_after_each)(void);
static int t_status; /* 0 pass, 1 fail, 2 skip */
/* What a passing test found about the host (which outcome it asserted), shown on its line. */
static char t_note[512];
#define NOTE(...) snprintf(t_note, sizeof t_note, __VA_ARGS__)

#define FAIL(...)                                                                          \
    do {                                                                                   \
        int _n = snprintf(t_msg, sizeof t_msg, "%s:%d: ", __FILE__, __LINE__);             \
        snprintf(t_msg + _n, sizeof t_msg - (size_t)_n, __VA_ARGS__);                      \
        t_status = 1;                                                                      \
        return;                                                                            \
    } while (0)

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            char _why[3000];                                                               \
            snprintf(_why, sizeof _why, __VA_ARGS__);                                      \
            FAIL("(%s) %s", #cond, _why);                                                  \
        }                                                                                  \
    } while (0)

#define SKIP(...)                                                                          \
    do {                                                                                   \
        snprintf(t_msg, sizeof t_msg, __VA_ARGS__);                                        \
        t_status = 2;                                                                      \
        return;                                                                            \
    } while (0)

static int run_test_cases(const struct test_case *tests, int n, int argc, char **argv) {
    int pass = 0, fail = 0, skip = 0;
    for (int i = 0; i < n; i++) {
        if (argc > 1) {
            int wanted = 0;
            for (int a = 1; a < argc; a++)
                if (strcmp(argv[a], tests[i].name) == 0) wanted = 1;
            if (!wanted) continue;
        }
        const char *skip_list = getenv("TEST_SKIP"); /* "name,name: reason" */
        if (skip_list) {
            const char *hit = strstr(skip_list, tests[i].name), *why = strchr(skip_list, ':');
            size_t name_len = strlen(tests[i].name);
            if (hit && (!why || hit < why) && (hit[name_len] == 0x2c || hit[name_len] == 0x3a || hit[name_len] == 0)) {
                skip++;
                printf("skip - %s:%s\n", tests[i].name, why ? why + 1 : " in TEST_SKIP");
                continue;
            }
        }
        t_status = 0;
        t_msg[0] = 0;
        t_note[0] = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t_after_each) t_after_each();
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        for (char *p = t_msg; *p; p++)
            if (*p == '\n') *p = ' ';
        if (t_status == 0) pass++, printf("ok - %s (%ld ms%s%s)\n", tests[i].name, ms, t_note[0] ? "; " : "", t_note);
        else if (t_status == 1) fail++, printf("not ok - %s: %s\n", tests[i].name, t_msg);
        else skip++, printf("skip - %s: %s\n", tests[i].name, t_msg);
        fflush(stdout);
    }
    printf("# %d passed, %d failed, %d skipped\n", pass, fail, skip);
    return fail ? 1 : 0;
}

#endif
