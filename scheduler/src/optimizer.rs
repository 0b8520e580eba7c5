//! Logical rewrites: push filters toward scans and through joins, then
//! prune every column no one reads, so scans read only what the query uses.

use arrow::datatypes::Schema;
use keel_proto::expr::{BinaryOp, Expr};
use keel_proto::plan::{Asof, JoinType};

use crate::logical::LogicalPlan;

mod join_order;

pub fn optimize(plan: LogicalPlan) -> LogicalPlan {
    let plan = push_filters(plan);
    let plan = join_order::reorder(plan);
    let n = plan.schema().fields().len();
    prune(plan, &vec![true; n]).0
}

/// The AND-ed parts of `e`; a conjunct that is an OR whose branches all
/// hold the same conjuncts gives those up as conjuncts of their own
/// ([`factor_or`]), so they can become join keys and pushed filters.
pub(crate) fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        Expr::Binary {
            op: BinaryOp::Or, ..
        } => match factor_or(e) {
            Ok(factored) => conjuncts(factored, out),
            Err(unchanged) => out.push(unchanged),
        },
        other => out.push(other),
    }
}

/// `(a AND b) OR (a AND c)` as `a AND (b OR c)`: the conjuncts every
/// branch of a disjunction holds, pulled in front of it (TPC-H q19's join
/// key sits in each of its three branches). A branch left with nothing
/// makes the OR true. Err gives back a disjunction with nothing in common.
fn factor_or(e: Expr) -> Result<Expr, Expr> {
    fn branches(e: Expr, out: &mut Vec<Expr>) {
        match e {
            Expr::Binary {
                op: BinaryOp::Or,
                left,
                right,
            } => {
                branches(*left, out);
                branches(*right, out);
            }
            other => out.push(other),
        }
    }
    fn parts(e: &Expr, out: &mut Vec<Expr>) {
        match e {
            Expr::Binary {
                op: BinaryOp::And,
                left,
                right,
            } => {
                parts(left, out);
                parts(right, out);
            }
            other => out.push(other.clone()),
        }
    }
    let mut bs = vec![];
    branches(e.clone(), &mut bs);
    let split: Vec<Vec<Expr>> = bs
        .iter()
        .map(|b| {
            let mut p = vec![];
            parts(b, &mut p);
            p
        })
        .collect();
    let common: Vec<Expr> = split[0]
        .iter()
        .filter(|c| split[1..].iter().all(|s| s.contains(c)))
        .fold(vec![], |mut acc, c| {
            if !acc.contains(c) {
                acc.push(c.clone());
            }
            acc
        });
    if common.is_empty() {
        return Err(e);
    }
    let rest: Vec<Option<Expr>> = split
        .into_iter()
        .map(|s| and_all(s.into_iter().filter(|c| !common.contains(c)).collect()))
        .collect();
    let mut out = common;
    // A branch with nothing left is true, and so is the whole OR.
    if rest.iter().all(Option::is_some) {
        let or = rest
            .into_iter()
            .flatten()
            .reduce(|a, b| Expr::binary(BinaryOp::Or, a, b))
            .expect("two branches or more");
        out.push(or);
    }
    Ok(and_all(out).expect("a common conjunct"))
}

pub(crate) fn and_all(mut es: Vec<Expr>) -> Option<Expr> {
    let first = if es.is_empty() {
        return None;
    } else {
        es.remove(0)
    };
    Some(
        es.into_iter()
            .fold(first, |a, b| Expr::binary(BinaryOp::And, a, b)),
    )
}

fn columns(e: &Expr) -> Vec<usize> {
    let mut c = vec![];
    e.columns(&mut c);
    c
}

/// Which input of a join a predicate over its output reads.
enum Side {
    Left,
    Right,
    /// Both inputs, or none (a constant).
    Both,
}

fn side_of(p: &Expr, left_columns: usize) -> Side {
    let cols = columns(p);
    if cols.is_empty() {
        Side::Both
    } else if cols.iter().all(|&c| c < left_columns) {
        Side::Left
    } else if cols.iter().all(|&c| c >= left_columns) {
        Side::Right
    } else {
        Side::Both
    }
}

