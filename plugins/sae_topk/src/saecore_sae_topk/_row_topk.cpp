// Exact top-k along each row of a float32 matrix: a TopK SAE's selection step on CPU.
//
// torch.topk on CPU copies every row into (value, index) pairs and partially sorts them,
// which costs a sixth of a TopK training step (25 ms for 4096 rows of 4096 at k = 32 on two
// cores). Selection can read each row twice and sort almost nothing:
//
//   1. Split the row into G interleaved groups (element j is in group j mod G) and take each
//      group's maximum: an elementwise max over consecutive G-wide slices, fully vectorised.
//   2. t = the k-th largest of those G maxima. k distinct elements (those maxima) are >= t,
//      so the row's k-th largest value is >= t, and so is every element of its top k.
//   3. Keep the indices of the entries >= t (a vector compare and compress; about 1% of a
//      row when G = 2k), find the exact k-th value among them by nth_element, and keep the
//      k - 1 entries above it and one equal to it.
//
// Where k is too large a share of the row for groups to pay (n < 16k, as for AuxK's 256 of a
// few hundred dead latents), rows are bucketed by value instead (select_by_buckets): a
// histogram finds the bucket of the k-th value, and only that bucket's few entries are
// ranked. Rows holding a NaN or an infinity rank all their indices with nth_element, NaN
// above every number as torch.topk does. Every route gives the set of values torch.topk
// returns; only which of several entries tied at the k-th value is chosen can differ. The k
// outputs of a row come in no particular order.
//
// Called from Python with raw addresses (the wrapper checks dtype, device and layout); the
// GIL is released, and the rows are split across threads (_parallel_rows.h).

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "_instruction_set.h"
#include "_parallel_rows.h"

namespace {

// NaN ranks above every number; otherwise the usual order. A strict weak ordering.
inline bool ranks_above(float a, float b) { return a > b || (std::isnan(a) && !std::isnan(b)); }

// Writes the indices j of row[0, n) with row[j] >= t to out (capacity n + 16); returns how many.
using KeepFn = int64_t (*)(const float*, int64_t, float, int32_t*);

int64_t keep_at_least_scalar(const float* row, int64_t n, float t, int32_t* out) {
  int64_t count = 0;
  for (int64_t j = 0; j < n; ++j) {
    out[count] = static_cast<int32_t>(j);
    count += row[j] >= t;
  }
  return count;
}

#if SAECORE_KERNELS_X86
__attribute__((target("avx2"))) int64_t keep_at_least_avx2(const float* row, int64_t n, float t, int32_t* out) {
  const __m256 threshold = _mm256_set1_ps(t);
  int64_t count = 0, j = 0;
  for (; j + 8 <= n; j += 8) {
    unsigned bits = static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row + j), threshold, _CMP_GE_OQ)));
    while (bits != 0) {
      out[count++] = static_cast<int32_t>(j + __builtin_ctz(bits));
      bits &= bits - 1;
    }
  }
  for (; j < n; ++j) {
    out[count] = static_cast<int32_t>(j);
    count += row[j] >= t;
  }
  return count;
}

// Compresses into a register and stores it whole: a masked compress *to memory* is
// microcoded and slow on AMD Zen 4. out has 16 slots of slack for the full-width store.
__attribute__((target("avx512f"))) int64_t keep_at_least_avx512(const float* row, int64_t n, float t, int32_t* out) {
  const __m512 threshold = _mm512_set1_ps(t);
  const __m512i sixteen = _mm512_set1_epi32(16);
  __m512i positions = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int64_t count = 0, j = 0;
  for (; j + 16 <= n; j += 16) {
    const __mmask16 mask = _mm512_cmp_ps_mask(_mm512_loadu_ps(row + j), threshold, _CMP_GE_OQ);
    if (mask != 0) {
      _mm512_storeu_si512(out + count, _mm512_maskz_compress_epi32(mask, positions));
      count += __builtin_popcount(static_cast<unsigned>(mask));
    }
    positions = _mm512_add_epi32(positions, sixteen);
  }
  for (; j < n; ++j) {
    out[count] = static_cast<int32_t>(j);
    count += row[j] >= t;
  }
  return count;
}

