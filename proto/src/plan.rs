//! The operator tree a task runs, and where its output goes.
//!
//! Leaves read Parquet splits or shuffle inputs; inner nodes are pipelined
//! over Arrow batches by the worker. Schemas travel with the nodes that
//! create new columns so a worker never re-derives names or types.

use arrow_schema::{Schema, SortOptions};
use serde::{Deserialize, Serialize};

use crate::expr::Expr;

/// A Parquet file and the row groups of it that one task reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSplit {
    pub path: String,
    pub row_groups: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFunc {
    CountStar,
    Count,
    Sum,
    Min,
    Max,
    Avg,
    /// DuckDB's `first(x)`: the first value a group meets, NULL or not
    /// (which one is arbitrary unless every value of the group is the same).
    First,
    /// `approx_count_distinct(x)`: a HyperLogLog sketch per group (its
    /// serialized form is the partial state).
    ApproxCountDistinct,
    /// `theta_sketch(x [, lg_k])`: the compact theta sketch of the values (a BLOB).
    ThetaSketch {
        lg_k: u8,
    },
    /// `theta_union_agg(s)` / `theta_intersect_agg(s)` over theta sketch BLOBs.
    ThetaUnionAgg,
    ThetaIntersectAgg,
    /// `approx_quantile(x, q)`: a KLL sketch of the values (as doubles);
    /// `q` in millionths (so the function stays `Eq`); `integer` rounds the
    /// answer back to BIGINT, as DuckDB answers in the argument's type.
    ApproxQuantile {
        q_millionths: u32,
        integer: bool,
    },
    /// `mixture_stats(x, w_1, μ_1, σ_1, …)`: the E step of EM for a 1-D
    /// Gaussian mixture (the model in [`AggExpr::params`]), as a BLOB of
    /// sums that add up across tasks.
    MixtureStats,
    /// `var_samp` (`variance`), `var_pop`, `stddev_samp` (`stddev`),
    /// `stddev_pop` over DOUBLE: per group the count, mean and sum of
    /// squared deviations (Welford's update, Chan's merge), so no sum of
    /// squares cancels.
    VarSamp,
    VarPop,
    StddevSamp,
    StddevPop,
    /// Two-argument statistics `f(y, x)` over DOUBLEs (rows where either
    /// is NULL are skipped): per group the count, both means, both sums of
    /// squared deviations and the co-moment, merged as the variances are.
    CovarSamp,
    CovarPop,
    Corr,
    RegrSlope,
    RegrIntercept,
    RegrR2,
    /// `quantile_cont(x, q)` and `median(x)` over DOUBLE: the group's values
    /// (a LIST state, merged by concatenation), interpolated as DuckDB
    /// does; `q` is an `f64`'s bits (so the function stays `Eq`), negative
    /// for a descending order.
    QuantileCont {
        q_bits: u64,
    },
    /// `quantile_disc(x, q)`: the value at index ⌈n·|q|⌉ − 1 of the group's
    /// ordered values, any orderable type; q = `num / den` exactly (DuckDB
    /// takes a decimal literal exactly too), `num` negative for descending.
    QuantileDisc {
        num: i64,
        den: u64,
    },
    /// `mode(x)`: the most frequent value (the smallest of those tied).
    Mode,
    /// `string_agg(s, sep [ORDER BY …])`: the group's strings with their
    /// order keys (a BLOB state), joined by [`AggExpr::separator`].
    StringAgg,
    /// `arg_min(a, b)` / `arg_max(a, b)`: `a` at the row of least or
    /// greatest `b` (rows where either is NULL are skipped); the state is
    /// the pair.
    ArgMin,
    ArgMax,
    BoolAnd,
    BoolOr,
    /// `product(x)` over DOUBLE.
    Product,
}

