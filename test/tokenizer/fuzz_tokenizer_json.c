/*
 * fuzz_tokenizer_json.c - libFuzzer target for the tokenizer.json loader:
 * any bytes as a tokenizer.json must give a tokenizer or an error, never a
 * crash; a tokenizer that loads must encode and decode a fixed text with
 * every kind of byte (NUL, invalid UTF-8, controls, added-token lookalikes)
 * and every id it hands out must be inside its vocabulary.
 *
 * test/tokenizer/run.sh runs it for a few seconds from small real files; a
 * long run:
 *   build/fuzz/fuzz_tokenizer_json -max_total_time=3600 CORPUS_DIR test/tokenizer/seeds_json
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../model/tokenizer.h"

static const char PROBE[] = "Hello, world! 123 \xe4\xbd\xa0\xe5\xa5\xbd\0nul \xff\xfe bad \xc2\x85 c1 "
                            "<|im_start|>user\n<think>\n</think> \t\r\n  spaces";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("tokenizer.json", MFD_CLOEXEC);
    if (fd < 0) abort();
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct tokenizer *t = tokenizer_load(path, err, sizeof err);
    if (t) {
        int32_t *ids = NULL;
        int n = tokenizer_encode(t, PROBE, sizeof PROBE - 1, &ids);
        int vocab = tokenizer_vocab_size(t);
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= vocab) abort();
        size_t len = 0;
        char *text = n > 0 ? tokenizer_decode(t, ids, n, &len) : NULL;
        free(text);
        free(ids);
        tokenizer_free(t);
    }
    close(fd);
    return 0;
}
