/* hostsim/cublasLt.h - only the handle type; hostsim.cc implements mm(). */
#ifndef VIV_HOSTSIM_CUBLASLT_H
#define VIV_HOSTSIM_CUBLASLT_H
typedef void *cublasLtHandle_t;
#endif
