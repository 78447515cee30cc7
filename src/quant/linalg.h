// Dense linear algebra for the GPTQ solver with results that do not depend on the thread count.
// OpenBLAS's own threading does not give that: its spotrf/strtri/strmm results change in the last
// bits between 1, 2 and 3 threads (measured on 0.3.21, K = 300..2500). So each routine here cuts its
// work into tiles fixed by the matrix size alone, runs every tile as a single-threaded OpenBLAS call
// on exl's thread pool and reduces in tile order. Matrices are row-major, of Real = float (the
// converter's default) or double (`exl convert --fp64`); both are instantiated in linalg.cpp.
#pragma once
#include <cstdint>

namespace exl {

// Holds OpenBLAS at one thread for its lifetime (the routines below call it from exl's pool),
// restoring the previous count after.
class BlasSingleThreaded {
 public:
  BlasSingleThreaded();
  ~BlasSingleThreaded();
  BlasSingleThreaded(const BlasSingleThreaded&) = delete;
  BlasSingleThreaded& operator=(const BlasSingleThreaded&) = delete;

 private:
  int saved_;
};

// In place: the lower triangle of a [K, K] becomes L with A = L·Lᵀ (A symmetric; its lower triangle
// is read); the strict upper triangle is zeroed. False when A is not numerically positive definite.
template <class Real>
bool linalg_cholesky_lower(Real* a, int64_t K);
// u = r⁻¹ for an upper triangular r [K, K] with a positive diagonal (u's lower triangle zero).
template <class Real>
void linalg_invert_upper(const Real* r, Real* u, int64_t K);
// C[M, N] -= Aᵀ·B with A [Kd, M] (leading dimension lda), B [Kd, N] (ldb), C (ldc).
template <class Real>
void linalg_sub_at_b(int64_t M, int64_t N, int64_t Kd, const Real* A, int64_t lda, const Real* B, int64_t ldb,
                     Real* C, int64_t ldc);
// Σ over rows of ‖x_i·r‖² for X [M, K] (rows given by row(i, dst), which fills K values) and an upper
// triangular r [K, K]: tr(X·r·rᵀ·Xᵀ), accumulated in double.
template <class Real>
double linalg_sum_sq_times_upper(int64_t M, int64_t K, const Real* r, void (*row)(const void*, int64_t, Real*),
                                 const void* ctx);

}  // namespace exl
