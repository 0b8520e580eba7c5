//! Window function calls: bound to Window nodes below the SELECT list.
//!
//! Every distinct call (`f(args) OVER (PARTITION BY … ORDER BY … frame)`)
//! found in the SELECT list, QUALIFY or ORDER BY becomes one function of a
//! Window node; calls sharing their PARTITION BY and ORDER BY share a node
//! (one exchange and one sort). Each node appends its results to its
//! input's columns, and the expressions above refer to them by the call's
//! text (see [`WindowColumn`]).
//!
//! Over an aggregated SELECT ([`AggregateWindows`]) the calls are bound in
//! aggregate mode before the aggregate is planned, so `sum(x)` inside OVER
//! (or in a window's argument) becomes one of the aggregate's columns and
//! a GROUP BY key its group column; the Window nodes then sit on the
//! aggregate's output, below the projection, as DuckDB orders them.

use arrow::datatypes::{DataType, Field, Schema};
use keel_proto::expr::{Expr, ScalarValue};
use keel_proto::plan::{AggFunc, SortKey, WindowFrame, WindowFunc, WindowKind};
use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::aggregates::AggContext;
use super::expr::{ExprBinder, Typed, WindowColumn};
use super::scope::Scope;
use super::types::{self, cast_if_needed, sql_name};
use super::walk::{function_args, window_calls};
use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;

mod frame;

/// The window functions Keel computes, for error messages.
const SUPPORTED: &str = "row_number, rank, dense_rank, percent_rank, cume_dist, ntile, lag, lead, \
     first_value, last_value, nth_value, count, sum, avg, min, max";

/// Where the expressions of an aggregated SELECT find a window's result
/// until the aggregate's width is known: this plus the call's number.
/// Below the select binder's other placeholders (`ABOVE_AGGREGATE`, 2^39).
const PLACEHOLDER: usize = 1 << 38;

/// The calls sharing one PARTITION BY and ORDER BY: one Window node.
struct Node {
    partition_by: Vec<Expr>,
    order_by: Vec<SortKey>,
    funcs: Vec<WindowFunc>,
    /// Each function's call text and result type.
    names: Vec<(String, DataType)>,
}

/// Binds `calls` over `plan` (whose columns `scope` names): returns the plan
/// with Window nodes on top and where each call's result is.
pub fn bind_windows(
    plan: LogicalPlan,
    scope: &Scope,
    calls: &[&ast::Function],
) -> Result<(LogicalPlan, Vec<WindowColumn>)> {
    let nodes = bind_calls(&mut ExprBinder::new(scope), calls)?;
    Ok(build(plan, nodes))
}

/// The window calls of an aggregated SELECT, bound before its aggregate.
pub struct AggregateWindows {
    nodes: Vec<Node>,
    /// The calls' results, at placeholder columns, for binding the SELECT
    /// list, QUALIFY and ORDER BY before the aggregate is planned.
    pub placeholders: Vec<WindowColumn>,
}

impl AggregateWindows {
    /// Binds the calls' arguments, PARTITION BY and ORDER BY over the
    /// aggregate's output, adding the aggregates they use to `ctx`.
    pub fn bind(
        scope: &Scope,
        ctx: &mut AggContext,
        calls: &[&ast::Function],
        having: Option<&ast::Expr>,
    ) -> Result<AggregateWindows> {
        let mut in_having = vec![];
        if let Some(h) = having {
            window_calls(h, &mut in_having);
        }
        if let Some(f) = in_having.first() {
            return Err(SchedulerError::bind(format!(
                "window function {f} is not allowed in HAVING (it is computed after HAVING filters the groups); use QUALIFY"
            )));
        }
        let nodes = bind_calls(&mut ExprBinder::with_aggregates(scope, ctx), calls)?;
        let placeholders = nodes
            .iter()
            .flat_map(|n| &n.names)
            .enumerate()
            .map(|(k, (call, t))| WindowColumn {
                call: call.clone(),
                column: PLACEHOLDER + k,
                data_type: t.clone(),
            })
            .collect();
        Ok(AggregateWindows {
            nodes,
            placeholders,
        })
    }

    /// Puts the Window nodes on `plan` (the aggregate's output, filtered by
    /// HAVING), points `exprs` at their results, and filters by `qualify`.
    pub fn apply<'e>(
        self,
        plan: LogicalPlan,
        qualify: Option<Typed>,
        exprs: impl Iterator<Item = &'e mut Expr>,
    ) -> Result<LogicalPlan> {
        let (mut plan, columns) = build(plan, self.nodes);
        let place = |e: &Expr| {
            e.remap_columns(&|c| match c.checked_sub(PLACEHOLDER) {
                Some(k) if k < columns.len() => columns[k].column,
                _ => c,
            })
        };
        for e in exprs {
            *e = place(e);
        }
        if let Some((q, t)) = qualify {
            if !matches!(t, DataType::Boolean | DataType::Null) {
                return Err(SchedulerError::bind(format!(
                    "QUALIFY needs a BOOLEAN condition, got {}",
                    sql_name(&t)
                )));
            }
            plan = LogicalPlan::Filter {
                input: Box::new(plan),
                predicate: place(&q),
            };
        }
        Ok(plan)
    }
}

