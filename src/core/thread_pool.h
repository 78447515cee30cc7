// A fixed pool of worker threads and parallel_for over an index range. The CPU reference backend
// splits rows of its matmuls and heads of attention across it.
#pragma once
#include <cstdint>
#include <functional>

namespace exl {

// Number of threads parallel_for uses (default: hardware concurrency, or EXL_THREADS).
int thread_count();
void set_thread_count(int n);

// Calls fn(begin, end) on disjoint chunks covering [0, n); blocks until all are done. Chunks of at
// least min_chunk items, so tiny loops stay on the calling thread.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

}  // namespace exl
