//! `keel profile`: every chosen column's distinct count and Theil's
//! uncertainty coefficient U(x|y) for every ordered pair of them, from exact
//! counts computed in one job (grouping sets over each column and each pair).
//!
//! With N rows, N_x rows of value x, N_y of y and N_xy of both:
//! H(x) = −Σ N_x/N · ln(N_x/N), H(x|y) = Σ N_xy/N · ln(N_y/N_xy), and
//! U(x|y) = (H(x) − H(x|y)) / H(x), how much knowing y tells about x (1
//! when x is constant). Values are compared as text; NULL is a value.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};

use crate::client::KeelClient;
use crate::error::ClientError;

/// What the profile found.
pub struct Profile {
    pub columns: Vec<String>,
    pub distinct: Vec<u64>,
    /// `u[i][j]` = U(columns[i] | columns[j]).
    pub u: Vec<Vec<f64>>,
    pub rows: u64,
}

/// The FROM item for a table name registered with `--table`, or a path or glob.
pub fn source(target: &str, tables: &[(String, String)]) -> String {
    if tables.iter().any(|(n, _)| n.eq_ignore_ascii_case(target)) {
        quote(target)
    } else {
        format!("read_parquet('{}')", target.replace('\'', "''"))
    }
}

/// A column name as a quoted SQL identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The columns to profile: the given ones, or every column whose
/// approximate distinct count is at most `max_distinct`.
pub async fn choose_columns(
    client: &KeelClient,
    from: &str,
    tables: &[(String, String)],
    given: &[String],
    max_distinct: u64,
) -> Result<Vec<String>, ClientError> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let schema = crate::cli::run_query(client, &format!("SELECT * FROM {from} LIMIT 0"), tables)
        .await?
        .schema;
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    if names.is_empty() {
        return Err(ClientError::Usage {
            message: format!("{from} has no columns"),
        });
    }
    let counts: Vec<String> = names
        .iter()
        .map(|n| format!("approx_count_distinct({})", quote(n)))
        .collect();
    let result = crate::cli::run_query(
        client,
        &format!("SELECT {} FROM {from}", counts.join(", ")),
        tables,
    )
    .await?;
    let batch = result.batches.iter().find(|b| b.num_rows() > 0);
    let chosen: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            batch.is_some_and(|b| {
                let c = b.column(*i).as_primitive::<Int64Type>().value(0);
                c >= 1 && c as u64 <= max_distinct
            })
        })
        .map(|(_, n)| n.clone())
        .collect();
    if chosen.len() < 2 {
        return Err(ClientError::Usage {
            message: format!(
                "fewer than two columns of {from} have at most {max_distinct} distinct values; name them with --columns a,b or raise --max-distinct"
            ),
        });
    }
    Ok(chosen)
}

/// The one query: each column and each pair as a grouping set, values in
/// their own types (compared as text by [`compute`]).
pub fn counts_sql(from: &str, columns: &[String]) -> String {
    let keys: Vec<String> = (0..columns.len()).map(|i| format!("k{i}")).collect();
    let casts: Vec<String> = columns
        .iter()
        .zip(&keys)
        .map(|(c, k)| format!("{} AS {k}", quote(c)))
        .collect();
    let mut sets: Vec<String> = keys.iter().map(|k| format!("({k})")).collect();
    for i in 0..keys.len() {
        for j in i + 1..keys.len() {
            sets.push(format!("({}, {})", keys[i], keys[j]));
        }
    }
    format!(
        "SELECT {keys}, grouping({keys}) AS g, count(*) AS n FROM (SELECT {casts} FROM {from}) s GROUP BY GROUPING SETS ({sets})",
        keys = keys.join(", "),
        casts = casts.join(", "),
        sets = sets.join(", ")
    )
}

