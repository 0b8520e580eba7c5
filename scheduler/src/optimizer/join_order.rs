//! Join order without needless cross products.
//!
//! `FROM part, supplier, partsupp … WHERE p_partkey = ps_partkey AND
//! s_suppkey = ps_suppkey` written in that order joins part with supplier
//! first, with no condition between them: a cross product of every part
//! with every supplier, the conditions applied only one join later. This
//! rule takes each region of inner joins (the joins and the filters between
//! them, once filter pushdown has placed the conditions), keeps its
//! relations in their written order but never takes one that no condition
//! ties to those already joined while another one is tied: each step adds
//! the first relation in written order that an equality connects to the
//! joined ones, and only when none is connected the next one unconnected
//! (a cross product the query really asks for). Every condition is placed
//! at the first join that has all its columns: equalities between the two
//! sides as hash keys, the rest as the join's filter. A projection on top
//! restores the region's column order, so nothing above changes.
//!
//! Sound because inner joins commute and associate, and a condition over a
//! set of relations filters the same rows wherever those relations meet.
//! Choosing among connected orders by cost is the cost-based planner's job.

use keel_proto::expr::{BinaryOp, Expr};
use keel_proto::plan::JoinType;

use super::conjuncts;
use crate::logical::LogicalPlan;

/// Rewrites every inner-join region of `plan` whose written order has a
/// cross product that a connected order avoids.
pub fn reorder(plan: LogicalPlan) -> LogicalPlan {
    if is_region(&plan) {
        let mut leaves = vec![];
        let mut preds = vec![];
        flatten(plan.clone(), 0, &mut leaves, &mut preds);
        if leaves.len() >= 3 {
            let leaves: Vec<LogicalPlan> = leaves.into_iter().map(reorder).collect();
            if let Some(better) = connected_order(&leaves, &preds) {
                return build(leaves, preds, &better);
            }
            return rebuild_children(plan);
        }
    }
    rebuild_children(plan)
}

fn rebuild_children(plan: LogicalPlan) -> LogicalPlan {
    super::map_children(plan, reorder)
}

fn is_region(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Join {
            join_type: JoinType::Inner,
            ..
        } => true,
        LogicalPlan::Filter { input, .. } => is_region(input),
        _ => false,
    }
}

fn width(plan: &LogicalPlan) -> usize {
    plan.schema().fields().len()
}

/// The region's relations in written order, and its conditions over their
/// columns side by side (relation i's columns after those of 0..i).
fn flatten(plan: LogicalPlan, offset: usize, leaves: &mut Vec<LogicalPlan>, preds: &mut Vec<Expr>) {
    let shift = |e: &Expr, by: usize| e.remap_columns(&|c| c + by);
    match plan {
        LogicalPlan::Join {
            left,
            right,
            join_type: JoinType::Inner,
            left_keys,
            right_keys,
            filter,
        } => {
            let wl = width(&left);
            for (l, r) in left_keys.iter().zip(&right_keys) {
                preds.push(Expr::binary(
                    BinaryOp::Eq,
                    shift(l, offset),
                    shift(r, offset + wl),
                ));
            }
            if let Some(f) = filter {
                let mut parts = vec![];
                conjuncts(f, &mut parts);
                preds.extend(parts.iter().map(|p| shift(p, offset)));
            }
            flatten(*left, offset, leaves, preds);
            flatten(*right, offset + wl, leaves, preds);
        }
        LogicalPlan::Filter { input, predicate } if is_region(&input) => {
            let mut parts = vec![];
            conjuncts(predicate, &mut parts);
            preds.extend(parts.iter().map(|p| shift(p, offset)));
            flatten(*input, offset, leaves, preds);
        }
        leaf => leaves.push(leaf),
    }
}