#endif

// maxima[g] = max of row[j] over j ≡ g (mod G), for G <= n. Inlined into one wrapper per
// instruction set, where the compiler vectorises its loops.
SAECORE_KERNELS_ALWAYS_INLINE void group_maxima_body(const float* row, int64_t n, int64_t G, float* maxima) {
  for (int64_t g = 0; g < G; ++g) maxima[g] = row[g];
  int64_t start = G;
  for (; start + G <= n; start += G) {
    const float* slice = row + start;
    for (int64_t g = 0; g < G; ++g) maxima[g] = slice[g] > maxima[g] ? slice[g] : maxima[g];
  }
  for (int64_t j = start; j < n; ++j) {
    maxima[j - start] = row[j] > maxima[j - start] ? row[j] : maxima[j - start];
  }
}

// False when the row holds a NaN or an infinity (all exponent bits set): thresholds cannot rank those.
SAECORE_KERNELS_ALWAYS_INLINE bool all_finite_body(const float* row, int64_t n) {
  uint32_t largest_exponent = 0;
  for (int64_t j = 0; j < n; ++j) {
    uint32_t bits;
    std::memcpy(&bits, row + j, sizeof bits);
    largest_exponent = std::max(largest_exponent, bits & 0x7f800000u);
  }
  return largest_exponent != 0x7f800000u;
}

void group_maxima_generic(const float* row, int64_t n, int64_t G, float* maxima) {
  group_maxima_body(row, n, G, maxima);
}
bool all_finite_generic(const float* row, int64_t n) { return all_finite_body(row, n); }

#if SAECORE_KERNELS_X86
__attribute__((target("avx2"))) void group_maxima_avx2(const float* row, int64_t n, int64_t G, float* maxima) {
  group_maxima_body(row, n, G, maxima);
}
__attribute__((target("avx2"))) bool all_finite_avx2(const float* row, int64_t n) { return all_finite_body(row, n); }

__attribute__((target("avx512f"))) void group_maxima_avx512(const float* row, int64_t n, int64_t G, float* maxima) {
  group_maxima_body(row, n, G, maxima);
}
__attribute__((target("avx512f"))) bool all_finite_avx512(const float* row, int64_t n) {
  return all_finite_body(row, n);
}
#endif

using MaximaFn = void (*)(const float*, int64_t, int64_t, float*);
using FiniteFn = bool (*)(const float*, int64_t);

struct Kernels {
  KeepFn keep;
  MaximaFn maxima;
  FiniteFn finite;
};

const InstructionSet kInstructionSet = pick_instruction_set();

Kernels pick_kernels() {
#if SAECORE_KERNELS_X86
  if (kInstructionSet == InstructionSet::avx512) return {keep_at_least_avx512, group_maxima_avx512, all_finite_avx512};
  if (kInstructionSet == InstructionSet::avx2) return {keep_at_least_avx2, group_maxima_avx2, all_finite_avx2};
#endif
  return {keep_at_least_scalar, group_maxima_generic, all_finite_generic};
}

const Kernels kKernels = pick_kernels();

struct Job {
  const float* src;
  int64_t row_stride;
  int64_t n;
  int64_t k;
  int64_t groups;  // > 0: bound each row by its k-th largest group maximum; 0: bucket the row
  float* values;
  int64_t* indices;
};

// The group count: 2k rounded up to a multiple of 16 (measured best at k = 32 and 64), or 0
// for the bucket route when groups would hold fewer than eight entries each (k above about
// n/16). Measured on 4096 rows, 2 cores, in ms, groups against buckets: n 4096, k 32: 5.9
// against 15.1; n 8192, k 256: 28.0 against 30.5; n 4915, k 384: 30.1 against 19.6; n 3000,
// k 256: 19.9 against 12.0.
int64_t group_count(int64_t n, int64_t k) {
  const int64_t groups = (2 * k + 15) / 16 * 16;
  return 8 * groups <= n ? groups : 0;
}

