/* Sifting kernels: compaction of matched detections with AVX-512 VBMI2 byte compress/expand, and
 * a portable scalar C path with the same contract, so the C binding is tested on every CPU. The
 * numba kernels in postprocessing/sifting.py are the reference (and the default without VBMI2). */
#ifndef QKD_SIFTING_H
#define QKD_SIFTING_H

#include <stdint.h>

/* CFFI-BEGIN */
/* Output buffers of the sift kernels must hold n + QKD_SIFT_PAD bytes (full-vector stores). */
#define QKD_SIFT_PAD 64

/* Kernel paths of qkd_sift_alice / qkd_sift_bob. */
#define QKD_SIFT_PORTABLE 0
#define QKD_SIFT_VBMI2 1

/* 1 when this CPU runs the AVX-512 VBMI2 sift kernels, else 0 (callers use the numba path). */
int qkd_sift_simd_available(void);

/* Both functions take `path` first (QKD_SIFT_PORTABLE or QKD_SIFT_VBMI2) and return -1 when this
 * CPU cannot run the path asked for, -2 for bad sizes.
 * Alice's side. Returns 0, or 1 when some input is invalid (a basis/bit above 1, a class >=
 * n_classes, slots not strictly increasing or negative); the caller then locates it with its
 * checked kernel. lens receives the lengths of intensity, key and test_bits. counts has
 * 2 * n_classes entries [basis * n_classes + class] and is added to. */
int qkd_sift_alice(int path, const int64_t *slot, const uint8_t *bob_basis, const uint8_t *a_basis,
                   const uint8_t *a_bit, const uint8_t *a_class, int64_t n, int n_classes,
                   uint8_t *match, uint8_t *intensity, uint8_t *key, uint8_t *key_class,
                   uint8_t *test_bits, int64_t *counts, int64_t *lens);

/* Bob's side. Returns 0, 1 for an invalid value, 2 when the reply's intensity or test-bit arrays
 * are shorter than the matches need. x_errors has n_classes entries. lens receives how many
 * intensity classes and test bits were consumed and the key length. */
int qkd_sift_bob(int path, const uint8_t *bob_basis, const uint8_t *bob_bit, const uint8_t *match, int64_t n,
                 const uint8_t *intensity, int64_t n_int, const uint8_t *test_bits, int64_t n_test,
                 int n_classes, uint8_t *key, uint8_t *key_class, int64_t *counts,
                 int64_t *x_errors, int64_t *lens);
/* CFFI-END */

#endif
