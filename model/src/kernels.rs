//! Host kernels for the CPU sampler ([`crate::engine`]): matrix products shaped for the
//! few-rows case of decoding, RMSNorm, rotary embeddings and attention over the KV cache.
//!
//! Every output element is computed in a fixed order that does not depend on the number of
//! rows in the call, on which rows they are, or on the number of threads: a matrix product's
//! element is one fused multiply-add chain over `k` in order (blocking over `k` stores and
//! reloads the running sum, which changes nothing), a dot product sums 16 lanes then reduces
//! them in a fixed tree. So a sequence samples the same tokens whatever else is in the batch,
//! and a run is bit-for-bit repeatable on one machine. Threads split the output columns
//! (matrix products) or the (row, head) pairs (attention), never a sum.
//!
//! The kernels are plain Rust written so that LLVM vectorises them, compiled three times:
//! for AVX-512, for AVX2+FMA, and without target features; the best one the CPU supports is
//! chosen once at run time. Machines with different CPUs may therefore round differently.

use rayon::prelude::*;

/// Column block of a matrix product: 64 f32, four AVX-512 registers per row.
const NB: usize = 64;
/// Rows of `x` per register tile.
const MR: usize = 6;
/// Rows of `w` kept hot in cache per pass (64 columns × 256 rows × 4 bytes = 64 KiB).
const KB: usize = 256;

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: each task writes a disjoint set of output elements.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer. A method, so that a closure calling it captures the whole `SendPtr` (which
    /// is `Sync`) rather than the raw pointer field (which is not).
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Isa {
    Avx512,
    Avx2,
    Plain,
}

fn isa() -> Isa {
    use std::sync::OnceLock;
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Plain
    })
}