void write_row(const Job& job, int64_t r, const float* row, const int32_t* chosen) {
  float* values = job.values + r * job.k;
  int64_t* indices = job.indices + r * job.k;
  for (int64_t i = 0; i < job.k; ++i) {
    values[i] = row[chosen[i]];
    indices[i] = chosen[i];
  }
}

// Rows with a NaN or an infinity: nth_element over the whole row, NaN ranked highest.
void select_non_finite(const Job& job, int64_t r, const float* row, std::vector<int32_t>& candidates) {
  for (int64_t j = 0; j < job.n; ++j) candidates[j] = static_cast<int32_t>(j);
  std::nth_element(candidates.begin(), candidates.begin() + (job.k - 1), candidates.begin() + job.n,
                   [row](int32_t a, int32_t b) { return ranks_above(row[a], row[b]); });
  write_row(job, r, row, candidates.data());
}

// The k-th largest group maximum: at most the row's k-th largest value.
float group_bound(const Job& job, const float* row, std::vector<float>& maxima) {
  kKernels.maxima(row, job.n, job.groups, maxima.data());
  std::nth_element(maxima.begin(), maxima.begin() + (job.k - 1), maxima.begin() + job.groups,
                   [](float a, float b) { return a > b; });
  return maxima[job.k - 1];
}

constexpr int kBuckets = 256;

// Scratch space of one thread for the bucket route.
struct Buckets {
  std::vector<int32_t> ids;       // each entry's bucket
  std::vector<int32_t> boundary;  // the entries in the bucket holding the k-th value
  int64_t counts[kBuckets];
};

// Selects a finite row's top k into chosen [0, k) by bucketing its values: bucket(v) =
// floor((v - min) · 256 / (max - min)) is monotone in v, so every entry of a higher bucket
// is larger than every entry of a lower one. A histogram finds the bucket b holding the k-th
// value; the entries above b are all kept, and nth_element picks the rest among b's few
// entries. Used where k is too large a share of the row for group maxima to bound it well.
// Returns false, choosing nothing, when the range overflows float (|values| near 3e38).
bool select_by_buckets(const Job& job, const float* row, int32_t* chosen, Buckets& buckets) {
  const int64_t n = job.n;
  float low = row[0], high = row[0];
  for (int64_t j = 1; j < n; ++j) {
    low = row[j] < low ? row[j] : low;
    high = row[j] > high ? row[j] : high;
  }
  if (!(high > low)) {  // all equal: any k entries
    for (int64_t i = 0; i < job.k; ++i) chosen[i] = static_cast<int32_t>(i);
    return true;
  }
  const float scale = static_cast<float>(kBuckets) / (high - low);
  if (!std::isfinite(scale) || !(scale > 0.0f)) return false;
  int32_t* ids = buckets.ids.data();
  for (int64_t j = 0; j < n; ++j) {
    const int32_t id = static_cast<int32_t>((row[j] - low) * scale);
    ids[j] = id < kBuckets ? id : kBuckets - 1;
  }
  std::fill(buckets.counts, buckets.counts + kBuckets, 0);
  for (int64_t j = 0; j < n; ++j) ++buckets.counts[ids[j]];
  int32_t b = kBuckets - 1;
  int64_t above = 0;
  while (above + buckets.counts[b] < job.k) above += buckets.counts[b--];
  int32_t* boundary = buckets.boundary.data();
  int64_t n_above = 0, n_boundary = 0;
  for (int64_t j = 0; j < n; ++j) {
    chosen[n_above] = static_cast<int32_t>(j);
    n_above += ids[j] > b;
    boundary[n_boundary] = static_cast<int32_t>(j);
    n_boundary += ids[j] == b;
  }
  const int64_t wanted = job.k - n_above;
  std::nth_element(boundary, boundary + (wanted - 1), boundary + n_boundary,
                   [row](int32_t x, int32_t y) { return row[x] > row[y]; });
  std::copy(boundary, boundary + wanted, chosen + n_above);
  return true;
}

