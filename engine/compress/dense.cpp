// Wrappers over cblas / LAPACKE for the column-major matrices of dense.hpp. Each wrapper validates
// shapes before touching BLAS (a bad leading dimension inside BLAS is a crash, not an error), and
// treats empty operands as the mathematical identity of the operation (zero-size GEMM, empty QR).
#include "engine/compress/dense.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#define LAPACK_COMPLEX_STRUCTURE
#include <cblas.h>
#include <lapacke.h>

namespace lorafleet::compress {

namespace {

std::string dims(std::int64_t r, std::int64_t c) {
    return std::to_string(r) + "x" + std::to_string(c);
}

CBLAS_TRANSPOSE to_cblas(op o) {
    return o == op::n ? CblasNoTrans : CblasTrans;
}

std::int64_t op_rows(op o, std::int64_t r, std::int64_t c) {
    return o == op::n ? r : c;
}
std::int64_t op_cols(op o, std::int64_t r, std::int64_t c) {
    return o == op::n ? c : r;
}

template <class V> void check_view(const V& v, const char* what) {
    check_shape(v.rows >= 0 && v.cols >= 0 && v.ld >= std::max<std::int64_t>(1, v.rows), what,
                "bad view " + dims(v.rows, v.cols) + " ld " + std::to_string(v.ld));
}

template <class A, class B, class C> void check_gemm(op ta, const A& a, op tb, const B& b, const C& c) {
    check_view(a, "gemm");
    check_view(b, "gemm");
    check_view(c, "gemm");
    const auto m = op_rows(ta, a.rows, a.cols), k = op_cols(ta, a.rows, a.cols);
    const auto kb = op_rows(tb, b.rows, b.cols), n = op_cols(tb, b.rows, b.cols);
    check_shape(k == kb && c.rows == m && c.cols == n, "gemm",
                "op(a) " + dims(m, k) + " * op(b) " + dims(kb, n) + " -> c " + dims(c.rows, c.cols));
}

template <class T> void scale_in_place(basic_mut_view<T> c, T beta) {
    for (std::int64_t j = 0; j < c.cols; ++j)
        for (std::int64_t i = 0; i < c.rows; ++i)
            c(i, j) = beta == T(0) ? T(0) : c(i, j) * beta;
}

template <class T> basic_matrix<T> copy_any(basic_view<T> a) {
    basic_matrix<T> out(a.rows, a.cols);
    for (std::int64_t j = 0; j < a.cols; ++j)
        std::copy(a.data + j * a.ld, a.data + j * a.ld + a.rows, out.col(j));
    return out;
}

} // namespace

template <class T> basic_matrix<T>::basic_matrix(std::int64_t r, std::int64_t c) : rows(r), cols(c) {
    check_shape(r >= 0 && c >= 0, "matrix", "negative shape " + dims(r, c));
    data.assign(static_cast<std::size_t>(r * c), T(0));
}

template <class T> basic_matrix<T> basic_matrix<T>::identity(std::int64_t n) {
    basic_matrix<T> m(n, n);
    for (std::int64_t i = 0; i < n; ++i)
        m(i, i) = T(1);
    return m;
}

template struct basic_matrix<float>;
template struct basic_matrix<double>;

void check_shape(bool ok, const char* what, const std::string& detail) {
    if (!ok) throw shape_mismatch(std::string("dense/") + what, detail);
}

void gemm(op ta, view a, op tb, view b, mut_view c, float alpha, float beta) {
    check_gemm(ta, a, tb, b, c);
    const auto m = c.rows, n = c.cols, k = op_cols(ta, a.rows, a.cols);
    if (m == 0 || n == 0) return;
    if (k == 0) {
        scale_in_place(c, beta);
        return;
    }
    cblas_sgemm(CblasColMajor, to_cblas(ta), to_cblas(tb), static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), alpha, a.data, static_cast<int>(a.ld), b.data, static_cast<int>(b.ld),
                beta, c.data, static_cast<int>(c.ld));
}

