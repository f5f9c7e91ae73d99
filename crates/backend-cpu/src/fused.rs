//! The fused verbs (`matmul_add`, `matmul_silu_mul`, `rope_kv_write`) as the CPU runs
//! them: each is its definition, the unfused verbs' kernels applied one after the other, so
//! the CPU stays the plain reference the GPU's single-kernel versions are tested against.
//! Only the data movement is saved (the residual is updated in place; the stacked QKV row
//! is cut on the host).

use rayon::prelude::*;

/// Elements per rayon task of the residual update.
const MIN_TASK: usize = 16 * 1024;

/// `residual += y`, element by element (the order of `add(residual, y)`).
pub(crate) fn add_into(residual: &mut [f32], y: &[f32]) {
    residual
        .par_chunks_mut(MIN_TASK)
        .zip(y.par_chunks(MIN_TASK))
        .for_each(|(r, y)| {
            for (r, &y) in r.iter_mut().zip(y) {
                *r += y;
            }
        });
}

/// Cuts each token's stacked row of `qkv` [T, (Hq + 2 Hk) D] into q [T, Hq D], k and
/// v [T, Hk D].
pub(crate) fn split_qkv(qkv: &[f32], q_width: usize, kv_width: usize) -> [Vec<f32>; 3] {
    let row = q_width + 2 * kv_width;
    let t = qkv.len().checked_div(row).unwrap_or(0);
    let mut q = Vec::with_capacity(t * q_width);
    let mut k = Vec::with_capacity(t * kv_width);
    let mut v = Vec::with_capacity(t * kv_width);
    for r in qkv.chunks_exact(row.max(1)) {
        let (rq, rest) = r.split_at(q_width);
        let (rk, rv) = rest.split_at(kv_width);
        q.extend_from_slice(rq);
        k.extend_from_slice(rk);
        v.extend_from_slice(rv);
    }
    [q, k, v]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_qkv_cuts_rows() {
        // Two tokens, q width 2, k/v width 1.
        let qkv = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let [q, k, v] = split_qkv(&qkv, 2, 1);
        assert_eq!(q, [1.0, 2.0, 5.0, 6.0]);
        assert_eq!(k, [3.0, 7.0]);
        assert_eq!(v, [4.0, 8.0]);
    }

    #[test]
    fn add_into_adds_in_place() {
        let mut r = vec![1.0f32; 40_000];
        let y: Vec<f32> = (0..40_000).map(|i| i as f32).collect();
        add_into(&mut r, &y);
        assert!(r.iter().enumerate().all(|(i, &v)| v == 1.0 + i as f32));
    }
}
