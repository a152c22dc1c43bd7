/* Toeplitz hashing by a word-level middle product with transposed Karatsuba.
 *
 * The output y is the bit range [n-1, n-1+l) of S(z)·X(z). Shifting S by d bits puts bit n-1 on a
 * word boundary, so the output words are whole words of the product S'·X. Product word K is
 * lo(M[K]) ^ hi(M[K-1]) with M[K] = XOR_J clmul(A[K-J], X[J]) (A = S' as words): a Toeplitz
 * matrix-vector product over 64-bit "digits" with 128-bit entries, of which only the ceil(l/64)
 * rows we need are computed. The matrix is cut into square m x m Toeplitz tiles; each tile uses
 * the 2x2 block split T = [[T1 T0] [T2 T1]]:
 *     P0 = T1 (x0 + x1),  P1 = (T0 + T1) x1,  P2 = (T2 + T1) x0,  y0 = P0 + P1,  y1 = P0 + P2
 * (three half-size products, "+" is XOR), recursively down to a base case of at most a few
 * dozen words done by schoolbook with PCLMULQDQ, VPCLMULQDQ or a portable table multiplier.
 * Results are kept in overlapped form: a tile of m rows writes m+1 words (row r's 128-bit value
 * goes to words r and r+1), so combining lo and hi halves costs nothing.
 *
 * Constant time: the portable multiplier indexes tables of key-derived words by seed-derived
 * (public) words only; the hardware paths have no data-dependent addresses or branches. */
#include "toeplitz.h"

#include <stdlib.h>
#include <string.h>
#if !defined(_WIN32)
#define QKD_THREADS 1
#include <pthread.h>
#else
#define QKD_THREADS 0
#endif
#ifdef QKD_TOEPLITZ_DEBUG
#include <stdio.h>
#endif

#include "clmul.h"

#if QKD_X86
#include <immintrin.h>
#endif

typedef void (*qkd_tmvp_fn)(const uint64_t *t, const uint64_t *x, size_t m, uint64_t *out, uint64_t *scratch,
                            size_t base_max);

typedef struct {
    qkd_tmvp_fn tmvp;
    size_t base_max; /* largest base-case size in words (even) */
    double lin;      /* cost of the linear passes per word, in units of one clmul (tile choice) */
    int path;
} qkd_tkernel;

#define QKD_BASE_MAX_ALL 64

/* Base cases: out[0..m] ^= T x with T[r][c] = t[r - c + m - 1] (t has 2m-1 words), in overlapped
 * form, for any even m up to QKD_BASE_MAX_ALL (choose_tile never asks for more). */
static inline void base_portable(const uint64_t *t, const uint64_t *x, size_t m, uint64_t *out)
{
    /* Row r is the dot product of t[r .. r+m) with x reversed. Tables come from x (key). */
    qkd_clmul_table tb[QKD_BASE_MAX_ALL];
    for (size_t c = 0; c < m; c++) qkd_clmul_table_init(&tb[c], x[m - 1 - c]);
    for (size_t r = 0; r < m; r++) {
        uint64_t lo = 0, hi = 0, pl, ph;
        const uint64_t *tr = t + r;
        for (size_t c = 0; c < m; c++) {
            qkd_clmul_soft(&tb[c], tr[c], &pl, &ph);
            lo ^= pl;
            hi ^= ph;
        }
        out[r] ^= lo;
        out[r + 1] ^= hi;
    }
}

#if QKD_X86
/* The hardware base cases work on 2 x 2 blocks: rows R, R+1 and columns c, c+1 of the row-r-is-
 * t[r .. r+m) . xr form (xr = x reversed) see the Hankel block [[h0 h1] [h1 h2]] with
 * h0 = t[R+c], h1 = t[R+c+1], h2 = t[R+c+2], against (a, b) = (xr[c], xr[c+1]). Karatsuba:
 *     P = h1 (a + b),  row R += P + (h0 + h1) a,  row R+1 += P + (h1 + h2) b
 * three carry-less multiplies instead of four, with u[i] = t[i] + t[i+1] and xs = a + b
 * precomputed once per base case. A 128-bit lane loaded from t[R+c ..] holds (h0, h1) and one
 * from u[R+c ..] holds (h0 + h1, h1 + h2): selecting qwords by the clmul immediate does the rest.
 * Row R's 128-bit sum lands on out[R..R+2) and row R+1's on out[R+1..R+3), so the "even rows"
 * accumulator of a 2k-row pass is exactly out[r..r+2k) and the "odd rows" one out[r+1..r+2k+1). */
