/* hostsim/cuda_bf16.h - bf16 for the host stand-in: the bits of an fp32
 * rounded to nearest-even into 16, as __float2bfloat16 does on the GPU. */
#ifndef VIV_HOSTSIM_CUDA_BF16_H
#define VIV_HOSTSIM_CUDA_BF16_H

#include <stdint.h>
#include <string.h>

struct __nv_bfloat16 {
    uint16_t x;
};

static inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 b;
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) b.x = (uint16_t)((u >> 16) | 0x40); /* NaN */
    else b.x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
    return b;
}

#endif
