//! From feature snapshots to the numbers a learner sees. A [`Frame`] holds one or more
//! snapshots' feature columns as read from the lake (numbers with NaN for missing, or
//! categories); a [`Preprocessor`] is fitted on the training rows only and turns any frame
//! into a standardised design matrix with missing-value indicators and one-hot categories,
//! the same way at training, test and scoring time.

use std::collections::{BTreeMap, HashMap};

use ndarray::{Array2, ArrayViewMut2, ShapeBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::spec::Learner;

/// How many categories of a text feature get their own column; rarer ones share none.
pub const MAX_CATEGORIES: usize = 20;

/// One feature column of a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Numbers (integers, decimals, booleans as 0/1); NaN marks a missing value.
    Numeric(Vec<f64>),
    /// Text categories; `None` marks a missing value.
    Categorical(Vec<Option<String>>),
}

impl Values {
    /// `numeric` or `categorical`.
    pub fn kind(&self) -> &'static str {
        match self {
            Values::Numeric(_) => "numeric",
            Values::Categorical(_) => "categorical",
        }
    }

    /// Appends `other`; `false` (and nothing appended) when the kinds differ.
    fn extend(&mut self, other: Values) -> bool {
        match (self, other) {
            (Values::Numeric(a), Values::Numeric(b)) => a.extend(b),
            (Values::Categorical(a), Values::Categorical(b)) => a.extend(b),
            _ => return false,
        }
        true
    }
}

/// Rows of customers with their feature columns and, for labelled snapshots, the label.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub customer_ids: Vec<String>,
    /// Snapshot date of each row.
    pub as_of: Vec<chrono::NaiveDate>,
    /// 1.0 when the customer churned, 0.0 when not; empty for unlabelled frames.
    pub churned: Vec<f64>,
    pub columns: BTreeMap<String, Values>,
    /// Arrow type of each column as read, for the registry's feature list.
    pub types: BTreeMap<String, String>,
}

impl Frame {
    pub fn rows(&self) -> usize {
        self.customer_ids.len()
    }

    /// Appends another frame's rows; columns missing on one side are filled as missing. A
    /// column that is numeric in one frame and text in the other (a feature file changed
    /// between snapshots) is refused, naming the column and the snapshots.
    pub fn append(&mut self, other: Frame) -> Result<()> {
        if self.rows() == 0 && self.columns.is_empty() {
            // Nothing to line up with: the other frame's columns as they are, not copied.
            *self = other;
            return Ok(());
        }
        let before = self.rows();
        let added = other.rows();
        let mut other = other;
        for (name, values) in self.columns.iter_mut() {
            let v = other
                .columns
                .remove(name)
                .unwrap_or_else(|| missing_like(values, added));
            let (kind, other_kind) = (values.kind(), v.kind());
            if !values.extend(v) {
                return Err(ModelError::ColumnKindChanged {
                    column: name.clone(),
                    before: format!("{kind} in {}", dates(&self.as_of)),
                    after: format!("{other_kind} in {}", dates(&other.as_of)),
                });
            }
        }
        for (name, values) in other.columns {
            let mut filled = missing_like(&values, before);
            filled.extend(values);
            self.columns.insert(name, filled);
        }
        self.types.extend(other.types);
        self.customer_ids.extend(other.customer_ids);
        self.as_of.extend(other.as_of);
        self.churned.extend(other.churned);
        Ok(())
    }

    /// Adds a numeric column: one value per row, in the rows' order.
    pub fn add_numeric(&mut self, name: &str, values: Vec<f64>) {
        debug_assert_eq!(values.len(), self.customer_ids.len(), "column {name}");
        self.columns
            .insert(name.to_string(), Values::Numeric(values));
        self.types.insert(name.to_string(), "Float64".to_string());
    }
}

/// The distinct snapshot dates of rows, for messages.
fn dates(as_of: &[chrono::NaiveDate]) -> String {
    let mut distinct: Vec<String> = as_of.iter().map(|d| d.to_string()).collect();
    distinct.dedup();
    format!("snapshot {}", distinct.join(", "))
}

