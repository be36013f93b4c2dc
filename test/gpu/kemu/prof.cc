/*
 * prof.cc - kemu's access profile: the __tsan_* hooks the instrumented
 * kernels call, warp requests rebuilt from them, and the sector and bank
 * counts of each (prof.h says what is modelled and why).
 *
 * This file is not instrumented itself, and the kemu-prof binaries are
 * linked without ThreadSanitizer's runtime: these hooks are the runtime.
 */
#include "prof.h"

#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

extern char __start_kemu_smem[], __stop_kemu_smem[];
extern char __executable_start[], _end[];
extern int kemu_cur; /* the running fiber: thread index in its block (kemu.cc) */

/* ---- where an address lives ------------------------------------------------------------ */
enum { GLOBAL = 0, SHARED = 1, IGNORED = 2 };

static int g_in_launch;
static const void *g_kernel;
static uintptr_t g_dyn_lo, g_dyn_hi, g_kmem_lo, g_kmem_hi, g_stack_lo, g_stack_hi;
static uintptr_t g_host_stack_lo, g_host_stack_hi;

/* the process' main stack, where a launch's kernel parameters live */
static void find_host_stack(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (strstr(line, "[stack]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2) g_host_stack_lo = lo, g_host_stack_hi = hi;
    }
    fclose(f);
}

static int space_of(uintptr_t a) {
    if (a >= g_dyn_lo && a < g_dyn_hi) return SHARED;
    if (a >= (uintptr_t)__start_kemu_smem && a < (uintptr_t)__stop_kemu_smem) return SHARED;
    if (a >= g_stack_lo && a < g_stack_hi) return IGNORED;                      /* the thread's own stack */
    if (a >= (uintptr_t)__executable_start && a < (uintptr_t)_end) return IGNORED; /* kemu's state, statics */
    if (a >= g_kmem_lo && a < g_kmem_hi) return IGNORED;                          /* shuffle slots, barriers */
    if (a >= g_host_stack_lo && a < g_host_stack_hi) return IGNORED;              /* kernel parameters */
    return GLOBAL;
}

/* ---- the cost of one warp request ------------------------------------------------------ */
struct lane_access {
    uintptr_t addr;
    unsigned size;
};

/* distinct bytes covered by the accesses */
static uint64_t distinct_bytes(std::vector<lane_access> v) {
    std::sort(v.begin(), v.end(), [](const lane_access &x, const lane_access &y) { return x.addr < y.addr; });
    uint64_t n = 0;
    uintptr_t end = 0;
    for (const lane_access &x : v) {
        uintptr_t lo = std::max(x.addr, end), hi = x.addr + x.size;
        if (hi > lo) n += hi - lo, end = hi;
    }
    return n;
}

/* number of distinct (a >> shift) units the accesses touch */
static uint64_t distinct_units(const std::vector<lane_access> &v, int shift, std::vector<uintptr_t> *units) {
    units->clear();
    for (const lane_access &x : v)
        for (uintptr_t u = x.addr >> shift; u <= (x.addr + x.size - 1) >> shift; u++) units->push_back(u);
    std::sort(units->begin(), units->end());
    return (uint64_t)(std::unique(units->begin(), units->end()) - units->begin());
}

struct cost {
    uint64_t bytes, cost, ideal;
};

static struct cost cost_global(const std::vector<lane_access> &v) {
    std::vector<uintptr_t> u;
    uint64_t bytes = distinct_bytes(v);
    return {bytes, distinct_units(v, 5, &u), (bytes + 31) / 32};
}

/* lanes 0..31 in order (absent lanes not in v): phases by access size,
 * each phase the most distinct words one bank holds */
static struct cost cost_shared(const std::vector<lane_access> &v, const std::vector<int> &lane) {
    unsigned size = 0;
    for (const lane_access &x : v) size = std::max(size, x.size);
    int per_phase = size <= 4 ? 32 : size <= 8 ? 16 : 8;
    struct cost c = {distinct_bytes(v), 0, 0};
    std::vector<lane_access> phase;
    std::vector<uintptr_t> words;
    for (int p = 0; p < 32 / per_phase; p++) {
        phase.clear();
        for (size_t i = 0; i < v.size(); i++)
            if (lane[i] / per_phase == p) phase.push_back(v[i]);
        if (phase.empty()) continue;
        uint64_t n = distinct_units(phase, 2, &words);
        unsigned per_bank[32] = {0}, worst = 0;
        for (uint64_t i = 0; i < n; i++) worst = std::max(worst, ++per_bank[words[i] & 31]);
        c.cost += worst;
        c.ideal += (distinct_bytes(phase) + 127) / 128;
    }
    return c;
}

/* ---- sites and totals -------------------------------------------------------------------- */
struct site_key {
    const void *kernel;
    uintptr_t pc;
    int space, store;
    bool operator==(const site_key &o) const {
        return kernel == o.kernel && pc == o.pc && space == o.space && store == o.store;
    }
};
struct site_hash {
    size_t operator()(const site_key &k) const {
        return std::hash<uintptr_t>()(k.pc) * 31 + std::hash<const void *>()(k.kernel) + (size_t)(k.space * 2 + k.store);
    }
};
static std::unordered_map<site_key, kemu_prof_totals, site_hash> g_sites;
static kemu_prof_totals g_totals[2][2];

static void add(kemu_prof_totals *t, uint64_t lanes, const struct cost &c) {
    t->requests++, t->lanes += lanes, t->bytes += c.bytes, t->cost += c.cost, t->ideal += c.ideal;
}

/* one warp request: its lanes' accesses (lane[i] is v[i]'s lane) */
static void record(uintptr_t pc, int space, int store, const std::vector<lane_access> &v, const std::vector<int> &lane) {
    if (v.empty()) return;
    struct cost c = space == SHARED ? cost_shared(v, lane) : cost_global(v);
    add(&g_totals[space][store], v.size(), c);
    add(&g_sites[site_key{g_kernel, pc, space, store}], v.size(), c);
}

/* ---- warp requests from lanes run one after another ------------------------------------ */
/* Each lane's accesses since its warp's last barrier are kept in order;
 * at the barrier they are grouped into the warp's requests. A site every
 * lane (that made any access) executed equally often is an anchor: its
 * k-th execution is one request, and the anchors executed so far mark the
 * lane's position, its epoch (in a loop, the iteration). Any other site's
 * request is its k-th execution within an epoch. So a lane that skipped a
 * guarded load in one iteration joins the next iteration's request, as an
 * inactive lane does on a GPU, rather than another lane's earlier one; and
 * with no anchor (trip counts that differ by lane) the k-th executions
 * still pair up, the last ones with fewer lanes. */
struct lane_event {
    uintptr_t pc, addr;
    unsigned size;
    int space, store;
};
struct req_key {
    uintptr_t pc;
    uint32_t epoch, k; /* epoch UINT32_MAX: an anchor's k-th execution */
    bool operator==(const req_key &o) const { return pc == o.pc && epoch == o.epoch && k == o.k; }
};
struct req_hash {
    size_t operator()(const req_key &r) const {
        return std::hash<uintptr_t>()(r.pc) ^ ((size_t)r.k * 0x9e3779b97f4a7c15ull) ^ ((size_t)r.epoch << 20);
    }
};
struct req {
    int space, store;
    std::vector<lane_access> v;
    std::vector<int> lane;
};
static std::vector<lane_event> g_lane_acc[1024];

static void on_access(const void *p, unsigned size, int store, const void *ret) {
    if (!g_in_launch) return;
    uintptr_t a = (uintptr_t)p;
    int space = space_of(a);
    if (space == IGNORED) return;
    g_lane_acc[kemu_cur].push_back({(uintptr_t)ret, a, size, space, store});
}

void kemu_prof_warp_round(int w0, int lanes) {
    /* the anchors: sites with one execution count in every lane that ran */
    std::unordered_map<uintptr_t, uint32_t> count, first; /* per site: this lane's count, the first lane's */
    std::unordered_map<uintptr_t, int> lanes_with; /* lanes that executed the site with the first lane's count */
    int active = 0;
    for (int l = 0; l < lanes; l++) {
        std::vector<lane_event> &acc = g_lane_acc[w0 + l];
        if (acc.empty()) continue;
        count.clear();
        for (const lane_event &x : acc) count[x.pc]++;
        for (auto &kv : count) {
            if (!active) first[kv.first] = kv.second;
            auto f = first.find(kv.first);
            if (f != first.end() && f->second == kv.second) lanes_with[kv.first]++;
        }
        active++;
    }
    std::unordered_map<req_key, req, req_hash> reqs;
    std::unordered_map<uintptr_t, uint32_t> anchor_seen; /* per anchor: executions by this lane */
    std::unordered_map<req_key, uint32_t, req_hash> seen; /* per (site, epoch): executions by this lane */
    for (int l = 0; l < lanes; l++) {
        std::vector<lane_event> &acc = g_lane_acc[w0 + l];
        uint32_t epoch = 0;
        anchor_seen.clear(), seen.clear();
        for (const lane_event &x : acc) {
            auto w = lanes_with.find(x.pc);
            req_key key;
            if (w != lanes_with.end() && w->second == active) {
                key = req_key{x.pc, UINT32_MAX, anchor_seen[x.pc]++};
                epoch++;
            } else {
                key = req_key{x.pc, epoch, seen[req_key{x.pc, epoch, 0}]++};
            }
            req &r = reqs[key];
            if (r.v.empty()) r.space = x.space, r.store = x.store;
            r.v.push_back({x.addr, x.size});
            r.lane.push_back(l);
        }
        acc.clear();
    }
    for (auto &kv : reqs) record(kv.first.pc, kv.second.space, kv.second.store, kv.second.v, kv.second.lane);
}

static void report(void);
void kemu_prof_launch(const void *kernel) {
    static int registered;
    /* here, not in __tsan_init: the module constructors may run before
     * this file's statics are built, and the report must run before
     * they are destroyed */
    if (!registered) registered = 1, find_host_stack(), atexit(report);
    g_kernel = kernel, g_in_launch = 1;
}
void kemu_prof_launch_done(void) { g_in_launch = 0; }
void kemu_prof_block(const void *dyn, size_t dyn_bytes, const void *kemu_mem) {
    g_dyn_lo = (uintptr_t)dyn, g_dyn_hi = g_dyn_lo + dyn_bytes;
    g_kmem_lo = (uintptr_t)kemu_mem, g_kmem_hi = g_dyn_lo;
}
void kemu_prof_fiber(const void *lo, const void *hi) { g_stack_lo = (uintptr_t)lo, g_stack_hi = (uintptr_t)hi; }

/* ---- wmma tiles as the instructions nvcc issues for them ------------------------------- */
void kemu_prof_tile(const void *p, unsigned ldm, int rows, int cols, int elem, int row_major, int store,
                    const void *site) {
    uintptr_t base = (uintptr_t)p;
    int space = space_of(base);
    if (space == IGNORED || !g_in_launch) return;
    std::vector<lane_access> v;
    std::vector<int> lane;
    /* element (r, c) of the tile in memory */
    auto at = [&](int r, int c) { return base + (uintptr_t)(row_major ? (size_t)r * ldm + c : (size_t)c * ldm + r) * elem; };
    if (elem == 2) {
        /* ldmatrix.x4: the memory lines (rows if row-major, else columns)
         * in 16-byte chunks; each 8 x 8 matrix is 8 consecutive lines at
         * one chunk, one phase of 8 lanes; four matrices a request */
        int lines = row_major ? rows : cols, chunks = (row_major ? cols : rows) * 2 / 16;
        for (int c = 0; c < chunks; c++)
            for (int g = 0; g < lines; g += 8)
                for (int i = 0; i < 8; i++) {
                    uintptr_t a = base + ((uintptr_t)(g + i) * ldm + (uintptr_t)c * 8) * 2;
                    v.push_back({a, 16});
                    lane.push_back((int)v.size() - 1);
                    if (v.size() == 32) record((uintptr_t)site, space, store, v, lane), v.clear(), lane.clear();
                }
        record((uintptr_t)site, space, store, v, lane);
        return;
    }
    /* fp32 accumulator, mma.sync m16n8 layout: per 16-row block, 8-column
     * half and row half, lane l at row l/4, columns 2 (l%4) and +1: one
     * 8-byte request row-major, two 4-byte ones column-major */
    for (int rb = 0; rb < rows; rb += 16)
        for (int nb = 0; nb < cols; nb += 8)
            for (int h = 0; h < 2; h++)
                for (int part = 0; part < (row_major ? 1 : 2); part++) {
                    v.clear(), lane.clear();
                    for (int l = 0; l < 32; l++) {
                        int r = rb + h * 8 + l / 4, c = nb + 2 * (l % 4) + part;
                        v.push_back({at(r, c), row_major ? 8u : 4u});
                        lane.push_back(l);
                    }
                    record((uintptr_t)site, space, store, v, lane);
                }
}

/* ---- the hooks gcc's -fsanitize=thread calls ------------------------------------------- */
#define HOOK(n)                                                                                                        \
    extern "C" void __tsan_read##n(void *p) { on_access(p, n, 0, __builtin_return_address(0)); }                      \
    extern "C" void __tsan_write##n(void *p) { on_access(p, n, 1, __builtin_return_address(0)); }                     \
    extern "C" void __tsan_unaligned_read##n(void *p) { on_access(p, n, 0, __builtin_return_address(0)); }            \
    extern "C" void __tsan_unaligned_write##n(void *p) { on_access(p, n, 1, __builtin_return_address(0)); }
HOOK(1)
HOOK(2)
HOOK(4)
HOOK(8)
HOOK(16)
extern "C" void __tsan_read_range(void *p, unsigned long n) { on_access(p, (unsigned)n, 0, __builtin_return_address(0)); }
extern "C" void __tsan_write_range(void *p, unsigned long n) { on_access(p, (unsigned)n, 1, __builtin_return_address(0)); }
/* g++ guards a static local whose type has user-provided constructors (a
 * __shared__ float4 array under KEMU_PROF) with an atomic byte load */
extern "C" char __tsan_atomic8_load(const volatile char *p, int) { return *p; }
extern "C" void __tsan_func_entry(void *) {}
extern "C" void __tsan_func_exit(void) {}

/* ---- the report -------------------------------------------------------------------------- */
void kemu_prof_reset(void) {
    memset(g_totals, 0, sizeof g_totals);
    g_sites.clear();
}

struct kemu_prof_totals kemu_prof_get(int shared, int store) { return g_totals[shared ? 1 : 0][store ? 1 : 0]; }

static uintptr_t g_bias; /* the executable's load address (PIE) */
static int first_object(struct dl_phdr_info *info, size_t, void *) {
    g_bias = info->dlpi_addr;
    return 1;
}

/* file:line of each address (innermost, and the kernel line it was inlined into) and function names */
struct place {
    std::string func, inner, outer;
};
static std::unordered_map<uintptr_t, place> symbolize(const std::vector<uintptr_t> &addrs) {
    std::unordered_map<uintptr_t, place> out;
    dl_iterate_phdr(first_object, NULL);
    std::string cmd = "addr2line -C -f -i -a -e /proc/" + std::to_string(getpid()) + "/exe";
    for (uintptr_t a : addrs) {
        char hex[32];
        snprintf(hex, sizeof hex, " 0x%lx", (unsigned long)(a - g_bias));
        cmd += hex;
    }
    FILE *f = popen(cmd.c_str(), "r");
    if (!f) return out;
    char line[1024];
    place *cur = NULL;
    int fn_line = 1; /* after the address: function, file:line pairs */
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "0x", 2)) {
            cur = &out[(uintptr_t)strtoull(line, NULL, 16) + g_bias];
            fn_line = 1;
            continue;
        }
        if (!cur) continue;
        if (fn_line) {
            cur->func = line; /* innermost first: the last is the function the address is in */
        } else {
            const char *slash = strrchr(line, '/');
            std::string loc = slash ? slash + 1 : line;
            loc = loc.substr(0, loc.find(' ')); /* drop " (discriminator n)" */
            if (cur->inner.empty()) cur->inner = loc;
            cur->outer = loc;
        }
        fn_line = !fn_line;
    }
    pclose(f);
    return out;
}

