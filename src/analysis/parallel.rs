//! Row-chunked parallel map over `std::thread::scope`, sequential where threads are absent.

use std::ops::Range;

/// Number of worker threads: the machine's parallelism natively, 1 on wasm32 (where
/// `available_parallelism` fails and threads cannot be spawned).
pub(crate) fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Splits `0..n` into contiguous chunks, runs `f` on each (in parallel when more than one
/// worker is available and `n >= min_parallel`) and concatenates the results in order.
pub(crate) fn map_row_chunks<T, F>(n: usize, min_parallel: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(Range<usize>) -> Vec<T> + Sync,
{
    let workers = worker_count().min(n.max(1));
    if workers <= 1 || n < min_parallel {
        return f(0..n);
    }
    let chunk = n.div_ceil(workers * 4);
    let ranges: Vec<Range<usize>> = (0..n)
        .step_by(chunk)
        .map(|s| s..(s + chunk).min(n))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<T>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(r) = ranges.get(i) else { break };
                        done.push((i, f(r.clone())));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            })
            .collect()
    });
    parts.sort_by_key(|(i, _)| *i);
    parts.into_iter().flat_map(|(_, v)| v).collect()
}
