//! From a logical plan to a stage graph.
//!
//! Planning walks the logical plan bottom-up, growing a [`Fragment`] (the
//! operators one stage will pipeline) until an exchange is needed; then the
//! fragment becomes a stage and a new fragment reads its output. Exchanges:
//! a hash shuffle for joins and grouped aggregation, a broadcast for the
//! small side of a join, a gather for global aggregates, sorts and limits,
//! and slices of map outputs for UNION ALL.
//!
//! - [`stages`]: the stage graph and `explain`.
//! - [`prune`]: row-group pruning from Parquet statistics.
//! - [`band`]: finding a range condition that makes an inner join a range join.

pub mod band;
pub mod prune;
pub mod stages;

use arrow::datatypes::{DataType, Field, Schema};
use keel_proto::expr::{Expr, ScalarValue};
use keel_proto::ids::StageId;
use keel_proto::plan::{
    values_list, AggExpr, AggFunc, AggMode, Asof, FileSplit, JoinType, PlanNode, Sink, SortKey,
    WindowFunc,
};

use crate::logical::LogicalPlan;
use stages::{InputMode, ScanTask, StageGraph, StageInput, StagePlan, TaskSource};

#[derive(Debug, Clone)]
pub struct PlannerConfig {
    /// Cores across the cluster; sizes scan splits so every core gets work.
    pub total_cores: usize,
    /// Partitions every hash exchange writes; reduce tasks coalesce them by size.
    pub shuffle_partitions: u32,
    /// A join side estimated below this is broadcast instead of shuffled.
    pub broadcast_bytes: u64,
    /// Bytes of row groups per scan task; None sizes splits so every core gets two.
    pub split_bytes: Option<u64>,
    /// A global aggregate over more partial tasks than this merges their
    /// states in a tree of this fan-in (0: all to one).
    pub tree_fan_in: usize,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            total_cores: 2,
            shuffle_partitions: 64,
            broadcast_bytes: 32 << 20,
            split_bytes: None,
            tree_fan_in: 16,
        }
    }
}

/// What a stage under construction reads and how its tasks are formed.
struct Fragment {
    node: PlanNode,
    inputs: Vec<StageInput>,
    source: Source,
    rows: f64,
    bytes: f64,
    /// Set above a window step: how its tasks' rows already lie, so a
    /// following window over the same keys needs no exchange (and, in the
    /// same order, no sort).
    layout: Option<WindowLayout>,
}

/// Each task holds whole partitions of `partition_by`, its rows sorted by `sorted`.
#[derive(Clone)]
struct WindowLayout {
    partition_by: Vec<Expr>,
    sorted: Vec<SortKey>,
}

impl WindowLayout {
    /// The layout in terms of a projection's outputs, when every key is a
    /// column the projection passes through.
    fn through_project(&self, exprs: &[Expr]) -> Option<WindowLayout> {
        let map = |e: &Expr| {
            exprs
                .iter()
                .position(|x| x == e && matches!(e, Expr::Column(_)))
                .map(Expr::Column)
        };
        Some(WindowLayout {
            partition_by: self.partition_by.iter().map(map).collect::<Option<_>>()?,
            sorted: self
                .sorted
                .iter()
                .map(|k| map(&k.expr).map(|expr| SortKey { expr, ..k.clone() }))
                .collect::<Option<_>>()?,
        })
    }
}

#[derive(Clone)]
enum Source {
    Scan(Vec<ScanTask>),
    Hash,
    Slice,
    Single,
}

pub struct Planner {
    config: PlannerConfig,
    stages: Vec<StagePlan>,
}

pub fn plan(logical: &LogicalPlan, copy_to: Option<String>, config: PlannerConfig) -> StageGraph {
    let mut planner = Planner {
        config,
        stages: vec![],
    };
    let output_schema = logical.schema();
    let top = planner.fragment(logical);
    let sink = match &copy_to {
        Some(dir) => Sink::Parquet { dir: dir.clone() },
        None => Sink::Single,
    };
    planner.finish(top, sink);
    StageGraph {
        stages: planner.stages,
        output_schema,
        copy_to,
    }
}

