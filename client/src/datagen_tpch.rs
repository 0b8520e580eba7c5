//! `keel datagen tpch`: the eight TPC-H tables as Parquet, one folder per
//! table (`DIR/lineitem/part-00000.parquet`, ...), for the 22 queries in
//! `bench/tpch/queries/`.
//!
//! The rows come from `tpchgen` (a port of the TPC's `dbgen`), so a scale
//! factor always gives the same data, the same as `dbgen`'s. Column names
//! and types are `tpchgen-arrow`'s: int64 keys, DECIMAL(15,2) money and
//! quantities, date32 dates and utf8view strings (which Keel reads as utf8).
//!
//! A big table is cut into parts of at most [`ROWS_PER_FILE`] rows, one file
//! each; `tpchgen` generates a part without the ones before it, so the parts
//! are written on all cores at once.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use arrow::record_batch::RecordBatchReader;
use indicatif::{ProgressBar, ProgressStyle};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

use crate::datagen::{write_err, writer};
use crate::error::ClientError;

/// Parts are cut so no file holds more rows than this.
const ROWS_PER_FILE: u64 = 2 * 1024 * 1024;
const GROUP_ROWS: usize = 128 * 1024;
const BATCH_ROWS: usize = 16 * 1024;

/// The eight tables, smallest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Region,
    Nation,
    Supplier,
    Customer,
    Part,
    PartSupp,
    Orders,
    LineItem,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Region,
        Table::Nation,
        Table::Supplier,
        Table::Customer,
        Table::Part,
        Table::PartSupp,
        Table::Orders,
        Table::LineItem,
    ];

    /// The folder name, which is the table name the queries use.
    pub fn name(self) -> &'static str {
        match self {
            Table::Region => "region",
            Table::Nation => "nation",
            Table::Supplier => "supplier",
            Table::Customer => "customer",
            Table::Part => "part",
            Table::PartSupp => "partsupp",
            Table::Orders => "orders",
            Table::LineItem => "lineitem",
        }
    }

    /// Rows at `scale`; for lineitem an estimate (orders have 1 to 7 lines,
    /// 4 on average), which is all the progress bar and the cut into parts need.
    fn rows(self, scale: f64) -> u64 {
        let rows = match self {
            Table::Region => 5,
            Table::Nation => 25,
            Table::Supplier => SupplierGenerator::calculate_row_count(scale, 1, 1),
            Table::Customer => CustomerGenerator::calculate_row_count(scale, 1, 1),
            Table::Part => PartGenerator::calculate_row_count(scale, 1, 1),
            Table::PartSupp => PartSuppGenerator::calculate_row_count(scale, 1, 1),
            Table::Orders => OrderGenerator::calculate_row_count(scale, 1, 1),
            Table::LineItem => 4 * OrderGenerator::calculate_row_count(scale, 1, 1),
        };
        rows.max(0) as u64
    }

    /// Part `part` (1-based, as `tpchgen` counts) of `parts`, as Arrow batches.
    fn batches(self, scale: f64, part: i32, parts: i32) -> Box<dyn RecordBatchReader + Send> {
        match self {
            Table::Region => Box::new(
                RegionArrow::new(RegionGenerator::new(scale, part, parts))
                    .with_batch_size(BATCH_ROWS),
            ),
            Table::Nation => Box::new(
                NationArrow::new(NationGenerator::new(scale, part, parts))
                    .with_batch_size(BATCH_ROWS),
            ),
            Table::Supplier => Box::new(
                SupplierArrow::new(SupplierGenerator::new(scale, part, parts))
                    .with_batch_size(BATCH_ROWS),
            ),
            Table::Customer => Box::new(
                CustomerArrow::new(CustomerGenerator::new(scale, part, parts))
                    .with_batch_size(BATCH_ROWS),
            ),
            Table::Part => Box::new(
                PartArrow::new(PartGenerator::new(scale, part, parts)).with_batch_size(BATCH_ROWS),
            ),
            Table::PartSupp => Box::new(
                PartSuppArrow::new(PartSuppGenerator::new(scale, part, parts))
                    .with_batch_size(BATCH_ROWS),
            ),
            Table::Orders => Box::new(
                OrderArrow::new(OrderGenerator::new(scale, part, parts))
                    .with_batch_size(BATCH_ROWS),
            ),
            Table::LineItem => Box::new(
                LineItemArrow::new(LineItemGenerator::new(scale, part, parts))
                    .with_batch_size(BATCH_ROWS),
            ),
        }
    }

    /// How many files (and `tpchgen` parts) the table is cut into.
    fn parts(self, scale: f64) -> i32 {
        // Region and nation ignore parts: every part would hold all rows.
        if matches!(self, Table::Region | Table::Nation) {
            return 1;
        }
        self.rows(scale).div_ceil(ROWS_PER_FILE).max(1) as i32
    }
}

/// What was written to one table's folder.
pub struct Written {
    pub table: Table,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
}

