# rl/rl.mk - the RL layer's rules (included by the top Makefile).
#
# rl/*.c except the test doubles and the benchmark's main go into bin/viv.
# fake_gen.c and text_env.c are TEST DOUBLES (scripted generator, toy
# environment): only the tests and the rollout benchmark link them.
RL_SRC := rl/rollout.c rl/grpo.c rl/metrics.c rl/svg_chart.c
RL_DOUBLES := rl/fake_gen.c rl/text_env.c
VIV_SRC += $(RL_SRC)
HEADERS += $(wildcard rl/*.h)
EXTRA_TESTS += $(BUILD)/test/rl_rollout_tests $(BUILD)/test/rl_tests $(BUILD)/bench/rollout_bench

# the vivd client and what it needs, from the sandbox layer
# and who decided a call's outcome (envs/outcome.c, linked into bin/viv by envs/agent.mk)
RL_CLIENT := sandbox/client.c sandbox/pool.c sandbox/util.c sandbox/json_writer.c sandbox/json_text.c envs/outcome.c

# the Biomni environment the trainer runs, for the rollout tests that check
# what reaches the model's context through it
RL_BIO_ENV := rl/bio_env.c envs/protocol.c envs/graders.c envs/graders_literal.c envs/eval1.c envs/episode.c

# ASan + UBSan (glibc) like the sandbox's tests
$(BUILD)/test/rl_rollout_tests: test/rl/rollout_tests.c test/harness.h test/rl_fixture.h $(RL_SRC) $(RL_DOUBLES) $(RL_CLIENT) $(RL_BIO_ENV) $(HEADERS)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ test/rl/rollout_tests.c $(RL_SRC) $(RL_DOUBLES) $(RL_CLIENT) $(RL_BIO_ENV) $(ASAN_LIBS)

$(BUILD)/test/rl_tests: test/rl/rl_tests.c test/harness.h $(RL_SRC) $(RL_CLIENT) $(HEADERS)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ test/rl/rl_tests.c $(RL_SRC) $(RL_CLIENT) $(ASAN_LIBS)

# The benchmark measures scheduling, so it is built -O2 without sanitizers
# (static musl, like bin/viv).
$(BUILD)/bench/rollout_bench: rl/rollout_bench.c $(RL_SRC) $(RL_DOUBLES) $(RL_CLIENT) $(HEADERS)
	@mkdir -p $(@D)
	$(MUSL_CC) $(MUSL_CFLAGS) -static -o $@ rl/rollout_bench.c $(RL_SRC) $(RL_DOUBLES) $(RL_CLIENT) $(MUSL_LIBS)

# JSON front end to grpo.c for the numpy oracle (test/rl/grpo_oracle.py)
EXTRA_TESTS += $(BUILD)/test/rl_grpo_check
$(BUILD)/test/rl_grpo_check: test/rl/grpo_check.c rl/grpo.c rl/grpo.h
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ test/rl/grpo_check.c rl/grpo.c -lcjson -lm
