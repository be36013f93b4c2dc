/*
 * dist.cu - data-parallel training: one process per GPU, MPI to start and
 * to hand out the NCCL id, NCCL to average the gradients.
 *
 * Every rank holds the whole model (fp32 masters, bf16 copy, fp32
 * gradients); each step the ranks run forward/backward on their own
 * micro-batch and then, in one of two ways:
 *
 * Plain data parallel: every rank also holds the whole AdamW state;
 * qwen3_cuda_allreduce_grads averages the fp32 gradients (ncclAvg) in place,
 * and the identical optimiser step then keeps the replicas identical (AdamW
 * is deterministic given equal gradients; weights start equal via
 * qwen3_cuda_broadcast_weights).
 *
 * ZeRO-1 (qwen3_cuda_opts.zero1; `viv train --zero1`): optimiser-state
 * sharding. The flat fp32 parameter block is padded to W equal shards of
 * z_n elements (z_n a multiple of 256) and rank r keeps the AdamW moments of
 * shard r only: 8/W bytes of moments per parameter instead of 8, a saving
 * of 2 * (W-1)/W of the moments' memory on each rank (the masters, the bf16
 * copy and the gradients stay whole: 10 bytes a parameter). A step:
 *   1. reduce-scatter of the fp32 gradients (ncclAvg, in place): rank r gets
 *      the average of shard r; it moves half the bytes of an all-reduce;
 *   2. the global gradient norm for clipping: each rank's sum of squares of
 *      its averaged shard, summed over the ranks (MPI, one double) - the
 *      unsharded norm up to the order of the sum (qwen3_cuda.cu);
 *   3. AdamW on shard r of the fp32 masters (qwen3_cuda.cu);
 *   4. all-gather of the updated fp32 master shards (in place), after which
 *      each rank refreshes its bf16 copy of the others' shards. fp32 rather
 *      than bf16 keeps every rank's masters whole and bit-identical, so
 *      checkpoints, NaN snapshots and the KL reference read them as before.
 * Reduce-scatter + all-gather move as many bytes as one all-reduce, so the
 * saving costs no bandwidth. The update equals plain data parallel's up to
 * float reduction order (test/gpu/train_dp_tests.c checks it over hostsim).
 * Saving the moments (qwen3_cuda_adamw_get) gathers them to every rank;
 * loading (adamw_set) keeps each rank's shard; the NaN snapshot keeps each
 * rank's own shard.
 *
 * Built with VIV_DIST=1 when both mpi.h (Debian libopenmpi-dev) and nccl.h
 * (the CUDA toolkit's, /usr/local/cuda/include) are found; otherwise the
 * stubs at the bottom make every process a world of one.
 *
 * Which GPU: the rank's index among the ranks of its node (an MPI
 * shared-memory split), modulo the GPUs the node shows it. Under Slurm with
 * one task per GPU this is the usual mapping; with CUDA_VISIBLE_DEVICES set
 * per task, each rank sees one GPU and takes it.
 */
#include "qwen3_cuda_internal.cuh"

#include <stdio.h>
#include <string.h>

#if VIV_DIST
#include <mpi.h>
#include <nccl.h>

static ncclComm_t g_comm;
static int g_world = 1, g_rank = 0, g_inited = 0, g_we_init_mpi = 0;

extern "C" int qwen3_dist_compiled(void) { return 1; }

extern "C" int qwen3_dist_init(int *argc, char ***argv, int *rank, int *world, int *local_rank, char *err,
                               size_t errlen) {
    int flag = 0;
    MPI_Initialized(&flag);
    if (!flag) {
        if (MPI_Init(argc, argv) != MPI_SUCCESS) return snprintf(err, errlen, "MPI_Init failed"), -1;
        g_we_init_mpi = 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    MPI_Comm node;
    int lr = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &lr);
    MPI_Comm_free(&node);
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0)
        return snprintf(err, errlen, "rank %d: no CUDA device", g_rank), -1;
    if (cudaSetDevice(lr % ndev) != cudaSuccess)
        return snprintf(err, errlen, "rank %d: cudaSetDevice(%d) failed", g_rank, lr % ndev), -1;
    if (g_world > 1) {
        ncclUniqueId id;
        if (g_rank == 0 && ncclGetUniqueId(&id) != ncclSuccess)
            return snprintf(err, errlen, "ncclGetUniqueId failed"), -1;
        MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
        ncclResult_t r = ncclCommInitRank(&g_comm, g_world, id, g_rank);
        if (r != ncclSuccess) return snprintf(err, errlen, "ncclCommInitRank: %s", ncclGetErrorString(r)), -1;
    }
    g_inited = 1;
    *rank = g_rank;
    *world = g_world;
    *local_rank = lr % ndev;
    return 0;
}

extern "C" void qwen3_dist_world(int *rank, int *world) {
    *rank = g_inited ? g_rank : 0;
    *world = g_inited ? g_world : 1;
}