impl Planner {
    /// Turns a fragment into a stage writing to `sink`; returns its id.
    fn finish(&mut self, f: Fragment, sink: Sink) -> StageId {
        let id = StageId(self.stages.len() as u32 + 1);
        let tasks = match f.source {
            Source::Scan(splits) => TaskSource::Scan(splits),
            Source::Hash | Source::Slice => TaskSource::Shuffle,
            Source::Single => TaskSource::Single,
        };
        self.stages.push(StagePlan {
            id,
            plan: f.node,
            sink,
            inputs: f.inputs,
            tasks,
            estimated_rows: f.rows as u64,
            estimated_bytes: f.bytes as u64,
        });
        id
    }

    fn exchange(&mut self, f: Fragment, sink: Sink, mode: InputMode, source: Source) -> Fragment {
        let schema = f.node.schema();
        let (rows, bytes) = (f.rows, f.bytes);
        let stage = self.finish(f, sink);
        Fragment {
            node: PlanNode::ShuffleRead { input: 0, schema },
            inputs: vec![StageInput { stage, mode }],
            source,
            rows,
            bytes,
            layout: None,
        }
    }

    fn hash_exchange(&mut self, f: Fragment, keys: Vec<Expr>) -> Fragment {
        let partitions = self.config.shuffle_partitions;
        self.exchange(
            f,
            Sink::Hash { keys, partitions },
            InputMode::Hash,
            Source::Hash,
        )
    }

    fn gather(&mut self, f: Fragment) -> Fragment {
        if matches!(f.source, Source::Single) {
            return f;
        }
        self.exchange(f, Sink::Single, InputMode::Gather, Source::Single)
    }

    fn wrap(f: Fragment, node: impl FnOnce(Box<PlanNode>) -> PlanNode) -> Fragment {
        Fragment {
            node: node(Box::new(f.node)),
            ..f
        }
    }

    fn fragment(&mut self, plan: &LogicalPlan) -> Fragment {
        let mut f = self.fragment_of(plan);
        // Only filters, projections and windows keep a window step's layout
        // (operators over a join's output may see a split partition).
        if !matches!(
            plan,
            LogicalPlan::Filter { .. } | LogicalPlan::Project { .. } | LogicalPlan::Window { .. }
        ) {
            f.layout = None;
        }
        f
    }

    fn fragment_of(&mut self, plan: &LogicalPlan) -> Fragment {
        match plan {
            LogicalPlan::Scan {
                table,
                columns,
                filters,
            } => self.scan(table, columns, filters),
            LogicalPlan::OneRow => Fragment {
                node: PlanNode::OneRow,
                inputs: vec![],
                source: Source::Single,
                rows: 1.0,
                bytes: 0.0,
                layout: None,
            },
            LogicalPlan::Filter { input, predicate } => {
                let f = self.fragment(input);
                let mut f = Self::wrap(f, |i| PlanNode::Filter {
                    input: i,
                    predicate: predicate.clone(),
                });
                f.rows *= 0.5;
                f.bytes *= 0.5;
                f
            }
            LogicalPlan::Project {
                input,
                exprs,
                schema,
            } => {
                let mut f = self.fragment(input);
                f.layout = f.layout.and_then(|l| l.through_project(exprs));
                Self::wrap(f, |i| PlanNode::Project {
                    input: i,
                    exprs: exprs.clone(),
                    schema: schema.clone(),
                })
            }
            LogicalPlan::Aggregate {
                input,
                group_by,
                aggs,
                schema,
            } => self.aggregate(input, group_by, aggs, schema),
            LogicalPlan::Join {
                left,
                right,
                join_type,
                left_keys,
                right_keys,
                filter,
            } => self.join(plan, left, right, *join_type, left_keys, right_keys, filter),
            LogicalPlan::AsofJoin {
                left,
                right,
                outer,
                left_keys,
                right_keys,
                asof,
            } => self.asof_join(plan, left, right, *outer, left_keys, right_keys, asof),
            LogicalPlan::Sort { input, keys } => self.sort(input, keys, None),
            LogicalPlan::Expand {
                input,
                keys,
                sets,
                schema,
            } => {
                let f = self.fragment(input);
                let mut f = Self::wrap(f, |i| PlanNode::Expand {
                    input: i,
                    keys: keys.clone(),
                    sets: sets.clone(),
                    schema: schema.clone(),
                });
                f.rows *= sets.len() as f64;
                f.bytes *= sets.len() as f64;
                f
            }
            LogicalPlan::Window {
                input,
                partition_by,
                order_by,
                funcs,
                schema,
            } => self.window(input, partition_by, order_by, funcs, schema),
            LogicalPlan::Limit { input, skip, fetch } => {
                if let (
                    LogicalPlan::Sort {
                        input: sorted,
                        keys,
                    },
                    Some(n),
                ) = (input.as_ref(), fetch)
                {
                    let f = self.sort(sorted, keys, Some(skip + n));
                    return Self::wrap(f, |i| PlanNode::Limit {
                        input: i,
                        skip: *skip,
                        fetch: *fetch,
                    });
                }
                let f = self.fragment(input);
                let f = if matches!(f.source, Source::Single) {
                    f
                } else {
                    let local_fetch = fetch.map(|n| n + skip);
                    let local = Self::wrap(f, |i| PlanNode::Limit {
                        input: i,
                        skip: 0,
                        fetch: local_fetch,
                    });
                    self.gather(local)
                };
                Self::wrap(f, |i| PlanNode::Limit {
                    input: i,
                    skip: *skip,
                    fetch: *fetch,
                })
            }
            LogicalPlan::Union { inputs } => {
                let mut nodes = vec![];
                let mut stage_inputs = vec![];
                let (mut rows, mut bytes) = (0.0, 0.0);
                for (i, input) in inputs.iter().enumerate() {
                    let f = self.fragment(input);
                    rows += f.rows;
                    bytes += f.bytes;
                    let schema = f.node.schema();
                    let stage = self.finish(f, Sink::Single);
                    stage_inputs.push(StageInput {
                        stage,
                        mode: InputMode::Slice,
                    });
                    nodes.push(PlanNode::ShuffleRead { input: i, schema });
                }
                Fragment {
                    node: PlanNode::Union { inputs: nodes },
                    inputs: stage_inputs,
                    source: Source::Slice,
                    rows,
                    bytes,
                    layout: None,
                }
            }
        }
    }

