/*
 * kernels_body.h - the matmul inner kernels, included twice by kernels.c:
 * once with 8-wide vectors under #pragma GCC target("avx2,fma") and once
 * with 4-wide vectors for any CPU (SSE2, NEON). Writing them with GCC vector
 * extensions keeps one source; the width matters because GCC lowers vectors
 * wider than the hardware's through memory, which is ~10x slower.
 *
 * Expects: VT (vector type), VTU (its unaligned twin), VW (lanes), SFX(name)
 * (name with the variant's suffix), INLINE.
 */
INLINE float SFX(hsum)(const VT *v) {
    float s = 0;
    for (int i = 0; i < VW; i++) s += (*v)[i];
    return s;
}

/* C[mr x nr] (+)= A[mr rows] . B[nr rows]^T over K; mr <= 4, nr <= 3. */
INLINE void SFX(nt_tile)(const float *A, int lda, const float *B, int ldb, float *C, int ldc, int K, int mr, int nr,
                    int acc) {
    VT s[4][3];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++) s[i][j] = (VT){0};
    int k = 0;
    for (; k + VW <= K; k += VW) {
        VT a[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            if (i < mr) a[i] = *(const VTU *)(A + (size_t)i * lda + k);
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++) {
            if (j >= nr) continue;
            VT b = *(const VTU *)(B + (size_t)j * ldb + k);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                if (i < mr) s[i][j] += a[i] * b;
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float t = SFX(hsum)(&s[i][j]);
            for (int kk = k; kk < K; kk++) t += A[(size_t)i * lda + kk] * B[(size_t)j * ldb + kk];
            float *c = C + (size_t)i * ldc + j;
            *c = acc ? *c + t : t;
        }
}

INLINE void SFX(nt_tile_any)(const float *A, int lda, const float *B, int ldb, float *C, int ldc, int K, int mr, int nr,
                        int acc) {
    /* one specialised copy per edge shape, so the registers stay registers */
#define NT_CASE(m, n)                                                                                                  \
    case (m) * 4 + (n): SFX(nt_tile)(A, lda, B, ldb, C, ldc, K, m, n, acc); break;
    switch (mr * 4 + nr) {
        NT_CASE(4, 3) NT_CASE(4, 2) NT_CASE(4, 1) NT_CASE(3, 3) NT_CASE(3, 2) NT_CASE(3, 1)
        NT_CASE(2, 3) NT_CASE(2, 2) NT_CASE(2, 1) NT_CASE(1, 3) NT_CASE(1, 2) NT_CASE(1, 1)
    }
#undef NT_CASE
}

/* Rows [m0,m1) x columns [n0,n1) of C = A . B^T. B is walked in blocks of
 * rows that fit in L2 while every A tile of the range passes over them. */
INLINE void SFX(nt_part)(float *C, const float *A, const float *B, int N, int K, long m0, long m1, long n0, long n1,
                    int acc) {
    long nb = (192L * 1024 / 4) / (K > 0 ? K : 1); /* B rows per ~192 KiB block */
    nb = nb < 3 ? 3 : nb - nb % 3;
    for (long b0 = n0; b0 < n1; b0 += nb) {
        long b1 = b0 + nb < n1 ? b0 + nb : n1;
        for (long m = m0; m < m1; m += 4) {
            int mr = m1 - m < 4 ? (int)(m1 - m) : 4;
            for (long n = b0; n < b1; n += 3) {
                int nr = b1 - n < 3 ? (int)(b1 - n) : 3;
                SFX(nt_tile_any)(A + m * K, K, B + n * K, K, C + m * N + n, N, K, mr, nr, acc);
            }
        }
    }
}

/* C[mr x 2*VW] += sum_k A(i,k) * B[k, 0..2*VW-1] with A(i,k) = A[i*sam + k*sak].
 * nv = number of VW-wide column vectors (1 or 2), mr <= 6. */
INLINE void SFX(nn_tile)(const float *A, long sam, long sak, const float *B, int ldb, float *C, int ldc, int K, int mr,
                    int nv) {
    VT s[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) s[i][0] = s[i][1] = (VT){0};
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        VT b0 = *(const VTU *)b, b1 = nv > 1 ? *(const VTU *)(b + VW) : (VT){0};
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            if (i >= mr) continue;
            float a = A[i * sam + k * sak];
            VT av = (VT){0} + a;
            s[i][0] += av * b0;
            if (nv > 1) s[i][1] += av * b1;
        }
    }
    for (int i = 0; i < mr; i++) {
        VTU *c = (VTU *)(C + (size_t)i * ldc);
        c[0] += s[i][0];
        if (nv > 1) *(VTU *)(C + (size_t)i * ldc + VW) += s[i][1];
    }
}

INLINE void SFX(nn_tile_any)(const float *A, long sam, long sak, const float *B, int ldb, float *C, int ldc, int K, int mr,
                        int nv) {
#define NN_CASE(m, v)                                                                                                  \
    case (m) * 2 + (v): SFX(nn_tile)(A, sam, sak, B, ldb, C, ldc, K, m, v); break;
    switch (mr * 2 + nv) {
        NN_CASE(6, 2) NN_CASE(6, 1) NN_CASE(5, 2) NN_CASE(5, 1) NN_CASE(4, 2) NN_CASE(4, 1)
        NN_CASE(3, 2) NN_CASE(3, 1) NN_CASE(2, 2) NN_CASE(2, 1) NN_CASE(1, 2) NN_CASE(1, 1)
    }
#undef NN_CASE
}

/* Rows [m0,m1) of C[M,N] += A(m,k) B[k,n]; A(m,k) = A[m*sam + k*sak]. */
INLINE void SFX(nn_part)(float *C, const float *A, long sam, long sak, const float *B, int N, int K, long m0, long m1,
                    const int MR) {
    const int KC = 256, NC = 192; /* a 256 x 192 panel of B: 192 KiB */
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        for (int n0 = 0; n0 < N; n0 += NC) {
            int nc = N - n0 < NC ? N - n0 : NC, nvec = nc / VW * VW;
            for (long m = m0; m < m1; m += MR) {
                int mr = m1 - m < MR ? (int)(m1 - m) : MR;
                const float *a = A + m * sam + (long)k0 * sak;
                for (int n = 0; n < nvec; n += 2 * VW) {
                    int nv = nvec - n >= 2 * VW ? 2 : 1;
                    SFX(nn_tile_any)(a, sam, sak, B + (size_t)k0 * N + n0 + n, N, C + m * N + n0 + n, N, kc, mr, nv);
                }
                for (int i = 0; i < mr; i++) /* columns left over from the vectors */
                    for (int n = n0 + nvec; n < n0 + nc; n++) {
                        float t = 0;
                        for (int k = 0; k < kc; k++) t += a[i * sam + k * sak] * B[(size_t)(k0 + k) * N + n];
                        C[(m + i) * N + n] += t;
                    }
            }
        }
    }
}

