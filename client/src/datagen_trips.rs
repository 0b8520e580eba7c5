//! `keel datagen trips`: story 2's bike-share trips table (WORKLOADS.md),
//! about 9.5 M rows at scale 1, deterministic for a seed.
//!
//! Trips fall on days of 2014–2017, mostly in summer and in daytime hours;
//! 77% of riders are male, three quarters are subscribers, stations (about
//! 600) are drawn with a long tail, and one trip in a thousand repeats the
//! previous trip's id (the "few duplicates" the story mentions).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::datagen::{write_err, writer, Rng};
use crate::error::ClientError;

/// Rows at scale 1.
const ROWS: f64 = 9.5e6;
const ROWS_PER_FILE: u64 = 1 << 20;
const GROUP_ROWS: usize = 128 * 1024;
const BATCH_ROWS: usize = 64 * 1024;
const STATIONS: u64 = 600;
/// Days from 1970-01-01 to 2014-01-01.
const FIRST_DAY: i64 = 16071;
const DAYS: u64 = 4 * 365 + 1;
const EVENTS: [&str; 6] = [
    "clear",
    "cloudy",
    "not clear",
    "rain or snow",
    "tstorms",
    "unknown",
];

/// What was written, for the CLI to report.
pub struct Trips {
    pub rows: u64,
    pub files: usize,
}

fn schema() -> Arc<Schema> {
    let int = |n: &str| Field::new(n, DataType::Int32, false);
    Arc::new(Schema::new(vec![
        Field::new("trip_id", DataType::Int64, false),
        int("year"),
        int("month"),
        int("week"),
        int("day"),
        int("hour"),
        Field::new("usertype", DataType::Utf8, false),
        Field::new("gender", DataType::Utf8, false),
        int("from_station_id"),
        int("to_station_id"),
        Field::new("tripduration", DataType::Float64, false),
        Field::new("temperature", DataType::Float64, false),
        Field::new("events", DataType::Utf8, false),
    ]))
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i32, i32, i32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as i32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as i32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// A station with a long tail: low ids are much busier.
fn station(rng: &mut Rng) -> i32 {
    (rng.uniform().powi(2) * STATIONS as f64) as i32 + 1
}

/// One row's columns, appended to per-column vectors.
#[derive(Default)]
struct Columns {
    trip_id: Vec<i64>,
    date: [Vec<i32>; 5],
    usertype: Vec<&'static str>,
    gender: Vec<&'static str>,
    from: Vec<i32>,
    to: Vec<i32>,
    duration: Vec<f64>,
    temperature: Vec<f64>,
    events: Vec<&'static str>,
}

impl Columns {
    fn push(&mut self, rng: &mut Rng, trip_id: i64) {
        // Summer days are busier: a second draw favours days near mid-year.
        let mut d = rng.int(0, DAYS - 1);
        if rng.uniform() < 0.5 {
            d = ((d % 365).clamp(120, 270) + 365 * (d / 365)).min(DAYS - 1);
        }
        let (year, month, day) = civil(FIRST_DAY + d as i64);
        let week = ((d % 365) / 7 + 1).min(53) as i32;
        let hour = (rng.expon(0.0, 3.0) as i32 + 7 + rng.int(0, 9) as i32) % 24;
        self.trip_id.push(trip_id);
        for (c, v) in self.date.iter_mut().zip([year, month, week, day, hour]) {
            c.push(v);
        }
        self.usertype.push(if rng.uniform() < 0.75 {
            "Subscriber"
        } else {
            "Customer"
        });
        self.gender.push(if rng.uniform() < 0.77 {
            "Male"
        } else {
            "Female"
        });
        self.from.push(station(rng));
        self.to.push(station(rng));
        self.duration.push(rng.expon(60.0, 720.0).round());
        let season = ((month as f64 - 7.0) / 6.0 * std::f64::consts::PI).cos();
        self.temperature
            .push((50.0 + 30.0 * season + rng.uniform() * 20.0 - 10.0).round());
        self.events
            .push(EVENTS[(rng.expon(0.0, 0.7) as usize).min(EVENTS.len() - 1)]);
    }

    fn batch(self, schema: &Arc<Schema>) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(self.trip_id))];
        let [year, month, week, day, hour] = self.date;
        for c in [year, month, week, day, hour] {
            columns.push(Arc::new(Int32Array::from(c)));
        }
        columns.push(Arc::new(StringArray::from(self.usertype)));
        columns.push(Arc::new(StringArray::from(self.gender)));
        columns.push(Arc::new(Int32Array::from(self.from)));
        columns.push(Arc::new(Int32Array::from(self.to)));
        columns.push(Arc::new(Float64Array::from(self.duration)));
        columns.push(Arc::new(Float64Array::from(self.temperature)));
        columns.push(Arc::new(StringArray::from(self.events)));
        RecordBatch::try_new(schema.clone(), columns).expect("trips batch")
    }
}

/// Rows at `scale` (1 is about 9.5 M).
pub fn rows_at_scale(scale: f64) -> Result<u64, ClientError> {
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(ClientError::Usage {
            message: format!("--scale must be a positive number, got {scale}"),
        });
    }
    Ok(((ROWS * scale) as u64).max(1))
}

pub fn generate(rows: u64, seed: u64, out: &Path) -> Result<Trips, ClientError> {
    let dir = out.join("trips");
    std::fs::create_dir_all(&dir).map_err(|e| ClientError::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let schema = schema();
    let mut rng = Rng::new(seed);
    let mut trip_id = 1_000_000i64;
    let mut files = 0;
    let mut written = 0;
    while written < rows {
        let in_file = ROWS_PER_FILE.min(rows - written);
        let path = dir.join(format!("part-{files:05}.parquet"));
        let mut w = writer(&path, schema.clone(), GROUP_ROWS)?;
        let mut left = in_file;
        while left > 0 {
            let n = (BATCH_ROWS as u64).min(left);
            let mut cols = Columns::default();
            for _ in 0..n {
                // One trip in a thousand repeats the last id.
                if rng.uniform() >= 0.001 {
                    trip_id += 1;
                }
                cols.push(&mut rng, trip_id);
            }
            w.write(&cols.batch(&schema)).map_err(write_err(&path))?;
            left -= n;
        }
        w.close().map_err(write_err(&path))?;
        written += in_file;
        files += 1;
    }
    Ok(Trips { rows, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil(FIRST_DAY), (2014, 1, 1));
        assert_eq!(civil(FIRST_DAY + 31 + 28), (2014, 3, 1));
        assert_eq!(civil(FIRST_DAY + DAYS as i64 - 1), (2017, 12, 31));
    }

    #[test]
    fn rows_have_the_documented_shape() {
        let mut rng = Rng::new(7);
        let mut cols = Columns::default();
        for i in 0..20_000 {
            cols.push(&mut rng, i);
        }
        let male = cols.gender.iter().filter(|g| **g == "Male").count() as f64 / 20_000.0;
        assert!((0.75..0.79).contains(&male), "male share {male}");
        assert!(cols.from.iter().all(|s| (1..=STATIONS as i32).contains(s)));
        assert!(cols.date[0].iter().all(|y| (2014..=2017).contains(y)));
        assert!(cols.date[1].iter().all(|m| (1..=12).contains(m)));
        assert!(cols.date[4].iter().all(|h| (0..24).contains(h)));
        let summer = cols.date[1].iter().filter(|m| (5..=9).contains(*m)).count();
        assert!(summer > 20_000 / 2, "summer trips {summer}");
    }
}
