//! `keel datagen devices`: story 3's device polls and alerts (WORKLOADS.md),
//! deterministic for a seed.
//!
//! Device activity follows a Zipf law whose exponent is chosen so the
//! hottest device owns about a quarter of the rows. Each device is polled
//! every 30 minutes from its own start and reports a state that changes
//! at about one poll in twenty; its alerts fall uniformly within its
//! polling span. Both tables are written in timestamp order.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::datagen::{write_err, writer, Rng};
use crate::error::ClientError;

const ROWS_PER_FILE: usize = 1 << 20;
const GROUP_ROWS: usize = 128 * 1024;
const BATCH_ROWS: usize = 64 * 1024;
/// The share of rows the hottest device owns.
const HOTTEST_SHARE: f64 = 0.25;
const POLL_MICROS: i64 = 30 * 60 * 1_000_000;
/// 2024-01-01T00:00:00 in microseconds since the epoch.
const FIRST_POLL: i64 = 1_704_067_200_000_000;
const STATES: [&str; 4] = ["ok", "degraded", "down", "maintenance"];

pub struct Devices {
    pub polls: u64,
    pub alerts: u64,
    pub devices: u64,
}

/// What was written, for the CLI to report.
pub struct Written {
    pub polls: usize,
    pub alerts: usize,
    pub files: usize,
}

/// Zipf weights over `n` devices with the exponent that gives the first
/// device `share` of the total (found by bisection; the share grows with
/// the exponent).
fn zipf_weights(n: usize, share: f64) -> Vec<f64> {
    let weights = |s: f64| -> Vec<f64> {
        let w: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = w.iter().sum();
        w.into_iter().map(|x| x / total).collect()
    };
    if n == 1 {
        return vec![1.0];
    }
    let (mut lo, mut hi) = (0.0, 8.0);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if weights(mid)[0] < share {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    weights((lo + hi) / 2.0)
}

/// `total` rows divided between devices by weight, every device at least one.
fn counts(weights: &[f64], total: u64) -> Vec<usize> {
    weights
        .iter()
        .map(|w| ((w * total as f64).round() as usize).max(1))
        .collect()
}

pub fn generate(spec: &Devices, seed: u64, out: &Path) -> Result<Written, ClientError> {
    if spec.devices == 0 || spec.polls < spec.devices {
        return Err(ClientError::Usage {
            message: format!(
                "--devices must be at least 1 and --polls at least --devices, got {} devices and {} polls",
                spec.devices, spec.polls
            ),
        });
    }
    let mut rng = Rng::new(seed);
    let weights = zipf_weights(spec.devices as usize, HOTTEST_SHARE);
    // Polls: (timestamp, device, state).
    let mut polls: Vec<(i64, i64, u8)> = Vec::with_capacity(spec.polls as usize);
    let mut spans = vec![];
    for (d, n) in counts(&weights, spec.polls).into_iter().enumerate() {
        let start = FIRST_POLL + rng.int(0, POLL_MICROS as u64 - 1) as i64;
        let mut state = rng.int(0, 1) as u8;
        for j in 0..n {
            if rng.uniform() < 0.05 {
                state = rng.int(0, STATES.len() as u64 - 1) as u8;
            }
            polls.push((start + j as i64 * POLL_MICROS, d as i64, state));
        }
        spans.push((start, start + n as i64 * POLL_MICROS));
    }
    polls.sort_unstable();
    // Alerts: (timestamp, device), within the device's polling span.
    let mut alerts: Vec<(i64, i64)> = Vec::with_capacity(spec.alerts as usize);
    for (d, n) in counts(&weights, spec.alerts).into_iter().enumerate() {
        let (from, to) = spans[d];
        for _ in 0..n {
            alerts.push((rng.int(from as u64, to as u64 - 1) as i64, d as i64));
        }
    }
    alerts.sort_unstable();

    let ts = || {
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        )
    };
    let poll_schema = Arc::new(Schema::new(vec![
        ts(),
        Field::new("device_id", DataType::Int64, false),
        Field::new("state", DataType::Utf8, false),
    ]));
    let alert_schema = Arc::new(Schema::new(vec![
        ts(),
        Field::new("device_id", DataType::Int64, false),
    ]));
    let mut files = write_table(&out.join("polls"), &poll_schema, polls.len(), |range| {
        let rows = &polls[range];
        vec![
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.0),
            )) as ArrayRef,
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| STATES[r.2 as usize]),
            )),
        ]
    })?;
    files += write_table(&out.join("alerts"), &alert_schema, alerts.len(), |range| {
        let rows = &alerts[range];
        vec![
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.0),
            )) as ArrayRef,
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ]
    })?;
    Ok(Written {
        polls: polls.len(),
        alerts: alerts.len(),
        files,
    })
}

/// Writes `rows` rows, whose columns `columns` makes for a range, as
/// Parquet files under `dir`; returns how many files.
fn write_table(
    dir: &Path,
    schema: &Arc<Schema>,
    rows: usize,
    columns: impl Fn(std::ops::Range<usize>) -> Vec<ArrayRef>,
) -> Result<usize, ClientError> {
    std::fs::create_dir_all(dir).map_err(|e| ClientError::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let mut files = 0;
    for start in (0..rows.max(1)).step_by(ROWS_PER_FILE) {
        let end = (start + ROWS_PER_FILE).min(rows);
        let path = dir.join(format!("part-{files:05}.parquet"));
        let mut w = writer(&path, schema.clone(), GROUP_ROWS)?;
        for at in (start..end).step_by(BATCH_ROWS) {
            let batch =
                RecordBatch::try_new(schema.clone(), columns(at..(at + BATCH_ROWS).min(end)))
                    .expect("devices batch");
            w.write(&batch).map_err(write_err(&path))?;
        }
        w.close().map_err(write_err(&path))?;
        files += 1;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hottest_device_owns_a_quarter() {
        for n in [10, 1000, 100_000] {
            let w = zipf_weights(n, HOTTEST_SHARE);
            assert!((w[0] - 0.25).abs() < 1e-6, "{n} devices: {}", w[0]);
            assert!(w.windows(2).all(|p| p[0] >= p[1]));
        }
        let c = counts(&zipf_weights(100, HOTTEST_SHARE), 10_000);
        assert_eq!(c[0], 2500);
        assert!(c.iter().all(|&n| n >= 1));
    }

    #[test]
    fn too_few_polls_is_an_error() {
        let spec = Devices {
            polls: 5,
            alerts: 5,
            devices: 10,
        };
        let dir = tempfile::tempdir().unwrap();
        let err = generate(&spec, 1, dir.path()).err().unwrap();
        assert!(err.to_string().contains("--polls at least --devices"));
    }
}
