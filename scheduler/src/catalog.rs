//! Tables: Parquet files found by path or glob, with the metadata planning
//! needs (schema, row groups, their sizes and min/max statistics).

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use keel_proto::expr::{normalize_type, ScalarValue};
use keel_proto::paths::AllowedPaths;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

use crate::error::{Result, SchedulerError};

#[derive(Debug, Clone)]
pub struct RowGroupMeta {
    pub rows: u64,
    /// Uncompressed bytes of each column (by table column index).
    pub column_bytes: Vec<u64>,
    /// (min, max) of each column where the file has statistics.
    pub stats: Vec<Option<(ScalarValue, ScalarValue)>>,
}

#[derive(Debug, Clone)]
pub struct FileMeta {
    pub path: String,
    pub row_groups: Vec<RowGroupMeta>,
}

#[derive(Debug)]
pub struct TableSource {
    /// What the user wrote, for messages and `explain`.
    pub pattern: String,
    pub schema: Schema,
    pub files: Vec<FileMeta>,
}

impl TableSource {
    pub fn rows(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|f| &f.row_groups)
            .map(|g| g.rows)
            .sum()
    }
}

/// Loads tables once per query, so a table named twice is read once.
#[derive(Default)]
pub struct Catalog {
    /// Registered names (`--table NAME=PATH`), lower-cased.
    pub tables: HashMap<String, String>,
    loaded: HashMap<Vec<String>, Arc<TableSource>>,
    /// Where queries may read (`--allow-path`).
    allowed: AllowedPaths,
}

impl Catalog {
    pub fn new(tables: HashMap<String, String>) -> Self {
        Catalog {
            tables: tables
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
            loaded: HashMap::new(),
            allowed: AllowedPaths::default(),
        }
    }

    /// Refuses files outside these roots.
    pub fn with_allowed(mut self, allowed: AllowedPaths) -> Self {
        self.allowed = allowed;
        self
    }

    pub fn load(&mut self, patterns: &[String]) -> Result<Arc<TableSource>> {
        if let Some(t) = self.loaded.get(patterns) {
            return Ok(t.clone());
        }
        let mut paths = vec![];
        for pattern in patterns {
            paths.extend(expand(pattern)?);
        }
        let mut files = vec![];
        let mut schema: Option<Schema> = None;
        for path in paths {
            self.allowed
                .check(std::path::Path::new(&path), "input")
                .map_err(SchedulerError::bind)?;
            let (file_schema, meta) = read_metadata(&path)?;
            match &schema {
                None => schema = Some(file_schema.clone()),
                Some(s) if names(s) != names(&file_schema) => {
                    return Err(SchedulerError::SchemaMismatch {
                        path,
                        found: names(&file_schema),
                        expected: names(s),
                    })
                }
                Some(_) => {}
            }
            files.push(file_meta(&path, &file_schema, &meta));
        }
        let table = Arc::new(TableSource {
            pattern: patterns.join(", "),
            schema: schema.expect("at least one file"),
            files,
        });
        self.loaded.insert(patterns.to_vec(), table.clone());
        Ok(table)
    }
}

fn names(s: &Schema) -> String {
    let n: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
    format!("({})", n.join(", "))
}

/// A path, a directory (all `*.parquet` inside) or a glob; an `s3://`
/// address lists objects the same way.
fn expand(pattern: &str) -> Result<Vec<String>> {
    if keel_storage::is_remote(pattern) {
        let listed = keel_storage::list(pattern, &tokio::runtime::Handle::current())
            .map_err(SchedulerError::bind)?;
        if listed.is_empty() {
            return Err(SchedulerError::NoFiles {
                pattern: pattern.to_string(),
            });
        }
        return Ok(listed.into_iter().map(|l| l.url).collect());
    }
    let path = std::path::Path::new(pattern);
    let glob_pattern = if path.is_dir() {
        format!("{}/**/*.parquet", pattern.trim_end_matches('/'))
    } else {
        pattern.to_string()
    };
    let mut out: Vec<String> = glob::glob(&glob_pattern)
        .map_err(|e| SchedulerError::bind(format!("invalid file pattern {pattern:?}: {e}")))?
        .filter_map(|p| p.ok())
        .filter(|p| p.is_file())
        // Hidden files are other writers' temporaries.
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .map(|p| p.display().to_string())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(SchedulerError::NoFiles {
            pattern: pattern.to_string(),
        });
    }
    Ok(out)
}