    fn scan(
        &mut self,
        table: &crate::catalog::TableSource,
        columns: &[usize],
        filters: &[Expr],
    ) -> Fragment {
        let schema = Schema::new(
            columns
                .iter()
                .map(|&c| table.schema.field(c).clone())
                .collect::<Vec<_>>(),
        );
        // Surviving row groups with their estimated bytes, in file order.
        let mut groups: Vec<(usize, usize, u64, u64)> = vec![];
        for (fi, file) in table.files.iter().enumerate() {
            for (gi, rg) in file.row_groups.iter().enumerate() {
                if prune::may_match(rg, columns, filters) {
                    let bytes: u64 = columns
                        .iter()
                        .map(|&c| rg.column_bytes.get(c).copied().unwrap_or(0))
                        .sum();
                    groups.push((fi, gi, bytes.max(1), rg.rows));
                }
            }
        }
        let total: u64 = groups.iter().map(|g| g.2).sum();
        let rows: u64 = groups.iter().map(|g| g.3).sum();
        let target = self.config.split_bytes.unwrap_or_else(|| {
            (total / (2 * self.config.total_cores.max(1) as u64)).clamp(8 << 20, 128 << 20)
        });
        let mut tasks: Vec<ScanTask> = vec![];
        let mut current: Vec<FileSplit> = vec![];
        let mut current_bytes = 0;
        for (fi, gi, bytes, _) in groups {
            let path = &table.files[fi].path;
            match current.last_mut() {
                Some(s) if &s.path == path => s.row_groups.push(gi),
                _ => current.push(FileSplit {
                    path: path.clone(),
                    row_groups: vec![gi],
                }),
            }
            current_bytes += bytes;
            if current_bytes >= target {
                tasks.push(ScanTask {
                    splits: std::mem::take(&mut current),
                    bytes: std::mem::take(&mut current_bytes),
                });
            }
        }
        if !current.is_empty() || tasks.is_empty() {
            tasks.push(ScanTask {
                splits: current,
                bytes: current_bytes,
            });
        }
        let predicate = crate::sql::types::conjunction_of(filters);
        Fragment {
            node: PlanNode::Scan {
                splits: vec![],
                schema,
                predicate,
            },
            inputs: vec![],
            source: Source::Scan(tasks),
            rows: rows as f64,
            bytes: total as f64,
            layout: None,
        }
    }

