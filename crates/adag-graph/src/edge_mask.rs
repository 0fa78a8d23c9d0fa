//! The kept edges of a pruned graph, stored as a sorted list rather than an `n × n` mask.
//!
//! Why: a pruned graph keeps a small share of its edges, while a dense boolean mask costs
//! `n²` bytes — 3 GB at 4k tokens × 12 layers, a quarter of the adjacency itself. The type keeps
//! the dense mask's reading interface (`len`, indexing by `target · n + source`, `iter`) so
//! callers that treated it as a `Vec<bool>` read it unchanged.

/// Kept edges as ascending flat indices `target · n + source`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EdgeMask {
    n: usize,
    kept: Vec<u64>,
}

impl EdgeMask {
    /// A mask over `n` nodes keeping `edges` (`(target, source)` pairs, in any order).
    pub fn new(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut kept: Vec<u64> = edges.into_iter().map(|(t, s)| (t * n + s) as u64).collect();
        kept.sort_unstable();
        kept.dedup();
        EdgeMask { n, kept }
    }

    /// The mask of a dense row-major `n × n` boolean matrix.
    pub fn from_dense(n: usize, dense: &[bool]) -> Self {
        EdgeMask {
            n,
            kept: (0..dense.len())
                .filter(|&k| dense[k])
                .map(|k| k as u64)
                .collect(),
        }
    }

    /// `n²`, the length of the equivalent dense mask.
    pub fn len(&self) -> usize {
        self.n * self.n
    }

    /// Whether the mask covers no nodes.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Number of kept edges.
    pub fn count(&self) -> usize {
        self.kept.len()
    }

    /// Whether the edge from `source` to `target` is kept.
    pub fn get(&self, target: usize, source: usize) -> bool {
        self.kept
            .binary_search(&((target * self.n + source) as u64))
            .is_ok()
    }

    /// Kept `(target, source)` pairs in row-major order.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.kept
            .iter()
            .map(|&k| (k as usize / self.n, k as usize % self.n))
    }

    /// Every entry of the dense mask in row-major order (`n²` items: prefer [`Self::edges`]).
    pub fn iter(&self) -> impl Iterator<Item = &'static bool> + '_ {
        let mut next = self.kept.iter().peekable();
        (0..self.len() as u64).map(move |k| {
            if next.peek() == Some(&&k) {
                next.next();
                &true
            } else {
                &false
            }
        })
    }

    /// The dense row-major `n × n` mask (for callers that need bytes, such as Python).
    pub fn to_dense(&self) -> Vec<bool> {
        let mut out = vec![false; self.len()];
        for &k in &self.kept {
            out[k as usize] = true;
        }
        out
    }
}

impl std::ops::Index<usize> for EdgeMask {
    type Output = bool;
    fn index(&self, k: usize) -> &bool {
        assert!(k < self.len(), "edge index {k} outside {}²", self.n);
        if self.kept.binary_search(&(k as u64)).is_ok() {
            &true
        } else {
            &false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_mask_reads_like_the_dense_one() {
        let n = 5;
        let dense: Vec<bool> = (0..n * n).map(|k| k % 7 == 3 || k == 24).collect();
        let m = EdgeMask::from_dense(n, &dense);
        assert_eq!(m.len(), 25);
        assert_eq!(m.count(), dense.iter().filter(|&&b| b).count());
        assert_eq!(m.iter().copied().collect::<Vec<_>>(), dense);
        assert_eq!(m.to_dense(), dense);
        for (k, &want) in dense.iter().enumerate() {
            assert_eq!(m[k], want, "entry {k}");
            assert_eq!(m.get(k / n, k % n), want, "entry {k}");
        }
        let pairs: Vec<(usize, usize)> = m.edges().collect();
        assert_eq!(EdgeMask::new(n, pairs.iter().rev().copied()), m);
        assert!(pairs.windows(2).all(|w| w[0] < w[1]));
    }
}