/* Loads are the other bottleneck: stop the compiler from loading a value twice to save a register. */
#define QKD_KEEP_IN_REGISTER(v) __asm__("" : "+v"(v))

typedef struct {
    uint64_t u[2 * QKD_BASE_MAX_ALL];
    uint64_t xr[QKD_BASE_MAX_ALL];
    uint64_t xs[QKD_BASE_MAX_ALL]; /* xs[c] = xr[c] + xr[c+1] for even c */
} qkd_base_prep;

static inline void base_prepare(const uint64_t *t, const uint64_t *x, size_t m, qkd_base_prep *pp)
{
    for (size_t i = 0; i + 2 < 2 * m; i++) pp->u[i] = t[i] ^ t[i + 1];
    for (size_t c = 0; c < m; c++) pp->xr[c] = x[m - 1 - c];
    for (size_t c = 0; c < m; c += 2) pp->xs[c] = pp->xr[c] ^ pp->xr[c + 1];
}

__attribute__((target("pclmul,sse4.1")))
static inline void rows2_pclmul(const uint64_t *t, const qkd_base_prep *pp, size_t m, uint64_t *out, size_t r)
{
    __m128i e0 = _mm_setzero_si128(), o0 = _mm_setzero_si128();
    for (size_t c = 0; c < m; c += 2) {
        __m128i ab = _mm_loadu_si128((const __m128i *)(pp->xr + c));
        __m128i s = _mm_set1_epi64x((long long)pp->xs[c]);
        __m128i t0 = _mm_loadu_si128((const __m128i *)(t + r + c));
        __m128i u0 = _mm_loadu_si128((const __m128i *)(pp->u + r + c));
        __m128i p0 = _mm_clmulepi64_si128(t0, s, 0x01);
        e0 = _mm_xor_si128(e0, _mm_xor_si128(p0, _mm_clmulepi64_si128(u0, ab, 0x00)));
        o0 = _mm_xor_si128(o0, _mm_xor_si128(p0, _mm_clmulepi64_si128(u0, ab, 0x11)));
    }
    __m128i *p = (__m128i *)(out + r);
    _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), e0));
    p = (__m128i *)(out + r + 1);
    _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), o0));
}

__attribute__((target("pclmul,sse4.1")))
static inline void base_pclmul(const uint64_t *t, const uint64_t *x, size_t m, uint64_t *out)
{
    qkd_base_prep pp;
    base_prepare(t, x, m, &pp);
    size_t r = 0;
    for (; r + 4 <= m; r += 4) {
        __m128i e0 = _mm_setzero_si128(), o0 = _mm_setzero_si128();
        __m128i e1 = _mm_setzero_si128(), o1 = _mm_setzero_si128();
        for (size_t c = 0; c < m; c += 2) {
            __m128i ab = _mm_loadu_si128((const __m128i *)(pp.xr + c));
            __m128i s = _mm_set1_epi64x((long long)pp.xs[c]);
            __m128i t0 = _mm_loadu_si128((const __m128i *)(t + r + c));
            __m128i u0 = _mm_loadu_si128((const __m128i *)(pp.u + r + c));
            __m128i t1 = _mm_loadu_si128((const __m128i *)(t + r + c + 2));
            __m128i u1 = _mm_loadu_si128((const __m128i *)(pp.u + r + c + 2));
            __m128i p0 = _mm_clmulepi64_si128(t0, s, 0x01);
            __m128i p1 = _mm_clmulepi64_si128(t1, s, 0x01);
            e0 = _mm_xor_si128(e0, _mm_xor_si128(p0, _mm_clmulepi64_si128(u0, ab, 0x00)));
            o0 = _mm_xor_si128(o0, _mm_xor_si128(p0, _mm_clmulepi64_si128(u0, ab, 0x11)));
            e1 = _mm_xor_si128(e1, _mm_xor_si128(p1, _mm_clmulepi64_si128(u1, ab, 0x00)));
            o1 = _mm_xor_si128(o1, _mm_xor_si128(p1, _mm_clmulepi64_si128(u1, ab, 0x11)));
        }
        __m128i *p = (__m128i *)(out + r);
        _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), e0));
        p = (__m128i *)(out + r + 2);
        _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), e1));
        p = (__m128i *)(out + r + 1);
        _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), o0));
        p = (__m128i *)(out + r + 3);
        _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), o1));
    }
    if (r < m) rows2_pclmul(t, &pp, m, out, r);
}

