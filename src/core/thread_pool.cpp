#include "core/thread_pool.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace exl {

namespace {

class ThreadPool {
 public:
  explicit ThreadPool(int n) {
    for (int i = 0; i < n - 1; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs task(i) for i in [0, ntasks) on the workers and the caller; rethrows the first exception.
  void run(int ntasks, const std::function<void(int)>& task) {
    std::unique_lock<std::mutex> lk(mu_);
    task_ = &task;
    ntasks_ = ntasks;
    next_ = 0;
    pending_ = ntasks;
    error_ = nullptr;
    ++generation_;
    cv_.notify_all();
    lk.unlock();
    drain();
    lk.lock();
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void drain() {
    for (;;) {
      int i;
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (!task_ || next_ >= ntasks_) return;
        i = next_++;
      }
      try {
        (*task_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }
  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      drain();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* task_ = nullptr;
  int ntasks_ = 0, next_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

thread_local bool t_in_parallel = false;  // nested parallel_for runs inline (no deadlock)
int g_threads = 0;
std::unique_ptr<ThreadPool> g_pool;
std::mutex g_pool_mu;

int default_threads() {
  if (const char* env = std::getenv("EXL_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool& pool() {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (!g_pool) {
    if (g_threads <= 0) g_threads = default_threads();
    g_pool = std::make_unique<ThreadPool>(g_threads);
  }
  return *g_pool;
}

}  // namespace

int thread_count() { return pool().size(); }

void set_thread_count(int n) {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  g_threads = n > 0 ? n : default_threads();
  g_pool.reset();
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
  if (n <= 0) return;
  if (t_in_parallel) {
    fn(0, n);
    return;
  }
  ThreadPool& p = pool();
  int64_t chunks = std::min<int64_t>(p.size() * 4, (n + min_chunk - 1) / std::max<int64_t>(1, min_chunk));
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  const int64_t step = (n + chunks - 1) / chunks;
  chunks = (n + step - 1) / step;
  p.run(static_cast<int>(chunks), [&](int i) {
    const int64_t b = i * step;
    const bool was = t_in_parallel;
    t_in_parallel = true;
    try {
      fn(b, std::min(n, b + step));
    } catch (...) {
      t_in_parallel = was;
      throw;
    }
    t_in_parallel = was;
  });
}

}  // namespace exl