/// `out[m, n] = Σ_k x[m, k] · w[k, n] (+ bias[n])`: `x` is `[m, k]`, `w` is `[k, n]`, both
/// row-major (Burn's `Linear` layout), `out` is `[m, n]`.
pub fn matmul(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, bias: Option<&[f32]>, out: &mut [f32]) {
    assert_eq!(x.len(), m * k, "matmul: x is not [m, k]");
    assert_eq!(w.len(), k * n, "matmul: w is not [k, n]");
    assert_eq!(out.len(), m * n, "matmul: out is not [m, n]");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "matmul: bias is not [n]");
    }
    if m == 0 || n == 0 {
        return;
    }
    let blocks = n.div_ceil(NB);
    let o = SendPtr(out.as_mut_ptr());
    let run = |cb: usize| {
        let c0 = cb * NB;
        let width = NB.min(n - c0);
        // SAFETY: column block `cb` of `out` is written by this task only.
        unsafe { matmul_cols(isa(), x, m, k, w, n, bias, o.get(), c0, width) }
    };
    if (m * k * n) < 1 << 16 || blocks == 1 {
        (0..blocks).for_each(run);
    } else {
        (0..blocks).into_par_iter().for_each(run);
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn matmul_cols(
    isa: Isa,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: *mut f32,
    c0: usize,
    width: usize,
) {
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => cols_avx512(x, m, k, w, n, bias, out, c0, width),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => cols_avx2(x, m, k, w, n, bias, out, c0, width),
            _ => cols_generic(x, m, k, w, n, bias, out, c0, width),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn cols_avx512(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: *mut f32,
    c0: usize,
    width: usize,
) {
    unsafe { cols_generic(x, m, k, w, n, bias, out, c0, width) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn cols_avx2(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: *mut f32,
    c0: usize,
    width: usize,
) {
    unsafe { cols_generic(x, m, k, w, n, bias, out, c0, width) }
}

/// One column block `[c0, c0 + width)` of the product, all rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn cols_generic(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: *mut f32,
    c0: usize,
    width: usize,
) {
    let mut k0 = 0;
    while k0 < k {
        let k1 = (k0 + KB).min(k);
        let mut r0 = 0;
        while r0 < m {
            let rows = MR.min(m - r0);
            unsafe {
                if width == NB {
                    match rows {
                        6 => tile::<6, NB>(x, k, w, n, out, r0, c0, k0, k1),
                        5 => tile::<5, NB>(x, k, w, n, out, r0, c0, k0, k1),
                        4 => tile::<4, NB>(x, k, w, n, out, r0, c0, k0, k1),
                        3 => tile::<3, NB>(x, k, w, n, out, r0, c0, k0, k1),
                        2 => tile::<2, NB>(x, k, w, n, out, r0, c0, k0, k1),
                        _ => tile::<1, NB>(x, k, w, n, out, r0, c0, k0, k1),
                    }
                } else {
                    // Ragged last block: 16 columns at a time, then one at a time.
                    let mut c = c0;
                    while c + 16 <= c0 + width {
                        for r in r0..r0 + rows {
                            tile::<1, 16>(x, k, w, n, out, r, c, k0, k1);
                        }
                        c += 16;
                    }
                    while c < c0 + width {
                        for r in r0..r0 + rows {
                            tile::<1, 1>(x, k, w, n, out, r, c, k0, k1);
                        }
                        c += 1;
                    }
                }
            }
            r0 += rows;
        }
        k0 = k1;
    }
    if let Some(b) = bias {
        for r in 0..m {
            for (c, &bc) in b.iter().enumerate().skip(c0).take(width) {
                // SAFETY: inside `out`, in this task's columns.
                unsafe { *out.add(r * n + c) += bc };
            }
        }
    }
}

/// `R × C` register tile: rows `r0..r0+R`, columns `c0..c0+C`, `k` in `k0..k1`, continuing the
/// sums already in `out` when `k0 > 0`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const C: usize>(
    x: &[f32],
    k: usize,
    w: &[f32],
    n: usize,
    out: *mut f32,
    r0: usize,
    c0: usize,
    k0: usize,
    k1: usize,
) {
    let mut acc = [[0.0f32; C]; R];
    if k0 > 0 {
        for (r, a) in acc.iter_mut().enumerate() {
            for (j, v) in a.iter_mut().enumerate() {
                *v = unsafe { *out.add((r0 + r) * n + c0 + j) };
            }
        }
    }
    for kk in k0..k1 {
        let wr: &[f32; C] = w[kk * n + c0..kk * n + c0 + C].try_into().expect("C columns");
        for (r, a) in acc.iter_mut().enumerate() {
            let xv = x[(r0 + r) * k + kk];
            for j in 0..C {
                a[j] = xv.mul_add(wr[j], a[j]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (j, v) in a.iter().enumerate() {
            unsafe { *out.add((r0 + r) * n + c0 + j) = *v };
        }
    }
}

/// `out[m, v] = Σ_k x[m, k] · e[v, k]`: the tied LM head, `x` `[m, k]` times the embedding
/// `e` `[vocab, k]` as stored (no transpose).
pub fn matmul_t(x: &[f32], m: usize, k: usize, e: &[f32], vocab: usize, out: &mut [f32]) {
    assert_eq!(x.len(), m * k, "matmul_t: x is not [m, k]");
    assert_eq!(e.len(), vocab * k, "matmul_t: e is not [vocab, k]");
    assert_eq!(out.len(), m * vocab, "matmul_t: out is not [m, vocab]");
    const VB: usize = 256;
    let o = SendPtr(out.as_mut_ptr());
    (0..vocab.div_ceil(VB)).into_par_iter().for_each(|b| {
        let v0 = b * VB;
        let v1 = (v0 + VB).min(vocab);
        unsafe {
            match isa() {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => dots_avx512(x, m, k, e, vocab, o.get(), v0, v1),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => dots_avx2(x, m, k, e, vocab, o.get(), v0, v1),
                _ => dots_generic(x, m, k, e, vocab, o.get(), v0, v1),
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dots_avx512(x: &[f32], m: usize, k: usize, e: &[f32], vocab: usize, out: *mut f32, v0: usize, v1: usize) {
    unsafe { dots_generic(x, m, k, e, vocab, out, v0, v1) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dots_avx2(x: &[f32], m: usize, k: usize, e: &[f32], vocab: usize, out: *mut f32, v0: usize, v1: usize) {
    unsafe { dots_generic(x, m, k, e, vocab, out, v0, v1) }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dots_generic(x: &[f32], m: usize, k: usize, e: &[f32], vocab: usize, out: *mut f32, v0: usize, v1: usize) {
    let kv = k / 16 * 16;
    let mut v = v0;
    while v < v1 {
        let vr = 4.min(v1 - v);
        let mut r = 0;
        while r < m {
            let rows = 4.min(m - r);
            for dv in 0..vr {
                let er = &e[(v + dv) * k..(v + dv + 1) * k];
                for dr in 0..rows {
                    let xr = &x[(r + dr) * k..(r + dr + 1) * k];
                    let s = dot(xr, er, kv);
                    unsafe { *out.add((r + dr) * vocab + v + dv) = s };
                }
            }
            r += rows;
        }
        v += vr;
    }
}

/// Dot product: 16 lanes over the first `kv` elements (a multiple of 16), a fixed reduction
/// tree, then the tail in order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32], kv: usize) -> f32 {
    let mut acc = [0.0f32; 16];
    for (ca, cb) in a[..kv].chunks_exact(16).zip(b[..kv].chunks_exact(16)) {
        for j in 0..16 {
            acc[j] = ca[j].mul_add(cb[j], acc[j]);
        }
    }
    let mut s = reduce16(acc);
    for j in kv..a.len() {
        s = a[j].mul_add(b[j], s);
    }
    s
}

#[inline(always)]
fn reduce16(a: [f32; 16]) -> f32 {
    let mut h8 = [0.0f32; 8];
    for j in 0..8 {
        h8[j] = a[j] + a[j + 8];
    }
    let mut h4 = [0.0f32; 4];
    for j in 0..4 {
        h4[j] = h8[j] + h8[j + 4];
    }
    (h4[0] + h4[2]) + (h4[1] + h4[3])
}

/// `x · (mean(x²) + eps)^-½ · γ` over rows of `gamma.len()`, as [`crate::ops::rms_norm`].
pub fn rms_norm(x: &[f32], gamma: &[f32], eps: f64, out: &mut [f32]) {
    let h = gamma.len();
    for (xr, or) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let inv = (ms + eps as f32).powf(-0.5);
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(gamma) {
            *o = v * inv * g;
        }
    }
}

/// Rotary embedding ("rotate half") in place on `[rows, heads, head_dim]` at `positions`.
pub fn rope(x: &mut [f32], heads: usize, head_dim: usize, positions: &[usize], inv_freq: &[f32]) {
    let half = head_dim / 2;
    let mut cos = vec![0.0f32; half];
    let mut sin = vec![0.0f32; half];
    for (row, &p) in x.chunks_exact_mut(heads * head_dim).zip(positions) {
        for i in 0..half {
            let f = p as f32 * inv_freq[i];
            cos[i] = f.cos();
            sin[i] = f.sin();
        }
        for hv in row.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = (hv[i], hv[i + half]);
                hv[i] = a * cos[i] + -b * sin[i];
                hv[i + half] = b * cos[i] + a * sin[i];
            }
        }
    }
}

/// SwiGLU's gate in place: `g ← silu(g) · u`.
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    for (a, &b) in g.iter_mut().zip(u) {
        let s = *a / (1.0 + (-*a).exp());
        *a = s * b;
    }
}

/// Keys and values of one row's context: up to two contiguous runs of positions (a group's
/// shared prompt, then the sample's own tokens), each `[len, head_dim]` per kv head with the
/// given base offset and per-head stride into the cache buffers.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub pool: usize,
    /// Offset of position 0 of kv head 0.
    pub base: usize,
    /// Distance between kv heads.
    pub head_stride: usize,
    pub len: usize,
}

/// Attention of one batch of query rows over their cached contexts. `q` is
/// `[rows, heads, head_dim]`, `out` the same; `pools[s.pool]` holds the keys/values a segment
/// points into (`keys[pool]`, `values[pool]`).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    contexts: &[[Option<Segment>; 2]],
    keys: &[&[f32]],
    values: &[&[f32]],
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    let scale = (head_dim as f64).powf(-0.5) as f32;
    let o = SendPtr(out.as_mut_ptr());
    let work = contexts.len() * heads;
    let a = Attend { q, contexts, keys, values, heads, groups: heads / kv_heads, head_dim, scale };
    let one = |i: usize| {
        // SAFETY: (row, head) `i` owns its slice of `out`; the ISA is the CPU's.
        unsafe {
            match isa() {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => attend_avx512(&a, i, o.get()),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => attend_avx2(&a, i, o.get()),
                _ => attend(&a, i, o.get()),
            }
        }
    };
    if work < 8 {
        (0..work).for_each(one);
    } else {
        (0..work).into_par_iter().for_each(one);
    }
}

/// The inputs of [`attention`] shared by every (row, head).
struct Attend<'a> {
    q: &'a [f32],
    contexts: &'a [[Option<Segment>; 2]],
    keys: &'a [&'a [f32]],
    values: &'a [&'a [f32]],
    heads: usize,
    groups: usize,
    head_dim: usize,
    scale: f32,
}

// The same body compiled for each ISA, so that `mul_add` is one instruction rather than a
// call to `fmaf` (the same fused result, so the same numbers on every path).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn attend_avx512(a: &Attend, i: usize, out: *mut f32) {
    unsafe { attend(a, i, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(a: &Attend, i: usize, out: *mut f32) {
    unsafe { attend(a, i, out) }
}

/// Attention of query row `i / heads`, head `i % heads`, written to its slice of `out`.
#[inline(always)]
unsafe fn attend(a: &Attend, i: usize, out: *mut f32) {
    let Attend { q, contexts, keys, values, heads, groups, head_dim, scale } = *a;
    let (r, h) = (i / heads, i % heads);
    let kvh = h / groups;
    let qv = &q[(r * heads + h) * head_dim..(r * heads + h + 1) * head_dim];
    let ctx = &contexts[r];
    let total: usize = ctx.iter().flatten().map(|s| s.len).sum();
    let mut scores = Vec::with_capacity(total);
    let kvd = head_dim / 16 * 16;
    for s in ctx.iter().flatten() {
        let kbuf = keys[s.pool];
        let start = s.base + kvh * s.head_stride;
        for j in 0..s.len {
            let kr = &kbuf[start + j * head_dim..start + (j + 1) * head_dim];
            scores.push(dot(qv, kr, kvd) * scale);
        }
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let mut acc = vec![0.0f32; head_dim];
    let mut j = 0;
    for s in ctx.iter().flatten() {
        let vbuf = values[s.pool];
        let start = s.base + kvh * s.head_stride;
        for t in 0..s.len {
            let p = scores[j] / sum;
            let vr = &vbuf[start + t * head_dim..start + (t + 1) * head_dim];
            for (a, &v) in acc.iter_mut().zip(vr) {
                *a = p.mul_add(v, *a);
            }
            j += 1;
        }
    }
    // SAFETY: (row, head) `i` owns this slice of `out`.
    unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), out.add((r * heads + h) * head_dim), head_dim) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Vec<f64> {
        let mut o = vec![0.0f64; m * n];
        for r in 0..m {
            for c in 0..n {
                o[r * n + c] = (0..k).map(|i| x[r * k + i] as f64 * w[i * n + c] as f64).sum();
            }
        }
        o
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn matmul_matches_a_naive_product_and_does_not_depend_on_the_rows_around() {
        // Shapes across the tile edges: ragged columns, rows not a multiple of MR, k > KB.
        for &(m, k, n) in &[(1, 3, 1), (5, 17, 70), (7, 300, 129), (13, 513, 64), (2, 64, 200)] {
            let x = data(m * k, 1);
            let w = data(k * n, 2);
            let b = data(n, 3);
            let mut out = vec![0.0; m * n];
            matmul(&x, m, k, &w, n, Some(&b), &mut out);
            let want = naive(&x, m, k, &w, n);
            for i in 0..m * n {
                let expect = want[i] + b[i % n] as f64;
                assert!((out[i] as f64 - expect).abs() < 1e-4, "{m}x{k}x{n} at {i}: {} vs {expect}", out[i]);
            }
            // Each row alone gives bitwise the same numbers.
            for r in 0..m {
                let mut one = vec![0.0; n];
                matmul(&x[r * k..(r + 1) * k], 1, k, &w, n, Some(&b), &mut one);
                assert_eq!(one, out[r * n..(r + 1) * n], "row {r} of {m}x{k}x{n}");
            }
        }
    }

    #[test]
    fn matmul_t_matches_a_naive_product_and_does_not_depend_on_the_rows_around() {
        for &(m, k, v) in &[(1, 16, 3), (6, 37, 300), (9, 64, 513)] {
            let x = data(m * k, 4);
            let e = data(v * k, 5);
            let mut out = vec![0.0; m * v];
            matmul_t(&x, m, k, &e, v, &mut out);
            for r in 0..m {
                for c in 0..v {
                    let want: f64 = (0..k).map(|i| x[r * k + i] as f64 * e[c * k + i] as f64).sum();
                    assert!((out[r * v + c] as f64 - want).abs() < 1e-4);
                }
                let mut one = vec![0.0; v];
                matmul_t(&x[r * k..(r + 1) * k], 1, k, &e, v, &mut one);
                assert_eq!(one, out[r * v..(r + 1) * v]);
            }
        }
    }
}
