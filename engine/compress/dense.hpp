// Minimal dense linear algebra for the compression core: an owning COLUMN-MAJOR matrix (element (i, j)
// at data[i + j * rows], leading dimension == rows), read-only / mutable strided views, and thin typed
// wrappers over cblas and LAPACKE. Column-major because LAPACK is column-major: every wrapper passes
// the storage straight through, no hidden transposes. Every wrapper checks shapes and throws
// lorafleet::shape_mismatch naming the operation. fp32 for the bulk (GEMMs over d_out / d_in), double
// (`dmatrix`) for small r x r algebra and for sums whose cancellation matters (errors, objectives).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace lorafleet::compress {

// Read-only column-major view with a leading dimension (ld >= rows; element (i, j) at data[i + j * ld]).
template <class T> struct basic_view {
    const T* data = nullptr;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    std::int64_t ld = 1;

    const T& operator()(std::int64_t i, std::int64_t j) const { return data[i + j * ld]; }
    // Columns [j0, j0 + n) as a view.
    basic_view block_cols(std::int64_t j0, std::int64_t n) const { return {data + j0 * ld, rows, n, ld}; }
};

// Mutable column-major view (same layout rules as basic_view).
template <class T> struct basic_mut_view {
    T* data = nullptr;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    std::int64_t ld = 1;

    T& operator()(std::int64_t i, std::int64_t j) const { return data[i + j * ld]; }
    operator basic_view<T>() const { return {data, rows, cols, ld}; }
    basic_mut_view block_cols(std::int64_t j0, std::int64_t n) const { return {data + j0 * ld, rows, n, ld}; }
};

// Owning column-major matrix, zero-initialized. Invariant: data.size() == rows * cols, ld == rows.
template <class T> struct basic_matrix {
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    std::vector<T> data;

    basic_matrix() = default;
    basic_matrix(std::int64_t r, std::int64_t c);

    static basic_matrix identity(std::int64_t n);

    bool empty() const { return rows == 0 || cols == 0; }
    T& operator()(std::int64_t i, std::int64_t j) { return data[static_cast<std::size_t>(i + j * rows)]; }
    const T& operator()(std::int64_t i, std::int64_t j) const {
        return data[static_cast<std::size_t>(i + j * rows)];
    }
    T* col(std::int64_t j) { return data.data() + j * rows; }
    const T* col(std::int64_t j) const { return data.data() + j * rows; }

    basic_view<T> view() const { return {data.data(), rows, cols, rows > 0 ? rows : 1}; }
    basic_mut_view<T> mut() { return {data.data(), rows, cols, rows > 0 ? rows : 1}; }
    operator basic_view<T>() const { return view(); }
};

using matrix = basic_matrix<float>;
using dmatrix = basic_matrix<double>;
using view = basic_view<float>;
using mut_view = basic_mut_view<float>;
using dview = basic_view<double>;
using dmut_view = basic_mut_view<double>;

// Transpose flag for gemm operands.
enum class op { n, t };

// Throws shape_mismatch("dense/<what>", detail) when `ok` is false.
void check_shape(bool ok, const char* what, const std::string& detail);

// c = alpha * op(a) * op(b) + beta * c. Shapes are checked (c must already have the result shape).
void gemm(op ta, view a, op tb, view b, mut_view c, float alpha = 1.0f, float beta = 0.0f);
void gemm(op ta, dview a, op tb, dview b, dmut_view c, double alpha = 1.0, double beta = 0.0);
// Allocating form: returns op(a) * op(b).
matrix gemm(op ta, view a, op tb, view b);
dmatrix gemm(op ta, dview a, op tb, dview b);

// c (n x n, lower AND upper triangle filled) = alpha * op(a) * op(a)^T + beta * c. op == t gives a^T a.
void syrk(op ta, view a, mut_view c, float alpha = 1.0f, float beta = 0.0f);

// Converts between precisions (any view in, compact owning matrix out).
dmatrix to_double(view a);
matrix to_float(dview a);
matrix copy(view a);
matrix transpose(view a);

// Orthonormal basis of the columns of `a` (rows >= cols required) by Householder QR (sgeqrf + sorgqr):
// returns Q [rows, cols] with Q^T Q = I to working precision even when `a` is rank deficient (the
// extra columns are then arbitrary orthonormal directions, which is what a rank-r basis wants).
matrix orthonormalize(matrix a);
// Householder QR of `a` (rows >= cols); returns {Q [rows, cols], R [cols, cols] upper triangular}.
std::pair<matrix, matrix> qr(matrix a);

// Top-`r` eigenpairs of the symmetric matrix `s` [n, n] (only the lower triangle is read), in
// DESCENDING eigenvalue order: vectors [n, r] orthonormal, values r. Uses ssyevr on the index range
// (cheaper than ssyevd's full spectrum when r << n); `s` is consumed.
struct eigen_result {
    matrix vectors;            // [n, r]
    std::vector<float> values; // r, descending
};
eigen_result top_eigenvectors(matrix s, std::int64_t r);
// Double-precision variant for small matrices.
struct deigen_result {
    dmatrix vectors;            // [n, r]
    std::vector<double> values; // r, descending
};
deigen_result top_eigenvectors(dmatrix s, std::int64_t r);

// Cholesky factorization in place of a symmetric positive definite `g` [n, n] (lower factor, dpotrf).
// Returns false (and leaves `g` unspecified) when `g` is not numerically positive definite.
bool cholesky_factor(dmatrix& g);
// Solves (L L^T) X = rhs in place, where `l` is the output of cholesky_factor; rhs [n, m].
void cholesky_solve(const dmatrix& l, dmatrix& rhs);
// X <- X (L Lᵀ)^-1 for X [m, n] (a right-hand solve without transposed copies), L the lower factor of
// cholesky_factor [n, n].
void cholesky_solve_right(const dmatrix& l, dmatrix& x);
// fp32 equivalents (spotrf / spotrs), same contracts.
bool cholesky_factor(matrix& g);
void cholesky_solve(const matrix& l, matrix& rhs);

// Sums accumulated in double.
double frobenius2(view a); // ||a||_F^2
double frobenius2(dview a);
double dot(view a, view b); // <a, b>_F (same shapes)
double dot(dview a, dview b);

// ||u - u_old (u_old^T u)||_F / ||u||_F: how much the column space moved (both [n, r], u_old orthonormal).
double subspace_change(view u_old, view u);

} // namespace lorafleet::compress
