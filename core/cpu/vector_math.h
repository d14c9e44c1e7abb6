// core/cpu/vector_math.h — lets the compiler vectorise calls to libm in kernel loops.
//
// glibc's libmvec has SIMD versions of expf, logf, tanhf, erff, ... (x86-64, glibc >= 2.35 for the
// hyperbolic and error functions), but glibc declares them only under -ffast-math, which would also
// drop NaN/inf semantics. Redeclaring the scalar functions with the `simd` attribute gives the
// vectoriser the same permission without changing floating-point semantics; -fno-math-errno (set for
// core/) is still required. Include this header before <cmath> in kernel sources.
#pragma once

#if defined(__x86_64__) && __has_include(<features.h>)
#include <features.h>  // defines __GLIBC__
#endif
#if defined(__x86_64__) && defined(__GLIBC__)
#if __GLIBC_PREREQ(2, 35)
#define MODU_SIMD_MATH __attribute__((__simd__("notinbranch")))
extern "C" {
MODU_SIMD_MATH float expf(float) noexcept;
MODU_SIMD_MATH float logf(float) noexcept;
MODU_SIMD_MATH float tanhf(float) noexcept;
MODU_SIMD_MATH float erff(float) noexcept;
MODU_SIMD_MATH float expm1f(float) noexcept;
MODU_SIMD_MATH float log1pf(float) noexcept;
MODU_SIMD_MATH float sinf(float) noexcept;
MODU_SIMD_MATH float cosf(float) noexcept;
MODU_SIMD_MATH float powf(float, float) noexcept;
MODU_SIMD_MATH double exp(double) noexcept;
MODU_SIMD_MATH double log(double) noexcept;
MODU_SIMD_MATH double tanh(double) noexcept;
MODU_SIMD_MATH double erf(double) noexcept;
MODU_SIMD_MATH double log1p(double) noexcept;
MODU_SIMD_MATH double sin(double) noexcept;
MODU_SIMD_MATH double cos(double) noexcept;
}
#undef MODU_SIMD_MATH
#define MODU_HAVE_SIMD_MATH 1
#endif
#endif
