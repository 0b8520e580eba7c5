//! `keel datagen imbalanced-join`: story 1's `df1` and `df2` (WORKLOADS.md),
//! deterministic for a seed.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::ClientError;

pub struct ImbalancedJoin {
    pub scale: f64,
    pub seed: u64,
    pub key_n: u64,
    pub bucket_n: u64,
    /// The share of df1's rows key 1 holds, if set.
    pub hot_key_share: Option<f64>,
}

impl ImbalancedJoin {
    pub fn new(scale: f64, seed: u64) -> Self {
        ImbalancedJoin {
            scale,
            seed,
            key_n: 7000,
            bucket_n: 40000,
            hot_key_share: None,
        }
    }
}

/// What was written, for the CLI to report.
pub struct Generated {
    pub df1_rows: u64,
    pub df2_rows: u64,
    pub df1_files: usize,
}

/// xoshiro256** seeded by splitmix64: fast, deterministic, good enough for data.
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in lo..=hi.
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// scipy's `expon(loc, scale)`.
    pub fn expon(&mut self, loc: f64, scale: f64) -> f64 {
        loc - scale * (1.0 - self.uniform()).ln()
    }
}

const ROWS_PER_FILE: u64 = 1 << 20;
/// Row groups hold at most this many rows, and at least 1/32 of the table
/// (within bounds), so even small data sets split into many scan tasks.
const MAX_ROWS_PER_GROUP: usize = 128 * 1024;
const MIN_ROWS_PER_GROUP: usize = 8 * 1024;

pub(crate) fn writer(
    path: &Path,
    schema: Arc<Schema>,
    group_rows: usize,
) -> Result<ArrowWriter<File>, ClientError> {
    let file = File::create(path).map_err(|e| ClientError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(group_rows))
        .build();
    ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| ClientError::Usage {
        message: format!("{}: {e}", path.display()),
    })
}

pub(crate) fn write_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> ClientError + '_ {
    move |e| ClientError::Usage {
        message: format!("writing {}: {e}", path.display()),
    }
}

