/* cmd_cuda.h - `viv cuda` (model/cuda/cmd_cuda.c); in bin/viv it only says
 * that the binary was built without CUDA. */
#ifndef VIV_MODEL_CUDA_CMD_H
#define VIV_MODEL_CUDA_CMD_H

int cmd_cuda(int argc, char **argv);

#endif
