#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
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

// A pool of parked worker threads, so a kernel call costs a wake-up (a few microseconds), not a
// thread start (tens of microseconds per thread). One job at a time: a second caller that finds
// the pool busy (another Python thread, the GIL released) starts its own threads instead.
class ThreadPool {
 public:
  // Runs fn(w) for w in [0, n_workers): w = 0 on the calling thread, the rest on the pool.
  // Returns false if the pool is busy or could not grow; nothing has run then.
  bool run(int64_t n_workers, const std::function<void(int64_t)>& fn) {
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    try {
      while (int64_t(threads_.size()) < n_workers - 1) {
        const int64_t index = int64_t(threads_.size()) + 1;
        threads_.emplace_back([this, index] { work(index); });
      }
    } catch (...) {
      return false;  // could not start a thread: let the caller fall back
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &fn;
      n_workers_ = n_workers;
      pending_ = n_workers - 1;
      ++generation_;
    }
    wake_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
    return true;
  }

 private:
  void work(int64_t index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int64_t)>* job;
      {
        std::unique_lock<std::mutex> lock(m_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index >= n_workers_) continue;  // not needed this time
        job = job_;
      }
      (*job)(index);
      std::lock_guard<std::mutex> lock(m_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex run_mutex_;
  std::mutex m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t n_workers_ = 0;
  int64_t pending_ = 0;
  uint64_t generation_ = 0;
};

// The pool is never destroyed (its parked threads simply end with the process), and a child
// made by fork() starts a new one: the parent's worker threads do not exist in the child.
ThreadPool* g_pool = nullptr;
std::once_flag g_pool_once;

void forget_pool_in_child() { g_pool = new ThreadPool(); }

ThreadPool& pool() {
  std::call_once(g_pool_once, [] {
    g_pool = new ThreadPool();
#if defined(__unix__) || defined(__APPLE__)
    pthread_atfork(nullptr, nullptr, forget_pool_in_child);
#endif
  });
  return *g_pool;
}

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
  const std::function<void(int64_t)> run = [&](int64_t w) {
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
  } else if (!pool().run(n_workers, run)) {
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
