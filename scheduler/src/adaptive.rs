//! Adaptive stage planning: a stage's tasks are formed when its inputs have
//! finished, from what their map tasks reported.
//!
//! - Hash inputs: the fixed map-side partitions are coalesced into ranges of
//!   about `target` bytes, so the reduce task count follows the data size.
//! - A shuffle join whose side turned out small is run as a broadcast join:
//!   every task reads the small side whole and a slice of the big side's map
//!   outputs, which also spreads a hot key's rows over many tasks.
//! - A shuffle join's skewed partitions are split over several tasks
//!   (see [`crate::skew`]); the rest are coalesced as above.
//! - Slice inputs (UNION ALL): map outputs are divided by bytes.

use keel_proto::ids::StageId;
use keel_proto::plan::{FileSplit, JoinType, PlanNode};

use crate::planner::stages::{InputMode, StagePlan, TaskSource};
use crate::skew::{split_skewed, SkewConfig, SkewSplit};

/// One finished map task's output.
#[derive(Debug, Clone)]
pub struct MapOutput {
    pub stage: StageId,
    pub map_task: u32,
    /// (rows, bytes) per output partition.
    pub partitions: Vec<(u64, u64)>,
    /// For a hash exchange: the serialized frequent-items sketch of its key hashes.
    pub key_sketch: Vec<u8>,
    /// (hash, printed value) of the hottest keys.
    pub key_labels: Vec<(u64, String)>,
}

/// Partitions a task reads from one map task. Where that output lives is
/// resolved when the task is dispatched, so a map output recomputed on
/// another worker is found there.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSlice {
    pub map_task: u32,
    pub partitions: Vec<u32>,
    /// Only rows `start..end` of the one partition (a split of a skewed partition).
    pub rows: Option<(u64, u64)>,
}

/// What one task reads from each of its stage's inputs.
pub type TaskInputs = Vec<Vec<InputSlice>>;

impl MapOutput {
    fn bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.1).sum()
    }

    fn fetch(&self, partitions: impl Iterator<Item = usize>) -> Option<InputSlice> {
        let parts: Vec<u32> = partitions
            .filter(|&p| self.partitions.get(p).is_some_and(|s| s.0 > 0))
            .map(|p| p as u32)
            .collect();
        if parts.is_empty() {
            return None;
        }
        Some(InputSlice {
            map_task: self.map_task,
            partitions: parts,
            rows: None,
        })
    }

    fn fetch_all(&self) -> Option<InputSlice> {
        self.fetch(0..self.partitions.len())
    }
}

#[derive(Debug, Clone, Default)]
pub struct TaskSpec {
    pub splits: Option<Vec<FileSplit>>,
    pub inputs: TaskInputs,
    /// Uncompressed Parquet bytes the task scans.
    pub scan_bytes: u64,
    /// Bytes the task reads from each input, as its map tasks reported them.
    pub input_bytes: Vec<u64>,
    /// The skewed partition this task reads a split of.
    pub skew_partition: Option<u32>,
}

impl TaskSpec {
    fn empty(n_inputs: usize) -> TaskSpec {
        TaskSpec {
            inputs: vec![vec![]; n_inputs],
            input_bytes: vec![0; n_inputs],
            ..Default::default()
        }
    }

    /// Everything the task reads.
    pub fn bytes(&self) -> u64 {
        self.scan_bytes + self.input_bytes.iter().sum::<u64>()
    }
}

pub struct AdaptiveConfig {
    /// Cores across the cluster: reduce stages aim for two tasks per core.
    pub cores: u64,
    /// Bounds on the bytes one reduce task reads.
    pub min_task_bytes: u64,
    pub max_task_bytes: u64,
    pub broadcast_bytes: u64,
    /// Skewed join partitions are split (`--skew-join on`) by these thresholds.
    pub skew: Option<SkewConfig>,
}

/// A stage's tasks, and what adaptive planning decided on the way.
#[derive(Debug, Default)]
pub struct PlannedTasks {
    pub tasks: Vec<TaskSpec>,
    /// One line per decision (broadcast conversion, skew splits), for the job report.
    pub notes: Vec<String>,
    pub splits: Vec<SkewSplit>,
}

