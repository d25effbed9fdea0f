// CUDA calibration statistics: exact fixed-point per-bin sums, bitwise equal to the CPU's.
//
// MUST be compiled with -fmad=false (CMakeLists.txt): the per-sample terms (squared error,
// calib::spiegelhalter_var, the NLL through calib::log_det, the confidence through
// calib::exp_det) are double expressions
// whose bits the CPU fixes with -ffp-contract=off; an FMA would round differently.
//
// Each sample's terms become fixed-point integers T = floor(v * 2^64) (calib::to_fixed), split
// into halves T = a * 2^32 + b that are summed in plain 64-bit integers (no carries to track)
// in per-block cells -- shared memory (one copy per warp when it fits), or one global copy for
// many bins -- with atomic adds, which commute: the order the samples arrive in cannot change a
// bit. Cells are then folded into the 128-bit state (calib::U128) with carry-exact atomics.
// With 0/1 correctness a cell is a (bin, y) pair holding count, c, (c-y)^2, nll and
// spiegelhalter_var(c), as on the CPU; otherwise a bin holding count and seven sums.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "logcal/core/calibration.h"
#include "logcal/core/calibration_logits.h"
#include "logcal_cuda.cuh"

namespace logcal {
namespace cuda {
namespace {

using calib::U128;

constexpr int kCalThreads = 256;
constexpr int kCalWarps = kCalThreads / 32;
constexpr size_t kSmemBudget = 48 * 1024;
// Per-launch (or per-block) bound on the samples summed into one set of 64-bit half sums. A
// half of one term is below 2^32 * 2^b, where 2^b bounds the term: 1 for the confidence,
// correctness and squared error, -ln(eps) for the NLL (28 at the default eps 1e-12, 691 at
// eps = 1e-300). So 2^(31 - b) samples keep every half sum below 2^63: 2^26 at the default eps.
int64_t max_samples_per_cells(double eps) {
  const double max_term = std::max(1.0, -std::log(eps));
  const int b = int(std::ceil(std::log2(max_term)));
  return int64_t(1) << (31 - b);
}

constexpr int kBinaryVals = 9;  // count, conf (a, b), sq (a, b), nll (a, b), var (a, b)
constexpr int kSoftVals = 15;   // count, then (a, b) of conf, correct, sq, cy, yy, nll, var

struct CellPlan {
  bool binary;
  int64_t n_cells, vals;
  int copies;    // shared-memory copies per block; 0: global cells
  size_t bytes;  // of one copy
};

CellPlan plan_cells(const CalibDeviceArgs& a) {
  CellPlan p;
  p.binary = a.max_logprob != nullptr || a.correct_type <= 2;
  p.n_cells = p.binary ? 2 * a.n_bins : a.n_bins;
  p.vals = p.binary ? kBinaryVals : kSoftVals;
  p.bytes = size_t(p.n_cells * p.vals) * sizeof(unsigned long long);
  const size_t fit = kSmemBudget / p.bytes;
  p.copies = int(fit < size_t(kCalWarps) ? fit : size_t(kCalWarps));
  return p;
}

__device__ __forceinline__ void halves(double v, unsigned long long& a, unsigned long long& b) {
  const U128 t = calib::to_fixed(v);
  a = (t.hi << 32) | (t.lo >> 32);
  b = t.lo & 0xffffffffull;
}

__device__ __forceinline__ U128 from_halves(unsigned long long a, unsigned long long b) {
  U128 r{a << 32, a >> 32};
  calib::add_to(r, b, 0);
  return r;
}

__device__ __forceinline__ void atomic_add_u128(uint64_t* p, const U128& v) {
  if (v.lo == 0 && v.hi == 0) return;
  unsigned long long* q = reinterpret_cast<unsigned long long*>(p);
  const unsigned long long old = atomicAdd(q, (unsigned long long)v.lo);
  const unsigned long long carry = (old + v.lo < old) ? 1ull : 0ull;
  const unsigned long long hi = v.hi + carry;
  if (hi != 0) atomicAdd(q + 1, hi);
}

__device__ __forceinline__ double load_conf(const CalibDeviceArgs& a, int64_t i) {
  return a.conf_type == 0 ? double(static_cast<const float*>(a.confidence)[i * a.conf_stride])
                          : static_cast<const double*>(a.confidence)[i * a.conf_stride];
}

// Correctness as a double and whether it is valid (integers: 0 or 1; floats: in [0, 1]).
__device__ __forceinline__ double load_correct(const CalibDeviceArgs& a, int64_t i, bool& ok) {
  const int64_t j = i * a.correct_stride;
  switch (a.correct_type) {
    case 0: {
      const uint8_t v = static_cast<const uint8_t*>(a.correct)[j];
      ok = v <= 1;
      return double(v);
    }
    case 1: {
      const int32_t v = static_cast<const int32_t*>(a.correct)[j];
      ok = v == 0 || v == 1;
      return double(v == 1);
    }
    case 2: {
      const int64_t v = static_cast<const int64_t*>(a.correct)[j];
      ok = v == 0 || v == 1;
      return double(v == 1);
    }
    case 3: {
      const double v = double(static_cast<const float*>(a.correct)[j]);
      ok = v >= 0.0 && v <= 1.0;
      return v;
    }
    default: {
      const double v = static_cast<const double*>(a.correct)[j];
      ok = v >= 0.0 && v <= 1.0;
      return v;
    }
  }
}

__device__ __forceinline__ int64_t bin_of(const CalibDeviceArgs& a, double c) {
  return a.edges == nullptr ? calib::uniform_bin(c, a.n_bins)
                            : calib::edges_bin(c, a.edges, a.n_edges, a.right_closed);
}

// Adds sample i to the cells; returns false (adding nothing) when it is invalid.
template <bool kBinary>
__device__ __forceinline__ bool add_sample(const CalibDeviceArgs& a, int64_t i,
                                           unsigned long long* cells, bool& skip) {
  double c, y;
  skip = false;
  if (a.max_logprob != nullptr) {
    const double lp = a.lp_type == 0 ? double(static_cast<const float*>(a.max_logprob)[i])
                                     : static_cast<const double*>(a.max_logprob)[i];
    const int64_t t = a.targets[i];
    if (lp != lp || a.argmax[i] < 0 || t == a.ignore_index) {
      skip = true;
      return true;
    }
    c = calib::confidence_from_max_logprob(lp);
    y = a.argmax[i] == t ? 1.0 : 0.0;
    if (!(c >= 0.0 && c <= 1.0)) return false;  // cannot happen for a stored max_logprob <= 0
  } else {
    c = load_conf(a, i);
    bool ok = false;
    y = load_correct(a, i, ok);
    if (!(ok && c >= 0.0 && c <= 1.0)) return false;
  }
  const int64_t bin = bin_of(a, c);
  unsigned long long ha, hb;
  if (kBinary) {  // cpp/src/calibration_kernels_impl.h, terms_binary
    unsigned long long* cell = cells + (2 * bin + (y != 0.0 ? 1 : 0)) * kBinaryVals;
    atomicAdd(cell + 0, 1ull);
    halves(c, ha, hb);
    atomicAdd(cell + 1, ha);
    atomicAdd(cell + 2, hb);
    if (!a.light) {
      halves((c - y) * (c - y), ha, hb);
      atomicAdd(cell + 3, ha);
      atomicAdd(cell + 4, hb);
      halves(calib::nll_term_binary(c, y != 0.0, a.eps), ha, hb);
      atomicAdd(cell + 5, ha);
      atomicAdd(cell + 6, hb);
      halves(calib::spiegelhalter_var(c), ha, hb);
      atomicAdd(cell + 7, ha);
      atomicAdd(cell + 8, hb);
    }
  } else {  // terms_soft, unweighted
    unsigned long long* cell = cells + bin * kSoftVals;
    atomicAdd(cell + 0, 1ull);
    double val[7] = {c, y, 0.0, c * y, y * y, 0.0, 0.0};
    if (!a.light) {
      val[2] = (c - y) * (c - y);
      val[5] = calib::nll_term(c, y, a.eps);
      val[6] = calib::spiegelhalter_var(c);
    }
    for (int f = 0; f < 7; ++f) {
      if (val[f] == 0.0) continue;  // T(0) = 0
      halves(val[f], ha, hb);
      atomicAdd(cell + 1 + 2 * f, ha);
      atomicAdd(cell + 2 + 2 * f, hb);
    }
  }
  return true;
}

// Folds cells [n_cells][vals] into the state (calib::Field order), exactly; the cpu fold().
template <bool kBinary>
__device__ void fold_cells(const CalibDeviceArgs& a, const unsigned long long* cells,
                           int64_t n_cells, int tid, int nthreads) {
  for (int64_t k = tid; k < n_cells; k += nthreads) {
    const unsigned long long* cell = cells + k * (kBinary ? kBinaryVals : kSoftVals);
    const unsigned long long cnt = cell[0];
    if (cnt == 0) continue;
    const int64_t bin = kBinary ? k / 2 : k;
    uint64_t* s = a.sums + bin * calib::kNumFields * 2;
    atomicAdd(reinterpret_cast<unsigned long long*>(a.count + bin), cnt);
    const U128 n128{0, cnt};  // count * 2^64: the weight (and y = 1 per sample)
    atomic_add_u128(s + 2 * calib::kWeight, n128);
    if (kBinary) {
      const U128 conf = from_halves(cell[1], cell[2]);
      atomic_add_u128(s + 2 * calib::kConf, conf);
      atomic_add_u128(s + 2 * calib::kSqError, from_halves(cell[3], cell[4]));
      atomic_add_u128(s + 2 * calib::kNll, from_halves(cell[5], cell[6]));
      atomic_add_u128(s + 2 * calib::kSpiegelhalterVar, from_halves(cell[7], cell[8]));
      if (k % 2 == 1) {
        atomic_add_u128(s + 2 * calib::kCorrect, n128);
        atomic_add_u128(s + 2 * calib::kCorrectSq, n128);
        atomic_add_u128(s + 2 * calib::kConfCorrect, conf);
      }
    } else {
      const int field[7] = {
          calib::kConf,      calib::kCorrect, calib::kSqError,         calib::kConfCorrect,
          calib::kCorrectSq, calib::kNll,     calib::kSpiegelhalterVar};
      for (int f = 0; f < 7; ++f)
        atomic_add_u128(s + 2 * field[f], from_halves(cell[1 + 2 * f], cell[2 + 2 * f]));
    }
  }
}

// Shared-memory cells: `copies` copies per block, warp w using copy w % copies.
template <bool kBinary>
__global__ void __launch_bounds__(kCalThreads)
    CalibSharedKernel(CalibDeviceArgs a, int64_t n_cells, int copies, int64_t per_block) {
  extern __shared__ unsigned long long s_cells[];
  const int64_t vals = kBinary ? kBinaryVals : kSoftVals;
  const int64_t words = n_cells * vals;
  for (int64_t i = threadIdx.x; i < words * copies; i += kCalThreads) s_cells[i] = 0;
  __syncthreads();
  unsigned long long* mine = s_cells + (threadIdx.x / 32 % copies) * words;
  const int64_t begin = int64_t(blockIdx.x) * per_block;
  const int64_t end = begin + per_block < a.n ? begin + per_block : a.n;
  for (int64_t i = begin + threadIdx.x; i < end; i += kCalThreads) {
    bool skip;
    if (!add_sample<kBinary>(a, i, mine, skip) && a.first_invalid != nullptr)
      atomicMin(a.first_invalid, (unsigned long long)i);
  }
  __syncthreads();
  for (int c = 1; c < copies; ++c)  // sum the copies into copy 0 (integer adds: any order)
    for (int64_t w = threadIdx.x; w < words; w += kCalThreads) s_cells[w] += s_cells[c * words + w];
  __syncthreads();
  fold_cells<kBinary>(a, s_cells, n_cells, threadIdx.x, kCalThreads);
}

// Global cells (many bins): samples [begin, end) into the cells, then a fold kernel.
template <bool kBinary>
__global__ void __launch_bounds__(kCalThreads)
    CalibGlobalKernel(CalibDeviceArgs a, unsigned long long* cells, int64_t begin, int64_t end) {
  for (int64_t i = begin + int64_t(blockIdx.x) * kCalThreads + threadIdx.x; i < end;
       i += int64_t(gridDim.x) * kCalThreads) {
    bool skip;
    if (!add_sample<kBinary>(a, i, cells, skip) && a.first_invalid != nullptr)
      atomicMin(a.first_invalid, (unsigned long long)i);
  }
}

template <bool kBinary>
__global__ void __launch_bounds__(kCalThreads)
    CalibFoldKernel(CalibDeviceArgs a, const unsigned long long* cells, int64_t n_cells) {
  fold_cells<kBinary>(a, cells, n_cells, int(blockIdx.x) * kCalThreads + threadIdx.x,
                      int(gridDim.x) * kCalThreads);
}

__global__ void AddStateKernel(int64_t* dc, uint64_t* ds, const int64_t* sc, const uint64_t* ss,
                               int64_t n_bins) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_bins * calib::kNumFields;
       i += int64_t(gridDim.x) * blockDim.x) {
    U128 d{ds[2 * i], ds[2 * i + 1]};
    calib::add_to(d, U128{ss[2 * i], ss[2 * i + 1]});
    ds[2 * i] = d.lo;
    ds[2 * i + 1] = d.hi;
    if (i < n_bins) dc[i] += sc[i];
  }
}

int sm_count() {
  int device = 0, sms = 1;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  return sms;
}

template <bool kBinary>
cudaError_t launch(const CalibDeviceArgs& a, const CellPlan& p, void* ws, cudaStream_t stream) {
  const int64_t sms = sm_count();
  if (p.copies > 0) {
    int64_t blocks = sms * 4;
    const int64_t per_cells = max_samples_per_cells(a.eps);
    const int64_t min_blocks = (a.n + per_cells - 1) / per_cells;
    blocks = blocks > min_blocks ? blocks : min_blocks;
    const int64_t wanted = (a.n + kCalThreads - 1) / kCalThreads;  // at least a thread a sample
    blocks = blocks < wanted ? blocks : wanted;
    if (blocks < 1) blocks = 1;
    const int64_t per_block = (a.n + blocks - 1) / blocks;
    blocks = (a.n + per_block - 1) / per_block;
    CalibSharedKernel<kBinary><<<unsigned(blocks), kCalThreads, p.bytes * p.copies, stream>>>(
        a, p.n_cells, p.copies, per_block);
    return cudaGetLastError();
  }
  unsigned long long* cells = static_cast<unsigned long long*>(ws);
  const int64_t fold_blocks = (p.n_cells + kCalThreads - 1) / kCalThreads;
  const int64_t per_cells = max_samples_per_cells(a.eps);
  for (int64_t b = 0; b < a.n; b += per_cells) {
    const int64_t e = b + per_cells < a.n ? b + per_cells : a.n;
    cudaError_t err = cudaMemsetAsync(cells, 0, p.bytes, stream);
    if (err != cudaSuccess) return err;
    const int64_t want = (e - b + kCalThreads - 1) / kCalThreads;
    const int64_t blocks = want < sms * 8 ? want : sms * 8;
    CalibGlobalKernel<kBinary><<<unsigned(blocks), kCalThreads, 0, stream>>>(a, cells, b, e);
    CalibFoldKernel<kBinary>
        <<<unsigned(fold_blocks), kCalThreads, 0, stream>>>(a, cells, p.n_cells);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace

size_t CalibrationWorkspace(const CalibDeviceArgs& args) {
  const CellPlan p = plan_cells(args);
  return p.copies > 0 ? 0 : p.bytes;
}

cudaError_t CalibrationStats(const CalibDeviceArgs& args, void* d_workspace, size_t workspace_bytes,
                             cudaStream_t stream) {
  if (args.n < 0 || args.n_bins < 1 || args.count == nullptr || args.sums == nullptr)
    return cudaErrorInvalidValue;
  if (args.edges != nullptr && args.n_edges + 1 != args.n_bins) return cudaErrorInvalidValue;
  if (args.max_logprob == nullptr &&
      (args.confidence == nullptr || args.correct == nullptr || args.correct_type < 0 ||
       args.correct_type > 4 || args.conf_type < 0 || args.conf_type > 1))
    return cudaErrorInvalidValue;
  if (args.max_logprob != nullptr && (args.argmax == nullptr || args.targets == nullptr))
    return cudaErrorInvalidValue;
  if (args.n == 0) return cudaSuccess;
  const CellPlan p = plan_cells(args);
  if (p.copies == 0 && workspace_bytes < p.bytes) return cudaErrorInvalidValue;
  return p.binary ? launch<true>(args, p, d_workspace, stream)
                  : launch<false>(args, p, d_workspace, stream);
}

cudaError_t CalibrationAddState(int64_t* d_dst_count, uint64_t* d_dst_sums,
                                const int64_t* d_src_count, const uint64_t* d_src_sums,
                                int64_t n_bins, cudaStream_t stream) {
  if (n_bins < 1) return cudaErrorInvalidValue;
  const int64_t items = n_bins * calib::kNumFields;
  const unsigned blocks = unsigned((items + 255) / 256);
  AddStateKernel<<<blocks, 256, 0, stream>>>(d_dst_count, d_dst_sums, d_src_count, d_src_sums,
                                             n_bins);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace logcal
