# test/gpu/hostsim/hostsim.mk - hostsim, the CPU stand-in for the CUDA
# runtime, and the tests built on it (included by the top Makefile after
# model/cuda/cuda.mk).
#
# gpu_tests.c against model/cuda's host code (qwen3_cuda.cu, infer.cu,
# dist.cu without MPI) compiled as plain C++ with the stand-in headers and
# kernels of test/gpu/hostsim. Needs no nvcc and no GPU, so it builds and
# runs everywhere; it checks the orchestration and the tolerances, not the
# CUDA kernels (see hostsim.cc). The C side is the cudahost flavour.
HOSTSIM_CXX ?= $(shell command -v g++ || command -v clang++)
HOSTSIM_FLAGS := -O2 -g -Wall -Wextra -Wno-unused-parameter -Wshadow -Itest/gpu/hostsim -DVIV_DIST=0
HOSTSIM_CU_OBJ := $(patsubst model/cuda/%.cu,$(BUILD)/hostsim/%.o,model/cuda/qwen3_cuda.cu model/cuda/infer.cu model/cuda/dist.cu)

$(BUILD)/hostsim/%.o: model/cuda/%.cu
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -std=c++17 $(HOSTSIM_FLAGS) $(DEPFLAGS) -x c++ -c $< -o $@

$(BUILD)/hostsim/hostsim.o: test/gpu/hostsim/hostsim.cc
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -std=c++17 $(HOSTSIM_FLAGS) $(DEPFLAGS) -c $< -o $@

# gpu_tests.c for hostsim (VIV_HOSTSIM: the stand-in headers)
$(BUILD)/hostsim/c/%.o: %.c
	@mkdir -p $(@D)
	gcc -std=gnu11 -O2 -g $(WARN) -DVIV_HOSTSIM -Itest/gpu/hostsim $(DEPFLAGS) -c $< -o $@

$(BUILD)/test/gpu_hostsim_tests: $(BUILD)/hostsim/c/test/gpu/gpu_tests.o $(HOSTSIM_CU_OBJ) $(BUILD)/hostsim/hostsim.o \
                                 $(call layer_libs,cudahost)
	@mkdir -p $(@D)
	$(call CUDA_HOST_CXX_LINK)

# the trainer on the CUDA backend over hostsim (test/gpu/train_gpu_tests.c,
# see model/cuda/cuda.mk)
$(BUILD)/test/train_gpu_hostsim_tests: $(BUILD)/cudahost/test/gpu/train_gpu_tests.o $(HOSTSIM_CU_OBJ) \
                                       $(BUILD)/hostsim/hostsim.o $(call layer_libs,cudahost)
	@mkdir -p $(@D)
	$(call CUDA_HOST_CXX_LINK)

# viv itself with the CUDA backend's host code over hostsim: `viv train
# --device cuda` end to end on a machine without a GPU (test/gpu/run.sh
# copies it next to bin/vivd). A test double, not a GPU binary: the CUDA
# kernels are hostsim.cc's loops.
$(BUILD)/test/viv_hostsim: $(BUILD)/cudahost/rl/viv.o $(HOSTSIM_CU_OBJ) $(BUILD)/hostsim/hostsim.o \
                           $(call layer_libs,cudahost)
	@mkdir -p $(@D)
	$(call CUDA_HOST_CXX_LINK)

# clang++ comes with the clang build.sh installs; g++ is preferred when present
ifneq ($(HOSTSIM_CXX),)
EXTRA_TESTS += $(BUILD)/test/gpu_hostsim_tests $(BUILD)/test/train_gpu_hostsim_tests $(BUILD)/test/viv_hostsim
endif

# The same with data parallel: dist.cu built with MPI against hostsim's
# nccl.h (NCCL's calls done with MPI on host memory), so `mpirun -np 2
# viv_hostsim_mpi train --device cuda` runs the ranks' split, the gradient
# all-reduce and rank 0's writing on a machine without a GPU. Only where
# MPI (mpicc) is installed.
ifneq ($(and $(HOSTSIM_CXX),$(MPI_LIBS)),)
HOSTSIM_MPI_OBJ := $(BUILD)/hostsim/qwen3_cuda.o $(BUILD)/hostsim/infer.o $(BUILD)/hostsim-mpi/dist.o $(BUILD)/hostsim/hostsim.o
$(BUILD)/hostsim-mpi/dist.o: model/cuda/dist.cu
	@mkdir -p $(@D)
	$(HOSTSIM_CXX) -std=c++17 $(filter-out -DVIV_DIST=0,$(HOSTSIM_FLAGS)) -DVIV_DIST=1 -DOMPI_SKIP_MPICXX -DMPICH_SKIP_MPICXX \
	  $(MPI_CFLAGS) $(DEPFLAGS) -x c++ -c $< -o $@

$(BUILD)/test/viv_hostsim_mpi: $(BUILD)/cudahost/rl/viv.o $(HOSTSIM_MPI_OBJ) $(call layer_libs,cudahost)
	@mkdir -p $(@D)
	$(call CUDA_HOST_CXX_LINK,$(MPI_LIBS))

# test/gpu/train_dp_tests.c (data parallel vs one rank) over the same
$(BUILD)/test/train_dp_hostsim_tests: $(BUILD)/cudahost/test/gpu/train_dp_tests.o $(HOSTSIM_MPI_OBJ) \
                                      $(call layer_libs,cudahost)
	@mkdir -p $(@D)
	$(call CUDA_HOST_CXX_LINK,$(MPI_LIBS))
EXTRA_TESTS += $(BUILD)/test/viv_hostsim_mpi $(BUILD)/test/train_dp_hostsim_tests
endif