impl AdaptiveConfig {
    fn target(&self, total: u64) -> u64 {
        (total / (2 * self.cores.max(1))).clamp(
            self.min_task_bytes,
            self.max_task_bytes.max(self.min_task_bytes),
        )
    }
}

/// Forms the tasks of `stage` given its inputs' outputs (`outputs[i]` for
/// `stage.inputs[i]`). May rewrite the stage's plan (broadcast conversion).
pub fn plan_tasks(
    stage: &mut StagePlan,
    outputs: &[Vec<MapOutput>],
    config: &AdaptiveConfig,
) -> PlannedTasks {
    let n_inputs = stage.inputs.len();
    let mut planned = PlannedTasks::default();
    if let Some((small, big)) = broadcast_candidate(stage, outputs, config.broadcast_bytes) {
        stage.inputs[small].mode = InputMode::Broadcast;
        stage.inputs[big].mode = InputMode::Slice;
        set_build_side(&mut stage.plan, small == 0);
        let small_bytes: u64 = outputs[small].iter().map(|o| o.bytes()).sum();
        planned.notes.push(format!(
            "stage {}: join side from stage {} is {} bytes, below the broadcast threshold; broadcasting it",
            stage.id.0, stage.inputs[small].stage.0, small_bytes
        ));
    }

    let mut tasks: Vec<TaskSpec> = match &stage.tasks {
        TaskSource::Scan(splits) => splits
            .iter()
            .map(|s| TaskSpec {
                splits: Some(s.splits.clone()),
                scan_bytes: s.bytes,
                ..TaskSpec::empty(n_inputs)
            })
            .collect(),
        TaskSource::Single => vec![TaskSpec::empty(n_inputs)],
        TaskSource::Shuffle => shuffle_tasks(stage, outputs, config, &mut planned),
    };
    if tasks.is_empty() {
        tasks.push(TaskSpec::empty(n_inputs));
    }
    for (i, input) in stage.inputs.iter().enumerate() {
        if matches!(input.mode, InputMode::Broadcast | InputMode::Gather) {
            let all: Vec<InputSlice> = outputs[i].iter().filter_map(|o| o.fetch_all()).collect();
            for t in &mut tasks {
                t.inputs[i] = all.clone();
            }
        }
    }
    for t in &mut tasks {
        for (i, slices) in t.inputs.iter().enumerate() {
            t.input_bytes[i] = slices.iter().map(|sl| slice_bytes(&outputs[i], sl)).sum();
        }
    }
    planned.tasks = tasks;
    planned
}

