//! FROM clauses: tables, `read_parquet`, subqueries, CTE references and joins.

use keel_proto::expr::{BinaryOp, Expr, ScalarValue};
use keel_proto::plan::JoinType;
use sqlparser::ast::{
    self, FunctionArg, FunctionArgExpr, JoinConstraint, JoinOperator, TableFactor,
};

use super::asof;
use super::expr::ExprBinder;
use super::scope::Scope;
use super::types::{common_type, sql_name};
use super::Binder;
use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;

impl Binder<'_> {
    pub(super) fn bind_from(
        &mut self,
        from: &[ast::TableWithJoins],
    ) -> Result<(LogicalPlan, Scope)> {
        let Some((first, rest)) = from.split_first() else {
            return Ok((LogicalPlan::OneRow, Scope::default()));
        };
        let mut acc = self.bind_joined(first)?;
        // `FROM a, b` is a cross join; the optimizer moves WHERE conditions into it.
        for item in rest {
            if let (
                TableFactor::Derived {
                    lateral: true,
                    subquery,
                    alias,
                    ..
                },
                [],
            ) = (&item.relation, item.joins.as_slice())
            {
                acc = self.lateral_join(acc, subquery, alias.as_ref(), false, None)?;
                continue;
            }
            let (rplan, rscope) = self.bind_joined(item)?;
            let (lplan, lscope) = acc;
            acc = (
                LogicalPlan::Join {
                    left: Box::new(lplan),
                    right: Box::new(rplan),
                    join_type: JoinType::Inner,
                    left_keys: vec![],
                    right_keys: vec![],
                    filter: None,
                },
                lscope.join(rscope),
            );
        }
        Ok(acc)
    }

    /// One FROM item with its joins.
    fn bind_joined(&mut self, twj: &ast::TableWithJoins) -> Result<(LogicalPlan, Scope)> {
        let mut acc = self.bind_factor(&twj.relation)?;
        for join in &twj.joins {
            acc = self.bind_join(acc, join)?;
        }
        Ok(acc)
    }

    fn bind_factor(&mut self, factor: &TableFactor) -> Result<(LogicalPlan, Scope)> {
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let table_name = name.to_string();
                let (plan, scope) = match args {
                    Some(args) => self.bind_table_function(&table_name, &args.args)?,
                    None => self.bind_table(&table_name)?,
                };
                let qualifier = match alias {
                    Some(a) => a.name.value.clone(),
                    None => name
                        .0
                        .last()
                        .map(|p| p.to_string().trim_matches('"').to_string())
                        .unwrap_or_default(),
                };
                let scope = scope.with_qualifier(&qualifier);
                Ok((plan, apply_column_aliases(scope, alias.as_ref())?))
            }
            TableFactor::Derived {
                subquery,
                alias,
                lateral,
                ..
            } => {
                if *lateral {
                    return Err(SchedulerError::unsupported("LATERAL subqueries"));
                }
                let (plan, mut scope) = self.bind_query(subquery)?;
                if let Some(a) = alias {
                    scope = scope.with_qualifier(&a.name.value);
                }
                Ok((plan, apply_column_aliases(scope, alias.as_ref())?))
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let before = self.deferred_where.len();
                let (plan, mut scope) =
                    self.bind_from(std::slice::from_ref(table_with_joins.as_ref()))?;
                // Applied with WHERE, it would filter the rows of an outer
                // join this parenthesized join may be the inside of.
                if self.deferred_where.len() > before {
                    return Err(SchedulerError::unsupported(
                        "a subquery in the ON clause of a parenthesized join; move it to WHERE",
                    ));
                }
                if let Some(a) = alias {
                    scope = scope.with_qualifier(&a.name.value);
                }
                Ok((plan, scope))
            }
            other => Err(SchedulerError::unsupported(format!("FROM item {other}"))),
        }
    }

    fn bind_table(&mut self, name: &str) -> Result<(LogicalPlan, Scope)> {
        let unquoted = name.trim_matches('"').trim_matches('\'');
        if let Some((plan, scope)) = self.cte(unquoted) {
            return Ok((plan, scope));
        }
        let path = match self.catalog.tables.get(&unquoted.to_lowercase()) {
            Some(p) => p.clone(),
            None if unquoted.ends_with(".parquet") || unquoted.contains('*') => unquoted.to_string(),
            None => {
                return Err(SchedulerError::bind(format!(
                    "Table with name {unquoted} does not exist: register it with --table {unquoted}=PATH or read a file with read_parquet('PATH')"
                )))
            }
        };
        self.scan(&[path])
    }

    fn bind_table_function(
        &mut self,
        name: &str,
        args: &[FunctionArg],
    ) -> Result<(LogicalPlan, Scope)> {
        if !name.eq_ignore_ascii_case("read_parquet") && !name.eq_ignore_ascii_case("parquet_scan")
        {
            return Err(SchedulerError::bind(format!(
                "Unknown table function {name}(); Keel reads files with read_parquet('glob')"
            )));
        }
        let usage = || {
            SchedulerError::bind("read_parquet() takes a path, a glob or a list of them: read_parquet('data/*.parquet')")
        };
        let first = match args.first() {
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => e,
            _ => return Err(usage()),
        };
        let string = |e: &ast::Expr| match e {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        let paths = match first {
            ast::Expr::Array(a) => a
                .elem
                .iter()
                .map(|e| string(e).ok_or_else(usage))
                .collect::<Result<Vec<_>>>()?,
            e => vec![string(e).ok_or_else(usage)?],
        };
        self.scan(&paths)
    }

    fn scan(&mut self, paths: &[String]) -> Result<(LogicalPlan, Scope)> {
        let table = self.catalog.load(paths)?;
        let scope = Scope::from_schema(&table.schema, None);
        let columns = (0..table.schema.fields().len()).collect();
        Ok((
            LogicalPlan::Scan {
                table,
                columns,
                filters: vec![],
            },
            scope,
        ))
    }

    fn bind_join(
        &mut self,
        left: (LogicalPlan, Scope),
        join: &ast::Join,
    ) -> Result<(LogicalPlan, Scope)> {
        if let TableFactor::Derived {
            lateral: true,
            subquery,
            alias,
            ..
        } = &join.relation
        {
            let (keep_left, on) = match &join.join_operator {
                JoinOperator::CrossJoin(JoinConstraint::None) => (false, None),
                JoinOperator::Join(JoinConstraint::On(on)) | JoinOperator::Inner(JoinConstraint::On(on)) => (false, Some(on)),
                JoinOperator::Left(JoinConstraint::On(on)) | JoinOperator::LeftOuter(JoinConstraint::On(on)) => (true, Some(on)),
                other => {
                    return Err(SchedulerError::unsupported(format!(
                        "LATERAL with this join: {other:?}; Keel runs FROM a, LATERAL (…), CROSS JOIN LATERAL and [LEFT] JOIN LATERAL … ON"
                    )))
                }
            };
            return self.lateral_join(left, subquery, alias.as_ref(), keep_left, on);
        }
        let (lplan, lscope) = left;
        let (rplan, mut rscope) = self.bind_factor(&join.relation)?;
        // A RIGHT join runs as the LEFT join with the sides swapped, its
        // columns put back in order above it.
        let (join_type, constraint, swapped) = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinType::Inner, c, false),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinType::Left, c, false),
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinType::Left, c, true),
            JoinOperator::FullOuter(c) => (JoinType::Full, c, false),
            JoinOperator::CrossJoin(c @ JoinConstraint::None) => (JoinType::Inner, c, false),
            other => {
                let kind = match other {
                    JoinOperator::CrossJoin(_) => "CROSS … ON".to_string(),
                    _ => format!("{other:?}")
                        .split('(')
                        .next()
                        .unwrap_or("this")
                        .to_uppercase(),
                };
                return Err(SchedulerError::unsupported(format!(
                    "{kind} joins; Keel runs INNER, LEFT, RIGHT, FULL and CROSS joins"
                )));
            }
        };
        if (swapped || join_type == JoinType::Full)
            && matches!(constraint, JoinConstraint::Using(_))
        {
            return Err(SchedulerError::unsupported(format!(
                "{} JOIN … USING; write the condition with ON (a.k = b.k)",
                if swapped { "RIGHT" } else { "FULL" }
            )));
        }
        let nl = lscope.columns.len();
        // The ON conjuncts other than key equalities, for an ASOF join.
        let mut asof_rest: Option<Vec<&ast::Expr>> = None;
        let mut left_keys = vec![];
        let mut right_keys = vec![];
        let mut filters = vec![];
        match constraint {
            JoinConstraint::Using(names) => {
                for n in names {
                    let name = n.to_string();
                    let li = lscope.resolve(None, &name)?;
                    let ri = rscope.resolve(None, &name)?;
                    let (lt, rt) = (&lscope.columns[li].data_type, &rscope.columns[ri].data_type);
                    let t = common_type(lt, rt, false, false)
                        .ok_or_else(|| key_mismatch(&name, lt, rt))?;
                    left_keys.push(super::types::cast_if_needed(Expr::Column(li), lt, &t));
                    right_keys.push(super::types::cast_if_needed(Expr::Column(ri), rt, &t));
                    rscope.columns[ri].hidden = true;
                }
            }
            JoinConstraint::On(on) => {
                let combined = lscope.clone().join(rscope.clone());
                let mut conjuncts = vec![];
                split_conjuncts(on, &mut conjuncts);
                if let Some(at) = conjuncts.iter().position(|c| asof::is_marker(c)) {
                    conjuncts.remove(at);
                    asof_rest = Some(vec![]);
                }
                for c in conjuncts {
                    // A subquery in an inner join's ON clause filters the
                    // joined rows as it would in WHERE: it is bound there.
                    if join_type == JoinType::Inner
                        && asof_rest.is_none()
                        && !super::subquery::find_subqueries(&[c]).is_empty()
                    {
                        self.deferred_where.push(c.clone());
                        continue;
                    }
                    let equality = match c {
                        ast::Expr::BinaryOp {
                            left,
                            op: ast::BinaryOperator::Eq,
                            right,
                        } => Some((left, right, false)),
                        ast::Expr::IsNotDistinctFrom(left, right) => Some((left, right, true)),
                        _ => None,
                    };
                    if let Some((left, right, null_safe)) = equality {
                        let mut b = ExprBinder::new(&combined);
                        let (l, lt) = b.bind(left)?;
                        let (r, rt) = b.bind(right)?;
                        let side = |e: &Expr| {
                            let mut cols = vec![];
                            e.columns(&mut cols);
                            if cols.is_empty() {
                                None
                            } else if cols.iter().all(|&i| i < nl) {
                                Some(false)
                            } else if cols.iter().all(|&i| i >= nl) {
                                Some(true)
                            } else {
                                None
                            }
                        };
                        let pair = match (side(&l), side(&r)) {
                            (Some(false), Some(true)) => Some(((l, lt), (r, rt))),
                            (Some(true), Some(false)) => Some(((r, rt), (l, lt))),
                            _ => None,
                        };
                        if let Some(((l, lt), (r, rt))) = pair {
                            let t = common_type(&lt, &rt, false, false)
                                .ok_or_else(|| key_mismatch(&c.to_string(), &lt, &rt))?;
                            let l = super::types::cast_if_needed(l, &lt, &t);
                            let r = r.remap_columns(&|i| i - nl);
                            let r = super::types::cast_if_needed(r, &rt, &t);
                            if null_safe {
                                // Hash joins never match NULL keys; these never are NULL.
                                let (ln, lv) = null_safe_key(l, &t);
                                let (rn, rv) = null_safe_key(r, &t);
                                left_keys.extend([ln, lv]);
                                right_keys.extend([rn, rv]);
                            } else {
                                left_keys.push(l);
                                right_keys.push(r);
                            }
                            continue;
                        }
                    }
                    if let Some(rest) = asof_rest.as_mut() {
                        rest.push(c);
                        continue;
                    }
                    let (f, t) = ExprBinder::new(&combined).bind(c)?;
                    if !matches!(
                        t,
                        arrow::datatypes::DataType::Boolean | arrow::datatypes::DataType::Null
                    ) {
                        return Err(SchedulerError::bind(format!(
                            "JOIN condition must be BOOLEAN, got {} in {c}",
                            sql_name(&t)
                        )));
                    }
                    filters.push(f);
                }
            }
            // CROSS JOIN: every pair.
            JoinConstraint::None if matches!(join.join_operator, JoinOperator::CrossJoin(_)) => {}
            JoinConstraint::Natural | JoinConstraint::None => {
                return Err(SchedulerError::unsupported(
                    "NATURAL joins and joins without ON or USING; name the condition with ON",
                ));
            }
        }
        if let Some(rest) = asof_rest {
            let combined = lscope.clone().join(rscope.clone());
            let asof = asof::bind_time(&rest, &combined, nl)?;
            let plan = LogicalPlan::AsofJoin {
                left: Box::new(lplan),
                right: Box::new(rplan),
                outer: join_type == JoinType::Left,
                left_keys,
                right_keys,
                asof,
            };
            return Ok((plan, lscope.join(rscope)));
        }
        if left_keys.is_empty() && join_type == JoinType::Full {
            return Err(SchedulerError::unsupported(
                "FULL joins without an equality between the two sides (ON a.x = b.y)",
            ));
        }
        let filter = conjunction(filters);
        let scope = lscope.join(rscope);
        if swapped {
            let nr = scope.columns.len() - nl;
            // Over right ++ left now: a left column i moves to nr + i, a right one j to j - nl.
            let filter = filter.map(|f| f.remap_columns(&|c| if c < nl { c + nr } else { c - nl }));
            let join = LogicalPlan::Join {
                left: Box::new(rplan),
                right: Box::new(lplan),
                join_type,
                left_keys: right_keys,
                right_keys: left_keys,
                filter,
            };
            let fields = join.schema().fields().to_vec();
            let order: Vec<usize> = (nr..nr + nl).chain(0..nr).collect();
            let plan = LogicalPlan::Project {
                input: Box::new(join),
                exprs: order.iter().map(|&i| Expr::Column(i)).collect(),
                schema: arrow::datatypes::Schema::new(
                    order.iter().map(|&i| fields[i].clone()).collect::<Vec<_>>(),
                ),
            };
            return Ok((plan, scope));
        }
        let plan = LogicalPlan::Join {
            left: Box::new(lplan),
            right: Box::new(rplan),
            join_type,
            left_keys,
            right_keys,
            filter,
        };
        Ok((plan, scope))
    }
}