static double ratio(uint64_t a, uint64_t b) { return b ? (double)a / (double)b : 0; }

static void report(void) {
    const char *path = getenv("KEMU_PROF");
    if (!path || !*path || g_sites.empty()) return;
    std::vector<uintptr_t> addrs;
    for (auto &kv : g_sites) addrs.push_back(kv.first.pc - 1), addrs.push_back((uintptr_t)kv.first.kernel);
    std::sort(addrs.begin(), addrs.end());
    addrs.erase(std::unique(addrs.begin(), addrs.end()), addrs.end());
    std::unordered_map<uintptr_t, place> where = symbolize(addrs);
    std::string tmp = std::string(path) + ".tmp";
    FILE *f = fopen(tmp.c_str(), "w");
    if (!f) {
        fprintf(stderr, "kemu prof: cannot write %s\n", tmp.c_str());
        return;
    }
    /* per kernel: [space] totals, for the table */
    std::unordered_map<std::string, kemu_prof_totals[2]> per_kernel;
    for (auto &kv : g_sites) {
        const site_key &k = kv.first;
        const kemu_prof_totals &t = kv.second;
        const place &at = where[k.pc - 1];
        std::string kernel = where[(uintptr_t)k.kernel].func;
        kernel = kernel.substr(0, kernel.find('('));
        if (!kernel.compare(0, 5, "void ")) kernel = kernel.substr(5); /* templates' return type */
        fprintf(f,
                "{\"kernel\":\"%s\",\"site\":\"%s\",\"in\":\"%s\",\"space\":\"%s\",\"op\":\"%s\",\"requests\":%llu,"
                "\"lanes\":%llu,\"bytes\":%llu,\"%s\":%llu,\"ideal\":%llu,\"efficiency\":%.4f}\n",
                kernel.c_str(), at.inner.c_str(), at.outer.c_str(), k.space ? "shared" : "global",
                k.store ? "store" : "load", (unsigned long long)t.requests, (unsigned long long)t.lanes,
                (unsigned long long)t.bytes, k.space ? "wavefronts" : "sectors", (unsigned long long)t.cost,
                (unsigned long long)t.ideal, ratio(t.ideal, t.cost));
        kemu_prof_totals *s = &per_kernel[kernel][k.space];
        s->requests += t.requests, s->lanes += t.lanes, s->bytes += t.bytes, s->cost += t.cost, s->ideal += t.ideal;
    }
    if (fflush(f) || fsync(fileno(f)) || fclose(f) || rename(tmp.c_str(), path)) {
        fprintf(stderr, "kemu prof: cannot write %s\n", path);
        return;
    }
    std::vector<std::string> names;
    for (auto &kv : per_kernel) names.push_back(kv.first);
    std::sort(names.begin(), names.end());
    fprintf(stderr, "%-30s %12s %12s %7s %11s %11s %8s\n", "kernel", "global B", "moved B", "eff", "smem waves",
            "ideal", "conflict");
    for (const std::string &n : names) {
        const kemu_prof_totals *t = per_kernel[n];
        fprintf(stderr, "%-30s %12llu %12llu %7.3f %11llu %11llu %8.2f\n", n.c_str(), (unsigned long long)t[0].bytes,
                (unsigned long long)t[0].cost * 32, ratio(t[0].ideal, t[0].cost), (unsigned long long)t[1].cost,
                (unsigned long long)t[1].ideal, ratio(t[1].cost, t[1].ideal));
    }
    fprintf(stderr, "kemu prof: %zu sites -> %s\n", g_sites.size(), path);
}

/* the module constructors of the instrumented objects call this */
extern "C" void __tsan_init(void) {}
