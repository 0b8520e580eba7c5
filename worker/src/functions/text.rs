//! Text functions, with DuckDB's semantics: positions count characters
//! from 1, negative positions count from the end, NULL in gives NULL out
//! (except `concat` and `concat_ws`, which skip NULL arguments).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, BooleanArray, Int64Array, StringArray};

use super::{build_text, downcast, Args};
use crate::error::{Result, WorkerError};
use crate::operators::hash_columns;
use keel_proto::expr::Func;

pub fn call(func: Func, a: &Args, rows: usize) -> Result<ArrayRef> {
    match func {
        Func::Lower => map(a.text(0)?, |s, out| out.extend(s.chars().map(simple_lower))),
        Func::Upper => map(a.text(0)?, |s, out| out.extend(s.chars().map(simple_upper))),
        Func::Reverse => map(a.text(0)?, |s, out| out.extend(s.chars().rev())),
        Func::Length => {
            // Characters, not bytes, as in DuckDB.
            let out: Int64Array = a
                .text(0)?
                .iter()
                .map(|v| v.map(|s| s.chars().count() as i64))
                .collect();
            Ok(Arc::new(out))
        }
        Func::OctetLength => {
            let b = downcast::<BinaryArray>(a.get(0))?;
            let out: Int64Array = b.iter().map(|v| v.map(|v| v.len() as i64)).collect();
            Ok(Arc::new(out))
        }
        Func::Concat | Func::ConcatOp => {
            let parts: Vec<&StringArray> =
                (0..a.len()).map(|i| a.text(i)).collect::<Result<_>>()?;
            let strict = func == Func::ConcatOp;
            build_text(rows, |i, out| {
                if strict && parts.iter().any(|p| p.is_null(i)) {
                    return Ok(false);
                }
                for p in &parts {
                    if p.is_valid(i) {
                        out.push_str(p.value(i));
                    }
                }
                Ok(true)
            })
        }
        Func::ConcatWs => {
            let sep = a.text(0)?;
            let parts: Vec<&StringArray> =
                (1..a.len()).map(|i| a.text(i)).collect::<Result<_>>()?;
            build_text(rows, |i, out| {
                if sep.is_null(i) {
                    return Ok(false);
                }
                let mut first = true;
                for p in parts.iter().filter(|p| p.is_valid(i)) {
                    if !first {
                        out.push_str(sep.value(i));
                    }
                    out.push_str(p.value(i));
                    first = false;
                }
                Ok(true)
            })
        }
        Func::Substr => {
            let (s, start) = (a.text(0)?, a.int(1)?);
            let len = if a.len() > 2 { Some(a.int(2)?) } else { None };
            build_text(rows, |i, out| {
                if s.is_null(i) || start.is_null(i) || len.is_some_and(|l| l.is_null(i)) {
                    return Ok(false);
                }
                let l = len.map_or(i64::MAX / 2, |l| l.value(i));
                substring(s.value(i), start.value(i), l, out);
                Ok(true)
            })
        }
        Func::Left | Func::Right => {
            let (s, n) = (a.text(0)?, a.int(1)?);
            let left = func == Func::Left;
            build_text(rows, |i, out| {
                if s.is_null(i) || n.is_null(i) {
                    return Ok(false);
                }
                let (v, n) = (s.value(i), n.value(i));
                let chars = v.chars().count() as i64;
                // A negative count keeps all but that many from the other end.
                let keep = if n >= 0 {
                    n.min(chars)
                } else {
                    (chars + n).max(0)
                };
                let skip = if left { 0 } else { chars - keep };
                out.extend(v.chars().skip(skip as usize).take(keep as usize));
                Ok(true)
            })
        }
        Func::Replace => {
            let (s, from, to) = (a.text(0)?, a.text(1)?, a.text(2)?);
            build_text(rows, |i, out| {
                if s.is_null(i) || from.is_null(i) || to.is_null(i) {
                    return Ok(false);
                }
                let (v, f) = (s.value(i), from.value(i));
                if f.is_empty() {
                    out.push_str(v);
                } else {
                    out.push_str(&v.replace(f, to.value(i)));
                }
                Ok(true)
            })
        }
        Func::Trim | Func::Ltrim | Func::Rtrim => {
            let s = a.text(0)?;
            let chars = if a.len() > 1 { Some(a.text(1)?) } else { None };
            build_text(rows, |i, out| {
                if s.is_null(i) || chars.is_some_and(|c| c.is_null(i)) {
                    return Ok(false);
                }
                let set = chars.map_or(" ", |c| c.value(i));
                let strip = |c: char| set.contains(c);
                let v = s.value(i);
                out.push_str(match func {
                    Func::Trim => v.trim_matches(strip),
                    Func::Ltrim => v.trim_start_matches(strip),
                    _ => v.trim_end_matches(strip),
                });
                Ok(true)
            })
        }
        Func::Lpad | Func::Rpad => {
            let (s, n, pad) = (a.text(0)?, a.int(1)?, a.text(2)?);
            let left = func == Func::Lpad;
            build_text(rows, |i, out| {
                if s.is_null(i) || n.is_null(i) || pad.is_null(i) {
                    return Ok(false);
                }
                let (v, n, p) = (s.value(i), n.value(i).max(0) as usize, pad.value(i));
                let chars = v.chars().count();
                if chars >= n {
                    out.extend(v.chars().take(n));
                    return Ok(true);
                }
                if p.is_empty() {
                    return Err(WorkerError::eval(format!(
                        "{}(): insufficient padding in {v:?}",
                        func.name()
                    )));
                }
                let fill = p.chars().cycle().take(n - chars);
                if left {
                    out.extend(fill);
                    out.push_str(v);
                } else {
                    out.push_str(v);
                    out.extend(fill);
                }
                Ok(true)
            })
        }
        Func::SplitPart => {
            let (s, sep, idx) = (a.text(0)?, a.text(1)?, a.int(2)?);
            build_text(rows, |i, out| {
                if s.is_null(i) || sep.is_null(i) || idx.is_null(i) {
                    return Ok(false);
                }
                let (v, d, k) = (s.value(i), sep.value(i), idx.value(i));
                let parts: Vec<&str> = if d.is_empty() {
                    // An empty separator splits into characters.
                    v.char_indices()
                        .map(|(p, c)| &v[p..p + c.len_utf8()])
                        .collect()
                } else {
                    v.split(d).collect()
                };
                let n = parts.len() as i64;
                let at = if k > 0 { k - 1 } else { n + k };
                if k != 0 && (0..n).contains(&at) {
                    out.push_str(parts[at as usize]);
                }
                Ok(true)
            })
        }
        Func::StartsWith | Func::EndsWith | Func::Contains => {
            let (s, p) = (a.text(0)?, a.text(1)?);
            let test = |v: &str, p: &str| match func {
                Func::StartsWith => v.starts_with(p),
                Func::EndsWith => v.ends_with(p),
                _ => v.contains(p),
            };
            let out: BooleanArray = (0..rows)
                .map(|i| (s.is_valid(i) && p.is_valid(i)).then(|| test(s.value(i), p.value(i))))
                .collect();
            Ok(Arc::new(out))
        }
        Func::Strpos => {
            let (s, p) = (a.text(0)?, a.text(1)?);
            let out: Int64Array = (0..rows)
                .map(|i| {
                    (s.is_valid(i) && p.is_valid(i)).then(|| {
                        let v = s.value(i);
                        v.find(p.value(i))
                            .map_or(0, |byte| v[..byte].chars().count() as i64 + 1)
                    })
                })
                .collect();
            Ok(Arc::new(out))
        }
        Func::Repeat => {
            let (s, n) = (a.text(0)?, a.int(1)?);
            build_text(rows, |i, out| {
                if s.is_null(i) || n.is_null(i) {
                    return Ok(false);
                }
                let times = n.value(i).max(0) as usize;
                if s.value(i).len().saturating_mul(times) > MAX_REPEAT_BYTES {
                    return Err(WorkerError::eval(format!(
                        "repeat(): the result would exceed {MAX_REPEAT_BYTES} bytes"
                    )));
                }
                out.push_str(&s.value(i).repeat(times));
                Ok(true)
            })
        }
        Func::Md5 => map(a.text(0)?, |s, out| {
            out.push_str(&format!("{:x}", md5::compute(s.as_bytes())))
        }),
        Func::Hash => {
            let mut hashes = Vec::with_capacity(rows);
            let columns = [a.get(0).clone()];
            if !hash_columns(&columns, rows, &mut hashes) {
                return Err(WorkerError::eval(format!(
                    "hash() of {} is not supported",
                    a.get(0).data_type()
                )));
            }
            Ok(Arc::new(Int64Array::from_iter_values(
                hashes.into_iter().map(|h| h as i64),
            )))
        }
        other => unreachable!("{other:?} is not a text function"),
    }
}

