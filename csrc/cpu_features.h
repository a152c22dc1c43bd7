/* Run-time CPU feature detection for the C core's dispatch. */
#ifndef QKD_CPU_FEATURES_H
#define QKD_CPU_FEATURES_H

/* CFFI-BEGIN */
/* Bit flags returned by qkd_cpu_features(). */
#define QKD_CPU_PCLMUL 1
#define QKD_CPU_AVX2 2
#define QKD_CPU_AVX512 4
#define QKD_CPU_VPCLMUL 8
#define QKD_CPU_POPCNT 16

/* Features this CPU has and this build can use (a bitwise OR of the QKD_CPU_* flags). */
int qkd_cpu_features(void);
/* CFFI-END */

#endif
