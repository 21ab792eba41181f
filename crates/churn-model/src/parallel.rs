//! Work over fixed-size chunks on every core. The chunks are fixed by their size, not by the
//! number of cores, and their results come back in order, so sums over them are the same
//! bits on any machine.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Items per chunk: large enough that spawning threads costs nothing in comparison.
pub(crate) const CHUNK: usize = 8192;

/// `f` of each chunk of `items`, in order, computed on all available cores.
pub(crate) fn map_chunks<T: Sync, U: Send>(items: &[T], f: impl Fn(&[T]) -> U + Sync) -> Vec<U> {
    let chunks: Vec<&[T]> = items.chunks(CHUNK).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len());
    if threads <= 1 {
        return chunks.into_iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<U>> = (0..chunks.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(chunk) = chunks.get(i) else {
                            return done;
                        };
                        done.push((i, f(chunk)));
                    }
                })
            })
            .collect();
        for worker in workers {
            let done = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (i, result) in done {
                results[i] = Some(result);
            }
        }
    });
    results.into_iter().flatten().collect()
}

/// `f(first_row, block)` for blocks of consecutive rows of `x` (one per available core, each
/// of at least [`CHUNK`] rows), on all available cores. Each call writes its own block only,
/// so what `x` holds afterwards does not depend on the split.
pub(crate) fn for_row_blocks_mut<T: Send>(
    x: &mut ndarray::Array2<T>,
    f: impl Fn(usize, ndarray::ArrayViewMut2<'_, T>) + Sync,
) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rows_per_block = x.nrows().div_ceil(threads).max(CHUNK);
    std::thread::scope(|scope| {
        for (b, block) in x
            .axis_chunks_iter_mut(ndarray::Axis(0), rows_per_block)
            .enumerate()
        {
            let f = &f;
            scope.spawn(move || f(b * rows_per_block, block));
        }
    });
}

/// `first()` on a thread of its own while `second()` runs on this one, and both results: for
/// two independent steps of which one alone would leave a core idle. A panic in `first` is
/// resumed here as the panic it was.
pub fn beside<A: Send, B>(first: impl FnOnce() -> A + Send, second: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|scope| {
        let first = scope.spawn(first);
        let second = second();
        let first = first
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (first, second)
    })
}

/// `f` of each item, in order, computed on all available cores.
pub(crate) fn map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    map_chunks(items, |chunk| chunk.iter().map(&f).collect::<Vec<U>>())
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_chunking() {
        let items: Vec<u64> = (0..(3 * CHUNK as u64 + 17)).collect();
        assert_eq!(
            map(&items, |v| v * 2),
            items.iter().map(|v| v * 2).collect::<Vec<_>>()
        );
        let sums = map_chunks(&items, |c| c.iter().sum::<u64>());
        assert_eq!(sums.len(), 4);
        assert_eq!(sums.iter().sum::<u64>(), items.iter().sum::<u64>());
        assert_eq!(sums[0], (0..CHUNK as u64).sum::<u64>());
        assert!(map(&[] as &[u64], |v| *v).is_empty());
    }

    #[test]
    fn beside_returns_both_results_each_from_its_own_step() {
        let items: Vec<u64> = (1..=100).collect();
        let (sum, product) = beside(
            || items.iter().sum::<u64>(),
            || items[..10].iter().product::<u64>(),
        );
        assert_eq!(sum, 5050);
        assert_eq!(product, 3_628_800);
    }
}
