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
        let q = qualifier.map(str::to_lowercase);
        let matches: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name.eq_ignore_ascii_case(name))
            .filter(|(_, c)| match &q {
                Some(q) => c.qualifier.as_deref() == Some(q.as_str()),
                None => !c.hidden,
            })
            .map(|(i, _)| i)
            .collect();
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

    pub fn has_qualifier(&self, q: &str) -> bool {
        self.columns
            .iter()
            .any(|c| c.qualifier.as_deref() == Some(q.to_lowercase().as_str()))
    }
}