fn filtered(input: LogicalPlan, preds: Vec<Expr>) -> LogicalPlan {
    match and_all(preds) {
        Some(predicate) => LogicalPlan::Filter {
            input: Box::new(input),
            predicate,
        },
        None => input,
    }
}

fn push_filters(plan: LogicalPlan) -> LogicalPlan {
    match plan {
        LogicalPlan::Filter { input, predicate } => {
            let mut preds = vec![];
            conjuncts(predicate, &mut preds);
            push_into(*input, preds)
        }
        LogicalPlan::Join {
            left,
            right,
            join_type,
            left_keys,
            right_keys,
            filter,
        } => {
            let nl = left.schema().fields().len();
            let mut keep = vec![];
            let (mut to_left, mut to_right) = (vec![], vec![]);
            if let Some(f) = filter {
                let mut preds = vec![];
                conjuncts(f, &mut preds);
                for p in preds {
                    match (side_of(&p, nl), join_type) {
                        // A FULL join keeps the rows its ON clause rejects.
                        (_, JoinType::Full) => keep.push(p),
                        // Filters the build rows a probe row may match: valid for the other join types.
                        (Side::Right, _) => to_right.push(p.remap_columns(&|c| c - nl)),
                        (Side::Left, JoinType::Inner) => to_left.push(p),
                        _ => keep.push(p),
                    }
                }
            }
            LogicalPlan::Join {
                left: Box::new(push_filters(filtered(*left, to_left))),
                right: Box::new(push_filters(filtered(*right, to_right))),
                join_type,
                left_keys,
                right_keys,
                filter: and_all(keep),
            }
        }
        other => map_children(other, push_filters),
    }
}

/// Places `preds` (conjuncts over `plan`'s output) as low as they can go.
fn push_into(plan: LogicalPlan, preds: Vec<Expr>) -> LogicalPlan {
    match plan {
        LogicalPlan::Filter { input, predicate } => {
            let mut all = preds;
            conjuncts(predicate, &mut all);
            push_into(*input, all)
        }
        LogicalPlan::Scan {
            table,
            columns,
            mut filters,
        } => {
            filters.extend(preds.iter().cloned());
            filtered(
                LogicalPlan::Scan {
                    table,
                    columns,
                    filters,
                },
                preds,
            )
        }
        LogicalPlan::Join {
            left,
            right,
            join_type,
            left_keys,
            right_keys,
            filter,
        } => {
            let nl = left.schema().fields().len();
            let (mut to_left, mut to_right, mut keep, mut on) = (vec![], vec![], vec![], vec![]);
            for p in preds {
                // WHERE over a LEFT join may filter the left rows, never the right ones
                // (that would turn dropped rows into NULL-extended ones).
                match (side_of(&p, nl), join_type) {
                    // Below a FULL join a filter would turn dropped rows into NULL-extended ones.
                    (_, JoinType::Full) => keep.push(p),
                    (Side::Left, _) => to_left.push(p),
                    (Side::Right, JoinType::Inner) => to_right.push(p.remap_columns(&|c| c - nl)),
                    // WHERE over both sides of an inner join is part of its condition.
                    (Side::Both, JoinType::Inner) if !columns(&p).is_empty() => on.push(p),
                    _ => keep.push(p),
                }
            }
            let (mut left_keys, mut right_keys, mut filter) = (left_keys, right_keys, filter);
            if !on.is_empty() {
                let (lschema, rschema) = (left.schema(), right.schema());
                let mut rest = filter.into_iter().collect::<Vec<_>>();
                for p in on {
                    match equi_key(&p, nl, &lschema, &rschema) {
                        Some((l, r)) => {
                            left_keys.push(l);
                            right_keys.push(r);
                        }
                        None => rest.push(p),
                    }
                }
                filter = and_all(rest);
            }
            let join = push_filters(LogicalPlan::Join {
                left: Box::new(filtered(*left, to_left)),
                right: Box::new(filtered(*right, to_right)),
                join_type,
                left_keys,
                right_keys,
                filter,
            });
            filtered(join, keep)
        }
        LogicalPlan::AsofJoin {
            left,
            right,
            outer,
            left_keys,
            right_keys,
            asof,
        } => {
            // Each left row's match does not depend on the other left rows, so
            // left predicates go below; right ones would change which row matches.
            let nl = left.schema().fields().len();
            let (to_left, keep): (Vec<_>, Vec<_>) = preds
                .into_iter()
                .partition(|p| matches!(side_of(p, nl), Side::Left));
            let join = LogicalPlan::AsofJoin {
                left: Box::new(push_filters(filtered(*left, to_left))),
                right: Box::new(push_filters(*right)),
                outer,
                left_keys,
                right_keys,
                asof,
            };
            filtered(join, keep)
        }
        // Through a projection, a predicate that reads only columns the
        // projection passes through (renamed or reordered) goes below it;
        // one reading a computed column stays above. The subqueries joined
        // onto a FROM clause sit under such a projection.
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => {
            let passed = |c: usize| match exprs.get(c) {
                Some(Expr::Column(j)) => Some(*j),
                _ => None,
            };
            let (below, keep): (Vec<_>, Vec<_>) = preds
                .into_iter()
                .partition(|p| columns(p).iter().all(|&c| passed(c).is_some()));
            let below = below
                .into_iter()
                .map(|p| p.remap_columns(&|c| passed(c).expect("passed through")))
                .collect();
            let project = LogicalPlan::Project {
                input: Box::new(push_into(*input, below)),
                exprs,
                schema,
            };
            filtered(project, keep)
        }
        other => filtered(push_filters(other), preds),
    }
}

