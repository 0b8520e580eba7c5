//! The heavy hitters of a hash exchange's partitioning key.
//!
//! A map task feeds every batch's key hashes (the ones that pick each row's
//! partition) to an Apache DataSketches frequent-items sketch and reports
//! the sketch with its output. The scheduler merges the sketches of all map
//! tasks and splits the partitions that hot keys made too big for one task.
//! Sketching hashes rather than values keeps the update cheap and the same
//! for every key type; the values of the few hottest keys are printed on
//! the side so `explain --analyze` can name them.

use std::collections::HashMap;

use arrow::array::ArrayRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datasketches::frequencies::{ErrorType, FrequentItemsSketch};

/// The sketch's map size: it finds every key above about 3.5 / 256 ≈ 1.4%
/// of the rows, which is far below what makes a partition skewed.
const SKETCH_MAP_SIZE: usize = 256;
/// One row in this many updates the sketch, with this weight: a hot key is
/// still seen thousands of times, at an eighth of the cost.
const SAMPLE_STRIDE: usize = 8;
/// Key values printed per map task.
const MAX_LABELS: usize = 16;
/// A key is labelled once it holds this fraction of the rows seen.
const LABEL_SHARE: u64 = 64;
/// Characters of a printed key kept.
const LABEL_CHARS: usize = 60;

/// What a map task reports about its partitioning key.
#[derive(Debug, Clone, Default)]
pub struct HotKeys {
    /// The serialized frequent-items sketch of the key hashes.
    pub sketch: Vec<u8>,
    /// (hash, printed value) of the hottest keys.
    pub labels: Vec<(u64, String)>,
}

pub struct HotKeyTracker {
    sketch: FrequentItemsSketch<u64>,
    labels: HashMap<u64, String>,
    /// Where the next sample falls in the next batch.
    phase: usize,
}

impl Default for HotKeyTracker {
    fn default() -> Self {
        HotKeyTracker {
            sketch: FrequentItemsSketch::new(SKETCH_MAP_SIZE).expect("a power of two"),
            labels: HashMap::new(),
            phase: 0,
        }
    }
}

impl HotKeyTracker {
    /// Counts a batch whose rows have key `hashes`; `keys` are its key columns.
    pub fn observe(&mut self, hashes: &[u64], keys: &[ArrayRef]) {
        let mut i = self.phase;
        while i < hashes.len() {
            self.sketch
                .update_with_count(hashes[i], SAMPLE_STRIDE as u64);
            i += SAMPLE_STRIDE;
        }
        self.phase = i - hashes.len();
        self.label_hottest(hashes, keys);
    }

    /// Prints the value of every key now above `1 / LABEL_SHARE` of the
    /// rows that has no label yet, from a row of this batch that holds it.
    fn label_hottest(&mut self, hashes: &[u64], keys: &[ArrayRef]) {
        let threshold = self.sketch.total_weight() / LABEL_SHARE;
        let hot = self
            .sketch
            .frequent_items_with_threshold(ErrorType::NoFalsePositives, threshold);
        for row in hot.iter().take(MAX_LABELS) {
            let hash = *row.item();
            if self.labels.contains_key(&hash) {
                continue;
            }
            if self.labels.len() >= MAX_LABELS {
                // Keys that were hot early and no longer are give way.
                self.labels.retain(|h, _| hot.iter().any(|r| r.item() == h));
                if self.labels.len() >= MAX_LABELS {
                    return;
                }
            }
            if let Some(at) = hashes.iter().position(|&h| h == hash) {
                self.labels.insert(hash, print_key(keys, at));
            }
        }
    }

    pub fn finish(self) -> HotKeys {
        HotKeys {
            sketch: self.sketch.serialize(),
            labels: self.labels.into_iter().collect(),
        }
    }
}

/// One row's key as text: `v` for one column, `(v1, v2)` for several.
fn print_key(keys: &[ArrayRef], row: usize) -> String {
    let options = FormatOptions::default().with_null("NULL");
    let values: Vec<String> = keys
        .iter()
        .map(|c| match ArrayFormatter::try_new(c.as_ref(), &options) {
            Ok(f) => f.value(row).to_string(),
            Err(_) => "?".into(),
        })
        .collect();
    let text = if values.len() == 1 {
        values.into_iter().next().expect("one")
    } else {
        format!("({})", values.join(", "))
    };
    match text.char_indices().nth(LABEL_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn finds_and_names_a_hot_key() {
        let mut t = HotKeyTracker::default();
        for batch in 0..20u64 {
            // Key 7 is 40% of the rows; the rest are distinct.
            let values: Vec<i64> = (0..1000)
                .map(|i| {
                    if i % 5 < 2 {
                        7
                    } else {
                        (batch * 1000 + i) as i64 + 100
                    }
                })
                .collect();
            let hashes: Vec<u64> = values.iter().map(|&v| v as u64 * 31 + 1).collect();
            let col: ArrayRef = Arc::new(Int64Array::from(values));
            t.observe(&hashes, &[col]);
        }
        let out = t.finish();
        let sketch = FrequentItemsSketch::<u64>::deserialize(&out.sketch).unwrap();
        let hot = sketch.frequent_items_with_threshold(ErrorType::NoFalsePositives, 2000);
        assert_eq!(hot.len(), 1);
        assert_eq!(*hot[0].item(), 7 * 31 + 1);
        let est = hot[0].estimate();
        assert!((7000..=9000).contains(&est), "estimate {est}");
        assert_eq!(out.labels, vec![(7 * 31 + 1, "7".to_string())]);
    }

    #[test]
    fn prints_composite_keys_and_truncates_long_ones() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        let b: ArrayRef = Arc::new(StringArray::from(vec!["x".repeat(100), "y".into()]));
        assert_eq!(print_key(&[a.clone()], 1), "NULL");
        let long = print_key(&[a, b], 0);
        assert!(long.starts_with("(1, xxx") && long.ends_with('…'));
        assert_eq!(long.chars().count(), LABEL_CHARS + 1);
    }
}
