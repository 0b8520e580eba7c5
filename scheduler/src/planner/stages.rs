//! The distributed plan: stages cut at exchanges.

use arrow::datatypes::Schema;
use keel_proto::ids::StageId;
use keel_proto::plan::{FileSplit, PlanNode, Sink};

/// How a stage reads one of its input stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// Task i reads a range of hash partitions from every map task
    /// (all Hash inputs of a stage share the partition numbering).
    Hash,
    /// Every task reads everything (the build side of a broadcast join).
    Broadcast,
    /// The one task reads everything.
    Gather,
    /// Tasks divide the map outputs between them (UNION ALL).
    Slice,
    /// Tasks merge the map outputs in groups of at most `fan_in` (a level
    /// of a tree reduction of partial aggregate states).
    Merge { fan_in: usize },
}

impl std::fmt::Display for InputMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputMode::Merge { fan_in } => write!(f, "Merge, tree reduction of fan-in {fan_in}"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StageInput {
    pub stage: StageId,
    pub mode: InputMode,
}

/// One scan task's row groups and their uncompressed bytes (from the
/// Parquet footers, counting only the columns read).
#[derive(Debug, Clone)]
pub struct ScanTask {
    pub splits: Vec<FileSplit>,
    pub bytes: u64,
}

/// Where a stage's tasks come from.
#[derive(Debug, Clone)]
pub enum TaskSource {
    /// One task per group of Parquet row groups.
    Scan(Vec<ScanTask>),
    /// Reduce tasks chosen when the inputs finish, from their reported sizes.
    Shuffle,
    Single,
}

#[derive(Debug, Clone)]
pub struct StagePlan {
    pub id: StageId,
    /// The operator tree; a scan stage's template has empty splits.
    pub plan: PlanNode,
    pub sink: Sink,
    /// `ShuffleRead { input: i }` reads `inputs[i]`.
    pub inputs: Vec<StageInput>,
    pub tasks: TaskSource,
    pub estimated_rows: u64,
    pub estimated_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct StageGraph {
    /// In dependency order: every stage comes after its inputs.
    pub stages: Vec<StagePlan>,
    pub output_schema: Schema,
    pub copy_to: Option<String>,
}

impl StageGraph {
    pub fn final_stage(&self) -> &StagePlan {
        self.stages.last().expect("at least one stage")
    }

    /// The plan as `keel explain` prints it; `skew_join` says whether the
    /// scheduler splits skewed join partitions, shown under each shuffle join.
    pub fn explain(&self, skew_join: bool) -> String {
        let stages: Vec<&StagePlan> = self.stages.iter().collect();
        explain(&stages, |s| skew_policy(s, skew_join))
    }
}

/// What skew handling may do to a shuffle-join stage, for `explain`.
pub fn skew_policy(stage: &StagePlan, skew_join: bool) -> Option<String> {
    let join_type = stage.shuffle_join()?;
    if !skew_join {
        return Some("skew: off (--skew-join off): every partition runs whole".into());
    }
    Some(match crate::skew::splittable(join_type) {
        ([true, true], _) => {
            "skew: a skewed partition of either side is split over several tasks, the other side's rows replicated (both sides skewed: a grid)".into()
        }
        ([false, false], Some(why)) => format!("skew: not split; {why}"),
        (_, Some(why)) => format!(
            "skew: a skewed partition of the left side is split over several tasks, the right side's rows replicated; {why}"
        ),
        _ => "skew: not split".into(),
    })
}

impl StagePlan {
    /// The type of the join this stage was planned around when both its
    /// inputs are hash-partitioned join sides.
    pub fn shuffle_join(&self) -> Option<keel_proto::plan::JoinType> {
        if self.inputs.len() != 2 || !self.inputs.iter().all(|i| i.mode == InputMode::Hash) {
            return None;
        }
        crate::adaptive::find_join(&self.plan)
    }
}

/// The stages as `keel explain` prints them; `annotate` may add lines
/// under a stage's header (skew policy, `explain --analyze` figures).
pub fn explain(stages: &[&StagePlan], annotate: impl Fn(&StagePlan) -> Option<String>) -> String {
    let mut out = String::new();
    let final_id = stages.last().map(|s| s.id);
    for s in stages {
        let tasks = match &s.tasks {
            TaskSource::Scan(splits) => {
                let all = || splits.iter().flat_map(|t| &t.splits);
                let mut files: Vec<&str> = all().map(|s| s.path.as_str()).collect();
                files.sort_unstable();
                files.dedup();
                let groups: usize = all().map(|s| s.row_groups.len()).sum();
                format!(
                    "{} scan tasks over {} files, {groups} row groups",
                    splits.len(),
                    files.len()
                )
            }
            TaskSource::Shuffle => "reduce tasks chosen from map output sizes".to_string(),
            TaskSource::Single => "1 task".to_string(),
        };
        let sink = match &s.sink {
            Sink::Hash { keys, partitions } => {
                let schema = s.plan.schema();
                let k: Vec<String> = keys.iter().map(|k| k.named(&schema).to_string()).collect();
                format!(
                    "hash exchange on [{}] into {partitions} partitions",
                    k.join(", ")
                )
            }
            Sink::Single if Some(s.id) == final_id => "results to client".to_string(),
            Sink::Single => "single partition".to_string(),
            Sink::Parquet { dir } => format!("Parquet files in {dir}"),
        };
        out.push_str(&format!(
            "Stage {} ({tasks}; est. {} rows, {}) -> {sink}\n",
            s.id.0,
            s.estimated_rows,
            human_bytes(s.estimated_bytes)
        ));
        if let Some(lines) = annotate(s) {
            for line in lines.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        for (i, input) in s.inputs.iter().enumerate() {
            out.push_str(&format!(
                "  input {i}: stage {} ({})\n",
                input.stage.0, input.mode
            ));
        }
        render(&s.plan, 1, &mut out);
    }
    out
}

/// The operator tree, one operator per line, indented by depth.
pub fn operators_text(plan: &PlanNode) -> String {
    let mut out = String::new();
    render(plan, 0, &mut out);
    out
}

fn render(node: &PlanNode, depth: usize, out: &mut String) {
    out.push_str(&format!("{}{}\n", "  ".repeat(depth), node.describe()));
    for c in node.children() {
        render(c, depth + 1, out);
    }
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
