//! The customers as the likelihoods read them. Customers with the same values of what a
//! likelihood reads (frequency, recency and age; Gamma-Gamma's frequency and spend) contribute
//! the same term, so each distinct summary is one group weighted by its number of customers; and
//! the costly pieces of a term depend on fewer than all of a summary's values (the log-gamma
//! terms on the frequency alone, BG/NBD's logarithms on the recency or the age alone,
//! Pareto/NBD's hypergeometric series on the frequency with the recency or with the age), so
//! each group points at the distinct values and pairs it is made of and a likelihood
//! evaluates each piece once per distinct value. At a million customers this turns half a
//! million series evaluations into a few tens of thousands.

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

/// An integer whose order is [`f64::total_cmp`]'s order of `value`, and from which the value
/// comes back bit for bit ([`value_of`]): sorting and comparing such keys is cheaper than
/// comparing the values.
fn ordered_bits(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The value whose [`ordered_bits`] `key` is.
fn value_of(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    })
}

/// The sorted distinct `keys`.
fn distinct<T: Ord>(mut keys: Vec<T>) -> Vec<T> {
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The sorted distinct `keys`, each with how often it occurs.
fn distinct_counted(mut keys: Vec<[u64; 4]>) -> Vec<([u64; 4], usize)> {
    keys.sort_unstable();
    keys.chunk_by(|a, b| a == b)
        .map(|same| (same[0], same.len()))
        .collect()
}

/// Where `key` is in `sorted` (which holds it).
fn index_of<T: Ord>(sorted: &[T], key: &T) -> usize {
    sorted.partition_point(|k| k < key)
}

impl Population {
    /// Groups `data` by the values a likelihood reads: with `with_monetary` (Gamma-Gamma's
    /// spend) the frequency and the spend, otherwise the frequency, recency and age.
    pub fn new(data: &[Summary], with_monetary: bool) -> Population {
        // Sorting (rather than hashing) both groups and orders them: by frequency, recency,
        // age, spend.
        let keys = distinct_counted(
            data.iter()
                .map(|s| {
                    let read = if with_monetary {
                        [s.frequency, 0.0, 0.0, s.monetary]
                    } else {
                        [s.frequency, s.recency, s.age, 0.0]
                    };
                    read.map(ordered_bits)
                })
                .collect(),
        );
        // In key order the frequencies, and the (frequency, recency) pairs, come in order.
        let mut frequencies: Vec<u64> = Vec::new();
        let mut frequency_recency: Vec<(usize, u64)> = Vec::new();
        let mut parts = Vec::with_capacity(keys.len());
        for ([frequency, recency, _, _], _) in &keys {
            if frequencies.last() != Some(frequency) {
                frequencies.push(*frequency);
            }
            let pair = (frequencies.len() - 1, *recency);
            if frequency_recency.last() != Some(&pair) {
                frequency_recency.push(pair);
            }
            parts.push((frequencies.len() - 1, frequency_recency.len() - 1));
        }
        let recencies = distinct(frequency_recency.iter().map(|(_, r)| *r).collect());
        let ages = distinct(keys.iter().map(|([_, _, age, _], _)| *age).collect());
        let frequency_age = distinct(
            keys.iter()
                .zip(&parts)
                .map(|(([_, _, age, _], _), (frequency, _))| (*frequency, *age))
                .collect(),
        );
        let groups = keys
            .iter()
            .zip(&parts)
            .map(
                |(([_, recency, age, monetary], customers), &(frequency, pair))| {
                    let monetary = value_of(*monetary);
                    Group {
                        customers: *customers as f64,
                        monetary,
                        ln_monetary: if with_monetary { monetary.ln() } else { 0.0 },
                        frequency,
                        recency: index_of(&recencies, recency),
                        age: index_of(&ages, age),
                        frequency_recency: pair,
                        frequency_age: index_of(&frequency_age, &(frequency, *age)),
                    }
                },
            )
            .collect();
        let values = |keys: Vec<u64>| keys.into_iter().map(value_of).collect();
        let pairs = |pairs: Vec<(usize, u64)>| {
            pairs
                .into_iter()
                .map(|(frequency, key)| (frequency, value_of(key)))
                .collect()
        };
        Population {
            groups,
            frequencies: values(frequencies),
            recencies: values(recencies),
            ages: values(ages),
            frequency_recency: pairs(frequency_recency),
            frequency_age: pairs(frequency_age),
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
        // With the spend, groups are by frequency and spend alone: the customers at (2, 5, 9)
        // differ, the two who spent 10 at different recencies and ages are one group.
        let spend = Population::new(&data, true);
        let groups: Vec<(f64, f64, f64)> = spend
            .groups
            .iter()
            .map(|g| (spend.frequency(g), g.monetary, g.customers))
            .collect();
        assert_eq!(
            groups,
            [(0.0, 0.0, 2.0), (2.0, 10.0, 2.0), (2.0, 12.0, 1.0)]
        );
        assert_eq!(spend.groups[1].ln_monetary, 10f64.ln());
    }
}
