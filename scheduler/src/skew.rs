//! Skew-aware shuffle joins: a partition that hot keys made too big for one
//! task is split before its reduce stage runs.
//!
//! Every map task of a hash exchange reports, with its partition sizes, a
//! frequent-items sketch of its key hashes (see the worker's `hot_keys`).
//! When both inputs of a join are done, a partition of one side is skewed
//! when its bytes are above `factor` × that side's median partition and
//! above `min_bytes`. Its rows on that side are divided into `k` chunks of
//! about the target task size, by ranges of map outputs and by row ranges
//! within one map output (so a key held by a single file still splits), and
//! the other side's rows of that partition are replicated to each chunk's
//! task. When both sides of an inner join are skewed in one partition, the
//! chunks form a grid. The merged sketches name the hot keys behind each
//! split for `explain --analyze` and the job profile.
//!
//! Which sides may be split follows from the join type: an inner join
//! either; left, semi and anti joins only their left (preserved) side,
//! since a left row must meet all its right matches in one task.

use std::collections::{BTreeSet, HashMap};

use datasketches::frequencies::{ErrorType, FrequentItemsSketch};
use keel_proto::plan::JoinType;

use crate::adaptive::{InputSlice, MapOutput, TaskSpec};
use crate::planner::stages::human_bytes;

#[derive(Debug, Clone)]
pub struct SkewConfig {
    /// A partition is skewed above this many times its side's median partition…
    pub factor: f64,
    /// …and above this many bytes.
    pub min_bytes: u64,
}

impl Default for SkewConfig {
    fn default() -> Self {
        SkewConfig {
            factor: 4.0,
            min_bytes: 8 << 20,
        }
    }
}

/// A key behind a skewed partition, from the merged sketches.
#[derive(Debug, Clone, PartialEq)]
pub struct HotKey {
    /// Its value as the map tasks printed it, or its hash.
    pub label: String,
    /// Estimated rows of the key on the left and right side.
    pub rows: [u64; 2],
}

/// One skewed partition and the tasks it was split into.
#[derive(Debug, Clone, PartialEq)]
pub struct SkewSplit {
    pub partition: u32,
    /// The inputs whose rows were divided (0 = left, 1 = right).
    pub split_sides: Vec<usize>,
    /// The hottest keys of the partition on its split sides.
    pub hot_keys: Vec<HotKey>,
    pub tasks: u32,
    /// Bytes of the partition on the left and right side.
    pub bytes: [u64; 2],
    /// Rows of the partition on the left and right side.
    pub rows: [u64; 2],
}

impl SkewSplit {
    pub fn describe(&self, stage: u32) -> String {
        let side = |s: usize| if s == 0 { "left" } else { "right" };
        let sides: Vec<&str> = self.split_sides.iter().map(|&s| side(s)).collect();
        let keys: Vec<String> = self
            .hot_keys
            .iter()
            .map(|k| {
                format!(
                    "{} (~{} rows left, ~{} right)",
                    k.label, k.rows[0], k.rows[1]
                )
            })
            .collect();
        let replicated = if self.split_sides.len() == 2 {
            "both sides split into a grid".to_string()
        } else {
            let other = 1 - self.split_sides[0];
            format!(
                "the {} side's {} replicated to each",
                side(other),
                human_bytes(self.bytes[other])
            )
        };
        format!(
            "stage {stage}: partition {} is skewed ({} left, {} right; hot key {}): {} side split over {} tasks, {replicated}",
            self.partition,
            human_bytes(self.bytes[0]),
            human_bytes(self.bytes[1]),
            if keys.is_empty() { "none found".to_string() } else { keys.join(", ") },
            sides.join(" and "),
            self.tasks,
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "partition": self.partition,
            "split_sides": self.split_sides.iter().map(|&s| if s == 0 { "left" } else { "right" }).collect::<Vec<_>>(),
            "hot_keys": self.hot_keys.iter().map(|k| serde_json::json!({"key": k.label, "left_rows": k.rows[0], "right_rows": k.rows[1]})).collect::<Vec<_>>(),
            "tasks": self.tasks,
            "left_bytes": self.bytes[0],
            "right_bytes": self.bytes[1],
            "left_rows": self.rows[0],
            "right_rows": self.rows[1],
        })
    }
}