fn shuffle_tasks(
    stage: &StagePlan,
    outputs: &[Vec<MapOutput>],
    config: &AdaptiveConfig,
    planned: &mut PlannedTasks,
) -> Vec<TaskSpec> {
    let n_inputs = stage.inputs.len();
    let hash: Vec<usize> = (0..n_inputs)
        .filter(|&i| stage.inputs[i].mode == InputMode::Hash)
        .collect();
    let slice: Vec<usize> = (0..n_inputs)
        .filter(|&i| stage.inputs[i].mode == InputMode::Slice)
        .collect();
    let merge: Vec<(usize, usize)> = (0..n_inputs)
        .filter_map(|i| match stage.inputs[i].mode {
            InputMode::Merge { fan_in } => Some((i, fan_in.max(2))),
            _ => None,
        })
        .collect();
    let mut tasks = vec![];
    if !hash.is_empty() {
        let p = hash
            .iter()
            .flat_map(|&i| outputs[i].iter().map(|o| o.partitions.len()))
            .max()
            .unwrap_or(0);
        let mut sizes = vec![0u64; p];
        for &i in &hash {
            for o in &outputs[i] {
                for (q, (_, b)) in o.partitions.iter().enumerate() {
                    sizes[q] += b;
                }
            }
        }
        let target = config.target(sizes.iter().sum());
        let skew = match (&config.skew, stage.shuffle_join()) {
            (Some(skew), Some(join_type)) => {
                split_skewed(stage.id.0, join_type, outputs, skew, target)
            }
            _ => Default::default(),
        };
        for &p in &skew.partitions {
            sizes[p] = 0;
        }
        for range in coalesce(&sizes, target) {
            let mut t = TaskSpec::empty(n_inputs);
            for &i in &hash {
                t.inputs[i] = outputs[i]
                    .iter()
                    .filter_map(|o| o.fetch(range.clone().filter(|p| !skew.partitions.contains(p))))
                    .collect();
            }
            if !skew.partitions.is_empty() && t.inputs.iter().all(|i| i.is_empty()) {
                continue;
            }
            tasks.push(t);
        }
        planned.notes.extend(skew.not_split);
        planned
            .notes
            .extend(skew.splits.iter().map(|s| s.describe(stage.id.0)));
        planned.splits = skew.splits;
        tasks.extend(skew.tasks);
    } else if let [(i, fan_in)] = merge.as_slice() {
        // A tree level: consecutive groups of at most `fan_in` map outputs.
        let all: Vec<InputSlice> = outputs[*i].iter().filter_map(|o| o.fetch_all()).collect();
        for group in all.chunks(*fan_in) {
            let mut t = TaskSpec::empty(n_inputs);
            t.inputs[*i] = group.to_vec();
            tasks.push(t);
        }
    } else if !slice.is_empty() {
        let total = slice
            .iter()
            .flat_map(|&i| outputs[i].iter().map(|o| o.bytes()))
            .sum();
        let target = config.target(total);
        let mut current = TaskSpec::empty(n_inputs);
        let mut bytes = 0;
        for &i in &slice {
            for o in &outputs[i] {
                if let Some(f) = o.fetch_all() {
                    current.inputs[i].push(f);
                    bytes += o.bytes();
                    if bytes >= target {
                        tasks.push(std::mem::replace(&mut current, TaskSpec::empty(n_inputs)));
                        bytes = 0;
                    }
                }
            }
        }
        if current.inputs.iter().any(|i| !i.is_empty()) {
            tasks.push(current);
        }
    }
    tasks
}

/// Bytes of the partitions a slice reads, as its map task reported them.
fn slice_bytes(outputs: &[MapOutput], slice: &InputSlice) -> u64 {
    let Some(o) = outputs.iter().find(|o| o.map_task == slice.map_task) else {
        return 0;
    };
    let parts = slice
        .partitions
        .iter()
        .filter_map(|&p| o.partitions.get(p as usize));
    match slice.rows {
        // A row range's share of its partition's bytes.
        Some((a, b)) => parts
            .map(|&(rows, bytes)| bytes * (b - a) / rows.max(1))
            .sum(),
        None => parts.map(|p| p.1).sum(),
    }
}

