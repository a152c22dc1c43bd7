/* Sifting with AVX-512 VBMI2: 64 detections per step. Basis match, key-bit and test-bit
 * selection are byte compresses (Alice) and expands (Bob) under 64-bit lane masks; counts per
 * class are popcounts of mask intersections. Compressed vectors are stored whole (the output
 * buffers carry QKD_SIFT_PAD spare bytes), which is much faster than compress-to-memory on
 * current AMD cores. The portable path does the same one detection at a time, with the same
 * results, return codes and lens, so the binding and the contract are tested on any CPU. */
#include "sifting.h"
#include "cpu_features.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QKD_SIFT_X86 1
#include <immintrin.h>
#endif

#define QKD_SIFT_MAX_CLASSES 16

int qkd_sift_simd_available(void)
{
#ifdef QKD_SIFT_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("popcnt");
#else
    return 0;
#endif
}

#ifdef QKD_SIFT_X86
#define SIFT_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt,bmi2")))

SIFT_TARGET static inline __mmask64 tail_mask(int64_t left)
{
    return left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
}

SIFT_TARGET static inline int64_t pc(__mmask64 m) { return __builtin_popcountll((unsigned long long)m); }

/* slots strictly increasing over [i, i + len): compares each lane with its predecessor. */
SIFT_TARGET static inline __mmask8 slot_bad(const int64_t *slot, int64_t i, int64_t len)
{
    __mmask8 bad = 0;
    for (int q = 0; q < 8 && q * 8 < len; q++) {
        int64_t base = i + q * 8;
        int64_t left = len - q * 8;
        __mmask8 lanes = left >= 8 ? 0xFF : (__mmask8)((1u << left) - 1);
        if (base == 0) lanes &= 0xFE; /* element 0 has no predecessor; checked by the caller */
        __m512i cur = _mm512_maskz_loadu_epi64(lanes, slot + base);
        __m512i prev = _mm512_maskz_loadu_epi64(lanes, slot + base - 1);
        bad |= _mm512_mask_cmple_epi64_mask(lanes, cur, prev);
    }
    return bad;
}

SIFT_TARGET static int sift_alice_avx512(const int64_t *slot, const uint8_t *bob_basis,
                                         const uint8_t *a_basis, const uint8_t *a_bit,
                                         const uint8_t *a_class, int64_t n, int n_classes,
                                         uint8_t *match, uint8_t *intensity, uint8_t *key,
                                         uint8_t *key_class, uint8_t *test_bits, int64_t *counts,
                                         int64_t *lens)
{
    const __m512i one = _mm512_set1_epi8(1);
    const __m512i kmax = _mm512_set1_epi8((char)n_classes);
    __m512i cls[QKD_SIFT_MAX_CLASSES];
    for (int k = 0; k < n_classes; k++) cls[k] = _mm512_set1_epi8((char)k);
    int64_t j = 0, z = 0, x = 0;
    uint64_t bad = (n > 0 && slot[0] < 0);
    for (int64_t i = 0; i < n; i += 64) {
        __mmask64 t = tail_mask(n - i);
        __m512i vb = _mm512_maskz_loadu_epi8(t, bob_basis + i);
        __m512i va = _mm512_maskz_loadu_epi8(t, a_basis + i);
        __m512i vbit = _mm512_maskz_loadu_epi8(t, a_bit + i);
        __m512i vk = _mm512_maskz_loadu_epi8(t, a_class + i);
        __m512i any = _mm512_or_si512(_mm512_or_si512(vb, va), vbit);
        bad |= _mm512_cmpgt_epu8_mask(any, one) | _mm512_cmpge_epu8_mask(vk, kmax);
        bad |= slot_bad(slot, i, n - i);
        __mmask64 m = _mm512_mask_cmpeq_epi8_mask(t, va, vb);
        __mmask64 am = _mm512_test_epi8_mask(va, va);
        __mmask64 zm = m & ~am, xm = m & am;
        _mm512_mask_storeu_epi8(match + i, t, _mm512_maskz_mov_epi8(m, one));
        _mm512_storeu_si512((void *)(intensity + j), _mm512_maskz_compress_epi8(m, vk));
        _mm512_storeu_si512((void *)(key + z), _mm512_maskz_compress_epi8(zm, vbit));
        _mm512_storeu_si512((void *)(key_class + z), _mm512_maskz_compress_epi8(zm, vk));
        _mm512_storeu_si512((void *)(test_bits + x), _mm512_maskz_compress_epi8(xm, vbit));
        j += pc(m);
        z += pc(zm);
        x += pc(xm);
        for (int k = 0; k < n_classes; k++) {
            __mmask64 ck = _mm512_cmpeq_epi8_mask(vk, cls[k]);
            counts[k] += pc(zm & ck);
            counts[n_classes + k] += pc(xm & ck);
        }
    }
    lens[0] = j;
    lens[1] = z;
    lens[2] = x;
    return bad ? 1 : 0;
}

