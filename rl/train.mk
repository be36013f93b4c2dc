# rl/train.mk - the trainer: `viv sft`, `viv train` (rejection-sampling SFT
# + GRPO through the rollout engine), included by the top Makefile.
RL_SRC += rl/bio_env.c rl/model_gen.c rl/backend_cpu.c rl/backend_cuda.c rl/sft.c rl/grpo_step.c rl/train.c rl/train_cli.c \
          rl/eval_table.c rl/checkpoint.c rl/step_stats.c

# Unit tests (SFT masks, the GRPO update's direction, the environment's
# scoring, generation with stop strings): ASan + UBSan; the models are tiny.
# train.c (the command, which pulls in the data builder) is exercised by the
# end-to-end part of test/train/run.sh through bin/viv instead.
EXTRA_TESTS += $(BUILD)/test/train_tests
$(BUILD)/test/train_tests: $(BUILD)/asan/test/train/train_tests.o $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)

# test/multihost: the sandbox pool under the rollout engine against several
# real vivds, and the GRPO update of a step that lost a host (a tiny model on
# the CPU backend): ASan + UBSan
EXTRA_TESTS += $(BUILD)/test/multihost_tests
$(BUILD)/test/multihost_tests: $(patsubst %.c,$(BUILD)/asan/%.o,test/multihost/multihost_tests.c $(RL_DOUBLES)) \
                               $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)