/// Unicode's simple (one character to one) upper case, as DuckDB maps
/// case: 'ß' becomes 'ẞ', not "SS".
fn simple_upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ if c == 'ß' => 'ẞ',
        _ => c,
    }
}

/// Unicode's simple lower case ('İ' becomes 'i').
fn simple_lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// The largest string `repeat` builds.
const MAX_REPEAT_BYTES: usize = 64 << 20;

/// A text column mapped value by value; NULL stays NULL.
fn map(s: &StringArray, f: impl Fn(&str, &mut String)) -> Result<ArrayRef> {
    build_text(s.len(), |i, out| {
        if s.is_null(i) {
            return Ok(false);
        }
        f(s.value(i), out);
        Ok(true)
    })
}

/// DuckDB's `substring(s, start, length)` in characters: a start of 0 is
/// one before the first character, a negative start counts from the end,
/// and a negative length takes the characters before the start.
fn substring(s: &str, offset: i64, length: i64, out: &mut String) {
    let size = s.chars().count() as i64;
    let mut length = length;
    let mut start = if offset > 0 {
        (offset - 1).min(size)
    } else if offset < 0 {
        (size + offset).max(0)
    } else {
        length -= 1;
        0
    };
    if length == 0 || (offset == 0 && length <= 0) {
        return;
    }
    let end = if length > 0 {
        size.min(start.saturating_add(length))
    } else {
        let end = start;
        start = (start + length).max(0);
        end
    };
    out.extend(
        s.chars()
            .skip(start as usize)
            .take((end - start).max(0) as usize),
    );
}

#[cfg(test)]
mod tests {
    use super::substring;

    fn sub(s: &str, o: i64, l: i64) -> String {
        let mut out = String::new();
        substring(s, o, l, &mut out);
        out
    }

    #[test]
    fn substring_follows_duckdb() {
        assert_eq!(sub("hello", 2, 3), "ell");
        assert_eq!(sub("hello", -3, 2), "ll");
        assert_eq!(sub("hello", 0, 2), "h");
        assert_eq!(sub("hello", 4, 10), "lo");
        assert_eq!(sub("hello", 3, -2), "he");
        assert_eq!(sub("héllo", 2, 2), "él");
        assert_eq!(sub("hello", 9, 2), "");
    }
}
