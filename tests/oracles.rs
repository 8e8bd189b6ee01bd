//! The test oracles of tests/common checked on cases known by hand: the QR determinant and the
//! brute-force Jacobian's log-determinant of linear maps.

mod common;

use common::*;
use glowflow::tensor_ops::to_f64_vec;

#[test]
fn qr_log_abs_det_matches_determinants_worked_out_by_hand() {
    let cases: [(&str, Vec<f64>, usize, f64); 6] = [
        (
            "diagonal",
            vec![2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.5],
            3,
            3.0,
        ),
        ("swap (det -1)", vec![0.0, 1.0, 1.0, 0.0], 2, 1.0),
        ("4·3 - 3·6 = -6", vec![4.0, 3.0, 6.0, 3.0], 2, 6.0),
        (
            "tridiagonal (det 4)",
            vec![2.0, -1.0, 0.0, -1.0, 2.0, -1.0, 0.0, -1.0, 2.0],
            3,
            4.0,
        ),
        (
            "upper triangular",
            vec![1.0, 5.0, 7.0, 0.0, 2.0, 9.0, 0.0, 0.0, 3.0],
            3,
            6.0,
        ),
        // Rows permuted (0, 1, 2) -> (2, 0, 1) of the triangular one: det unchanged (even).
        (
            "permuted rows",
            vec![0.0, 0.0, 3.0, 1.0, 5.0, 7.0, 0.0, 2.0, 9.0],
            3,
            6.0,
        ),
    ];
    for (what, a, n, det) in cases {
        assert_rel_close(log_abs_det_qr(&a, n), det.ln(), 1e-13, what);
    }
    assert_eq!(
        log_abs_det_qr(&[1.0, 2.0, 2.0, 4.0], 2),
        f64::NEG_INFINITY,
        "singular"
    );
}

#[test]
fn brute_force_log_det_of_a_linear_map_is_log_abs_det_of_its_matrix() {
    let device = f64_device();
    // y = A·x on 4 values, A block diagonal: diag(2, 3) and [[1, 2], [-1, 1]], so
    // |det A| = 2 · 3 · (1·1 - 2·(-1)) = 18.
    let a = [
        [2.0, 0.0, 0.0, 0.0],
        [0.0, 3.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 2.0],
        [0.0, 0.0, -1.0, 1.0],
    ];
    let map = |x: burn::tensor::Tensor<4>| -> Vec<f64> {
        let v = to_f64_vec(x);
        a.iter()
            .map(|row| row.iter().zip(&v).map(|(r, x)| r * x).sum())
            .collect()
    };
    let x = normal([1, 1, 2, 2], 1.0, 1, &device);
    assert_rel_close(brute_force_log_det(map, &x), 18f64.ln(), 1e-9, "log 18");
}