SIFT_TARGET static int sift_bob_avx512(const uint8_t *bob_basis, const uint8_t *bob_bit,
                                       const uint8_t *match, int64_t n, const uint8_t *intensity,
                                       int64_t n_int, const uint8_t *test_bits, int64_t n_test,
                                       int n_classes, uint8_t *key, uint8_t *key_class,
                                       int64_t *counts, int64_t *x_errors, int64_t *lens)
{
    const __m512i one = _mm512_set1_epi8(1);
    const __m512i kmax = _mm512_set1_epi8((char)n_classes);
    __m512i cls[QKD_SIFT_MAX_CLASSES];
    for (int k = 0; k < n_classes; k++) cls[k] = _mm512_set1_epi8((char)k);
    int64_t j = 0, z = 0, x = 0;
    uint64_t bad = 0;
    for (int64_t i = 0; i < n; i += 64) {
        __mmask64 t = tail_mask(n - i);
        __m512i vb = _mm512_maskz_loadu_epi8(t, bob_basis + i);
        __m512i vbit = _mm512_maskz_loadu_epi8(t, bob_bit + i);
        __m512i vm = _mm512_maskz_loadu_epi8(t, match + i);
        bad |= _mm512_cmpgt_epu8_mask(_mm512_or_si512(vm, vbit), one);
        __mmask64 m = _mm512_test_epi8_mask(vm, vm);
        __mmask64 bm = _mm512_test_epi8_mask(vb, vb);
        __mmask64 zm = m & ~bm, xm = m & bm;
        int64_t nm = pc(m), nx = pc(xm);
        if (j + nm > n_int || x + nx > n_test) {
            lens[0] = j;
            lens[1] = z;
            lens[2] = x;
            return 2;
        }
        /* masked loads read only the bytes the matches consume: never past the reply's arrays */
        __m512i vk = _mm512_maskz_expand_epi8(m, _mm512_maskz_loadu_epi8(tail_mask(nm), intensity + j));
        __m512i vt = _mm512_maskz_expand_epi8(xm, _mm512_maskz_loadu_epi8(tail_mask(nx), test_bits + x));
        bad |= (_mm512_cmpge_epu8_mask(vk, kmax) & m) | (_mm512_cmpgt_epu8_mask(vt, one) & xm);
        __mmask64 err = _mm512_mask_cmpneq_epi8_mask(xm, vbit, vt);
        _mm512_storeu_si512((void *)(key + z), _mm512_maskz_compress_epi8(zm, vbit));
        _mm512_storeu_si512((void *)(key_class + z), _mm512_maskz_compress_epi8(zm, vk));
        j += nm;
        x += nx;
        z += pc(zm);
        for (int k = 0; k < n_classes; k++) {
            __mmask64 ck = _mm512_cmpeq_epi8_mask(vk, cls[k]);
            counts[k] += pc(zm & ck);
            counts[n_classes + k] += pc(xm & ck);
            x_errors[k] += pc(err & ck);
        }
    }
    lens[0] = j;
    lens[1] = z;
    lens[2] = x;
    return bad ? 1 : 0;
}
#endif

