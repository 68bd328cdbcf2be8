/* ops_internal.h - what the ops*.c files share beyond ops.h (not for other files). */
#ifndef T2I_OPS_INTERNAL_H
#define T2I_OPS_INTERNAL_H

#include "fastmath.h"

/* Elementwise loops below this size run on one thread: forking costs more. */
#define PAR_MIN 16384

static inline float sigmoidf(float x) { return 1.0f / (1.0f + t2i_expf(-x)); }

#endif
