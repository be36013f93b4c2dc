# model/model.mk - the Qwen3 model layer (included by the top Makefile).
MODEL_SRC := model/config.c model/safetensors.c model/kernels.c model/qwen3.c model/qwen3_infer.c \
             model/adamw.c model/sample.c model/cmd_gen.c
VIV_SRC += $(MODEL_SRC)
HEADERS += $(wildcard model/*.h)
EXTRA_TESTS += build/test/model_tests build/test/model_tool

# The model tests run under ASan + UBSan: the configs are tiny, so the
# numerics stay fast, and the hostile-file tests need the sanitizers most.
build/test/model_tests: test/model/model_tests.c test/harness.h $(MODEL_SRC) sandbox/util.c $(HEADERS)
	@mkdir -p $(@D)
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ test/model/model_tests.c $(MODEL_SRC) sandbox/util.c $(ASAN_LIBS)

# The benchmark helper (random checkpoints, training and bandwidth timings)
# is built optimised and without sanitizers: it exists to measure speed.
build/test/model_tool: test/model/model_tool.c $(MODEL_SRC) sandbox/util.c $(HEADERS)
	@mkdir -p $(@D)
	gcc -std=gnu11 -O2 -g $(WARN) -o $@ test/model/model_tool.c $(MODEL_SRC) sandbox/util.c -lcjson -lm -lpthread

# libFuzzer target for the safetensors header parser (run briefly by
# test/model/run.sh; clang is already required by the sandbox's fuzz targets).
EXTRA_TESTS += build/fuzz/fuzz_safetensors
build/fuzz/fuzz_safetensors: test/model/fuzz_safetensors.c model/safetensors.c sandbox/util.c $(HEADERS)
	@mkdir -p $(@D)
	clang -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -o $@ test/model/fuzz_safetensors.c \
	    model/safetensors.c sandbox/util.c -lcjson -lm