static int sift_alice_portable(const int64_t *slot, const uint8_t *bob_basis, const uint8_t *a_basis,
                               const uint8_t *a_bit, const uint8_t *a_class, int64_t n, int n_classes,
                               uint8_t *match, uint8_t *intensity, uint8_t *key, uint8_t *key_class,
                               uint8_t *test_bits, int64_t *counts, int64_t *lens)
{
    int64_t j = 0, z = 0, x = 0;
    int bad = (n > 0 && slot[0] < 0);
    for (int64_t i = 0; i < n; i++) {
        uint8_t b = bob_basis[i], a = a_basis[i], bit = a_bit[i], k = a_class[i];
        bad |= (b | a | bit) > 1 || k >= n_classes || (i > 0 && slot[i] <= slot[i - 1]);
        uint8_t m = (uint8_t)(a == b);
        match[i] = m;
        if (!m) continue;
        intensity[j++] = k;
        int kk = k < n_classes ? k : 0; /* invalid input is flagged above; keep the counts in bounds */
        if (a == 0) {
            key[z] = bit;
            key_class[z++] = k;
            counts[kk] += 1;
        } else {
            test_bits[x++] = bit;
            counts[n_classes + kk] += 1;
        }
    }
    lens[0] = j;
    lens[1] = z;
    lens[2] = x;
    return bad ? 1 : 0;
}

static int sift_bob_portable(const uint8_t *bob_basis, const uint8_t *bob_bit, const uint8_t *match,
                             int64_t n, const uint8_t *intensity, int64_t n_int, const uint8_t *test_bits,
                             int64_t n_test, int n_classes, uint8_t *key, uint8_t *key_class,
                             int64_t *counts, int64_t *x_errors, int64_t *lens)
{
    int64_t j = 0, z = 0, x = 0;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint8_t b = bob_basis[i], bit = bob_bit[i], m = match[i];
        bad |= (m | bit) > 1;
        if (!m) continue;
        if (j >= n_int || (b && x >= n_test)) {
            lens[0] = j;
            lens[1] = z;
            lens[2] = x;
            return 2;
        }
        uint8_t k = intensity[j++];
        bad |= k >= n_classes;
        int kk = k < n_classes ? k : 0;
        if (b == 0) {
            key[z] = bit;
            key_class[z++] = k;
            counts[kk] += 1;
        } else {
            uint8_t t = test_bits[x++];
            bad |= t > 1;
            counts[n_classes + kk] += 1;
            x_errors[kk] += (bit != t);
        }
    }
    lens[0] = j;
    lens[1] = z;
    lens[2] = x;
    return bad ? 1 : 0;
}

int qkd_sift_alice(int path, const int64_t *slot, const uint8_t *bob_basis, const uint8_t *a_basis,
                   const uint8_t *a_bit, const uint8_t *a_class, int64_t n, int n_classes,
                   uint8_t *match, uint8_t *intensity, uint8_t *key, uint8_t *key_class,
                   uint8_t *test_bits, int64_t *counts, int64_t *lens)
{
    if (n < 0 || n_classes < 1 || n_classes > QKD_SIFT_MAX_CLASSES) return -2;
    if (path == QKD_SIFT_PORTABLE)
        return sift_alice_portable(slot, bob_basis, a_basis, a_bit, a_class, n, n_classes, match,
                                   intensity, key, key_class, test_bits, counts, lens);
#ifdef QKD_SIFT_X86
    if (path == QKD_SIFT_VBMI2 && qkd_sift_simd_available())
        return sift_alice_avx512(slot, bob_basis, a_basis, a_bit, a_class, n, n_classes, match,
                                 intensity, key, key_class, test_bits, counts, lens);
#endif
    return -1;
}

int qkd_sift_bob(int path, const uint8_t *bob_basis, const uint8_t *bob_bit, const uint8_t *match, int64_t n,
                 const uint8_t *intensity, int64_t n_int, const uint8_t *test_bits, int64_t n_test,
                 int n_classes, uint8_t *key, uint8_t *key_class, int64_t *counts,
                 int64_t *x_errors, int64_t *lens)
{
    if (n < 0 || n_int < 0 || n_test < 0 || n_classes < 1 || n_classes > QKD_SIFT_MAX_CLASSES)
        return -2;
    if (path == QKD_SIFT_PORTABLE)
        return sift_bob_portable(bob_basis, bob_bit, match, n, intensity, n_int, test_bits, n_test,
                                 n_classes, key, key_class, counts, x_errors, lens);
#ifdef QKD_SIFT_X86
    if (path == QKD_SIFT_VBMI2 && qkd_sift_simd_available())
        return sift_bob_avx512(bob_basis, bob_bit, match, n, intensity, n_int, test_bits, n_test,
                               n_classes, key, key_class, counts, x_errors, lens);
#endif
    return -1;
}