// Reduces candidates [0, kept), all of the row's entries >= some bound and at least k of
// them, to the row's top k in candidates [0, k): the exact k-th value t by nth_element on
// the candidates' values (cheaper than ranking indices), then one branch-free pass keeps
// the k - 1 entries above t (when no other entry ties with t) and remembers one equal to it.
void keep_top_k(const Job& job, const float* row, int32_t* candidates, int64_t kept, std::vector<float>& scratch) {
  if (kept == job.k) return;
  for (int64_t i = 0; i < kept; ++i) scratch[i] = row[candidates[i]];
  std::nth_element(scratch.begin(), scratch.begin() + (job.k - 1), scratch.begin() + kept,
                   [](float a, float b) { return a > b; });
  const float t = scratch[job.k - 1];
  int64_t above = 0;
  int32_t at_t = candidates[0];
  for (int64_t i = 0; i < kept; ++i) {
    const int32_t candidate = candidates[i];
    const float value = row[candidate];
    candidates[above] = candidate;
    above += value > t;
    at_t = value == t ? candidate : at_t;
  }
  if (above == job.k - 1) {
    candidates[above] = at_t;
    return;
  }
  // Several entries tie at t: take the row's entries above it, then tied ones in index order.
  const int64_t at_least_t = kKernels.keep(row, job.n, t, candidates);
  std::stable_partition(candidates, candidates + at_least_t, [row, t](int32_t j) { return row[j] > t; });
}

void select_rows(const Job& job, int64_t first, int64_t last, std::atomic<bool>* failed) {
  try {
    std::vector<int32_t> candidates(job.n + 16);
    std::vector<float> scratch(std::max(job.n, job.groups));
    const int64_t bucket_entries = job.groups > 0 ? 0 : job.n;
    Buckets buckets{std::vector<int32_t>(bucket_entries), std::vector<int32_t>(bucket_entries), {}};
    for (int64_t r = first; r < last; ++r) {
      const float* row = job.src + r * job.row_stride;
      if (!kKernels.finite(row, job.n)) {
        select_non_finite(job, r, row, candidates);
        continue;
      }
      if (job.groups > 0) {
        const int64_t kept = kKernels.keep(row, job.n, group_bound(job, row, scratch), candidates.data());
        keep_top_k(job, row, candidates.data(), kept, scratch);
      } else if (!select_by_buckets(job, row, candidates.data(), buckets)) {
        keep_top_k(job, row, candidates.data(), kKernels.keep(row, job.n, -INFINITY, candidates.data()), scratch);
      }
      write_row(job, r, row, candidates.data());
    }
  } catch (const std::bad_alloc&) {
    failed->store(true);
  }
}

PyObject* select_topk(PyObject*, PyObject* args) {
  Py_ssize_t src, n_rows, row_stride, n, k, values, indices, threads;
  if (!PyArg_ParseTuple(args, "nnnnnnnn", &src, &n_rows, &row_stride, &n, &k, &values, &indices, &threads)) {
    return nullptr;
  }
  if (n < 1 || n > INT32_MAX || k < 1 || k > n || n_rows < 0 || row_stride < n || threads < 1) {
    PyErr_Format(PyExc_ValueError,
                 "row_topk: need 1 <= k <= n < 2**31, row_stride >= n and threads >= 1; got n=%zd, k=%zd, "
                 "row_stride=%zd, threads=%zd",
                 n, k, row_stride, threads);
    return nullptr;
  }
  const Job job{reinterpret_cast<const float*>(src), row_stride, n, k, group_count(n, k),
                reinterpret_cast<float*>(values), reinterpret_cast<int64_t*>(indices)};
  std::atomic<bool> failed{false};
  Py_BEGIN_ALLOW_THREADS;
  parallel_rows(n_rows, threads, [&job, &failed](int64_t first, int64_t last) { select_rows(job, first, last, &failed); });
  Py_END_ALLOW_THREADS;
  if (failed.load()) return PyErr_NoMemory();
  Py_RETURN_NONE;
}

