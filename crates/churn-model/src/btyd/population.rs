//! The customers as the likelihoods read them. Customers with the same summary contribute the
//! same term, so each distinct summary is one group weighted by its number of customers; and
//! the costly pieces of a term depend on fewer than all of a summary's values (the log-gamma
//! terms on the frequency alone, BG/NBD's logarithms on the recency or the age alone,
//! Pareto/NBD's hypergeometric series on the frequency with the recency or with the age), so
//! each group points at the distinct values and pairs it is made of and a likelihood
//! evaluates each piece once per distinct value. At a million customers this turns half a
//! million series evaluations into a few tens of thousands.

use std::cmp::Ordering;

use super::Summary;

/// One distinct summary: its customers and the indices of its parts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Group {
    pub customers: f64,
    pub monetary: f64,
    /// ln(monetary), 0 when the spend is not part of the group.
    pub ln_monetary: f64,
    /// Index into [`Population::frequencies`].
    pub frequency: usize,
    /// Index into [`Population::recencies`].
    pub recency: usize,
    /// Index into [`Population::ages`].
    pub age: usize,
    /// Index into [`Population::frequency_recency`].
    pub frequency_recency: usize,
    /// Index into [`Population::frequency_age`].
    pub frequency_age: usize,
}

#[derive(Debug, Clone)]
pub(super) struct Population {
    /// In a fixed order (by frequency, recency, age, spend), so that the floating-point sum,
    /// and so the fit, is reproducible.
    pub groups: Vec<Group>,
    pub frequencies: Vec<f64>,
    pub recencies: Vec<f64>,
    pub ages: Vec<f64>,
    /// Distinct (frequency index, recency) pairs.
    pub frequency_recency: Vec<(usize, f64)>,
    /// Distinct (frequency index, age) pairs.
    pub frequency_age: Vec<(usize, f64)>,
}

/// The sorted distinct `values`.
fn distinct<T: Copy>(values: impl Iterator<Item = T>, order: fn(&T, &T) -> Ordering) -> Vec<T> {
    let mut sorted: Vec<T> = values.collect();
    sorted.sort_unstable_by(order);
    sorted.dedup_by(|a, b| order(a, b) == Ordering::Equal);
    sorted
}

/// Where `value` is in `sorted` (which holds it).
fn index_of<T>(sorted: &[T], value: &T, order: fn(&T, &T) -> Ordering) -> usize {
    sorted.partition_point(|v| order(v, value) == Ordering::Less)
}

fn by_value(a: &f64, b: &f64) -> Ordering {
    a.total_cmp(b)
}

fn by_pair(a: &(usize, f64), b: &(usize, f64)) -> Ordering {
    a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))
}

fn by_summary(a: &Summary, b: &Summary) -> Ordering {
    a.frequency
        .total_cmp(&b.frequency)
        .then(a.recency.total_cmp(&b.recency))
        .then(a.age.total_cmp(&b.age))
        .then(a.monetary.total_cmp(&b.monetary))
}

impl Population {
    /// Groups `data`; the spend is part of a group's identity only `with_monetary`.
    pub fn new(data: &[Summary], with_monetary: bool) -> Population {
        // Sorting (rather than hashing) both groups and orders them.
        let mut sorted: Vec<Summary> = data
            .iter()
            .map(|s| Summary {
                monetary: if with_monetary { s.monetary } else { 0.0 },
                ..*s
            })
            .collect();
        sorted.sort_unstable_by(by_summary);
        let frequencies = distinct(sorted.iter().map(|s| s.frequency), by_value);
        let recencies = distinct(sorted.iter().map(|s| s.recency), by_value);
        let ages = distinct(sorted.iter().map(|s| s.age), by_value);
        let frequency_of = |s: &Summary| index_of(&frequencies, &s.frequency, by_value);
        let frequency_recency =
            distinct(sorted.iter().map(|s| (frequency_of(s), s.recency)), by_pair);
        let frequency_age = distinct(sorted.iter().map(|s| (frequency_of(s), s.age)), by_pair);
        let groups = sorted
            .chunk_by(|a, b| by_summary(a, b) == Ordering::Equal)
            .map(|same| {
                let s = same[0];
                let frequency = frequency_of(&s);
                Group {
                    customers: same.len() as f64,
                    monetary: s.monetary,
                    ln_monetary: if with_monetary { s.monetary.ln() } else { 0.0 },
                    frequency,
                    recency: index_of(&recencies, &s.recency, by_value),
                    age: index_of(&ages, &s.age, by_value),
                    frequency_recency: index_of(
                        &frequency_recency,
                        &(frequency, s.recency),
                        by_pair,
                    ),
                    frequency_age: index_of(&frequency_age, &(frequency, s.age), by_pair),
                }
            })
            .collect();
        Population {
            groups,
            frequencies,
            recencies,
            ages,
            frequency_recency,
            frequency_age,
        }
    }

    pub fn frequency(&self, group: &Group) -> f64 {
        self.frequencies[group.frequency]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(frequency: f64, recency: f64, age: f64, monetary: f64) -> Summary {
        Summary {
            frequency,
            recency,
            age,
            monetary,
        }
    }

    #[test]
    fn groups_point_at_their_values_and_count_their_customers() {
        let data = [
            summary(2.0, 5.0, 9.0, 10.0),
            summary(0.0, 0.0, 9.0, 0.0),
            summary(2.0, 5.0, 9.0, 12.0),
            summary(0.0, 0.0, 9.0, 0.0),
            summary(2.0, 7.0, 8.0, 10.0),
        ];
        let population = Population::new(&data, false);
        assert_eq!(population.groups.len(), 3);
        assert_eq!(population.frequencies, [0.0, 2.0]);
        assert_eq!(population.recencies, [0.0, 5.0, 7.0]);
        assert_eq!(population.ages, [8.0, 9.0]);
        assert_eq!(population.frequency_recency, [(0, 0.0), (1, 5.0), (1, 7.0)]);
        assert_eq!(population.frequency_age, [(0, 9.0), (1, 8.0), (1, 9.0)]);
        let rebuilt: Vec<(Summary, f64)> = population
            .groups
            .iter()
            .map(|g| {
                let (f, r) = population.frequency_recency[g.frequency_recency];
                let (f2, a) = population.frequency_age[g.frequency_age];
                assert_eq!((f, f2), (g.frequency, g.frequency));
                assert_eq!(r, population.recencies[g.recency]);
                assert_eq!(a, population.ages[g.age]);
                (
                    summary(population.frequency(g), r, a, g.monetary),
                    g.customers,
                )
            })
            .collect();
        assert_eq!(
            rebuilt,
            [
                (summary(0.0, 0.0, 9.0, 0.0), 2.0),
                (summary(2.0, 5.0, 9.0, 0.0), 2.0),
                (summary(2.0, 7.0, 8.0, 0.0), 1.0),
            ]
        );
        // With the spend, the two customers at (2, 5, 9) differ.
        assert_eq!(Population::new(&data, true).groups.len(), 4);
    }
}
