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
MODEL_SRC += model/cuda/cmd_cuda.c

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
NVCC_FLAGS := -std=c++17 -O3 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-Wno-unused-parameter -DVIV_DIST=$(VIV_DIST) -DOMPI_SKIP_MPICXX -DMPICH_SKIP_MPICXX \
              $(if $(filter 1,$(VIV_DIST)),$(MPI_CFLAGS))
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static $(DIST_LIBS) \
             -static-libstdc++ -static-libgcc -lstdc++ -ldl -lrt -lpthread -lm

$(BUILD)/cuda/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) $(DEPFLAGS) -c $< -o $@

# The cudahost flavour (see the top Makefile): viv's C sources again, for
# glibc and with VIV_CUDA (cmd_gen.c, cmd_cuda.c, backend_cuda.c switch on
# it), optimised and without sanitizers. bin/viv-cuda is made of it, and so
# are the CPU sides of the GPU tests (hostsim, kemu and the real GPU) and
# the benchmark helpers.
CUDA_HOST_CFLAGS = $(CFLAGS_COMMON) -DVIV_CUDA
CUDA_HOST_LIBS = -lseccomp -lcap -lcjson $(HTTP_GLIBC_LIBS) -lm -lpthread
# a program of the cudahost flavour: its objects, then the layers' archives
CUDA_HOST_LINK = gcc -o $@ $(filter %.o,$^) $(call link_layers,cudahost) $(CUDA_HOST_LIBS)
# the same linked by the C++ driver, with what else it needs ($(1))
CUDA_HOST_CXX_LINK = $(HOSTSIM_CXX) -o $@ $(filter %.o,$^) $(call link_layers,cudahost) $(1) $(CUDA_HOST_LIBS)

$(BUILD)/cudahost/%.o: %.c
	@mkdir -p $(@D)
	gcc $(CUDA_HOST_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/cudahost/%.o: $(BUILD)/%.c
	@mkdir -p $(@D)
	gcc $(CUDA_HOST_CFLAGS) $(DEPFLAGS) -c $< -o $@

# what links against the CUDA objects: static libseccomp/libcap, the CUDA libraries
CUDA_LINK = $(CUDA_CXX) -o $@ $(filter %.o,$^) $(call link_layers,cudahost) -l:libseccomp.a -l:libcap.a -lcjson $(CUDA_LIBS)

bin/viv-cuda: $(BUILD)/cudahost/rl/viv.o $(call layer_libs,cudahost) $(CUDA_OBJ)
	@mkdir -p bin
	$(CUDA_LINK)

# test/gpu: the CPU model against the CUDA objects.
$(BUILD)/test/gpu_tests: $(BUILD)/cudahost/test/gpu/gpu_tests.o $(call layer_libs,cudahost) $(CUDA_OBJ)
	@mkdir -p $(@D)
	$(CUDA_LINK)

# test/bench/attn_bench.c: the two training attention paths timed alone
# (test/bench/gpu.sh runs it)
$(BUILD)/test/attn_bench: $(BUILD)/cudahost/test/bench/attn_bench.o $(call layer_libs,cudahost) $(CUDA_OBJ)
	@mkdir -p $(@D)
	$(CUDA_LINK)

# test/gpu/train_gpu_tests.c: the trainer (rl/sft.c, rl/grpo_step.c,
# rl/model_gen.c) on the CUDA backend (rl/backend_cuda.c) against the same
# trainer on the CPU backend, compiled -O2 with VIV_CUDA (no sanitizers: real
# numerics on both sides, and ASan does not see device memory). Linked here
# against the CUDA objects (skips without a GPU), and against hostsim and
# kemu by their .mk files (test/gpu/hostsim, test/gpu/kemu).
$(BUILD)/test/train_gpu_tests: $(BUILD)/cudahost/test/gpu/train_gpu_tests.o $(call layer_libs,cudahost) $(CUDA_OBJ)
	@mkdir -p $(@D)
	$(CUDA_LINK)

# test/gpu/train_dp_tests.c (data parallel vs one rank; mpirun -np 2 with 2+ GPUs)
$(BUILD)/test/train_dp_tests: $(BUILD)/cudahost/test/gpu/train_dp_tests.o $(call layer_libs,cudahost) $(CUDA_OBJ)
	@mkdir -p $(@D)
	$(CUDA_LINK)

cuda: $(if $(HAVE_NVCC),bin/viv-cuda $(BUILD)/test/gpu_tests $(BUILD)/test/attn_bench $(BUILD)/test/train_gpu_tests \
                        $(BUILD)/test/train_dp_tests)
ifeq ($(HAVE_NVCC),1)
tests: bin/viv-cuda $(BUILD)/test/gpu_tests $(BUILD)/test/train_gpu_tests $(BUILD)/test/train_dp_tests
endif
.PHONY: cuda