impl AggFunc {
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::CountStar => "count_star",
            AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Avg => "avg",
            AggFunc::First => "first",
            AggFunc::ApproxCountDistinct => "approx_count_distinct",
            AggFunc::ThetaSketch { .. } => "theta_sketch",
            AggFunc::ThetaUnionAgg => "theta_union_agg",
            AggFunc::ThetaIntersectAgg => "theta_intersect_agg",
            AggFunc::ApproxQuantile { .. } => "approx_quantile",
            AggFunc::MixtureStats => "mixture_stats",
            AggFunc::VarSamp => "var_samp",
            AggFunc::VarPop => "var_pop",
            AggFunc::StddevSamp => "stddev_samp",
            AggFunc::StddevPop => "stddev_pop",
            AggFunc::CovarSamp => "covar_samp",
            AggFunc::CovarPop => "covar_pop",
            AggFunc::Corr => "corr",
            AggFunc::RegrSlope => "regr_slope",
            AggFunc::RegrIntercept => "regr_intercept",
            AggFunc::RegrR2 => "regr_r2",
            AggFunc::QuantileCont { .. } => "quantile_cont",
            AggFunc::QuantileDisc { .. } => "quantile_disc",
            AggFunc::Mode => "mode",
            AggFunc::StringAgg => "string_agg",
            AggFunc::ArgMin => "arg_min",
            AggFunc::ArgMax => "arg_max",
            AggFunc::BoolAnd => "bool_and",
            AggFunc::BoolOr => "bool_or",
            AggFunc::Product => "product",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggExpr {
    pub func: AggFunc,
    /// None only for `count(*)`.
    pub arg: Option<Expr>,
    /// `FILTER (WHERE c)` never reaches here: the binder rewrites
    /// `f(x) FILTER (WHERE c)` to `f(CASE WHEN c THEN x END)`.
    pub distinct: bool,
    /// Constants of a parameterised aggregate: a mixture's weights, means
    /// and standard deviations (`w_1, μ_1, σ_1, …`).
    #[serde(default)]
    pub params: Vec<f64>,
    /// Arguments after the first, evaluated per row like it: the `x` of
    /// `covar_pop(y, x)`, the `b` of `arg_min(a, b)`.
    #[serde(default)]
    pub more_args: Vec<Expr>,
    /// `ORDER BY` inside the call (`string_agg(s, ',' ORDER BY k)`).
    #[serde(default)]
    pub order_by: Vec<SortKey>,
    /// `string_agg`'s separator (a constant, as DuckDB requires).
    #[serde(default)]
    pub separator: Option<String>,
}

impl AggExpr {
    /// A one-argument aggregate with no constants.
    pub fn new(func: AggFunc, arg: Option<Expr>, distinct: bool) -> Self {
        AggExpr {
            func,
            arg,
            distinct,
            params: vec![],
            more_args: vec![],
            order_by: vec![],
            separator: None,
        }
    }

    /// Every expression evaluated per input row: the arguments, then the
    /// ORDER BY keys (the order in which a partial aggregate reads them).
    pub fn inputs(&self) -> impl Iterator<Item = &Expr> {
        self.arg
            .iter()
            .chain(&self.more_args)
            .chain(self.order_by.iter().map(|k| &k.expr))
    }

    /// [`AggExpr::inputs`], to rewrite in place (column pruning).
    pub fn inputs_mut(&mut self) -> impl Iterator<Item = &mut Expr> {
        self.arg
            .iter_mut()
            .chain(&mut self.more_args)
            .chain(self.order_by.iter_mut().map(|k| &mut k.expr))
    }

