//! Finding the rows of a batch whose dedup key came earlier in the same batch.
//!
//! A hash map of every key of the batch, probed as each row arrived, was a third of the parse
//! time of a large ingest (16.5M rows: every probe a random access into a table of over a
//! gigabyte). Instead each row's key is appended, in arrival order, to one of 256 lists chosen
//! by the key's top bits; once the batch is read, each list is checked on its own with a set
//! small enough to stay in the processor's cache. Rows are numbered in arrival order ("sequence
//! numbers"), and the runs carry that number, so the merge leaves out the later copies.

use crate::existing::KeySet;

/// Lists the keys are spread over (by their top 8 bits; the keys are uniform hashes).
const PARTS: usize = 256;

/// A row's key and its sequence number. The key is stored as two words (8-byte alignment:
/// 24 bytes a row, where a `u128` would pad to 32).
#[derive(Clone, Copy)]
struct KeyAt {
    key: [u64; 2],
    seq: u64,
}

/// The dedup keys of a batch's rows, in arrival order, and where each input file's rows start.
pub struct BatchKeys {
    parts: Vec<Vec<KeyAt>>,
    next_seq: u64,
    file_starts: Vec<u64>,
}

impl BatchKeys {
    /// Lists sized for about `expected_rows` rows (only what is written is resident).
    pub fn with_expected_rows(expected_rows: usize) -> Self {
        let per_part = expected_rows / PARTS + expected_rows / PARTS / 8;
        Self {
            parts: (0..PARTS).map(|_| Vec::with_capacity(per_part)).collect(),
            next_seq: 0,
            file_starts: Vec::new(),
        }
    }

    /// Marks the start of the next input file: the rows pushed from now on are its rows.
    pub fn start_file(&mut self) {
        self.file_starts.push(self.next_seq);
    }

    /// Records the key of the next row; its sequence number is the number of rows before it.
    pub fn push(&mut self, key: u128) {
        let at = KeyAt {
            key: [(key >> 64) as u64, key as u64],
            seq: self.next_seq,
        };
        self.parts[(key >> 120) as usize].push(at);
        self.next_seq += 1;
    }

    /// Every row whose key an earlier row of the batch had (the first copy is kept), with
    /// their count per input file.
    pub fn into_duplicates(self) -> Duplicates {
        let mut duplicates = Duplicates {
            later: vec![0; self.next_seq.div_ceil(64) as usize],
            per_file: vec![0; self.file_starts.len()],
            file_starts: self.file_starts,
        };
        let mut seen = KeySet::default();
        for part in self.parts {
            seen.clear();
            seen.reserve(part.len());
            // Each list is in arrival order, so the first copy of a key is inserted first.
            for at in &part {
                let key = ((at.key[0] as u128) << 64) | at.key[1] as u128;
                if !seen.insert(key) {
                    duplicates.later[(at.seq / 64) as usize] |= 1 << (at.seq % 64);
                    let file = duplicates.file_of(at.seq);
                    duplicates.per_file[file] += 1;
                }
            }
        }
        duplicates
    }
}

/// The later copies of keys within a batch, by sequence number.
pub struct Duplicates {
    later: Vec<u64>,
    file_starts: Vec<u64>,
    /// Later copies per input file (indexed in the order the files were started).
    pub per_file: Vec<u64>,
}

impl Duplicates {
    /// Whether row `seq` repeats the key of an earlier row of the batch.
    pub fn is_later_copy(&self, seq: u64) -> bool {
        self.later
            .get((seq / 64) as usize)
            .is_some_and(|word| word & (1 << (seq % 64)) != 0)
    }

    /// The input file row `seq` came from.
    pub fn file_of(&self, seq: u64) -> usize {
        self.file_starts
            .partition_point(|start| *start <= seq)
            .saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_copies_are_found_across_files_and_counted_where_they_occur() {
        let mut keys = BatchKeys::with_expected_rows(0);
        // File 0: a b a; file 1: nothing; file 2: b c a c. Keys differ in their top bits
        // (different lists) and in their low bits only (the same list).
        let a = 7u128 << 120;
        let b = (7u128 << 120) | 1;
        let c = 200u128 << 120;
        keys.start_file();
        for k in [a, b, a] {
            keys.push(k);
        }
        keys.start_file();
        keys.start_file();
        for k in [b, c, a, c] {
            keys.push(k);
        }
        let dups = keys.into_duplicates();
        let later: Vec<u64> = (0..7).filter(|s| dups.is_later_copy(*s)).collect();
        assert_eq!(later, vec![2, 3, 5, 6]);
        assert_eq!(dups.per_file, vec![1, 0, 3]);
        assert_eq!(
            (0..7).map(|s| dups.file_of(s)).collect::<Vec<_>>(),
            vec![0, 0, 0, 2, 2, 2, 2]
        );
        assert!(!dups.is_later_copy(1_000));
    }
}