/* The same with four 128-bit lanes per register: one 512-bit load serves 8 rows. Sixteen rows per
 * pass share each broadcast; 8-, 4- and 2-row tails make any even m work. */
__attribute__((target("avx512f,avx512bw,avx512vl,vpclmulqdq,pclmul")))
static inline void base_vpclmul(const uint64_t *t, const uint64_t *x, size_t m, uint64_t *out)
{
    qkd_base_prep pp;
    base_prepare(t, x, m, &pp);
    size_t r = 0;
    __m512i carry = _mm512_setzero_si512();
    for (; r + 16 <= m; r += 16) {
        __m512i e0 = _mm512_setzero_si512(), o0 = _mm512_setzero_si512();
        __m512i e1 = _mm512_setzero_si512(), o1 = _mm512_setzero_si512();
        for (size_t c = 0; c < m; c += 2) {
            __m512i ab = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(pp.xr + c)));
            __m512i s = _mm512_set1_epi64((long long)pp.xs[c]);
            __m512i t0 = _mm512_loadu_si512((const void *)(t + r + c));
            __m512i u0 = _mm512_loadu_si512((const void *)(pp.u + r + c));
            __m512i t1 = _mm512_loadu_si512((const void *)(t + r + c + 8));
            __m512i u1 = _mm512_loadu_si512((const void *)(pp.u + r + c + 8));
            QKD_KEEP_IN_REGISTER(u0);
            QKD_KEEP_IN_REGISTER(u1);
            __m512i p0 = _mm512_clmulepi64_epi128(t0, s, 0x01);
            __m512i p1 = _mm512_clmulepi64_epi128(t1, s, 0x01);
            e0 = _mm512_ternarylogic_epi64(e0, p0, _mm512_clmulepi64_epi128(u0, ab, 0x00), 0x96);
            o0 = _mm512_ternarylogic_epi64(o0, p0, _mm512_clmulepi64_epi128(u0, ab, 0x11), 0x96);
            e1 = _mm512_ternarylogic_epi64(e1, p1, _mm512_clmulepi64_epi128(u1, ab, 0x00), 0x96);
            o1 = _mm512_ternarylogic_epi64(o1, p1, _mm512_clmulepi64_epi128(u1, ab, 0x11), 0x96);
        }
        /* The odd rows go one word up: shift them across the register boundary (the top word
         * is carried into the next pass) so every output word is stored once, by an aligned
         * store, instead of two overlapping stores that defeat store-to-load forwarding. */
        uint64_t *p = out + r;
        e0 = _mm512_xor_si512(e0, _mm512_alignr_epi64(o0, carry, 7));
        e1 = _mm512_xor_si512(e1, _mm512_alignr_epi64(o1, o0, 7));
        carry = o1;
        _mm512_storeu_si512(p, _mm512_xor_si512(_mm512_loadu_si512(p), e0));
        _mm512_storeu_si512(p + 8, _mm512_xor_si512(_mm512_loadu_si512(p + 8), e1));
    }
    if (r + 8 <= m) {
        __m512i e0 = _mm512_setzero_si512(), o0 = _mm512_setzero_si512();
        for (size_t c = 0; c < m; c += 2) {
            __m512i ab = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(pp.xr + c)));
            __m512i s = _mm512_set1_epi64((long long)pp.xs[c]);
            __m512i t0 = _mm512_loadu_si512((const void *)(t + r + c));
            __m512i u0 = _mm512_loadu_si512((const void *)(pp.u + r + c));
            __m512i p0 = _mm512_clmulepi64_epi128(t0, s, 0x01);
            e0 = _mm512_ternarylogic_epi64(e0, p0, _mm512_clmulepi64_epi128(u0, ab, 0x00), 0x96);
            o0 = _mm512_ternarylogic_epi64(o0, p0, _mm512_clmulepi64_epi128(u0, ab, 0x11), 0x96);
        }
        uint64_t *p = out + r;
        e0 = _mm512_xor_si512(e0, _mm512_alignr_epi64(o0, carry, 7));
        carry = o0;
        _mm512_storeu_si512(p, _mm512_xor_si512(_mm512_loadu_si512(p), e0));
        r += 8;
    }
    out[r] ^= (uint64_t)_mm_extract_epi64(_mm512_extracti32x4_epi32(carry, 3), 1); /* carried top word */
    if (r + 4 <= m) {
        __m256i e0 = _mm256_setzero_si256(), o0 = _mm256_setzero_si256();
        for (size_t c = 0; c < m; c += 2) {
            __m256i ab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(pp.xr + c)));
            __m256i s = _mm256_set1_epi64x((long long)pp.xs[c]);
            __m256i t0 = _mm256_loadu_si256((const __m256i *)(t + r + c));
            __m256i u0 = _mm256_loadu_si256((const __m256i *)(pp.u + r + c));
            __m256i p0 = _mm256_clmulepi64_epi128(t0, s, 0x01);
            e0 = _mm256_xor_si256(e0, _mm256_xor_si256(p0, _mm256_clmulepi64_epi128(u0, ab, 0x00)));
            o0 = _mm256_xor_si256(o0, _mm256_xor_si256(p0, _mm256_clmulepi64_epi128(u0, ab, 0x11)));
        }
        __m256i *p = (__m256i *)(out + r);
        _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), e0));
        p = (__m256i *)(out + r + 1);
        _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), o0));
        r += 4;
    }
    if (r < m) rows2_pclmul(t, &pp, m, out, r);
}

