//! Row-group pruning: skip row groups whose min/max statistics prove that a
//! pushed-down conjunct `column <op> constant` cannot hold.

use std::cmp::Ordering;

use keel_proto::expr::{BinaryOp, Expr, ScalarValue};

use crate::catalog::RowGroupMeta;
use crate::sql::types::{compare_scalars, fold_literal};

/// Whether the row group may hold rows matching every filter.
/// `columns[i]` is the table column behind scan output column `i`.
pub fn may_match(rg: &RowGroupMeta, columns: &[usize], filters: &[Expr]) -> bool {
    filters.iter().all(|f| conjunct_may_match(rg, columns, f))
}

fn conjunct_may_match(rg: &RowGroupMeta, columns: &[usize], f: &Expr) -> bool {
    let Expr::Binary { op, left, right } = f else {
        return true;
    };
    if !op.is_comparison() {
        return true;
    }
    let (col, value, op) = match (strip_cast(left), fold_literal(right)) {
        (Some(c), Some(v)) => (c, v, *op),
        _ => match (strip_cast(right), fold_literal(left)) {
            (Some(c), Some(v)) => (c, v, flip(*op)),
            _ => return true,
        },
    };
    let Some(Some((min, max))) = columns.get(col).and_then(|&t| rg.stats.get(t)) else {
        return true;
    };
    let value = match coerce(&value, min) {
        Some(v) => v,
        None => return true,
    };
    let (Some(vs_min), Some(vs_max)) = (compare_scalars(&value, min), compare_scalars(&value, max))
    else {
        return true;
    };
    match op {
        BinaryOp::Eq => vs_min != Ordering::Less && vs_max != Ordering::Greater,
        BinaryOp::Lt => vs_min == Ordering::Greater, // col < v needs min < v
        BinaryOp::LtEq => vs_min != Ordering::Less,  // min <= v
        BinaryOp::Gt => vs_max == Ordering::Less,    // max > v
        BinaryOp::GtEq => vs_max != Ordering::Greater, // max >= v
        _ => true,
    }
}

/// A bare column reference (a widening cast of it keeps min/max meaning).
fn strip_cast(e: &Expr) -> Option<usize> {
    match e {
        Expr::Column(c) => Some(*c),
        Expr::Cast { expr, .. } => match expr.as_ref() {
            Expr::Column(c) => Some(*c),
            _ => None,
        },
        _ => None,
    }
}

fn coerce(v: &ScalarValue, like: &ScalarValue) -> Option<ScalarValue> {
    use ScalarValue as S;
    Some(match (v, like) {
        (S::Int64(x), S::Int32(_)) => S::Int32(i32::try_from(*x).ok()?),
        (S::Int32(x), S::Int64(_)) => S::Int64(*x as i64),
        (S::Int64(x), S::Float64(_)) => S::Float64(*x as f64),
        (S::Float64(_), S::Int32(_) | S::Int64(_)) => return None,
        (S::Timestamp(_), S::Date32(_)) => return None,
        (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => a.clone(),
        _ => return None,
    })
}

fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::LtEq => BinaryOp::GtEq,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::GtEq => BinaryOp::LtEq,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rg(min: i64, max: i64) -> RowGroupMeta {
        RowGroupMeta {
            rows: 10,
            column_bytes: vec![80],
            stats: vec![Some((ScalarValue::Int64(min), ScalarValue::Int64(max)))],
        }
    }

    fn cmp(op: BinaryOp, v: i64) -> Expr {
        Expr::binary(op, Expr::Column(0), Expr::Literal(ScalarValue::Int64(v)))
    }

    #[test]
    fn prunes_row_groups_outside_the_range() {
        let g = rg(10, 20);
        assert!(may_match(&g, &[0], &[cmp(BinaryOp::Eq, 15)]));
        assert!(!may_match(&g, &[0], &[cmp(BinaryOp::Eq, 25)]));
        assert!(!may_match(&g, &[0], &[cmp(BinaryOp::Gt, 20)]));
        assert!(may_match(&g, &[0], &[cmp(BinaryOp::GtEq, 20)]));
        assert!(!may_match(&g, &[0], &[cmp(BinaryOp::Lt, 10)]));
        assert!(may_match(&g, &[0], &[cmp(BinaryOp::LtEq, 10)]));
        // 25 > col  <=>  col < 25
        let flipped = Expr::binary(
            BinaryOp::Gt,
            Expr::Literal(ScalarValue::Int64(5)),
            Expr::Column(0),
        );
        assert!(!may_match(&g, &[0], &[flipped]));
    }
}
