//! The input contract: the three canonical tables, their columns and how each is stored in
//! the lake. Ingest validates against this, features read it, and the README documents it.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::CoreError;

/// How a canonical column is parsed from text and stored in Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Non-empty identifier, stored as UTF-8.
    Id,
    /// Free text, stored as UTF-8; invalid bytes are repaired rather than rejected.
    Text,
    /// Instant in time, stored as microseconds UTC.
    Timestamp,
    /// Calendar date.
    Date,
    /// Finite decimal number, stored as double.
    Number,
    /// true/false, 1/0, yes/no, y/n, t/f, 是/否.
    Bool,
    /// One of a fixed set of lower-case words (campaign event kinds).
    Event,
}

/// One canonical column of the contract.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub kind: ColumnKind,
    pub required: bool,
    pub description: &'static str,
}

const fn col(
    name: &'static str,
    kind: ColumnKind,
    required: bool,
    description: &'static str,
) -> ColumnSpec {
    ColumnSpec {
        name,
        kind,
        required,
        description,
    }
}

const TRANSACTION_COLUMNS: &[ColumnSpec] = &[
    col(
        "transaction_id",
        ColumnKind::Id,
        true,
        "unique id of the till or web-shop transaction",
    ),
    col(
        "customer_id",
        ColumnKind::Id,
        true,
        "member id of the buyer",
    ),
    col(
        "ts",
        ColumnKind::Timestamp,
        true,
        "when it happened (stored as UTC)",
    ),
    col(
        "amount",
        ColumnKind::Number,
        true,
        "amount paid; negative for a refund",
    ),
    col("quantity", ColumnKind::Number, false, "number of items"),
    col(
        "product_category",
        ColumnKind::Text,
        false,
        "product category",
    ),
    col(
        "store_id",
        ColumnKind::Text,
        false,
        "store (or web shop) id",
    ),
    col(
        "channel",
        ColumnKind::Text,
        false,
        "store, online, ... (lower-cased)",
    ),
    col(
        "discount",
        ColumnKind::Number,
        false,
        "discount granted, in currency",
    ),
    col(
        "is_return",
        ColumnKind::Bool,
        false,
        "true for a return/refund (default false)",
    ),
];

const CUSTOMER_COLUMNS: &[ColumnSpec] = &[
    col("customer_id", ColumnKind::Id, true, "member id"),
    col(
        "signup_date",
        ColumnKind::Date,
        false,
        "date the member joined",
    ),
    col("birthday", ColumnKind::Date, false, "date of birth"),
    col(
        "tier",
        ColumnKind::Text,
        false,
        "membership tier (silver, gold, diamond, ...)",
    ),
    col(
        "referrer_id",
        ColumnKind::Text,
        false,
        "customer_id of the member who referred them",
    ),
    col("email", ColumnKind::Text, false, "e-mail address"),
    col("phone", ColumnKind::Text, false, "phone number"),
    col(
        "marketing_opt_in",
        ColumnKind::Bool,
        false,
        "consents to marketing messages",
    ),
];

const CAMPAIGN_EVENT_COLUMNS: &[ColumnSpec] = &[
    col("customer_id", ColumnKind::Id, true, "member id"),
    col("campaign_id", ColumnKind::Id, true, "campaign id"),
    col(
        "ts",
        ColumnKind::Timestamp,
        true,
        "when it happened (stored as UTC)",
    ),
    col(
        "event",
        ColumnKind::Event,
        true,
        "sent, opened, clicked or redeemed",
    ),
];

/// Campaign event kinds accepted by the contract.
pub const CAMPAIGN_EVENT_KINDS: &[&str] = &["sent", "opened", "clicked", "redeemed"];

