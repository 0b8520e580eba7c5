//! Regular expressions (`regexp_matches`, `regexp_replace`,
//! `regexp_extract`) in DuckDB's RE2 syntax, which the `regex` crate
//! shares for everything but replacement references: `\1` in a DuckDB
//! replacement is `${1}` here. A pattern compiles once per batch while it
//! stays the same (a constant pattern compiles once per batch).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use keel_proto::expr::Func;
use regex::{Regex, RegexBuilder};

use super::{build_text, Args};
use crate::error::{Result, WorkerError};

pub fn call(func: Func, a: &Args, rows: usize) -> Result<ArrayRef> {
    let (s, p) = (a.text(0)?, a.text(1)?);
    let options = match func {
        Func::RegexpReplace if a.len() > 3 => a.constant_text(3, "regexp_replace() options")?,
        Func::RegexpMatches if a.len() > 2 => a.constant_text(2, "regexp_matches() options")?,
        _ => String::new(),
    };
    let mut cache = Compiled::new(&options)?;
    match func {
        Func::RegexpMatches => {
            let mut out = BooleanArray::builder(rows);
            for i in 0..rows {
                if s.is_null(i) || p.is_null(i) {
                    out.append_null();
                } else {
                    out.append_value(cache.get(p.value(i))?.is_match(s.value(i)));
                }
            }
            Ok(Arc::new(out.finish()))
        }
        Func::RegexpReplace => {
            let with = a.text(2)?;
            let global = options.contains('g');
            build_text(rows, |i, out| {
                if s.is_null(i) || p.is_null(i) || with.is_null(i) {
                    return Ok(false);
                }
                let re = cache.get(p.value(i))?;
                let replacement = replacement(with.value(i));
                let v = s.value(i);
                out.push_str(&if global {
                    re.replace_all(v, replacement.as_str())
                } else {
                    re.replace(v, replacement.as_str())
                });
                Ok(true)
            })
        }
        Func::RegexpExtract => {
            let group = if a.len() > 2 { Some(a.int(2)?) } else { None };
            build_text(rows, |i, out| {
                if s.is_null(i) || p.is_null(i) || group.is_some_and(|g| g.is_null(i)) {
                    return Ok(false);
                }
                let re = cache.get(p.value(i))?;
                let g = group.map_or(0, |g| g.value(i));
                if g < 0 || g as usize >= re.captures_len() {
                    return Err(WorkerError::eval(format!(
                        "regexp_extract(): pattern {:?} has no group {g}",
                        p.value(i)
                    )));
                }
                // No match gives the empty string, as in DuckDB.
                if let Some(m) = re.captures(s.value(i)).and_then(|c| c.get(g as usize)) {
                    out.push_str(m.as_str());
                }
                Ok(true)
            })
        }
        other => unreachable!("{other:?} is not a regular expression function"),
    }
}

/// The last pattern compiled, kept while rows repeat it.
struct Compiled {
    case_insensitive: bool,
    dot_matches_newline: bool,
    last: Option<(String, Regex)>,
}

impl Compiled {
    fn new(options: &str) -> Result<Self> {
        if let Some(bad) = options.chars().find(|c| !"gics".contains(*c)) {
            return Err(WorkerError::eval(format!(
                "unknown regular expression option '{bad}' (Keel accepts g, i, c and s)"
            )));
        }
        Ok(Compiled {
            case_insensitive: options.contains('i'),
            dot_matches_newline: options.contains('s'),
            last: None,
        })
    }

    fn get(&mut self, pattern: &str) -> Result<&Regex> {
        if self.last.as_ref().is_none_or(|(p, _)| p != pattern) {
            let re = RegexBuilder::new(&ascii_classes(pattern))
                .case_insensitive(self.case_insensitive)
                .dot_matches_new_line(self.dot_matches_newline)
                .build()
                .map_err(|e| {
                    WorkerError::eval(format!("invalid regular expression {pattern:?}: {e}"))
                })?;
            self.last = Some((pattern.to_string(), re));
        }
        Ok(&self.last.as_ref().expect("compiled").1)
    }
}

/// RE2's Perl classes are ASCII (`\w` is `[0-9A-Za-z_]`), the `regex`
/// crate's Unicode: spell them out, inside and outside brackets.
fn ascii_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push(c);
                    break;
                };
                let spelled = match (next, in_class) {
                    ('d', false) => "[0-9]",
                    ('D', false) => "[^0-9]",
                    ('w', false) => "[0-9A-Za-z_]",
                    ('W', false) => "[^0-9A-Za-z_]",
                    ('s', false) => "[\\t\\n\\f\\r ]",
                    ('S', false) => "[^\\t\\n\\f\\r ]",
                    ('b', false) => "(?-u:\\b)",
                    ('B', false) => "(?-u:\\B)",
                    ('d', true) => "0-9",
                    ('w', true) => "0-9A-Za-z_",
                    ('s', true) => "\\t\\n\\f\\r ",
                    _ => {
                        out.push(c);
                        out.push(next);
                        continue;
                    }
                };
                out.push_str(spelled);
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A DuckDB (RE2) replacement string in the `regex` crate's syntax: `\N`
/// refers to group N, `\\` is a backslash, and `$` is literal.
fn replacement(with: &str) -> String {
    let mut out = String::with_capacity(with.len());
    let mut chars = with.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str(&format!("${{{d}}}"));
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn perl_classes_are_ascii() {
        assert_eq!(super::ascii_classes(r"\w+\d"), "[0-9A-Za-z_]+[0-9]");
        assert_eq!(super::ascii_classes(r"[\w-]\."), r"[0-9A-Za-z_-]\.");
    }

    #[test]
    fn replacements_translate_group_references() {
        assert_eq!(replacement(r"\1-\2"), "${1}-${2}");
        assert_eq!(replacement("$5"), "$$5");
        assert_eq!(replacement(r"a\\b"), r"a\b");
    }
}
