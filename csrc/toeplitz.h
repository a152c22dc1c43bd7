/* Toeplitz hashing (privacy amplification) of packed bits: y = bits [n-1, n-1+l) of S(z)·X(z). */
#ifndef QKD_TOEPLITZ_H
#define QKD_TOEPLITZ_H

#include <stddef.h>
#include <stdint.h>

/* CFFI-BEGIN */
/* Most threads one call may use. */
#define QKD_MAX_THREADS 64

/* y[i] = XOR_j s[i - j + n - 1] & x[j] for 0 <= i < l, 0 <= j < n (DESIGN §3), on packed words.
 * x: ceil(n/64) words, s: ceil((n+l-1)/64) words, y: ceil(l/64) words (written, padding zeroed).
 * Bits of x and s above their lengths are ignored. `threads` (1..QKD_MAX_THREADS) threads share
 * the work (one where the platform has no POSIX threads). `path` is one of QKD_PATH_* (clmul.h).
 * Returns QKD_OK or a negative code. */
int qkd_toeplitz_words(const uint64_t *x, size_t n, const uint64_t *s, size_t l, uint64_t *y, int path,
                       int threads);
/* CFFI-END */

#endif
