//! Small dense linear algebra on the host in f64: the random rotation that initialises the 1x1
//! convolution, its LU factorisation, and the matrix inverse used for sampling.
//!
//! burn-linalg 0.22 has no inverse, and the C x C matrices here are tiny (C <= a few hundred), so
//! these run on the host in f64, where rounding is far below the f32 the model trains in.
//! Matrices are row-major `Vec<f64>` of length n * n.

use rand::Rng;
use rand_distr::StandardNormal;

/// A random orthogonal matrix: the Q factor of the QR factorisation of a matrix of independent
/// standard normals, with the signs of R's diagonal folded into Q (so Q is Haar-distributed).
pub fn random_rotation(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    let a: Vec<f64> = (0..n * n).map(|_| rng.sample(StandardNormal)).collect();
    // Modified Gram-Schmidt on the columns of `a`.
    let mut q = vec![0.0; n * n];
    for j in 0..n {
        let mut v: Vec<f64> = (0..n).map(|i| a[i * n + j]).collect();
        for k in 0..j {
            let dot: f64 = (0..n).map(|i| q[i * n + k] * v[i]).sum();
            for (i, vi) in v.iter_mut().enumerate() {
                *vi -= dot * q[i * n + k];
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        for (i, vi) in v.iter().enumerate() {
            q[i * n + j] = vi / norm;
        }
    }
    q
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
    let mut u = a.to_vec();
    let mut l = vec![0.0; n * n];
    // perm[i] = the row of A that ended up in row i of U, i.e. (P^T A)[i] = A[perm[i]].
    let mut perm: Vec<usize> = (0..n).collect();
    for k in 0..n {
        let pivot = (k..n)
            .max_by(|&i, &j| u[i * n + k].abs().total_cmp(&u[j * n + k].abs()))
            .unwrap_or(k);
        if pivot != k {
            for c in 0..n {
                u.swap(k * n + c, pivot * n + c);
                l.swap(k * n + c, pivot * n + c);
            }
            perm.swap(k, pivot);
        }
        let d = u[k * n + k];
        for i in k + 1..n {
            let f = if d == 0.0 { 0.0 } else { u[i * n + k] / d };
            l[i * n + k] = f;
            for c in k..n {
                u[i * n + c] -= f * u[k * n + c];
            }
        }
    }
    for i in 0..n {
        l[i * n + i] = 1.0;
    }
    // P^T A = L U, so A = P L U with P[perm[i]][i] = 1.
    let mut p = vec![0.0; n * n];
    for (i, &r) in perm.iter().enumerate() {
        p[r * n + i] = 1.0;
    }
    LuFactors { p, l, u }
}

/// The inverse of an n x n matrix by Gauss-Jordan elimination with partial pivoting, or `None`
/// when the matrix is singular to working precision.
pub fn invert(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut m = a.to_vec();
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        inv[i * n + i] = 1.0;
    }
    let scale = a.iter().fold(0.0f64, |s, x| s.max(x.abs()));
    for k in 0..n {
        let pivot = (k..n).max_by(|&i, &j| m[i * n + k].abs().total_cmp(&m[j * n + k].abs()))?;
        if m[pivot * n + k].abs() <= scale * n as f64 * f64::EPSILON {
            return None;
        }
        for c in 0..n {
            m.swap(k * n + c, pivot * n + c);
            inv.swap(k * n + c, pivot * n + c);
        }
        let d = m[k * n + k];
        for c in 0..n {
            m[k * n + c] /= d;
            inv[k * n + c] /= d;
        }
        for i in 0..n {
            if i != k {
                let f = m[i * n + k];
                if f != 0.0 {
                    for c in 0..n {
                        m[i * n + c] -= f * m[k * n + c];
                        inv[i * n + c] -= f * inv[k * n + c];
                    }
                }
            }
        }
    }
    Some(inv)
}

/// `log|det A|` from the LU factorisation: the sum of log|U_ii| (P and L have |det| = 1).
pub fn log_abs_det(a: &[f64], n: usize) -> f64 {
    let f = lu(a, n);
    (0..n).map(|i| f.u[i * n + i].abs().ln()).sum()
}

/// The product of two n x n matrices.
pub fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    fn identity(n: usize) -> Vec<f64> {
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            m[i * n + i] = 1.0;
        }
        m
    }

    #[test]
    fn rotation_is_orthogonal() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = 7;
        let q = random_rotation(n, &mut rng);
        let qt: Vec<f64> = (0..n * n).map(|k| q[(k % n) * n + k / n]).collect();
        assert!(max_abs_diff(&matmul(&qt, &q, n), &identity(n)) < 1e-12);
        assert!((log_abs_det(&q, n)).abs() < 1e-12);
    }

    #[test]
    fn lu_reconstructs_and_inverse_inverts() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let n = 6;
        let a: Vec<f64> = (0..n * n).map(|_| rng.sample(StandardNormal)).collect();
        let f = lu(&a, n);
        let plu = matmul(&matmul(&f.p, &f.l, n), &f.u, n);
        assert!(max_abs_diff(&plu, &a) < 1e-12);
        for i in 0..n {
            assert_eq!(f.l[i * n + i], 1.0);
            for j in i + 1..n {
                assert_eq!(f.l[i * n + j], 0.0);
                assert_eq!(f.u[j * n + i], 0.0);
            }
        }
        let inv = invert(&a, n).expect("a random matrix is invertible");
        assert!(max_abs_diff(&matmul(&a, &inv, n), &identity(n)) < 1e-10);
    }

    #[test]
    fn singular_matrix_has_no_inverse() {
        let a = vec![1.0, 2.0, 2.0, 4.0];
        assert!(invert(&a, 2).is_none());
    }
}