/// The tasks a shuffle join's skewed partitions were split into.
#[derive(Debug, Default)]
pub struct SkewPlan {
    pub tasks: Vec<TaskSpec>,
    pub splits: Vec<SkewSplit>,
    /// The partitions those tasks cover (the rest are coalesced as usual).
    pub partitions: BTreeSet<usize>,
    /// Skewed partitions left whole, and why.
    pub not_split: Vec<String>,
}

/// Which of (left, right) a join of this type may split, and why not the right.
pub fn splittable(join_type: JoinType) -> ([bool; 2], Option<String>) {
    match join_type {
        JoinType::Inner => ([true, true], None),
        JoinType::Full => (
            [false, false],
            Some("a FULL join must see all of both sides' rows of a key in one task, so neither side is split".into()),
        ),
        JoinType::Left | JoinType::Semi | JoinType::Anti | JoinType::NotExists => (
            [true, false],
            Some(format!(
                "a {join_type:?} join must see all of a left row's matches in one task, so its right side is not split"
            )),
        ),
    }
}

/// Splits the skewed partitions of a two-input shuffle join whose inputs
/// wrote `outputs`; `target` is the bytes one task should read.
pub fn split_skewed(
    stage: u32,
    join_type: JoinType,
    outputs: &[Vec<MapOutput>],
    config: &SkewConfig,
    target: u64,
) -> SkewPlan {
    let mut plan = SkewPlan::default();
    if outputs.len() != 2 {
        return plan;
    }
    let n = outputs
        .iter()
        .flat_map(|o| o.iter().map(|m| m.partitions.len()))
        .max()
        .unwrap_or(0);
    let totals = [side_totals(&outputs[0], n), side_totals(&outputs[1], n)];
    let skewed: [Vec<bool>; 2] = [0, 1].map(|s| {
        let bytes: Vec<u64> = totals[s].iter().map(|t| t.1).collect();
        let threshold = (median(&bytes) as f64 * config.factor) as u64;
        bytes
            .iter()
            .map(|&b| b > threshold && b > config.min_bytes && b > target)
            .collect()
    });
    let (allowed, why_not_right) = splittable(join_type);
    let sides = [SideKeys::merge(&outputs[0]), SideKeys::merge(&outputs[1])];
    for p in 0..n {
        let hot = [skewed[0][p], skewed[1][p]];
        if !hot[0] && !hot[1] {
            continue;
        }
        for side in 0..2 {
            if let (true, false, Some(why)) = (hot[side], allowed[side], &why_not_right) {
                plan.not_split.push(format!(
                    "stage {stage}: partition {p} is skewed on the {} side ({}) but not split: {why}",
                    ["left", "right"][side],
                    human_bytes(totals[side][p].1)
                ));
            }
        }
        let split: Vec<usize> = (0..2).filter(|&s| hot[s] && allowed[s]).collect();
        if split.is_empty() {
            continue;
        }
        // Chunks per side: a side that is not split is one chunk, read whole by every task.
        let chunks: Vec<Vec<Vec<InputSlice>>> = (0..2)
            .map(|s| {
                let k = if split.contains(&s) {
                    totals[s][p].1.div_ceil(target.max(1)).max(2)
                } else {
                    1
                };
                row_chunks(&outputs[s], p, k)
            })
            .collect();
        for left in &chunks[0] {
            for right in &chunks[1] {
                plan.tasks.push(TaskSpec {
                    inputs: vec![left.clone(), right.clone()],
                    input_bytes: vec![0, 0],
                    skew_partition: Some(p as u32),
                    ..Default::default()
                });
            }
        }
        let rows = [totals[0][p].0, totals[1][p].0];
        let hot_keys = hot_keys(&sides, &split, p, n, rows);
        plan.splits.push(SkewSplit {
            partition: p as u32,
            split_sides: split,
            hot_keys,
            tasks: (chunks[0].len() * chunks[1].len()) as u32,
            bytes: [totals[0][p].1, totals[1][p].1],
            rows,
        });
        plan.partitions.insert(p);
    }
    plan
}