/// `l = r` with `l` over the left side and `r` over the right, of one type:
/// a hash key pair (the right one over the right side's own columns).
fn equi_key(p: &Expr, nl: usize, left: &Schema, right: &Schema) -> Option<(Expr, Expr)> {
    let Expr::Binary {
        op: BinaryOp::Eq,
        left: a,
        right: b,
    } = p
    else {
        return None;
    };
    let (l, r) = match (side_of(a, nl), side_of(b, nl)) {
        (Side::Left, Side::Right) => (a.as_ref(), b.as_ref()),
        (Side::Right, Side::Left) => (b.as_ref(), a.as_ref()),
        _ => return None,
    };
    let r = r.remap_columns(&|c| c - nl);
    let same = match (l.data_type(left), r.data_type(right)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    };
    same.then(|| (l.clone(), r))
}

fn map_children(plan: LogicalPlan, f: fn(LogicalPlan) -> LogicalPlan) -> LogicalPlan {
    let b = |p: Box<LogicalPlan>| Box::new(f(*p));
    match plan {
        LogicalPlan::Filter { input, predicate } => LogicalPlan::Filter {
            input: b(input),
            predicate,
        },
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => LogicalPlan::Project {
            input: b(input),
            exprs,
            schema,
        },
        LogicalPlan::Aggregate {
            input,
            group_by,
            aggs,
            schema,
        } => LogicalPlan::Aggregate {
            input: b(input),
            group_by,
            aggs,
            schema,
        },
        LogicalPlan::Join {
            left,
            right,
            join_type,
            left_keys,
            right_keys,
            filter,
        } => LogicalPlan::Join {
            left: b(left),
            right: b(right),
            join_type,
            left_keys,
            right_keys,
            filter,
        },
        LogicalPlan::AsofJoin {
            left,
            right,
            outer,
            left_keys,
            right_keys,
            asof,
        } => LogicalPlan::AsofJoin {
            left: b(left),
            right: b(right),
            outer,
            left_keys,
            right_keys,
            asof,
        },
        LogicalPlan::Sort { input, keys } => LogicalPlan::Sort {
            input: b(input),
            keys,
        },
        LogicalPlan::Expand {
            input,
            keys,
            sets,
            schema,
        } => LogicalPlan::Expand {
            input: b(input),
            keys,
            sets,
            schema,
        },
        LogicalPlan::Limit { input, skip, fetch } => LogicalPlan::Limit {
            input: b(input),
            skip,
            fetch,
        },
        LogicalPlan::Union { inputs } => LogicalPlan::Union {
            inputs: inputs.into_iter().map(f).collect(),
        },
        LogicalPlan::Window {
            input,
            partition_by,
            order_by,
            funcs,
            schema,
        } => LogicalPlan::Window {
            input: b(input),
            partition_by,
            order_by,
            funcs,
            schema,
        },
        leaf @ (LogicalPlan::Scan { .. } | LogicalPlan::OneRow) => leaf,
    }
}

