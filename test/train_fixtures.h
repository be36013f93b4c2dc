/*
 * train_fixtures.h - fixtures shared by the trainer's test programs
 * (test/train, test/gpu): a tokenizer trained on a few protocol-shaped
 * strings, small enough that models over it are fast.
 */
#ifndef VIV_TEST_TRAIN_FIXTURES_H
#define VIV_TEST_TRAIN_FIXTURES_H

#include <string.h>

#include "../model/tokenizer.h"

static inline struct tokenizer *small_tokenizer(void) {
    const char *texts[] = {
        "<|im_start|>system\nYou are a biomedical research assistant.<|im_end|>\n",
        "<think>I will query the database.</think>\n<execute>#!SQL\nSELECT symbol FROM gene_info;</execute>",
        "<observation>BRCA1\nTP53</observation>",
        "<think>The answer is TP53.</think>\n<solution>TP53</solution>",
    };
    size_t lens[4];
    for (int i = 0; i < 4; i++) lens[i] = strlen(texts[i]);
    char err[256];
    return tokenizer_train(texts, lens, 4, 400, NULL, err, sizeof err);
}

#endif
