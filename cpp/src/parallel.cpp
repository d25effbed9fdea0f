#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <new>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "logcal/cpu.h"

namespace logcal {
namespace cpu {
namespace {

int default_num_threads() {
#if defined(__linux__)
  // Respect taskset / cgroup CPU affinity, not just the machine's core count.
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

std::atomic<int> g_num_threads{0};  // 0: not set, use the default

}  // namespace

void set_num_threads(int n) { g_num_threads.store(n > 0 ? n : 0); }

int get_num_threads() {
  const int n = g_num_threads.load();
  return n > 0 ? n : default_num_threads();
}

Status parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return Status::kOk;
  grain = std::max<int64_t>(grain, 1);
  const int64_t n_workers = std::min<int64_t>(get_num_threads(), (n + grain - 1) / grain);
  std::atomic<int> failure{0};
  auto run = [&](int64_t w) {
    const int64_t begin = n * w / n_workers;
    const int64_t end = n * (w + 1) / n_workers;
    try {
      fn(begin, end);
    } catch (const std::bad_alloc&) {
      failure.store(int(Status::kOutOfMemory));
    } catch (...) {
      failure.store(int(Status::kInternal));
    }
  };
  if (n_workers <= 1) {
    run(0);
  } else {
    std::vector<std::thread> workers;
    workers.reserve(size_t(n_workers - 1));
    try {
      for (int64_t w = 1; w < n_workers; ++w) workers.emplace_back(run, w);
    } catch (...) {
      failure.store(int(Status::kInternal));  // could not start a thread
    }
    run(0);
    for (auto& t : workers) t.join();
  }
  return Status(failure.load());
}

}  // namespace cpu
}  // namespace logcal