extern "C" int qwen3_cuda_allreduce_grads(struct qwen3_cuda *g) {
    if (!g_inited || g_world == 1) return 0;
    if (!g->grads) return gfail(g, "allreduce: no gradients");
    if (g->zero1) { /* in place: rank r's shard of the buffer gets the average of everyone's shard r */
        ncclResult_t r = ncclReduceScatter(g->grads, g->grads + g->z_lo, g->z_n, ncclFloat, ncclAvg, g_comm, g->st);
        if (r != ncclSuccess) return gfail(g, "ncclReduceScatter: %s", ncclGetErrorString(r));
        if (cudaStreamSynchronize(g->st) != cudaSuccess) return gcheck(g, "reduce-scatter");
        g->grads_reduced = 1;
        return 0;
    }
    ncclResult_t r = ncclAllReduce(g->grads, g->grads, g->n_params, ncclFloat, ncclAvg, g_comm, g->st);
    if (r != ncclSuccess) return gfail(g, "ncclAllReduce: %s", ncclGetErrorString(r));
    if (cudaStreamSynchronize(g->st) != cudaSuccess) return gcheck(g, "allreduce");
    return 0;
}

extern "C" int qwen3_cuda_broadcast_weights(struct qwen3_cuda *g) {
    if (!g_inited || g_world == 1) return 0;
    ncclResult_t r = ncclBroadcast(g->params, g->params, g->n_params, ncclFloat, 0, g_comm, g->st);
    if (r != ncclSuccess) return gfail(g, "ncclBroadcast: %s", ncclGetErrorString(r));
    k_f32_to_bf16(g->st, g->params_b, g->params, g->n_params);
    if (cudaStreamSynchronize(g->st) != cudaSuccess) return gcheck(g, "broadcast");
    return 0;
}

extern "C" int qwen3_zero1_sum(struct qwen3_cuda *g, double *v) {
    if (!g->zero1) return 0;
    if (MPI_Allreduce(MPI_IN_PLACE, v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return gfail(g, "ZeRO-1: MPI_Allreduce failed");
    return 0;
}

extern "C" int qwen3_zero1_allgather(struct qwen3_cuda *g, const float *shard, float *full) {
    if (!g->zero1) {
        if (shard != full) cudaMemcpyAsync(full, shard, g->z_n * 4, cudaMemcpyDeviceToDevice, g->st);
        return 0;
    }
    ncclResult_t r = ncclAllGather(shard, full, g->z_n, ncclFloat, g_comm, g->st);
    if (r != ncclSuccess) return gfail(g, "ncclAllGather: %s", ncclGetErrorString(r));
    if (cudaStreamSynchronize(g->st) != cudaSuccess) return gcheck(g, "all-gather");
    return 0;
}

extern "C" int qwen3_dist_allreduce_sum(double *v, int n) {
    if (!g_inited || g_world == 1) return 0;
    return MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1;
}

extern "C" int qwen3_dist_bcast(void *buf, size_t n) {
    if (!g_inited || g_world == 1) return 0;
    /* MPI counts are int: send in pieces of at most 1 GiB */
    for (size_t o = 0; o < n; o += (size_t)1 << 30) {
        size_t k = n - o < ((size_t)1 << 30) ? n - o : (size_t)1 << 30;
        if (MPI_Bcast((char *)buf + o, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) return -1;
    }
    return 0;
}

extern "C" void qwen3_dist_abort(int code) {
    if (g_inited && g_world > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

extern "C" void qwen3_dist_finalize(void) {
    if (g_inited && g_world > 1) ncclCommDestroy(g_comm);
    g_inited = 0;
    int fin = 0;
    MPI_Finalized(&fin);
    if (g_we_init_mpi && !fin) MPI_Finalize();
}

#else /* no MPI/NCCL: a world of one */

extern "C" int qwen3_dist_compiled(void) { return 0; }

extern "C" int qwen3_dist_init(int *argc, char ***argv, int *rank, int *world, int *local_rank, char *err,
                               size_t errlen) {
    (void)argc, (void)argv, (void)err, (void)errlen;
    *rank = 0;
    *world = 1;
    *local_rank = 0;
    return 0;
}

extern "C" void qwen3_dist_world(int *rank, int *world) {
    *rank = 0;
    *world = 1;
}

extern "C" int qwen3_cuda_allreduce_grads(struct qwen3_cuda *g) {
    (void)g;
    return 0;
}

/* a world of one never shards (zero1 stays 0): the whole block is the shard */
extern "C" int qwen3_zero1_sum(struct qwen3_cuda *g, double *v) {
    (void)g, (void)v;
    return 0;
}

extern "C" int qwen3_zero1_allgather(struct qwen3_cuda *g, const float *shard, float *full) {
    if (shard != full) cudaMemcpyAsync(full, shard, g->z_n * 4, cudaMemcpyDeviceToDevice, g->st);
    return 0;
}

extern "C" int qwen3_cuda_broadcast_weights(struct qwen3_cuda *g) {
    (void)g;
    return 0;
}

extern "C" int qwen3_dist_allreduce_sum(double *v, int n) {
    (void)v, (void)n;
    return 0;
}

extern "C" int qwen3_dist_bcast(void *buf, size_t n) {
    (void)buf, (void)n;
    return 0;
}

extern "C" void qwen3_dist_finalize(void) {}

extern "C" void qwen3_dist_abort(int code) { (void)code; }

#endif

extern "C" void qwen3_dist_free_comm(struct qwen3_cuda *g) { (void)g; /* the communicator is per process */ }
