//! SELECT: its items, WHERE (with IN subqueries as joins), GROUP BY with
//! grouping sets, HAVING, windows, DISTINCT and ORDER BY over its output.

use arrow::datatypes::{DataType, Field, Schema};
use keel_proto::expr::Expr;
use keel_proto::plan::{AggExpr, AggFunc, JoinType, SortKey};
use sqlparser::ast::{self, GroupByExpr, SelectItem};

use super::aggregates::{contains_aggregate, AggContext};
use super::expr::ExprBinder;
use super::from::{conjunction, split_conjuncts};
use super::query::{distinct, ordinal, output_scope, project_schema, sort_key};
use super::scope::Scope;
use super::subquery::find_subqueries;
use super::types::sql_name;
use super::walk::{output_name, window_calls};
use super::window::{bind_windows, AggregateWindows};
use super::Binder;
use crate::error::{Result, SchedulerError};
use crate::logical::LogicalPlan;

/// Placeholder columns of subqueries joined above an aggregate, until its
/// width is known (below [`super::scope::OUTER`]'s correlated references).
const ABOVE_AGGREGATE: usize = 1 << 39;

/// The SELECT items written as expressions (not expanded from `*`).
fn sql_items<'q, 'i>(items: &'i [Item<'q>]) -> impl Iterator<Item = &'q ast::Expr> + 'i {
    items.iter().filter_map(|i| match i {
        Item::Sql(e, _) => Some(*e),
        Item::Column(..) => None,
    })
}

/// One output column of a SELECT before binding.
enum Item<'q> {
    Sql(&'q ast::Expr, String),
    Column(usize, String),
}

