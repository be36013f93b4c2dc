# envs/agent.mk - the agent half of the Biomni environment: the tag protocol,
# the Eval1 graders and loader, the scripted teacher, the episode runner and
# `viv eval`. Included by the Makefile.
ENVS_SRC += envs/protocol.c envs/graders.c envs/graders_literal.c envs/eval1.c envs/teacher.c \
            envs/episode.c envs/turn.c envs/outcome.c envs/cmd_eval.c envs/private_vivd.c

# Unit tests: ASan + UBSan, linked with the sandbox client (the end-to-end
# part of the suite runs the static bin/viv).
EXTRA_TESTS += $(BUILD)/test/agent_tests
$(BUILD)/test/agent_tests: $(BUILD)/asan/test/agent/agent_tests.o $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)

# libFuzzer target: protocol parsing, tool selection, observations, the
# format reward, the graders' json/literal parsers and the episode state
# machine on arbitrary bytes.
$(eval $(call fuzz_target,fuzz_protocol,test/fuzz/fuzz_protocol.c))
