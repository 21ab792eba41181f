//! The gbdt learner's bins (forust-ml's `bin_matrix`, patched in `vendor/forust-ml`) checked
//! against the weighted percentiles of each column computed exactly, in whole units of weight;
//! and the partition of a node's rows by their bins (`pivot_on_split`, patched too) against
//! the stable partition computed by filtering; and a fit on two threads against one on a
//! single thread (the patched parallel steps must grow the same trees).
//!
//! The rows weigh 1 or 3 (as balanced class weights give two weights) and every column's
//! non-missing rows weigh 2^k in all, so each row's share of the weight and every partial sum
//! of shares is exact in binary floating point: the cuts cannot depend on the order in which
//! tied rows are visited, and the expected cuts follow from integer sums alone.

use forust_ml::binning::bin_matrix;
use forust_ml::data::Matrix;
use forust_ml::utils::{fast_sum, fast_sum_of, pivot_on_split};

const ROWS: usize = 4096;
const BINS: u16 = 64;

/// A small deterministic generator (SplitMix64), so the test needs no random crate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Cuts of `values` (NaN missing) with `weights` in whole units, as the gbdt defines them: the
/// distinct values when there are at most `BINS + 1`, else for each percentile i / BINS the
/// least value whose cumulative weight (of it and every smaller value) reaches that share of
/// the total; then `f64::MAX`, without repeats.
fn exact_cuts(values: &[f64], weights: &[u64]) -> Vec<f64> {
    let mut present: Vec<(f64, u64)> = values
        .iter()
        .zip(weights)
        .filter(|(v, _)| !v.is_nan())
        .map(|(v, w)| (*v, *w))
        .collect();
    present.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut distinct: Vec<(f64, u64)> = Vec::new();
    for (v, w) in present {
        match distinct.last_mut() {
            Some((last, sum)) if *last == v => *sum += w,
            _ => distinct.push((v, w)),
        }
    }
    let mut cuts: Vec<f64> = if distinct.len() <= usize::from(BINS) + 1 {
        distinct.iter().map(|(v, _)| *v).collect()
    } else {
        let total: u64 = distinct.iter().map(|(_, w)| w).sum();
        (0..u64::from(BINS))
            .map(|i| {
                let mut cumulative = 0;
                distinct
                    .iter()
                    .find(|(_, w)| {
                        cumulative += w;
                        cumulative * u64::from(BINS) >= i * total
                    })
                    .map(|(v, _)| *v)
                    .expect("the last value reaches the whole weight")
            })
            .collect()
    };
    cuts.push(f64::MAX);
    cuts.dedup();
    cuts
}

#[test]
fn gbdt_cuts_are_the_exact_weighted_percentiles_and_each_value_falls_in_its_bin() {
    let mut rng = SplitMix(7);
    // Half the rows weigh 3 and half 1: 8192 units in all.
    let weights: Vec<u64> = (0..ROWS).map(|r| if r % 2 == 0 { 3 } else { 1 }).collect();
    // A quarter of the rows (as many of each weight) are missing in the last column, leaving
    // 4096 units.
    let missing = |r: usize| r % 4 < 2;
    let columns: Vec<Vec<f64>> = vec![
        // Continuous with many ties: cents in [0, 30).
        (0..ROWS).map(|_| rng.below(3000) as f64 / 100.0).collect(),
        // Ten levels: the distinct values are the cuts.
        (0..ROWS).map(|_| rng.below(10) as f64 - 4.5).collect(),
        // As many distinct values as cuts can be, and one more.
        (0..ROWS).map(|r| (r % 65) as f64).collect(),
        (0..ROWS).map(|r| (r % 66) as f64 * 0.25).collect(),
        // Every value distinct, in descending order, weights alternating.
        (0..ROWS).map(|r| -(r as f64)).collect(),
        // Skewed counts with a long tail, a quarter missing.
        (0..ROWS)
            .map(|r| {
                if missing(r) {
                    f64::NAN
                } else {
                    (rng.below(1 << 12) as f64).sqrt().floor() * (rng.below(40) as f64)
                }
            })
            .collect(),
    ];
    let data: Vec<f64> = columns.iter().flatten().copied().collect();
    let matrix = Matrix::new(&data, ROWS, columns.len());
    let sample_weight: Vec<f64> = weights.iter().map(|w| *w as f64).collect();
    for parallel in [false, true] {
        let binned = bin_matrix(&matrix, &sample_weight, BINS, f64::NAN, parallel).unwrap();
        for (c, values) in columns.iter().enumerate() {
            let expected = exact_cuts(values, &weights);
            let cuts = binned.cuts.get_col(c);
            assert_eq!(cuts, expected.as_slice(), "column {c}");
            let bins = &binned.binned_data[c * ROWS..(c + 1) * ROWS];
            for (r, v) in values.iter().enumerate() {
                // Bin 0 holds the missing values; a value's bin is the number of cuts at or
                // below it.
                let bin = if v.is_nan() {
                    0
                } else {
                    expected.iter().filter(|cut| **cut <= *v).count()
                };
                assert_eq!(usize::from(bins[r]), bin, "column {c}, row {r}, value {v}");
            }
        }
    }
    // The two-weight rows with 65 and 66 distinct values take the two paths.
    let cuts = |c: usize| exact_cuts(&columns[c], &weights).len();
    assert_eq!(cuts(2), 66);
    assert!(cuts(3) <= usize::from(BINS) + 1);
}