// -- entries not below a bound ---------------------------------------------------------
//
// A batch-wide selection (BatchTopK keeps the batch's largest k·N entries) whose cut-off is
// known to lie at or above a bound t needs only the entries with !(v < t): that predicate
// also admits NaN, which torch.topk ranks above every number, so a top-k over these entries
// equals one over the whole matrix whenever at least k of them exist. Two passes over the
// rows: one counts each row's entries (the caller sizes the output from the counts), one
// writes them, row-major, as flat positions r·n + j with their values. Both are a vector
// compare per 16 (AVX-512) or 8 (AVX2) entries; the entries themselves are few.

SAECORE_KERNELS_ALWAYS_INLINE int64_t count_not_below_body(const float* row, int64_t n, float t) {
  int64_t count = 0;
  for (int64_t j = 0; j < n; ++j) count += !(row[j] < t);
  return count;
}

void write_not_below_scalar(const float* row, int64_t n, float t, int64_t base, int64_t* positions, float* values) {
  int64_t count = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (!(row[j] < t)) {
      positions[count] = base + j;
      values[count++] = row[j];
    }
  }
}

int64_t count_not_below_generic(const float* row, int64_t n, float t) { return count_not_below_body(row, n, t); }

#if SAECORE_KERNELS_X86
__attribute__((target("avx2"))) int64_t count_not_below_avx2(const float* row, int64_t n, float t) {
  return count_not_below_body(row, n, t);
}
__attribute__((target("avx512f"))) int64_t count_not_below_avx512(const float* row, int64_t n, float t) {
  return count_not_below_body(row, n, t);
}

// Appends the entries of `row` flagged in `bits` (bit i: column `j + i`) to positions/values; returns the new count.
inline int64_t append_flagged(unsigned bits, const float* row, int64_t j, int64_t base, int64_t* positions,
                              float* values, int64_t count) {
  while (bits != 0) {
    const int64_t at = j + __builtin_ctz(bits);
    positions[count] = base + at;
    values[count++] = row[at];
    bits &= bits - 1;
  }
  return count;
}

__attribute__((target("avx2"))) void write_not_below_avx2(const float* row, int64_t n, float t, int64_t base,
                                                           int64_t* positions, float* values) {
  const __m256 bound = _mm256_set1_ps(t);
  int64_t count = 0, j = 0;
  for (; j + 8 <= n; j += 8) {
    const unsigned bits = static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row + j), bound, _CMP_NLT_UQ)));
    count = append_flagged(bits, row, j, base, positions, values, count);
  }
  write_not_below_scalar(row + j, n - j, t, base + j, positions + count, values + count);
}

__attribute__((target("avx512f"))) void write_not_below_avx512(const float* row, int64_t n, float t, int64_t base,
                                                               int64_t* positions, float* values) {
  const __m512 bound = _mm512_set1_ps(t);
  int64_t count = 0, j = 0;
  for (; j + 16 <= n; j += 16) {
    const unsigned bits = static_cast<unsigned>(_mm512_cmp_ps_mask(_mm512_loadu_ps(row + j), bound, _CMP_NLT_UQ));
    count = append_flagged(bits, row, j, base, positions, values, count);
  }
  write_not_below_scalar(row + j, n - j, t, base + j, positions + count, values + count);
}
#endif

using CountFn = int64_t (*)(const float*, int64_t, float);
using WriteFn = void (*)(const float*, int64_t, float, int64_t, int64_t*, float*);

struct BoundKernels {
  CountFn count;
  WriteFn write;
};

BoundKernels pick_bound_kernels() {
#if SAECORE_KERNELS_X86
  if (kInstructionSet == InstructionSet::avx512) return {count_not_below_avx512, write_not_below_avx512};
  if (kInstructionSet == InstructionSet::avx2) return {count_not_below_avx2, write_not_below_avx2};
#endif
  return {count_not_below_generic, write_not_below_scalar};
}

