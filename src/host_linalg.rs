//! Small dense linear algebra on the host in f64, by `nalgebra`: the random rotation that
//! initialises the 1x1 convolution, its LU factorisation, the matrix inverse used for sampling
//! and `log|det|`, and the products that score a batch under every class of a class-conditional
//! prior.
//!
//! burn-linalg 0.22 has no inverse, and the C x C matrices here are small (C <= a few hundred), so
//! these run on the host in f64, where rounding is far below the f32 the model trains in. What
//! this module adds to nalgebra is the layer's conventions: matrices are row-major `Vec<f64>` of
//! length n * n (as tensors read back), the rotation's sign convention, the explicit permutation
//! matrix of the LU form, and a singular matrix reported as `None`.

use nalgebra::DMatrix;
use rand::Rng;
use rand_distr::StandardNormal;

/// A random orthogonal matrix: the Q factor of the QR factorisation of a matrix of independent
/// standard normals (drawn row by row), with the signs of R's diagonal folded into Q, i.e. the
/// Q of the unique factorisation whose R has a positive diagonal (so Q is Haar-distributed).
pub fn random_rotation(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    let a: Vec<f64> = (0..n * n).map(|_| rng.sample(StandardNormal)).collect();
    let qr = DMatrix::from_row_slice(n, n, &a).qr();
    let r = qr.r();
    let mut q = qr.q();
    for (j, mut column) in q.column_iter_mut().enumerate() {
        if r[(j, j)] < 0.0 {
            column.neg_mut();
        }
    }
    row_major(&q)
}

/// The factors of `A = P · L · U` with partial pivoting: `P` a permutation matrix, `L` unit lower
/// triangular, `U` upper triangular.
pub struct LuFactors {
    /// Permutation matrix, row-major n x n.
    pub p: Vec<f64>,
    /// Unit lower-triangular factor, row-major n x n.
    pub l: Vec<f64>,
    /// Upper-triangular factor, row-major n x n.
    pub u: Vec<f64>,
}

/// LU factorisation with partial pivoting, `A = P · L · U`.
pub fn lu(a: &[f64], n: usize) -> LuFactors {
    // nalgebra factors `Π A = L U` with Π a sequence of row swaps, so `P = Πᵀ`.
    let (swaps, l, u) = DMatrix::from_row_slice(n, n, a).lu().unpack();
    let mut pi = DMatrix::identity(n, n);
    swaps.permute_rows(&mut pi);
    LuFactors {
        p: row_major(&pi.transpose()),
        l: row_major(&l),
        u: row_major(&u),
    }
}

/// The inverse of an n x n matrix, or `None` when the matrix is singular to working precision
/// (a pivot of its LU factorisation at most `n · ε · max|A_ij|`).
pub fn invert(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let scale = a.iter().fold(0.0f64, |s, x| s.max(x.abs()));
    let factors = DMatrix::from_row_slice(n, n, a).lu();
    let tiny = scale * n as f64 * f64::EPSILON;
    if factors
        .u()
        .diagonal()
        .iter()
        .any(|pivot| pivot.abs() <= tiny)
    {
        return None;
    }
    factors.try_inverse().map(|inv| row_major(&inv))
}

/// `log|det A|` from the LU factorisation: the sum of log|U_ii| (P and L have |det| = 1), which
/// cannot overflow as the product could.
pub fn log_abs_det(a: &[f64], n: usize) -> f64 {
    let factors = DMatrix::from_row_slice(n, n, a).lu();
    factors.u().diagonal().iter().map(|d| d.abs().ln()).sum()
}

/// `A · Bᵀ` (`[N, K]`, row-major) of the row-major `A` (`[N, D]`) and `B` (`[K, D]`): the dot
/// product of every row of `A` with every row of `B`.
pub fn products_with_rows(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let (n, k) = (a.len() / d.max(1), b.len() / d.max(1));
    let a = DMatrix::from_row_slice(n, d, a);
    let b = DMatrix::from_row_slice(k, d, b);
    row_major(&(a * b.transpose()))
}

/// The entries of `m` row by row.
fn row_major(m: &DMatrix<f64>) -> Vec<f64> {
    m.transpose().as_slice().to_vec()
}
