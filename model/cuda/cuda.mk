# model/cuda/cuda.mk - the CUDA backend and bin/viv-cuda (included by the top
# Makefile, before its static build rules).
#
#   bin/viv       static musl, no CUDA: `viv cuda` and `viv gen --device cuda`
#                 say so (model/cuda/cmd_cuda.c is built without VIV_CUDA)
#   bin/viv-cuda  the same viv, glibc, with model/cuda linked in (-DVIV_CUDA)
#
# bin/viv-cuda links the CUDA runtime statically (libcudart_static.a) and
# loads the driver's libcuda at run time. cuBLASLt and NCCL are linked
# dynamically because this toolkit ships them only as shared libraries (no
# libcublasLt_static.a / libnccl_static.a under /usr/local/cuda); the binary
# carries an rpath to $(CUDA_HOME)/lib64. MPI (Debian's libopenmpi) and cJSON
# are shared too; libseccomp and libcap are linked from their static archives.
#
# Everything here is skipped when nvcc is missing (HAVE_NVCC empty): CI
# machines without the toolkit build and test exactly as before.
VIV_SRC += model/cuda/cmd_cuda.c
HEADERS += model/cuda/cmd_cuda.h model/cuda/qwen3_cuda.h

CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
HAVE_NVCC := $(shell test -x $(NVCC) && echo 1)
# Hopper (H100/H200) machine code plus compute_90 PTX, which newer GPUs JIT.
# One real architecture keeps the CI compile cheap; add e.g.
# CUDA_ARCH="-gencode arch=compute_80,code=sm_80 ..." for A100s.
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90

# Data parallel needs MPI (mpicc from libopenmpi-dev) and nccl.h; without
# either, dist.cu builds as a world of one (VIV_DIST=0).
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS := $(shell mpicc --showme:link 2>/dev/null)
HAVE_NCCL := $(shell test -f $(CUDA_HOME)/include/nccl.h && echo 1)
VIV_DIST ?= $(if $(and $(MPI_LIBS),$(HAVE_NCCL)),1,0)
DIST_LIBS := $(if $(filter 1,$(VIV_DIST)),$(MPI_LIBS) -lnccl)

# the C++ driver links (nvcc's object code needs libstdc++); nvcc itself
# needs g++ as its host compiler, so it is there wherever nvcc works
CUDA_CXX ?= $(shell command -v g++ || command -v clang++ || echo g++)
CUDA_SRC := model/cuda/kernels.cu model/cuda/attention.cu model/cuda/attention_tc.cu model/cuda/matmul.cu model/cuda/qwen3_cuda.cu \
            model/cuda/infer.cu model/cuda/dist.cu model/cuda/attn_probe.cu
