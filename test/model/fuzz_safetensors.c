/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader: any
 * bytes as a .safetensors file must give a tensor list or an error, never
 * a crash, and every tensor handed out must lie inside the file.
 *
 * test/model/run.sh runs it for a few seconds from a seed corpus of real
 * files; for a long run:
 *   build/fuzz/fuzz_safetensors -max_total_time=600 CORPUS_DIR
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("st", MFD_CLOEXEC);
    if (fd < 0) abort();
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct st_dir *d = st_open_file(path, err, sizeof err);
    if (d) {
        for (int i = 0; i < st_count(d); i++) {
            const struct st_tensor *t = st_get(d, i);
            /* touch the first and last byte: ASan/segv if outside the map */
            volatile uint8_t sink = 0;
            if (t->nbytes) sink ^= t->data[0] ^ t->data[t->nbytes - 1];
            (void)sink;
            if (st_find(d, t->name) != t) abort();
            if (t->dtype == ST_F32 || t->dtype == ST_BF16 || t->dtype == ST_F16) {
                if (t->numel > (1u << 20)) continue;
                float *buf = malloc(t->numel * sizeof(float) + 1);
                if (st_read_f32(d, t->name, t->ndim, t->shape, buf, err, sizeof err)) abort();
                free(buf);
            }
        }
        st_close(d);
    }
    close(fd);
    return 0;
}
