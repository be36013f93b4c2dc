# rl/train.mk - the trainer: `viv sft`, `viv train` (rejection-sampling SFT
# + GRPO through the rollout engine), included by the top Makefile.
TRAIN_SRC := rl/bio_env.c rl/model_gen.c rl/backend_cpu.c rl/backend_cuda.c rl/sft.c rl/grpo_step.c rl/train.c
VIV_SRC += $(TRAIN_SRC)
HEADERS += rl/bio_env.h rl/model_gen.h rl/train.h rl/backend.h

# Unit tests (SFT masks, the GRPO update's direction, the environment's
# scoring, generation with stop strings): ASan + UBSan; the models are tiny.
# train.c (the command, which pulls in the data builder) is exercised by the
# end-to-end part of test/train/run.sh through bin/viv instead.
TRAIN_TEST_SRC := rl/bio_env.c rl/model_gen.c rl/backend_cpu.c rl/backend_cuda.c rl/sft.c rl/grpo_step.c rl/rollout.c rl/grpo.c \
                  model/config.c model/safetensors.c model/kernels.c model/qwen3.c model/qwen3_infer.c \
                  model/adamw.c model/sample.c \
                  model/unicode.c model/tokenizer.c model/tokenizer_scan.c model/tokenizer_save.c \
                  model/tokenizer_train.c model/chat.c \
                  envs/protocol.c envs/graders.c envs/graders_literal.c envs/eval1.c envs/teacher.c envs/episode.c envs/outcome.c \
                  sandbox/util.c sandbox/client.c sandbox/pool.c sandbox/json_writer.c sandbox/json_text.c
TRAIN_TEST_OBJ = $(patsubst %.c,$(BUILD)/asan/%.o,$(TRAIN_TEST_SRC)) $(patsubst %.c,$(BUILD)/asan/%.o,$(BUILD)/gen/unicode_tables.c)
EXTRA_TESTS += $(BUILD)/test/train_tests
$(BUILD)/test/train_tests: test/train/train_tests.c test/harness.h test/train_fixtures.h $(TRAIN_TEST_OBJ)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $< $(TRAIN_TEST_OBJ) $(ASAN_LIBS)

# test/multihost: the sandbox pool under the rollout engine against several
# real vivds, and the GRPO update of a step that lost a host (a tiny model on
# the CPU backend): ASan + UBSan
EXTRA_TESTS += $(BUILD)/test/multihost_tests
$(BUILD)/test/multihost_tests: test/multihost/multihost_tests.c test/harness.h test/rl_fixture.h $(RL_DOUBLES) $(TRAIN_TEST_OBJ)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ test/multihost/multihost_tests.c $(RL_DOUBLES) $(TRAIN_TEST_OBJ) $(ASAN_LIBS)