CUDA_OBJ := $(patsubst %.cu,$(BUILD)/cuda/%.o,$(CUDA_SRC))
CUDA_HDR := $(wildcard model/cuda/*.cuh) model/cuda/qwen3_cuda.h $(wildcard model/*.h)
NVCC_FLAGS := -std=c++17 -O3 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-Wno-unused-parameter -DVIV_DIST=$(VIV_DIST) -DOMPI_SKIP_MPICXX -DMPICH_SKIP_MPICXX \
              $(if $(filter 1,$(VIV_DIST)),$(MPI_CFLAGS))
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static $(DIST_LIBS) \
             -static-libstdc++ -static-libgcc -lstdc++ -ldl -lrt -lpthread -lm

$(BUILD)/cuda/%.o: %.cu $(CUDA_HDR)
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@

# viv's C sources again, for glibc and with VIV_CUDA (cmd_gen.c, cmd_cuda.c
# switch on it). The object list is the musl build's, read after the whole
# Makefile (secondary expansion), so new layers join automatically.
.SECONDEXPANSION:
CUDA_HOST_CFLAGS = $(CFLAGS_COMMON) -DVIV_CUDA
CUDA_HOST_OBJ = $(patsubst $(BUILD)/musl/%,$(BUILD)/cudahost/%,$(MUSL_OBJ))

$(BUILD)/cudahost/%.o: %.c $$(HEADERS)
	@mkdir -p $(@D)
	gcc $(CUDA_HOST_CFLAGS) -c $< -o $@

$(BUILD)/cudahost/%.o: $(BUILD)/%.c
	@mkdir -p $(@D)
	gcc $(CUDA_HOST_CFLAGS) -c $< -o $@

bin/viv-cuda: $$(CUDA_HOST_OBJ) $(CUDA_OBJ)
	@mkdir -p bin
	$(CUDA_CXX) -o $@ $(CUDA_HOST_OBJ) $(CUDA_OBJ) -l:libseccomp.a -l:libcap.a -lcjson $(CUDA_LIBS)

# test/gpu: the CPU model (plain gcc -O2: the comparisons run real
# numerics on the CPU side too) against the CUDA objects.
GPU_TEST_SRC := test/gpu/gpu_tests.c model/config.c model/safetensors.c model/kernels.c model/qwen3.c \
                model/qwen3_infer.c model/adamw.c model/sample.c sandbox/util.c
$(BUILD)/test/gpu_tests: $(GPU_TEST_SRC) test/harness.h $(CUDA_OBJ) $(CUDA_HDR)
	@mkdir -p $(@D)
	gcc -std=gnu11 -O2 -g $(WARN) -o $@ $(GPU_TEST_SRC) $(CUDA_OBJ) -lcjson $(CUDA_LIBS)

# test/bench/attn_bench.c: the two training attention paths timed alone
# (test/bench/gpu.sh runs it)
ATTN_BENCH_SRC := test/bench/attn_bench.c $(filter-out test/gpu/gpu_tests.c,$(GPU_TEST_SRC))
$(BUILD)/test/attn_bench: $(ATTN_BENCH_SRC) $(CUDA_OBJ) $(CUDA_HDR)
	@mkdir -p $(@D)
	gcc -std=gnu11 -O2 -g $(WARN) -o $@ $(ATTN_BENCH_SRC) $(CUDA_OBJ) -lcjson $(CUDA_LIBS)

cuda: $(if $(HAVE_NVCC),bin/viv-cuda $(BUILD)/test/gpu_tests $(BUILD)/test/attn_bench)
ifeq ($(HAVE_NVCC),1)
tests: bin/viv-cuda $(BUILD)/test/gpu_tests
endif
.PHONY: cuda

# test/gpu/hostsim: the same gpu_tests.c against model/cuda's host code
# (qwen3_cuda.cu, infer.cu, dist.cu without MPI) compiled as plain C++ with
# the stand-in headers and kernels of test/gpu/hostsim. Needs no nvcc and
# no GPU, so it builds and runs everywhere; it checks the orchestration and
# the tolerances, not the CUDA kernels (see hostsim.cc).
HOSTSIM_CXX ?= $(shell command -v g++ || command -v clang++)
HOSTSIM_FLAGS := -O2 -g -Wall -Wextra -Wno-unused-parameter -Wshadow -Itest/gpu/hostsim -DVIV_DIST=0
HOSTSIM_CU_OBJ := $(patsubst model/cuda/%.cu,$(BUILD)/hostsim/%.o,model/cuda/qwen3_cuda.cu model/cuda/infer.cu model/cuda/dist.cu)
HOSTSIM_C_SRC := $(filter %.c,$(GPU_TEST_SRC))
HOSTSIM_C_OBJ := $(patsubst %.c,$(BUILD)/hostsim/c/%.o,$(HOSTSIM_C_SRC))

$(BUILD)/hostsim/%.o: model/cuda/%.cu $(CUDA_HDR) $(wildcard test/gpu/hostsim/*.h)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -std=c++17 $(HOSTSIM_FLAGS) -x c++ -c $< -o $@

$(BUILD)/hostsim/hostsim.o: test/gpu/hostsim/hostsim.cc model/cuda/ops.cuh $(wildcard test/gpu/hostsim/*.h)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -std=c++17 $(HOSTSIM_FLAGS) -c $< -o $@

$(BUILD)/hostsim/c/%.o: %.c $(CUDA_HDR) test/harness.h
	@mkdir -p $(@D)
	gcc -std=gnu11 -O2 -g $(WARN) -DVIV_HOSTSIM -Itest/gpu/hostsim -c $< -o $@

$(BUILD)/test/gpu_hostsim_tests: $(HOSTSIM_C_OBJ) $(HOSTSIM_CU_OBJ) $(BUILD)/hostsim/hostsim.o
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $^ -lcjson -lm -lpthread

# clang++ comes with the clang build.sh installs; g++ is preferred when present
ifneq ($(HOSTSIM_CXX),)
EXTRA_TESTS += $(BUILD)/test/gpu_hostsim_tests
endif

# test/gpu/kemu: gpu_tests.c once more, now with the real kernels of
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

$(BUILD)/kemu/%.o: $(BUILD)/kemu/%.cc model/cuda/ops.cuh $(wildcard test/gpu/kemu/*.h test/gpu/kemu/*.cuh test/gpu/hostsim/*.h)
	$(HOSTSIM_CXX) $(KEMU_FLAGS) -Imodel/cuda -include test/gpu/kemu/kemu.h -c $< -o $@

$(BUILD)/kemu/kemu.o: test/gpu/kemu/kemu.cc $(wildcard test/gpu/kemu/*.h test/gpu/kemu/*.cuh test/gpu/hostsim/*.h)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) $(KEMU_FLAGS) -c $< -o $@

$(BUILD)/kemu/cublaslt.o: test/gpu/kemu/cublaslt.cc $(wildcard test/gpu/kemu/*.h test/gpu/kemu/*.cuh test/gpu/hostsim/*.h)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) $(KEMU_FLAGS) -c $< -o $@

# gpu_tests.c once more with VIV_KEMU: the kernel-level checks (the training
# attention's two paths through attn_probe.cu) run here too, not over hostsim
$(BUILD)/kemu/c/gpu_tests.o: test/gpu/gpu_tests.c $(CUDA_HDR) test/harness.h
	@mkdir -p $(@D)
	gcc -std=gnu11 -O2 -g $(WARN) -DVIV_HOSTSIM -DVIV_KEMU -Itest/gpu/hostsim -c $< -o $@

KEMU_TEST_OBJ := $(filter-out $(BUILD)/hostsim/c/test/gpu/gpu_tests.o,$(HOSTSIM_C_OBJ)) $(BUILD)/kemu/c/gpu_tests.o
$(BUILD)/test/gpu_kemu_tests: $(KEMU_TEST_OBJ) $(HOSTSIM_CU_OBJ) $(KEMU_OBJ)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $^ -lcjson -lm -lpthread

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
$$(BUILD)/kemu-$(1)/%.o: $$(BUILD)/kemu/%.cc model/cuda/ops.cuh $$(wildcard test/gpu/kemu/*.h test/gpu/kemu/*.cuh test/gpu/hostsim/*.h)
	@mkdir -p $$(@D)
	$$(HOSTSIM_CXX) $$(KEMU_FLAGS) -O1 $(3) -fno-sanitize-recover=alignment -D$(2) -Imodel/cuda \
	  -include test/gpu/kemu/kemu.h -c $$< -o $$@

$$(BUILD)/kemu-$(1)/kemu.o: test/gpu/kemu/kemu.cc $$(wildcard test/gpu/kemu/*.h test/gpu/kemu/*.cuh test/gpu/hostsim/*.h)
	@mkdir -p $$(@D)
	$$(HOSTSIM_CXX) $$(KEMU_FLAGS) -D$(2) -c $$< -o $$@

$$(BUILD)/test/kemu_$(4)_tests: $$(patsubst model/cuda/%.cu,$$(BUILD)/kemu-$(1)/%.o,$$(KEMU_SAN_SRC)) \
                                $$(BUILD)/kemu-$(1)/race_tests.o $$(BUILD)/kemu-$(1)/kemu.o
	@mkdir -p $$(@D)
	$$(HOSTSIM_CXX) $(3) -o $$@ $$^ -lm

$$(BUILD)/test/gpu_kemu_$(4)_tests: $$(KEMU_TEST_OBJ) $$(HOSTSIM_CU_OBJ) \
                                    $$(patsubst model/cuda/%.cu,$$(BUILD)/kemu-$(1)/%.o,$$(KEMU_KERNEL_SRC)) \
                                    $$(BUILD)/kemu/cublaslt.o $$(BUILD)/kemu-$(1)/kemu.o
	@mkdir -p $$(@D)
	$$(HOSTSIM_CXX) $(3) -o $$@ $$^ -lcjson -lm -lpthread
endef
$(eval $(call KEMU_SAN_BUILD,tsan,KEMU_TSAN,-fsanitize=thread$(comma)alignment,race))
$(eval $(call KEMU_SAN_BUILD,asan,KEMU_ASAN,-fsanitize=address$(comma)alignment,memcheck))

# kemu's access profile (KEMU_PROF, test/gpu/kemu/prof.h): the kernels
# compiled with gcc's -fsanitize=thread instrumentation but linked without
# ThreadSanitizer's runtime; prof.cc's __tsan_* hooks see every load and
# store and cost each warp request in sectors and bank-conflict passes.
#   kemu_prof_tests  kernels with hand-counted costs (test/gpu/kemu/prof_tests.cu)
#   viv_kemu_prof    viv over the profiled kernels (test/bench/kernel_access.sh)
KEMU_PROF_DEPS := model/cuda/ops.cuh $(wildcard test/gpu/kemu/*.h test/gpu/kemu/*.cuh test/gpu/hostsim/*.h)
$(BUILD)/kemu/prof_tests.cc: test/gpu/kemu/prof_tests.cu test/gpu/kemu/kemu.sed
	@mkdir -p $(@D)
	(echo '#line 1 "$<"'; sed -f test/gpu/kemu/kemu.sed $<) > $@.tmp && mv $@.tmp $@

$(BUILD)/kemu-prof/%.o: $(BUILD)/kemu/%.cc $(KEMU_PROF_DEPS)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) $(KEMU_FLAGS) -fsanitize=thread -DKEMU_PROF -Imodel/cuda -include test/gpu/kemu/kemu.h -c $< -o $@

$(BUILD)/kemu-prof/%.o: test/gpu/kemu/%.cc $(KEMU_PROF_DEPS)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) $(KEMU_FLAGS) -DKEMU_PROF -c $< -o $@

$(BUILD)/test/kemu_prof_tests: $(BUILD)/kemu-prof/prof_tests.o $(BUILD)/kemu-prof/prof.o $(BUILD)/kemu-prof/kemu.o
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $^ -lm

KEMU_PROF_OBJ := $(patsubst model/cuda/%.cu,$(BUILD)/kemu-prof/%.o,$(KEMU_SAN_SRC)) $(BUILD)/kemu/matmul.o \
                 $(BUILD)/kemu/attn_probe.o $(BUILD)/kemu/cublaslt.o $(BUILD)/kemu-prof/prof.o $(BUILD)/kemu-prof/kemu.o
$(BUILD)/test/viv_kemu_prof: $$(CUDA_HOST_OBJ) $(HOSTSIM_CU_OBJ) $(KEMU_PROF_OBJ)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $(CUDA_HOST_OBJ) $(HOSTSIM_CU_OBJ) $(KEMU_PROF_OBJ) -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread

# The sanitizer and profile builds are the long suite's (gpu-long): `make
# tests-full` builds them, `make tests` leaves them out.
ifneq ($(HOSTSIM_CXX),)
EXTRA_TESTS += $(BUILD)/test/gpu_kemu_tests $(BUILD)/test/kemu_tests
FULL_TESTS += $(BUILD)/test/kemu_race_tests $(BUILD)/test/gpu_kemu_race_tests $(BUILD)/test/kemu_memcheck_tests \
              $(BUILD)/test/gpu_kemu_memcheck_tests $(BUILD)/test/kemu_prof_tests $(BUILD)/test/viv_kemu_prof
endif

# test/gpu/train_gpu_tests.c: the trainer (rl/sft.c, rl/grpo_step.c,
# rl/model_gen.c) on the CUDA backend (rl/backend_cuda.c) against the same
# trainer on the CPU backend. Its C side is what test/train links
# (TRAIN_TEST_SRC, from rl/train.mk, read late through $$), compiled -O2 with
# VIV_CUDA (no sanitizers: real numerics on both sides, and ASan does not see
# device memory). Linked twice: against hostsim (every machine, a test of
# the host code), and against the CUDA objects where nvcc is (skips without
# a GPU).
CUDATRAIN_C = test/gpu/train_gpu_tests.c $(TRAIN_TEST_SRC)
CUDATRAIN_OBJ = $(patsubst %.c,$(BUILD)/cudatrain/%.o,$(CUDATRAIN_C)) $(BUILD)/cudatrain/gen/unicode_tables.o

$(BUILD)/cudatrain/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(@D)
	gcc -std=gnu11 -O2 -g $(WARN) -c $< -o $@

$(BUILD)/cudatrain/%.o: %.c $$(HEADERS) test/harness.h
	@mkdir -p $(@D)
	gcc -std=gnu11 -O2 -g $(WARN) -DVIV_CUDA -c $< -o $@

$(BUILD)/test/train_gpu_hostsim_tests: $$(CUDATRAIN_OBJ) $(HOSTSIM_CU_OBJ) $(BUILD)/hostsim/hostsim.o
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $(CUDATRAIN_OBJ) $(HOSTSIM_CU_OBJ) $(BUILD)/hostsim/hostsim.o -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread

$(BUILD)/test/train_gpu_tests: $$(CUDATRAIN_OBJ) $(CUDA_OBJ)
	@mkdir -p $(@D)
	$(CUDA_CXX) -o $@ $(CUDATRAIN_OBJ) $(CUDA_OBJ) -l:libseccomp.a -l:libcap.a -lcjson $(CUDA_LIBS)

# ... and a third time against the real kernels under kemu (test/gpu/kemu)
$(BUILD)/test/train_gpu_kemu_tests: $$(CUDATRAIN_OBJ) $(HOSTSIM_CU_OBJ) $(KEMU_OBJ)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $(CUDATRAIN_OBJ) $(HOSTSIM_CU_OBJ) $(KEMU_OBJ) -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread

ifneq ($(HOSTSIM_CXX),)
EXTRA_TESTS += $(BUILD)/test/train_gpu_hostsim_tests $(BUILD)/test/train_gpu_kemu_tests
endif
cuda: $(if $(HAVE_NVCC),$(BUILD)/test/train_gpu_tests)
ifeq ($(HAVE_NVCC),1)
tests: $(BUILD)/test/train_gpu_tests
endif

# viv itself with the CUDA backend's host code over hostsim: `viv train
# --device cuda` end to end on a machine without a GPU (test/gpu/run.sh
# copies it next to bin/vivd). A test double, not a GPU binary: the CUDA
# kernels are hostsim.cc's loops.
$(BUILD)/test/viv_hostsim: $$(CUDA_HOST_OBJ) $(HOSTSIM_CU_OBJ) $(BUILD)/hostsim/hostsim.o
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $(CUDA_HOST_OBJ) $(HOSTSIM_CU_OBJ) $(BUILD)/hostsim/hostsim.o -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread
ifneq ($(HOSTSIM_CXX),)
EXTRA_TESTS += $(BUILD)/test/viv_hostsim
endif

# ... and with the real kernels under kemu: the `viv cuda` and `viv gen
# --device cuda` command lines run end to end on the CPU (test/gpu/run.sh)
$(BUILD)/test/viv_kemu: $$(CUDA_HOST_OBJ) $(HOSTSIM_CU_OBJ) $(KEMU_OBJ)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $(CUDA_HOST_OBJ) $(HOSTSIM_CU_OBJ) $(KEMU_OBJ) -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread
ifneq ($(HOSTSIM_CXX),)
EXTRA_TESTS += $(BUILD)/test/viv_kemu
endif

# The same with data parallel: dist.cu built with MPI against hostsim's
# nccl.h (NCCL's calls done with MPI on host memory), so `mpirun -np 2
# viv_hostsim_mpi train --device cuda` runs the ranks' split, the gradient
# all-reduce and rank 0's writing on a machine without a GPU. Only where
# MPI (mpicc) is installed.
ifneq ($(and $(HOSTSIM_CXX),$(MPI_LIBS)),)
$(BUILD)/hostsim-mpi/dist.o: model/cuda/dist.cu $(CUDA_HDR) $(wildcard test/gpu/hostsim/*.h)
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -std=c++17 $(filter-out -DVIV_DIST=0,$(HOSTSIM_FLAGS)) -DVIV_DIST=1 -DOMPI_SKIP_MPICXX -DMPICH_SKIP_MPICXX \
	  $(MPI_CFLAGS) -x c++ -c $< -o $@

$(BUILD)/test/viv_hostsim_mpi: $$(CUDA_HOST_OBJ) $(BUILD)/hostsim/qwen3_cuda.o $(BUILD)/hostsim/infer.o \
                               $(BUILD)/hostsim-mpi/dist.o $(BUILD)/hostsim/hostsim.o
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $(CUDA_HOST_OBJ) $(BUILD)/hostsim/qwen3_cuda.o $(BUILD)/hostsim/infer.o \
	  $(BUILD)/hostsim-mpi/dist.o $(BUILD)/hostsim/hostsim.o $(MPI_LIBS) -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread
EXTRA_TESTS += $(BUILD)/test/viv_hostsim_mpi

# test/gpu/train_dp_tests.c (data parallel vs one rank) over the same
DP_TEST_OBJ = $(filter-out $(BUILD)/cudatrain/test/gpu/train_gpu_tests.o,$(CUDATRAIN_OBJ)) \
              $(BUILD)/cudatrain/test/gpu/train_dp_tests.o
$(BUILD)/test/train_dp_hostsim_tests: $$(DP_TEST_OBJ) $(BUILD)/hostsim/qwen3_cuda.o $(BUILD)/hostsim/infer.o \
                                      $(BUILD)/hostsim-mpi/dist.o $(BUILD)/hostsim/hostsim.o
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -o $@ $(DP_TEST_OBJ) $(BUILD)/hostsim/qwen3_cuda.o $(BUILD)/hostsim/infer.o \
	  $(BUILD)/hostsim-mpi/dist.o $(BUILD)/hostsim/hostsim.o $(MPI_LIBS) -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread
EXTRA_TESTS += $(BUILD)/test/train_dp_hostsim_tests
endif

# and against the CUDA objects (mpirun -np 2 with 2+ GPUs)
$(BUILD)/test/train_dp_tests: $$(DP_TEST_OBJ) $(CUDA_OBJ)
	@mkdir -p $(@D)
	$(CUDA_CXX) -o $@ $(DP_TEST_OBJ) $(CUDA_OBJ) -l:libseccomp.a -l:libcap.a -lcjson $(CUDA_LIBS)
cuda: $(if $(HAVE_NVCC),$(BUILD)/test/train_dp_tests)
ifeq ($(HAVE_NVCC),1)
tests: $(BUILD)/test/train_dp_tests
endif