pub fn generate(spec: &ImbalancedJoin, out: &Path) -> Result<Generated, ClientError> {
    if !(spec.scale > 0.0 && spec.scale.is_finite()) {
        return Err(ClientError::Usage {
            message: format!("--scale must be a positive number, got {}", spec.scale),
        });
    }
    let io = |p: &Path, e| ClientError::Io {
        path: p.display().to_string(),
        source: e,
    };
    let df1_dir = out.join("df1");
    let df2_dir = out.join("df2");
    for d in [&df1_dir, &df2_dir] {
        std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
    }
    if let Some(f) = spec.hot_key_share.filter(|f| !(0.0..1.0).contains(f)) {
        return Err(ClientError::Usage {
            message: format!("--hot-key-share must be at least 0 and below 1, got {f}"),
        });
    }
    let mut rng = Rng::new(spec.seed);
    let s = spec.scale;
    let mut counts: Vec<u64> = (0..spec.key_n)
        .map(|_| {
            let hot = rng.uniform() < 0.05;
            let draw = if hot {
                rng.expon(1_006_402.0 * s, 8_200_726.0 * s)
            } else {
                rng.expon(160.0 * s, 125_125.0 * s)
            };
            draw as u64
        })
        .collect();
    if let Some(share) = spec.hot_key_share {
        // Key 1 holds `share` of all rows: share / (1 - share) of the rest.
        let rest: u64 = counts.iter().sum::<u64>() - counts[1];
        counts[1] = (rest as f64 * share / (1.0 - share)).round() as u64;
    }

    let expected: u64 = counts.iter().sum();
    let group_rows = ((expected / 32) as usize).clamp(MIN_ROWS_PER_GROUP, MAX_ROWS_PER_GROUP);
    let schema1 = Arc::new(Schema::new(
        ["key", "bucket", "group1", "group2", "group3", "group4"]
            .iter()
            .map(|n| Field::new(*n, DataType::Int64, false))
            .chain(std::iter::once(Field::new(
                "value",
                DataType::Float64,
                false,
            )))
            .collect::<Vec<_>>(),
    ));
    let mut cols: [Vec<i64>; 6] = Default::default();
    let mut values: Vec<f64> = vec![];
    let mut file_index = 0;
    let mut current: Option<(ArrowWriter<File>, std::path::PathBuf, u64)> = None;
    let mut total = 0u64;
    let flush = |cols: &mut [Vec<i64>; 6],
                 values: &mut Vec<f64>,
                 w: &mut ArrowWriter<File>,
                 path: &Path|
     -> Result<(), ClientError> {
        let schema = schema1.clone();
        if values.is_empty() {
            return Ok(());
        }
        let mut arrays: Vec<ArrayRef> = cols
            .iter_mut()
            .map(|c| Arc::new(Int64Array::from(std::mem::take(c))) as ArrayRef)
            .collect();
        arrays.push(Arc::new(Float64Array::from(std::mem::take(values))));
        let batch = RecordBatch::try_new(schema, arrays).expect("df1 batch");
        w.write(&batch).map_err(write_err(path))
    };
    for (key, &n) in counts.iter().enumerate() {
        if current.is_none() {
            let path = df1_dir.join(format!("part-{file_index:05}.parquet"));
            file_index += 1;
            current = Some((writer(&path, schema1.clone(), group_rows)?, path, 0));
        }
        let (w, path, rows) = current.as_mut().expect("open");
        for i in 0..n {
            cols[0].push(key as i64);
            cols[1].push((i % spec.bucket_n + 1) as i64);
            cols[2].push(rng.int(1, 9) as i64);
            cols[3].push(rng.int(1, 19) as i64);
            cols[4].push(rng.int(1, 29) as i64);
            cols[5].push(rng.int(1, 39) as i64);
            values.push(rng.uniform());
            if values.len() >= group_rows {
                flush(&mut cols, &mut values, w, path)?;
            }
        }
        *rows += n;
        total += n;
        // One file per key range: close it once it holds enough rows.
        if *rows >= ROWS_PER_FILE || key as u64 + 1 == spec.key_n {
            let (mut w, path, _) = current.take().expect("open");
            flush(&mut cols, &mut values, &mut w, &path)?;
            w.close().map_err(write_err(&path))?;
        }
    }

    // df2: groups of distinct random keys; the last group holds every key.
    let groups = 11_578u64;
    let mut df2_group = vec![];
    let mut df2_key = vec![];
    let mut all_keys: Vec<u64> = (0..spec.key_n).collect();
    for g in 0..groups {
        let n = if g + 1 == groups {
            spec.key_n
        } else if rng.uniform() < 0.01 {
            (rng.expon(101.0, 554.0) as u64).min(spec.key_n)
        } else {
            (rng.expon(1.0, 1.5) as u64).min(spec.key_n)
        };
        // Partial Fisher-Yates: the first n entries become a random distinct sample.
        for i in 0..n as usize {
            let j = i + (rng.next_u64() % (spec.key_n - i as u64)) as usize;
            all_keys.swap(i, j);
            df2_group.push(g as i64);
            df2_key.push(all_keys[i] as i64);
        }
    }
    let schema2 = Arc::new(Schema::new(vec![
        Field::new("df2_group", DataType::Int64, false),
        Field::new("key", DataType::Int64, false),
    ]));
    let path2 = df2_dir.join("part-00000.parquet");
    let df2_rows = df2_key.len() as u64;
    let batch = RecordBatch::try_new(
        schema2.clone(),
        vec![
            Arc::new(Int64Array::from(df2_group)),
            Arc::new(Int64Array::from(df2_key)),
        ],
    )
    .expect("df2 batch");
    let mut w = writer(&path2, schema2, MAX_ROWS_PER_GROUP)?;
    w.write(&batch).map_err(write_err(&path2))?;
    w.close().map_err(write_err(&path2))?;
    Ok(Generated {
        df1_rows: total,
        df2_rows,
        df1_files: file_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hot_key_holds_the_share_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ImbalancedJoin {
            hot_key_share: Some(0.3),
            ..ImbalancedJoin::new(0.00005, 3)
        };
        let g = generate(&spec, dir.path()).unwrap();
        let mut hot = 0;
        for f in std::fs::read_dir(dir.path().join("df1")).unwrap() {
            let file = File::open(f.unwrap().path()).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1 << 16)
                    .unwrap();
            for b in reader {
                let b = b.unwrap();
                let keys = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                hot += keys.values().iter().filter(|k| **k == 1).count() as u64;
            }
        }
        let share = hot as f64 / g.df1_rows as f64;
        assert!(
            (share - 0.3).abs() < 0.001,
            "key 1 holds {share} of the rows"
        );
        let bad = ImbalancedJoin {
            hot_key_share: Some(1.0),
            ..ImbalancedJoin::new(0.00005, 3)
        };
        let err = generate(&bad, dir.path()).err().unwrap().to_string();
        assert!(err.contains("--hot-key-share must be"), "{err}");
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.uniform();
            assert_eq!(x, b.uniform());
            assert!((0.0..1.0).contains(&x));
            let k = a.int(1, 9);
            b.int(1, 9);
            assert!((1..=9).contains(&k));
        }
        let mean: f64 = (0..20000).map(|_| a.expon(2.0, 3.0)).sum::<f64>() / 20000.0;
        assert!((mean - 5.0).abs() < 0.2, "{mean}");
    }
}
