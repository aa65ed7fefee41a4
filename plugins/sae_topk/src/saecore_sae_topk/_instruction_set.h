// Which vector instruction set the kernels of this package use: the widest the CPU has among
// AVX-512F, AVX2 with FMA and plain C++, or a narrower one named by the environment variable
// SAECORE_TOPK_KERNEL_ISA ("avx2" or "generic"), which lets the tests run every version on
// one machine. Chosen once, when a kernel module is loaded.
#pragma once

#include <cstdlib>
#include <cstring>

#if defined(__GNUC__) && defined(__x86_64__)
#define SAECORE_KERNELS_X86 1
#include <immintrin.h>
#else
#define SAECORE_KERNELS_X86 0
#endif

// Bodies written once and inlined into one wrapper per instruction set, where the compiler
// vectorises them for that set.
#if defined(__GNUC__)
#define SAECORE_KERNELS_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define SAECORE_KERNELS_ALWAYS_INLINE inline
#endif

enum class InstructionSet { generic, avx2, avx512 };

inline InstructionSet pick_instruction_set() {
  const char* requested = std::getenv("SAECORE_TOPK_KERNEL_ISA");
  if (requested != nullptr && std::strcmp(requested, "generic") == 0) return InstructionSet::generic;
#if SAECORE_KERNELS_X86
  __builtin_cpu_init();
  const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx2_requested = requested != nullptr && std::strcmp(requested, "avx2") == 0;
  if (__builtin_cpu_supports("avx512f") && !avx2_requested) return InstructionSet::avx512;
  if (has_avx2) return InstructionSet::avx2;
#endif
  return InstructionSet::generic;
}

inline const char* instruction_set_name(InstructionSet set) {
  switch (set) {
    case InstructionSet::avx512:
      return "avx512f";
    case InstructionSet::avx2:
      return "avx2";
    default:
      return "generic";
  }
}