    /// How many state columns it has between the phases (avg's a sum and
    /// a count). A DISTINCT one's state is its set: a column per input
    /// (one for count, sum and avg).
    pub fn state_width(&self) -> usize {
        if self.distinct {
            return self.inputs().count().max(1);
        }
        match self.func {
            AggFunc::Avg | AggFunc::ArgMin | AggFunc::ArgMax => 2,
            AggFunc::VarSamp | AggFunc::VarPop | AggFunc::StddevSamp | AggFunc::StddevPop => 3,
            AggFunc::CovarSamp
            | AggFunc::CovarPop
            | AggFunc::Corr
            | AggFunc::RegrSlope
            | AggFunc::RegrIntercept
            | AggFunc::RegrR2 => 6,
            _ => 1,
        }
    }
}

/// The state of an aggregate that collects its values: a LIST of them.
pub fn values_list(item: &arrow_schema::DataType) -> arrow_schema::DataType {
    arrow_schema::DataType::List(std::sync::Arc::new(arrow_schema::Field::new(
        "item",
        item.clone(),
        true,
    )))
}

/// Two-phase aggregation: `Partial` turns rows into per-group states before
/// a shuffle, `Final` merges states after it; `Single` does both at once
/// (used for DISTINCT aggregates, whose state is a set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggMode {
    Partial,
    Final,
    Single,
    /// A level of a tree reduction: partial states in, merged states out.
    Merge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinType {
    Inner,
    /// Keeps every left row.
    Left,
    /// Keeps every row of both sides; runs on hash-partitioned sides only
    /// (never broadcast or split), building the right side.
    Full,
    /// Left rows with a match (IN subquery); outputs left columns only.
    Semi,
    /// Left rows without a match (NOT IN subquery, null-aware).
    Anti,
    /// Left rows without a match (NOT EXISTS): a NULL key matches nothing,
    /// so its row is kept; outputs left columns only.
    NotExists,
}

/// What a window function computes for each row of its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowKind {
    RowNumber,
    Rank,
    DenseRank,
    /// `args[0]` from `offset` rows before (`lag`) or after (`lead`, a
    /// negative offset); `args[1]`, when given, where there is no such row.
    Shift {
        offset: i64,
    },
    FirstValue,
    LastValue,
    /// `args[0]` from the `args[1]`-th row of the frame (1-based); NULL
    /// where the frame is shorter or `args[1]` is NULL or below 1.
    NthValue,
    /// The row's bucket (1 to `args[0]`) when the partition is dealt into
    /// `args[0]` buckets as equal as can be, the first ones one row larger.
    Ntile,
    /// `(rank - 1) / (rows - 1)`, 0 for a partition of one row.
    PercentRank,
    /// The share of the partition's rows up to the row's last peer.
    CumeDist,
    /// An aggregate over the row's frame (`args[0]`; none for `count(*)`).
    Aggregate(AggFunc),
}

impl WindowKind {
    pub fn name(self) -> String {
        match self {
            WindowKind::RowNumber => "row_number".into(),
            WindowKind::Rank => "rank".into(),
            WindowKind::DenseRank => "dense_rank".into(),
            WindowKind::Shift { offset } if offset >= 0 => format!("lag[{offset}]"),
            WindowKind::Shift { offset } => format!("lead[{}]", -offset),
            WindowKind::FirstValue => "first_value".into(),
            WindowKind::LastValue => "last_value".into(),
            WindowKind::NthValue => "nth_value".into(),
            WindowKind::Ntile => "ntile".into(),
            WindowKind::PercentRank => "percent_rank".into(),
            WindowKind::CumeDist => "cume_dist".into(),
            WindowKind::Aggregate(f) => f.name().into(),
        }
    }
}

/// One end of a window frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum FrameBound {
    UnboundedPreceding,
    /// ROWS: this many rows before the row.
    Preceding(u64),
    CurrentRow,
    /// ROWS: this many rows after the row.
    Following(u64),
    UnboundedFollowing,
    /// RANGE over the one ORDER BY key: the rows whose key lies within
    /// the offset before the row's (above it, for DESC). A NULL key's
    /// frame ends at its peers.
    RangePreceding(RangeOffset),
    /// RANGE: the rows whose key lies within the offset after the row's.
    RangeFollowing(RangeOffset),
}

/// How far a RANGE frame reaches from the row's ORDER BY key: a number for
/// a number key, an interval for a DATE or TIMESTAMP key; never negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RangeOffset {
    Int(i64),
    Float(f64),
    /// Months, days and microseconds, as an INTERVAL literal.
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
}

/// The rows an aggregate, `first_value`, `last_value` or `nth_value` sees:
/// counted in rows, or (`rows: false`) with CURRENT ROW meaning the row's
/// peers (rows equal on the ORDER BY keys) and offsets measured on the key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowFrame {
    pub rows: bool,
    pub start: FrameBound,
    pub end: FrameBound,
}

