# model/model.mk - the Qwen3 model layer (included by the top Makefile).
# MODEL_SRC is the library (what the tests link); cmd_gen.c is viv gen's CLI
MODEL_SRC := model/config.c model/safetensors.c model/kernels.c model/qwen3.c model/qwen3_infer.c \
             model/adamw.c model/sample.c
VIV_SRC += $(MODEL_SRC) model/cmd_gen.c
HEADERS += $(wildcard model/*.h)
EXTRA_TESTS += build/test/model_tests build/test/model_tool

# Numeric code: -O3 lets GCC vectorise the element-wise loops (at -O2 GCC 12
# only vectorises loops that need no remainder), -fno-math-errno lets it use
# vector sqrt/exp (nothing here reads errno after a math call).
MODEL_OPT := -O3 -fno-math-errno
$(BUILD)/musl/model/%.o: MUSL_CFLAGS += $(MODEL_OPT)

# The model tests run under ASan + UBSan: the configs are tiny, so the
# numerics stay fast, and the hostile-file tests need the sanitizers most.
build/test/model_tests: test/model/model_tests.c test/harness.h $(MODEL_SRC) sandbox/util.c $(HEADERS)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ test/model/model_tests.c $(MODEL_SRC) sandbox/util.c $(ASAN_LIBS)

# The benchmark helper (random checkpoints, training and bandwidth timings)
# is built optimised and without sanitizers: it exists to measure speed.
build/test/model_tool: test/model/model_tool.c $(MODEL_SRC) sandbox/util.c $(HEADERS)
	@mkdir -p $(@D)
	gcc -std=gnu11 -g $(WARN) $(MODEL_OPT) -o $@ test/model/model_tool.c $(MODEL_SRC) sandbox/util.c -lcjson -lm -lpthread

# libFuzzer target for the safetensors header parser (run briefly by
# test/model/run.sh; clang is already required by the sandbox's fuzz targets).
EXTRA_TESTS += build/fuzz/fuzz_safetensors
build/fuzz/fuzz_safetensors: test/model/fuzz_safetensors.c model/safetensors.c sandbox/util.c $(HEADERS)
	@mkdir -p $(@D)
	clang -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -o $@ test/model/fuzz_safetensors.c \
	    model/safetensors.c sandbox/util.c -lcjson -lm
