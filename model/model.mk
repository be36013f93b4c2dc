# model/model.mk - the Qwen3 model layer (included by the top Makefile):
# the library and `viv gen`'s CLI (cmd_gen.c).
MODEL_SRC += model/config.c model/safetensors.c model/kernels.c model/qwen3.c model/qwen3_infer.c \
             model/adamw.c model/sample.c model/cmd_gen.c model/expf_rows.c

# Numeric code: -O3 lets GCC vectorise the element-wise loops (at -O2 GCC 12
# only vectorises loops that need no remainder), -fno-math-errno lets it use
# vector sqrt/exp (nothing here reads errno after a math call). The same in
# every optimised flavour (bin/viv, bin/viv-cuda and the benchmark helpers).
MODEL_OPT := -O3 -fno-math-errno
$(BUILD)/musl/model/%.o: MUSL_CFLAGS += $(MODEL_OPT)
$(BUILD)/cudahost/model/%.o: CUDA_HOST_CFLAGS += $(MODEL_OPT)
# expf_rows.c must round every step as the C library's expf does: no fused
# multiply-adds (its lanes are compiled for AVX2 without FMA as well).
$(BUILD)/musl/model/expf_rows.o: MUSL_CFLAGS += -ffp-contract=off
$(BUILD)/cudahost/model/expf_rows.o: CUDA_HOST_CFLAGS += -ffp-contract=off
$(BUILD)/asan/model/expf_rows.o: ASAN_CFLAGS += -ffp-contract=off

# The model tests run under ASan + UBSan: the configs are tiny, so the
# numerics stay fast, and the hostile-file tests need the sanitizers most.
EXTRA_TESTS += $(BUILD)/test/model_tests $(BUILD)/test/model_tool
$(BUILD)/test/model_tests: $(BUILD)/asan/test/model/model_tests.o $(call layer_libs,asan)
	@mkdir -p $(@D)
	$(ASAN_LINK)

# The benchmark helper (random checkpoints, training and bandwidth timings)
# is built optimised and without sanitizers: it exists to measure speed.
$(BUILD)/test/model_tool: $(BUILD)/cudahost/test/model/model_tool.o $(call layer_libs,cudahost)
	@mkdir -p $(@D)
	$(CUDA_HOST_LINK)

# A musl program over the model library, linked as bin/viv links it.
MUSL_MODEL_LINK = $(MUSL_CC) -static -o $@ $(filter %.o %.a,$^) $(MUSL)/lib/libcjson.a -lm -lpthread

# The decoder's attention loops next to the plain loops they replaced
# (test/bench/attn_cpu_bench.c), built as bin/viv builds the model.
EXTRA_TESTS += $(BUILD)/bench/attn_cpu_bench
$(BUILD)/musl/test/bench/attn_cpu_bench.o: MUSL_CFLAGS += $(MODEL_OPT)
$(BUILD)/bench/attn_cpu_bench: $(BUILD)/musl/test/bench/attn_cpu_bench.o
	@mkdir -p $(@D)
	$(MUSL_CC) -static -o $@ $^

# Batched decoding with the KV cache at the default model's shape
# (test/bench/kv_decode_bench.c): a step's median time and a checksum of
# the logits, so that a faster build can be checked to change no bit.
EXTRA_TESTS += $(BUILD)/bench/kv_decode_bench
$(BUILD)/musl/test/bench/kv_decode_bench.o: MUSL_CFLAGS += $(MODEL_OPT)
$(BUILD)/bench/kv_decode_bench: $(BUILD)/musl/test/bench/kv_decode_bench.o $(BUILD)/musl/libmodel.a $(BUILD)/musl/libsandbox.a
	@mkdir -p $(@D)
	$(MUSL_MODEL_LINK)

# One SFT-sized training step (forward + backward) at the default shape
# (test/bench/train_step_bench.c): median time and a checksum of the loss
# and gradients, the training counterpart of kv_decode_bench.
EXTRA_TESTS += $(BUILD)/bench/train_step_bench
$(BUILD)/musl/test/bench/train_step_bench.o: MUSL_CFLAGS += $(MODEL_OPT)
$(BUILD)/bench/train_step_bench: $(BUILD)/musl/test/bench/train_step_bench.o $(BUILD)/musl/libmodel.a $(BUILD)/musl/libsandbox.a
	@mkdir -p $(@D)
	$(MUSL_MODEL_LINK)

# expf_rows against the C library's expf, built as bin/viv is (run by
# test/model/run.sh, on every float from -104 to 88).
EXTRA_TESTS += $(BUILD)/test/expf_rows_check
$(BUILD)/musl/test/model/expf_rows_check.o: MUSL_CFLAGS += $(MODEL_OPT)
$(BUILD)/test/expf_rows_check: $(BUILD)/musl/test/model/expf_rows_check.o $(BUILD)/musl/libmodel.a $(BUILD)/musl/libsandbox.a
	@mkdir -p $(@D)
	$(MUSL_MODEL_LINK)

# libFuzzer target for the safetensors header parser (run briefly by
# test/model/run.sh).
$(eval $(call fuzz_target,fuzz_safetensors,test/model/fuzz_safetensors.c))
