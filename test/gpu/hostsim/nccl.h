/*
 * hostsim/nccl.h - NOT NCCL: the few calls model/cuda/dist.cu makes, done
 * with MPI on host memory (hostsim's "device" memory is host memory), so
 * that data-parallel training (`mpirun -np N viv train --device cuda`, with
 * or without --zero1: all-reduce, reduce-scatter, all-gather) runs
 * through dist.cu and rl/ on a machine without a GPU
 * (build/test/viv_hostsim_mpi, test/gpu/run.sh). It checks the ranks'
 * orchestration, not NCCL or its performance.
 */
#ifndef VIV_HOSTSIM_NCCL_H
#define VIV_HOSTSIM_NCCL_H

#include <mpi.h>
#include <string.h>

#include "cuda_runtime.h"

typedef int ncclResult_t;
enum { ncclSuccess = 0, ncclSystemError = 2 };
typedef struct {
    char internal[128];
} ncclUniqueId;
typedef struct hostsim_nccl_comm *ncclComm_t;
typedef enum { ncclFloat = 7, ncclBfloat16 = 9 } ncclDataType_t; /* NCCL's values */

/* bytes per element: collectives that only move data (broadcast, all-gather)
 * take either type; the reductions take floats only */
static inline size_t hostsim_nccl_size(ncclDataType_t t) { return t == ncclBfloat16 ? 2 : 4; }
typedef enum { ncclSum = 0, ncclAvg = 4 } ncclRedOp_t;

static inline const char *ncclGetErrorString(ncclResult_t r) { return r ? "hostsim nccl: MPI failed" : "no error"; }
static inline ncclResult_t ncclGetUniqueId(ncclUniqueId *id) { return memset(id, 0, sizeof *id), ncclSuccess; }
static inline ncclResult_t ncclCommInitRank(ncclComm_t *c, int n, ncclUniqueId id, int rank) {
    (void)n, (void)id, (void)rank;
    *c = (ncclComm_t)1;
    return ncclSuccess;
}
static inline ncclResult_t ncclCommDestroy(ncclComm_t c) { return (void)c, ncclSuccess; }

/* floats only (what dist.cu reduces); ncclAvg = sum / ranks */
static inline ncclResult_t ncclAllReduce(const void *send, void *recv, size_t n, ncclDataType_t t, ncclRedOp_t op,
                                         ncclComm_t c, cudaStream_t st) {
    (void)c, (void)st;
    if (t != ncclFloat) return ncclSystemError;
    if (send != recv) memcpy(recv, send, n * sizeof(float));
    if (MPI_Allreduce(MPI_IN_PLACE, recv, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return ncclSystemError;
    if (op == ncclAvg) {
        int w = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &w);
        for (size_t i = 0; i < n; i++) ((float *)recv)[i] /= (float)w;
    }
    return ncclSuccess;
}

static inline ncclResult_t ncclBroadcast(const void *send, void *recv, size_t n, ncclDataType_t t, int root,
                                         ncclComm_t c, cudaStream_t st) {
    (void)c, (void)st;
    size_t es = hostsim_nccl_size(t);
    if (send != recv) memcpy(recv, send, n * es);
    return MPI_Bcast(recv, (int)(n * es), MPI_BYTE, root, MPI_COMM_WORLD) == MPI_SUCCESS ? ncclSuccess : ncclSystemError;
}

/* the world's size and this rank */
static inline void hostsim_world(int *w, int *r) {
    MPI_Comm_size(MPI_COMM_WORLD, w);
    MPI_Comm_rank(MPI_COMM_WORLD, r);
}

/* ncclReduceScatter: rank r's recv [count] = the sum (or average) over the
 * ranks of their send[r*count .. (r+1)*count). NCCL allows it in place only
 * as recv == send + rank * count; any other overlap is an error here too. */
static inline ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t count, ncclDataType_t t,
                                             ncclRedOp_t op, ncclComm_t c, cudaStream_t st) {
    (void)c, (void)st;
    if (t != ncclFloat) return ncclSystemError;
    int w = 1, r = 0;
    hostsim_world(&w, &r);
    const float *s = (const float *)send;
    float *d = (float *)recv;
    if (d < s + count * (size_t)w && s < d + count && d != s + count * (size_t)r) return ncclSystemError;
    float *tmp = (float *)malloc(count * (size_t)w * sizeof(float)); /* MPI wants distinct buffers */
    if (!tmp) return ncclSystemError;
    memcpy(tmp, s, count * (size_t)w * sizeof(float));
    int rc = MPI_Reduce_scatter_block(tmp, d, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    free(tmp);
    if (rc != MPI_SUCCESS) return ncclSystemError;
    if (op == ncclAvg)
        for (size_t i = 0; i < count; i++) d[i] /= (float)w;
    return ncclSuccess;
}

/* ncclAllGather: recv [count * ranks] = every rank's send [count], in rank
 * order. In place only as send == recv + rank * count (NCCL's rule). */
static inline ncclResult_t ncclAllGather(const void *send, void *recv, size_t count, ncclDataType_t t, ncclComm_t c,
                                         cudaStream_t st) {
    (void)c, (void)st;
    int w = 1, r = 0;
    hostsim_world(&w, &r);
    size_t es = hostsim_nccl_size(t), bytes = count * es;
    const char *s = (const char *)send;
    char *d = (char *)recv;
    if (s == d + bytes * (size_t)r)
        return MPI_Allgather(MPI_IN_PLACE, 0, MPI_BYTE, d, (int)bytes, MPI_BYTE, MPI_COMM_WORLD) == MPI_SUCCESS
                   ? ncclSuccess
                   : ncclSystemError;
    if (s < d + bytes * (size_t)w && d < s + bytes) return ncclSystemError;
    return MPI_Allgather(s, (int)bytes, MPI_BYTE, d, (int)bytes, MPI_BYTE, MPI_COMM_WORLD) == MPI_SUCCESS
               ? ncclSuccess
               : ncclSystemError;
}

#endif