//! Decorrelation: a subquery's bound plan reads columns of the query it
//! stands in (correlated references, [`super::scope::OUTER`]); this pulls
//! the conjuncts that read them up to the plan's top, so what remains
//! reads none and runs once, as one side of a join whose condition those
//! conjuncts become. The subquery is never run once per outer row.
//!
//! Each node keeps its columns where they were and appends the ones the
//! pulled conjuncts need, so nothing above has to be renumbered:
//! - a filter gives up its correlated conjuncts;
//! - a projection passes through the columns they read;
//! - an aggregate groups by the inner side of each correlated equality
//!   (`l_partkey = p_partkey` under `avg(l_quantity)` becomes `GROUP BY
//!   l_partkey`): grouped so, the aggregate gives per outer key what it
//!   gave per outer row. Only equalities can pass an aggregate;
//! - an inner join gives up correlated conjuncts of its ON clause and
//!   passes its sides' up; a LEFT, semi or anti join only its left side's.
//!
//! - a LIMIT (under an ORDER BY or not) over rows correlated by equalities
//!   keeps the top rows per correlation key: `row_number()` partitioned by
//!   the keys, ordered by the ORDER BY.
//!
//! A window, union or grouping set over correlated rows, and a non-equality
//! below an aggregate or a LIMIT, would need the per-row evaluation this
//! avoids; those are refused by name.

use arrow::datatypes::{Field, Schema};
use keel_proto::expr::{BinaryOp, Expr};
use keel_proto::plan::{JoinType, WindowFrame, WindowFunc, WindowKind};

use super::scope::as_outer;
use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;

/// A subquery's plan without correlated references, and the conjuncts
/// that related it to the enclosing query.
pub struct Decorrelated {
    /// The subquery's columns, then the columns `predicates` read.
    pub plan: LogicalPlan,
    /// Over `plan`'s columns and correlated references.
    pub predicates: Vec<Expr>,
    /// The top aggregate had no GROUP BY and now groups by correlation
    /// keys: over no rows the subquery gave one row (count 0), while the
    /// join will find none for that key.
    pub grouped_global: bool,
}

/// Whether `e` reads a correlated reference.
pub fn has_outer(e: &Expr) -> bool {
    let mut cols = vec![];
    e.columns(&mut cols);
    cols.iter().any(|&c| as_outer(c).is_some())
}

/// Whether `e` reads a column of its input (not a correlated reference).
pub fn has_inner(e: &Expr) -> bool {
    let mut cols = vec![];
    e.columns(&mut cols);
    cols.iter().any(|&c| as_outer(c).is_none())
}

/// Whether anything in `plan` reads a correlated reference.
pub fn plan_has_outer(plan: &LogicalPlan) -> bool {
    let mut found = false;
    visit_plan_exprs(plan, &mut |e| found |= has_outer(e));
    found
}

fn visit_plan_exprs(plan: &LogicalPlan, f: &mut dyn FnMut(&Expr)) {
    use LogicalPlan as P;
    match plan {
        P::Scan { filters, .. } => filters.iter().for_each(&mut *f),
        P::OneRow => {}
        P::Filter { input, predicate } => {
            f(predicate);
            visit_plan_exprs(input, f);
        }
        P::Project { input, exprs, .. } => {
            exprs.iter().for_each(&mut *f);
            visit_plan_exprs(input, f);
        }
        P::Aggregate {
            input,
            group_by,
            aggs,
            ..
        } => {
            group_by.iter().for_each(&mut *f);
            aggs.iter().flat_map(|a| a.inputs()).for_each(&mut *f);
            visit_plan_exprs(input, f);
        }
        P::Join {
            left,
            right,
            left_keys,
            right_keys,
            filter,
            ..
        } => {
            left_keys.iter().chain(right_keys).for_each(&mut *f);
            filter.iter().for_each(&mut *f);
            visit_plan_exprs(left, f);
            visit_plan_exprs(right, f);
        }
        P::AsofJoin {
            left,
            right,
            left_keys,
            right_keys,
            asof,
            ..
        } => {
            left_keys.iter().chain(right_keys).for_each(&mut *f);
            f(&asof.left_time);
            f(&asof.right_time);
            visit_plan_exprs(left, f);
            visit_plan_exprs(right, f);
        }
        P::Expand { input, keys, .. } => {
            keys.iter().for_each(&mut *f);
            visit_plan_exprs(input, f);
        }
        P::Sort { input, keys } => {
            keys.iter().for_each(|k| f(&k.expr));
            visit_plan_exprs(input, f);
        }
        P::Limit { input, .. } => visit_plan_exprs(input, f),
        P::Union { inputs } => inputs.iter().for_each(|i| visit_plan_exprs(i, f)),
        P::Window {
            input,
            partition_by,
            order_by,
            funcs,
            ..
        } => {
            partition_by.iter().for_each(&mut *f);
            order_by.iter().for_each(|k| f(&k.expr));
            funcs.iter().flat_map(|w| w.args.iter()).for_each(&mut *f);
            visit_plan_exprs(input, f);
        }
    }
}

