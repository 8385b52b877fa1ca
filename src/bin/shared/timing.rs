//! Timing helpers shared by the benchmark binaries (included with `#[path]`).

use std::time::Instant;

/// Median of `v` (upper median for even lengths). `v` must not be empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` once to warm up, then `reps` (at least 1) timed times; returns the median seconds.
pub fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}