impl Binder<'_> {
    pub(super) fn bind_select(
        &mut self,
        s: &ast::Select,
        order: &[ast::OrderByExpr],
        skip: usize,
        fetch: Option<usize>,
    ) -> Result<(LogicalPlan, Scope)> {
        if !s.sort_by.is_empty() || !s.named_window.is_empty() || s.top.is_some() {
            return Err(SchedulerError::unsupported(format!(
                "this SELECT form: {s}"
            )));
        }
        let outer_deferred = std::mem::take(&mut self.deferred_where);
        let from = self.bind_from(&s.from);
        let deferred = std::mem::replace(&mut self.deferred_where, outer_deferred);
        let (mut plan, mut scope) = from?;
        scope.outer = self.outer.clone();
        let condition =
            s.selection
                .iter()
                .cloned()
                .chain(deferred)
                .reduce(|a, b| ast::Expr::BinaryOp {
                    left: Box::new(a),
                    op: ast::BinaryOperator::And,
                    right: Box::new(b),
                });
        if let Some(w) = &condition {
            plan = self.bind_where(plan, &scope, w)?;
        }

        let mut items = vec![];
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) => items.push(Item::Sql(e, output_name(e))),
                SelectItem::ExprWithAlias { expr, alias } => {
                    items.push(Item::Sql(expr, alias.value.clone()))
                }
                SelectItem::Wildcard(_) => {
                    for (i, c) in scope.columns.iter().enumerate().filter(|(_, c)| !c.hidden) {
                        items.push(Item::Column(i, c.name.clone()));
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let q = match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(name) => name.to_string(),
                        ast::SelectItemQualifiedWildcardKind::Expr(e) => {
                            return Err(SchedulerError::unsupported(format!("{e}.*")))
                        }
                    };
                    if !scope.has_qualifier(&q) {
                        return Err(SchedulerError::bind(format!(
                            "{q}.* names no table in FROM"
                        )));
                    }
                    for (i, c) in scope.columns.iter().enumerate() {
                        if c.qualifier.as_deref() == Some(q.to_lowercase().as_str()) {
                            items.push(Item::Column(i, c.name.clone()));
                        }
                    }
                }
                other => return Err(SchedulerError::unsupported(format!("select item {other}"))),
            }
        }
        let names: Vec<String> = items
            .iter()
            .map(|i| match i {
                Item::Sql(_, n) | Item::Column(_, n) => n.clone(),
            })
            .collect();

        let group_items: Vec<&ast::Expr> = match &s.group_by {
            GroupByExpr::Expressions(e, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(SchedulerError::unsupported(
                        "GROUP BY modifiers (ROLLUP, CUBE)",
                    ));
                }
                e.iter().collect()
            }
            GroupByExpr::All(_) => vec![],
        };
        let group_all = matches!(s.group_by, GroupByExpr::All(_));
        let aggregated = group_all
            || !group_items.is_empty()
            || items
                .iter()
                .any(|i| matches!(i, Item::Sql(e, _) if contains_aggregate(e)))
            || s.having.is_some()
            || order.iter().any(|o| contains_aggregate(&o.expr));

        let mut select_exprs: Vec<(Expr, DataType)> = vec![];
        let mut hidden: Vec<(Expr, DataType)> = vec![];
        let mut sort_keys: Vec<SortKey> = vec![];
        let mut calls = vec![];
        for e in sql_items(&items)
            .chain(s.qualify.as_ref())
            .chain(order.iter().map(|o| &o.expr))
        {
            window_calls(e, &mut calls);
        }
        // QUALIFY over the SELECT list's names, when it cannot be bound below it.
        let mut qualify_above = None;

        if aggregated {
            let mut ctx = AggContext::default();
            let mut plain = ExprBinder::new(&scope);
            let add_group = |ctx: &mut AggContext, e: Expr, t: DataType, name: String| match ctx
                .group_exprs
                .iter()
                .position(|g| *g == e)
            {
                Some(j) => j,
                None => {
                    ctx.group_exprs.push(e);
                    ctx.group_types.push(t);
                    ctx.group_names.push(name);
                    ctx.group_exprs.len() - 1
                }
            };
            if group_all {
                for (item, name) in items.iter().zip(&names) {
                    match item {
                        Item::Sql(e, _) if contains_aggregate(e) => {}
                        Item::Sql(e, _) => {
                            let (x, t) = plain.bind(e)?;
                            add_group(&mut ctx, x, t, name.clone());
                        }
                        Item::Column(i, _) => {
                            add_group(
                                &mut ctx,
                                Expr::Column(*i),
                                scope.columns[*i].data_type.clone(),
                                name.clone(),
                            );
                        }
                    }
                }
            }
            // A GROUP BY key: a SELECT item by position or output name, or an expression.
            let mut resolve = |g: &ast::Expr| -> Result<(Expr, DataType, String)> {
                let target: Option<&Item> = match ordinal(g, items.len())? {
                    Some(i) => Some(&items[i]),
                    None => match g {
                        ast::Expr::Identifier(id) if scope.resolve(None, &id.value).is_err() => {
                            names
                                .iter()
                                .position(|n| n.eq_ignore_ascii_case(&id.value))
                                .map(|i| &items[i])
                        }
                        _ => None,
                    },
                };
                Ok(match target {
                    Some(Item::Sql(e, n)) => {
                        if contains_aggregate(e) {
                            return Err(SchedulerError::bind(format!(
                                "GROUP BY cannot refer to an aggregate: {e}"
                            )));
                        }
                        let (x, t) = plain.bind(e)?;
                        (x, t, n.clone())
                    }
                    Some(Item::Column(i, n)) => (
                        Expr::Column(*i),
                        scope.columns[*i].data_type.clone(),
                        n.clone(),
                    ),
                    None => {
                        if contains_aggregate(g) {
                            return Err(SchedulerError::bind(format!(
                                "GROUP BY cannot contain aggregates: {g}"
                            )));
                        }
                        let (x, t) = plain.bind(g)?;
                        (x, t, output_name(g))
                    }
                })
            };
            // Per GROUP BY item, the grouping sets it contributes (key positions).
            let mut item_sets: Vec<Vec<Vec<usize>>> = vec![];
            let mut expanded = false;
            for g in &group_items {
                let lists = grouping_lists(g);
                expanded |= lists.is_some();
                let lists = lists.unwrap_or_else(|| vec![vec![*g]]);
                let mut sets = vec![];
                for list in lists {
                    let mut set = vec![];
                    for e in list {
                        let (x, t, name) = resolve(e)?;
                        set.push(add_group(&mut ctx, x, t, name));
                    }
                    sets.push(set);
                }
                item_sets.push(sets);
            }
            if expanded {
                // Every combination of one set from each item, as flags over the keys.
                let keys = ctx.group_exprs.len();
                let mut sets: Vec<Vec<bool>> = vec![vec![false; keys]];
                for options in &item_sets {
                    sets = sets
                        .iter()
                        .flat_map(|base| {
                            options.iter().map(move |add| {
                                let mut s = base.clone();
                                add.iter().for_each(|&j| s[j] = true);
                                s
                            })
                        })
                        .collect();
                }
                // The set's number: a group column after the keys (it matches no expression).
                ctx.group_exprs.push(Expr::Column(usize::MAX));
                ctx.group_types.push(DataType::Int64);
                ctx.group_names.push("__grouping_set".into());
                ctx.grouping_sets = Some(sets);
            }
            // Subqueries above the aggregate (in the SELECT list, HAVING,
            // ORDER BY) are uncorrelated: joined onto one row, which joins
            // the aggregate's output. Bound to placeholder columns until the
            // aggregate's width is known.
            let above: Vec<&ast::Expr> = sql_items(&items)
                .chain(s.having.as_ref())
                .chain(order.iter().map(|o| &o.expr))
                .collect();
            let (above_plan, mut above_columns) = if find_subqueries(&above).is_empty() {
                (None, vec![])
            } else {
                let none = Scope {
                    columns: vec![],
                    outer: self.outer.clone(),
                };
                let (p, cols) = self.attach_subqueries(LogicalPlan::OneRow, &none, &above)?;
                (Some(p), cols)
            };
            for c in &mut above_columns {
                c.column += ABOVE_AGGREGATE;
            }
            // Window calls over the aggregate's output: bound first, their results at placeholders.
            let windows = AggregateWindows::bind(&scope, &mut ctx, &calls, s.having.as_ref())?;
            let mut agg_binder =
                ExprBinder::with_aggregates(&scope, &mut ctx).with_subqueries(&above_columns);
            agg_binder.windows = &windows.placeholders;
            for item in &items {
                select_exprs.push(match item {
                    Item::Sql(e, _) => agg_binder.bind(e)?,
                    Item::Column(i, _) => {
                        let ident = ast::Expr::Identifier(ast::Ident::new(scope.columns[*i].name.clone()));
                        match agg_binder.bind(&ident) {
                            Ok(x) => x,
                            Err(_) => {
                                return Err(SchedulerError::bind(format!(
                                    "column \"{}\" must appear in the GROUP BY clause or be used in an aggregate function",
                                    scope.columns[*i].name
                                )))
                            }
                        }
                    }
                });
            }
            let having = s.having.as_ref().map(|h| agg_binder.bind(h)).transpose()?;
            for o in order {
                let key = self.order_key(
                    o,
                    &items,
                    &names,
                    &select_exprs,
                    &mut |e| agg_binder.bind(e),
                    &mut hidden,
                )?;
                sort_keys.push(key);
            }
            let qualify = match &s.qualify {
                None => None,
                Some(q) => match agg_binder.bind(q) {
                    Ok(x) => Some(x),
                    // It may name SELECT aliases (`QUALIFY r <= 3`): bound after the projection.
                    Err(e) => {
                        qualify_above = Some((q, e));
                        None
                    }
                },
            };
            drop(agg_binder);
            if ctx.group_exprs.is_empty() && ctx.aggs.is_empty() {
                // `SELECT 1 FROM t HAVING …`: one group with no columns; a
                // count gives its row a column to travel in.
                ctx.aggs.push(AggExpr::new(AggFunc::CountStar, None, false));
                ctx.agg_names.push("__rows".into());
                ctx.agg_types.push(DataType::Int64);
            }
            let mut fields = vec![];
            for (n, t) in ctx.group_names.iter().zip(&ctx.group_types) {
                fields.push(Field::new(n, t.clone(), true));
            }
            for (n, t) in ctx.agg_names.iter().zip(&ctx.agg_types) {
                fields.push(Field::new(n, t.clone(), true));
            }
            check_distinct(&mut ctx.aggs)?;
            let mut group_by = ctx.group_exprs;
            let mut empty_sets = None;
            if let Some(sets) = ctx.grouping_sets {
                // `()`, as often as it is listed: each gives its own row.
                let ids: Vec<usize> = (0..sets.len())
                    .filter(|&i| sets[i].iter().all(|used| !used))
                    .collect();
                if !ids.is_empty() {
                    empty_sets = Some((ids, plan.clone()));
                }
                // Each row once per set, the keys it leaves out NULL; group by keys and set.
                let n = plan.schema().fields().len();
                let keys: Vec<Expr> = group_by[..group_by.len() - 1].to_vec();
                let mut expanded: Vec<Field> = plan
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                expanded.extend(fields[..keys.len() + 1].iter().cloned());
                group_by = (n..n + keys.len() + 1).map(Expr::Column).collect();
                plan = LogicalPlan::Expand {
                    input: Box::new(plan),
                    keys,
                    sets,
                    schema: Schema::new(expanded),
                };
            }
            let keys = group_by.len();
            plan = LogicalPlan::Aggregate {
                input: Box::new(plan),
                group_by,
                aggs: ctx.aggs.clone(),
                schema: Schema::new(fields),
            };
            if let Some((ids, input)) = empty_sets {
                plan = with_empty_set_rows(plan, input, keys, &ids, ctx.aggs);
            }
            let mut having = having;
            if let Some(values) = above_plan {
                let width = plan.schema().fields().len();
                plan = LogicalPlan::Join {
                    left: Box::new(plan),
                    right: Box::new(values),
                    join_type: JoinType::Inner,
                    left_keys: vec![],
                    right_keys: vec![],
                    filter: None,
                };
                let place = |e: &Expr| {
                    e.remap_columns(&|c| {
                        if (ABOVE_AGGREGATE..super::scope::OUTER).contains(&c) {
                            width + c - ABOVE_AGGREGATE
                        } else {
                            c
                        }
                    })
                };
                for (e, _) in select_exprs.iter_mut().chain(hidden.iter_mut()) {
                    *e = place(e);
                }
                if let Some((h, _)) = having.as_mut() {
                    *h = place(h);
                }
            }
            if let Some((h, t)) = having {
                check_boolean("HAVING", &t)?;
                plan = LogicalPlan::Filter {
                    input: Box::new(plan),
                    predicate: h,
                };
            }
            let exprs = select_exprs.iter_mut().chain(hidden.iter_mut());
            plan = windows.apply(plan, qualify, exprs.map(|(e, _)| e))?;
        } else {
            if s.having.is_some() {
                return Err(SchedulerError::bind(
                    "HAVING needs GROUP BY or an aggregate",
                ));
            }
            let (windowed, windows) = bind_windows(plan, &scope, &calls)?;
            // Subqueries of the SELECT list, QUALIFY and ORDER BY, joined
            // on after the windows (their columns follow the windows').
            let exprs: Vec<&ast::Expr> = sql_items(&items)
                .chain(s.qualify.as_ref())
                .chain(order.iter().map(|o| &o.expr))
                .collect();
            let (with_subqueries, subqueries) = self.attach_subqueries(windowed, &scope, &exprs)?;
            plan = with_subqueries;
            let mut b = ExprBinder::with_windows(&scope, &windows).with_subqueries(&subqueries);
            for item in &items {
                select_exprs.push(match item {
                    Item::Sql(e, _) => b.bind(e)?,
                    Item::Column(i, _) => (Expr::Column(*i), scope.columns[*i].data_type.clone()),
                });
            }
            if let Some(q) = &s.qualify {
                match b.bind(q) {
                    Ok((predicate, t)) => {
                        check_boolean("QUALIFY", &t)?;
                        plan = LogicalPlan::Filter {
                            input: Box::new(plan),
                            predicate,
                        };
                    }
                    // It may name SELECT aliases (`QUALIFY rn = 1`): bound after the projection.
                    Err(e) => qualify_above = Some((q, e)),
                }
            }
            for o in order {
                let key = self.order_key(
                    o,
                    &items,
                    &names,
                    &select_exprs,
                    &mut |e| b.bind(e),
                    &mut hidden,
                )?;
                sort_keys.push(key);
            }
        }

        let is_distinct = match &s.distinct {
            None | Some(ast::Distinct::All) => false,
            Some(ast::Distinct::Distinct) => true,
            Some(ast::Distinct::On(_)) => return Err(SchedulerError::unsupported("DISTINCT ON")),
        };
        if is_distinct && !hidden.is_empty() {
            return Err(SchedulerError::bind(
                "for SELECT DISTINCT, ORDER BY expressions must appear in the select list",
            ));
        }
        let visible = select_exprs.len();
        let mut all_names = names.clone();
        all_names.extend((0..hidden.len()).map(|i| format!("__order_{i}")));
        let (exprs, types): (Vec<Expr>, Vec<DataType>) =
            select_exprs.into_iter().chain(hidden).unzip();
        let schema = project_schema(&all_names, &types);
        plan = LogicalPlan::Project {
            input: Box::new(plan),
            exprs,
            schema,
        };
        if let Some((q, first_error)) = qualify_above {
            let projected = output_scope(&all_names, &types);
            let (predicate, t) = ExprBinder::new(&projected)
                .bind(q)
                .map_err(|_| first_error)?;
            check_boolean("QUALIFY", &t)?;
            plan = LogicalPlan::Filter {
                input: Box::new(plan),
                predicate,
            };
        }
        if is_distinct {
            plan = distinct(plan, &all_names, &types);
        }
        if !sort_keys.is_empty() {
            plan = LogicalPlan::Sort {
                input: Box::new(plan),
                keys: sort_keys,
            };
        }
        if skip > 0 || fetch.is_some() {
            plan = LogicalPlan::Limit {
                input: Box::new(plan),
                skip,
                fetch,
            };
        }
        if types.len() > visible {
            let exprs = (0..visible).map(Expr::Column).collect();
            plan = LogicalPlan::Project {
                input: Box::new(plan),
                exprs,
                schema: project_schema(&names, &types[..visible]),
            };
        }
        Ok((plan, output_scope(&names, &types[..visible])))
    }

    /// An ORDER BY key over the projected columns: an ordinal, an output
    /// name, a select expression, or a new hidden column.
    #[allow(clippy::too_many_arguments)]
    fn order_key(
        &self,
        o: &ast::OrderByExpr,
        items: &[Item],
        names: &[String],
        select: &[(Expr, DataType)],
        bind: &mut dyn FnMut(&ast::Expr) -> Result<(Expr, DataType)>,
        hidden: &mut Vec<(Expr, DataType)>,
    ) -> Result<SortKey> {
        if let Some(i) = ordinal(&o.expr, items.len())? {
            return Ok(sort_key(Expr::Column(i), o));
        }
        if let ast::Expr::Identifier(id) = &o.expr {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(&id.value)) {
                return Ok(sort_key(Expr::Column(i), o));
            }
        }
        let (x, t) = bind(&o.expr)?;
        if let Some(i) = select.iter().position(|(s, _)| *s == x) {
            return Ok(sort_key(Expr::Column(i), o));
        }
        if let Some(i) = hidden.iter().position(|(h, _)| *h == x) {
            return Ok(sort_key(Expr::Column(select.len() + i), o));
        }
        hidden.push((x, t));
        Ok(sort_key(Expr::Column(select.len() + hidden.len() - 1), o))
    }

    /// WHERE: `[NOT] EXISTS` and `[NOT] IN (subquery)` conjuncts become
    /// filtering joins; other subqueries are joined on as values; the rest
    /// is a filter, after which the subqueries' columns are dropped.
    fn bind_where(
        &mut self,
        mut plan: LogicalPlan,
        scope: &Scope,
        w: &ast::Expr,
    ) -> Result<LogicalPlan> {
        if contains_aggregate(w) {
            return Err(SchedulerError::bind(format!(
                "aggregates are not allowed in WHERE: {w}; use HAVING"
            )));
        }
        let width = plan.schema().fields().len();
        let mut conjuncts = vec![];
        split_conjuncts(w, &mut conjuncts);
        let mut rest = vec![];
        for c in conjuncts {
            plan = match self.filter_by_subquery(plan, scope, c)? {
                Ok(joined) => joined,
                Err(unchanged) => {
                    rest.push(c);
                    unchanged
                }
            };
        }
        let (with_subqueries, subqueries) = self.attach_subqueries(plan, scope, &rest)?;
        plan = with_subqueries;
        let mut filters = vec![];
        for c in rest {
            let (f, t) = ExprBinder::new(scope)
                .with_subqueries(&subqueries)
                .bind(c)?;
            if !matches!(t, DataType::Boolean | DataType::Null) {
                return Err(SchedulerError::bind(format!(
                    "WHERE needs a BOOLEAN condition, got {} in {c}",
                    sql_name(&t)
                )));
            }
            filters.push(f);
        }
        if let Some(predicate) = conjunction(filters) {
            plan = LogicalPlan::Filter {
                input: Box::new(plan),
                predicate,
            };
        }
        if plan.schema().fields().len() > width {
            let schema = plan.schema();
            plan = LogicalPlan::Project {
                input: Box::new(plan),
                exprs: (0..width).map(Expr::Column).collect(),
                schema: Schema::new(schema.fields()[..width].to_vec()),
            };
        }
        Ok(plan)
    }
}

