//! Agglomerative clustering with Ward's linkage, the reference's alternative to k-means on the
//! same spectral embedding: start from singletons and repeatedly merge the two clusters whose
//! union increases the within-cluster sum of squares least, until k remain. Unlike k-means it
//! has no random restarts (deterministic for a given embedding) and does not favour clusters
//! of equal size.
//!
//! Implemented with the nearest-neighbour chain (O(n²) time and memory; Ward's linkage is
//! reducible, so the merges it finds are those of the greedy algorithm) and the Lance–Williams
//! update on squared Euclidean distances:
//! `d(k, i∪j) = ((n_i+n_k)·d(k,i) + (n_j+n_k)·d(k,j) − n_k·d(i,j)) / (n_i+n_j+n_k)`.

/// Ward clustering of `rows` (`n × dim`, row-major) into `k` clusters; labels are 0..k in
/// order of each cluster's first row.
pub fn ward(rows: &[f64], dim: usize, k: usize) -> Vec<usize> {
    let n = rows.len().checked_div(dim).unwrap_or(0);
    if n == 0 {
        return Vec::new();
    }
    let k = k.clamp(1, n);
    // Condensed storage would halve memory; a full matrix keeps the indexing obvious.
    let mut d = vec![0f64; n * n];
    for i in 0..n {
        for j in (i + 1)..n {
            let s: f64 = (0..dim)
                .map(|c| (rows[i * dim + c] - rows[j * dim + c]).powi(2))
                .sum();
            d[i * n + j] = s;
            d[j * n + i] = s;
        }
    }
    let mut size = vec![1usize; n];
    let mut active = vec![true; n];
    // (height, kept index, merged index)
    let mut merges: Vec<(f64, usize, usize)> = Vec::with_capacity(n - 1);
    let mut chain: Vec<usize> = Vec::new();
    let mut remaining = n;
    while remaining > 1 {
        if chain.is_empty() {
            chain.push((0..n).find(|&i| active[i]).unwrap_or(0));
        }
        let a = chain[chain.len() - 1];
        let prev = (chain.len() >= 2).then(|| chain[chain.len() - 2]);
        // Nearest active neighbour of a; the chain's previous element wins ties, so the
        // chain cannot cycle.
        let mut best: Option<(f64, usize)> = prev.map(|p| (d[a * n + p], p));
        for b in 0..n {
            if b == a || !active[b] {
                continue;
            }
            let v = d[a * n + b];
            if best.is_none_or(|(bv, _)| v < bv) {
                best = Some((v, b));
            }
        }
        let Some((h, b)) = best else { break };
        if Some(b) == prev {
            chain.truncate(chain.len() - 2);
            let (i, j) = (a.min(b), a.max(b));
            let (ni, nj) = (size[i] as f64, size[j] as f64);
            let dij = d[i * n + j];
            for m in 0..n {
                if !active[m] || m == i || m == j {
                    continue;
                }
                let nm = size[m] as f64;
                let v = ((ni + nm) * d[m * n + i] + (nj + nm) * d[m * n + j] - nm * dij)
                    / (ni + nj + nm);
                d[m * n + i] = v;
                d[i * n + m] = v;
            }
            active[j] = false;
            size[i] += size[j];
            merges.push((h, i, j));
            remaining -= 1;
        } else {
            chain.push(b);
        }
    }
    // Reducibility makes heights monotone along the dendrogram: the n − k lowest merges are
    // the greedy algorithm's first n − k.
    merges.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for &(_, i, j) in merges.iter().take(n - k) {
        let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
        parent[rj] = ri;
    }
    let mut label_of_root = std::collections::BTreeMap::new();
    (0..n)
        .map(|x| {
            let r = root(&mut parent, x);
            let next = label_of_root.len();
            *label_of_root.entry(r).or_insert(next)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tight groups on a line are found whatever their sizes; k = 1 and k = n are the
    /// trivial cuts.
    #[test]
    fn ward_finds_separated_groups() {
        let xs = [0.0, 0.1, 0.2, 0.15, 5.0, 5.1, 9.0, 9.2, 9.1, 9.05, 8.95];
        let l = ward(&xs, 1, 3);
        assert_eq!(l, [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2]);
        assert!(ward(&xs, 1, 1).iter().all(|&x| x == 0));
        let all = ward(&xs, 1, xs.len());
        assert_eq!(all, (0..xs.len()).collect::<Vec<_>>());
    }

    /// Ward's criterion, not single linkage: a chain of close points is split where the sum
    /// of squares grows least, the merge cost of two pairs is their centroid distance² × 1.
    #[test]
    fn ward_merges_by_variance_increase() {
        // Pairs A = {0, 1}, B = {4, 5}, C = {10}: Ward joins A and B (Δ = 2·2/4·16 = 16) before
        // B and C (Δ = 2/3·30.25 ≈ 20.2), although 5 → 10 is a longer gap than 1 → 4.
        let xs = [0.0, 1.0, 4.0, 5.0, 10.0];
        assert_eq!(ward(&xs, 1, 2), [0, 0, 0, 0, 1]);
    }
}
