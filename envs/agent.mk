# envs/agent.mk - the agent half of the Biomni environment: the tag protocol,
# the Eval1 graders and loader, the scripted teacher, the episode runner and
# `viv eval`. Included by the Makefile before its own rules, so the ASan
# pattern rule and ASAN_* variables are only used inside recipes here.
AGENT_SRC := envs/protocol.c envs/graders.c envs/graders_literal.c envs/eval1.c envs/teacher.c \
             envs/episode.c envs/outcome.c envs/cmd_eval.c envs/private_vivd.c
VIV_SRC += $(AGENT_SRC)
HEADERS += $(wildcard envs/*.h)

# Unit tests: ASan + UBSan, linked with the sandbox client (the end-to-end
# part of the suite runs the static bin/viv).
AGENT_TEST_OBJ := $(patsubst %.c,build/asan/%.o,$(AGENT_SRC) sandbox/util.c sandbox/client.c sandbox/pool.c sandbox/json_writer.c sandbox/json_text.c \
                  sandbox/args.c sandbox/interrupt.c)
EXTRA_TESTS += build/test/agent_tests build/fuzz/fuzz_protocol

build/test/agent_tests: test/agent/agent_tests.c test/harness.h $(AGENT_TEST_OBJ)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -Ienvs -o $@ $< $(AGENT_TEST_OBJ) $(ASAN_LIBS)

# libFuzzer target: protocol parsing, tool selection, observations, the
# format reward, the graders' json/literal parsers and the episode state
# machine on arbitrary bytes.
FUZZ_PROTOCOL_SRC := envs/protocol.c envs/graders.c envs/graders_literal.c envs/episode.c envs/outcome.c sandbox/util.c \
                     sandbox/client.c sandbox/pool.c sandbox/json_writer.c sandbox/json_text.c
build/fuzz/fuzz_protocol: test/fuzz/fuzz_protocol.c $(FUZZ_PROTOCOL_SRC) $(wildcard envs/*.h)
	@mkdir -p $(@D)
	clang -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -Ienvs -o $@ $< $(FUZZ_PROTOCOL_SRC) -lcjson -lm

fuzz: build/fuzz/fuzz_protocol