fn missing_like(values: &Values, rows: usize) -> Values {
    match values {
        Values::Numeric(_) => Values::Numeric(vec![f64::NAN; rows]),
        Values::Categorical(_) => Values::Categorical(vec![None; rows]),
    }
}

/// How one input feature becomes design-matrix columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encoding {
    /// Missing values are replaced by the training median (`fill`), then the value is
    /// standardised as (v - mean) / std over the training rows. When the training rows had
    /// missing values, an extra 0/1 column says whether the value was missing.
    Numeric {
        fill: f64,
        mean: f64,
        std: f64,
        missing_indicator: bool,
    },
    /// One 0/1 column per category, for the `MAX_CATEGORIES` most common in training;
    /// missing and other categories are all zeros.
    Categorical { categories: Vec<String> },
}

/// One input feature of a model: its name, type as read, meaning and encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFeature {
    pub name: String,
    pub data_type: String,
    pub description: String,
    pub encoding: Encoding,
}

/// A column of the design matrix and the input feature it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesignColumn {
    pub name: String,
    pub input: usize,
}

/// The fitted transformation from frames to design matrices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub inputs: Vec<InputFeature>,
    pub columns: Vec<DesignColumn>,
}

/// The median, by selection rather than a sort: a training run takes the median of every
/// numeric column of millions of rows, and a sort of each was seconds of a fit.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len();
    let (below, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        upper
    } else {
        // The largest value below the upper middle one is the lower middle one.
        let lower = below
            .iter()
            .copied()
            .max_by(f64::total_cmp)
            .unwrap_or(upper);
        (lower + upper) / 2.0
    }
}

impl Preprocessor {
    /// Fits the encodings of `features` (in that order) on the frame's rows.
    pub fn fit(frame: &Frame, features: &[String], descriptions: &HashMap<String, String>) -> Self {
        let mut inputs = Vec::new();
        let mut columns = Vec::new();
        for name in features {
            let input = inputs.len();
            let encoding = match &frame.columns[name] {
                Values::Numeric(v) => {
                    let present: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
                    let missing_indicator = present.len() < v.len();
                    let fill = median(present);
                    let n = v.len().max(1) as f64;
                    let filled = v.iter().map(|&x| if x.is_nan() { fill } else { x });
                    let mean = filled.clone().sum::<f64>() / n;
                    let var = filled.map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                    let std = if var > 0.0 { var.sqrt() } else { 1.0 };
                    columns.push(DesignColumn {
                        name: name.clone(),
                        input,
                    });
                    if missing_indicator {
                        columns.push(DesignColumn {
                            name: format!("{name}__missing"),
                            input,
                        });
                    }
                    Encoding::Numeric {
                        fill,
                        mean,
                        std,
                        missing_indicator,
                    }
                }
                Values::Categorical(v) => {
                    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                    for c in v.iter().flatten() {
                        *counts.entry(c.as_str()).or_default() += 1;
                    }
                    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
                    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                    let categories: Vec<String> = ranked
                        .into_iter()
                        .take(MAX_CATEGORIES)
                        .map(|(c, _)| c.to_string())
                        .collect();
                    for c in &categories {
                        columns.push(DesignColumn {
                            name: format!("{name}={c}"),
                            input,
                        });
                    }
                    Encoding::Categorical { categories }
                }
            };
            inputs.push(InputFeature {
                name: name.clone(),
                data_type: frame.types.get(name).cloned().unwrap_or_default(),
                description: descriptions.get(name).cloned().unwrap_or_default(),
                encoding,
            });
        }
        Preprocessor { inputs, columns }
    }

    /// The design matrix of a frame (rows × design columns). A frame that lacks an input, holds
    /// it with another kind than it was fitted on, or with the wrong number of values is
    /// refused with every such problem named (see [`Preprocessor::check`]); an empty frame
    /// gives an empty matrix. Row-major; see [`Preprocessor::transform_for`].
    pub fn transform(&self, frame: &Frame) -> Result<Array2<f64>> {
        self.design_matrix(frame, false)
    }

