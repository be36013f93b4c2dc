# vivarium Makefile. Normally driven by ./build.sh, which first builds the
# static musl copies of libseccomp, libcap and cJSON into $(MUSL).
#
#   make all     bin/viv: static, musl
#   make tests   test binaries, built with glibc + AddressSanitizer/UBSan,
#                and an ASan copy of viv (build/asan/viv) for the attack suite
#   make tests-full  what the long suites need besides (test/run.sh --full)
#
# How the build is laid out:
#   - every source is compiled once per flavour into $(BUILD)/<flavour>/<path>.o:
#       musl      static musl, what bin/viv and bin/vivd are made of
#       asan      glibc + AddressSanitizer/UBSan, what the tests link
#       fuzzobj   clang with libFuzzer's coverage + ASan/UBSan, what the fuzz targets link
#       cudahost  glibc, optimised, no sanitizers (bin/viv-cuda, the GPU tests
#                 and their CPU side, the benchmark helpers; model/cuda/cuda.mk)
#   - each layer (sandbox, envs, model, rl) is one list of sources,
#     <LAYER>_SRC, and one archive per flavour, $(BUILD)/<flavour>/lib<layer>.a;
#     a test or tool links the archives (layer_libs) and takes from them the
#     objects it needs, so a new source joins every program by being listed once;
#   - each compile writes a .d file (-MMD -MP) naming the headers it read:
#     a header change rebuilds what includes it and nothing else.
MUSL ?= .deps/musl
BUILD := build

WARN := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-missing-field-initializers -Wformat=2
CFLAGS_COMMON := -std=gnu11 -O2 -g $(WARN) -fstack-protector-strong -D_FORTIFY_SOURCE=2
DEPFLAGS := -MMD -MP

# The layers, in link order: a layer before the layers it calls. Each
# <layer>/*.mk appends its sources to its layer's list and its test binaries
# to EXTRA_TESTS (FULL_TESTS for what only the long suites run).
LAYERS := rl envs model sandbox
SANDBOX_SRC := sandbox/jail/policy.c sandbox/base/util.c sandbox/base/json_writer.c sandbox/base/json_text.c sandbox/jail/job_files.c sandbox/jail/namespaces.c \
               sandbox/jail/caps.c sandbox/jail/limits.c sandbox/jail/cgroup.c sandbox/jail/syscall_filter.c \
               sandbox/jail/mounts.c sandbox/jail/init.c sandbox/jail/supervisor.c sandbox/jail/result_json.c \
               sandbox/cli/cmd_run.c sandbox/jail/builtin_filters.c sandbox/vivd/rpc.c sandbox/vivd/warm_worker.c sandbox/vivd/session.c sandbox/vivd/zygote.c sandbox/vivd/vivd.c sandbox/vivd/jobs.c sandbox/vivd/zygote_pool.c sandbox/vivd/session_table.c sandbox/vivd/front_door.c sandbox/client/client.c sandbox/client/pool.c sandbox/cli/cmd_exec.c sandbox/vivd/http_api.c sandbox/vivd/run_languages.c sandbox/vivd/http_front.c sandbox/base/args.c sandbox/base/interrupt.c \
               sandbox/jail/http_head.c sandbox/jail/egress_rules.c sandbox/jail/egress.c sandbox/jail/egress_proxy.c
# generated C (below): the policies, the warm drivers, the compiled filters
SANDBOX_GEN := policies_embedded.o warm_drivers.o policies_bpf.o
ENVS_SRC :=
MODEL_SRC :=
RL_SRC :=
EXTRA_TESTS :=
FULL_TESTS :=

# $(call layer_objs,FLAVOUR,LAYER): the layer's objects in that flavour
LAYER_SRC.sandbox = $(SANDBOX_SRC)
LAYER_SRC.envs = $(ENVS_SRC)
LAYER_SRC.model = $(MODEL_SRC)
LAYER_SRC.rl = $(RL_SRC)
layer_objs = $(patsubst %.c,$(BUILD)/$(1)/%.o,$(LAYER_SRC.$(2))) \
             $(if $(filter sandbox,$(2)),$(addprefix $(BUILD)/$(1)/,$(SANDBOX_GEN)))
# $(call layer_libs,FLAVOUR): every layer's archive, in link order
layer_libs = $(foreach l,$(LAYERS),$(BUILD)/$(1)/lib$(l).a)
# the archives on a link line; a group, as the layers call each other both ways
link_layers = -Wl,--start-group $(call layer_libs,$(1)) -Wl,--end-group

