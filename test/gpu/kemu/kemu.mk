# test/gpu/kemu/kemu.mk - kemu, the CUDA kernel emulator, and the tests built
# on it (included by the top Makefile after test/gpu/hostsim/hostsim.mk,
# whose objects it links).
#
# gpu_tests.c once more, now with the real kernels of
# kernels.cu / attention.cu / attention_tc.cu run on the CPU (threads of a
# block as fibers; see test/gpu/kemu/kemu.h). The .cu files are rewritten
# by kemu.sed (launch syntax, extern __shared__) and compiled as C++;
# matmul.cu runs too, against kemu's cuBLASLt (test/gpu/kemu/cublasLt.h:
# the library's documented column-major product, computed on the CPU).
KEMU_KERNEL_SRC := model/cuda/kernels.cu model/cuda/attention.cu model/cuda/matmul.cu model/cuda/attention_tc.cu \
                   model/cuda/attn_probe.cu
KEMU_OBJ := $(patsubst model/cuda/%.cu,$(BUILD)/kemu/%.o,$(KEMU_KERNEL_SRC)) $(BUILD)/kemu/kemu.o $(BUILD)/kemu/cublaslt.o
.SECONDARY: $(patsubst model/cuda/%.cu,$(BUILD)/kemu/%.cc,$(KEMU_KERNEL_SRC))
KEMU_FLAGS := -std=c++17 -O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-unused-function -Itest/gpu/kemu -Itest/gpu/hostsim

$(BUILD)/kemu/%.cc: model/cuda/%.cu test/gpu/kemu/kemu.sed
	@mkdir -p $(@D)
	(echo '#line 1 "$<"'; sed -f test/gpu/kemu/kemu.sed $<) > $@.tmp && mv $@.tmp $@

$(BUILD)/kemu/%.o: $(BUILD)/kemu/%.cc
	$(HOSTSIM_CXX) $(KEMU_FLAGS) -Imodel/cuda -include test/gpu/kemu/kemu.h $(DEPFLAGS) -c $< -o $@

$(BUILD)/kemu/kemu.o: test/gpu/kemu/kemu.cc
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) $(KEMU_FLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/kemu/cublaslt.o: test/gpu/kemu/cublaslt.cc
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) $(KEMU_FLAGS) $(DEPFLAGS) -c $< -o $@

# gpu_tests.c once more with VIV_KEMU: the kernel-level checks (the training
# attention's two paths through attn_probe.cu) run here too, not over hostsim
$(BUILD)/kemu/c/gpu_tests.o: test/gpu/gpu_tests.c
	@mkdir -p $(@D)
	gcc -std=gnu11 -O2 -g $(WARN) -DVIV_HOSTSIM -DVIV_KEMU -Itest/gpu/hostsim $(DEPFLAGS) -c $< -o $@

# gpu_tests.c's objects; its CPU side (the model) comes from the cudahost archives
KEMU_TEST_OBJ := $(BUILD)/kemu/c/gpu_tests.o
$(BUILD)/test/gpu_kemu_tests: $(KEMU_TEST_OBJ) $(HOSTSIM_CU_OBJ) $(KEMU_OBJ) $(call layer_libs,cudahost)
	@mkdir -p $(@D)
	$(call CUDA_HOST_CXX_LINK)

# kemu's own checks (test/gpu/kemu/kemu_tests.cu: known answers, and the
# kernel bugs it must catch)
$(BUILD)/kemu/kemu_tests.cc: test/gpu/kemu/kemu_tests.cu test/gpu/kemu/kemu.sed
	@mkdir -p $(@D)
	(echo '#line 1 "$<"'; sed -f test/gpu/kemu/kemu.sed $<) > $@.tmp && mv $@.tmp $@

$(BUILD)/test/kemu_tests: $(BUILD)/kemu/kemu_tests.o $(BUILD)/kemu/kemu.o
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $^ -lm