    fn aggregate(
        &mut self,
        input: &LogicalPlan,
        group_by: &[Expr],
        aggs: &[AggExpr],
        schema: &Schema,
    ) -> Fragment {
        if let Some((deduplicated, aggs)) = distinct_in_two_phases(input, group_by, aggs, schema) {
            let keys: Vec<Expr> = (0..group_by.len()).map(Expr::Column).collect();
            return self.aggregate(&deduplicated, &keys, &aggs, schema);
        }
        let f = self.fragment(input);
        let (rows, bytes) = (f.rows, f.bytes);
        let single = |f: Fragment| {
            Self::wrap(f, |i| PlanNode::Aggregate {
                input: i,
                mode: AggMode::Single,
                group_by: group_by.to_vec(),
                aggs: aggs.to_vec(),
                schema: schema.clone(),
            })
        };
        // After a window step partitioned by some of the group keys, each
        // group is whole in one task: aggregate there, with no exchange.
        let grouped_already = f.layout.as_ref().is_some_and(|l| {
            !l.partition_by.is_empty() && l.partition_by.iter().all(|k| group_by.contains(k))
        });
        let mut out = if matches!(f.source, Source::Single) || grouped_already {
            single(f)
        } else if aggs.iter().any(|a| a.distinct) {
            // DISTINCT states are sets: shuffle raw rows by group, aggregate
            // once (DISTINCT aggregates over different arguments, or mixed
            // with plain ones; see `distinct_in_two_phases` for the rest).
            let f = if group_by.is_empty() {
                self.gather(f)
            } else {
                self.hash_exchange(f, group_by.to_vec())
            };
            single(f)
        } else {
            let input_schema = f.node.schema();
            let partial_schema = partial_schema(group_by, aggs, &input_schema, schema);
            let partial = Self::wrap(f, |i| PlanNode::Aggregate {
                input: i,
                mode: AggMode::Partial,
                group_by: group_by.to_vec(),
                aggs: aggs.to_vec(),
                schema: partial_schema,
            });
            let g = group_by.len();
            let keys: Vec<Expr> = (0..g).map(Expr::Column).collect();
            let state: usize = aggs.iter().map(state_bytes).sum();
            let exchanged = if g == 0 {
                let merged = self.reduce_tree(partial, aggs, 0);
                self.gather(merged)
            } else if state >= GROUPED_TREE_STATE_BYTES {
                // Sketch states: few groups, each state large. Merge them in
                // a tree by group before the exchange, so no final task
                // receives a state per group from every partial task.
                let merged = self.reduce_tree(partial, aggs, g);
                self.hash_exchange(merged, keys.clone())
            } else {
                self.hash_exchange(partial, keys.clone())
            };
            Self::wrap(exchanged, |i| PlanNode::Aggregate {
                input: i,
                mode: AggMode::Final,
                group_by: keys,
                aggs: aggs.to_vec(),
                schema: schema.clone(),
            })
        };
        if group_by.is_empty() {
            out.rows = 1.0;
            out.bytes = 64.0;
        } else {
            out.rows = rows * 0.5;
            out.bytes = bytes * 0.5;
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        logical: &LogicalPlan,
        left: &LogicalPlan,
        right: &LogicalPlan,
        join_type: JoinType,
        left_keys: &[Expr],
        right_keys: &[Expr],
        filter: &Option<Expr>,
    ) -> Fragment {
        let schema = logical.schema();
        let l = self.fragment(left);
        let r = self.fragment(right);
        let (rows, bytes) = (l.rows.max(r.rows), l.bytes + r.bytes);
        let limit = self.config.broadcast_bytes as f64;
        let nl = left.schema().fields().len();
        let band = match (join_type, filter) {
            (JoinType::Inner, Some(f)) => band::find_band(f, nl),
            _ => None,
        };
        // Without keys every row pairs with every row of the other side (a
        // nested loop): one side is broadcast whatever its size, and a range
        // join indexes all intervals under one key.
        let no_keys = left_keys.is_empty();
        let constant = vec![Expr::Literal(ScalarValue::Boolean(true))];
        let (left_keys, right_keys) = match (&band, no_keys) {
            (Some(_), true) => (&constant[..], &constant[..]),
            _ => (left_keys, right_keys),
        };
        let node = |left: PlanNode, right: PlanNode, build_left: bool| match &band {
            // A range join: the intervals held and indexed, the points streamed past.
            Some((band, residual)) => PlanNode::RangeJoin {
                left: Box::new(left),
                right: Box::new(right),
                left_keys: left_keys.to_vec(),
                right_keys: right_keys.to_vec(),
                band: band.clone(),
                filter: residual.clone(),
                schema: schema.clone(),
            },
            None => PlanNode::HashJoin {
                left: Box::new(left),
                right: Box::new(right),
                join_type,
                left_keys: left_keys.to_vec(),
                right_keys: right_keys.to_vec(),
                filter: filter.clone(),
                build_left,
                schema: schema.clone(),
            },
        };
        // NOT IN is null-aware: one NULL anywhere in the subquery, or an
        // empty subquery, decides every row's answer, so each task must see
        // the whole right side: an anti join always broadcasts it.
        let whole_right = join_type == JoinType::Anti;
        // A FULL join emits its unmatched right rows once: both sides are partitioned.
        let full = join_type == JoinType::Full;
        let inner = join_type == JoinType::Inner;
        let mut out = if !full
            && (whole_right
                || no_keys && (!inner || r.bytes <= l.bytes)
                || r.bytes <= limit && (!inner || r.bytes <= l.bytes))
        {
            let mut probe = l;
            let (probe_node, read) = self.broadcast_into(r, &mut probe);
            Fragment {
                node: node(probe_node, read, false),
                ..probe
            }
        } else if inner && (l.bytes <= limit || no_keys) {
            let mut probe = r;
            let (probe_node, read) = self.broadcast_into(l, &mut probe);
            Fragment {
                node: node(read, probe_node, true),
                ..probe
            }
        } else {
            let build_left = join_type == JoinType::Inner && l.bytes < r.bytes;
            self.co_partition(l, r, left_keys, right_keys, |l, r| node(l, r, build_left))
        };
        out.rows = rows;
        out.bytes = bytes;
        out
    }

    /// Partial states from more tasks than the fan-in k: levels of Merge
    /// aggregates (by the first `groups` columns, the keys), each task
    /// merging the outputs of at most k tasks, until at most k remain for
    /// the final gather or exchange. k is the configured fan-in, lowered
    /// (to 2 at least) where k states would not fit in `MERGE_INPUT_BYTES`
    /// (theta sketches of a large `lg_k`).
    fn reduce_tree(&mut self, partial: Fragment, aggs: &[AggExpr], groups: usize) -> Fragment {
        let state: usize = aggs.iter().map(state_bytes).sum();
        let k = self
            .config
            .tree_fan_in
            .min((MERGE_INPUT_BYTES / state.max(1)).max(2));
        let mut tasks = match &partial.source {
            Source::Scan(t) => t.len(),
            Source::Hash => self.config.shuffle_partitions as usize,
            Source::Slice | Source::Single => 1,
        };
        let mut f = partial;
        while k >= 2 && tasks > k {
            let schema = f.node.schema();
            let read = self.exchange(
                f,
                Sink::Single,
                InputMode::Merge { fan_in: k },
                Source::Slice,
            );
            f = Self::wrap(read, |i| PlanNode::Aggregate {
                input: i,
                mode: AggMode::Merge,
                group_by: (0..groups).map(Expr::Column).collect(),
                aggs: aggs.to_vec(),
                schema,
            });
            tasks = tasks.div_ceil(k);
        }
        f
    }

    /// An ASOF join: the right side broadcast when small (always without
    /// keys), else both sides hash-partitioned on the keys.
    #[allow(clippy::too_many_arguments)]
    fn asof_join(
        &mut self,
        logical: &LogicalPlan,
        left: &LogicalPlan,
        right: &LogicalPlan,
        outer: bool,
        left_keys: &[Expr],
        right_keys: &[Expr],
        asof: &Asof,
    ) -> Fragment {
        let schema = logical.schema();
        let l = self.fragment(left);
        let r = self.fragment(right);
        let (rows, bytes) = (l.rows, l.bytes + r.bytes);
        let node = |left: PlanNode, right: PlanNode| PlanNode::AsofJoin {
            left: Box::new(left),
            right: Box::new(right),
            outer,
            left_keys: left_keys.to_vec(),
            right_keys: right_keys.to_vec(),
            asof: asof.clone(),
            schema: schema.clone(),
        };
        let mut out = if left_keys.is_empty() || r.bytes <= self.config.broadcast_bytes as f64 {
            let mut probe = l;
            let (probe_node, read) = self.broadcast_into(r, &mut probe);
            Fragment {
                node: node(probe_node, read),
                ..probe
            }
        } else {
            self.co_partition(l, r, left_keys, right_keys, node)
        };
        out.rows = rows;
        out.bytes = bytes;
        out
    }

    /// Both sides hash-partitioned on their keys into one stage whose
    /// tasks each run `node` over one partition of the two.
    fn co_partition(
        &mut self,
        l: Fragment,
        r: Fragment,
        left_keys: &[Expr],
        right_keys: &[Expr],
        node: impl FnOnce(PlanNode, PlanNode) -> PlanNode,
    ) -> Fragment {
        let partitions = self.config.shuffle_partitions;
        let (ls, rs) = (l.node.schema(), r.node.schema());
        let lstage = self.finish(
            l,
            Sink::Hash {
                keys: left_keys.to_vec(),
                partitions,
            },
        );
        let rstage = self.finish(
            r,
            Sink::Hash {
                keys: right_keys.to_vec(),
                partitions,
            },
        );
        Fragment {
            node: node(
                PlanNode::ShuffleRead {
                    input: 0,
                    schema: ls,
                },
                PlanNode::ShuffleRead {
                    input: 1,
                    schema: rs,
                },
            ),
            inputs: vec![
                StageInput {
                    stage: lstage,
                    mode: InputMode::Hash,
                },
                StageInput {
                    stage: rstage,
                    mode: InputMode::Hash,
                },
            ],
            source: Source::Hash,
            rows: 0.0,
            bytes: 0.0,
            layout: None,
        }
    }

    /// Finishes `build` as a stage read whole by every task of `probe`;
    /// returns the probe's operators and the read of the build side.
    fn broadcast_into(&mut self, build: Fragment, probe: &mut Fragment) -> (PlanNode, PlanNode) {
        let schema = build.node.schema();
        let stage = self.finish(build, Sink::Single);
        let input = probe.inputs.len();
        probe.inputs.push(StageInput {
            stage,
            mode: InputMode::Broadcast,
        });
        let probe_node = std::mem::replace(&mut probe.node, PlanNode::OneRow);
        (probe_node, PlanNode::ShuffleRead { input, schema })
    }

    /// Window functions: a hash exchange on the partition keys (a gather
    /// without them), then each task sorts by (partition keys, order keys)
    /// with the spilling sort and computes the functions one partition at a time.
    fn window(
        &mut self,
        input: &LogicalPlan,
        partition_by: &[Expr],
        order_by: &[SortKey],
        funcs: &[WindowFunc],
        schema: &Schema,
    ) -> Fragment {
        let f = self.fragment(input);
        let keys: Vec<SortKey> = partition_by
            .iter()
            .map(|e| SortKey {
                expr: e.clone(),
                descending: false,
                nulls_first: false,
            })
            .chain(order_by.iter().cloned())
            .collect();
        // After a window step partitioned by a subset of these keys, every
        // partition is already whole in one task; in this order, also sorted.
        let (f, sorted_already) = match &f.layout {
            Some(l)
                if !partition_by.is_empty()
                    && !l.partition_by.is_empty()
                    && l.partition_by.iter().all(|k| partition_by.contains(k)) =>
            {
                let sorted = l.sorted.len() >= keys.len() && l.sorted[..keys.len()] == keys[..];
                (f, sorted)
            }
            _ if partition_by.is_empty() => (self.gather(f), false),
            _ => (self.hash_exchange(f, partition_by.to_vec()), false),
        };
        let sorted = if keys.is_empty() || sorted_already {
            f
        } else {
            Self::wrap(f, |i| PlanNode::Sort {
                input: i,
                keys: keys.clone(),
                fetch: None,
            })
        };
        let mut out = Self::wrap(sorted, |i| PlanNode::Window {
            input: i,
            partition_by: partition_by.to_vec(),
            order_by: order_by.to_vec(),
            funcs: funcs.to_vec(),
            schema: schema.clone(),
        });
        out.layout = (!partition_by.is_empty()).then(|| WindowLayout {
            partition_by: partition_by.to_vec(),
            sorted: keys,
        });
        out
    }

    fn sort(&mut self, input: &LogicalPlan, keys: &[SortKey], fetch: Option<usize>) -> Fragment {
        let f = self.fragment(input);
        let f = if matches!(f.source, Source::Single) {
            f
        } else {
            let local = Self::wrap(f, |i| PlanNode::Sort {
                input: i,
                keys: keys.to_vec(),
                fetch,
            });
            self.gather(local)
        };
        Self::wrap(f, |i| PlanNode::Sort {
            input: i,
            keys: keys.to_vec(),
            fetch,
        })
    }
}

/// Group columns, then each aggregate's state columns.
fn partial_schema(
    group_by: &[Expr],
    aggs: &[AggExpr],
    input: &Schema,
    final_schema: &Schema,
) -> Schema {
    let mut fields: Vec<Field> = final_schema.fields()[..group_by.len()]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for (k, a) in aggs.iter().enumerate() {
        let name = format!("__state_{k}");
        // The type of the aggregate's i-th input.
        let arg_type = |i: usize| {
            a.inputs()
                .nth(i)
                .and_then(|e| e.data_type(input).ok())
                .unwrap_or(DataType::Float64)
        };
        match a.func {
            AggFunc::CountStar | AggFunc::Count => {
                fields.push(Field::new(name, DataType::Int64, true))
            }
            AggFunc::ApproxCountDistinct
            | AggFunc::ThetaSketch { .. }
            | AggFunc::ThetaUnionAgg
            | AggFunc::ThetaIntersectAgg
            | AggFunc::ApproxQuantile { .. }
            | AggFunc::MixtureStats => fields.push(Field::new(name, DataType::Binary, true)),
            AggFunc::Avg => {
                fields.push(Field::new(format!("{name}_sum"), DataType::Float64, true));
                fields.push(Field::new(format!("{name}_count"), DataType::Int64, true));
            }
            AggFunc::Sum | AggFunc::Min | AggFunc::Max | AggFunc::First => {
                fields.push(Field::new(name, arg_type(0), true));
            }
            AggFunc::VarSamp | AggFunc::VarPop | AggFunc::StddevSamp | AggFunc::StddevPop => {
                fields.push(Field::new(format!("{name}_n"), DataType::Int64, true));
                for part in ["mean", "m2"] {
                    fields.push(Field::new(
                        format!("{name}_{part}"),
                        DataType::Float64,
                        true,
                    ));
                }
            }
            AggFunc::CovarSamp
            | AggFunc::CovarPop
            | AggFunc::Corr
            | AggFunc::RegrSlope
            | AggFunc::RegrIntercept
            | AggFunc::RegrR2 => {
                fields.push(Field::new(format!("{name}_n"), DataType::Int64, true));
                for part in ["mean_y", "mean_x", "m2_y", "m2_x", "c"] {
                    fields.push(Field::new(
                        format!("{name}_{part}"),
                        DataType::Float64,
                        true,
                    ));
                }
            }
            AggFunc::QuantileCont { .. } | AggFunc::QuantileDisc { .. } | AggFunc::Mode => {
                fields.push(Field::new(name, values_list(&arg_type(0)), true))
            }
            AggFunc::StringAgg => fields.push(Field::new(name, DataType::Binary, true)),
            AggFunc::ArgMin | AggFunc::ArgMax => {
                fields.push(Field::new(format!("{name}_arg"), arg_type(0), true));
                fields.push(Field::new(format!("{name}_key"), arg_type(1), true));
            }
            AggFunc::BoolAnd | AggFunc::BoolOr => {
                fields.push(Field::new(name, DataType::Boolean, true))
            }
            AggFunc::Product => fields.push(Field::new(name, DataType::Float64, true)),
        }
    }
    Schema::new(fields)
}

/// Whether every aggregate is DISTINCT over one and the same argument.
/// (The binder casts some arguments, say `sum(n)` of an INT32 n to BIGINT:
/// a cast of the argument counts as the same argument.)
/// An aggregate of more arguments qualifies only if its ORDER BY keys are
/// that argument too (`string_agg(DISTINCT s, ',' ORDER BY s)`).
pub fn distinct_in_one_argument(aggs: &[AggExpr]) -> bool {
    let Some(arg) = aggs.first().and_then(|a| a.arg.as_ref()) else {
        return false;
    };
    aggs.iter().all(|a| {
        a.distinct
            && a.func != AggFunc::CountStar
            && a.more_args.is_empty()
            && a.inputs().all(|e| uncast(e) == uncast(arg))
    })
}

fn uncast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast { expr, .. } => uncast(expr),
        other => other,
    }
}

