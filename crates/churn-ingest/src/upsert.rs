//! The customers upsert with bounded memory. Customers are not partitioned: each batch
//! rewrites the one table file, the lake's profiles not in the batch followed by the batch's
//! last profile of each customer. Only what that result needs from the input is kept (the
//! latest profile per customer id, found by its 16-byte key), and the lake's current table is
//! streamed through a filter into the new file instead of being read whole.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::error::ArrowError;
use churn_core::Table;

use crate::error::{IngestError, Result};
use crate::existing::KeyHasher;
use crate::rows::dedup_key;

/// Key of a customer id, as in the dedup set of the other tables.
pub fn customer_key(id: &str) -> u128 {
    dedup_key(Table::Customers, id, "", 0, "")
}

/// Ids of a customers batch (the contract's first column).
fn ids(batch: &RecordBatch) -> &arrow::array::StringArray {
    batch.column(0).as_string::<i32>()
}

/// The latest incoming profile of each customer, in the order of those profiles' positions
/// in the input (the order in which the whole input, deduplicated keeping last rows, would
/// list them).
#[derive(Default)]
pub struct LatestProfiles {
    /// Accepted batches in arrival order; rows superseded later are marked dead in `live`.
    batches: Vec<RecordBatch>,
    live: Vec<Vec<bool>>,
    live_rows: Vec<usize>,
    /// Where each customer's latest profile is: (batch, row).
    at: HashMap<u128, (u32, u32), BuildHasherDefault<KeyHasher>>,
    /// Profiles received, superseded ones included.
    received: u64,
}

fn index(i: usize, what: &str) -> Result<u32> {
    u32::try_from(i).map_err(|_| {
        IngestError::Arrow(ArrowError::ComputeError(format!(
            "customers upsert: {what} {i} is over the 2^32 the upsert index holds"
        )))
    })
}

impl LatestProfiles {
    /// Takes a batch of accepted profiles (in the customers file schema); each supersedes any
    /// earlier profile of the same customer.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.received += batch.num_rows() as u64;
        let b = index(self.batches.len(), "batch")?;
        let mut live = vec![true; batch.num_rows()];
        let mut live_rows = batch.num_rows();
        for (r, id) in ids(&batch).iter().enumerate() {
            let row = index(r, "row")?;
            if let Some((ob, or)) = self.at.insert(customer_key(id.unwrap_or("")), (b, row)) {
                if ob == b {
                    live[or as usize] = false;
                    live_rows -= 1;
                } else {
                    self.live[ob as usize][or as usize] = false;
                    self.live_rows[ob as usize] -= 1;
                }
            }
        }
        self.batches.push(batch);
        self.live.push(live);
        self.live_rows.push(live_rows);
        self.compact()
    }

    /// Drops the dead rows of batches that are mostly dead, so memory follows the number of
    /// distinct customers rather than the number of incoming profiles.
    fn compact(&mut self) -> Result<()> {
        for j in 0..self.batches.len() {
            if self.live_rows[j] * 2 >= self.batches[j].num_rows() {
                continue;
            }
            let keep = BooleanArray::from(std::mem::take(&mut self.live[j]));
            let compacted = filter_record_batch(&self.batches[j], &keep)?;
            let b = index(j, "batch")?;
            for (r, id) in ids(&compacted).iter().enumerate() {
                self.at
                    .insert(customer_key(id.unwrap_or("")), (b, index(r, "row")?));
            }
            self.live[j] = vec![true; compacted.num_rows()];
            self.batches[j] = compacted;
        }
        Ok(())
    }

    /// Whether a profile of this customer arrived.
    pub fn contains(&self, key: u128) -> bool {
        self.at.contains_key(&key)
    }

    /// Profiles that a later profile of the same customer replaced.
    pub fn superseded(&self) -> u64 {
        self.received - self.at.len() as u64
    }

    /// The latest profiles, batch by batch in input order.
    pub fn into_batches(self) -> impl Iterator<Item = Result<RecordBatch>> {
        self.batches
            .into_iter()
            .zip(self.live)
            .map(|(batch, live)| Ok(filter_record_batch(&batch, &BooleanArray::from(live))?))
    }
}

/// The rows of a batch of the lake's current customers table that no incoming profile
/// replaces.
pub fn not_replaced(old: &RecordBatch, latest: &LatestProfiles) -> Result<RecordBatch> {
    let keep: BooleanArray = ids(old)
        .iter()
        .map(|id| Some(!latest.contains(customer_key(id.unwrap_or("")))))
        .collect();
    Ok(filter_record_batch(old, &keep)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};
    use std::sync::Arc;

    fn batch(rows: &[(&str, &str)]) -> RecordBatch {
        let ids: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
        let tiers: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1)));
        RecordBatch::try_from_iter([("customer_id", ids), ("tier", tiers)]).unwrap()
    }

    fn rows(batches: impl Iterator<Item = Result<RecordBatch>>) -> Vec<String> {
        batches
            .flat_map(|b| {
                let b = b.unwrap();
                (0..b.num_rows())
                    .map(|i| {
                        format!(
                            "{}:{}",
                            b.column(0).as_string::<i32>().value(i),
                            b.column(1).as_string::<i32>().value(i)
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_last_profile_wins_in_the_order_of_last_profiles_even_after_compaction() {
        let mut latest = LatestProfiles::default();
        latest
            .push(batch(&[("A", "1"), ("B", "1"), ("A", "2"), ("C", "1")]))
            .unwrap();
        // B and C are replaced: the first batch keeps only A:2 live, so it is compacted.
        latest
            .push(batch(&[("C", "2"), ("D", "1"), ("B", "2")]))
            .unwrap();
        latest.push(batch(&[("D", "2")])).unwrap();
        assert_eq!(
            latest.batches[0].num_rows(),
            1,
            "mostly dead batch compacted"
        );
        // A's profile moved within the compacted batch; replacing it must find it there.
        latest.push(batch(&[("A", "3")])).unwrap();
        assert!(latest.contains(customer_key("B")));
        assert!(!latest.contains(customer_key("E")));
        assert_eq!(latest.superseded(), 9 - 4);
        // Hand-computed: the input deduplicated keeping each id's last row, in input order.
        assert_eq!(rows(latest.into_batches()), ["C:2", "B:2", "D:2", "A:3"]);
    }

    #[test]
    fn old_rows_of_customers_in_the_batch_are_dropped() {
        let mut latest = LatestProfiles::default();
        latest.push(batch(&[("B", "new")])).unwrap();
        let old = batch(&[("A", "old"), ("B", "old"), ("C", "old")]);
        let kept = not_replaced(&old, &latest).unwrap();
        assert_eq!(rows(std::iter::once(Ok(kept))), ["A:old", "C:old"]);
    }
}
