//! Feature SQL files: one model per file, a header comment stating the grain, the tables it
//! requires and each column's meaning, and a query that ends in `select * from final`. The
//! built-in files are compiled in; a data team adds features by dropping files in a folder.

use std::path::Path;

use crate::error::{FeatureError, Result};

/// One documented output column of a feature file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ColumnDoc {
    pub name: String,
    pub description: String,
}

/// A parsed feature file.
#[derive(Debug, Clone)]
pub struct FeatureFile {
    /// File name without `.sql`; also the name of its view in the session.
    pub name: String,
    /// Where it came from (a path, or `built-in:NAME.sql`).
    pub origin: String,
    pub sql: String,
    /// Lake tables the file reads besides transactions; the file is skipped without them.
    pub requires: Vec<String>,
    pub columns: Vec<ColumnDoc>,
}

/// The feature files shipped with churn (the files in `pipelines/features/`).
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "campaigns",
        include_str!("../../../pipelines/features/campaigns.sql"),
    ),
    ("gaps", include_str!("../../../pipelines/features/gaps.sql")),
    (
        "habits",
        include_str!("../../../pipelines/features/habits.sql"),
    ),
    (
        "profile",
        include_str!("../../../pipelines/features/profile.sql"),
    ),
    ("rfm", include_str!("../../../pipelines/features/rfm.sql")),
];

impl FeatureFile {
    /// Parses the header comment of a feature file.
    pub fn parse(name: &str, origin: &str, sql: &str) -> Result<FeatureFile> {
        let invalid = |problem: String| FeatureError::InvalidFile {
            file: origin.to_string(),
            problem,
        };
        // The grain line is required documentation; churn checks the grain itself (one row
        // per customer) when it runs the file, so the text is not kept.
        let mut has_grain = false;
        let mut requires = Vec::new();
        let mut columns = Vec::new();
        let mut in_columns = false;
        for line in sql.lines() {
            let Some(comment) = line.trim_start().strip_prefix("--") else {
                if line.trim().is_empty() {
                    continue;
                }
                break;
            };
            let text = comment.trim();
            if text.starts_with("grain:") {
                has_grain = true;
            } else if let Some(r) = text.strip_prefix("requires:") {
                requires.extend(
                    r.split(',')
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty()),
                );
            } else if text == "columns:" {
                in_columns = true;
            } else if in_columns {
                let (column, description) = text.split_once(':').ok_or_else(|| {
                    invalid(format!(
                        "column line {text:?} should read `--   name: meaning`"
                    ))
                })?;
                columns.push(ColumnDoc {
                    name: column.trim().to_string(),
                    description: description.trim().to_string(),
                });
            }
        }
        if !has_grain {
            return Err(invalid("the header comment has no `-- grain:` line".into()));
        }
        if columns.is_empty() {
            return Err(invalid(
                "the header comment documents no columns (`-- columns:` then `--   name: meaning`)"
                    .into(),
            ));
        }
        if !sql
            .to_ascii_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .ends_with(&["select", "*", "from", "final"])
        {
            return Err(invalid(
                "the query must end with `select * from final`".into(),
            ));
        }
        Ok(FeatureFile {
            name: name.to_string(),
            origin: origin.to_string(),
            sql: sql.to_string(),
            requires,
            columns,
        })
    }

    /// The built-in feature files.
    pub fn built_in() -> Result<Vec<FeatureFile>> {
        BUILT_IN
            .iter()
            .map(|(name, sql)| FeatureFile::parse(name, &format!("built-in:{name}.sql"), sql))
            .collect()
    }

    /// Every `*.sql` file of a folder, by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<FeatureFile>> {
        let read_error = |source| FeatureError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(read_error)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(FeatureError::NoFeatureFiles(dir.to_path_buf()));
        }
        paths
            .iter()
            .map(|path| {
                let sql = std::fs::read_to_string(path).map_err(|source| FeatureError::Read {
                    path: path.clone(),
                    source,
                })?;
                let name = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("feature");
                FeatureFile::parse(name, &path.display().to_string(), &sql)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_files_parse_and_document_their_columns() {
        let files = FeatureFile::built_in().unwrap();
        assert_eq!(files.len(), BUILT_IN.len());
        let rfm = files.iter().find(|f| f.name == "rfm").unwrap();
        assert!(rfm.columns.iter().any(|c| c.name == "recency_days"));
        assert!(rfm.requires.is_empty());
        let profile = files.iter().find(|f| f.name == "profile").unwrap();
        assert_eq!(profile.requires, ["customers"]);
    }

    #[test]
    fn a_file_without_grain_or_final_select_is_refused_with_its_name() {
        let err = FeatureFile::parse("x", "x.sql", "-- columns:\n--   a: b\nselect 1").unwrap_err();
        assert!(
            err.to_string().contains("x.sql") && err.to_string().contains("grain"),
            "{err}"
        );
        let err = FeatureFile::parse(
            "x",
            "x.sql",
            "-- grain: customer\n-- columns:\n--   a: b\nselect 1",
        )
        .unwrap_err();
        assert!(err.to_string().contains("select * from final"), "{err}");
    }
}