# kemu under a sanitizer, two builds of the same rules (KEMU_SAN_BUILD):
#   tsan  the race check (KEMU_TSAN, see kemu.h): every CUDA thread a
#         ThreadSanitizer fiber, barriers release/acquire pairs;
#   asan  the memcheck (KEMU_ASAN): stack switches told to AddressSanitizer,
#         dynamic shared memory a heap block of the launch's size, so an
#         access past a cudaMalloc'd buffer or past shared memory is reported.
# Both add -fsanitize=alignment: with CUDA's vector alignments (kemu.h) a
# float4/uint4 access a GPU would fault on ("misaligned address") aborts (it
# costs the plain kemu build 3x in the wmma loops, so only here). Each makes
# kemu_<name>_tests (test/gpu/kemu/race_tests.cu over the kernels) and
# gpu_kemu_<name>_tests (gpu_tests.c over them: the model's own calls, shapes
# and buffers; matmul.cu and attn_probe.cu instrumented too). kemu.cc itself
# is not instrumented (it only needs the fiber API) and must come last on
# the link line: its page of section kemu_smem ends the section (kemu.cc).
comma := ,
KEMU_SAN_SRC := model/cuda/kernels.cu model/cuda/attention.cu model/cuda/attention_tc.cu

$(BUILD)/kemu/race_tests.cc: test/gpu/kemu/race_tests.cu test/gpu/kemu/kemu.sed
	@mkdir -p $(@D)
	(echo '#line 1 "$<"'; sed -f test/gpu/kemu/kemu.sed $<) > $@.tmp && mv $@.tmp $@

# $(1): build dir suffix (tsan, asan), $(2): its define (KEMU_TSAN, KEMU_ASAN),
# $(3): the sanitizers, $(4): the test name (race, memcheck)
define KEMU_SAN_BUILD
$$(BUILD)/kemu-$(1)/%.o: $$(BUILD)/kemu/%.cc
	@mkdir -p $$(@D)
	$$(HOSTSIM_CXX) $$(KEMU_FLAGS) -O1 $(3) -fno-sanitize-recover=alignment -D$(2) -Imodel/cuda \
	  -include test/gpu/kemu/kemu.h $$(DEPFLAGS) -c $$< -o $$@

$$(BUILD)/kemu-$(1)/kemu.o: test/gpu/kemu/kemu.cc
	@mkdir -p $$(@D)
	$$(HOSTSIM_CXX) $$(KEMU_FLAGS) -D$(2) $$(DEPFLAGS) -c $$< -o $$@

$$(BUILD)/test/kemu_$(4)_tests: $$(patsubst model/cuda/%.cu,$$(BUILD)/kemu-$(1)/%.o,$$(KEMU_SAN_SRC)) \
                                $$(BUILD)/kemu-$(1)/race_tests.o $$(BUILD)/kemu-$(1)/kemu.o
	@mkdir -p $$(@D)
	$$(HOSTSIM_CXX) $(3) -o $$@ $$^ -lm

$$(BUILD)/test/gpu_kemu_$(4)_tests: $$(KEMU_TEST_OBJ) $$(HOSTSIM_CU_OBJ) \
                                    $$(patsubst model/cuda/%.cu,$$(BUILD)/kemu-$(1)/%.o,$$(KEMU_KERNEL_SRC)) \
                                    $$(BUILD)/kemu/cublaslt.o $$(BUILD)/kemu-$(1)/kemu.o $$(call layer_libs,cudahost)
	@mkdir -p $$(@D)
	$$(HOSTSIM_CXX) $(3) -o $$@ $$(filter %.o,$$^) $$(call link_layers,cudahost) $$(CUDA_HOST_LIBS)
endef
$(eval $(call KEMU_SAN_BUILD,tsan,KEMU_TSAN,-fsanitize=thread$(comma)alignment,race))
$(eval $(call KEMU_SAN_BUILD,asan,KEMU_ASAN,-fsanitize=address$(comma)alignment,memcheck))