__attribute__((target("pclmul,sse4.1")))
static uint64_t row_hi_pclmul(const uint64_t *a_last, const uint64_t *x, size_t nx)
{
    __m128i acc = _mm_setzero_si128();
    for (size_t j = 0; j < nx; j++)
        acc = _mm_xor_si128(acc, _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)a_last[-(ptrdiff_t)j]),
                                                      _mm_cvtsi64_si128((long long)x[j]), 0x00));
    return (uint64_t)_mm_extract_epi64(acc, 1);
}
#endif

static uint64_t row_hi_portable(const uint64_t *a_last, const uint64_t *x, size_t nx)
{
    qkd_clmul_table tb;
    uint64_t hi = 0, pl, ph;
    for (size_t j = 0; j < nx; j++) {
        qkd_clmul_table_init(&tb, x[j]);
        qkd_clmul_soft(&tb, a_last[-(ptrdiff_t)j], &pl, &ph);
        hi ^= ph;
    }
    return hi;
}

/* out[0..m] ^= T x for the m x m Toeplitz T[r][c] = t[r - c + m - 1]; scratch: 4m + 8 words.
 * One copy per path, compiled for that path's instruction set so the linear XOR passes vectorise
 * and the base case inlines. */
#define QKD_DEFINE_TMVP(NAME, BASE)                                                                  \
    static void NAME(const uint64_t *restrict t, const uint64_t *restrict x, size_t m,              \
                     uint64_t *restrict out, uint64_t *restrict scratch, size_t base_max)           \
    {                                                                                                \
        if (m <= base_max || (m & 3)) {                                                              \
            BASE(t, x, m, out);                                                                      \
            return;                                                                                  \
        }                                                                                            \
        size_t h = m / 2, i;                                                                         \
        uint64_t *restrict tv = scratch;    /* 2h - 1 words: a combined defining vector */          \
        uint64_t *restrict xs = tv + 2 * h; /* h words: x0 + x1 */                                  \
        uint64_t *restrict p0 = xs + h;     /* h + 1 words: P0 */                                   \
        uint64_t *next = p0 + h + 8;        /* the children's scratch */                            \
        /* P1 = (T0 + T1) x1 into the top half. T0 = t[0 .. 2h-1), T1 = t[h .. 3h-1). */           \
        for (i = 0; i < 2 * h - 1; i++) tv[i] = t[i] ^ t[h + i];                                     \
        NAME(tv, x + h, h, out, next, base_max);                                                     \
        /* P2 = (T2 + T1) x0 into the bottom half. T2 = t[2h .. 4h-1). */                           \
        for (i = 0; i < 2 * h - 1; i++) tv[i] = t[2 * h + i] ^ t[h + i];                             \
        NAME(tv, x, h, out + h, next, base_max);                                                     \
        /* P0 = T1 (x0 + x1) into both halves. */                                                   \
        for (i = 0; i < h; i++) xs[i] = x[i] ^ x[h + i];                                             \
        for (i = 0; i <= h; i++) p0[i] = 0;                                                          \
        NAME(t + h, xs, h, p0, next, base_max);                                                      \
        uint64_t *restrict lo_half = out, *restrict hi_half = out + h;                               \
        for (i = 0; i < h; i++) lo_half[i] ^= p0[i];                                                 \
        lo_half[h] ^= p0[h] ^ p0[0];                                                                 \
        for (i = 1; i <= h; i++) hi_half[i] ^= p0[i];                                                \
    }