/// Checks `scale` and writes all eight tables under `out`, replacing any
/// `part-*.parquet` files an earlier run left there (a smaller scale writes
/// fewer parts, and a stale part would join the table).
pub fn generate(scale: f64, out: &Path) -> Result<Vec<Written>, ClientError> {
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(ClientError::Usage {
            message: format!("--scale must be a positive number, got {scale}"),
        });
    }
    // tpchgen's row counts are i64s of scale × base rows; past this they overflow.
    if scale > 1e6 {
        return Err(ClientError::Usage {
            message: format!("--scale {scale} is too large (TPC-H defines scales up to 100000)"),
        });
    }
    let mut jobs = Vec::new();
    for table in Table::ALL {
        let dir = out.join(table.name());
        prepare_dir(&dir)?;
        let parts = table.parts(scale);
        for part in 1..=parts {
            jobs.push((
                table,
                part,
                parts,
                dir.join(format!("part-{:05}.parquet", part - 1)),
            ));
        }
    }
    // Biggest parts first, so no core is left with one big part at the end.
    jobs.reverse();

    let total: u64 = Table::ALL.iter().map(|t| t.rows(scale)).sum();
    let bar = progress_bar(total);
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((table, part, parts, path)) = jobs.get(i) else {
                    return;
                };
                let r = write_part(*table, scale, *part, *parts, path, bar.as_ref());
                let failed = r.is_err();
                results
                    .lock()
                    .expect("no writer panicked")
                    .push((*table, r));
                if failed {
                    // Later jobs would fail the same way; let the threads stop.
                    next.store(jobs.len(), Ordering::Relaxed);
                }
            });
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }

    let mut written: Vec<Written> = Table::ALL
        .iter()
        .map(|&table| Written {
            table,
            rows: 0,
            files: 0,
            bytes: 0,
        })
        .collect();
    for (table, r) in results.into_inner().expect("no writer panicked") {
        let (rows, bytes) = r?;
        let w = written
            .iter_mut()
            .find(|w| w.table == table)
            .expect("every table listed");
        w.rows += rows;
        w.bytes += bytes;
        w.files += 1;
    }
    Ok(written)
}

/// Creates `dir` and removes the part files of an earlier run.
fn prepare_dir(dir: &Path) -> Result<(), ClientError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ClientError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path: PathBuf = entry.map_err(io(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("part-") && name.ends_with(".parquet") {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Writes one part to `path`; returns its rows and bytes.
fn write_part(
    table: Table,
    scale: f64,
    part: i32,
    parts: i32,
    path: &Path,
    bar: Option<&ProgressBar>,
) -> Result<(u64, u64), ClientError> {
    let batches = table.batches(scale, part, parts);
    let mut w = writer(path, batches.schema(), GROUP_ROWS)?;
    let mut rows = 0;
    for batch in batches {
        let batch = batch.map_err(|e| ClientError::Usage {
            message: format!("generating {}: {e}", table.name()),
        })?;
        w.write(&batch).map_err(write_err(path))?;
        rows += batch.num_rows() as u64;
        if let Some(b) = bar {
            b.inc(batch.num_rows() as u64);
        }
    }
    w.close().map_err(write_err(path))?;
    let bytes = std::fs::metadata(path)
        .map_err(|source| ClientError::Io {
            path: path.display().to_string(),
            source,
        })?
        .len();
    Ok((rows, bytes))
}

fn progress_bar(rows: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(rows);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} rows, {per_sec}",
        )
        .ok()?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::datatypes::DataType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn writes_eight_tables_with_the_standard_columns() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(0.001, dir.path()).unwrap();
        let rows = |t: Table| written.iter().find(|w| w.table == t).unwrap().rows;
        assert_eq!(rows(Table::Region), 5);
        assert_eq!(rows(Table::Nation), 25);
        assert_eq!(rows(Table::Supplier), 10);
        assert_eq!(rows(Table::Customer), 150);
        assert_eq!(rows(Table::Part), 200);
        assert_eq!(rows(Table::PartSupp), 800);
        assert_eq!(rows(Table::Orders), 1500);
        assert!((4 * 1500 * 9 / 10..4 * 1500 * 11 / 10).contains(&rows(Table::LineItem)));

        let file = std::fs::File::open(dir.path().join("lineitem/part-00000.parquet")).unwrap();
        let schema = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .schema()
            .clone();
        assert_eq!(schema.field(0).name(), "l_orderkey");
        let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
        assert_eq!(ty("l_extendedprice"), DataType::Decimal128(15, 2));
        assert_eq!(ty("l_shipdate"), DataType::Date32);
    }

    #[test]
    fn the_same_scale_gives_the_same_files() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(0.001, a.path()).unwrap();
        generate(0.001, b.path()).unwrap();
        let read = |d: &Path| std::fs::read(d.join("orders/part-00000.parquet")).unwrap();
        assert_eq!(read(a.path()), read(b.path()));
    }

    #[test]
    fn big_tables_are_cut_into_parts() {
        assert_eq!(Table::LineItem.parts(1.0), 3);
        assert_eq!(Table::Orders.parts(1.0), 1);
        assert_eq!(Table::Nation.parts(100.0), 1);
        assert_eq!(Table::LineItem.parts(0.01), 1);
    }

    #[test]
    fn a_scale_that_is_not_positive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for scale in [0.0, -1.0, f64::NAN] {
            let e = generate(scale, dir.path()).err().unwrap().to_string();
            assert!(e.contains("--scale must be a positive number"), "{e}");
        }
    }
}