fn refuse(what: &str) -> SchedulerError {
    SchedulerError::unsupported(format!(
        "{what} in a correlated subquery (one that reads a column of the enclosing query)"
    ))
}

/// Rewrites `plan` so no expression in it reads a correlated reference.
pub fn pull_up(plan: LogicalPlan, outer: Option<&LogicalPlan>) -> Result<Decorrelated> {
    if !plan_has_outer(&plan) {
        return Ok(Decorrelated {
            plan,
            predicates: vec![],
            grouped_global: false,
        });
    }
    use LogicalPlan as P;
    match plan {
        P::Filter { input, predicate } => {
            let mut d = pull_up(*input, outer)?;
            let mut keep = vec![];
            for c in conjuncts(predicate) {
                if has_outer(&c) {
                    d.predicates.push(c);
                } else {
                    keep.push(c);
                }
            }
            if let Some(predicate) = and_all(keep) {
                d.plan = P::Filter {
                    input: Box::new(d.plan),
                    predicate,
                };
            }
            Ok(d)
        }
        P::Project {
            input,
            mut exprs,
            schema,
        } => {
            if exprs.iter().any(has_outer) {
                return Err(refuse("a column of the enclosing query in the SELECT list"));
            }
            let mut d = pull_up(*input, outer)?;
            let input_schema = d.plan.schema();
            let mut fields: Vec<Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            // Each input column the pulled conjuncts read, passed through.
            let mut position = |c: usize, exprs: &mut Vec<Expr>| -> usize {
                if let Some(j) = exprs.iter().position(|e| *e == Expr::Column(c)) {
                    return j;
                }
                exprs.push(Expr::Column(c));
                let f = input_schema.field(c);
                fields.push(Field::new(
                    format!("__correlated_{}", fields.len()),
                    f.data_type().clone(),
                    true,
                ));
                exprs.len() - 1
            };
            let mut predicates = vec![];
            for p in d.predicates {
                let mut cols = vec![];
                p.columns(&mut cols);
                let mut map = std::collections::HashMap::new();
                for c in cols.into_iter().filter(|&c| as_outer(c).is_none()) {
                    map.insert(c, position(c, &mut exprs));
                }
                predicates.push(p.remap_columns(&|c| map.get(&c).copied().unwrap_or(c)));
            }
            d.predicates = predicates;
            d.plan = P::Project {
                input: Box::new(d.plan),
                exprs,
                schema: Schema::new(fields),
            };
            Ok(d)
        }
        P::Aggregate {
            input,
            mut group_by,
            aggs,
            schema,
        } => {
            if group_by.iter().any(has_outer) || aggs.iter().flat_map(|a| a.inputs()).any(has_outer)
            {
                return Err(refuse(
                    "a column of the enclosing query inside an aggregate",
                ));
            }
            let global = group_by.is_empty();
            let mut d = pull_up(*input, outer)?;
            if d.predicates
                .iter()
                .any(|p| correlated_equality(p).is_none())
            {
                // The conditions hold per outer value: evaluate them against
                // each distinct one, and group by it.
                let Some(outer) = outer else {
                    return Err(refuse(
                        "a condition other than an equality below an aggregate",
                    ));
                };
                d = with_domain(d, outer)?;
            }
            let input_schema = d.plan.schema();
            let old_groups = group_by.len();
            let mut predicates = vec![];
            let mut new_keys: Vec<Field> = vec![];
            for p in d.predicates {
                let Some((inner, outer)) = correlated_equality(&p) else {
                    return Err(refuse(&format!(
                        "a condition other than an equality ({}) below an aggregate",
                        p
                    )));
                };
                let k = match group_by.iter().position(|g| *g == inner) {
                    Some(k) => k,
                    None => {
                        let t = inner.data_type(&input_schema).map_err(|e| {
                            SchedulerError::bind(format!("correlated key {inner}: {e}"))
                        })?;
                        group_by.push(inner);
                        new_keys.push(Field::new(
                            format!("__correlated_key_{}", new_keys.len()),
                            t,
                            true,
                        ));
                        group_by.len() - 1
                    }
                };
                let op = match p {
                    Expr::Binary { op, .. } => op,
                    _ => BinaryOp::Eq,
                };
                predicates.push((k, outer, op));
            }
            // The aggregate's columns: its groups, the new keys, its aggregates;
            // shown as before, the new keys last.
            let n_aggs = aggs.len();
            let mut fields: Vec<Field> = schema.fields()[..old_groups]
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.extend(new_keys.iter().cloned());
            fields.extend(
                schema.fields()[old_groups..]
                    .iter()
                    .map(|f| f.as_ref().clone()),
            );
            let added = new_keys.len();
            let aggregate = P::Aggregate {
                input: Box::new(d.plan),
                group_by,
                aggs,
                schema: Schema::new(fields.clone()),
            };
            let old_width = old_groups + n_aggs;
            let position = |k: usize| -> usize {
                if k < old_groups {
                    k
                } else {
                    old_width + (k - old_groups)
                }
            };
            let mut exprs: Vec<Expr> = (0..old_groups).map(Expr::Column).collect();
            exprs.extend((0..n_aggs).map(|a| Expr::Column(old_groups + added + a)));
            exprs.extend((0..added).map(|k| Expr::Column(old_groups + k)));
            let mut out_fields: Vec<Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            out_fields.extend(new_keys);
            let plan = P::Project {
                input: Box::new(aggregate),
                exprs,
                schema: Schema::new(out_fields),
            };
            Ok(Decorrelated {
                plan,
                predicates: predicates
                    .into_iter()
                    .map(|(k, outer, op)| Expr::binary(op, Expr::Column(position(k)), outer))
                    .collect(),
                grouped_global: global,
            })
        }
        P::Join {
            left,
            right,
            join_type,
            left_keys,
            right_keys,
            filter,
        } => {
            if left_keys.iter().chain(&right_keys).any(has_outer) {
                return Err(refuse("a join key that is a column of the enclosing query"));
            }
            let semi = matches!(
                join_type,
                JoinType::Semi | JoinType::Anti | JoinType::NotExists
            );
            let (lw, rw) = (left.schema().fields().len(), right.schema().fields().len());
            let mut pulled_on = vec![];
            let mut keep_on = vec![];
            for c in filter.map(conjuncts).unwrap_or_default() {
                if has_outer(&c) {
                    pulled_on.push(c);
                } else {
                    keep_on.push(c);
                }
            }
            if !pulled_on.is_empty() && join_type != JoinType::Inner {
                return Err(refuse(&format!(
                    "a {join_type:?} join's ON clause reading the enclosing query"
                )));
            }
            if plan_has_outer(&right) && join_type != JoinType::Inner {
                return Err(refuse(&format!("the right side of a {join_type:?} join")));
            }
            if join_type == JoinType::Full && plan_has_outer(&left) {
                return Err(refuse("a FULL join"));
            }
            let l = pull_up(*left, outer)?;
            let r = pull_up(*right, outer)?;
            let (lw2, rw2) = (
                l.plan.schema().fields().len(),
                r.plan.schema().fields().len(),
            );
            let (le, re) = (lw2 - lw, rw2 - rw);
            // The join's output has (left, left extra, right, right extra);
            // shown as (left, right, left extra, right extra).
            let place = |i: usize| -> usize {
                if i < lw {
                    i
                } else if i < lw2 {
                    lw + rw + (i - lw)
                } else if i < lw2 + rw {
                    lw + (i - lw2)
                } else {
                    lw + rw + le + (i - lw2 - rw)
                }
            };
            let old_to_join = |c: usize| if c < lw { c } else { c + le };
            let inner_only = |e: &Expr, f: &dyn Fn(usize) -> usize| {
                e.remap_columns(&|c| if as_outer(c).is_some() { c } else { f(c) })
            };
            let filter = and_all(
                keep_on
                    .iter()
                    .map(|c| inner_only(c, &old_to_join))
                    .collect(),
            );
            let grouped_global = false;
            let join = P::Join {
                left: Box::new(l.plan),
                right: Box::new(r.plan),
                join_type,
                left_keys,
                right_keys,
                filter,
            };
            if semi {
                return Ok(Decorrelated {
                    plan: join,
                    predicates: l.predicates,
                    grouped_global,
                });
            }
            let mut predicates: Vec<Expr> = vec![];
            predicates.extend(l.predicates.iter().map(|p| inner_only(p, &place)));
            predicates.extend(
                r.predicates
                    .iter()
                    .map(|p| inner_only(p, &|c| place(lw2 + c))),
            );
            predicates.extend(
                pulled_on
                    .iter()
                    .map(|p| inner_only(p, &|c| place(old_to_join(c)))),
            );
            let plan = if le == 0 && re == 0 {
                join
            } else {
                let schema = join.schema();
                let mut order: Vec<usize> = (0..lw).collect();
                order.extend(lw2..lw2 + rw);
                order.extend(lw..lw2);
                order.extend(lw2 + rw..lw2 + rw2);
                P::Project {
                    exprs: order.iter().map(|&i| Expr::Column(i)).collect(),
                    schema: Schema::new(
                        order
                            .iter()
                            .map(|&i| schema.field(i).clone())
                            .collect::<Vec<_>>(),
                    ),
                    input: Box::new(join),
                }
            };
            Ok(Decorrelated {
                plan,
                predicates,
                grouped_global,
            })
        }
        P::Sort { input, keys } => {
            if keys.iter().any(|k| has_outer(&k.expr)) {
                return Err(refuse("ORDER BY a column of the enclosing query"));
            }
            let mut d = pull_up(*input, outer)?;
            d.plan = P::Sort {
                input: Box::new(d.plan),
                keys,
            };
            Ok(d)
        }
        P::Limit { input, skip, fetch } => {
            // The top rows per outer row: with equality correlations only,
            // per correlation key, numbered by the ORDER BY.
            let (order_by, below) = match *input {
                P::Sort { input, keys } => (keys, *input),
                other => (vec![], other),
            };
            if order_by.iter().any(|k| has_outer(&k.expr)) {
                return Err(refuse("ORDER BY a column of the enclosing query"));
            }
            let mut d = pull_up(below, outer)?;
            if d.predicates
                .iter()
                .any(|p| correlated_equality(p).is_none())
            {
                let Some(outer) = outer else {
                    return Err(refuse("LIMIT under a condition other than an equality"));
                };
                d = with_domain(d, outer)?;
            }
            let mut keys = vec![];
            for p in &d.predicates {
                match correlated_equality(p) {
                    Some((inner, _)) => keys.push(inner),
                    None => {
                        return Err(refuse(&format!(
                            "LIMIT under a condition other than an equality ({p})"
                        )))
                    }
                }
            }
            let schema = d.plan.schema();
            let width = schema.fields().len();
            let mut fields: Vec<Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new("__row", arrow::datatypes::DataType::Int64, true));
            let numbered = P::Window {
                input: Box::new(d.plan),
                partition_by: keys,
                order_by,
                funcs: vec![WindowFunc {
                    kind: WindowKind::RowNumber,
                    args: vec![],
                    frame: WindowFrame::DEFAULT,
                }],
                schema: Schema::new(fields),
            };
            let row = Expr::Column(width);
            let int = |v: usize| Expr::Literal(keel_proto::expr::ScalarValue::Int64(v as i64));
            let mut keep = vec![Expr::binary(BinaryOp::Gt, row.clone(), int(skip))];
            if let Some(n) = fetch {
                keep.push(Expr::binary(BinaryOp::LtEq, row, int(skip + n)));
            }
            let kept = P::Filter {
                input: Box::new(numbered),
                predicate: and_all(keep).expect("a bound"),
            };
            Ok(Decorrelated {
                plan: P::Project {
                    input: Box::new(kept),
                    exprs: (0..width).map(Expr::Column).collect(),
                    schema,
                },
                predicates: d.predicates,
                grouped_global: false,
            })
        }
        P::Union { .. } => Err(refuse("UNION")),
        P::Window { .. } => Err(refuse("a window function")),
        P::Expand { .. } => Err(refuse("GROUPING SETS")),
        P::AsofJoin { .. } => Err(refuse("an ASOF join")),
        P::Scan { .. } | P::OneRow => unreachable!("no expressions read the enclosing query"),
    }
}

