/*
 * dist.cu - data-parallel training: one process per GPU, MPI to start and
 * to hand out the NCCL id, NCCL to average the gradients.
 *
 * Every rank runs forward/backward on its own micro-batch, and then, in one
 * of two ways:
 *
 * Plain data parallel: every rank holds the whole model and AdamW state;
 * qwen3_cuda_allreduce_grads averages the fp32 gradients (ncclAvg) in place,
 * and the identical optimiser step then keeps the replicas identical (AdamW
 * is deterministic given equal gradients; weights start equal via
 * qwen3_cuda_broadcast_weights).
 *
 * ZeRO-1 (qwen3_cuda_opts.zero1; `viv train --zero1`): optimiser-state
 * sharding, where the optimiser state is what the ZeRO paper counts in it:
 * the fp32 master weights and the AdamW moments. The flat parameter block
 * is padded to W equal shards of z_n elements (z_n a multiple of 256) and
 * rank r keeps the masters and moments of shard r only: 12/W bytes per
 * parameter instead of 12. What every rank keeps whole is what the forward
 * and backward read: the bf16 copy (2 bytes), the fp32 gradients (4) and an
 * fp32 replica of the norm weights (a few per mille of the block). A step:
 *   1. reduce-scatter of the fp32 gradients (ncclAvg, in place): rank r gets
 *      the average of shard r; it moves half the bytes of an all-reduce;
 *   2. the global gradient norm for clipping: each rank's sum of squares of
 *      its averaged shard, summed over the ranks (MPI, one double) - the
 *      unsharded norm up to the order of the sum (qwen3_cuda.cu);
 *   3. AdamW on shard r of the masters, rounding it into the bf16 copy;
 *   4. all-gather of the bf16 shards (in place), and the norm replica
 *      rebuilt by a sum in which each element has one non-zero term.
 * The reduce-scatter and a bf16 all-gather move three quarters of the
 * bytes of plain data parallel's fp32 all-reduce. The update equals plain
 * data parallel's up to float reduction order, bit for bit over hostsim
 * (test/gpu/train_dp_tests.c). What needs the whole fp32 block - a
 * checkpoint's weights and moments - gathers it to the host a chunk at a
 * time through a 64 MiB staging buffer (a collective); loading keeps each
 * rank's shard (no collective); the NaN snapshot keeps each rank's own
 * masters and moments; the KL reference is forked on the device from the
 * whole bf16 copy and norm weights (no collective).
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
#include <stdlib.h>
#include <string.h>

#if VIV_DIST
#include <mpi.h>
#include <nccl.h>

static ncclComm_t g_comm;
static int g_world = 1, g_rank = 0, g_inited = 0, g_we_init_mpi = 0;

extern "C" int qwen3_dist_compiled(void) { return 1; }

/* Started by an MPI launcher (mpirun/mpiexec of Open MPI or MPICH, srun)?
 * Without one, a process is a world of one and MPI is left alone: an MPI
 * "singleton" init needs the MPI installation's run-time pieces (Open MPI
 * loads its components from its install tree and may start a helper
 * daemon), which a GPU box that only received the binary may lack, and a
 * world of one needs nothing of MPI. VIV_MPI=1 forces MPI_Init anyway. */
static int launched_by_mpi(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS",
                                 "SLURM_STEP_NUM_TASKS", "VIV_MPI"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]) && *getenv(vars[i])) return 1;
    return 0;
}

extern "C" int qwen3_dist_init(int *argc, char ***argv, int *rank, int *world, int *local_rank, char *err,
                               size_t errlen) {
    int flag = 0;
    MPI_Initialized(&flag);
    if (!flag && !launched_by_mpi()) {
        int ndev = 0;
        if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) return snprintf(err, errlen, "no CUDA device"), -1;
        g_rank = 0, g_world = 1, g_inited = 1;
        *rank = 0, *world = 1, *local_rank = 0;
        return 0;
    }
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

/* the NCCL call queued, then waited for: the callers hand the buffers to
 * cudaMemcpy or reuse them next */
static int nccl_done(struct qwen3_cuda *g, ncclResult_t r, const char *what) {
    if (r != ncclSuccess) return gfail(g, "%s: %s", what, ncclGetErrorString(r));
    if (cudaStreamSynchronize(g->st) != cudaSuccess) return gcheck(g, what);
    return 0;
}

extern "C" int qwen3_cuda_allreduce_grads(struct qwen3_cuda *g) {
    if (!g_inited || g_world == 1) return 0;
    if (!g->grads) return gfail(g, "allreduce: no gradients");
    if (g->zero1) { /* in place: rank r's shard of the buffer gets the average of everyone's shard r */
        if (nccl_done(g, ncclReduceScatter(g->grads, g->grads + g->z_lo, g->z_n, ncclFloat, ncclAvg, g_comm, g->st),
                      "ncclReduceScatter"))
            return -1;
        g->grads_reduced = 1;
        return 0;
    }
    return nccl_done(g, ncclAllReduce(g->grads, g->grads, g->n_params, ncclFloat, ncclAvg, g_comm, g->st),
                     "ncclAllReduce");
}

extern "C" int qwen3_zero1_sum(struct qwen3_cuda *g, double *v) {
    if (!g->zero1) return 0;
    if (MPI_Allreduce(MPI_IN_PLACE, v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return gfail(g, "ZeRO-1: MPI_Allreduce failed");
    return 0;
}

extern "C" int qwen3_zero1_allgather_bf16(struct qwen3_cuda *g) {
    if (!g->zero1) return 0;
    return nccl_done(g, ncclAllGather(g->params_b + g->z_lo, g->params_b, g->z_n, ncclBfloat16, g_comm, g->st),
                     "ncclAllGather (bf16 weights)");
}

extern "C" int qwen3_zero1_gather_chunk(struct qwen3_cuda *g, const float *chunk, size_t k) {
    if (!g->zero1) return gfail(g, "gather: not sharded");
    return nccl_done(g, ncclAllGather(chunk, g->stage, k, ncclFloat, g_comm, g->st), "ncclAllGather");
}

extern "C" int qwen3_dist_bcast_dev(struct qwen3_cuda *g, float *buf, size_t n) {
    if (!g_inited || g_world == 1) return 0;
    return nccl_done(g, ncclBroadcast(buf, buf, n, ncclFloat, 0, g_comm, g->st), "ncclBroadcast");
}

extern "C" int qwen3_dist_sum_dev(struct qwen3_cuda *g, float *buf, size_t n) {
    if (!g_inited || g_world == 1) return 0;
    return nccl_done(g, ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, g_comm, g->st), "ncclAllReduce");
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

extern "C" int qwen3_zero1_allgather_bf16(struct qwen3_cuda *g) {
    (void)g;
    return 0;
}

extern "C" int qwen3_zero1_gather_chunk(struct qwen3_cuda *g, const float *chunk, size_t k) {
    (void)chunk, (void)k;
    return gfail(g, "gather: not sharded");
}

extern "C" int qwen3_dist_bcast_dev(struct qwen3_cuda *g, float *buf, size_t n) {
    (void)g, (void)buf, (void)n;
    return 0;
}

extern "C" int qwen3_dist_sum_dev(struct qwen3_cuda *g, float *buf, size_t n) {
    (void)g, (void)buf, (void)n;
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