/// `arg` with its uncast core replaced by `core` (the casts kept).
fn recast(arg: &Expr, core: Expr) -> Expr {
    match arg {
        Expr::Cast { expr, to } => Expr::Cast {
            expr: Box::new(recast(expr, core)),
            to: to.clone(),
        },
        _ => core,
    }
}

/// `f(DISTINCT x) … GROUP BY g` as two aggregations, when every aggregate is
/// DISTINCT over the same argument: first the distinct (g, x) pairs (a
/// grouping with no aggregates, so it pre-aggregates before its shuffle,
/// spreads a hot group over the tasks of an exchange on (g, x), and spills
/// like any grouping), then `f(x) … GROUP BY g` over those pairs. A set per
/// group would put a hot group, or a global DISTINCT, whole into one task's
/// memory. Returns the deduplicating plan and the aggregates over its output
/// (the group keys, then x).
fn distinct_in_two_phases(
    input: &LogicalPlan,
    group_by: &[Expr],
    aggs: &[AggExpr],
    schema: &Schema,
) -> Option<(LogicalPlan, Vec<AggExpr>)> {
    if !distinct_in_one_argument(aggs) {
        return None;
    }
    let arg = uncast(aggs[0].arg.as_ref()?).clone();
    let arg_type = arg.data_type(&input.schema()).ok()?;
    let g = group_by.len();
    let fields = schema.fields()[..g]
        .iter()
        .map(|f| f.as_ref().clone())
        .chain([Field::new("distinct_arg", arg_type, true)])
        .collect::<Vec<_>>();
    let mut keys = group_by.to_vec();
    keys.push(arg);
    let deduplicated = LogicalPlan::Aggregate {
        input: Box::new(input.clone()),
        group_by: keys,
        aggs: vec![],
        schema: Schema::new(fields),
    };
    let aggs = aggs
        .iter()
        .map(|a| {
            let mut a = AggExpr {
                distinct: false,
                ..a.clone()
            };
            a.inputs_mut().for_each(|e| *e = recast(e, Expr::Column(g)));
            a
        })
        .collect();
    Some((deduplicated, aggs))
}

