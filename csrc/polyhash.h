/* Verification hash: polynomial evaluation over GF(2^64), one 64-bit tag word per key. */
#ifndef QKD_POLYHASH_H
#define QKD_POLYHASH_H

#include <stddef.h>
#include <stdint.h>

/* CFFI-BEGIN */
/* For each key k_i: tag_i = sum_{j=1..L} w_j k_i^(L+2-j) + n_bits k_i in GF(2^64) modulo
 * z^64 + z^4 + z^3 + z + 1, with w the L = nwords packed words of the key being verified (Horner
 * over the words, then the bit length). Two different keys collide under one random k_i with
 * probability at most (L+1)/2^64. `path` is one of QKD_PATH_* (clmul.h). Returns QKD_OK or a
 * negative code. */
int qkd_polyhash(const uint64_t *w, size_t nwords, uint64_t n_bits, const uint64_t *keys, size_t nkeys,
                 uint64_t *tags, int path);
/* a * b in the same field (exposed for the tests). */
uint64_t qkd_gf64_mul(uint64_t a, uint64_t b);
/* CFFI-END */

#endif