/// The three tables of the input contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Transactions,
    Customers,
    CampaignEvents,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Transactions, Table::Customers, Table::CampaignEvents];

    /// Folder name under the lake root, also the SQL table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Transactions => "transactions",
            Table::Customers => "customers",
            Table::CampaignEvents => "campaign_events",
        }
    }

    pub fn columns(self) -> &'static [ColumnSpec] {
        match self {
            Table::Transactions => TRANSACTION_COLUMNS,
            Table::Customers => CUSTOMER_COLUMNS,
            Table::CampaignEvents => CAMPAIGN_EVENT_COLUMNS,
        }
    }

    pub fn column(self, name: &str) -> Option<&'static ColumnSpec> {
        self.columns().iter().find(|c| c.name == name)
    }

    /// Whether the table is Hive-partitioned by local `date=YYYY-MM-DD`.
    pub fn is_date_partitioned(self) -> bool {
        !matches!(self, Table::Customers)
    }

    /// Name of the partition column for date-partitioned tables.
    pub const DATE_PARTITION: &'static str = "date";

    /// The date of the `date=YYYY-MM-DD` partition folder a lake file's path (relative or
    /// not) is in, if any.
    pub fn partition_date(path: &str) -> Option<chrono::NaiveDate> {
        path.split('/')
            .find_map(|part| part.strip_prefix("date="))
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    }

    /// Columns written without a Parquet dictionary: those whose values hardly repeat within
    /// one of the table's files. A day's transactions have their own ids, mostly different
    /// customers (few buy twice a day), times to the second and amounts and discounts to the
    /// cent; the customers file has one row per customer, a day's campaign events mostly
    /// different customers. There a dictionary holds every value once more and costs a hash
    /// lookup per value.
    pub fn columns_without_dictionary(self) -> &'static [&'static str] {
        match self {
            Table::Transactions => &["transaction_id", "customer_id", "ts", "amount", "discount"],
            Table::Customers => &["customer_id"],
            Table::CampaignEvents => &["customer_id"],
        }
    }

    /// Columns written without minimum and maximum statistics: text columns whose every file
    /// (a day of transactions) holds nearly the whole range of values, from the first id to the
    /// last and every category, store and channel, so no reader can skip a file or row group
    /// by them, while finding them compares every value with two others.
    pub fn columns_without_statistics(self) -> &'static [&'static str] {
        match self {
            Table::Transactions => &[
                "transaction_id",
                "customer_id",
                "product_category",
                "store_id",
                "channel",
            ],
            Table::Customers | Table::CampaignEvents => &[],
        }
    }

    /// Columns written with Parquet's delta encodings instead of plain values: a day's
    /// transaction times lie within one day, so the differences between neighbours take 37
    /// bits or fewer (far fewer for a till export in time order) instead of 64; an id is
    /// written as the length of the prefix it shares with the one before and the rest, which
    /// in a file sorted by customer (a CRM's export) is most of it. 16.5M transactions sorted
    /// by customer: the files 280 -> 250 MB, the ingest no slower (8.52-8.89 s against
    /// 8.52-9.04 s alternating); the same rows in time order: the same size and time either
    /// way; a feature snapshot of either lake the same time.
    pub fn columns_delta_encoded(self) -> &'static [&'static str] {
        match self {
            Table::Transactions => &["transaction_id", "customer_id", "ts"],
            Table::Customers | Table::CampaignEvents => &[],
        }
    }

    /// Columns whose pages are not compressed even in a file that is: the delta-encoded times,
    /// which ZSTD shrank no further than the encoding does (16.5M transactions: 81.6 MB with
    /// plain values and ZSTD, 75.0 MB delta-encoded alone), and the dictionary-encoded columns,
    /// whose pages of small dictionary indices ZSTD shrank by a tenth (a few MB in all) at the
    /// cost of a compressor set up for each column of every day's file.
    pub fn columns_uncompressed(self) -> &'static [&'static str] {
        match self {
            Table::Transactions => &["ts", "product_category", "store_id", "channel", "quantity"],
            Table::Customers | Table::CampaignEvents => &[],
        }
    }

    /// Column holding free-form extra source columns (JSON object) when a source keeps them.
    pub const EXTRA_COLUMN: &'static str = "extra";

    /// Arrow schema of the table's Parquet files (partition column excluded).
    pub fn file_schema(self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns()
            .iter()
            .map(|c| {
                let nullable =
                    !(c.required || self == Table::Transactions && c.name == "is_return");
                Field::new(c.name, arrow_type(c.kind), nullable)
            })
            .collect();
        fields.push(Field::new(Self::EXTRA_COLUMN, DataType::Utf8, true));
        Arc::new(Schema::new(fields))
    }
}

impl std::str::FromStr for Table {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Table::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| CoreError::UnknownTable(s.to_string()))
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Timestamps in the lake: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn arrow_type(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::Id | ColumnKind::Text | ColumnKind::Event => DataType::Utf8,
        ColumnKind::Timestamp => timestamp_type(),
        ColumnKind::Date => DataType::Date32,
        ColumnKind::Number => DataType::Float64,
        ColumnKind::Bool => DataType::Boolean,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn partition_date_reads_the_date_folder_and_nothing_else() {
        let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(
            super::Table::partition_date("transactions/date=2026-05-01/part-ingest-1.parquet"),
            day(2026, 5, 1)
        );
        assert_eq!(
            super::Table::partition_date("campaign_events/date=1999-12-31/a/b.parquet"),
            day(1999, 12, 31)
        );
        assert_eq!(
            super::Table::partition_date("transactions/part-1.parquet"),
            None
        );
        assert_eq!(
            super::Table::partition_date("transactions/day=2026-05-01/x.parquet"),
            None
        );
        assert_eq!(
            super::Table::partition_date("transactions/date=2026-13-01/x.parquet"),
            None
        );
    }

    use super::*;

    #[test]
    fn every_table_round_trips_through_its_name() {
        for t in Table::ALL {
            assert_eq!(t.name().parse::<Table>().unwrap(), t);
        }
        assert!("orders".parse::<Table>().is_err());
    }

    #[test]
    fn transactions_require_the_four_contract_columns() {
        let required: Vec<_> = Table::Transactions
            .columns()
            .iter()
            .filter(|c| c.required)
            .map(|c| c.name)
            .collect();
        assert_eq!(required, ["transaction_id", "customer_id", "ts", "amount"]);
    }
}
