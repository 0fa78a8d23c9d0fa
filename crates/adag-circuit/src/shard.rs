//! Sharding a dataset across jobs: `I/N` picks the I-th of N contiguous parts.
//!
//! Parts are split like numpy's `array_split` (what the reference's multi-GPU `prep.py` uses):
//! the first `len % N` parts get one extra prompt. Contiguous parts keep `prompt_id`s of a
//! shard in one range, so merged shards are simply concatenated in shard order.

use serde::{Deserialize, Serialize};

/// One shard of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole dataset.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` (0 ≤ I < N).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected I/N, e.g. 0/4"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: bad shard index"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: bad shard count"))?;
        if count == 0 || index >= count {
            return Err(format!("`{s}`: need 0 ≤ I < N"));
        }
        Ok(Shard { index, count })
    }

    /// The shard a SLURM array task is: `SLURM_ARRAY_TASK_ID` of `SLURM_ARRAY_TASK_COUNT`
    /// (offset by `SLURM_ARRAY_TASK_MIN`, so `--array=1-8` works too). `None` outside an array
    /// job.
    pub fn from_env() -> Result<Option<Shard>, String> {
        Shard::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Shard::from_env`] over any variable lookup (testable).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, String> {
        let num = |k: &str| -> Result<Option<usize>, String> {
            var(k)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map_err(|_| format!("{k}={v} is not a number"))
                })
                .transpose()
        };
        let (Some(id), Some(count)) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?)
        else {
            return Ok(None);
        };
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id.checked_sub(min).ok_or_else(|| {
            format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}")
        })?;
        if count == 0 || index >= count {
            return Err(format!(
                "SLURM_ARRAY_TASK_ID={id} (min {min}) is not below SLURM_ARRAY_TASK_COUNT={count}; \
                 use a dense array such as --array=0-{}",
                count.saturating_sub(1)
            ));
        }
        Ok(Some(Shard { index, count }))
    }

    /// The prompt ids `[first, end)` of this shard of `len` prompts.
    pub fn range(&self, len: usize) -> std::ops::Range<usize> {
        let base = len / self.count;
        let extra = len % self.count;
        let first = self.index * base + self.index.min(extra);
        let size = base + usize::from(self.index < extra);
        first..first + size
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_like_array_split() {
        // np.array_split(range(10), 4) -> sizes 3,3,2,2
        let r: Vec<_> = (0..4)
            .map(|i| Shard { index: i, count: 4 }.range(10))
            .collect();
        assert_eq!(r, vec![0..3, 3..6, 6..8, 8..10]);
        assert_eq!(Shard { index: 2, count: 3 }.range(1), 1..1);
        assert_eq!(Shard::ALL.range(5), 0..5);
    }

    #[test]
    fn parse_and_slurm() {
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 1, count: 3 });
        assert!(Shard::parse("3/3").is_err());
        assert!(Shard::parse("x").is_err());
        let env = |id: &'static str, n: &'static str, min: Option<&'static str>| {
            move |k: &str| match k {
                "SLURM_ARRAY_TASK_ID" => Some(id.to_string()),
                "SLURM_ARRAY_TASK_COUNT" => Some(n.to_string()),
                "SLURM_ARRAY_TASK_MIN" => min.map(String::from),
                _ => None,
            }
        };
        assert_eq!(
            Shard::from_vars(env("2", "4", None)).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert_eq!(
            Shard::from_vars(env("4", "4", Some("1"))).unwrap(),
            Some(Shard { index: 3, count: 4 })
        );
        assert!(Shard::from_vars(env("4", "4", None)).is_err());
        assert_eq!(Shard::from_vars(|_| None).unwrap(), None);
    }
}
