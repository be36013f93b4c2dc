# rl/rl.mk - the RL layer's rules (included by the top Makefile).
#
# rl/*.c except the test doubles and the benchmark's main go into bin/viv.
# test/doubles/ holds the TEST DOUBLES (scripted generator, toy
# environment): only the tests and the rollout benchmark link them.
RL_SRC += rl/rollout.c rl/grpo.c rl/metrics.c rl/svg_chart.c
RL_DOUBLES := test/doubles/fake_gen.c test/doubles/text_env.c
EXTRA_TESTS += $(BUILD)/test/rl_rollout_tests $(BUILD)/test/rl_tests $(BUILD)/bench/rollout_bench

# ASan + UBSan (glibc) like the sandbox's tests
$(BUILD)/test/rl_rollout_tests: $(patsubst %.c,$(BUILD)/asan/%.o,test/rl/rollout_tests.c $(RL_DOUBLES)) $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)

$(BUILD)/test/rl_tests: $(BUILD)/asan/test/rl/rl_tests.o $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)

# The benchmark measures scheduling, so it is built -O2 without sanitizers
# (static musl, like bin/viv).
$(BUILD)/bench/rollout_bench: $(patsubst %.c,$(BUILD)/musl/%.o,test/bench/rollout_bench.c $(RL_DOUBLES)) $(call layer_libs,musl)
	@mkdir -p $(@D)
	$(MUSL_CC) -static -o $@ $(filter %.o,$^) $(call link_layers,musl) $(MUSL_LIBS)

# JSON front end to grpo.c for the numpy oracle (test/rl/grpo_oracle.py)
EXTRA_TESTS += $(BUILD)/test/rl_grpo_check
$(BUILD)/test/rl_grpo_check: $(BUILD)/asan/test/rl/grpo_check.o $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)
