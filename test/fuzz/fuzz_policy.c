/*
 * fuzz_policy.c - libFuzzer target for the policy parser.
 *
 * A policy file is input from users, and `viv policy check` runs it through
 * policy_parse(): whatever the bytes, parsing must either succeed (and then
 * the policy must print and compile) or fail with a message, never crash,
 * leak or read out of bounds. Built with -fsanitize=fuzzer,address,undefined.
 *
 *   make build/fuzz/fuzz_policy
 *   build/fuzz/fuzz_policy -max_total_time=600 test/fuzz/corpus_policy   # the long run
 * The test suite runs it for a few seconds on the seed corpus (policies/).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../sandbox/jail/policy.h"
#include "../../sandbox/jail/syscall_filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct policy p;
    char err[1024];
    if (policy_parse((const char *)data, size, "fuzz", &p, err, sizeof err) != 0) {
        if (strncmp(err, "fuzz: ", 6) != 0) abort(); /* every error names its origin */
        return 0;
    }
    char *text = policy_to_json(&p);
    if (!text) abort();
    free(text);
    struct sock_fprog prog;
    if (syscall_filter_compile(&p.seccomp, &prog, err, sizeof err) == 0) syscall_filter_free(&prog);
    policy_free(&p);
    return 0;
}