/// What a merge task may receive, in partial states of a global aggregate.
const MERGE_INPUT_BYTES: usize = 256 << 20;

/// A grouped aggregate whose state per group is at least this large (a
/// sketch) merges its partial states in a tree: such aggregates have few
/// groups, and every partial task would otherwise send each group's state
/// to the group's final task.
const GROUPED_TREE_STATE_BYTES: usize = 4 << 10;

/// The largest serialized partial state of one aggregate (one group).
fn state_bytes(agg: &AggExpr) -> usize {
    match agg.func {
        AggFunc::CountStar
        | AggFunc::Count
        | AggFunc::Sum
        | AggFunc::Min
        | AggFunc::Max
        | AggFunc::Avg
        | AggFunc::First => 16,
        // HLL_8 of lg_k 14: a byte a register.
        AggFunc::ApproxCountDistinct => 1 << 14,
        // A full sketch: 2^lg_k hashes of 8 bytes.
        AggFunc::ThetaSketch { lg_k } => 8 << lg_k,
        AggFunc::ThetaUnionAgg | AggFunc::ThetaIntersectAgg => 8 << 12,
        // KLL of k = 200 over a few million values.
        AggFunc::ApproxQuantile { .. } => 8 << 10,
        // n, ΣL and three sums per mode.
        AggFunc::MixtureStats => 8 * (2 + agg.params.len()),
        AggFunc::VarSamp
        | AggFunc::VarPop
        | AggFunc::StddevSamp
        | AggFunc::StddevPop
        | AggFunc::CovarSamp
        | AggFunc::CovarPop
        | AggFunc::Corr
        | AggFunc::RegrSlope
        | AggFunc::RegrIntercept
        | AggFunc::RegrR2
        | AggFunc::ArgMin
        | AggFunc::ArgMax
        | AggFunc::BoolAnd
        | AggFunc::BoolOr
        | AggFunc::Product => 48,
        // The group's values: unbounded, but a tree level would only move
        // them (merging concatenates), so they count as small.
        AggFunc::QuantileCont { .. }
        | AggFunc::QuantileDisc { .. }
        | AggFunc::Mode
        | AggFunc::StringAgg => 256,
    }
}