void gemm(op ta, dview a, op tb, dview b, dmut_view c, double alpha, double beta) {
    check_gemm(ta, a, tb, b, c);
    const auto m = c.rows, n = c.cols, k = op_cols(ta, a.rows, a.cols);
    if (m == 0 || n == 0) return;
    if (k == 0) {
        scale_in_place(c, beta);
        return;
    }
    cblas_dgemm(CblasColMajor, to_cblas(ta), to_cblas(tb), static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), alpha, a.data, static_cast<int>(a.ld), b.data, static_cast<int>(b.ld),
                beta, c.data, static_cast<int>(c.ld));
}

matrix gemm(op ta, view a, op tb, view b) {
    matrix c(op_rows(ta, a.rows, a.cols), op_cols(tb, b.rows, b.cols));
    gemm(ta, a, tb, b, c.mut());
    return c;
}

dmatrix gemm(op ta, dview a, op tb, dview b) {
    dmatrix c(op_rows(ta, a.rows, a.cols), op_cols(tb, b.rows, b.cols));
    gemm(ta, a, tb, b, c.mut());
    return c;
}

void syrk(op ta, view a, mut_view c, float alpha, float beta) {
    check_view(a, "syrk");
    check_view(c, "syrk");
    const auto n = op_rows(ta, a.rows, a.cols), k = op_cols(ta, a.rows, a.cols);
    check_shape(c.rows == n && c.cols == n, "syrk", "op(a) " + dims(n, k) + " -> c " + dims(c.rows, c.cols));
    if (n == 0) return;
    if (k == 0) {
        scale_in_place(c, beta);
        return;
    }
    cblas_ssyrk(CblasColMajor, CblasLower, to_cblas(ta), static_cast<int>(n), static_cast<int>(k), alpha,
                a.data, static_cast<int>(a.ld), beta, c.data, static_cast<int>(c.ld));
    for (std::int64_t j = 0; j < n; ++j) // mirror: callers get a full symmetric matrix
        for (std::int64_t i = j + 1; i < n; ++i)
            c(j, i) = c(i, j);
}

dmatrix to_double(view a) {
    dmatrix out(a.rows, a.cols);
    for (std::int64_t j = 0; j < a.cols; ++j)
        for (std::int64_t i = 0; i < a.rows; ++i)
            out(i, j) = a(i, j);
    return out;
}

matrix to_float(dview a) {
    matrix out(a.rows, a.cols);
    for (std::int64_t j = 0; j < a.cols; ++j)
        for (std::int64_t i = 0; i < a.rows; ++i)
            out(i, j) = static_cast<float>(a(i, j));
    return out;
}

matrix copy(view a) {
    return copy_any(a);
}

matrix transpose(view a) {
    matrix out(a.cols, a.rows);
    for (std::int64_t j = 0; j < a.cols; ++j)
        for (std::int64_t i = 0; i < a.rows; ++i)
            out(j, i) = a(i, j);
    return out;
}

std::pair<matrix, matrix> qr(matrix a) {
    check_shape(a.rows >= a.cols, "qr", "needs rows >= cols, got " + dims(a.rows, a.cols));
    const auto m = a.rows, n = a.cols;
    matrix r(n, n);
    if (n == 0) return {std::move(a), std::move(r)};
    std::vector<float> tau(static_cast<std::size_t>(n));
    if (LAPACKE_sgeqrf(LAPACK_COL_MAJOR, static_cast<lapack_int>(m), static_cast<lapack_int>(n),
                       a.data.data(), static_cast<lapack_int>(m), tau.data()) != 0)
        throw validation_error("dense/qr", "sgeqrf failed (NaN or Inf in the input?)");
    for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = 0; i <= j; ++i)
            r(i, j) = a(i, j);
    if (LAPACKE_sorgqr(LAPACK_COL_MAJOR, static_cast<lapack_int>(m), static_cast<lapack_int>(n),
                       static_cast<lapack_int>(n), a.data.data(), static_cast<lapack_int>(m),
                       tau.data()) != 0)
        throw validation_error("dense/qr", "sorgqr failed");
    return {std::move(a), std::move(r)};
}

matrix orthonormalize(matrix a) {
    return qr(std::move(a)).first;
}

