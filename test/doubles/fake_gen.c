/*
 * fake_gen.c - TEST DOUBLES: scripted generator and byte tokenizer (see
 * fake_gen.h). Not the model.
 */
#define _GNU_SOURCE
#include "fake_gen.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

float fake_gen_logprob(int episode, int turn, int pos) {
    uint32_t h = (uint32_t)episode * 2654435761u ^ (uint32_t)turn * 40503u ^ (uint32_t)pos * 2246822519u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return -0.001f - (float)(h % 4096) / 1024.0f; /* in (-4.0, -0.001] */
}

static void burn_us(double us, bool spin) {
    if (us <= 0) return;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!spin) {
        struct timespec d = {(time_t)(us / 1e6), (long)((us - (double)(time_t)(us / 1e6) * 1e6) * 1e3)};
        while (nanosleep(&d, &d) != 0) {}
        return;
    }
    for (;;) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1e6 + (t.tv_nsec - t0.tv_nsec) / 1e3 >= us) return;
    }
}

/* Length of text up to and including the first stop string (*found set),
 * or all of it. */
static size_t stop_len(const char *text, const char *const *stop, bool *found) {
    size_t best = strlen(text);
    *found = false;
    for (int i = 0; stop && stop[i]; i++) {
        const char *p = strstr(text, stop[i]);
        if (p && (size_t)(p - text) + strlen(stop[i]) <= best) {
            best = (size_t)(p - text) + strlen(stop[i]);
            *found = true;
        }
    }
    return best;
}

static int fake_generate(void *ctx, struct rl_gen_request *reqs, int n) {
    struct fake_gen *fg = ctx;
    int longest = 0;
    long total = 0;
    for (int i = 0; i < n; i++) {
        struct rl_gen_request *q = &reqs[i];
        if (q->episode == fg->fail_episode) {
            q->n_out = -1;
            continue;
        }
        const char *text = fg->script(fg->arg, q->episode, q->turn);
        if (!text) text = "";
        bool found;
        size_t len = stop_len(text, q->stop, &found);
        /* a turn continued in chunks: pick up where the last chunk ended */
        size_t off = (size_t)(q->n_tokens - q->turn_start);
        if (off > len) off = len;
        int k = len - off > (size_t)q->max_new_tokens ? q->max_new_tokens : (int)(len - off);
        for (int j = 0; j < k; j++) {
            q->out_tokens[j] = (unsigned char)text[off + (size_t)j];
            q->out_logprobs[j] = fake_gen_logprob(q->episode, q->turn, (int)off + j);
        }
        q->n_out = k;
        q->stop_reason = off + (size_t)k < len ? RL_GEN_STOP_LENGTH : found ? RL_GEN_STOP_STRING : RL_GEN_STOP_EOS;
        if (k > longest) longest = k;
        total += k;
    }
    fg->calls++;
    fg->requests += n;
    fg->tokens += total;
    if (n > fg->max_batch_seen) fg->max_batch_seen = n;
    burn_us(fg->call_us + fg->step_us * longest + fg->token_us * (double)total, fg->spin);
    return 0;
}

void fake_gen_init(struct fake_gen *fg, struct rl_generator *gen, int max_batch) {
    gen->ctx = fg;
    gen->generate = fake_generate;
    gen->max_batch = max_batch;
}

static int byte_encode(void *ctx, const char *text, size_t len, int **ids, int *n) {
    *ids = malloc((len ? len : 1) * sizeof **ids);
    if (!*ids) return -1;
    for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
    *n = (int)len;
    return 0;
}

static char *byte_decode(void *ctx, const int *ids, int n, size_t *len) {
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    for (int i = 0; i < n; i++) s[i] = (char)(ids[i] & 0xff);
    s[n] = 0;
    *len = (size_t)n;
    return s;
}

void byte_tokenizer(struct rl_tokenizer *tok) {
    tok->ctx = NULL;
    tok->encode = byte_encode;
    tok->decode = byte_decode;
}