/// The grouping set `()` has one row even over no input rows, as a global
/// aggregate has; the grouped aggregation has no group to give it. So
/// beside the grouped result runs, only when the input is empty, that row:
/// the aggregates over no rows (a global aggregate of a constant row
/// filtered away, which never reads the input), paired with a check that
/// the input is empty (a count over it).
fn with_empty_set_rows(
    grouped: LogicalPlan,
    input: LogicalPlan,
    keys: usize,
    set_ids: &[usize],
    aggs: Vec<AggExpr>,
) -> LogicalPlan {
    let schema = grouped.schema();
    let input_schema = input.schema();
    let nulls = LogicalPlan::Project {
        input: Box::new(LogicalPlan::OneRow),
        exprs: input_schema
            .fields()
            .iter()
            .map(|f| Expr::Literal(keel_proto::expr::ScalarValue::Null).cast(f.data_type().clone()))
            .collect(),
        schema: input_schema.clone(),
    };
    let n_aggs = aggs.len();
    let over_nothing = LogicalPlan::Aggregate {
        input: Box::new(LogicalPlan::Filter {
            input: Box::new(nulls),
            predicate: Expr::Literal(keel_proto::expr::ScalarValue::Boolean(false)),
        }),
        group_by: vec![],
        aggs,
        schema: Schema::new(schema.fields()[keys..].to_vec()),
    };
    let count = LogicalPlan::Aggregate {
        input: Box::new(input),
        group_by: vec![],
        aggs: vec![AggExpr::new(AggFunc::CountStar, None, false)],
        schema: Schema::new(vec![Field::new("rows", DataType::Int64, true)]),
    };
    let empty = LogicalPlan::Filter {
        input: Box::new(count),
        predicate: Expr::binary(
            keel_proto::expr::BinaryOp::Eq,
            Expr::Column(0),
            Expr::Literal(keel_proto::expr::ScalarValue::Int64(0)),
        ),
    };
    let paired = LogicalPlan::Join {
        left: Box::new(empty),
        right: Box::new(over_nothing),
        join_type: JoinType::Inner,
        left_keys: vec![],
        right_keys: vec![],
        filter: None,
    };
    // Keys NULL, the set's number, then the aggregates (after the count).
    let row = |set_id: usize| {
        let mut exprs: Vec<Expr> = schema.fields()[..keys - 1]
            .iter()
            .map(|f| Expr::Literal(keel_proto::expr::ScalarValue::Null).cast(f.data_type().clone()))
            .collect();
        exprs.push(Expr::Literal(keel_proto::expr::ScalarValue::Int64(
            set_id as i64,
        )));
        exprs.extend((0..n_aggs).map(|i| Expr::Column(1 + i)));
        LogicalPlan::Project {
            input: Box::new(paired.clone()),
            exprs,
            schema: schema.clone(),
        }
    };
    let mut inputs = vec![grouped];
    inputs.extend(set_ids.iter().map(|&id| row(id)));
    LogicalPlan::Union { inputs }
}