/// Contiguous partition ranges of about `target` bytes each (empty partitions ride along).
pub fn coalesce(sizes: &[u64], target: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = vec![];
    let mut start = 0;
    let mut acc = 0;
    for (p, s) in sizes.iter().enumerate() {
        if acc > 0 && acc + s > target {
            out.push(start..p);
            start = p;
            acc = 0;
        }
        acc += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// (small input, big input) when the stage is a two-input shuffle join and
/// one side's whole output is below `limit` bytes and may be the build side.
fn broadcast_candidate(
    stage: &StagePlan,
    outputs: &[Vec<MapOutput>],
    limit: u64,
) -> Option<(usize, usize)> {
    let join_type = stage.shuffle_join()?;
    if join_type == JoinType::Full {
        // Each task emits its right rows that found no match: they must not be copied.
        return None;
    }
    let bytes: Vec<u64> = outputs
        .iter()
        .map(|o| o.iter().map(|m| m.bytes()).sum())
        .collect();
    let right_ok = bytes[1] <= limit;
    let left_ok = join_type == JoinType::Inner && bytes[0] <= limit;
    match (left_ok, right_ok) {
        (true, true) if bytes[0] < bytes[1] => Some((0, 1)),
        (_, true) => Some((1, 0)),
        (true, false) => Some((0, 1)),
        _ => None,
    }
}

/// The join a shuffle-join stage was planned around: one whose inputs are
/// the stage's two reads, as the join type whose rules for splitting and
/// broadcasting apply. A range join is an inner join: a point meets its
/// intervals whichever task holds them, so either side may be split or
/// broadcast. An ASOF join follows a LEFT join's rules: a left row must see
/// all of its key's right rows, so only the left side is split and only
/// the right side broadcast.
pub fn find_join(node: &PlanNode) -> Option<JoinType> {
    // The read of input `i`, or its sort (a range join sorts both inputs).
    fn reads(node: &PlanNode, i: usize) -> bool {
        match node {
            PlanNode::ShuffleRead { input, .. } => *input == i,
            PlanNode::Sort { input, .. } => {
                matches!(**input, PlanNode::ShuffleRead { input, .. } if input == i)
            }
            _ => false,
        }
    }
    match node {
        PlanNode::HashJoin {
            left,
            right,
            join_type,
            ..
        } if reads(left, 0) && reads(right, 1) => Some(*join_type),
        PlanNode::RangeJoin { left, right, .. } if reads(left, 0) && reads(right, 1) => {
            Some(JoinType::Inner)
        }
        PlanNode::AsofJoin { left, right, .. } if reads(left, 0) && reads(right, 1) => {
            Some(JoinType::Left)
        }
        other => other.children().into_iter().find_map(find_join),
    }
}

fn set_build_side(node: &mut PlanNode, left: bool) {
    if let PlanNode::HashJoin {
        left: l,
        right: r,
        build_left,
        ..
    } = node
    {
        if matches!(**l, PlanNode::ShuffleRead { input: 0, .. })
            && matches!(**r, PlanNode::ShuffleRead { input: 1, .. })
        {
            *build_left = left;
            return;
        }
    }
    node.children_mut()
        .into_iter()
        .for_each(|c| set_build_side(c, left));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::planner::stages::StageInput;
    use arrow::datatypes::{DataType, Field, Schema};
    use keel_proto::expr::Expr;
    use keel_proto::plan::Sink;

    /// Stage 3: an inner join of the hash-partitioned outputs of stages 1 and 2.
    pub(crate) fn join_stage() -> StagePlan {
        let schema = Schema::new(vec![Field::new("k", DataType::Int64, true)]);
        let read = |input| {
            Box::new(PlanNode::ShuffleRead {
                input,
                schema: schema.clone(),
            })
        };
        StagePlan {
            id: StageId(3),
            plan: PlanNode::HashJoin {
                left: read(0),
                right: read(1),
                join_type: JoinType::Inner,
                left_keys: vec![Expr::Column(0)],
                right_keys: vec![Expr::Column(0)],
                filter: None,
                build_left: true,
                schema: Schema::new(vec![
                    Field::new("k", DataType::Int64, true),
                    Field::new("k", DataType::Int64, true),
                ]),
            },
            sink: Sink::Single,
            inputs: vec![
                StageInput {
                    stage: StageId(1),
                    mode: InputMode::Hash,
                },
                StageInput {
                    stage: StageId(2),
                    mode: InputMode::Hash,
                },
            ],
            tasks: TaskSource::Shuffle,
            estimated_rows: 0,
            estimated_bytes: 0,
        }
    }

    fn outputs(stage: u32, maps: u32, bytes_per_partition: u64) -> Vec<MapOutput> {
        (0..maps)
            .map(|m| MapOutput {
                stage: StageId(stage),
                map_task: m,
                partitions: vec![(10, bytes_per_partition); 4],
                key_sketch: vec![],
                key_labels: vec![],
            })
            .collect()
    }

    fn config() -> AdaptiveConfig {
        AdaptiveConfig {
            cores: 2,
            min_task_bytes: 1000,
            max_task_bytes: 1 << 30,
            broadcast_bytes: 10_000,
            skew: Some(SkewConfig::default()),
        }
    }

    #[test]
    fn a_join_side_that_turned_out_small_is_broadcast() {
        let mut stage = join_stage();
        // Left: 8 map tasks of 4 MB each; right: 2 map tasks of 4 KB.
        let outs = vec![outputs(1, 8, 1 << 20), outputs(2, 2, 1000)];
        let planned = plan_tasks(&mut stage, &outs, &config());
        let tasks = planned.tasks;
        assert!(planned.notes[0].contains("broadcasting"));
        assert_eq!(stage.inputs[1].mode, InputMode::Broadcast);
        assert_eq!(stage.inputs[0].mode, InputMode::Slice);
        assert!(matches!(
            stage.plan,
            PlanNode::HashJoin {
                build_left: false,
                ..
            }
        ));
        // The big side's map outputs are divided between tasks; every task reads all of the small side.
        let big: usize = tasks.iter().map(|t| t.inputs[0].len()).sum();
        assert_eq!(big, 8);
        assert!(tasks.len() > 1);
        assert!(
            tasks
                .iter()
                .all(|t| t.inputs[1].len() == 2
                    && t.inputs[1].iter().all(|s| s.partitions.len() == 4))
        );
    }

    #[test]
    fn large_join_sides_stay_hash_partitioned() {
        let mut stage = join_stage();
        let outs = vec![outputs(1, 4, 1 << 20), outputs(2, 4, 1 << 20)];
        let planned = plan_tasks(&mut stage, &outs, &config());
        let tasks = planned.tasks;
        assert!(planned.notes.is_empty());
        assert!(stage.inputs.iter().all(|i| i.mode == InputMode::Hash));
        // Each task reads the same partition range from both sides.
        for t in &tasks {
            assert_eq!(t.inputs[0][0].partitions, t.inputs[1][0].partitions);
        }
        let covered: usize = tasks.iter().map(|t| t.inputs[0][0].partitions.len()).sum();
        assert_eq!(covered, 4);
    }

    #[test]
    fn a_skewed_partition_is_split_and_the_rest_coalesced() {
        let mut stage = join_stage();
        let mut left = outputs(1, 4, 1 << 20);
        // Partition 2 of every left map output is 40 times the others.
        for o in &mut left {
            o.partitions[2] = (400, 40 << 20);
        }
        let outs = vec![left, outputs(2, 4, 1 << 20)];
        let mut config = config();
        config.max_task_bytes = 8 << 20;
        let planned = plan_tasks(&mut stage, &outs, &config);
        assert_eq!(planned.splits.len(), 1);
        assert_eq!(planned.splits[0].partition, 2);
        assert!(planned.notes[0].contains("partition 2 is skewed"));
        let (split, rest): (Vec<&TaskSpec>, Vec<&TaskSpec>) = planned
            .tasks
            .iter()
            .partition(|t| t.skew_partition == Some(2));
        // 160 MiB on the left over an 8 MiB target: 20 tasks, each reading a fifth of one map output.
        assert_eq!(split.len(), 20);
        for t in &split {
            assert_eq!(t.input_bytes[0], 8 << 20);
            assert_eq!(t.input_bytes[1], 4 << 20);
        }
        // No coalesced task reads partition 2, and partitions 0, 1 and 3 are all read.
        let mut seen: Vec<u32> = rest
            .iter()
            .flat_map(|t| t.inputs[0].iter().flat_map(|s| s.partitions.clone()))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![0, 1, 3]);
        // With skew handling off, partition 2 is one task's work.
        config.skew = None;
        let mut stage = join_stage();
        let planned = plan_tasks(&mut stage, &outs, &config);
        assert!(
            planned.splits.is_empty() && planned.tasks.iter().all(|t| t.skew_partition.is_none())
        );
    }

    #[test]
    fn coalesces_partitions_to_target() {
        assert_eq!(coalesce(&[10, 10, 10, 10], 25), vec![0..2, 2..4]);
        assert_eq!(coalesce(&[100, 0, 0, 5], 50), vec![0..1, 1..4]);
        assert_eq!(coalesce(&[0, 0], 50), vec![0..2]);
        assert_eq!(coalesce(&[], 50), Vec::<std::ops::Range<usize>>::new());
    }
}