/// `k IS NOT DISTINCT FROM …` as two keys that are never NULL: whether `k`
/// is NULL, and `k` with NULL replaced by a fixed value of its type.
pub(super) fn null_safe_key(k: Expr, t: &arrow::datatypes::DataType) -> (Expr, Expr) {
    use arrow::datatypes::DataType as T;
    let fill = match t {
        T::Utf8 => Expr::Literal(ScalarValue::Utf8(String::new())),
        T::Boolean => Expr::Literal(ScalarValue::Boolean(false)),
        T::Date32 => Expr::Literal(ScalarValue::Date32(0)),
        T::Timestamp(..) => Expr::Literal(ScalarValue::Timestamp(0)).cast(t.clone()),
        _ => Expr::Literal(ScalarValue::Int64(0)).cast(t.clone()),
    };
    let value = Expr::Case {
        whens: vec![(Expr::IsNull(Box::new(k.clone())), fill)],
        otherwise: Some(Box::new(k.clone())),
    };
    (Expr::IsNull(Box::new(k)), value)
}

fn key_mismatch(
    what: &str,
    l: &arrow::datatypes::DataType,
    r: &arrow::datatypes::DataType,
) -> SchedulerError {
    SchedulerError::bind(format!(
        "Cannot join {} with {} in {what}: add an explicit CAST",
        sql_name(l),
        sql_name(r)
    ))
}

