/* Polynomial evaluation hash over GF(2^64) = GF(2)[z] / (z^64 + z^4 + z^3 + z + 1).
 *
 * Horner's rule over the message words: acc = (acc + w_j) k, then acc = (acc + n_bits) k, so the
 * tag is the polynomial sum_j w_j k^(L+2-j) + n_bits k. Two different messages give a nonzero
 * difference polynomial of degree <= L+1 (if their lengths differ, the k^1 coefficients already
 * differ), which has at most L+1 roots: the collision probability under a uniform key is
 * <= (L+1)/2^64, and with several independent keys the product of these.
 *
 * The hardware path folds four words per reduction: (acc + w1) k^4 + w2 k^3 + w3 k^2 + w4 k, whose
 * four carry-less products are independent, then one reduction. */
#include "polyhash.h"

#include "clmul.h"

#if QKD_X86
#include <immintrin.h>
#endif

/* (hi, lo) mod f with z^64 = z^4 + z^3 + z + 1: hi z^64 = hi (z^4+z^3+z+1); the up to four bits
 * that spill over bit 63 are folded once more (they cannot spill again). */
static inline uint64_t gf64_reduce(uint64_t lo, uint64_t hi)
{
    uint64_t spill = (hi >> 60) ^ (hi >> 61) ^ (hi >> 63);
    uint64_t r = hi ^ (hi << 1) ^ (hi << 3) ^ (hi << 4);
    r ^= spill ^ (spill << 1) ^ (spill << 3) ^ (spill << 4);
    return lo ^ r;
}

/* Portable multiply: the table is built from `secret`, indexed by `pub` (the key, sent in clear). */
static inline uint64_t gf64_mul_soft(uint64_t secret, uint64_t pub)
{
    qkd_clmul_table tb;
    uint64_t lo, hi;
    qkd_clmul_table_init(&tb, secret);
    qkd_clmul_soft(&tb, pub, &lo, &hi);
    return gf64_reduce(lo, hi);
}

uint64_t qkd_gf64_mul(uint64_t a, uint64_t b) { return gf64_mul_soft(a, b); }

static uint64_t polyhash_portable(const uint64_t *w, size_t nwords, uint64_t n_bits, uint64_t k)
{
    uint64_t acc = 0;
    for (size_t j = 0; j < nwords; j++) acc = gf64_mul_soft(acc ^ w[j], k);
    return gf64_mul_soft(acc ^ n_bits, k);
}

#if QKD_X86
__attribute__((target("pclmul,sse4.1")))
static inline __m128i clmul64(uint64_t a, uint64_t b)
{
    return _mm_clmulepi64_si128(_mm_cvtsi64_si128((long long)a), _mm_cvtsi64_si128((long long)b), 0x00);
}

__attribute__((target("pclmul,sse4.1")))
static inline uint64_t reduce128(__m128i p)
{
    return gf64_reduce((uint64_t)_mm_cvtsi128_si64(p), (uint64_t)_mm_extract_epi64(p, 1));
}

__attribute__((target("pclmul,sse4.1")))
static uint64_t polyhash_pclmul(const uint64_t *w, size_t nwords, uint64_t n_bits, uint64_t k)
{
    uint64_t k2 = reduce128(clmul64(k, k));
    uint64_t k3 = reduce128(clmul64(k2, k));
    uint64_t k4 = reduce128(clmul64(k2, k2));
    uint64_t acc = 0;
    size_t j = 0;
    for (; j + 4 <= nwords; j += 4) {
        __m128i s = clmul64(acc ^ w[j], k4);
        s = _mm_xor_si128(s, clmul64(w[j + 1], k3));
        s = _mm_xor_si128(s, clmul64(w[j + 2], k2));
        s = _mm_xor_si128(s, clmul64(w[j + 3], k));
        acc = reduce128(s);
    }
    for (; j < nwords; j++) acc = reduce128(clmul64(acc ^ w[j], k));
    return reduce128(clmul64(acc ^ n_bits, k));
}
#endif

int qkd_polyhash(const uint64_t *w, size_t nwords, uint64_t n_bits, const uint64_t *keys, size_t nkeys,
                 uint64_t *tags, int path)
{
    if ((w == NULL && nwords) || keys == NULL || tags == NULL) return QKD_EINVAL;
    int p = qkd_resolve_path(path);
    if (p < 0) return p;
    for (size_t i = 0; i < nkeys; i++) {
#if QKD_X86
        if (p != QKD_PATH_PORTABLE) {
            tags[i] = polyhash_pclmul(w, nwords, n_bits, keys[i]);
            continue;
        }
#endif
        tags[i] = polyhash_portable(w, nwords, n_bits, keys[i]);
    }
    return QKD_OK;
}
