//! Finding a range condition in a join's ON clause: a point of one side
//! between a low and a high of the other (`a.t BETWEEN s.start AND s.stop`,
//! or the same with `<`, `<=`, `>`, `>=`). Such an inner join runs as a
//! range join (an index of the intervals, the points streamed past it)
//! instead of a hash join whose filter would test every pair of rows with
//! the same key.

use keel_proto::expr::{BinaryOp, Expr};
use keel_proto::plan::Band;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Side {
    Left,
    Right,
}

/// `small <= big` (or `<` when not inclusive), each on one side.
struct Relation {
    small: Expr,
    big: Expr,
    inclusive: bool,
    conjunct: usize,
}

/// The band in `filter` (over left ++ right columns, `nl` of them left)
/// and the conjuncts left over, or None when there is no band.
pub fn find_band(filter: &Expr, nl: usize) -> Option<(Band, Option<Expr>)> {
    let mut conjuncts = vec![];
    crate::optimizer::conjuncts(filter.clone(), &mut conjuncts);
    let side = |e: &Expr| -> Option<Side> {
        let mut cols = vec![];
        e.columns(&mut cols);
        if cols.is_empty() {
            None
        } else if cols.iter().all(|&c| c < nl) {
            Some(Side::Left)
        } else if cols.iter().all(|&c| c >= nl) {
            Some(Side::Right)
        } else {
            None
        }
    };
    let relations: Vec<Relation> = conjuncts
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let Expr::Binary { op, left, right } = c else {
                return None;
            };
            let (a, b) = (left.as_ref().clone(), right.as_ref().clone());
            let (small, big, inclusive) = match op {
                BinaryOp::Lt => (a, b, false),
                BinaryOp::LtEq => (a, b, true),
                BinaryOp::Gt => (b, a, false),
                BinaryOp::GtEq => (b, a, true),
                _ => return None,
            };
            match (side(&small), side(&big)) {
                (Some(x), Some(y)) if x != y => Some(Relation {
                    small,
                    big,
                    inclusive,
                    conjunct: i,
                }),
                _ => None,
            }
        })
        .collect();
    // low <= point (point is `big`) and point <= high (point is `small`).
    for lower in &relations {
        for upper in &relations {
            if lower.conjunct == upper.conjunct || lower.big != upper.small {
                continue;
            }
            let point_side = side(&lower.big)?;
            let rebase = |e: &Expr, s: Side| match s {
                Side::Left => e.clone(),
                Side::Right => e.remap_columns(&|c| c - nl),
            };
            let intervals = if point_side == Side::Left {
                Side::Right
            } else {
                Side::Left
            };
            let band = Band {
                points_left: point_side == Side::Left,
                point: rebase(&lower.big, point_side),
                low: rebase(&lower.small, intervals),
                high: rebase(&upper.big, intervals),
                low_inclusive: lower.inclusive,
                high_inclusive: upper.inclusive,
            };
            let rest: Vec<Expr> = conjuncts
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != lower.conjunct && *i != upper.conjunct)
                .map(|(_, c)| c.clone())
                .collect();
            let residual = rest
                .into_iter()
                .reduce(|a, b| Expr::binary(BinaryOp::And, a, b));
            return Some((band, residual));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::expr::ScalarValue;

    fn col(i: usize) -> Expr {
        Expr::Column(i)
    }

    #[test]
    fn between_the_sides_is_a_band() {
        // Left: (k, start, stop); right: (k, t). ON … AND r.t >= l.start AND r.t <= l.stop AND r.k > 0.
        let f = Expr::binary(
            BinaryOp::And,
            Expr::binary(
                BinaryOp::And,
                Expr::binary(BinaryOp::GtEq, col(4), col(1)),
                Expr::binary(BinaryOp::LtEq, col(4), col(2)),
            ),
            Expr::binary(BinaryOp::Gt, col(3), Expr::Literal(ScalarValue::Int64(0))),
        );
        let (band, rest) = find_band(&f, 3).unwrap();
        assert!(!band.points_left);
        assert_eq!((band.point, band.low, band.high), (col(1), col(1), col(2)));
        assert!(band.low_inclusive && band.high_inclusive);
        assert_eq!(
            rest,
            Some(Expr::binary(
                BinaryOp::Gt,
                col(3),
                Expr::Literal(ScalarValue::Int64(0))
            ))
        );
        // Strict bounds written the other way round: l.start < r.t AND l.stop > r.t.
        let f = Expr::binary(
            BinaryOp::And,
            Expr::binary(BinaryOp::Lt, col(1), col(4)),
            Expr::binary(BinaryOp::Gt, col(2), col(4)),
        );
        let (band, rest) = find_band(&f, 3).unwrap();
        assert!(!band.low_inclusive && !band.high_inclusive && rest.is_none());
    }

    #[test]
    fn one_inequality_or_one_side_is_no_band() {
        let one = Expr::binary(BinaryOp::Lt, col(1), col(4));
        assert!(find_band(&one, 3).is_none());
        // Both bounds on the same side as the point: a plain filter.
        let same = Expr::binary(
            BinaryOp::And,
            Expr::binary(BinaryOp::Lt, col(1), col(0)),
            Expr::binary(BinaryOp::Lt, col(0), col(2)),
        );
        assert!(find_band(&same, 3).is_none());
    }
}
