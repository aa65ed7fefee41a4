// Splits rows [0, n_rows) into one contiguous range per thread, for the kernels of this
// package, preferably on the threads of the OpenMP runtime that torch already runs.
//
// Why torch's threads: after each parallel torch operation, its OpenMP workers spin for a
// while waiting for the next one. Threads of our own, started right after a matmul, share
// the cores with those spinning workers: on 2 cores a 2-thread kernel then ran no faster
// than on one thread (11 ms against 6 for the top-k of 4096 x 4096). Running the kernel as
// an OpenMP parallel region hands the rows to the workers that are spinning anyway.
//
// The runtime is found by name among the libraries already loaded (GOMP_parallel is the
// entry point GNU, LLVM and Intel OpenMP all export; torch's CPU wheels load theirs
// globally). Where none is found, or SAECORE_TOPK_KERNEL_THREADS=std asks for it (the tests
// do), the rows go to std::threads instead; if the system refuses a thread, the caller runs
// that thread's ranges itself. Every row is done exactly once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#define SAECORE_KERNELS_DLSYM 1
#else
#define SAECORE_KERNELS_DLSYM 0
#endif

struct OpenMpRuntime {
  void (*parallel)(void (*)(void*), void*, unsigned, unsigned);
  int (*thread_num)();
  int (*num_threads)();
};

// The OpenMP runtime loaded in this process, or nullptr. Looked up once.
inline const OpenMpRuntime* loaded_openmp() {
#if SAECORE_KERNELS_DLSYM
  static const OpenMpRuntime runtime = [] {
    OpenMpRuntime found{};
    const char* requested = std::getenv("SAECORE_TOPK_KERNEL_THREADS");
    if (requested != nullptr && std::strcmp(requested, "std") == 0) return found;
    found.parallel = reinterpret_cast<decltype(found.parallel)>(dlsym(RTLD_DEFAULT, "GOMP_parallel"));
    found.thread_num = reinterpret_cast<decltype(found.thread_num)>(dlsym(RTLD_DEFAULT, "omp_get_thread_num"));
    found.num_threads = reinterpret_cast<decltype(found.num_threads)>(dlsym(RTLD_DEFAULT, "omp_get_num_threads"));
    return found;
  }();
  if (runtime.parallel != nullptr && runtime.thread_num != nullptr && runtime.num_threads != nullptr) return &runtime;
#endif
  return nullptr;
}

template <typename RunRows>
struct OpenMpRows {
  const RunRows* run_rows;
  const OpenMpRuntime* runtime;
  int64_t n_rows;

  // Each member of the team takes its share; the team may be smaller than asked for.
  static void run(void* data) {
    const auto* self = static_cast<const OpenMpRows*>(data);
    const int64_t team = self->runtime->num_threads(), member = self->runtime->thread_num();
    const int64_t per_member = (self->n_rows + team - 1) / team;
    const int64_t first = member * per_member, last = std::min(self->n_rows, first + per_member);
    if (first < last) (*self->run_rows)(first, last);
  }
};

template <typename RunRows>
void parallel_rows_on_std_threads(int64_t n_rows, int64_t workers, const RunRows& run_rows) {
  const int64_t per_worker = (n_rows + workers - 1) / workers;
  const auto range_end = [&](int64_t first) { return std::min<int64_t>(n_rows, first + per_worker); };
  std::vector<std::thread> pool;
  int64_t next_worker = 1;
  try {
    for (; next_worker < workers; ++next_worker) {
      const int64_t first = next_worker * per_worker;
      if (first < n_rows) pool.emplace_back(run_rows, first, range_end(first));
    }
  } catch (const std::exception&) {
    // Fewer threads than asked for: the rest is done below, on this thread.
  }
  run_rows(int64_t{0}, range_end(0));
  for (auto& worker : pool) worker.join();
  for (; next_worker < workers; ++next_worker) {
    const int64_t first = next_worker * per_worker;
    if (first < n_rows) run_rows(first, range_end(first));
  }
}

// run_rows(first, last) must not throw.
template <typename RunRows>
void parallel_rows(int64_t n_rows, int64_t threads, const RunRows& run_rows) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, n_rows));
  if (workers == 1) {
    if (n_rows > 0) run_rows(int64_t{0}, n_rows);
    return;
  }
  if (const OpenMpRuntime* runtime = loaded_openmp()) {
    OpenMpRows<RunRows> rows{&run_rows, runtime, n_rows};
    runtime->parallel(&OpenMpRows<RunRows>::run, &rows, static_cast<unsigned>(workers), 0);
    return;
  }
  parallel_rows_on_std_threads(n_rows, workers, run_rows);
}
