# vivarium Makefile. Normally driven by ./build.sh, which first builds the
# static musl copies of libseccomp, libcap and cJSON into $(MUSL).
#
#   make all     bin/viv: static, musl
#   make tests   test binaries, built with glibc + AddressSanitizer/UBSan,
#                and an ASan copy of viv (build/asan/viv) for the attack suite
#   make tests-full  what the long suites need besides (test/run.sh --full)
MUSL ?= .deps/musl
BUILD := build

WARN := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-missing-field-initializers -Wformat=2
CFLAGS_COMMON := -std=gnu11 -O2 -g $(WARN) -fstack-protector-strong -D_FORTIFY_SOURCE=2

SANDBOX_SRC := sandbox/policy.c sandbox/util.c sandbox/json_writer.c sandbox/json_text.c sandbox/job_files.c sandbox/namespaces.c \
               sandbox/caps.c sandbox/limits.c sandbox/cgroup.c sandbox/syscall_filter.c \
               sandbox/mounts.c sandbox/init.c sandbox/supervisor.c sandbox/result_json.c \
               sandbox/cmd_run.c sandbox/builtin_filters.c sandbox/rpc.c sandbox/warm_worker.c sandbox/session.c sandbox/zygote.c sandbox/vivd.c sandbox/client.c sandbox/pool.c sandbox/cmd_exec.c sandbox/http_api.c sandbox/http_front.c
