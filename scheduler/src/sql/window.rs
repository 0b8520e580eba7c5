//! Window function calls: bound to Window nodes below the SELECT list.
//!
//! Every distinct call (`f(args) OVER (PARTITION BY … ORDER BY … frame)`)
//! found in the SELECT list, QUALIFY or ORDER BY becomes one function of a
//! Window node; calls sharing their PARTITION BY and ORDER BY share a node
//! (one exchange and one sort). Each node appends its results to its
//! input's columns, and the expressions above refer to them by the call's
//! text (see [`WindowColumn`]).

use arrow::datatypes::{DataType, Field, Schema};
use keel_proto::expr::{Expr, ScalarValue};
use keel_proto::plan::{AggFunc, FrameBound, SortKey, WindowFrame, WindowFunc, WindowKind};
use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::aggregates::contains_aggregate;
use super::expr::{ExprBinder, WindowColumn};
use super::literals::literal;
use super::scope::Scope;
use super::types::{self, cast_if_needed, sql_name};
use super::walk::function_args;
use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;

/// The window functions Keel computes, for error messages.
const SUPPORTED: &str =
    "row_number, rank, dense_rank, lag, lead, first_value, last_value, count, sum, avg, min, max";

/// Binds `calls` over `plan` (whose columns `scope` names): returns the plan
/// with Window nodes on top and where each call's result is.
pub fn bind_windows(
    plan: LogicalPlan,
    scope: &Scope,
    calls: &[&ast::Function],
) -> Result<(LogicalPlan, Vec<WindowColumn>)> {
    // Window nodes by (PARTITION BY, ORDER BY): their functions and names.
    let mut nodes: Vec<(
        Vec<Expr>,
        Vec<SortKey>,
        Vec<WindowFunc>,
        Vec<(String, DataType)>,
    )> = vec![];
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
        let mut plain = ExprBinder::new(scope);
        let partition_by = spec
            .partition_by
            .iter()
            .map(|e| plain.bind(e).map(|(x, _)| x))
            .collect::<Result<Vec<_>>>()?;
        let order_by = spec
            .order_by
            .iter()
            .map(|o| Ok(super::query::sort_key(plain.bind(&o.expr)?.0, o)))
            .collect::<Result<Vec<_>>>()?;
        let frame = frame(spec.window_frame.as_ref(), f)?;
        let (func, data_type) = window_func(f, scope, frame)?;
        let at = match nodes
            .iter()
            .position(|n| n.0 == partition_by && n.1 == order_by)
        {
            Some(i) => i,
            None => {
                nodes.push((partition_by, order_by, vec![], vec![]));
                nodes.len() - 1
            }
        };
        nodes[at].2.push(func);
        nodes[at].3.push((text, data_type));
    }
    let mut plan = plan;
    let mut columns = vec![];
    for (partition_by, order_by, funcs, names) in nodes {
        let input = plan.schema();
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (text, t) in names {
            columns.push(WindowColumn {
                call: text.clone(),
                column: fields.len(),
                data_type: t.clone(),
            });
            fields.push(Field::new(text, t, true));
        }
        plan = LogicalPlan::Window {
            input: Box::new(plan),
            partition_by,
            order_by,
            funcs,
            schema: Schema::new(fields),
        };
    }
    Ok((plan, columns))
}

/// The call's frame; the default when it names none.
fn frame(frame: Option<&ast::WindowFrame>, f: &ast::Function) -> Result<WindowFrame> {
    let Some(frame) = frame else {
        return Ok(WindowFrame::DEFAULT);
    };
    let rows = match frame.units {
        ast::WindowFrameUnits::Rows => true,
        ast::WindowFrameUnits::Range => false,
        ast::WindowFrameUnits::Groups => {
            return Err(SchedulerError::unsupported(format!("GROUPS frames in {f}")))
        }
    };
    let bound = |b: &ast::WindowFrameBound, start: bool| -> Result<FrameBound> {
        let offset = |e: &Option<Box<ast::Expr>>| -> Result<Option<u64>> {
            let Some(e) = e else {
                return Ok(None);
            };
            if !rows {
                return Err(SchedulerError::unsupported(format!(
                    "RANGE frames with an offset ({e}) in {f}; use ROWS, or UNBOUNDED / CURRENT ROW"
                )));
            }
            match e.as_ref() {
                ast::Expr::Value(v) => match literal(&v.value)?.0 {
                    Expr::Literal(ScalarValue::Int64(n)) if n >= 0 => Ok(Some(n as u64)),
                    _ => Err(SchedulerError::bind(format!(
                        "a frame offset must be a non-negative integer, got {e} in {f}"
                    ))),
                },
                other => Err(SchedulerError::bind(format!(
                    "a frame offset must be a constant, got {other} in {f}"
                ))),
            }
        };
        Ok(match b {
            ast::WindowFrameBound::CurrentRow => FrameBound::CurrentRow,
            ast::WindowFrameBound::Preceding(e) => match offset(e)? {
                None => FrameBound::UnboundedPreceding,
                Some(n) => FrameBound::Preceding(n),
            },
            ast::WindowFrameBound::Following(e) => match offset(e)? {
                None => FrameBound::UnboundedFollowing,
                Some(n) => FrameBound::Following(n),
            },
        })
        .and_then(|bound| match (start, bound) {
            (true, FrameBound::UnboundedFollowing) | (false, FrameBound::UnboundedPreceding) => {
                Err(SchedulerError::bind(format!(
                    "a frame cannot {} UNBOUNDED {} in {f}",
                    if start { "start at" } else { "end at" },
                    if start { "FOLLOWING" } else { "PRECEDING" }
                )))
            }
            _ => Ok(bound),
        })
    };
    Ok(WindowFrame {
        rows,
        start: bound(&frame.start_bound, true)?,
        end: match &frame.end_bound {
            Some(b) => bound(b, false)?,
            None => FrameBound::CurrentRow,
        },
    })
}

/// The call as a window function, and its result type.
fn window_func(
    f: &ast::Function,
    scope: &Scope,
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
    if args.iter().any(|a| contains_aggregate(a)) {
        return Err(SchedulerError::unsupported(format!(
            "aggregates inside window function {f}; compute the aggregate in a subquery first"
        )));
    }
    let mut plain = ExprBinder::new(scope);
    let bound = args
        .iter()
        .map(|a| plain.bind(a))
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