    /// The design matrix in the memory layout `learner` reads fastest
    /// ([`Learner::reads_columns`]): column-major for gbdt, which then reads it in place
    /// instead of copying it (at 2.1M rows, 700 MB and 7 s less per train), row-major for the
    /// others (logistic's Newton steps read a row at a time and took 6.3 s instead of 4.0 s on a
    /// column-major matrix).
    pub fn transform_for(&self, frame: &Frame, learner: &Learner) -> Result<Array2<f64>> {
        self.design_matrix(frame, learner.reads_columns())
    }

    fn design_matrix(&self, frame: &Frame, column_major: bool) -> Result<Array2<f64>> {
        let n = frame.rows();
        let mut x = Array2::<f64>::zeros((n, self.columns.len()).set_f(column_major));
        if n == 0 {
            return Ok(x);
        }
        self.check(frame)?;
        let mut encoders = Vec::with_capacity(self.inputs.len());
        let mut col = 0;
        for input in &self.inputs {
            let encoder = match (&input.encoding, frame.columns.get(&input.name)) {
                (
                    Encoding::Numeric {
                        fill,
                        mean,
                        std,
                        missing_indicator,
                    },
                    Some(Values::Numeric(v)),
                ) => ColumnEncoder::Numeric {
                    fill: *fill,
                    mean: *mean,
                    std: *std,
                    missing_indicator: *missing_indicator,
                    values: v,
                },
                (Encoding::Categorical { categories }, Some(Values::Categorical(v))) => {
                    ColumnEncoder::Categorical {
                        index: categories
                            .iter()
                            .enumerate()
                            .map(|(k, c)| (c.as_str(), k))
                            .collect(),
                        values: v,
                    }
                }
                (_, found) => {
                    return Err(ModelError::InputsMismatch {
                        problems: vec![mismatch(input, found, n).unwrap_or_else(|| {
                            format!("{} does not fit its encoding", input.name)
                        })],
                    });
                }
            };
            let width = match &input.encoding {
                Encoding::Numeric {
                    missing_indicator, ..
                } => 1 + usize::from(*missing_indicator),
                Encoding::Categorical { categories } => categories.len(),
            };
            encoders.push((col, encoder));
            col += width;
        }
        // Blocks of rows on every core: each value is written once, so the matrix is the same
        // whatever the split (at 2.2M rows one thread took about 2 s).
        crate::parallel::for_row_blocks_mut(&mut x, |first, mut block| {
            for (col, encoder) in &encoders {
                encoder.fill(block.view_mut(), *col, first);
            }
        });
        Ok(x)
    }

    /// Checks that a frame holds every input with the kind it was fitted on and one value per
    /// row.
    pub fn check(&self, frame: &Frame) -> Result<()> {
        let problems: Vec<String> = self
            .inputs
            .iter()
            .filter_map(|input| mismatch(input, frame.columns.get(&input.name), frame.rows()))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ModelError::InputsMismatch { problems })
        }
    }

    /// A person's reading of a feature's value in a row of the frame, e.g.
    /// `recency_days = 120 (days from the last purchase day before D to D)`.
    pub fn describe_value(&self, input: usize, frame: &Frame, row: usize) -> String {
        let feature = &self.inputs[input];
        let value = match frame.columns.get(&feature.name) {
            Some(Values::Numeric(v)) => match v.get(row) {
                Some(x) if !x.is_nan() => format_number(*x),
                _ => "unknown".to_string(),
            },
            Some(Values::Categorical(v)) => v
                .get(row)
                .cloned()
                .flatten()
                .unwrap_or_else(|| "unknown".into()),
            None => "unknown".to_string(),
        };
        // Sized once: `format!` grew each text two or three times, and training tells six
        // of them for every test customer.
        let description = &feature.description;
        let mut text =
            String::with_capacity(feature.name.len() + value.len() + description.len() + 6);
        text.push_str(&feature.name);
        text.push_str(" = ");
        text.push_str(&value);
        if !description.is_empty() {
            text.push_str(" (");
            text.push_str(description);
            text.push(')');
        }
        text
    }
}

/// One input's values and how they become columns of the design matrix.
enum ColumnEncoder<'a> {
    /// See [`Encoding::Numeric`].
    Numeric {
        fill: f64,
        mean: f64,
        std: f64,
        missing_indicator: bool,
        values: &'a [f64],
    },
    Categorical {
        index: HashMap<&'a str, usize>,
        values: &'a [Option<String>],
    },
}

