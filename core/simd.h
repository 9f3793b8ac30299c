// Vector-width dispatch for the few hand-written hot loops (SAE kernels, fused Adam). The build
// targets baseline x86-64 (SSE2) so that binaries run anywhere; a function marked
// SAELAB_VECTOR_CLONES is compiled twice, for x86-64-v3 CPUs (AVX2, FMA: Haswell and later Intel,
// Zen and later AMD) and the baseline, and the loader picks the clone the CPU supports. The ISA
// level, not "arch=haswell": GCC dispatches an arch= clone on the CPU model, so every CPU but a
// Haswell (any AMD, any later Intel) ran the baseline SSE2 clone. Lambdas inside such a function
// are not cloned: keep the loop itself in the marked function. With FMA, float32 sums round differently in the
// last bits than without; every test compares with tolerances.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define SAELAB_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SAELAB_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))  // dispatched on the feature too
#else
#define SAELAB_VECTOR_CLONES
#endif

/// For helpers called from a SAELAB_VECTOR_CLONES function: inlined into each clone, so that they
/// are compiled for its target too (a helper left out of line runs the baseline code).
#define SAELAB_INLINE __attribute__((always_inline)) inline
