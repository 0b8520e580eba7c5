//! Name resolution: the columns visible at a point of a query.

use arrow::datatypes::DataType;

use crate::error::{Result, SchedulerError};

#[derive(Debug, Clone)]
pub struct ScopeColumn {
    /// Table name or alias the column can be qualified with.
    pub qualifier: Option<String>,
    pub name: String,
    pub data_type: DataType,
    /// The right-hand copy of a `USING` column: reachable only qualified, not in `*`.
    pub hidden: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub columns: Vec<ScopeColumn>,
    /// The scopes of the queries this one is a subquery of, innermost
    /// last: a name not found here is looked up there, as a correlated
    /// reference (see [`outer_column`]).
    pub outer: Vec<Scope>,
}

/// Column indices from this value up stand for columns of an enclosing
/// query: `OUTER * depth + i` is column `i` of the scope `depth` levels
/// out. They live only in a subquery's bound plan, until decorrelation
/// replaces them by join keys and filters.
pub const OUTER: usize = 1 << 40;

/// The column index a correlated reference to `i`, `depth` levels out, is bound to.
pub fn outer_column(depth: usize, i: usize) -> usize {
    OUTER * depth + i
}

/// `(depth, i)` of a correlated reference, or None for a column of the input.
pub fn as_outer(column: usize) -> Option<(usize, usize)> {
    (column >= OUTER).then(|| (column / OUTER, column % OUTER))
}

impl Scope {
    pub fn from_schema(schema: &arrow::datatypes::Schema, qualifier: Option<&str>) -> Scope {
        Scope {
            columns: schema
                .fields()
                .iter()
                .map(|f| ScopeColumn {
                    qualifier: qualifier.map(str::to_lowercase),
                    name: f.name().clone(),
                    data_type: f.data_type().clone(),
                    hidden: false,
                })
                .collect(),
            outer: vec![],
        }
    }

    pub fn with_qualifier(mut self, qualifier: &str) -> Scope {
        for c in &mut self.columns {
            c.qualifier = Some(qualifier.to_lowercase());
        }
        self
    }

    pub fn join(mut self, right: Scope) -> Scope {
        self.columns.extend(right.columns);
        self
    }

    /// Resolves `name` or `qualifier.name`, case-insensitively as DuckDB does.
    pub fn resolve(&self, qualifier: Option<&str>, name: &str) -> Result<usize> {
        let matches = self.matching(qualifier, name);
        let shown = match qualifier {
            Some(q) => format!("{q}.{name}"),
            None => name.to_string(),
        };
        match matches.as_slice() {
            [i] => Ok(*i),
            [] => {
                let mut candidates: Vec<String> = self
                    .columns
                    .iter()
                    .filter(|c| !c.hidden)
                    .map(|c| match &c.qualifier {
                        Some(q) => format!("{q}.{}", c.name),
                        None => c.name.clone(),
                    })
                    .collect();
                candidates.dedup();
                Err(SchedulerError::bind(format!(
                    "Referenced column \"{shown}\" not found; candidates: {}",
                    if candidates.is_empty() { "(none)".into() } else { candidates.join(", ") }
                )))
            }
            _ => Err(SchedulerError::bind(format!(
                "Ambiguous reference to column name \"{shown}\": qualify it with a table name or alias"
            ))),
        }
    }

    /// The columns `qualifier.name` (or `name`) may refer to.
    fn matching(&self, qualifier: Option<&str>, name: &str) -> Vec<usize> {
        let q = qualifier.map(str::to_lowercase);
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name.eq_ignore_ascii_case(name))
            .filter(|(_, c)| match &q {
                Some(q) => c.qualifier.as_deref() == Some(q.as_str()),
                None => !c.hidden,
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Resolves a name here or, failing that, in the enclosing queries'
    /// scopes (innermost first) as a correlated reference; the error is
    /// this scope's when no scope has it.
    pub fn resolve_any(&self, qualifier: Option<&str>, name: &str) -> Result<(usize, DataType)> {
        // A name found here, once or ambiguously, is this scope's.
        let local = match self.resolve(qualifier, name) {
            Ok(i) => return Ok((i, self.columns[i].data_type.clone())),
            Err(e) if !self.matching(qualifier, name).is_empty() => return Err(e),
            Err(e) => e,
        };
        for (depth, scope) in self.outer.iter().rev().enumerate() {
            if let Ok(i) = scope.resolve(qualifier, name) {
                return Ok((
                    outer_column(depth + 1, i),
                    scope.columns[i].data_type.clone(),
                ));
            }
        }
        Err(local)
    }

    pub fn has_qualifier(&self, q: &str) -> bool {
        self.columns
            .iter()
            .any(|c| c.qualifier.as_deref() == Some(q.to_lowercase().as_str()))
    }
}