impl ColumnEncoder<'_> {
    /// Writes rows `first..first + block.nrows()` of the input into `block`'s columns from
    /// `col` on (categories' columns are zeros where they are not set).
    fn fill(&self, mut block: ArrayViewMut2<'_, f64>, col: usize, first: usize) {
        let rows = first..first + block.nrows();
        match self {
            ColumnEncoder::Numeric {
                fill,
                mean,
                std,
                missing_indicator,
                values,
            } => {
                let values = &values[rows];
                for (slot, &value) in block.column_mut(col).iter_mut().zip(values) {
                    let filled = if value.is_nan() { *fill } else { value };
                    *slot = (filled - mean) / std;
                }
                if *missing_indicator {
                    for (slot, value) in block.column_mut(col + 1).iter_mut().zip(values) {
                        *slot = if value.is_nan() { 1.0 } else { 0.0 };
                    }
                }
            }
            ColumnEncoder::Categorical { index, values } => {
                for (i, value) in values[rows].iter().enumerate() {
                    if let Some(k) = value.as_deref().and_then(|c| index.get(c)) {
                        block[[i, col + k]] = 1.0;
                    }
                }
            }
        }
    }
}

/// What is wrong with a frame's column `found` for `input` (of a frame of `rows` rows), if
/// anything.
fn mismatch(input: &InputFeature, found: Option<&Values>, rows: usize) -> Option<String> {
    let problem = match (&input.encoding, found) {
        (_, None) => "is not in the features table".to_string(),
        (Encoding::Numeric { .. }, Some(Values::Categorical(_))) => {
            "was a number in training but is text here".to_string()
        }
        (Encoding::Categorical { .. }, Some(Values::Numeric(_))) => {
            "was text in training but is a number here".to_string()
        }
        (_, Some(Values::Numeric(v))) if v.len() != rows => {
            format!("has {} values for {rows} rows", v.len())
        }
        (_, Some(Values::Categorical(v))) if v.len() != rows => {
            format!("has {} values for {rows} rows", v.len())
        }
        _ => return None,
    };
    Some(format!("{} {problem}", input.name))
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        let mut f = Frame {
            customer_ids: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            churned: vec![1.0, 0.0, 1.0, 0.0],
            ..Frame::default()
        };
        f.columns.insert(
            "recency_days".into(),
            Values::Numeric(vec![10.0, f64::NAN, 30.0, 50.0]),
        );
        f.columns.insert(
            "tier".into(),
            Values::Categorical(vec![
                Some("gold".into()),
                None,
                Some("silver".into()),
                Some("gold".into()),
            ]),
        );
        f
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_two_middle_ones() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![7.0]), 7.0);
        assert_eq!(median(vec![5.0, -1.0, 3.0]), 3.0);
        // Sorted: 1 2 2 4 9 9 -> (2 + 4) / 2.
        assert_eq!(median(vec![9.0, 2.0, 4.0, 1.0, 9.0, 2.0]), 3.0);
        // Ties on both middle places.
        assert_eq!(median(vec![2.0, 2.0, 2.0, 8.0]), 2.0);
        assert_eq!(median(vec![0.5, -2.5, 10.0, -7.0]), -1.0);
    }

    #[test]
    fn numeric_features_are_median_filled_standardised_and_flagged() {
        let f = frame();
        let p = Preprocessor::fit(&f, &["recency_days".into()], &HashMap::new());
        // median of 10, 30, 50 is 30; filled values 10, 30, 30, 50: mean 30, std sqrt(200).
        let x = p.transform(&f).unwrap();
        let s = 200f64.sqrt();
        let expected = [(-20.0 / s, 0.0), (0.0, 1.0), (0.0, 0.0), (20.0 / s, 0.0)];
        for (i, (z, m)) in expected.iter().enumerate() {
            assert!((x[[i, 0]] - z).abs() < 1e-12);
            assert_eq!(x[[i, 1]], *m);
        }
        assert_eq!(p.columns[1].name, "recency_days__missing");
    }

    #[test]
    fn gbdt_gets_the_same_design_matrix_column_major_and_the_others_row_major() {
        let f = frame();
        let p = Preprocessor::fit(&f, &["recency_days".into()], &HashMap::new());
        let rows = p.transform(&f).unwrap();
        let gbdt = p
            .transform_for(&f, &Learner::Gbdt(crate::spec::GbdtParams::default()))
            .unwrap();
        let logistic = p
            .transform_for(&f, &Learner::Logistic(Default::default()))
            .unwrap();
        assert_eq!(gbdt, rows);
        assert_eq!(logistic, rows);
        assert!(rows.is_standard_layout() && logistic.is_standard_layout());
        // Column-major: the transpose is the standard layout, so forust can borrow it.
        assert!(!gbdt.is_standard_layout() && gbdt.t().is_standard_layout());
    }

    #[test]
    fn categories_are_one_hot_by_frequency_and_missing_is_all_zero() {
        let f = frame();
        let p = Preprocessor::fit(&f, &["tier".into()], &HashMap::new());
        let names: Vec<&str> = p.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["tier=gold", "tier=silver"]);
        let x = p.transform(&f).unwrap();
        assert_eq!(x.row(0).to_vec(), [1.0, 0.0]);
        assert_eq!(x.row(1).to_vec(), [0.0, 0.0]);
        assert_eq!(x.row(2).to_vec(), [0.0, 1.0]);
    }

    #[test]
    fn a_value_is_told_with_its_name_and_the_description_when_there_is_one() {
        let f = frame();
        let descriptions = HashMap::from([("recency_days".to_string(), "days since".to_string())]);
        let p = Preprocessor::fit(&f, &["recency_days".into(), "tier".into()], &descriptions);
        assert_eq!(p.describe_value(0, &f, 0), "recency_days = 10 (days since)");
        assert_eq!(
            p.describe_value(0, &f, 1),
            "recency_days = unknown (days since)"
        );
        assert_eq!(p.describe_value(1, &f, 2), "tier = silver");
        assert_eq!(p.describe_value(1, &f, 1), "tier = unknown");
    }

    fn dated(mut f: Frame, day: u32) -> Frame {
        f.as_of = vec![chrono::NaiveDate::from_ymd_opt(2024, 1, day).unwrap(); f.rows()];
        f
    }

    #[test]
    fn appending_a_frame_whose_column_changed_kind_is_refused_naming_it_and_the_snapshots() {
        let mut older = dated(frame(), 1);
        let mut newer = dated(frame(), 8);
        newer.columns.insert(
            "recency_days".into(),
            Values::Categorical(vec![Some("recent".into()); 4]),
        );
        let e = older.append(newer).unwrap_err();
        match &e {
            ModelError::ColumnKindChanged {
                column,
                before,
                after,
            } => {
                assert_eq!(column, "recency_days");
                assert_eq!(before, "numeric in snapshot 2024-01-01");
                assert_eq!(after, "categorical in snapshot 2024-01-08");
            }
            other => panic!("expected ColumnKindChanged, got {other:?}"),
        }
        assert_eq!(e.kind(), crate::error::ErrorKind::Data);
    }

    #[test]
    fn transform_refuses_a_frame_whose_column_changed_kind_or_is_missing() {
        let f = frame();
        let p = Preprocessor::fit(&f, &["recency_days".into(), "tier".into()], &HashMap::new());
        let mut changed = f.clone();
        changed.columns.insert(
            "recency_days".into(),
            Values::Categorical(vec![Some("recent".into()); 4]),
        );
        changed.columns.remove("tier");
        match p.transform(&changed).unwrap_err() {
            ModelError::InputsMismatch { problems } => assert_eq!(
                problems,
                [
                    "recency_days was a number in training but is text here",
                    "tier is not in the features table"
                ]
            ),
            other => panic!("expected InputsMismatch, got {other:?}"),
        }
        let mut short = f.clone();
        short
            .columns
            .insert("recency_days".into(), Values::Numeric(vec![1.0]));
        assert!(matches!(
            p.transform(&short),
            Err(ModelError::InputsMismatch { problems }) if problems == ["recency_days has 1 values for 4 rows"]
        ));
        // The unchanged frame still transforms: 2 numeric columns and 2 categories.
        assert_eq!(p.transform(&f).unwrap().dim(), (4, 4));
    }
}