const BoundKernels kBoundKernels = pick_bound_kernels();

bool valid_bound_shape(Py_ssize_t n_rows, Py_ssize_t row_stride, Py_ssize_t n, Py_ssize_t threads) {
  if (n < 1 || n_rows < 0 || row_stride < n || threads < 1) {
    PyErr_Format(PyExc_ValueError,
                 "entries_not_below: need n >= 1, n_rows >= 0, row_stride >= n and threads >= 1; got n=%zd, "
                 "n_rows=%zd, row_stride=%zd, threads=%zd",
                 n, n_rows, row_stride, threads);
    return false;
  }
  return true;
}

PyObject* count_not_below(PyObject*, PyObject* args) {
  Py_ssize_t src, n_rows, row_stride, n, counts, threads;
  float t;
  if (!PyArg_ParseTuple(args, "nnnnfnn", &src, &n_rows, &row_stride, &n, &t, &counts, &threads)) return nullptr;
  if (!valid_bound_shape(n_rows, row_stride, n, threads)) return nullptr;
  const float* rows = reinterpret_cast<const float*>(src);
  int64_t* out = reinterpret_cast<int64_t*>(counts);
  Py_BEGIN_ALLOW_THREADS;
  parallel_rows(n_rows, threads, [=](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) out[r] = kBoundKernels.count(rows + r * row_stride, n, t);
  });
  Py_END_ALLOW_THREADS;
  Py_RETURN_NONE;
}

PyObject* write_not_below(PyObject*, PyObject* args) {
  Py_ssize_t src, n_rows, row_stride, n, starts, positions, values, threads;
  float t;
  if (!PyArg_ParseTuple(args, "nnnnfnnnn", &src, &n_rows, &row_stride, &n, &t, &starts, &positions, &values,
                        &threads)) {
    return nullptr;
  }
  if (!valid_bound_shape(n_rows, row_stride, n, threads)) return nullptr;
  const float* rows = reinterpret_cast<const float*>(src);
  const int64_t* row_starts = reinterpret_cast<const int64_t*>(starts);
  int64_t* out_positions = reinterpret_cast<int64_t*>(positions);
  float* out_values = reinterpret_cast<float*>(values);
  Py_BEGIN_ALLOW_THREADS;
  parallel_rows(n_rows, threads, [=](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      kBoundKernels.write(rows + r * row_stride, n, t, r * n, out_positions + row_starts[r],
                          out_values + row_starts[r]);
    }
  });
  Py_END_ALLOW_THREADS;
  Py_RETURN_NONE;
}

PyObject* instruction_set(PyObject*, PyObject*) { return PyUnicode_FromString(instruction_set_name(kInstructionSet)); }

PyMethodDef kMethods[] = {
    {"select_topk", select_topk, METH_VARARGS,
     "select_topk(src, n_rows, row_stride, n, k, values, indices, threads): exact per-row top-k of a float32 "
     "matrix at address src into float32 values and int64 indices [n_rows, k] (unordered)."},
    {"count_not_below", count_not_below, METH_VARARGS,
     "count_not_below(src, n_rows, row_stride, n, t, counts, threads): per row of a float32 matrix, how many "
     "entries v have !(v < t) (NaN included), into int64 counts [n_rows]."},
    {"write_not_below", write_not_below, METH_VARARGS,
     "write_not_below(src, n_rows, row_stride, n, t, starts, positions, values, threads): those entries, row r's "
     "from starts[r] on, as int64 flat positions r*n + j and their float32 values."},
    {"instruction_set", instruction_set, METH_NOARGS, "The vector instruction set the kernel chose on this CPU."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_row_topk",
                       "Exact per-row top-k of float32 matrices on CPU, and their entries not below a bound.", -1,
                       kMethods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__row_topk() { return PyModule_Create(&kModule); }
