/* Run-time CPU feature detection: the fast kernels are compiled with target attributes and
 * only called when the running CPU has the instructions. */
#include "cpu_features.h"

int qkd_cpu_features(void)
{
    int f = 0;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("pclmul")) f |= QKD_CPU_PCLMUL;
    if (__builtin_cpu_supports("popcnt")) f |= QKD_CPU_POPCNT;
    if (__builtin_cpu_supports("avx2")) f |= QKD_CPU_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl"))
        f |= QKD_CPU_AVX512;
    if ((f & QKD_CPU_AVX512) && __builtin_cpu_supports("vpclmulqdq")) f |= QKD_CPU_VPCLMUL;
#endif
    return f;
}