QKD_DEFINE_TMVP(tmvp_portable, base_portable)
#if QKD_X86
#define QKD_TARGET_PCLMUL __attribute__((target("pclmul,sse4.1")))
#define QKD_TARGET_VPCLMUL __attribute__((target("avx512f,avx512bw,avx512vl,vpclmulqdq,pclmul")))
QKD_TARGET_PCLMUL QKD_DEFINE_TMVP(tmvp_pclmul, base_pclmul)
QKD_TARGET_VPCLMUL QKD_DEFINE_TMVP(tmvp_vpclmul, base_vpclmul)
#endif

static int kernel_for(int path, qkd_tkernel *k)
{
    k->path = path;
    switch (path) {
    case QKD_PATH_PORTABLE:
        k->tmvp = tmvp_portable;
        k->base_max = 6; /* software multiplies are dear: recurse deep */
        k->lin = 0.1;
        return QKD_OK;
#if QKD_X86
    case QKD_PATH_PCLMUL:
        k->tmvp = tmvp_pclmul;
        k->base_max = 24;
        k->lin = 1.0;
        return QKD_OK;
    case QKD_PATH_VPCLMUL:
        k->tmvp = tmvp_vpclmul;
        k->base_max = 48; /* measured on Zen 4: 24..64 within noise, 48 best at n = 1e7 */
        k->lin = 1.5;
        return QKD_OK;
#endif
    default:
        return QKD_ENOPATH;
    }
}

/* Estimated cost of one base case of size b, in units of one 64x64 carry-less multiply done at
 * full vector width: the VPCLMULQDQ kernel's 8-row passes cost the same whether they fill 8, 4 or
 * 2 rows (its 4- and 2-row tails), so sizes that are not multiples of 8 pay for the padding. */
static double base_cost(size_t b, int path, double lin)
{
    double work = (double)b * (double)b;
    if (path == QKD_PATH_VPCLMUL) {
        size_t passes = b / 8 + (b % 8 >= 4) + (b % 4 >= 2);
        work = (double)passes * 8.0 * (double)b;
    }
    return work + 4.0 * lin * (double)b; /* the per-base-case sums and reversal */
}

/* Estimated cost of one m x m tile: the base cases plus `lin` units per word of each Karatsuba
 * level's linear XOR passes (recursion as in tmvp). */
static double tile_cost(size_t m, size_t base_max, int path, double lin)
{
    double cost = 0.0, nodes = 1.0;
    while (m > base_max && (m & 3) == 0) {
        cost += nodes * lin * (double)m;
        nodes *= 3.0;
        m /= 2;
    }
    return cost + nodes * base_cost(m, path, lin);
}