/// Old output index -> new output index (None when pruned).
type Mapping = Vec<Option<usize>>;

fn remap(e: &Expr, map: &Mapping) -> Expr {
    e.remap_columns(&|c| map[c].expect("pruned column still referenced"))
}

fn require(req: &mut [bool], e: &Expr) {
    for c in columns(e) {
        req[c] = true;
    }
}

/// Keeps at least one column, so batches keep their row counts through every exchange.
fn at_least_one(req: &mut [bool]) {
    if !req.is_empty() && !req.iter().any(|r| *r) {
        req[0] = true;
    }
}

fn mapping_of(keep: &[bool]) -> Mapping {
    let mut next = 0;
    keep.iter()
        .map(|&k| {
            if k {
                next += 1;
                Some(next - 1)
            } else {
                None
            }
        })
        .collect()
}

fn prune(plan: LogicalPlan, required: &[bool]) -> (LogicalPlan, Mapping) {
    match plan {
        LogicalPlan::Scan {
            table,
            columns: cols,
            filters,
        } => {
            let mut keep = required.to_vec();
            filters.iter().for_each(|f| require(&mut keep, f));
            at_least_one(&mut keep);
            let map = mapping_of(&keep);
            let new_cols = cols
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(c, _)| *c)
                .collect();
            let filters = filters.iter().map(|f| remap(f, &map)).collect();
            (
                LogicalPlan::Scan {
                    table,
                    columns: new_cols,
                    filters,
                },
                map,
            )
        }
        LogicalPlan::OneRow => (LogicalPlan::OneRow, vec![]),
        LogicalPlan::Filter { input, predicate } => {
            let mut req = required.to_vec();
            require(&mut req, &predicate);
            let (child, map) = prune(*input, &req);
            let predicate = remap(&predicate, &map);
            (
                LogicalPlan::Filter {
                    input: Box::new(child),
                    predicate,
                },
                map,
            )
        }
        LogicalPlan::Project {
            input,
            exprs,
            schema,
        } => {
            let mut keep = required.to_vec();
            at_least_one(&mut keep);
            let n_in = input.schema().fields().len();
            let mut req = vec![false; n_in];
            exprs
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .for_each(|(e, _)| require(&mut req, e));
            at_least_one(&mut req);
            let (child, cmap) = prune(*input, &req);
            let map = mapping_of(&keep);
            let new_exprs = exprs
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(e, _)| remap(e, &cmap))
                .collect();
            let fields: Vec<_> = schema
                .fields()
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(f, _)| f.clone())
                .collect();
            let schema = arrow::datatypes::Schema::new(fields);
            (
                LogicalPlan::Project {
                    input: Box::new(child),
                    exprs: new_exprs,
                    schema,
                },
                map,
            )
        }
        LogicalPlan::Aggregate {
            input,
            group_by,
            aggs,
            schema,
        } => {
            let n_in = input.schema().fields().len();
            let mut req = vec![false; n_in];
            group_by.iter().for_each(|g| require(&mut req, g));
            aggs.iter()
                .flat_map(|a| a.inputs())
                .for_each(|a| require(&mut req, a));
            at_least_one(&mut req);
            let (child, cmap) = prune(*input, &req);
            let group_by = group_by.iter().map(|g| remap(g, &cmap)).collect();
            let aggs = aggs
                .into_iter()
                .map(|mut a| {
                    a.inputs_mut().for_each(|e| *e = remap(e, &cmap));
                    a
                })
                .collect();
            let n = schema.fields().len();
            (
                LogicalPlan::Aggregate {
                    input: Box::new(child),
                    group_by,
                    aggs,
                    schema,
                },
                (0..n).map(Some).collect(),
            )
        }
        LogicalPlan::Join {
            left,
            right,
            join_type,
            left_keys,
            right_keys,
            filter,
        } => {
            let nl = left.schema().fields().len();
            let nr = right.schema().fields().len();
            let mut lreq = vec![false; nl];
            let mut rreq = vec![false; nr];
            for (i, r) in required.iter().enumerate() {
                if *r {
                    if i < nl {
                        lreq[i] = true;
                    } else {
                        rreq[i - nl] = true;
                    }
                }
            }
            left_keys.iter().for_each(|k| require(&mut lreq, k));
            right_keys.iter().for_each(|k| require(&mut rreq, k));
            if let Some(f) = &filter {
                for c in columns(f) {
                    if c < nl {
                        lreq[c] = true;
                    } else {
                        rreq[c - nl] = true;
                    }
                }
            }
            at_least_one(&mut lreq);
            at_least_one(&mut rreq);
            let (l, lmap) = prune(*left, &lreq);
            let (r, rmap) = prune(*right, &rreq);
            let new_nl = lmap.iter().flatten().count();
            let mut map: Mapping = lmap.clone();
            if !matches!(
                join_type,
                JoinType::Semi | JoinType::Anti | JoinType::NotExists
            ) {
                map.extend(rmap.iter().map(|m| m.map(|i| i + new_nl)));
            }
            let mut combined: Mapping = lmap.clone();
            combined.extend(rmap.iter().map(|m| m.map(|i| i + new_nl)));
            let join = LogicalPlan::Join {
                left: Box::new(l),
                right: Box::new(r),
                join_type,
                left_keys: left_keys.iter().map(|k| remap(k, &lmap)).collect(),
                right_keys: right_keys.iter().map(|k| remap(k, &rmap)).collect(),
                filter: filter.as_ref().map(|f| remap(f, &combined)),
            };
            (join, map)
        }
        LogicalPlan::AsofJoin {
            left,
            right,
            outer,
            left_keys,
            right_keys,
            asof,
        } => {
            let nl = left.schema().fields().len();
            let mut lreq = required[..nl].to_vec();
            let mut rreq = required[nl..].to_vec();
            left_keys.iter().for_each(|k| require(&mut lreq, k));
            right_keys.iter().for_each(|k| require(&mut rreq, k));
            require(&mut lreq, &asof.left_time);
            require(&mut rreq, &asof.right_time);
            let (l, lmap) = prune(*left, &lreq);
            let (r, rmap) = prune(*right, &rreq);
            let new_nl = lmap.iter().flatten().count();
            let mut map: Mapping = lmap.clone();
            map.extend(rmap.iter().map(|m| m.map(|i| i + new_nl)));
            let join = LogicalPlan::AsofJoin {
                left: Box::new(l),
                right: Box::new(r),
                outer,
                left_keys: left_keys.iter().map(|k| remap(k, &lmap)).collect(),
                right_keys: right_keys.iter().map(|k| remap(k, &rmap)).collect(),
                asof: Asof {
                    left_time: remap(&asof.left_time, &lmap),
                    right_time: remap(&asof.right_time, &rmap),
                    ..asof
                },
            };
            (join, map)
        }
        LogicalPlan::Expand {
            input,
            keys,
            sets,
            schema,
        } => {
            // The input's columns pass through; the keys and the set number follow.
            let n = input.schema().fields().len();
            let mut req = required[..n].to_vec();
            keys.iter().for_each(|k| require(&mut req, k));
            at_least_one(&mut req);
            let (child, map) = prune(*input, &req);
            let kept = map.iter().flatten().count();
            let keys: Vec<Expr> = keys.iter().map(|k| remap(k, &map)).collect();
            let mut out: Mapping = map.clone();
            out.extend((0..keys.len() + 1).map(|j| Some(kept + j)));
            let fields: Vec<_> = child
                .schema()
                .fields()
                .iter()
                .cloned()
                .chain(schema.fields()[n..].iter().cloned())
                .collect();
            (
                LogicalPlan::Expand {
                    input: Box::new(child),
                    keys,
                    sets,
                    schema: Schema::new(fields),
                },
                out,
            )
        }
        LogicalPlan::Sort { input, keys } => {
            let mut req = required.to_vec();
            keys.iter().for_each(|k| require(&mut req, &k.expr));
            let (child, map) = prune(*input, &req);
            let keys = keys
                .into_iter()
                .map(|mut k| {
                    k.expr = remap(&k.expr, &map);
                    k
                })
                .collect();
            (
                LogicalPlan::Sort {
                    input: Box::new(child),
                    keys,
                },
                map,
            )
        }
        LogicalPlan::Limit { input, skip, fetch } => {
            let (child, map) = prune(*input, required);
            (
                LogicalPlan::Limit {
                    input: Box::new(child),
                    skip,
                    fetch,
                },
                map,
            )
        }
        LogicalPlan::Window {
            input,
            partition_by,
            order_by,
            funcs,
            schema,
        } => {
            // Every function is kept; of the input, what is required above
            // and what the functions, keys and ordering read.
            let n_in = input.schema().fields().len();
            let mut req = required[..n_in].to_vec();
            partition_by.iter().for_each(|e| require(&mut req, e));
            order_by.iter().for_each(|k| require(&mut req, &k.expr));
            funcs
                .iter()
                .flat_map(|f| &f.args)
                .for_each(|a| require(&mut req, a));
            at_least_one(&mut req);
            let (child, cmap) = prune(*input, &req);
            let kept = cmap.iter().flatten().count();
            let mut map = cmap.clone();
            map.extend((0..funcs.len()).map(|k| Some(kept + k)));
            let mut fields: Vec<_> = schema
                .fields()
                .iter()
                .zip(&map)
                .filter(|(_, m)| m.is_some())
                .map(|(f, _)| f.clone())
                .collect();
            fields.truncate(kept + funcs.len());
            let funcs = funcs
                .into_iter()
                .map(|mut f| {
                    f.args = f.args.iter().map(|a| remap(a, &cmap)).collect();
                    f
                })
                .collect();
            (
                LogicalPlan::Window {
                    input: Box::new(child),
                    partition_by: partition_by.iter().map(|e| remap(e, &cmap)).collect(),
                    order_by: order_by
                        .into_iter()
                        .map(|mut k| {
                            k.expr = remap(&k.expr, &cmap);
                            k
                        })
                        .collect(),
                    funcs,
                    schema: arrow::datatypes::Schema::new(fields),
                },
                map,
            )
        }
        LogicalPlan::Union { inputs } => {
            // Every input must keep the same columns; keep them all.
            let n = inputs[0].schema().fields().len();
            let all = vec![true; n];
            let inputs = inputs.into_iter().map(|i| prune(i, &all).0).collect();
            (LogicalPlan::Union { inputs }, (0..n).map(Some).collect())
        }
    }
}