/// The general case (Neumann and Kemper's dependent join): the distinct
/// values of the enclosing query's columns the conditions read (its
/// "domain") joined to every row of `d`, the conditions applied with those
/// values in place of the correlated references. What is left correlated
/// is that each domain column equals (NULL-safely) its outer column: an
/// equality the aggregate above can group by and the join use as a key.
fn with_domain(d: Decorrelated, outer: &LogicalPlan) -> Result<Decorrelated> {
    let mut refs: Vec<usize> = vec![];
    for p in &d.predicates {
        let mut cols = vec![];
        p.columns(&mut cols);
        for c in cols {
            match as_outer(c) {
                Some((1, i)) if !refs.contains(&i) => refs.push(i),
                Some((1, _)) | None => {}
                Some(_) => {
                    return Err(refuse(
                        "a reference two levels out with a condition other than an equality",
                    ))
                }
            }
        }
    }
    refs.sort_unstable();
    let outer_schema = outer.schema();
    let fields: Vec<Field> = refs
        .iter()
        .map(|&i| {
            let f = outer_schema.field(i);
            Field::new(
                format!("__domain_{}", f.name()),
                f.data_type().clone(),
                true,
            )
        })
        .collect();
    let domain = LogicalPlan::Aggregate {
        input: Box::new(outer.clone()),
        group_by: refs.iter().map(|&i| Expr::Column(i)).collect(),
        aggs: vec![],
        schema: Schema::new(fields),
    };
    let width = d.plan.schema().fields().len();
    let position = |i: usize| width + refs.iter().position(|&r| r == i).expect("collected");
    let predicate = and_all(
        d.predicates
            .iter()
            .map(|p| {
                p.remap_columns(&|c| match as_outer(c) {
                    Some((1, i)) => position(i),
                    _ => c,
                })
            })
            .collect(),
    );
    // Above the join, so filter pushdown makes its equalities hash keys.
    let product = LogicalPlan::Join {
        left: Box::new(d.plan),
        right: Box::new(domain),
        join_type: JoinType::Inner,
        left_keys: vec![],
        right_keys: vec![],
        filter: None,
    };
    let joined = match predicate {
        Some(predicate) => LogicalPlan::Filter {
            input: Box::new(product),
            predicate,
        },
        None => product,
    };
    Ok(Decorrelated {
        plan: joined,
        predicates: refs
            .iter()
            .map(|&i| {
                Expr::binary(
                    BinaryOp::IsNotDistinctFrom,
                    Expr::Column(position(i)),
                    Expr::Column(super::scope::outer_column(1, i)),
                )
            })
            .collect(),
        grouped_global: false,
    })
}

/// `inner = outer` (either way round) where one side reads only the
/// subquery's columns and the other only correlated references.
pub fn correlated_equality(p: &Expr) -> Option<(Expr, Expr)> {
    let Expr::Binary {
        op: BinaryOp::Eq | BinaryOp::IsNotDistinctFrom,
        left,
        right,
    } = p
    else {
        return None;
    };
    let pure_inner = |e: &Expr| !has_outer(e) && has_inner(e);
    let pure_outer = |e: &Expr| has_outer(e) && !has_inner(e);
    if pure_inner(left) && pure_outer(right) {
        Some((left.as_ref().clone(), right.as_ref().clone()))
    } else if pure_outer(left) && pure_inner(right) {
        Some((right.as_ref().clone(), left.as_ref().clone()))
    } else {
        None
    }
}

/// The AND-ed parts of `e` (see [`crate::optimizer::conjuncts`]).
pub fn conjuncts(e: Expr) -> Vec<Expr> {
    let mut out = vec![];
    crate::optimizer::conjuncts(e, &mut out);
    out
}

pub(crate) use crate::optimizer::and_all;
