//! Memory-aware admission: what a task will hold at its peak, and whether a
//! worker has room for it.
//!
//! A task's estimate starts from a model of its stage's operators over the
//! bytes it reads (Parquet footers for scans, reported partition sizes for
//! shuffle reads). Once tasks of the stage finish, what they really held per
//! input byte replaces the model, so later waves are estimated from
//! measurement. A task that failed for memory is estimated twice as high for
//! each such failure.
//!
//! A worker admits a task while its running tasks' estimates (or the memory
//! it reported in use, if that is more) plus the task's estimate fit its
//! budget, and a core is free. An idle worker admits any task: one too big
//! for every budget runs alone and spills rather than waiting forever.

use keel_proto::plan::{AggMode, PlanNode};

use crate::adaptive::TaskSpec;

/// What any task holds whatever it reads: batches in flight, Parquet pages,
/// shuffle-writer buffers.
pub const TASK_BASE_BYTES: u64 = 16 << 20;

/// A worker buffers at most this much of one task's shuffle input.
const IN_FLIGHT_BYTES: u64 = 32 << 20;

/// A partial aggregation emits what it holds when refused, so it is
/// estimated at no more than this.
const PARTIAL_AGGREGATE_BYTES: u64 = 64 << 20;

/// The model's estimate of a task's peak memory.
pub fn model(plan: &PlanNode, spec: &TaskSpec) -> u64 {
    TASK_BASE_BYTES + held(plan, spec).1
}

/// (bytes flowing out of `node`, bytes held by it and below at the peak).
fn held(node: &PlanNode, spec: &TaskSpec) -> (u64, u64) {
    let input = |n: &PlanNode| held(n, spec);
    match node {
        PlanNode::Scan { .. } => (spec.scan_bytes, 0),
        PlanNode::ShuffleRead { input: i, .. } => {
            let bytes = spec.input_bytes.get(*i).copied().unwrap_or(0);
            (bytes, bytes.min(IN_FLIGHT_BYTES))
        }
        PlanNode::OneRow => (0, 0),
        PlanNode::Aggregate { input: i, mode, .. } => {
            let (out, h) = input(i);
            let table = match mode {
                AggMode::Partial => out.min(PARTIAL_AGGREGATE_BYTES),
                // Group keys and accumulator states, with the table's slack.
                _ => out + out / 2,
            };
            (out, h + table)
        }
        PlanNode::HashJoin {
            left,
            right,
            build_left,
            ..
        } => {
            let ((lo, lh), (ro, rh)) = (input(left), input(right));
            let build = if *build_left { lo } else { ro };
            // The build batches and their hash index.
            (lo + ro, lh + rh + 2 * build)
        }
        PlanNode::RangeJoin {
            left, right, band, ..
        } => {
            let ((lo, lh), (ro, rh)) = (input(left), input(right));
            // The intervals are held, with their encoded keys and bounds.
            let held = if band.points_left { ro } else { lo };
            (lo + ro, lh + rh + 2 * held)
        }
        PlanNode::Expand { input: i, sets, .. } => {
            let (out, h) = input(i);
            (out * sets.len() as u64, h)
        }
        PlanNode::AsofJoin { left, right, .. } => {
            let ((lo, lh), (ro, rh)) = (input(left), input(right));
            // The right side is held, with its encoded keys, times and order.
            (lo + ro, lh + rh + 2 * ro)
        }
        PlanNode::Sort {
            input: i,
            fetch: None,
            ..
        } => {
            let (out, h) = input(i);
            (out, h + out + out / 4)
        }
        PlanNode::Window { input: i, .. } => {
            // One partition at a time: the whole input at worst, half of it as a guess.
            let (out, h) = input(i);
            (out, h + out / 2)
        }
        PlanNode::Union { inputs } => inputs
            .iter()
            .map(input)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        PlanNode::Filter { input: i, .. }
        | PlanNode::Project { input: i, .. }
        | PlanNode::Sort { input: i, .. }
        | PlanNode::Limit { input: i, .. } => input(i),
    }
}

/// What finished tasks of one stage held, per byte they read.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    per_byte: Option<f64>,
}