/// Binds each distinct call with `binder`, grouping them into nodes.
fn bind_calls(binder: &mut ExprBinder, calls: &[&ast::Function]) -> Result<Vec<Node>> {
    let mut nodes: Vec<Node> = vec![];
    let mut seen: Vec<String> = vec![];
    for f in calls {
        let text = f.to_string();
        if seen.contains(&text) {
            continue;
        }
        seen.push(text.clone());
        let spec = match &f.over {
            Some(ast::WindowType::WindowSpec(spec)) => spec,
            Some(ast::WindowType::NamedWindow(name)) => {
                return Err(SchedulerError::unsupported(format!(
                    "named windows (OVER {name}); write the window in the call"
                )))
            }
            None => unreachable!("window calls have OVER"),
        };
        if spec.window_name.is_some() {
            return Err(SchedulerError::unsupported(format!(
                "named windows in {f}; write the window in the call"
            )));
        }
        let partition_by = spec
            .partition_by
            .iter()
            .map(|e| binder.bind(e).map(|(x, _)| x))
            .collect::<Result<Vec<_>>>()?;
        let (order_by, order_types): (Vec<SortKey>, Vec<DataType>) = spec
            .order_by
            .iter()
            .map(|o| {
                let (x, t) = binder.bind(&o.expr)?;
                Ok((super::query::sort_key(x, o), t))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let frame = frame::frame(spec.window_frame.as_ref(), f, &order_types)?;
        let (func, data_type) = window_func(f, binder, frame)?;
        let at = match nodes
            .iter()
            .position(|n| n.partition_by == partition_by && n.order_by == order_by)
        {
            Some(i) => i,
            None => {
                nodes.push(Node {
                    partition_by,
                    order_by,
                    funcs: vec![],
                    names: vec![],
                });
                nodes.len() - 1
            }
        };
        nodes[at].funcs.push(func);
        nodes[at].names.push((text, data_type));
    }
    Ok(nodes)
}

/// One Window node per entry of `nodes` on top of `plan`, and where each
/// call's result is, in the order of `nodes` and their functions.
fn build(plan: LogicalPlan, nodes: Vec<Node>) -> (LogicalPlan, Vec<WindowColumn>) {
    let mut plan = plan;
    let mut columns = vec![];
    for node in nodes {
        let input = plan.schema();
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (text, t) in node.names {
            columns.push(WindowColumn {
                call: text.clone(),
                column: fields.len(),
                data_type: t.clone(),
            });
            fields.push(Field::new(text, t, true));
        }
        plan = LogicalPlan::Window {
            input: Box::new(plan),
            partition_by: node.partition_by,
            order_by: node.order_by,
            funcs: node.funcs,
            schema: Schema::new(fields),
        };
    }
    (plan, columns)
}

/// The call as a window function, and its result type.
fn window_func(
    f: &ast::Function,
    binder: &mut ExprBinder,
    frame: WindowFrame,
) -> Result<(WindowFunc, DataType)> {
    let name = f.name.to_string().to_lowercase();
    if f.filter.is_some() || f.null_treatment.is_some() {
        return Err(SchedulerError::unsupported(format!(
            "FILTER or IGNORE NULLS in window function {f}"
        )));
    }
    if matches!(&f.args, FunctionArguments::List(l) if l.duplicate_treatment.is_some()) {
        return Err(SchedulerError::unsupported(format!(
            "DISTINCT in window function {f}"
        )));
    }
    let star = matches!(&f.args, FunctionArguments::List(l)
        if l.args.len() == 1 && matches!(l.args[0], FunctionArg::Unnamed(FunctionArgExpr::Wildcard)));
    let args = if star { vec![] } else { function_args(f)? };
    let bound = args
        .iter()
        .map(|a| binder.bind(a))
        .collect::<Result<Vec<_>>>()?;
    let arity = |n: std::ops::RangeInclusive<usize>| -> Result<()> {
        if n.contains(&bound.len()) {
            Ok(())
        } else {
            Err(SchedulerError::bind(format!(
                "{name}() takes {} argument(s), got {} in {f}",
                if n.start() == n.end() {
                    n.start().to_string()
                } else {
                    format!("{} to {}", n.start(), n.end())
                },
                bound.len()
            )))
        }
    };
    let func = |kind, args| WindowFunc { kind, args, frame };
    Ok(match name.as_str() {
        "percent_rank" | "cume_dist" => {
            arity(0..=0)?;
            let kind = if name == "percent_rank" {
                WindowKind::PercentRank
            } else {
                WindowKind::CumeDist
            };
            (func(kind, vec![]), DataType::Float64)
        }
        "ntile" => {
            arity(1..=1)?;
            let (n, t) = bound[0].clone();
            if let Expr::Literal(ScalarValue::Int64(k)) = n {
                if k < 1 {
                    return Err(SchedulerError::bind(format!(
                        "ntile() needs a positive number of buckets, got {k} in {f}"
                    )));
                }
            }
            let n = integer_arg(n, &t, "the number of buckets of ntile()", f)?;
            (func(WindowKind::Ntile, vec![n]), DataType::Int64)
        }
        "nth_value" => {
            arity(2..=2)?;
            let (x, t) = bound[0].clone();
            let (n, nt) = bound[1].clone();
            let n = integer_arg(n, &nt, "the position of nth_value()", f)?;
            (func(WindowKind::NthValue, vec![x, n]), t)
        }
        "row_number" | "rank" | "dense_rank" => {
            arity(0..=0)?;
            let kind = match name.as_str() {
                "row_number" => WindowKind::RowNumber,
                "rank" => WindowKind::Rank,
                _ => WindowKind::DenseRank,
            };
            (func(kind, vec![]), DataType::Int64)
        }
        "lag" | "lead" => {
            arity(1..=3)?;
            let offset = match bound.get(1) {
                None => 1,
                Some((Expr::Literal(ScalarValue::Int64(n)), _)) => *n,
                Some(_) => {
                    return Err(SchedulerError::bind(format!(
                        "the offset of {name}() must be an integer constant, got {} in {f}",
                        args[1]
                    )))
                }
            };
            let (x, t) = bound[0].clone();
            let mut args = vec![x];
            if let Some((d, dt)) = bound.get(2) {
                if types::common_type(&t, dt, false, true).is_none() {
                    return Err(SchedulerError::bind(format!(
                        "the default of {name}() must be a {}, got {} in {f}",
                        sql_name(&t),
                        sql_name(dt)
                    )));
                }
                args.push(cast_if_needed(d.clone(), dt, &t));
            }
            let offset = if name == "lag" { offset } else { -offset };
            (func(WindowKind::Shift { offset }, args), t)
        }
        "first_value" | "last_value" => {
            arity(1..=1)?;
            let kind = if name == "first_value" {
                WindowKind::FirstValue
            } else {
                WindowKind::LastValue
            };
            let (x, t) = bound[0].clone();
            (func(kind, vec![x]), t)
        }
        "count" if star => (
            func(WindowKind::Aggregate(AggFunc::CountStar), vec![]),
            DataType::Int64,
        ),
        "count" | "sum" | "avg" | "min" | "max" => {
            arity(1..=1)?;
            let (x, t) = bound[0].clone();
            let (agg, arg, out) = match name.as_str() {
                "count" => (AggFunc::Count, x, DataType::Int64),
                "sum" => {
                    let out = match &t {
                        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                            DataType::Int64
                        }
                        DataType::Float32 | DataType::Float64 | DataType::Null => DataType::Float64,
                        other => {
                            return Err(SchedulerError::bind(format!(
                                "sum() of {} is not defined in {f}",
                                sql_name(other)
                            )))
                        }
                    };
                    (AggFunc::Sum, cast_if_needed(x, &t, &out), out)
                }
                "avg" => {
                    if !(types::is_numeric(&t) || t == DataType::Null) {
                        return Err(SchedulerError::bind(format!(
                            "avg() of {} is not defined in {f}",
                            sql_name(&t)
                        )));
                    }
                    let x = cast_if_needed(x, &t, &DataType::Float64);
                    (AggFunc::Avg, x, DataType::Float64)
                }
                "min" => (AggFunc::Min, x, t),
                _ => (AggFunc::Max, x, t),
            };
            (func(WindowKind::Aggregate(agg), vec![arg]), out)
        }
        _ => {
            return Err(SchedulerError::unsupported(format!(
                "window function {name}(); Keel supports {SUPPORTED}"
            )))
        }
    })
}

/// An integer argument as BIGINT (NULL stays NULL), or an error naming `what`.
fn integer_arg(e: Expr, t: &DataType, what: &str, f: &ast::Function) -> Result<Expr> {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Null => {
            Ok(cast_if_needed(e, t, &DataType::Int64))
        }
        other => Err(SchedulerError::bind(format!(
            "{what} must be an integer, got {} in {f}",
            sql_name(other)
        ))),
    }
}
