//! Independent jobs on a few threads, results in job order.

use std::sync::atomic::{AtomicUsize, Ordering};

/// `job(0)`, …, `job(n - 1)` on `threads` scoped threads (at most `n`; 1 runs them in order on
/// the caller's thread), collected in job order. The first error in job order is returned.
///
/// For loading and encoding layer by layer: copying out of mapped files is page faults and
/// memory copies, which the kernel serves per thread, so two cores load two layers in about
/// the time of one. A panic in a job is re-raised as it was (a bug, not bad input).
pub fn map_in_order<T: Send, E: Send>(
    n: usize,
    threads: usize,
    job: &(dyn Fn(usize) -> Result<T, E> + Sync),
) -> Result<Vec<T>, E> {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return (0..n).map(job).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<T, E>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return mine;
                        }
                        mine.push((i, job(i)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::map_in_order;

    #[test]
    fn results_come_in_job_order_and_the_first_error_wins() {
        for threads in [1, 2, 5] {
            let squares = map_in_order(20, threads, &|i| Ok::<_, String>(i * i)).unwrap();
            assert_eq!(squares, (0..20).map(|i| i * i).collect::<Vec<_>>());
            let failed = map_in_order(20, threads, &|i| {
                if i % 7 == 3 {
                    Err(format!("job {i}"))
                } else {
                    Ok(i)
                }
            });
            assert_eq!(failed, Err("job 3".to_string()), "{threads} threads");
            assert_eq!(map_in_order(0, threads, &|i| Ok::<_, ()>(i)), Ok(vec![]));
        }
    }

    #[test]
    fn jobs_run_on_several_threads() {
        let ids = map_in_order(8, 2, &|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok::<_, ()>(std::thread::current().id())
        })
        .unwrap();
        let mut distinct = ids.clone();
        distinct.sort_by_key(|id| format!("{id:?}"));
        distinct.dedup();
        assert_eq!(distinct.len(), 2);
    }
}
