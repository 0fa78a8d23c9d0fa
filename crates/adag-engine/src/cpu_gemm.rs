//! The one call into the gemm crate (the kernel candle runs underneath) for the CPU fast paths
//! that need strides candle's `matmul` does not take: the attention backward, edge reading and
//! the encoder product on mapped files.

/// An `f32` matrix operand: its first element and its row and column strides, in elements.
#[derive(Clone, Copy)]
pub(crate) struct Strided<P> {
    pub ptr: P,
    pub rs: usize,
    pub cs: usize,
}

impl<P> Strided<P> {
    /// A row-major operand with row stride `rs`.
    pub fn rows(ptr: P, rs: usize) -> Self {
        Strided { ptr, rs, cs: 1 }
    }
}

/// `dst (+)= lhs · rhs` for `lhs` `[m, k]`, `rhs` `[k, n]`, `dst` `[m, n]`; `accumulate` adds
/// to what `dst` holds, otherwise it is overwritten (and may be uninitialised).
///
/// # Safety
/// `dst` must be valid for writes, and `lhs`/`rhs` for reads, of every element the shapes and
/// strides reach; `dst` must not overlap either input.
pub(crate) unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: Strided<*mut f32>,
    accumulate: bool,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
    parallelism: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.ptr,
        dst.cs as isize,
        dst.rs as isize,
        accumulate,
        lhs.ptr,
        lhs.cs as isize,
        lhs.rs as isize,
        rhs.ptr,
        rhs.cs as isize,
        rhs.rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    )
}

/// Threading for the products: candle's CPU thread count.
pub(crate) fn parallelism() -> gemm::Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        k => gemm::Parallelism::Rayon(k),
    }
}