/// The relations each condition reads (by position in `leaves`).
fn relations(e: &Expr, bounds: &[(usize, usize)]) -> Vec<usize> {
    let mut cols = vec![];
    e.columns(&mut cols);
    let mut out: Vec<usize> = cols
        .iter()
        .filter_map(|&c| bounds.iter().position(|&(s, w)| c >= s && c < s + w))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn bounds(leaves: &[LogicalPlan]) -> Vec<(usize, usize)> {
    let mut start = 0;
    leaves
        .iter()
        .map(|l| {
            let w = width(l);
            start += w;
            (start - w, w)
        })
        .collect()
}

/// Whether `e` is an equality between an expression of relations in `a`
/// and one of relation `b`.
fn connects(e: &Expr, bounds: &[(usize, usize)], joined: &[usize], next: usize) -> bool {
    let Expr::Binary {
        op: BinaryOp::Eq,
        left,
        right,
    } = e
    else {
        return false;
    };
    let (l, r) = (relations(left, bounds), relations(right, bounds));
    let inside = |rs: &[usize]| !rs.is_empty() && rs.iter().all(|x| joined.contains(x));
    let is_next = |rs: &[usize]| rs == [next];
    (inside(&l) && is_next(&r)) || (is_next(&l) && inside(&r))
}

/// The written order made connected, if the written one has an avoidable
/// cross product; None when it has none.
fn connected_order(leaves: &[LogicalPlan], preds: &[Expr]) -> Option<Vec<usize>> {
    let bounds = bounds(leaves);
    let linked =
        |joined: &[usize], next: usize| preds.iter().any(|p| connects(p, &bounds, joined, next));
    let mut order = vec![0];
    let mut written_has_gap = false;
    for i in 1..leaves.len() {
        if !linked(&(0..i).collect::<Vec<_>>(), i) {
            written_has_gap = true;
        }
    }
    if !written_has_gap {
        return None;
    }
    while order.len() < leaves.len() {
        let rest: Vec<usize> = (0..leaves.len()).filter(|i| !order.contains(i)).collect();
        let next = rest
            .iter()
            .copied()
            .find(|&i| linked(&order, i))
            .unwrap_or(rest[0]);
        order.push(next);
    }
    (order != (0..leaves.len()).collect::<Vec<_>>()).then_some(order)
}

/// Left-deep joins in `order`, each condition at the first join holding
/// its columns, then the region's columns in their original order.
fn build(leaves: Vec<LogicalPlan>, preds: Vec<Expr>, order: &[usize]) -> LogicalPlan {
    let bounds = bounds(&leaves);
    let total: usize = bounds.iter().map(|b| b.1).sum();
    let mut slots: Vec<Option<LogicalPlan>> = leaves.into_iter().map(Some).collect();
    let mut used = vec![false; preds.len()];
    // Where each region column sits in the plan built so far.
    let mut position = vec![usize::MAX; total];
    let first = order[0];
    let mut plan = slots[first].take().expect("each relation once");
    let (s, w) = bounds[first];
    for k in 0..w {
        position[s + k] = k;
    }
    let mut joined = vec![first];
    let mut built_width = w;
    for &next in &order[1..] {
        let right = slots[next].take().expect("each relation once");
        let (s, w) = bounds[next];
        let (lschema, rschema) = (plan.schema(), right.schema());
        let mut left_keys = vec![];
        let mut right_keys = vec![];
        let mut filters = vec![];
        let mut with_next = joined.clone();
        with_next.push(next);
        for (i, p) in preds.iter().enumerate() {
            if used[i] {
                continue;
            }
            let rs = relations(p, &bounds);
            if !rs.iter().all(|r| with_next.contains(r)) {
                continue;
            }
            used[i] = true;
            // Over (built so far, next): the built plan's positions, then next's columns.
            let local = |e: &Expr| {
                e.remap_columns(&|c| {
                    if c >= s && c < s + w {
                        built_width + (c - s)
                    } else {
                        position[c]
                    }
                })
            };
            if connects(p, &bounds, &joined, next) {
                if let Expr::Binary { left, right: r, .. } = p {
                    let (outer, inner) = if relations(left, &bounds) == [next] {
                        (r.as_ref(), left.as_ref())
                    } else {
                        (left.as_ref(), r.as_ref())
                    };
                    let lk = local(outer);
                    let rk = local(inner).remap_columns(&|c| c - built_width);
                    let same = matches!(
                        (lk.data_type(&lschema), rk.data_type(&rschema)),
                        (Ok(a), Ok(b)) if a == b
                    );
                    if same {
                        left_keys.push(lk);
                        right_keys.push(rk);
                        continue;
                    }
                }
            }
            filters.push(local(p));
        }
        plan = LogicalPlan::Join {
            left: Box::new(plan),
            right: Box::new(right),
            join_type: JoinType::Inner,
            left_keys,
            right_keys,
            filter: filters
                .into_iter()
                .reduce(|a, b| Expr::binary(BinaryOp::And, a, b)),
        };
        for k in 0..w {
            position[s + k] = built_width + k;
        }
        built_width += w;
        joined.push(next);
    }
    // Conditions on no relation (constants) filter the whole.
    let rest: Vec<Expr> = preds
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(p, _)| p.remap_columns(&|c| position[c]))
        .collect();
    if let Some(predicate) = rest
        .into_iter()
        .reduce(|a, b| Expr::binary(BinaryOp::And, a, b))
    {
        plan = LogicalPlan::Filter {
            input: Box::new(plan),
            predicate,
        };
    }
    let schema = plan.schema();
    let exprs: Vec<Expr> = (0..total).map(|c| Expr::Column(position[c])).collect();
    let fields: Vec<_> = (0..total)
        .map(|c| schema.field(position[c]).clone())
        .collect();
    LogicalPlan::Project {
        input: Box::new(plan),
        exprs,
        schema: arrow::datatypes::Schema::new(fields),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::TableSource;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn scan(name: &str, cols: &[&str]) -> LogicalPlan {
        let schema = Schema::new(
            cols.iter()
                .map(|c| Field::new(format!("{name}_{c}"), DataType::Int64, true))
                .collect::<Vec<_>>(),
        );
        LogicalPlan::Scan {
            table: Arc::new(TableSource {
                pattern: name.into(),
                schema,
                files: vec![],
            }),
            columns: (0..cols.len()).collect(),
            filters: vec![],
        }
    }

    fn cross(l: LogicalPlan, r: LogicalPlan) -> LogicalPlan {
        LogicalPlan::Join {
            left: Box::new(l),
            right: Box::new(r),
            join_type: JoinType::Inner,
            left_keys: vec![],
            right_keys: vec![],
            filter: None,
        }
    }

    fn eq(a: usize, b: usize) -> Expr {
        Expr::binary(BinaryOp::Eq, Expr::Column(a), Expr::Column(b))
    }

    /// The joins of a plan, outermost first, as (keys, has a filter).
    fn joins(plan: &LogicalPlan, out: &mut Vec<(usize, bool)>) {
        match plan {
            LogicalPlan::Join {
                left,
                right,
                left_keys,
                filter,
                ..
            } => {
                out.push((left_keys.len(), filter.is_some()));
                joins(left, out);
                joins(right, out);
            }
            LogicalPlan::Filter { input, .. } | LogicalPlan::Project { input, .. } => {
                joins(input, out)
            }
            _ => {}
        }
    }

    #[test]
    fn a_cross_product_the_conditions_avoid_becomes_equi_joins() {
        // part(0: key), supplier(1: key), partsupp(2: part, 3: supp): written
        // order meets part and supplier with no condition.
        let written = LogicalPlan::Filter {
            input: Box::new(cross(
                cross(scan("part", &["key"]), scan("supplier", &["key"])),
                scan("partsupp", &["part", "supp"]),
            )),
            predicate: Expr::binary(BinaryOp::And, eq(0, 2), eq(1, 3)),
        };
        let before = written.schema();
        let plan = reorder(written);
        assert_eq!(plan.schema(), before, "columns keep their order");
        let mut js = vec![];
        joins(&plan, &mut js);
        assert_eq!(
            js,
            vec![(1, false), (1, false)],
            "two hash joins, no cross product"
        );
        // part first, then partsupp (tied to part), then supplier.
        let LogicalPlan::Project { exprs, .. } = &plan else {
            panic!("{plan:?}")
        };
        assert_eq!(
            exprs,
            &vec![
                Expr::Column(0),
                Expr::Column(3),
                Expr::Column(1),
                Expr::Column(2)
            ]
        );
    }

    #[test]
    fn a_connected_written_order_is_kept() {
        let written = LogicalPlan::Filter {
            input: Box::new(cross(
                cross(scan("a", &["k"]), scan("b", &["k"])),
                scan("c", &["k"]),
            )),
            predicate: Expr::binary(BinaryOp::And, eq(0, 1), eq(1, 2)),
        };
        let plan = reorder(written.clone());
        assert_eq!(format!("{plan:?}"), format!("{written:?}"));
    }
}