pub(super) fn apply_column_aliases(
    mut scope: Scope,
    alias: Option<&ast::TableAlias>,
) -> Result<Scope> {
    let Some(a) = alias else { return Ok(scope) };
    if a.columns.is_empty() {
        return Ok(scope);
    }
    if a.columns.len() > scope.columns.len() {
        return Err(SchedulerError::bind(format!(
            "alias {} names {} columns but the table has {}",
            a.name,
            a.columns.len(),
            scope.columns.len()
        )));
    }
    for (c, name) in scope.columns.iter_mut().zip(&a.columns) {
        c.name = name.name.value.clone();
    }
    Ok(scope)
}

pub fn split_conjuncts<'e>(e: &'e ast::Expr, out: &mut Vec<&'e ast::Expr>) {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            split_conjuncts(left, out);
            split_conjuncts(right, out);
        }
        ast::Expr::Nested(inner)
            if matches!(
                **inner,
                ast::Expr::BinaryOp {
                    op: ast::BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_conjuncts(inner, out)
        }
        other => out.push(other),
    }
}

pub fn conjunction(mut exprs: Vec<Expr>) -> Option<Expr> {
    let first = if exprs.is_empty() {
        return None;
    } else {
        exprs.remove(0)
    };
    Some(
        exprs
            .into_iter()
            .fold(first, |acc, e| Expr::binary(BinaryOp::And, acc, e)),
    )
}