/// (rows, bytes) per partition over one side's map outputs.
fn side_totals(outputs: &[MapOutput], n: usize) -> Vec<(u64, u64)> {
    let mut totals = vec![(0, 0); n];
    for o in outputs {
        for (p, (r, b)) in o.partitions.iter().enumerate() {
            totals[p].0 += r;
            totals[p].1 += b;
        }
    }
    totals
}

fn median(values: &[u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

/// Partition `p` of one side divided into `k` chunks of about equal rows,
/// walking the map outputs in order and cutting inside one where a chunk
/// ends. A chunk is what one task reads of that side.
fn row_chunks(outputs: &[MapOutput], p: usize, k: u64) -> Vec<Vec<InputSlice>> {
    let rows: Vec<(u32, u64)> = outputs
        .iter()
        .filter_map(|o| {
            let r = o.partitions.get(p)?.0;
            (r > 0).then_some((o.map_task, r))
        })
        .collect();
    let total: u64 = rows.iter().map(|r| r.1).sum();
    let per_chunk = total.div_ceil(k.max(1)).max(1);
    let mut chunks = vec![];
    let mut current: Vec<InputSlice> = vec![];
    let mut room = per_chunk;
    for (map_task, n) in rows {
        let mut at = 0;
        while at < n {
            let take = room.min(n - at);
            current.push(InputSlice {
                map_task,
                partitions: vec![p as u32],
                rows: (take < n).then_some((at, at + take)),
            });
            at += take;
            room -= take;
            if room == 0 {
                chunks.push(std::mem::take(&mut current));
                room = per_chunk;
            }
        }
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// One side's key sketches merged, with the printed values of its hottest keys.
struct SideKeys<'a> {
    sketch: Option<FrequentItemsSketch<u64>>,
    labels: HashMap<u64, &'a str>,
}

impl<'a> SideKeys<'a> {
    fn merge(outputs: &'a [MapOutput]) -> Self {
        let mut sketch: Option<FrequentItemsSketch<u64>> = None;
        let mut labels = HashMap::new();
        for o in outputs {
            let Ok(s) = FrequentItemsSketch::<u64>::deserialize(&o.key_sketch) else {
                continue;
            };
            match &mut sketch {
                Some(m) => m.merge(&s),
                None => sketch = Some(s),
            }
            for (h, l) in &o.key_labels {
                labels.entry(*h).or_insert(l.as_str());
            }
        }
        SideKeys { sketch, labels }
    }

    /// The keys of partition `p` (of `n`) holding at least a tenth of its `rows`, hottest first.
    fn hottest(&self, p: usize, n: usize, rows: u64) -> Vec<u64> {
        let Some(sketch) = &self.sketch else {
            return vec![];
        };
        sketch
            .frequent_items_with_threshold(ErrorType::NoFalsePositives, rows / 10)
            .into_iter()
            .map(|r| *r.item())
            .filter(|h| n > 0 && (h % n as u64) as usize == p)
            .take(3)
            .collect()
    }

    fn rows(&self, hash: u64) -> u64 {
        self.sketch.as_ref().map_or(0, |s| s.estimate(&hash))
    }
}

/// The hot keys of partition `p` on the split sides, with both sides' rows of each.
fn hot_keys(
    sides: &[SideKeys; 2],
    split: &[usize],
    p: usize,
    n: usize,
    rows: [u64; 2],
) -> Vec<HotKey> {
    let mut hashes: Vec<u64> = vec![];
    for &s in split {
        for h in sides[s].hottest(p, n, rows[s]) {
            if !hashes.contains(&h) {
                hashes.push(h);
            }
        }
    }
    hashes
        .into_iter()
        .map(|h| HotKey {
            label: sides
                .iter()
                .find_map(|side| side.labels.get(&h))
                .map(|l| l.to_string())
                .unwrap_or_else(|| format!("#{h:016x}")),
            rows: [sides[0].rows(h), sides[1].rows(h)],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::ids::StageId;

    /// A map output with `rows` rows in each of `n` partitions (`hot` more
    /// in partition `p`), 100 bytes a row, and a sketch naming key 3 (whose
    /// hash is 3: partition 3 of `n`) with `hot` rows when there are any.
    fn output(map_task: u32, n: usize, rows: u64, hot: u64, p: usize) -> MapOutput {
        let mut partitions = vec![(rows, rows * 100); n];
        partitions[p].0 += hot;
        partitions[p].1 += hot * 100;
        let mut sketch = FrequentItemsSketch::<u64>::new(64).unwrap();
        if hot > 0 {
            sketch.update_with_count(p as u64, hot);
        }
        sketch.update_with_count(1000 + map_task as u64, rows);
        MapOutput {
            stage: StageId(1),
            map_task,
            partitions,
            key_sketch: sketch.serialize(),
            key_labels: vec![(p as u64, format!("key{p}"))],
        }
    }

    fn config() -> SkewConfig {
        SkewConfig {
            factor: 4.0,
            min_bytes: 1000,
        }
    }

    /// Rows each task reads of one side, from the outputs' row counts.
    fn rows_read(task: &TaskSpec, side: usize, outputs: &[MapOutput]) -> u64 {
        task.inputs[side]
            .iter()
            .map(|sl| match sl.rows {
                Some((a, b)) => b - a,
                None => sl
                    .partitions
                    .iter()
                    .map(|&p| outputs[sl.map_task as usize].partitions[p as usize].0)
                    .sum(),
            })
            .sum()
    }

    #[test]
    fn a_hot_key_spread_over_many_map_outputs_splits_by_output_ranges() {
        // Left: 8 map outputs, each 10 rows per partition plus 1000 rows of key 3.
        let left: Vec<MapOutput> = (0..8).map(|m| output(m, 16, 10, 1000, 3)).collect();
        let right: Vec<MapOutput> = (0..2).map(|m| output(m, 16, 10, 0, 3)).collect();
        let outs = vec![left.clone(), right.clone()];
        let plan = split_skewed(5, JoinType::Inner, &outs, &config(), 200_000);
        assert_eq!(plan.splits.len(), 1);
        let split = &plan.splits[0];
        assert_eq!((split.partition, split.split_sides.clone()), (3, vec![0]));
        assert_eq!(split.hot_keys[0].label, "key3");
        assert!(split.hot_keys[0].rows[0] >= 8000);
        assert_eq!(split.hot_keys[0].rows[1], 0);
        // 808 000 bytes over a 200 000-byte target: 5 tasks of about 1616 rows.
        assert_eq!(split.tasks, 5);
        assert_eq!(plan.tasks.len(), 5);
        let total: u64 = plan.tasks.iter().map(|t| rows_read(t, 0, &left)).sum();
        assert_eq!(total, 8 * 1010);
        for t in &plan.tasks {
            assert!(rows_read(t, 0, &left) <= 1616);
            // The right side's partition 3 is read whole by each task.
            assert_eq!(rows_read(t, 1, &right), 20);
            assert_eq!(t.skew_partition, Some(3));
        }
        assert_eq!(plan.partitions, BTreeSet::from([3]));
        assert!(split.describe(5).contains("hot key key3"));
    }

    #[test]
    fn a_hot_key_inside_one_map_output_splits_by_row_ranges() {
        let mut left: Vec<MapOutput> = (0..4).map(|m| output(m, 16, 10, 0, 3)).collect();
        left[2] = output(2, 16, 10, 9000, 3);
        let right: Vec<MapOutput> = (0..2).map(|m| output(m, 16, 10, 0, 3)).collect();
        let outs = vec![left.clone(), right];
        let plan = split_skewed(5, JoinType::Inner, &outs, &config(), 300_000);
        assert_eq!(plan.splits[0].tasks, 4);
        let ranges: Vec<Option<(u64, u64)>> = plan
            .tasks
            .iter()
            .flat_map(|t| {
                t.inputs[0]
                    .iter()
                    .filter(|s| s.map_task == 2)
                    .map(|s| s.rows)
            })
            .collect();
        // Map output 2 holds 9010 rows of partition 3; they are cut into ranges with no gap.
        let mut at = 0;
        for r in ranges {
            let (a, b) = r.expect("a row range");
            assert_eq!(a, at);
            at = b;
        }
        assert_eq!(at, 9010);
        let max = plan
            .tasks
            .iter()
            .map(|t| rows_read(t, 0, &left))
            .max()
            .unwrap();
        assert!(max <= 9040usize.div_ceil(4) as u64, "largest chunk {max}");
    }

    #[test]
    fn both_sides_hot_split_into_a_grid() {
        let left: Vec<MapOutput> = (0..4).map(|m| output(m, 16, 10, 2000, 3)).collect();
        let right: Vec<MapOutput> = (0..4).map(|m| output(m, 16, 10, 1000, 3)).collect();
        let outs = vec![left.clone(), right.clone()];
        let plan = split_skewed(5, JoinType::Inner, &outs, &config(), 300_000);
        let split = &plan.splits[0];
        assert_eq!(split.split_sides, vec![0, 1]);
        // Left 804 000 bytes → 3 chunks; right 404 000 → 2: a 3 × 2 grid.
        assert_eq!(split.tasks, 6);
        // Every (left row, right row) pair meets in exactly one task.
        let pairs: u64 = plan
            .tasks
            .iter()
            .map(|t| rows_read(t, 0, &left) * rows_read(t, 1, &right))
            .sum();
        assert_eq!(pairs, 4 * 2010 * 4 * 1010);
        assert!(split.describe(5).contains("grid"));
        // The key is named once, with its rows on both sides.
        assert_eq!(split.hot_keys.len(), 1);
        assert!(split.hot_keys[0].rows[0] >= 8000 && split.hot_keys[0].rows[1] >= 4000);
    }

    #[test]
    fn a_left_join_splits_only_its_left_side() {
        // Hot on the right only: not split, and the reason is given.
        let left: Vec<MapOutput> = (0..4).map(|m| output(m, 16, 10, 0, 3)).collect();
        let right: Vec<MapOutput> = (0..4).map(|m| output(m, 16, 10, 3000, 3)).collect();
        let plan = split_skewed(
            5,
            JoinType::Left,
            &[left.clone(), right.clone()],
            &config(),
            300_000,
        );
        assert!(plan.splits.is_empty() && plan.tasks.is_empty());
        assert!(plan.not_split[0].contains("Left join must see all of a left row's matches"));
        // Hot on both: the left side is split, the right replicated.
        let hot_left: Vec<MapOutput> = (0..4).map(|m| output(m, 16, 10, 3000, 3)).collect();
        let plan = split_skewed(
            5,
            JoinType::Left,
            &[hot_left.clone(), right.clone()],
            &config(),
            300_000,
        );
        assert_eq!(plan.splits[0].split_sides, vec![0]);
        assert_eq!(plan.not_split.len(), 1);
        for t in &plan.tasks {
            assert_eq!(rows_read(t, 1, &right), 4 * 3010);
        }
        let total: u64 = plan.tasks.iter().map(|t| rows_read(t, 0, &hot_left)).sum();
        assert_eq!(total, 4 * 3010);
    }

    #[test]
    fn no_skew_no_split() {
        let left: Vec<MapOutput> = (0..4).map(|m| output(m, 16, 1000, 0, 3)).collect();
        let right: Vec<MapOutput> = (0..4).map(|m| output(m, 16, 1000, 0, 3)).collect();
        let plan = split_skewed(5, JoinType::Inner, &[left, right], &config(), 100_000);
        assert!(plan.splits.is_empty() && plan.tasks.is_empty() && plan.not_split.is_empty());
        // A skewed partition below --skew-min-bytes is left alone too.
        let left: Vec<MapOutput> = (0..4).map(|m| output(m, 16, 10, 100, 3)).collect();
        let right: Vec<MapOutput> = (0..4).map(|m| output(m, 16, 10, 0, 3)).collect();
        let big = SkewConfig {
            factor: 4.0,
            min_bytes: 1 << 30,
        };
        let plan = split_skewed(5, JoinType::Inner, &[left, right], &big, 1000);
        assert!(plan.splits.is_empty());
    }
}
