//! `keel datagen backups`: story 4's two daily snapshots (WORKLOADS.md),
//! deterministic for a seed.
//!
//! `OUT/day1/signal-NN.parquet` and `OUT/day2/signal-NN.parquet` hold one
//! signal each: `(signal, time_value, geo_value, value, stderr, sample_size)`
//! keyed by (signal, time_value, geo_value). The 40 signals' sizes spread
//! 100× (10 k to 1 M rows at scale 1). Day 2 back-fills about 4% of values
//! (and some standard errors), adds about 2% rows, drops about 1%, keeps
//! most NULLs NULL and turns some into values.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::datagen::{write_err, writer, Rng};
use crate::error::ClientError;

pub const SIGNALS: usize = 40;
const SMALLEST_ROWS: f64 = 10_000.0;
const SPREAD: f64 = 100.0;
/// Locations per day; a signal's rows cover as many days as they need.
const GEOS: u64 = 1_000;
const BATCH_ROWS: usize = 64 * 1024;
/// 2020-01-01 in days since the epoch.
const FIRST_DAY: i32 = 18_262;

/// What was written, for the CLI to report.
pub struct Backups {
    pub day1_rows: u64,
    pub day2_rows: u64,
    pub files: usize,
}

/// Rows of signal `i` (0-based) on day 1 at `scale`.
pub fn signal_rows(i: usize, scale: f64) -> u64 {
    let f = i as f64 / (SIGNALS - 1) as f64;
    ((SMALLEST_ROWS * SPREAD.powf(f) * scale).round() as u64).max(1)
}

/// One snapshot row; `None` is NULL.
#[derive(Clone)]
struct Row {
    key: u64,
    value: Option<f64>,
    stderr: Option<f64>,
    sample_size: Option<f64>,
}

fn fresh(rng: &mut Rng, key: u64) -> Row {
    let maybe = |rng: &mut Rng, p_null: f64, v: f64| (rng.uniform() >= p_null).then_some(v);
    let value = rng.uniform() * 100.0;
    let stderr = rng.uniform() * 5.0;
    let sample = rng.int(10, 5000) as f64;
    Row {
        key,
        value: maybe(rng, 0.03, value),
        stderr: maybe(rng, 0.05, stderr),
        sample_size: maybe(rng, 0.02, sample),
    }
}

/// Day 2 from day 1: drops, back-fills, NULLs that become values, additions.
fn next_day(rng: &mut Rng, day1: &[Row], next_key: u64) -> Vec<Row> {
    let mut out = Vec::with_capacity(day1.len() + day1.len() / 40);
    for r in day1 {
        let u = rng.uniform();
        if u < 0.01 {
            continue;
        }
        let mut r = r.clone();
        if u < 0.05 {
            r.value = Some(rng.uniform() * 100.0);
            if rng.uniform() < 0.3 {
                r.stderr = Some(rng.uniform() * 5.0);
            }
        } else if r.value.is_none() && rng.uniform() < 0.2 {
            r.value = Some(rng.uniform() * 100.0);
        }
        out.push(r);
    }
    let added = (day1.len() as u64 / 50).max(1);
    out.extend((0..added).map(|i| fresh(rng, next_key + i)));
    out
}

fn write_signal(path: &Path, signal: &str, rows: &[Row]) -> Result<(), ClientError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("signal", DataType::Utf8, false),
        Field::new("time_value", DataType::Date32, false),
        Field::new("geo_value", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("stderr", DataType::Float64, true),
        Field::new("sample_size", DataType::Float64, true),
    ]));
    let mut w = writer(path, schema.clone(), 128 * 1024)?;
    for chunk in rows.chunks(BATCH_ROWS) {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![signal; chunk.len()])),
            Arc::new(Date32Array::from_iter_values(
                chunk.iter().map(|r| FIRST_DAY + (r.key / GEOS) as i32),
            )),
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|r| format!("g{:04}", r.key % GEOS)),
            )),
            Arc::new(Float64Array::from_iter(chunk.iter().map(|r| r.value))),
            Arc::new(Float64Array::from_iter(chunk.iter().map(|r| r.stderr))),
            Arc::new(Float64Array::from_iter(chunk.iter().map(|r| r.sample_size))),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("backups batch");
        w.write(&batch).map_err(write_err(path))?;
    }
    w.close().map_err(write_err(path))?;
    Ok(())
}

pub fn generate(scale: f64, seed: u64, out: &Path) -> Result<Backups, ClientError> {
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(ClientError::Usage {
            message: format!("--scale must be a positive number, got {scale}"),
        });
    }
    let (d1, d2) = (out.join("day1"), out.join("day2"));
    for d in [&d1, &d2] {
        std::fs::create_dir_all(d).map_err(|e| ClientError::Io {
            path: d.display().to_string(),
            source: e,
        })?;
    }
    let mut rng = Rng::new(seed);
    let mut written = Backups {
        day1_rows: 0,
        day2_rows: 0,
        files: 0,
    };
    for i in 0..SIGNALS {
        let n = signal_rows(i, scale);
        let signal = format!("signal_{i:02}");
        let day1: Vec<Row> = (0..n).map(|k| fresh(&mut rng, k)).collect();
        let day2 = next_day(&mut rng, &day1, n);
        let file = format!("signal-{i:02}.parquet");
        write_signal(&d1.join(&file), &signal, &day1)?;
        write_signal(&d2.join(&file), &signal, &day2)?;
        written.day1_rows += day1.len() as u64;
        written.day2_rows += day2.len() as u64;
        written.files += 2;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_sizes_spread_a_hundredfold() {
        assert_eq!(signal_rows(0, 1.0), 10_000);
        assert_eq!(signal_rows(SIGNALS - 1, 1.0), 1_000_000);
        assert!(signal_rows(20, 1.0) > signal_rows(19, 1.0));
    }

    #[test]
    fn day_two_changes_adds_and_drops_about_as_documented() {
        let mut rng = Rng::new(7);
        let day1: Vec<Row> = (0..100_000).map(|k| fresh(&mut rng, k)).collect();
        let day2 = next_day(&mut rng, &day1, 100_000);
        let kept = day2.iter().filter(|r| r.key < 100_000).count() as f64;
        let added = day2.len() as f64 - kept;
        let changed = day2
            .iter()
            .filter(|r| r.key < 100_000 && r.value != day1[r.key as usize].value)
            .count() as f64;
        assert!((0.985..0.995).contains(&(kept / 1e5)), "{kept}");
        assert!((added / 1e5 - 0.02).abs() < 1e-3, "{added}");
        assert!((0.035..0.05).contains(&(changed / 1e5)), "{changed}");
        let nulls_kept = day2
            .iter()
            .filter(|r| r.key < 100_000 && r.value.is_none())
            .count();
        assert!(nulls_kept > 1000, "most NULLs stay NULL");
    }
}
