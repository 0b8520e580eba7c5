//! SQL scripts: statements separated by `;`, run one query at a time.
//!
//! Views are the scheduler's to bind; the client only splits the script
//! and sends each query with the `CREATE VIEW` / `DROP VIEW` statements
//! before it, so a view holds for the rest of the script (TPC-H's q15:
//! `CREATE VIEW revenue0 …; SELECT …; DROP VIEW revenue0;`).

/// The script's statements, trimmed, without empty ones. Semicolons
/// inside quotes, quoted identifiers and comments do not split.
pub fn statements(script: &str) -> Vec<String> {
    let mut out = vec![];
    let mut current = String::new();
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                current.push(c);
                while let Some(d) = chars.next() {
                    current.push(d);
                    if d == c {
                        // A doubled quote is an escaped one.
                        if chars.peek() == Some(&c) {
                            current.push(chars.next().expect("peeked"));
                            continue;
                        }
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for d in chars.by_ref() {
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
                current.push(' ');
            }
            ';' => {
                push(&mut out, &mut current);
            }
            _ => current.push(c),
        }
    }
    push(&mut out, &mut current);
    out
}

fn push(out: &mut Vec<String>, current: &mut String) {
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
    current.clear();
}

/// Whether a statement defines or drops a view (the scheduler binds it
/// with the query it is sent with).
pub fn is_view_statement(statement: &str) -> bool {
    let words: Vec<String> = statement
        .split_whitespace()
        .take(5)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        w.as_slice(),
        ["CREATE", "VIEW", ..]
            | ["CREATE", "OR", "REPLACE", "VIEW", ..]
            | ["CREATE", "TEMP" | "TEMPORARY", "VIEW", ..]
            | ["CREATE", "OR", "REPLACE", "TEMP" | "TEMPORARY", "VIEW", ..]
            | ["DROP", "VIEW", ..]
    )
}

/// One request per query of the script: the view statements before it,
/// then the query.
pub fn requests(script: &str) -> Vec<String> {
    let mut views: Vec<String> = vec![];
    let mut out = vec![];
    for s in statements(script) {
        if is_view_statement(&s) {
            views.push(s);
        } else {
            let mut request = views.join(";\n");
            if !request.is_empty() {
                request.push_str(";\n");
            }
            request.push_str(&s);
            out.push(request);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let s = statements("SELECT 'a;b' AS \"x;y\"; -- one; two\nSELECT 2 /* ; */ ;; ");
        assert_eq!(s, vec!["SELECT 'a;b' AS \"x;y\"", "SELECT 2"]);
        assert_eq!(
            statements("SELECT 'it''s; fine'"),
            vec!["SELECT 'it''s; fine'"]
        );
    }

    #[test]
    fn each_query_carries_the_views_before_it() {
        let r = requests(
            "create view v as select 1 as a; select * from v; drop view v; create or replace temp view w as select 2; select * from w",
        );
        assert_eq!(
            r,
            vec![
                "create view v as select 1 as a;\nselect * from v",
                "create view v as select 1 as a;\ndrop view v;\ncreate or replace temp view w as select 2;\nselect * from w",
            ]
        );
        assert!(requests("create view v as select 1").is_empty());
    }
}