fn read_metadata(path: &str) -> Result<(Schema, ParquetMetaData)> {
    let perr = |message: String| SchedulerError::Parquet {
        path: path.to_string(),
        message,
    };
    let meta = if keel_storage::is_remote(path) {
        // The footer by range reads, on the runtime this blocking thread belongs to.
        let mut reader = keel_storage::reader(path, None).map_err(perr)?;
        let meta = tokio::runtime::Handle::current()
            .block_on(reader.get_metadata(None))
            .map_err(|e| perr(e.to_string()))?;
        Arc::unwrap_or_clone(meta)
    } else {
        let file = File::open(path).map_err(|e| perr(e.to_string()))?;
        ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .map_err(|e| perr(e.to_string()))?
    };
    let arrow = parquet_to_arrow_schema(
        meta.file_metadata().schema_descr(),
        meta.file_metadata().key_value_metadata(),
    )
    .map_err(|e| perr(e.to_string()))?;
    let mut fields = vec![];
    for f in arrow.fields() {
        let t = normalize_type(f.data_type()).ok_or_else(|| {
            perr(format!(
                "column {} has type {} which Keel does not support",
                f.name(),
                f.data_type()
            ))
        })?;
        fields.push(Field::new(f.name(), t, true));
    }
    Ok((Schema::new(fields), meta))
}

fn file_meta(path: &str, schema: &Schema, meta: &ParquetMetaData) -> FileMeta {
    let descr = meta.file_metadata().schema_descr();
    // Map each table column to its leaf column (flat schemas: one leaf per column).
    let leaf_of: Vec<Option<usize>> = schema
        .fields()
        .iter()
        .map(|f| {
            (0..descr.num_columns()).find(|&i| descr.column(i).path().parts() == [f.name().clone()])
        })
        .collect();
    let row_groups = meta
        .row_groups()
        .iter()
        .map(|rg| RowGroupMeta {
            rows: rg.num_rows() as u64,
            column_bytes: leaf_of
                .iter()
                .map(|l| {
                    l.map(|i| rg.column(i).uncompressed_size() as u64)
                        .unwrap_or(0)
                })
                .collect(),
            stats: leaf_of
                .iter()
                .zip(schema.fields())
                .map(|(l, f)| {
                    l.and_then(|i| rg.column(i).statistics())
                        .and_then(|s| min_max(s, f.data_type()))
                })
                .collect(),
        })
        .collect();
    FileMeta {
        path: path.to_string(),
        row_groups,
    }
}

fn min_max(
    stats: &Statistics,
    t: &arrow::datatypes::DataType,
) -> Option<(ScalarValue, ScalarValue)> {
    use arrow::datatypes::DataType as D;
    match (stats, t) {
        (Statistics::Int32(s), D::Int32) => Some((
            ScalarValue::Int32(*s.min_opt()?),
            ScalarValue::Int32(*s.max_opt()?),
        )),
        (Statistics::Int32(s), D::Date32) => Some((
            ScalarValue::Date32(*s.min_opt()?),
            ScalarValue::Date32(*s.max_opt()?),
        )),
        (Statistics::Int64(s), D::Int64) => Some((
            ScalarValue::Int64(*s.min_opt()?),
            ScalarValue::Int64(*s.max_opt()?),
        )),
        (Statistics::Double(s), D::Float64) => Some((
            ScalarValue::Float64(*s.min_opt()?),
            ScalarValue::Float64(*s.max_opt()?),
        )),
        (Statistics::ByteArray(s), D::Utf8) => Some((
            ScalarValue::Utf8(std::str::from_utf8(s.min_opt()?.data()).ok()?.to_string()),
            ScalarValue::Utf8(std::str::from_utf8(s.max_opt()?.data()).ok()?.to_string()),
        )),
        _ => None,
    }
}
