/* Carry-less multiplication of 64-bit words, shared by the Toeplitz and polynomial-hash kernels.
 *
 * The portable multiplier works on a table of the 16 multiples of one operand, indexed by the
 * nibbles of the other. Callers build the table from the SECRET operand and index it with the
 * PUBLIC one (Toeplitz seed, hash key), so memory addresses never depend on key material.
 * The hardware paths (PCLMULQDQ, VPCLMULQDQ) live in the kernels under target attributes. */
#ifndef QKD_CLMUL_H
#define QKD_CLMUL_H

#include <stdint.h>

/* CFFI-BEGIN */
/* Carry-less multiplication paths of the kernels: AUTO picks the fastest the CPU has. */
#define QKD_PATH_AUTO 0
#define QKD_PATH_PORTABLE 1
#define QKD_PATH_PCLMUL 2
#define QKD_PATH_VPCLMUL 3

/* Return codes of the C core's kernels. */
#define QKD_OK 0
#define QKD_EINVAL -1
#define QKD_ENOMEM -2
#define QKD_ENOPATH -3

/* The path `requested` resolves to on this CPU, or QKD_ENOPATH if the CPU lacks it. */
int qkd_resolve_path(int requested);
/* CFFI-END */

/* Whether the hardware paths are compiled in: x86-64 with GCC or Clang, unless the build asks for
 * the portable path alone (-DQKD_PORTABLE_ONLY, used to test what other CPUs run). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(QKD_PORTABLE_ONLY)
#define QKD_X86 1
#else
#define QKD_X86 0
#endif

/* The 16 carry-less multiples of a word `a` (truncated to 64 bits) plus the masks that repair the
 * bits the truncation lost (products of a's top three bits). */
typedef struct {
    uint64_t mult[16];
    uint64_t fix1, fix2, fix3; /* all-ones when bit 63 / 62 / 61 of a is set */
} qkd_clmul_table;

static inline void qkd_clmul_table_init(qkd_clmul_table *tb, uint64_t a)
{
    uint64_t *u = tb->mult;
    u[0] = 0;
    u[1] = a;
    u[2] = a << 1;
    u[3] = u[2] ^ a;
    u[4] = a << 2;
    u[5] = u[4] ^ a;
    u[6] = u[3] << 1;
    u[7] = u[6] ^ a;
    u[8] = a << 3;
    u[9] = u[8] ^ a;
    u[10] = u[5] << 1;
    u[11] = u[10] ^ a;
    u[12] = u[6] << 1;
    u[13] = u[12] ^ a;
    u[14] = u[7] << 1;
    u[15] = u[14] ^ a;
    tb->fix1 = (uint64_t)0 - (a >> 63);
    tb->fix2 = (uint64_t)0 - ((a >> 62) & 1);
    tb->fix3 = (uint64_t)0 - ((a >> 61) & 1);
}

/* (hi, lo) = a * b over GF(2)[z], with a given by its table and b the public operand. */
static inline void qkd_clmul_soft(const qkd_clmul_table *tb, uint64_t b, uint64_t *lo, uint64_t *hi)
{
    const uint64_t *u = tb->mult;
    uint64_t l = u[b & 15], h = 0, g;
    for (int i = 4; i < 64; i += 4) {
        g = u[(b >> i) & 15];
        l ^= g << i;
        h ^= g >> (64 - i);
    }
    /* a's bits 63, 62, 61 times b's nibble bits that pushed them past bit 63 of a table entry */
    h ^= ((b & 0xEEEEEEEEEEEEEEEEull) >> 1) & tb->fix1;
    h ^= ((b & 0xCCCCCCCCCCCCCCCCull) >> 2) & tb->fix2;
    h ^= ((b & 0x8888888888888888ull) >> 3) & tb->fix3;
    *lo = l;
    *hi = h;
}

#endif