impl WindowFrame {
    /// SQL's default: the partition up to the row's last peer (with ORDER
    /// BY every row but the later ones; without it every row is a peer).
    pub const DEFAULT: WindowFrame = WindowFrame {
        rows: false,
        start: FrameBound::UnboundedPreceding,
        end: FrameBound::CurrentRow,
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowFunc {
    pub kind: WindowKind,
    pub args: Vec<Expr>,
    pub frame: WindowFrame,
}

/// The range condition of a range join: the points side's `point` lies
/// between the intervals side's `low` and `high`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Whether the points are the join's left input.
    pub points_left: bool,
    /// Over the points side's columns.
    pub point: Expr,
    /// Over the intervals side's columns.
    pub low: Expr,
    pub high: Expr,
    /// `low <= point` (else `low < point`).
    pub low_inclusive: bool,
    /// `point <= high` (else `point < high`).
    pub high_inclusive: bool,
}

/// Which right row an ASOF join pairs with a left row, among those with equal keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AsofDirection {
    /// The latest right time at or before the left time (`a.t >= b.t`).
    Backward,
    /// The earliest right time at or after the left time (`a.t <= b.t`).
    Forward,
    /// The closest right time in either direction (Keel's `nearest(a.t, b.t)`).
    Nearest,
}

/// The time condition of an ASOF join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asof {
    /// Over the left side's columns.
    pub left_time: Expr,
    /// Over the right side's columns, of the same type.
    pub right_time: Expr,
    pub direction: AsofDirection,
    /// Equal times do not match (`>` and `<` rather than `>=` and `<=`).
    pub strict: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SortKey {
    pub expr: Expr,
    pub descending: bool,
    pub nulls_first: bool,
}