fn check_boolean(clause: &str, t: &DataType) -> Result<()> {
    if matches!(t, DataType::Boolean | DataType::Null) {
        Ok(())
    } else {
        Err(SchedulerError::bind(format!(
            "{clause} needs a BOOLEAN condition, got {}",
            sql_name(t)
        )))
    }
}

/// The sets of a GROUPING SETS, ROLLUP or CUBE item of GROUP BY (each a
/// list of keys), or None for a plain key.
fn grouping_lists(g: &ast::Expr) -> Option<Vec<Vec<&ast::Expr>>> {
    match g {
        ast::Expr::GroupingSets(sets) => Some(sets.iter().map(|s| s.iter().collect()).collect()),
        // ROLLUP (a, b): (a, b), (a), ().
        ast::Expr::Rollup(parts) => Some(
            (0..=parts.len())
                .rev()
                .map(|n| parts[..n].iter().flatten().collect())
                .collect(),
        ),
        // CUBE (a, b): every subset, the largest first.
        ast::Expr::Cube(parts) => {
            let n = parts.len();
            let mut subsets: Vec<u32> = (0..1u32 << n).collect();
            subsets.sort_by_key(|m| std::cmp::Reverse(m.count_ones()));
            Some(
                subsets
                    .into_iter()
                    .map(|m| {
                        (0..n)
                            .filter(|i| m & (1 << (n - 1 - i)) != 0)
                            .flat_map(|i| parts[i].iter())
                            .collect()
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

/// DISTINCT aggregates the planner can run. When every aggregate is
/// DISTINCT over one argument, they run in two phases and any function
/// works. Otherwise the rows are shuffled by group and DISTINCT states are
/// sets (`count`, `sum`, `avg`); DISTINCT is dropped where it changes
/// nothing (min, max, first).
fn check_distinct(aggs: &mut [AggExpr]) -> Result<()> {
    if crate::planner::distinct_in_one_argument(aggs) {
        return Ok(());
    }
    for a in aggs.iter_mut() {
        if a.distinct && matches!(a.func, AggFunc::Min | AggFunc::Max | AggFunc::First) {
            a.distinct = false;
        }
    }
    Ok(())
}
