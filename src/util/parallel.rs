//! Row-parallel loops over rayon's global pool; serial on wasm32.
//!
//! wasm32-unknown-unknown has no threads: rayon would fall back to a one-thread pool there,
//! so the wasm build runs the same closures in a plain loop instead and does not ship
//! rayon-core. Results are identical either way: every chunk is computed by the same closure
//! and chunks are concatenated in order.

use std::ops::Range;

#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

/// Worker threads available: rayon's pool size natively (all cores unless
/// `RAYON_NUM_THREADS` says otherwise), 1 on wasm32.
pub fn worker_count() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::current_num_threads()
    }
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
}

/// Maps contiguous row ranges covering `0..n` through `f` and concatenates the results in row
/// order. Runs in parallel (about four chunks per worker) when `n >= min_parallel` and more
/// than one worker is available; otherwise calls `f(0..n)` once.
pub fn map_row_chunks<T, F>(n: usize, min_parallel: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(Range<usize>) -> Vec<T> + Sync,
{
    let workers = worker_count().min(n.max(1));
    if workers <= 1 || n < min_parallel {
        return f(0..n);
    }
    let chunk = n.div_ceil(workers * 4);
    #[cfg(not(target_arch = "wasm32"))]
    {
        (0..n.div_ceil(chunk))
            .into_par_iter()
            .map(|i| f(i * chunk..((i + 1) * chunk).min(n)))
            .collect::<Vec<Vec<T>>>()
            .into_iter()
            .flatten()
            .collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        (0..n.div_ceil(chunk))
            .flat_map(|i| f(i * chunk..((i + 1) * chunk).min(n)))
            .collect()
    }
}

/// Splits `out` (`per_row` items per row) into chunks of `rows_per_chunk` rows (the last may be
/// shorter) and calls `work(first_row, chunk)` on each, in parallel natively. One chunk (or
/// `rows_per_chunk == 0`) means one call on the whole of `out`.
pub fn for_each_row_chunk<T, F>(out: &mut [T], per_row: usize, rows_per_chunk: usize, work: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let chunk_len = rows_per_chunk.saturating_mul(per_row.max(1));
    if chunk_len == 0 || chunk_len >= out.len() {
        work(0, out);
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    out.par_chunks_mut(chunk_len)
        .enumerate()
        .for_each(|(i, chunk)| work(i * rows_per_chunk, chunk));
    #[cfg(target_arch = "wasm32")]
    out.chunks_mut(chunk_len)
        .enumerate()
        .for_each(|(i, chunk)| work(i * rows_per_chunk, chunk));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_row_chunks_keeps_row_order() {
        for n in [0, 1, 7, 1000] {
            let rows = map_row_chunks(n, 2, |r| r.map(|i| i * 3).collect());
            assert_eq!(rows, (0..n).map(|i| i * 3).collect::<Vec<_>>(), "n = {n}");
        }
    }

    #[test]
    fn for_each_row_chunk_passes_first_rows() {
        let (rows, per_row) = (103, 3);
        let mut out = vec![0usize; rows * per_row];
        for_each_row_chunk(&mut out, per_row, 10, |r0, chunk| {
            for (k, v) in chunk.iter_mut().enumerate() {
                *v = r0 + k / per_row;
            }
        });
        let want: Vec<usize> = (0..rows).flat_map(|r| [r; 3]).collect();
        assert_eq!(out, want);
    }
}