# --- fuzz targets (clang libFuzzer) -------------------------------------------
# One place for libFuzzer's flags: objects get its coverage (fuzzer-no-link),
# the target's link adds its main (fuzzer).
FUZZ_CC := clang
FUZZ_SANITIZERS := address,undefined
FUZZ_CFLAGS := -std=gnu11 -O1 -g -fsanitize=fuzzer-no-link,$(FUZZ_SANITIZERS)
FUZZ_LDFLAGS := -fsanitize=fuzzer,$(FUZZ_SANITIZERS)
FUZZ_LIBS = -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread
FUZZ_LINK = $(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $(filter %.o,$^) $(call link_layers,fuzzobj) $(FUZZ_LIBS)

$(BUILD)/fuzzobj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(TEST_CPPFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/fuzzobj/%.o: $(BUILD)/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(DEPFLAGS) -c $< -o $@

# $(call fuzz_target,NAME,SOURCE): $(BUILD)/fuzz/NAME from SOURCE and the layers
# (each layer declares its own targets in its .mk)
define fuzz_target
$$(BUILD)/fuzz/$(1): $$(patsubst %.c,$$(BUILD)/fuzzobj/%.o,$(2)) $$(call layer_libs,fuzzobj)
	@mkdir -p $$(@D)
	$$(FUZZ_LINK)
FUZZ_TARGETS += $$(BUILD)/fuzz/$(1)
endef
FUZZ_TARGETS :=

include $(wildcard envs/*.mk model/*.mk model/cuda/*.mk rl/*.mk rl/serve/*.mk)
# the CPU stand-ins for the GPU (test/gpu): hostsim, then kemu (uses hostsim's)
include test/gpu/hostsim/hostsim.mk test/gpu/kemu/kemu.mk
VIV_SRC := rl/viv.c $(SANDBOX_SRC) $(ENVS_SRC) $(MODEL_SRC) $(RL_SRC)
POLICIES := $(sort $(wildcard policies/*.json))

# one archive per layer and flavour
FLAVOURS := musl asan fuzzobj cudahost
define LAYER_LIB
$$(BUILD)/$(1)/lib$(2).a: $$(call layer_objs,$(1),$(2))
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach f,$(FLAVOURS),$(foreach l,$(LAYERS),$(eval $(call LAYER_LIB,$(f),$(l)))))

# --- static musl build ------------------------------------------------------
MUSL_CC := musl-gcc
MUSL_CFLAGS := $(CFLAGS_COMMON) -I$(MUSL)/include -I$(MUSL)/kinclude
MUSL_LIBS := $(MUSL)/lib/libseccomp.a $(MUSL)/lib/libcap.a $(MUSL)/lib/libcjson.a $(HTTP_MUSL_LIBS) -lm -lpthread
# Two stages: viv-stage1 (no precompiled filters) compiles each built-in
# policy's seccomp program, which bin/viv and bin/vivd then carry (see
# sandbox/jail/builtin_filters.h for why).
MUSL_BASE := $(patsubst %.c,$(BUILD)/musl/%.o,$(VIV_SRC)) $(BUILD)/musl/policies_embedded.o \
             $(BUILD)/musl/warm_drivers.o
MUSL_OBJ := $(MUSL_BASE) $(BUILD)/musl/policies_bpf.o
POLICY_NAMES := $(basename $(notdir $(POLICIES)))
BPF_FILES := $(patsubst %,$(BUILD)/bpf/%.bpf,$(POLICY_NAMES))

all: bin/viv bin/vivd

$(BUILD)/policies_embedded.c: $(POLICIES) sandbox/jail/embed_policies.sh
	@mkdir -p $(@D)
	sandbox/jail/embed_policies.sh $@ $(POLICIES)

$(BUILD)/musl/%.o: %.c
	@mkdir -p $(@D)
	$(MUSL_CC) $(MUSL_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/warm_drivers.c: sandbox/vivd/zygote_driver.py sandbox/vivd/session_driver.py sandbox/vivd/embed_text.sh
	@mkdir -p $(@D)
	sandbox/vivd/embed_text.sh $@ viv_zygote_driver sandbox/vivd/zygote_driver.py viv_session_driver sandbox/vivd/session_driver.py

$(BUILD)/filters_empty.c: sandbox/jail/embed_filters.sh
	@mkdir -p $(@D)
	sandbox/jail/embed_filters.sh $@

$(BUILD)/viv-stage1: $(MUSL_BASE) $(BUILD)/musl/filters_empty.o
	$(MUSL_CC) -static -o $@ $^ $(MUSL_LIBS)

$(BUILD)/bpf/%.bpf: policies/%.json $(BUILD)/viv-stage1
	@mkdir -p $(@D)
	$(BUILD)/viv-stage1 policy bpf $* $@

$(BUILD)/policies_bpf.c: $(BPF_FILES) sandbox/jail/embed_filters.sh
	sandbox/jail/embed_filters.sh $@ $(BPF_FILES)

$(BUILD)/musl/%.o: $(BUILD)/%.c
	@mkdir -p $(@D)
	$(MUSL_CC) $(MUSL_CFLAGS) $(DEPFLAGS) -c $< -o $@

bin/viv: $(MUSL_OBJ)
	@mkdir -p bin
	$(MUSL_CC) -static -o $@ $(MUSL_OBJ) $(MUSL_LIBS)

# vivd is the sandbox alone: none of envs/, model/ or rl/ is linked into it
VIVD_OBJ := $(call layer_objs,musl,sandbox) $(BUILD)/musl/sandbox/vivd/vivd_main.o
bin/vivd: $(VIVD_OBJ)
	@mkdir -p bin
	$(MUSL_CC) -static -o $@ $(VIVD_OBJ) $(MUSL_LIBS)

# --- sanitizer test build (glibc) ---------------------------------------------
ASAN_CC := gcc
ASAN_CFLAGS := -std=gnu11 -O1 -g $(WARN) -fsanitize=address,undefined -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined
ASAN_LIBS := -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread
# the test programs include their layer's headers by bare name
TEST_CPPFLAGS :=
$(BUILD)/asan/test/unit/%.o $(BUILD)/asan/test/vivd/%.o $(BUILD)/fuzzobj/test/fuzz/%.o: TEST_CPPFLAGS := -Isandbox -Ienvs
$(BUILD)/asan/test/agent/%.o: TEST_CPPFLAGS := -Ienvs
$(BUILD)/asan/test/tokenizer/%.o $(BUILD)/fuzzobj/test/tokenizer/%.o: TEST_CPPFLAGS := -Imodel

$(BUILD)/asan/%.o: %.c
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) $(TEST_CPPFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/asan/%.o: $(BUILD)/%.c
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) $(DEPFLAGS) -c $< -o $@

# A test program: its own objects (the prerequisites ending in .o), then
# the layers' archives.
ASAN_LINK = $(ASAN_CC) $(ASAN_CFLAGS) -o $@ $(filter %.o,$^) $(call link_layers,asan) $(ASAN_LIBS)

$(BUILD)/asan/viv: $(BUILD)/asan/rl/viv.o $(call layer_libs,asan)
	$(ASAN_LINK)

$(BUILD)/asan/vivd: $(BUILD)/asan/sandbox/vivd/vivd_main.o $(call layer_libs,asan)
	$(ASAN_LINK)

TEST_BINS := $(BUILD)/test/unit_tests $(BUILD)/test/attack_tests $(BUILD)/test/vivd_tests

$(BUILD)/test/unit_tests: $(BUILD)/asan/test/unit/unit_tests.o $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)

$(BUILD)/test/vivd_tests: $(BUILD)/asan/test/vivd/vivd_tests.o $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)

# the attack suite is a client of viv alone (it links none of the layers),
# built without sanitizers: the jail runs it, the viv it drives carries them
$(BUILD)/test/attack_tests: test/attack/attack_tests.c
	@mkdir -p $(@D)
	$(ASAN_CC) -std=gnu11 -O1 -g -Wall -Wno-format-truncation $(DEPFLAGS) -MF $@.d -MT $@ -o $@ $< -lcjson

# --- the sandbox's fuzz targets -----------------------------------------------
$(eval $(call fuzz_target,fuzz_policy,test/fuzz/fuzz_policy.c))
$(eval $(call fuzz_target,fuzz_request,test/fuzz/fuzz_request.c))
$(eval $(call fuzz_target,fuzz_http,test/fuzz/fuzz_http.c))
$(eval $(call fuzz_target,fuzz_egress_head,test/fuzz/fuzz_egress_head.c))

fuzz: $(FUZZ_TARGETS)

tests: $(TEST_BINS) $(EXTRA_TESTS) $(BUILD)/asan/viv $(BUILD)/asan/vivd $(FUZZ_TARGETS)

# what only the long suites run (test/run.sh --full)
tests-full: $(FULL_TESTS)

clean:
	rm -rf $(BUILD) bin

.PHONY: all tests tests-full clean fuzz

# the headers each object read, as its last compile found them
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