impl Measured {
    /// Records a finished task. `wanted` is its peak, or its estimate when it
    /// spilled (its peak was what it was given, not what it would have used).
    pub fn record(&mut self, input_bytes: u64, wanted: u64) {
        let held = wanted.saturating_sub(TASK_BASE_BYTES) as f64;
        let ratio = held / input_bytes.max(1 << 20) as f64;
        self.per_byte = Some(self.per_byte.map_or(ratio, |r| r.max(ratio)));
    }

    pub fn estimate(&self, input_bytes: u64) -> Option<u64> {
        self.per_byte
            .map(|r| TASK_BASE_BYTES + (r * input_bytes as f64) as u64)
    }
}

/// The estimate after `memory_failures` failures for memory: doubled each time.
pub fn raised(estimate: u64, memory_failures: u32) -> u64 {
    estimate.saturating_mul(1 << memory_failures.min(16))
}

/// One worker as admission sees it.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    pub cores: u32,
    pub running: u32,
    /// The worker's memory pool (its limit less the reserve); 0 = unknown.
    pub budget: u64,
    /// Its running tasks' estimates, or what it reported in use if more.
    pub load: u64,
}

impl Room {
    pub fn has_core(&self) -> bool {
        self.running < self.cores
    }

    /// Whether the worker may start a task estimated at `estimate` now.
    pub fn admits(&self, estimate: u64, memory_aware: bool) -> bool {
        if !self.has_core() {
            return false;
        }
        !memory_aware
            || self.running == 0
            || self.budget == 0
            || self.load.saturating_add(estimate) <= self.budget
    }

    /// Memory not spoken for: how well a task would fit.
    pub fn free(&self) -> u64 {
        self.budget.saturating_sub(self.load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use keel_proto::expr::Expr;
    use keel_proto::plan::JoinType;

    fn read(input: usize) -> Box<PlanNode> {
        Box::new(PlanNode::ShuffleRead {
            input,
            schema: Schema::new(vec![Field::new("k", DataType::Int64, true)]),
        })
    }

    fn spec(inputs: &[u64]) -> TaskSpec {
        TaskSpec {
            input_bytes: inputs.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn model_counts_what_operators_hold() {
        let schema = Schema::new(vec![Field::new("k", DataType::Int64, true)]);
        let agg = |mode| PlanNode::Aggregate {
            input: read(0),
            mode,
            group_by: vec![Expr::Column(0)],
            aggs: vec![],
            schema: schema.clone(),
        };
        let mb = 1 << 20;
        assert_eq!(
            model(&agg(AggMode::Final), &spec(&[100 * mb])),
            TASK_BASE_BYTES + 32 * mb + 150 * mb
        );
        assert_eq!(
            model(&agg(AggMode::Partial), &spec(&[1000 * mb])),
            TASK_BASE_BYTES + 32 * mb + PARTIAL_AGGREGATE_BYTES
        );
        let join = PlanNode::HashJoin {
            left: read(0),
            right: read(1),
            join_type: JoinType::Inner,
            left_keys: vec![Expr::Column(0)],
            right_keys: vec![Expr::Column(0)],
            filter: None,
            build_left: false,
            schema: schema.clone(),
        };
        // The build side (right) is held twice (batches and index); each
        // input has up to 32 MiB in flight.
        assert_eq!(
            model(&join, &spec(&[500 * mb, 10 * mb])),
            TASK_BASE_BYTES + 20 * mb + 32 * mb + 10 * mb
        );
    }

    #[test]
    fn measurement_replaces_the_model_and_keeps_the_worst_ratio() {
        let mut m = Measured::default();
        assert_eq!(m.estimate(10 << 20), None);
        m.record(10 << 20, TASK_BASE_BYTES + (20 << 20));
        m.record(10 << 20, TASK_BASE_BYTES + (5 << 20));
        assert_eq!(m.estimate(100 << 20), Some(TASK_BASE_BYTES + (200 << 20)));
    }

    #[test]
    fn an_idle_worker_admits_anything_a_busy_one_only_what_fits() {
        let idle = Room {
            cores: 4,
            running: 0,
            budget: 100,
            load: 0,
        };
        assert!(idle.admits(1000, true));
        let busy = Room {
            running: 1,
            load: 60,
            ..idle
        };
        assert!(busy.admits(40, true));
        assert!(!busy.admits(41, true));
        assert!(busy.admits(41, false), "slots only when admission is off");
        let full = Room { running: 4, ..busy };
        assert!(!full.admits(1, false));
    }
}