namespace {

template <class T> struct eig_out {
    basic_matrix<T> vectors;
    std::vector<T> values;
};

template <class T> eig_out<T> top_eig_impl(basic_matrix<T> s, std::int64_t r) {
    check_shape(s.rows == s.cols, "top_eigenvectors", "not square: " + dims(s.rows, s.cols));
    const auto n = s.rows;
    check_shape(r >= 0 && r <= n, "top_eigenvectors",
                "asked for " + std::to_string(r) + " of " + std::to_string(n));
    eig_out<T> out{basic_matrix<T>(n, r), std::vector<T>(static_cast<std::size_t>(r))};
    if (r == 0) return out;
    for (const T x : s.data)
        if (!std::isfinite(x)) throw validation_error("dense/top_eigenvectors", "NaN or Inf in the input");
    lapack_int found = 0;
    std::vector<T> w(static_cast<std::size_t>(n));
    basic_matrix<T> z(n, r);
    std::vector<lapack_int> isuppz(static_cast<std::size_t>(2 * r));
    const auto il = static_cast<lapack_int>(n - r + 1), iu = static_cast<lapack_int>(n);
    lapack_int info = 0;
    if constexpr (std::is_same_v<T, float>)
        info = LAPACKE_ssyevr(LAPACK_COL_MAJOR, 'V', 'I', 'L', static_cast<lapack_int>(n), s.data.data(),
                              static_cast<lapack_int>(n), 0.0f, 0.0f, il, iu, 0.0f, &found, w.data(),
                              z.data.data(), static_cast<lapack_int>(n), isuppz.data());
    else
        info = LAPACKE_dsyevr(LAPACK_COL_MAJOR, 'V', 'I', 'L', static_cast<lapack_int>(n), s.data.data(),
                              static_cast<lapack_int>(n), 0.0, 0.0, il, iu, 0.0, &found, w.data(),
                              z.data.data(), static_cast<lapack_int>(n), isuppz.data());
    if (info != 0 || found != r)
        throw validation_error("dense/top_eigenvectors", "syevr failed (info " + std::to_string(info) + ")");
    // syevr returns ascending order; callers want the dominant direction first.
    for (std::int64_t j = 0; j < r; ++j) {
        out.values[static_cast<std::size_t>(j)] = w[static_cast<std::size_t>(r - 1 - j)];
        std::copy(z.col(r - 1 - j), z.col(r - 1 - j) + n, out.vectors.col(j));
    }
    return out;
}

template <class T> bool potrf_impl(basic_matrix<T>& g) {
    check_shape(g.rows == g.cols, "cholesky_factor", "not square: " + dims(g.rows, g.cols));
    if (g.rows == 0) return true;
    lapack_int info = 0;
    if constexpr (std::is_same_v<T, float>)
        info = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', static_cast<lapack_int>(g.rows), g.data.data(),
                              static_cast<lapack_int>(g.rows));
    else
        info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', static_cast<lapack_int>(g.rows), g.data.data(),
                              static_cast<lapack_int>(g.rows));
    return info == 0;
}

template <class T> void potrs_impl(const basic_matrix<T>& l, basic_matrix<T>& rhs) {
    check_shape(l.rows == l.cols && rhs.rows == l.rows, "cholesky_solve",
                "factor " + dims(l.rows, l.cols) + " rhs " + dims(rhs.rows, rhs.cols));
    if (l.rows == 0 || rhs.cols == 0) return;
    lapack_int info = 0;
    if constexpr (std::is_same_v<T, float>)
        info =
            LAPACKE_spotrs(LAPACK_COL_MAJOR, 'L', static_cast<lapack_int>(l.rows),
                           static_cast<lapack_int>(rhs.cols), l.data.data(), static_cast<lapack_int>(l.rows),
                           rhs.data.data(), static_cast<lapack_int>(rhs.rows));
    else
        info =
            LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', static_cast<lapack_int>(l.rows),
                           static_cast<lapack_int>(rhs.cols), l.data.data(), static_cast<lapack_int>(l.rows),
                           rhs.data.data(), static_cast<lapack_int>(rhs.rows));
    if (info != 0)
        throw validation_error("dense/cholesky_solve", "potrs failed (info " + std::to_string(info) + ")");
}