/* The tile size m that covers a rows x cols word matrix at the least estimated cost, the tiles
 * being shared out among `threads` threads. Candidates
 * are m = b * 2^j with b even, b <= base_max, and b > base_max / 2 when j > 0: exactly the sizes
 * the recursion halves down to an even base case of at most base_max words. */
static size_t choose_tile(size_t rows, size_t cols, size_t base_max, int path, double lin, size_t threads)
{
    size_t big = rows > cols ? rows : cols;
    size_t best_m = 0;
    double best_cost = 0.0;
    for (unsigned j = 0; j < 48; j++) {
        size_t bmin = j == 0 ? 2 : (base_max / 4) * 2 + 2; /* smallest even b > base_max / 2 */
        for (size_t b = bmin; b <= base_max; b += 2) {
            size_t m = b << j;
            size_t ntiles = ((rows + m - 1) / m) * ((cols + m - 1) / m);
            double rounds = (double)((ntiles + threads - 1) / threads); /* tiles run in parallel */
            double cost = rounds * (tile_cost(m, base_max, path, lin) + 4.0 * lin * (double)m);
            if (best_m == 0 || cost < best_cost) {
                best_m = m;
                best_cost = cost;
            }
        }
        if ((base_max << j) >= 2 * big) break;
    }
    return best_m;
}

/* One thread's share of the tiles: every `step`-th tile from `first`, into its own output. */
typedef struct {
    const qkd_tkernel *k;
    const uint64_t *a; /* A[lo] */
    const uint64_t *xp;
    ptrdiff_t w0, lo;
    size_t m, ct, ntiles, first, step;
    uint64_t *out, *scratch;
} qkd_tile_job;

static void *run_tiles(void *arg)
{
    const qkd_tile_job *j = (const qkd_tile_job *)arg;
    size_t m = j->m;
    /* Rows K = w0 + R + r, columns J = C + c: tile entry A[K - J] = t[r - c + m - 1], so the tile's
     * defining vector starts at A index w0 + R - C - m + 1. */
    for (size_t idx = j->first; idx < j->ntiles; idx += j->step) {
        size_t ri = idx / j->ct, ci = idx % j->ct;
        ptrdiff_t a0 = j->w0 + (ptrdiff_t)(ri * m) - (ptrdiff_t)(ci * m) - (ptrdiff_t)m + 1;
        j->k->tmvp(j->a + (a0 - j->lo), j->xp + ci * m, m, j->out + ri * m, j->scratch, j->k->base_max);
    }
    return NULL;
}