# kemu's access profile (KEMU_PROF, test/gpu/kemu/prof.h): the kernels
# compiled with gcc's -fsanitize=thread instrumentation but linked without
# ThreadSanitizer's runtime; prof.cc's __tsan_* hooks see every load and
# store and cost each warp request in sectors and bank-conflict passes.
#   kemu_prof_tests  kernels with hand-counted costs (test/gpu/kemu/prof_tests.cu)
#   viv_kemu_prof    viv over the profiled kernels (test/bench/kernel_access.sh)
$(BUILD)/kemu/prof_tests.cc: test/gpu/kemu/prof_tests.cu test/gpu/kemu/kemu.sed
	@mkdir -p $(@D)
	(echo '#line 1 "$<"'; sed -f test/gpu/kemu/kemu.sed $<) > $@.tmp && mv $@.tmp $@

$(BUILD)/kemu-prof/%.o: $(BUILD)/kemu/%.cc
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) $(KEMU_FLAGS) -fsanitize=thread -DKEMU_PROF -Imodel/cuda -include test/gpu/kemu/kemu.h $(DEPFLAGS) -c $< -o $@

$(BUILD)/kemu-prof/%.o: test/gpu/kemu/%.cc
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) $(KEMU_FLAGS) -DKEMU_PROF $(DEPFLAGS) -c $< -o $@

$(BUILD)/test/kemu_prof_tests: $(BUILD)/kemu-prof/prof_tests.o $(BUILD)/kemu-prof/prof.o $(BUILD)/kemu-prof/kemu.o
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $^ -lm

KEMU_PROF_OBJ := $(patsubst model/cuda/%.cu,$(BUILD)/kemu-prof/%.o,$(KEMU_SAN_SRC)) $(BUILD)/kemu/matmul.o \
                 $(BUILD)/kemu/attn_probe.o $(BUILD)/kemu/cublaslt.o $(BUILD)/kemu-prof/prof.o $(BUILD)/kemu-prof/kemu.o
$(BUILD)/test/viv_kemu_prof: $(BUILD)/cudahost/rl/viv.o $(HOSTSIM_CU_OBJ) $(KEMU_PROF_OBJ) $(call layer_libs,cudahost)
	@mkdir -p $(@D)
	$(call CUDA_HOST_CXX_LINK)

# the trainer on the CUDA backend (test/gpu/train_gpu_tests.c, see
# model/cuda/cuda.mk) against the real kernels under kemu
$(BUILD)/test/train_gpu_kemu_tests: $(BUILD)/cudahost/test/gpu/train_gpu_tests.o $(HOSTSIM_CU_OBJ) $(KEMU_OBJ) \
                                    $(call layer_libs,cudahost)
	@mkdir -p $(@D)
	$(call CUDA_HOST_CXX_LINK)

# viv with the real kernels under kemu: the `viv cuda` and `viv gen --device
# cuda` command lines run end to end on the CPU (test/gpu/run.sh)
$(BUILD)/test/viv_kemu: $(BUILD)/cudahost/rl/viv.o $(HOSTSIM_CU_OBJ) $(KEMU_OBJ) $(call layer_libs,cudahost)
	@mkdir -p $(@D)
	$(call CUDA_HOST_CXX_LINK)

# The trainer over kemu and the sanitizer and profile builds are the long
# suite's (gpu-long): `make tests-full` builds them, `make tests` leaves them out.
ifneq ($(HOSTSIM_CXX),)
EXTRA_TESTS += $(BUILD)/test/gpu_kemu_tests $(BUILD)/test/kemu_tests $(BUILD)/test/viv_kemu
FULL_TESTS += $(BUILD)/test/train_gpu_kemu_tests $(BUILD)/test/kemu_race_tests $(BUILD)/test/gpu_kemu_race_tests $(BUILD)/test/kemu_memcheck_tests \
              $(BUILD)/test/gpu_kemu_memcheck_tests $(BUILD)/test/kemu_prof_tests $(BUILD)/test/viv_kemu_prof
endif