VIV_SRC := rl/viv.c
# Each layer beyond the sandbox (envs/, model/, rl/) keeps its own rules in a
# <layer>/<layer>.mk: it appends its sources to VIV_SRC (linked into bin/viv),
# its headers to HEADERS and its test binaries to EXTRA_TESTS.
EXTRA_TESTS :=
FULL_TESTS :=
HEADERS := $(wildcard sandbox/*.h)
include $(wildcard envs/*.mk model/*.mk model/cuda/*.mk rl/*.mk)
POLICIES := $(sort $(wildcard policies/*.json))

# --- static musl build ------------------------------------------------------
MUSL_CC := musl-gcc
MUSL_CFLAGS := $(CFLAGS_COMMON) -I$(MUSL)/include -I$(MUSL)/kinclude
MUSL_LIBS := $(MUSL)/lib/libseccomp.a $(MUSL)/lib/libcap.a $(MUSL)/lib/libcjson.a $(HTTP_MUSL_LIBS) -lm -lpthread
# Two stages: viv-stage1 (no precompiled filters) compiles each built-in
# policy's seccomp program, which bin/viv and bin/vivd then carry (see
# sandbox/builtin_filters.h for why).
MUSL_BASE := $(patsubst %.c,$(BUILD)/musl/%.o,$(SANDBOX_SRC) $(VIV_SRC)) $(BUILD)/musl/policies_embedded.o \
             $(BUILD)/musl/warm_drivers.o
MUSL_OBJ := $(MUSL_BASE) $(BUILD)/musl/policies_bpf.o
POLICY_NAMES := $(basename $(notdir $(POLICIES)))
BPF_FILES := $(patsubst %,$(BUILD)/bpf/%.bpf,$(POLICY_NAMES))

all: bin/viv bin/vivd

$(BUILD)/policies_embedded.c: $(POLICIES) sandbox/embed_policies.sh
	@mkdir -p $(@D)
	sandbox/embed_policies.sh $@ $(POLICIES)

$(BUILD)/musl/%.o: %.c $(HEADERS)
	@mkdir -p $(@D)
	$(MUSL_CC) $(MUSL_CFLAGS) -c $< -o $@

$(BUILD)/warm_drivers.c: sandbox/zygote_driver.py sandbox/session_driver.py sandbox/embed_text.sh
	@mkdir -p $(@D)
	sandbox/embed_text.sh $@ viv_zygote_driver sandbox/zygote_driver.py viv_session_driver sandbox/session_driver.py

$(BUILD)/musl/policies_embedded.o: $(BUILD)/policies_embedded.c
	$(MUSL_CC) $(MUSL_CFLAGS) -c $< -o $@

$(BUILD)/filters_empty.c: sandbox/embed_filters.sh
	@mkdir -p $(@D)
	sandbox/embed_filters.sh $@

$(BUILD)/viv-stage1: $(MUSL_BASE) $(BUILD)/musl/filters_empty.o
	$(MUSL_CC) -static -o $@ $^ $(MUSL_LIBS)

$(BUILD)/bpf/%.bpf: policies/%.json $(BUILD)/viv-stage1
	@mkdir -p $(@D)
	$(BUILD)/viv-stage1 policy bpf $* $@

$(BUILD)/policies_bpf.c: $(BPF_FILES) sandbox/embed_filters.sh
	sandbox/embed_filters.sh $@ $(BPF_FILES)

$(BUILD)/musl/%.o: $(BUILD)/%.c
	$(MUSL_CC) $(MUSL_CFLAGS) -c $< -o $@

bin/viv: $(MUSL_OBJ)
	@mkdir -p bin
	$(MUSL_CC) -static -o $@ $(MUSL_OBJ) $(MUSL_LIBS)

# vivd is the sandbox alone: none of envs/, model/ or rl/ is linked into it
VIVD_OBJ := $(patsubst %.c,$(BUILD)/musl/%.o,$(SANDBOX_SRC)) $(BUILD)/musl/policies_embedded.o \
            $(BUILD)/musl/warm_drivers.o $(BUILD)/musl/policies_bpf.o $(BUILD)/musl/sandbox/vivd_main.o
bin/vivd: $(VIVD_OBJ)
	@mkdir -p bin
	$(MUSL_CC) -static -o $@ $(VIVD_OBJ) $(MUSL_LIBS)

# --- sanitizer test build (glibc) ---------------------------------------------
ASAN_CC := gcc
ASAN_CFLAGS := -std=gnu11 -O1 -g $(WARN) -fsanitize=address,undefined -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined
ASAN_LIBS := -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread
ASAN_OBJ := $(patsubst %.c,$(BUILD)/asan/%.o,$(SANDBOX_SRC)) $(BUILD)/asan/policies_embedded.o \
            $(BUILD)/asan/policies_bpf.o $(BUILD)/asan/warm_drivers.o

$(BUILD)/asan/%.o: %.c $(HEADERS)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -c $< -o $@

$(BUILD)/asan/policies_embedded.o: $(BUILD)/policies_embedded.c
	$(ASAN_CC) $(ASAN_CFLAGS) -c $< -o $@

$(BUILD)/asan/warm_drivers.o: $(BUILD)/warm_drivers.c
	$(ASAN_CC) $(ASAN_CFLAGS) -c $< -o $@

$(BUILD)/asan/policies_bpf.o: $(BUILD)/policies_bpf.c
	$(ASAN_CC) $(ASAN_CFLAGS) -c $< -o $@

$(BUILD)/asan/viv: $(ASAN_OBJ) $(patsubst %.c,$(BUILD)/asan/%.o,$(VIV_SRC))
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $^ $(ASAN_LIBS)

$(BUILD)/asan/vivd: $(ASAN_OBJ) $(BUILD)/asan/sandbox/vivd_main.o
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $^ $(ASAN_LIBS)

TEST_BINS := $(BUILD)/test/unit_tests $(BUILD)/test/attack_tests $(BUILD)/test/vivd_tests

$(BUILD)/test/unit_tests: test/unit/unit_tests.c test/harness.h $(ASAN_OBJ)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -Isandbox -o $@ $< $(ASAN_OBJ) $(ASAN_LIBS)

$(BUILD)/test/vivd_tests: test/vivd/vivd_tests.c test/harness.h $(ASAN_OBJ)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -Isandbox -o $@ $< $(ASAN_OBJ) $(ASAN_LIBS)

$(BUILD)/test/attack_tests: test/attack/attack_tests.c test/harness.h
	@mkdir -p $(@D)
	$(ASAN_CC) -std=gnu11 -O1 -g -Wall -Wno-format-truncation -o $@ $< -lcjson

tests: $(TEST_BINS) $(EXTRA_TESTS) $(BUILD)/asan/viv $(BUILD)/asan/vivd $(BUILD)/fuzz/fuzz_policy $(BUILD)/fuzz/fuzz_request $(BUILD)/fuzz/fuzz_http

# what only the long suites run (test/run.sh --full)
tests-full: $(FULL_TESTS)

clean:
	rm -rf $(BUILD) bin

.PHONY: all tests tests-full clean

# --- fuzz targets (clang libFuzzer) -------------------------------------------
FUZZ_CC := clang
FUZZ_CFLAGS := -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -Isandbox
FUZZ_SRC := sandbox/policy.c sandbox/util.c sandbox/json_writer.c sandbox/json_text.c sandbox/syscall_filter.c \
            $(BUILD)/policies_embedded.c

$(BUILD)/fuzz/fuzz_policy: test/fuzz/fuzz_policy.c $(FUZZ_SRC) $(HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC) -lseccomp -lcjson -lm

$(BUILD)/fuzz/fuzz_request: test/fuzz/fuzz_request.c sandbox/rpc.c sandbox/util.c sandbox/json_writer.c sandbox/json_text.c sandbox/job_files.c $(HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< sandbox/rpc.c sandbox/util.c sandbox/json_writer.c sandbox/json_text.c sandbox/job_files.c -lcjson -lm

$(BUILD)/fuzz/fuzz_http: test/fuzz/fuzz_http.c sandbox/http_api.c sandbox/util.c sandbox/json_writer.c sandbox/json_text.c $(HEADERS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< sandbox/http_api.c sandbox/util.c sandbox/json_writer.c sandbox/json_text.c -lcjson -lm

fuzz: $(BUILD)/fuzz/fuzz_policy $(BUILD)/fuzz/fuzz_request $(BUILD)/fuzz/fuzz_http
.PHONY: fuzz