/// Theil's U for every ordered pair, from the rows of [`counts_sql`].
pub fn compute(columns: &[String], batches: &[RecordBatch]) -> Result<Profile, ClientError> {
    let m = columns.len();
    // Per column: value -> N_x. Per pair (i < j): (x, y) -> N_xy.
    let mut single: Vec<HashMap<Option<String>, u64>> = vec![HashMap::new(); m];
    let mut pairs: HashMap<(usize, usize), HashMap<(Option<String>, Option<String>), u64>> =
        HashMap::new();
    for b in batches {
        let g = b.column(m).as_primitive::<Int64Type>();
        let n = b.column(m + 1).as_primitive::<Int64Type>();
        let text = (0..m)
            .map(|i| cast(b.column(i), &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Protocol {
                message: format!("profile counts as text: {e}"),
            })?;
        let keys: Vec<_> = text.iter().map(|k| k.as_string::<i32>()).collect();
        for r in 0..b.num_rows() {
            // Bit m-1-i is set where key i is left out of the row's set.
            let grouped: Vec<usize> = (0..m)
                .filter(|&i| g.value(r) & (1 << (m - 1 - i)) == 0)
                .collect();
            let value = |i: usize| keys[i].is_valid(r).then(|| keys[i].value(r).to_string());
            match grouped.as_slice() {
                [i] => *single[*i].entry(value(*i)).or_default() += n.value(r) as u64,
                [i, j] => {
                    *pairs
                        .entry((*i, *j))
                        .or_default()
                        .entry((value(*i), value(*j)))
                        .or_default() += n.value(r) as u64
                }
                _ => {}
            }
        }
    }
    let rows: u64 = single.first().map_or(0, |s| s.values().sum());
    let total = rows as f64;
    let entropy = |counts: &HashMap<Option<String>, u64>| -> f64 {
        counts
            .values()
            .map(|&c| {
                let p = c as f64 / total;
                -p * p.ln()
            })
            .sum()
    };
    let h: Vec<f64> = single.iter().map(entropy).collect();
    let mut u = vec![vec![1.0; m]; m];
    for ((i, j), joint) in &pairs {
        // H(i|j) and H(j|i) from the same joint counts.
        let (mut h_i_given_j, mut h_j_given_i) = (0.0, 0.0);
        for ((x, y), &nxy) in joint {
            let p = nxy as f64 / total;
            let ny = single[*j][y] as f64;
            let nx = single[*i][x] as f64;
            h_i_given_j += p * (ny / nxy as f64).ln();
            h_j_given_i += p * (nx / nxy as f64).ln();
        }
        let coefficient = |hx: f64, hx_given: f64| {
            if hx <= 0.0 {
                1.0
            } else {
                ((hx - hx_given) / hx).clamp(0.0, 1.0)
            }
        };
        u[*i][*j] = coefficient(h[*i], h_i_given_j);
        u[*j][*i] = coefficient(h[*j], h_j_given_i);
    }
    Ok(Profile {
        columns: columns.to_vec(),
        distinct: single.iter().map(|s| s.len() as u64).collect(),
        u,
        rows,
    })
}

impl Profile {
    /// `[{"x": …, "y": …, "u": U(x|y)}, …]` over ordered pairs of distinct columns.
    pub fn json(&self) -> String {
        let mut items = vec![];
        for (i, x) in self.columns.iter().enumerate() {
            for (j, y) in self.columns.iter().enumerate() {
                if i != j {
                    items.push(serde_json::json!({"x": x, "y": y, "u": self.u[i][j]}));
                }
            }
        }
        serde_json::Value::Array(items).to_string()
    }

    pub fn csv(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "x,y,u")?;
        for (i, x) in self.columns.iter().enumerate() {
            for (j, y) in self.columns.iter().enumerate() {
                if i != j {
                    writeln!(out, "{x},{y},{}", self.u[i][j])?;
                }
            }
        }
        Ok(())
    }

    /// The matrix: a row per x with its distinct count, a column per y.
    pub fn table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let width = self
            .columns
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(1)
            .max(6);
        writeln!(
            out,
            "Theil's U(x|y) over {} rows: how much y tells about x",
            self.rows
        )?;
        write!(out, "{:width$} {:>9}", "x \\ y", "distinct")?;
        for c in &self.columns {
            write!(out, " {c:>width$}")?;
        }
        writeln!(out)?;
        for (i, x) in self.columns.iter().enumerate() {
            write!(out, "{x:width$} {:>9}", self.distinct[i])?;
            for u in &self.u[i] {
                write!(out, " {u:>width$.4}")?;
            }
            writeln!(out)?;
        }
        Ok(())
    }

    /// The matrix as an SVG heat map: darker is a stronger association.
    pub fn heatmap(&self, path: &Path) -> Result<(), ClientError> {
        let cell = 48;
        let label = 12 * self.columns.iter().map(|c| c.len()).max().unwrap_or(4) as i64 + 16;
        let n = self.columns.len() as i64;
        let size = label + cell * n + 8;
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" font-family=\"sans-serif\" font-size=\"12\">\n<title>Theil's U(row | column)</title>\n"
        );
        for (i, c) in self.columns.iter().enumerate() {
            let at = label + cell * i as i64 + cell / 2;
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{at}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>\n",
                label - 6,
                esc(c)
            ));
            svg.push_str(&format!(
                "<text transform=\"translate({at},{}) rotate(-90)\" dominant-baseline=\"middle\">{}</text>\n",
                label - 6,
                esc(c)
            ));
        }
        for i in 0..self.columns.len() {
            for j in 0..self.columns.len() {
                let u = self.u[i][j];
                let shade = (255.0 * (1.0 - u)).round() as u8;
                let (x, y) = (label + cell * j as i64, label + cell * i as i64);
                svg.push_str(&format!(
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({shade},{shade},255)\" stroke=\"white\"><title>U({}|{}) = {u:.4}</title></rect>\n",
                    esc(&self.columns[i]),
                    esc(&self.columns[j])
                ));
                svg.push_str(&format!(
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"{}\">{u:.2}</text>\n",
                    x + cell / 2,
                    y + cell / 2,
                    if u > 0.5 { "white" } else { "black" }
                ));
            }
        }
        svg.push_str("</svg>\n");
        std::fs::write(path, svg).map_err(|e| ClientError::Io {
            path: path.display().to_string(),
            source: e,
        })
    }
}
