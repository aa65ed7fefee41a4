// Splits rows [0, n_rows) into one contiguous range per worker thread, for the kernels of
// this package. The caller's thread takes the first range; if the system refuses a thread,
// the caller runs that thread's ranges itself, so every row is always done once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

template <typename RunRows>
void parallel_rows(int64_t n_rows, int64_t threads, const RunRows& run_rows) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(threads, n_rows));
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