#[cfg(test)]
mod or_tests {
    use super::*;

    fn eq(a: usize, v: i64) -> Expr {
        Expr::binary(
            BinaryOp::Eq,
            Expr::Column(a),
            Expr::Literal(keel_proto::expr::ScalarValue::Int64(v)),
        )
    }

    fn and(a: Expr, b: Expr) -> Expr {
        Expr::binary(BinaryOp::And, a, b)
    }

    fn or(a: Expr, b: Expr) -> Expr {
        Expr::binary(BinaryOp::Or, a, b)
    }

    #[test]
    fn conjuncts_every_branch_holds_come_out_of_the_or() {
        let key = Expr::binary(BinaryOp::Eq, Expr::Column(0), Expr::Column(5));
        let q19 = or(
            and(key.clone(), eq(1, 1)),
            or(and(eq(1, 2), key.clone()), and(key.clone(), eq(1, 3))),
        );
        let mut out = vec![];
        conjuncts(q19, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0], key);
        assert_eq!(out[1], or(or(eq(1, 1), eq(1, 2)), eq(1, 3)));
        // A branch that is only the common part makes the OR true.
        let mut out = vec![];
        conjuncts(or(key.clone(), and(key.clone(), eq(1, 1))), &mut out);
        assert_eq!(out, vec![key]);
        // Nothing in common: unchanged.
        let mut out = vec![];
        conjuncts(or(eq(1, 1), eq(2, 2)), &mut out);
        assert_eq!(out, vec![or(eq(1, 1), eq(2, 2))]);
    }
}
