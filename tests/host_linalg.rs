//! The host linear algebra the 1x1 convolutions rely on, checked with a plain triple-loop matrix
//! product: the rotation is orthogonal, `P · L · U` reassembles the matrix with factors of the
//! documented shapes, the inverse inverts and a singular matrix has none.

use glowflow::host_linalg::{invert, log_abs_det, lu, random_rotation};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// The product of two row-major n x n matrices.
fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            for j in 0..n {
                c[i * n + j] += a[i * n + k] * b[k * n + j];
            }
        }
    }
    c
}

fn transpose(a: &[f64], n: usize) -> Vec<f64> {
    (0..n * n).map(|k| a[(k % n) * n + k / n]).collect()
}

/// The largest entry of `a - I`, in absolute value.
fn distance_from_identity(a: &[f64], n: usize) -> f64 {
    let identity = |k: usize| if k % n == k / n { 1.0 } else { 0.0 };
    let deviation = a.iter().enumerate().map(|(k, v)| (v - identity(k)).abs());
    deviation.fold(0.0, f64::max)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn gaussian(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * n).map(|_| rng.sample(StandardNormal)).collect()
}

/// A random n x n matrix with singular values spread over [1/2, 2]: `Q₁ · diag(s) · Q₂` with
/// random rotations, so its condition number is at most 4 (as for trained 1x1 weights, which
/// start as rotations).
fn well_conditioned(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut q1 = random_rotation(n, &mut rng);
    for (k, v) in q1.iter_mut().enumerate() {
        *v *= 0.5 + 1.5 * (k % n) as f64 / (n - 1) as f64;
    }
    matmul(&q1, &random_rotation(n, &mut rng), n)
}

#[test]
fn rotation_is_orthogonal_with_unit_determinant() {
    for n in [1, 7, 64] {
        let q = random_rotation(n, &mut rand::rngs::StdRng::seed_from_u64(1));
        assert!(distance_from_identity(&matmul(&transpose(&q, n), &q, n), n) < 1e-12);
        assert!(log_abs_det(&q, n).abs() < 1e-12, "n = {n}");
    }
}

#[test]
fn rotation_is_the_q_of_the_factorisation_with_a_positive_diagonal() {
    // With A the same draws (row by row), R = Qᵀ A is upper triangular with a positive diagonal.
    let n = 9;
    let a = gaussian(n, 3);
    let q = random_rotation(n, &mut rand::rngs::StdRng::seed_from_u64(3));
    let r = matmul(&transpose(&q, n), &a, n);
    for i in 0..n {
        assert!(r[i * n + i] > 0.0, "R[{i},{i}] = {}", r[i * n + i]);
        for j in 0..i {
            assert!(r[i * n + j].abs() < 1e-12, "R[{i},{j}] = {}", r[i * n + j]);
        }
    }
}

#[test]
fn lu_reassembles_with_a_permutation_and_triangular_factors() {
    for (n, seed) in [(6, 2), (64, 4)] {
        let a = gaussian(n, seed);
        let f = lu(&a, n);
        let plu = matmul(&matmul(&f.p, &f.l, n), &f.u, n);
        assert!(max_abs_diff(&plu, &a) < 1e-12, "n = {n}");
        for i in 0..n {
            let row = &f.p[i * n..(i + 1) * n];
            let column = (0..n).map(|j| f.p[j * n + i]);
            assert!(row.iter().all(|&v| v == 0.0 || v == 1.0));
            assert_eq!((row.iter().sum::<f64>(), column.sum::<f64>()), (1.0, 1.0));
            assert_eq!(f.l[i * n + i], 1.0);
            for j in i + 1..n {
                assert_eq!((f.l[i * n + j], f.u[j * n + i]), (0.0, 0.0), "[{i},{j}]");
            }
            // Partial pivoting: no entry of L exceeds 1 in magnitude.
            assert!(f.l[i * n..(i + 1) * n].iter().all(|v| v.abs() <= 1.0));
        }
        let log_pivots: f64 = (0..n).map(|i| f.u[i * n + i].abs().ln()).sum();
        assert_eq!(log_abs_det(&a, n), log_pivots);
    }
}

#[test]
fn log_abs_det_of_a_triangular_matrix_is_the_sum_of_log_diagonal() {
    let n = 5;
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            a[i * n + j] = if i == j { -(i as f64 + 0.5) } else { 3.0 };
        }
    }
    let expected: f64 = (0..n).map(|i| (i as f64 + 0.5).ln()).sum();
    assert!((log_abs_det(&a, n) - expected).abs() < 1e-12);
}

#[test]
fn inverse_inverts_to_1e_12() {
    for (n, seed) in [(6, 5), (64, 6)] {
        let w = well_conditioned(n, seed);
        let inv = invert(&w, n).expect("a well-conditioned matrix is invertible");
        assert!(
            distance_from_identity(&matmul(&w, &inv, n), n) < 1e-12,
            "n = {n}"
        );
        assert!(
            distance_from_identity(&matmul(&inv, &w, n), n) < 1e-12,
            "n = {n}"
        );
    }
    let a = gaussian(6, 2);
    let inv = invert(&a, 6).expect("a random matrix is invertible");
    assert!(distance_from_identity(&matmul(&a, &inv, 6), 6) < 1e-10);
}

#[test]
fn singular_matrix_has_no_inverse() {
    assert!(invert(&[1.0, 2.0, 2.0, 4.0], 2).is_none());
    // Singular up to rounding: the third row is the sum of the first two.
    let a = [0.1, 0.7, 0.3, 0.2, 0.9, 0.4, 0.3, 1.6, 0.7];
    assert!(invert(&a, 3).is_none());
    assert!(invert(&[0.0; 16], 4).is_none());
}