impl SortKey {
    pub fn options(&self) -> SortOptions {
        SortOptions {
            descending: self.descending,
            nulls_first: self.nulls_first,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PlanNode {
    Scan {
        splits: Vec<FileSplit>,
        /// Columns to read, by name; the output schema lists them in this order.
        schema: Schema,
        /// Used to prune row groups from statistics; the filter itself stays above.
        predicate: Option<Expr>,
    },
    /// Batches fetched from the task's `inputs[input]`.
    ShuffleRead {
        input: usize,
        schema: Schema,
    },
    /// A single row with no columns, for `SELECT` without `FROM`.
    OneRow,
    Filter {
        input: Box<PlanNode>,
        predicate: Expr,
    },
    Project {
        input: Box<PlanNode>,
        exprs: Vec<Expr>,
        schema: Schema,
    },
    Aggregate {
        input: Box<PlanNode>,
        mode: AggMode,
        group_by: Vec<Expr>,
        aggs: Vec<AggExpr>,
        schema: Schema,
    },
    /// Hash join. The build side is hashed in memory and the probe side
    /// streams past it. Output columns are always left then right (only left
    /// for semi and anti joins), whichever side is built. Without keys every
    /// row shares one key: a nested loop over all pairs, `filter` applied to them.
    HashJoin {
        left: Box<PlanNode>,
        right: Box<PlanNode>,
        join_type: JoinType,
        left_keys: Vec<Expr>,
        right_keys: Vec<Expr>,
        /// Extra ON predicates over left ++ right columns.
        filter: Option<Expr>,
        build_left: bool,
        schema: Schema,
    },
    /// Inner join on equal keys plus a band condition: the intervals side is
    /// held, ordered by (keys, low) with a max-segment tree of highs, and the
    /// points stream past in their own order, each meeting only the
    /// intervals that hold it, so the cost follows the output rather than
    /// the product of a key's rows. Output columns are left then right.
    RangeJoin {
        left: Box<PlanNode>,
        right: Box<PlanNode>,
        left_keys: Vec<Expr>,
        right_keys: Vec<Expr>,
        band: Band,
        /// Other ON predicates over left ++ right columns.
        filter: Option<Expr>,
        schema: Schema,
    },
    /// ASOF join: each left row with at most one right row of equal keys,
    /// the one nearest in time in `asof`'s direction. The right side is
    /// held, sorted by (keys, time); left rows stream past in their order.
    /// With `outer`, left rows without a match are kept with NULLs.
    AsofJoin {
        left: Box<PlanNode>,
        right: Box<PlanNode>,
        outer: bool,
        left_keys: Vec<Expr>,
        right_keys: Vec<Expr>,
        asof: Asof,
        schema: Schema,
    },
    /// GROUPING SETS: each input row once per set, as the input's columns,
    /// then every key (NULL where the set leaves it out), then the set's
    /// number (BIGINT), for an aggregate grouping by the last two.
    Expand {
        input: Box<PlanNode>,
        keys: Vec<Expr>,
        /// Per set, which keys it groups by.
        sets: Vec<Vec<bool>>,
        schema: Schema,
    },
    /// Sort; with `fetch` it keeps only the first rows (top-k).
    Sort {
        input: Box<PlanNode>,
        keys: Vec<SortKey>,
        fetch: Option<usize>,
    },
    Limit {
        input: Box<PlanNode>,
        skip: usize,
        fetch: Option<usize>,
    },
    Union {
        inputs: Vec<PlanNode>,
    },
    /// Window functions over input sorted by (partition keys, order keys):
    /// the input columns, then one column per function.
    Window {
        input: Box<PlanNode>,
        partition_by: Vec<Expr>,
        order_by: Vec<SortKey>,
        funcs: Vec<WindowFunc>,
        schema: Schema,
    },
}

impl PlanNode {
    pub fn schema(&self) -> Schema {
        match self {
            PlanNode::Scan { schema, .. }
            | PlanNode::ShuffleRead { schema, .. }
            | PlanNode::Project { schema, .. }
            | PlanNode::Aggregate { schema, .. }
            | PlanNode::Window { schema, .. }
            | PlanNode::RangeJoin { schema, .. }
            | PlanNode::AsofJoin { schema, .. }
            | PlanNode::Expand { schema, .. }
            | PlanNode::HashJoin { schema, .. } => schema.clone(),
            PlanNode::OneRow => Schema::empty(),
            PlanNode::Filter { input, .. }
            | PlanNode::Sort { input, .. }
            | PlanNode::Limit { input, .. } => input.schema(),
            PlanNode::Union { inputs } => inputs[0].schema(),
        }
    }

    pub fn children(&self) -> Vec<&PlanNode> {
        match self {
            PlanNode::Scan { .. } | PlanNode::ShuffleRead { .. } | PlanNode::OneRow => vec![],
            PlanNode::Filter { input, .. }
            | PlanNode::Project { input, .. }
            | PlanNode::Aggregate { input, .. }
            | PlanNode::Sort { input, .. }
            | PlanNode::Window { input, .. }
            | PlanNode::Expand { input, .. }
            | PlanNode::Limit { input, .. } => vec![input],
            PlanNode::HashJoin { left, right, .. }
            | PlanNode::RangeJoin { left, right, .. }
            | PlanNode::AsofJoin { left, right, .. } => vec![left, right],
            PlanNode::Union { inputs } => inputs.iter().collect(),
        }
    }

    pub fn children_mut(&mut self) -> Vec<&mut PlanNode> {
        match self {
            PlanNode::Scan { .. } | PlanNode::ShuffleRead { .. } | PlanNode::OneRow => vec![],
            PlanNode::Filter { input, .. }
            | PlanNode::Project { input, .. }
            | PlanNode::Aggregate { input, .. }
            | PlanNode::Sort { input, .. }
            | PlanNode::Window { input, .. }
            | PlanNode::Expand { input, .. }
            | PlanNode::Limit { input, .. } => vec![input],
            PlanNode::HashJoin { left, right, .. }
            | PlanNode::RangeJoin { left, right, .. }
            | PlanNode::AsofJoin { left, right, .. } => vec![left, right],
            PlanNode::Union { inputs } => inputs.iter_mut().collect(),
        }
    }

    /// One line naming this operator, for `explain`; columns are named
    /// from the schema of the input each expression reads.
    pub fn describe(&self) -> String {
        let exprs = |es: &[Expr], schema: &Schema| {
            es.iter()
                .map(|e| e.named(schema).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            PlanNode::Scan {
                splits,
                schema,
                predicate,
            } => {
                let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                let mut s = format!("ParquetScan [{}]", cols.join(", "));
                if !splits.is_empty() {
                    let groups: usize = splits.iter().map(|s| s.row_groups.len()).sum();
                    s.push_str(&format!(" files={} row_groups={groups}", splits.len()));
                }
                if let Some(p) = predicate {
                    s.push_str(&format!(" prune_by={}", p.named(schema)));
                }
                s
            }
            PlanNode::ShuffleRead { input, schema } => {
                let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                format!("ShuffleRead input={input} [{}]", cols.join(", "))
            }
            PlanNode::OneRow => "OneRow".into(),
            PlanNode::Filter { predicate, input } => {
                format!("Filter {}", predicate.named(&input.schema()))
            }
            PlanNode::Project {
                exprs: es,
                schema,
                input,
            } => {
                let in_schema = input.schema();
                let items: Vec<String> = es
                    .iter()
                    .zip(schema.fields())
                    .map(|(e, f)| {
                        let shown = e.named(&in_schema).to_string();
                        if &shown == f.name() {
                            shown
                        } else {
                            format!("{shown} AS {}", f.name())
                        }
                    })
                    .collect();
                format!("Project {}", items.join(", "))
            }
            PlanNode::Aggregate {
                mode,
                group_by,
                aggs,
                input,
                ..
            } => {
                let in_schema = input.schema();
                // Merging modes read state columns, in order after the keys.
                let mut state = group_by.len();
                let a: Vec<String> = aggs
                    .iter()
                    .map(|a| {
                        let arg = if matches!(mode, AggMode::Final | AggMode::Merge) {
                            let names: Vec<&str> = (state..state + a.state_width())
                                .filter_map(|i| in_schema.fields().get(i))
                                .map(|f| f.name().as_str())
                                .collect();
                            state += a.state_width();
                            names.join(", ")
                        } else if a.arg.is_none() {
                            "*".into()
                        } else {
                            let args: Vec<String> = a
                                .arg
                                .iter()
                                .chain(&a.more_args)
                                .map(|e| e.named(&in_schema).to_string())
                                .collect();
                            let mut arg = args.join(", ");
                            if !a.order_by.is_empty() {
                                let keys: Vec<String> = a
                                    .order_by
                                    .iter()
                                    .map(|k| {
                                        let d = if k.descending { " DESC" } else { "" };
                                        format!("{}{d}", k.expr.named(&in_schema))
                                    })
                                    .collect();
                                arg.push_str(&format!(" ORDER BY {}", keys.join(", ")));
                            }
                            arg
                        };
                        let d = if a.distinct { "DISTINCT " } else { "" };
                        format!("{}({d}{arg})", a.func.name())
                    })
                    .collect();
                format!(
                    "HashAggregate({mode:?}) by [{}] aggs [{}]",
                    exprs(group_by, &in_schema),
                    a.join(", ")
                )
            }
            PlanNode::HashJoin {
                join_type,
                left_keys,
                right_keys,
                filter,
                build_left,
                left,
                right,
                ..
            } => {
                let (ls, rs) = (left.schema(), right.schema());
                let build = if *build_left { "left" } else { "right" };
                let mut s = if left_keys.is_empty() {
                    format!("NestedLoopJoin({join_type:?}) build={build}")
                } else {
                    format!(
                        "HashJoin({join_type:?}) on [{}] = [{}] build={build}",
                        exprs(left_keys, &ls),
                        exprs(right_keys, &rs),
                    )
                };
                s.push_str(&join_filter(filter.as_ref(), &ls, &rs));
                s
            }
            PlanNode::RangeJoin {
                left,
                right,
                left_keys,
                right_keys,
                band,
                filter,
                ..
            } => {
                let (ls, rs) = (left.schema(), right.schema());
                let (ps, is) = if band.points_left {
                    (&ls, &rs)
                } else {
                    (&rs, &ls)
                };
                let mut s = format!(
                    "RangeJoin on [{}] = [{}] and {} {} {} {} {}",
                    exprs(left_keys, &ls),
                    exprs(right_keys, &rs),
                    band.low.named(is),
                    if band.low_inclusive { "<=" } else { "<" },
                    band.point.named(ps),
                    if band.high_inclusive { "<=" } else { "<" },
                    band.high.named(is),
                );
                s.push_str(&join_filter(filter.as_ref(), &ls, &rs));
                s
            }
            PlanNode::AsofJoin {
                left,
                right,
                outer,
                left_keys,
                right_keys,
                asof,
                ..
            } => {
                let (ls, rs) = (left.schema(), right.schema());
                let (l, r) = (asof.left_time.named(&ls), asof.right_time.named(&rs));
                let time = match (asof.direction, asof.strict) {
                    (AsofDirection::Backward, false) => format!("{l} >= {r}"),
                    (AsofDirection::Backward, true) => format!("{l} > {r}"),
                    (AsofDirection::Forward, false) => format!("{l} <= {r}"),
                    (AsofDirection::Forward, true) => format!("{l} < {r}"),
                    (AsofDirection::Nearest, _) => format!("nearest({l}, {r})"),
                };
                format!(
                    "AsofJoin({}) on [{}] = [{}] and {time}",
                    if *outer { "Left" } else { "Inner" },
                    exprs(left_keys, &ls),
                    exprs(right_keys, &rs),
                )
            }
            PlanNode::Expand {
                input, keys, sets, ..
            } => {
                let in_schema = input.schema();
                let sets: Vec<String> = sets
                    .iter()
                    .map(|set| {
                        let named: Vec<String> = keys
                            .iter()
                            .zip(set)
                            .filter(|(_, used)| **used)
                            .map(|(k, _)| k.named(&in_schema).to_string())
                            .collect();
                        format!("({})", named.join(", "))
                    })
                    .collect();
                format!("Expand grouping sets [{}]", sets.join(", "))
            }
            PlanNode::Sort { keys, fetch, input } => {
                let in_schema = input.schema();
                let k: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        format!(
                            "{}{}",
                            k.expr.named(&in_schema),
                            if k.descending { " DESC" } else { "" }
                        )
                    })
                    .collect();
                match fetch {
                    Some(n) => format!("TopK({n}) by [{}]", k.join(", ")),
                    None => format!("Sort by [{}]", k.join(", ")),
                }
            }
            PlanNode::Limit { skip, fetch, .. } => format!("Limit skip={skip} fetch={fetch:?}"),
            PlanNode::Window {
                input,
                partition_by,
                order_by,
                funcs,
                ..
            } => {
                let in_schema = input.schema();
                let order: Vec<String> = order_by
                    .iter()
                    .map(|k| {
                        let d = if k.descending { " DESC" } else { "" };
                        format!("{}{d}", k.expr.named(&in_schema))
                    })
                    .collect();
                let f: Vec<String> = funcs
                    .iter()
                    .map(|w| format!("{}({})", w.kind.name(), exprs(&w.args, &in_schema)))
                    .collect();
                format!(
                    "Window partition by [{}] order by [{}] [{}]",
                    exprs(partition_by, &in_schema),
                    order.join(", "),
                    f.join(", ")
                )
            }
            PlanNode::Union { inputs } => format!("UnionAll inputs={}", inputs.len()),
        }
    }
}

/// ` filter=…` for a join's extra ON predicates over left ++ right columns.
fn join_filter(filter: Option<&Expr>, left: &Schema, right: &Schema) -> String {
    let Some(f) = filter else {
        return String::new();
    };
    let both = Schema::new(
        left.fields()
            .iter()
            .chain(right.fields().iter())
            .cloned()
            .collect::<Vec<_>>(),
    );
    format!(" filter={}", f.named(&both))
}

/// Where a task's output goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Sink {
    /// Hash-partition rows on `keys` into `partitions` outputs.
    Hash { keys: Vec<Expr>, partitions: u32 },
    /// One output partition, read whole by the consumer (gather, broadcast, results).
    Single,
    /// Write a Parquet file `dir/part-<task>.parquet` (via a temporary name).
    Parquet { dir: String },
}