#[test]
fn the_total_weight_of_values_read_in_place_has_the_bits_of_forusts_sum_over_a_copy() {
    let mut rng = SplitMix(11);
    // Weights whose sums round differently in different orders, every length of a partial
    // last chunk.
    for n in 0..70 {
        let weights: Vec<f64> = (0..n)
            .map(|_| (rng.below(1_000_000) as f64 + 0.1) / 7.0)
            .collect();
        let in_place = fast_sum_of(weights.iter().copied());
        assert_eq!(
            in_place.to_bits(),
            fast_sum(&weights).to_bits(),
            "{n} weights"
        );
    }
    // A different order of the same additions does give other bits, so the check can fail.
    let weights: Vec<f64> = (0..70).map(|i| 0.1 + f64::from(i) / 3.0).collect();
    let sequential: f64 = weights.iter().sum();
    assert_ne!(fast_sum(&weights).to_bits(), sequential.to_bits());
}

/// Rows from which `pivot_on_split` partitions on several threads (its
/// `PARALLEL_PIVOT_MIN_ROWS`).
const PARALLEL_PIVOT_MIN_ROWS: usize = 1 << 17;

#[test]
fn a_nodes_rows_are_split_into_those_going_left_then_right_each_in_their_order() {
    let mut rng = SplitMix(7);
    let rows = 3 * PARALLEL_PIVOT_MIN_ROWS + 12_345;
    // Bin 0 is missing; a fifth of the rows.
    let bins: Vec<u16> = (0..rows)
        .map(|_| {
            if rng.below(5) == 0 {
                0
            } else {
                1 + rng.below(39) as u16
            }
        })
        .collect();
    let sizes = [
        0,
        1,
        2,
        100,
        PARALLEL_PIVOT_MIN_ROWS - 1,
        PARALLEL_PIVOT_MIN_ROWS,
        rows,
    ];
    // Split bin 1 sends only missing rows left (or none), 40 every row (or all but missing).
    let splits = [
        (1, false),
        (1, true),
        (20, true),
        (20, false),
        (40, false),
        (40, true),
    ];
    for n in sizes {
        for (split, missing_right) in splits {
            // A node's rows come in any order: the even rows then the odd ones, and the small
            // nodes' rows shuffled.
            let mut index: Vec<usize> = (0..rows)
                .step_by(2)
                .chain((1..rows).step_by(2))
                .take(n)
                .collect();
            if n <= 100 {
                for i in (1..n).rev() {
                    index.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
            let goes_left = |row: &usize| {
                let bin = bins[*row];
                if bin == 0 {
                    !missing_right
                } else {
                    bin < split
                }
            };
            let (left, right): (Vec<usize>, Vec<usize>) = index.iter().partition(|r| goes_left(r));
            let n_left = pivot_on_split(&mut index, &bins, split, missing_right);
            assert_eq!(
                n_left,
                left.len(),
                "{n} rows, split bin {split}, missing right {missing_right}"
            );
            assert_eq!(
                index,
                [left, right].concat(),
                "{n} rows, split bin {split}, missing right {missing_right}"
            );
        }
    }
}

/// A fit on two threads takes the same steps as one on a single thread: the tiled fill's
/// tasks, the leaf weights added to the training predictions in blocks of rows, the row
/// index and the gradient sums. Enough rows for several of those blocks (65,536 rows each)
/// and for the partition on several threads; a wrong block bound would change a row's
/// prediction, then its gradient, then the next trees.
#[test]
fn a_gbdt_fit_on_several_threads_grows_the_trees_of_a_fit_on_one() {
    use forust_ml::GradientBooster;
    use forust_ml::objective::ObjectiveType;

    let mut rng = SplitMix(11);
    let rows = 3 * PARALLEL_PIVOT_MIN_ROWS + 4_321;
    let cols = 6;
    // Column-major values: few distinct values, many, and missing ones.
    let mut values = Vec::with_capacity(rows * cols);
    for col in 0..cols {
        values.extend((0..rows).map(|_| match col % 3 {
            0 => rng.below(4) as f64,
            1 => rng.below(1_000_000) as f64 / 1000.0,
            _ if rng.below(10) == 0 => f64::NAN,
            _ => rng.below(300) as f64,
        }));
    }
    let y: Vec<f64> = (0..rows)
        .map(|r| {
            let signal = values[r] + values[rows + r] / 250.0;
            f64::from(signal + rng.below(3) as f64 > 4.0)
        })
        .collect();
    let weights: Vec<f64> = y
        .iter()
        .map(|&l| if l == 1.0 { 3.0 } else { 1.0 })
        .collect();
    let data = Matrix::new(&values, rows, cols);
    let fit = |parallel: bool| {
        let mut booster = GradientBooster::default()
            .set_objective_type(ObjectiveType::LogLoss)
            .set_iterations(12)
            .set_max_depth(4)
            .set_parallel(parallel)
            .set_tiled_histograms(true);
        booster.fit(&data, &y, &weights, None).expect("fit");
        let predictions = booster.predict(&data, false);
        (booster.trees.len(), predictions)
    };
    let (serial_trees, serial) = fit(false);
    let (parallel_trees, parallel) = fit(true);
    assert_eq!(serial_trees, 12);
    assert_eq!(parallel_trees, serial_trees);
    let differing = serial
        .iter()
        .zip(&parallel)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(differing, 0, "rows whose predictions differ");
}
