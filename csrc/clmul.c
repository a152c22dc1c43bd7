/* Which carry-less multiplication path the kernels may use on the running CPU. */
#include "clmul.h"
#include "cpu_features.h"

int qkd_resolve_path(int requested)
{
    int f = qkd_cpu_features();
    int best = QKD_PATH_PORTABLE;
#if QKD_X86
    if (f & QKD_CPU_PCLMUL) best = QKD_PATH_PCLMUL;
    if ((f & QKD_CPU_PCLMUL) && (f & QKD_CPU_VPCLMUL)) best = QKD_PATH_VPCLMUL;
#else
    (void)f;
#endif
    switch (requested) {
    case QKD_PATH_AUTO:
        return best;
    case QKD_PATH_PORTABLE:
        return QKD_PATH_PORTABLE;
    case QKD_PATH_PCLMUL:
    case QKD_PATH_VPCLMUL:
        return requested <= best ? requested : QKD_ENOPATH;
    default:
        return QKD_ENOPATH;
    }
}