int qkd_toeplitz_words(const uint64_t *x, size_t n, const uint64_t *s, size_t l, uint64_t *y, int path,
                       int threads)
{
    if (x == NULL || s == NULL || n == 0 || l >= n || n > ((size_t)1 << 40)) return QKD_EINVAL;
    if (threads < 1 || threads > QKD_MAX_THREADS) return QKD_EINVAL;
#if !QKD_THREADS
    threads = 1;
#endif
    if (l == 0) return QKD_OK;
    if (y == NULL) return QKD_EINVAL;
    int p = qkd_resolve_path(path);
    if (p < 0) return p;
    qkd_tkernel k;
    if (kernel_for(p, &k) != QKD_OK) return QKD_ENOPATH;

    size_t nx = (n + 63) / 64, ns = (n + l - 1 + 63) / 64, ly = (l + 63) / 64;
    unsigned d = (unsigned)((64 - ((n - 1) & 63)) & 63); /* S' = S z^d puts bit n-1 on a boundary */
    ptrdiff_t w0 = (ptrdiff_t)((n - 1 + d) / 64);         /* word of S'X holding output bit 0 */

    size_t rows = ly, cols = nx;
#ifdef QKD_TOEPLITZ_DEBUG
    if (getenv("QKD_BASE_MAX")) k.base_max = (size_t)atoi(getenv("QKD_BASE_MAX"));
    if (getenv("QKD_LIN")) k.lin = atof(getenv("QKD_LIN"));
#endif
    size_t m = choose_tile(rows, cols, k.base_max, k.path, k.lin, (size_t)threads);
    size_t rt = (rows + m - 1) / m, ct = (cols + m - 1) / m, ntiles = rt * ct;
    size_t nthreads = (size_t)threads < ntiles ? (size_t)threads : ntiles;
#ifdef QKD_TOEPLITZ_DEBUG
    fprintf(stderr, "rows=%zu cols=%zu m=%zu tiles=%zux%zu\n", rows, cols, m, rt, ct);
#endif

    /* A = S' as words over [lo, hi): every tile's defining vector and the row w0-1 fit inside. */
    ptrdiff_t lo = w0 - (ptrdiff_t)(ct * m), hi = w0 + (ptrdiff_t)(rt * m);
    size_t na = (size_t)(hi - lo), nxp = ct * m, nout = rt * m + 1;
    size_t nscratch = 4 * m + 16 * 64;
    /* Thread i owns out_i and scratch_i; the outputs are XORed together at the end. */
    uint64_t *buf = (uint64_t *)malloc((na + nxp + nthreads * (nout + nscratch)) * sizeof(uint64_t));
    if (buf == NULL) return QKD_ENOMEM;
    uint64_t *a = buf, *xp = a + na, *out = xp + nxp;

    size_t sbits = n + l - 1;
    uint64_t slast = (sbits & 63) ? (((uint64_t)1 << (sbits & 63)) - 1) : ~(uint64_t)0;
    for (ptrdiff_t i = lo; i < hi; i++) {
        uint64_t cur = 0, prev = 0;
        if (i >= 0 && (size_t)i < ns) cur = s[i] & ((size_t)i == ns - 1 ? slast : ~(uint64_t)0);
        if (d && i >= 1 && (size_t)(i - 1) < ns) prev = s[i - 1] & ((size_t)(i - 1) == ns - 1 ? slast : ~(uint64_t)0);
        a[i - lo] = d ? ((cur << d) | (prev >> (64 - d))) : cur;
    }
    memcpy(xp, x, nx * sizeof(uint64_t));
    if (n & 63) xp[nx - 1] &= ((uint64_t)1 << (n & 63)) - 1;
    memset(xp + nx, 0, (nxp - nx) * sizeof(uint64_t));
    for (size_t i = 0; i < nthreads; i++) memset(out + i * (nout + nscratch), 0, nout * sizeof(uint64_t));

    qkd_tile_job jobs[QKD_MAX_THREADS];
    for (size_t i = 0; i < nthreads; i++) {
        qkd_tile_job job = {&k, a, xp, w0, lo, m, ct, ntiles, i, nthreads,
                            out + i * (nout + nscratch), out + i * (nout + nscratch) + nout};
        jobs[i] = job;
    }
#if QKD_THREADS
    pthread_t tid[QKD_MAX_THREADS];
    int started[QKD_MAX_THREADS] = {0};
    for (size_t i = 1; i < nthreads; i++) started[i] = pthread_create(&tid[i], NULL, run_tiles, &jobs[i]) == 0;
    run_tiles(&jobs[0]);
    for (size_t i = 1; i < nthreads; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            run_tiles(&jobs[i]); /* no thread to be had: do its share here */
    }
#else
    for (size_t i = 0; i < nthreads; i++) run_tiles(&jobs[i]);
#endif
    for (size_t i = 1; i < nthreads; i++) {
        const uint64_t *part = jobs[i].out;
        for (size_t w = 0; w < nout; w++) out[w] ^= part[w];
    }
    /* Output word 0 also takes the high half of row w0 - 1. */
    const uint64_t *a_last = a + (w0 - 1 - lo);
#if QKD_X86
    if (p != QKD_PATH_PORTABLE)
        out[0] ^= row_hi_pclmul(a_last, xp, nx);
    else
#endif
        out[0] ^= row_hi_portable(a_last, xp, nx);

    memcpy(y, out, ly * sizeof(uint64_t));
    if (l & 63) y[ly - 1] &= ((uint64_t)1 << (l & 63)) - 1;
    free(buf);
    return QKD_OK;
}