// Sum over i of f(i) in double with four independent accumulators (fixed order: deterministic), which
// lets the loop pipeline and vectorize where one running sum would serialize on the add latency.
template <class F> double sum4(std::int64_t n, F f) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    std::int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += f(i);
        s1 += f(i + 1);
        s2 += f(i + 2);
        s3 += f(i + 3);
    }
    for (; i < n; ++i)
        s0 += f(i);
    return (s0 + s1) + (s2 + s3);
}

template <class T> double frob2_impl(basic_view<T> a) {
    double s = 0.0;
    for (std::int64_t j = 0; j < a.cols; ++j) {
        const T* col = a.data + j * a.ld;
        s += sum4(a.rows, [col](std::int64_t i) {
            const double x = col[i];
            return x * x;
        });
    }
    return s;
}

template <class T> double dot_impl(basic_view<T> a, basic_view<T> b) {
    check_shape(a.rows == b.rows && a.cols == b.cols, "dot",
                dims(a.rows, a.cols) + " vs " + dims(b.rows, b.cols));
    double s = 0.0;
    for (std::int64_t j = 0; j < a.cols; ++j) {
        const T* ca = a.data + j * a.ld;
        const T* cb = b.data + j * b.ld;
        s += sum4(a.rows, [ca, cb](std::int64_t i) {
            return static_cast<double>(ca[i]) * static_cast<double>(cb[i]);
        });
    }
    return s;
}

} // namespace

eigen_result top_eigenvectors(matrix s, std::int64_t r) {
    auto e = top_eig_impl(std::move(s), r);
    return {std::move(e.vectors), std::move(e.values)};
}

deigen_result top_eigenvectors(dmatrix s, std::int64_t r) {
    auto e = top_eig_impl(std::move(s), r);
    return {std::move(e.vectors), std::move(e.values)};
}

bool cholesky_factor(dmatrix& g) {
    return potrf_impl(g);
}
void cholesky_solve(const dmatrix& l, dmatrix& rhs) {
    potrs_impl(l, rhs);
}
void cholesky_solve_right(const dmatrix& l, dmatrix& x) {
    check_shape(l.rows == l.cols && x.cols == l.rows, "cholesky_solve_right",
                "factor " + dims(l.rows, l.cols) + " x " + dims(x.rows, x.cols));
    if (l.rows == 0 || x.rows == 0) return;
    // X <- X H^-1 with H^-1 from n potrs solves: OpenBLAS's right-side dtrsm is slow for the tall, thin X
    // of the ALS steps ([d, r], d >> r), one dgemm is not.
    dmatrix inv(l.rows, l.rows);
    for (std::int64_t i = 0; i < l.rows; ++i)
        inv(i, i) = 1.0;
    potrs_impl(l, inv);
    dmatrix out(x.rows, x.cols);
    gemm(op::n, x.view(), op::n, inv.view(), out.mut());
    x = std::move(out);
}
bool cholesky_factor(matrix& g) {
    return potrf_impl(g);
}
void cholesky_solve(const matrix& l, matrix& rhs) {
    potrs_impl(l, rhs);
}

double frobenius2(view a) {
    return frob2_impl(a);
}
double frobenius2(dview a) {
    return frob2_impl(a);
}
double dot(view a, view b) {
    return dot_impl(a, b);
}
double dot(dview a, dview b) {
    return dot_impl(a, b);
}

double subspace_change(view u_old, view u) {
    check_shape(u_old.rows == u.rows && u_old.cols == u.cols, "subspace_change",
                dims(u_old.rows, u_old.cols) + " vs " + dims(u.rows, u.cols));
    const double norm2 = frobenius2(u);
    if (norm2 == 0.0) return 0.0;
    const matrix c = gemm(op::t, u_old, op::n, u); // [r, r]
    matrix diff = copy(u);
    gemm(op::n, u_old, op::n, c, diff.mut(), -1.0f, 1.0f);
    return std::sqrt(frobenius2(diff) / norm2);
}

} // namespace lorafleet::compress
