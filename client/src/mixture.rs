//! `keel mixture fit` and `keel mixture inverse`: per-column 1-D Gaussian
//! mixtures fitted by EM on the cluster, the mode-specific normalisation
//! of every value, and its inverse.
//!
//! Each EM iteration is one job: `mixture_stats(c, model)` per column
//! still being fitted, over every row, a global aggregate whose partial
//! sums merge in a tree; the driver here does the M step. Columns start
//! from a 1024-bin histogram of their values: seeded k-means++ and EM over
//! the bins for each number of modes up to `--max-modes`, the number
//! chosen by BIC. EM on the rows then drops modes whose weight falls under
//! `--min-weight` and stops when the mean log-likelihood gains less than
//! `--tol`. A converged
//! column's `model.json` is written at once, under a temporary name and
//! renamed, so a fit killed at any moment leaves whole models only, and
//! `--resume` skips them. The transform and the inverse are `COPY` jobs
//! with `mixture_mode`, `mixture_norm` and a CASE over the modes.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use keel_worker::mixture::{Mixture, Stats};

use crate::cli::run_query_with;
use crate::client::KeelClient;
use crate::error::ClientError;
use crate::profile::quote;

/// What `keel mixture fit` was asked for.
pub struct FitOptions {
    pub columns: Vec<String>,
    pub out: PathBuf,
    pub max_modes: usize,
    pub min_weight: f64,
    pub keep: Vec<String>,
    pub max_iter: usize,
    pub tol: f64,
    pub seed: u64,
    pub resume: bool,
}

/// A fitted column, as `DIR/<column>/model.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    pub column: String,
    pub weights: Vec<f64>,
    pub means: Vec<f64>,
    pub stds: Vec<f64>,
    /// Mean log-likelihood per row (natural log).
    pub log_likelihood: f64,
    pub iterations: usize,
    pub rows: u64,
}

/// Added to every variance, as scikit-learn's `reg_covar`: a mode cannot
/// collapse onto one repeated value.
const VARIANCE_FLOOR: f64 = 1e-6;
/// Histogram bins the initialisation clusters.
const BINS: usize = 1024;

impl Model {
    /// `w_1, μ_1, σ_1, …`: the order `mixture_stats` and friends take.
    fn params(&self) -> Vec<f64> {
        (0..self.weights.len())
            .flat_map(|k| [self.weights[k], self.means[k], self.stds[k]])
            .collect()
    }

    /// [`Model::params`] as SQL constants.
    fn sql_params(&self) -> String {
        let params: Vec<String> = self.params().into_iter().map(number).collect();
        params.join(", ")
    }

    fn path(dir: &Path, column: &str) -> PathBuf {
        dir.join(column).join("model.json")
    }

    /// A complete model of `column` from an earlier fit, if there is one.
    fn load(dir: &Path, column: &str) -> Option<Model> {
        let text = std::fs::read_to_string(Model::path(dir, column)).ok()?;
        serde_json::from_str::<Model>(&text)
            .ok()
            .filter(|m| m.column == column && !m.weights.is_empty())
    }

    /// Writes `model.json` whole or not at all: a temporary file renamed.
    fn save(&self, dir: &Path) -> Result<(), ClientError> {
        let target = Model::path(dir, &self.column);
        let parent = target.parent().expect("a column directory");
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        let tmp = parent.join(".model.json.tmp");
        let text = serde_json::to_string_pretty(self).expect("a model serializes");
        std::fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, &target).map_err(|e| io_error(&target, e))
    }
}

/// A number as SQL reads it back bit for bit.
fn number(v: f64) -> String {
    format!("{v:?}")
}

fn io_error(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn usage(message: String) -> ClientError {
    ClientError::Usage { message }
}

/// The FROM item for one or more paths or globs.
pub fn source(paths: &[String]) -> String {
    let quoted: Vec<String> = paths
        .iter()
        .map(|p| format!("'{}'", p.replace('\'', "''")))
        .collect();
    match quoted.as_slice() {
        [one] => format!("read_parquet({one})"),
        many => format!("read_parquet([{}])", many.join(", ")),
    }
}

async fn query(
    client: &KeelClient,
    sql: &str,
) -> Result<Vec<arrow::array::RecordBatch>, ClientError> {
    Ok(run_query_with(client, sql, &[], false).await?.batches)
}

/// The input's columns and their types.
async fn schema(client: &KeelClient, from: &str) -> Result<Vec<(String, DataType)>, ClientError> {
    let result =
        run_query_with(client, &format!("SELECT * FROM {from} LIMIT 0"), &[], false).await?;
    Ok(result
        .schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect())
}

fn check_columns(
    schema: &[(String, DataType)],
    columns: &[String],
    keep: &[String],
) -> Result<(), ClientError> {
    let names: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
    if columns.is_empty() {
        return Err(usage("name the columns to fit with --columns a,b".into()));
    }
    for c in columns.iter().chain(keep) {
        if !names.contains(&c.as_str()) {
            return Err(usage(format!(
                "column {c} is not in the input (it has {})",
                names.join(", ")
            )));
        }
    }
    for c in columns {
        let t = &schema.iter().find(|(n, _)| n == c).expect("checked").1;
        let numeric = matches!(
            t,
            DataType::Int32 | DataType::Int64 | DataType::Float64 | DataType::Decimal128(..)
        );
        if !numeric {
            return Err(usage(format!(
                "column {c} is {t}, not a number: a mixture is fitted to numbers"
            )));
        }
    }
    Ok(())
}

/// Per column: non-NULL values, min and max.
struct Extent {
    values: u64,
    min: f64,
    max: f64,
}

async fn extents(
    client: &KeelClient,
    from: &str,
    columns: &[String],
) -> Result<Vec<Extent>, ClientError> {
    let mut items = vec!["count(*)".to_string()];
    for c in columns {
        let q = quote(c);
        items.push(format!(
            "count({q}), CAST(min({q}) AS DOUBLE), CAST(max({q}) AS DOUBLE)"
        ));
    }
    let batches = query(client, &format!("SELECT {} FROM {from}", items.join(", "))).await?;
    let b = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| usage("the input has no rows".into()))?;
    let rows = b.column(0).as_primitive::<Int64Type>().value(0) as u64;
    if rows == 0 {
        return Err(usage("the input has no rows".into()));
    }
    let mut out = vec![];
    for (i, c) in columns.iter().enumerate() {
        let values = b.column(1 + 3 * i).as_primitive::<Int64Type>().value(0) as u64;
        if values == 0 {
            return Err(usage(format!("column {c} has no non-NULL values")));
        }
        let min = b.column(2 + 3 * i).as_primitive::<Float64Type>().value(0);
        let max = b.column(3 + 3 * i).as_primitive::<Float64Type>().value(0);
        out.push(Extent { values, min, max });
    }
    Ok(out)
}

/// Per column, the (mean value, count) of each non-empty histogram bin.
async fn histograms(
    client: &KeelClient,
    from: &str,
    columns: &[String],
    extents: &[Extent],
) -> Result<Vec<Vec<(f64, f64)>>, ClientError> {
    let mut parts = vec![];
    for (i, (c, e)) in columns.iter().zip(extents).enumerate() {
        let q = quote(c);
        let width = ((e.max - e.min) / BINS as f64).max(f64::MIN_POSITIVE);
        parts.push(format!(
            "SELECT {i} AS col, least(CAST(floor((CAST({q} AS DOUBLE) - {min}) / {width}) AS BIGINT), {last}) AS bin, \
             avg(CAST({q} AS DOUBLE)) AS center, count(*) AS n FROM {from} WHERE {q} IS NOT NULL GROUP BY 1, 2",
            min = number(e.min),
            width = number(width),
            last = BINS - 1
        ));
    }
    let batches = query(client, &parts.join(" UNION ALL ")).await?;
    let mut out = vec![vec![]; columns.len()];
    for b in &batches {
        let col = b.column(0).as_primitive::<Int64Type>();
        let center = b.column(2).as_primitive::<Float64Type>();
        let n = b.column(3).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            out[col.value(r) as usize].push((center.value(r), n.value(r) as f64));
        }
    }
    for h in &mut out {
        h.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(out)
}

/// splitmix64: a small seeded generator, so a seed gives one answer.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The starting model of a column from its histogram: for each number of
/// modes up to `max_modes`, weighted k-means++ (the first centre the
/// heaviest bin, the rest drawn by squared distance with the seeded
/// generator) refined by EM over the bins; the number of modes is the one
/// with the lowest BIC (the Bayesian information criterion, which
/// approximates the evidence for each number), so redundant modes are not
/// fitted at all.
fn initial_model(column: &str, bins: &[(f64, f64)], max_modes: usize, seed: u64) -> Model {
    let spread = bins.last().map_or(0.0, |l| l.0) - bins.first().map_or(0.0, |f| f.0);
    // A mode may not be narrower than a bin: the bins stand for their values.
    let min_std = (spread / BINS as f64).max(VARIANCE_FLOOR.sqrt());
    let total: f64 = bins.iter().map(|b| b.1).sum();
    let mut best: Option<(f64, Model)> = None;
    for k in 1..=max_modes.min(bins.len()).max(1) {
        let start = kmeans_start(column, bins, k, seed, min_std);
        let (model, log_likelihood) = histogram_em(start, bins, min_std);
        let parameters = (3 * model.weights.len() - 1) as f64;
        let bic = -2.0 * log_likelihood + parameters * total.ln();
        if best.as_ref().is_none_or(|(b, _)| bic < *b) {
            best = Some((bic, model));
        }
    }
    best.expect("at least one mode").1
}

/// Weighted k-means++ over the bins, refined by Lloyd's iterations; each
/// cluster's mass, mean and spread are a mode's weight, mean and std.
fn kmeans_start(column: &str, bins: &[(f64, f64)], k: usize, seed: u64, min_std: f64) -> Model {
    let mut rng = Rng(seed ^ 0x5eed);
    let heaviest = bins
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.0, |b| b.0);
    let mut centres = vec![heaviest];
    while centres.len() < k {
        let d2: Vec<f64> = bins
            .iter()
            .map(|(x, n)| {
                n * centres
                    .iter()
                    .map(|c| (x - c).powi(2))
                    .fold(f64::MAX, f64::min)
            })
            .collect();
        let total: f64 = d2.iter().sum();
        if total <= 0.0 {
            break;
        }
        let mut pick = rng.next() * total;
        let mut chosen = bins.len() - 1;
        for (i, d) in d2.iter().enumerate() {
            if pick < *d {
                chosen = i;
                break;
            }
            pick -= d;
        }
        centres.push(bins[chosen].0);
    }
    let nearest = |x: f64, centres: &[f64]| {
        (0..centres.len())
            .min_by(|&a, &b| (x - centres[a]).abs().total_cmp(&(x - centres[b]).abs()))
            .expect("a centre")
    };
    for _ in 0..20 {
        let mut sums = vec![(0.0, 0.0); centres.len()];
        for (x, n) in bins {
            let j = nearest(*x, &centres);
            sums[j].0 += x * n;
            sums[j].1 += n;
        }
        for (c, (s, n)) in centres.iter_mut().zip(&sums) {
            if *n > 0.0 {
                *c = s / n;
            }
        }
    }
    let total: f64 = bins.iter().map(|b| b.1).sum();
    let mut stats = vec![(0.0, 0.0); centres.len()];
    for (x, n) in bins {
        let j = nearest(*x, &centres);
        stats[j].0 += n;
        stats[j].1 += n * (x - centres[j]).powi(2);
    }
    let mut model = Model {
        column: column.to_string(),
        weights: vec![],
        means: vec![],
        stds: vec![],
        log_likelihood: f64::NEG_INFINITY,
        iterations: 0,
        rows: 0,
    };
    for (j, (n, ss)) in stats.iter().enumerate() {
        if *n > 0.0 {
            model.weights.push(n / total);
            model.means.push(centres[j]);
            model.stds.push((ss / n).sqrt().max(min_std));
        }
    }
    model
}

/// EM over the histogram's bins (each a point weighted by its count),
/// stds kept at least `min_std`; returns the model and its total
/// log-likelihood over the bins' rows.
fn histogram_em(mut model: Model, bins: &[(f64, f64)], min_std: f64) -> (Model, f64) {
    let mut previous = f64::NEG_INFINITY;
    let mut log_likelihood = previous;
    for _ in 0..300 {
        let mixture = Mixture::new(&model.params()).expect("positive weights and stds");
        let mut stats = Stats::empty(mixture.modes());
        stats.add_weighted(&mixture, bins.iter().copied());
        log_likelihood = stats.0[1];
        let (mut next, _) = m_step(&model, &stats.0, 0.0);
        next.stds.iter_mut().for_each(|s| *s = s.max(min_std));
        model = next;
        if (log_likelihood - previous).abs() <= 1e-9 * log_likelihood.abs() {
            break;
        }
        previous = log_likelihood;
    }
    (model, log_likelihood)
}

/// The M step from the E step's sums `[n, ΣL, (Σγ, Σγd, Σγd²) per mode]`:
/// the next model, modes under `min_weight` dropped; and the mean
/// log-likelihood of the model the sums were taken under.
fn m_step(model: &Model, sums: &[f64], min_weight: f64) -> (Model, f64) {
    let n = sums[0].max(1.0);
    let log_likelihood = sums[1] / n;
    let mut next = Model {
        weights: vec![],
        means: vec![],
        stds: vec![],
        ..model.clone()
    };
    for k in 0..model.weights.len() {
        let (g, gd, gdd) = (sums[2 + 3 * k], sums[3 + 3 * k], sums[4 + 3 * k]);
        let w = g / n;
        if w < min_weight || g <= 0.0 {
            continue;
        }
        let shift = gd / g;
        let var = (gdd / g - shift * shift).max(0.0) + VARIANCE_FLOOR;
        next.weights.push(w);
        next.means.push(model.means[k] + shift);
        next.stds.push(var.sqrt());
    }
    if next.weights.is_empty() {
        // Every mode fell under the floor: keep the heaviest.
        let k = (0..model.weights.len())
            .max_by(|&a, &b| sums[2 + 3 * a].total_cmp(&sums[2 + 3 * b]))
            .expect("a mode");
        next.weights.push(1.0);
        next.means.push(model.means[k]);
        next.stds.push(model.stds[k]);
    }
    let total: f64 = next.weights.iter().sum();
    next.weights.iter_mut().for_each(|w| *w /= total);
    (next, log_likelihood)
}

/// How a column's model came about, for the summary.
pub struct Fitted {
    pub model: Model,
    pub resumed: bool,
}

/// Fits every column (resuming finished ones), then writes the transform.
pub async fn fit(
    client: &KeelClient,
    paths: &[String],
    opts: &FitOptions,
) -> Result<Vec<Fitted>, ClientError> {
    if opts.max_modes == 0 {
        return Err(usage("--max-modes must be at least 1".into()));
    }
    let from = source(paths);
    let schema = schema(client, &from).await?;
    check_columns(&schema, &opts.columns, &opts.keep)?;
    let mut done: Vec<Option<Fitted>> = opts
        .columns
        .iter()
        .map(|c| {
            opts.resume
                .then(|| Model::load(&opts.out, c))
                .flatten()
                .map(|model| Fitted {
                    model,
                    resumed: true,
                })
        })
        .collect();
    let todo: Vec<usize> = (0..opts.columns.len())
        .filter(|&i| done[i].is_none())
        .collect();
    if !todo.is_empty() {
        let names: Vec<String> = todo.iter().map(|&i| opts.columns[i].clone()).collect();
        let extents = extents(client, &from, &names).await?;
        let bins = histograms(client, &from, &names, &extents).await?;
        let mut models: Vec<Model> = names
            .iter()
            .zip(&bins)
            .zip(&extents)
            .map(|((c, b), e)| Model {
                rows: e.values,
                ..initial_model(c, b, opts.max_modes, opts.seed)
            })
            .collect();
        let mut active: Vec<usize> = (0..names.len()).collect();
        let bar = iteration_bar(opts.max_iter);
        for iteration in 1..=opts.max_iter {
            let items: Vec<String> = active
                .iter()
                .map(|&i| {
                    format!(
                        "mixture_stats({}, {})",
                        quote(&names[i]),
                        models[i].sql_params()
                    )
                })
                .collect();
            let batches =
                query(client, &format!("SELECT {} FROM {from}", items.join(", "))).await?;
            let row = batches
                .iter()
                .find(|b| b.num_rows() > 0)
                .ok_or_else(|| usage("the input has no rows".into()))?;
            let mut still = vec![];
            for (j, &i) in active.iter().enumerate() {
                let blob = row.column(j).as_binary::<i32>().value(0);
                let sums = Stats::from_bytes(blob)
                    .map_err(|e| ClientError::Protocol {
                        message: format!("mixture_stats of {}: {e}", names[i]),
                    })?
                    .0;
                let previous = models[i].log_likelihood;
                let (next, log_likelihood) = m_step(&models[i], &sums, opts.min_weight);
                let converged = (log_likelihood - previous).abs() < opts.tol
                    && next.weights.len() == models[i].weights.len();
                if converged || iteration == opts.max_iter {
                    // The model the last E step measured, with its likelihood.
                    let mut model = models[i].clone();
                    model.log_likelihood = log_likelihood;
                    model.iterations = iteration;
                    model.save(&opts.out)?;
                    done[todo[i]] = Some(Fitted {
                        model,
                        resumed: false,
                    });
                } else {
                    models[i] = Model {
                        log_likelihood,
                        iterations: iteration,
                        ..next
                    };
                    still.push(i);
                }
            }
            active = still;
            if let Some(b) = &bar {
                b.set_position(iteration as u64);
                b.set_message(format!("{} columns fitting", active.len()));
            }
            if active.is_empty() {
                break;
            }
        }
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
    }
    let fitted: Vec<Fitted> = done
        .into_iter()
        .map(|f| f.expect("every column fitted"))
        .collect();
    transform(client, &from, opts, &fitted).await?;
    Ok(fitted)
}

fn iteration_bar(max: usize) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(max as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} iteration {pos}/{len}, {msg}",
        )
        .ok()?,
    );
    Some(bar)
}

/// `DIR/transformed/part-*.parquet`: the kept columns, and per fitted
/// column `c_mode` and `c_norm`; written beside and renamed into place.
async fn transform(
    client: &KeelClient,
    from: &str,
    opts: &FitOptions,
    fitted: &[Fitted],
) -> Result<(), ClientError> {
    let mut items: Vec<String> = opts.keep.iter().map(|k| quote(k)).collect();
    for f in fitted {
        let c = &f.model.column;
        let params = f.model.sql_params();
        items.push(format!(
            "mixture_mode({q}, {params}) AS {mode}, mixture_norm({q}, {params}) AS {norm}",
            q = quote(c),
            mode = quote(&format!("{c}_mode")),
            norm = quote(&format!("{c}_norm"))
        ));
    }
    let target = opts.out.join("transformed");
    let staging = opts.out.join(".transformed.tmp");
    replace_dir(&staging, None)?;
    let sql = format!(
        "COPY (SELECT {} FROM {from}) TO '{}' (FORMAT parquet)",
        items.join(", "),
        staging.display().to_string().replace('\'', "''")
    );
    query(client, &sql).await?;
    replace_dir(&target, Some(&staging))
}

/// Removes `dir` and, with `with`, renames that directory into its place.
fn replace_dir(dir: &Path, with: Option<&Path>) -> Result<(), ClientError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    if let Some(from) = with {
        std::fs::rename(from, dir).map_err(|e| io_error(dir, e))?;
    }
    Ok(())
}

/// Every model under `dir`, by column name.
pub fn models(dir: &Path) -> Result<Vec<Model>, ClientError> {
    let mut out = vec![];
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(m) = Model::load(dir, &name) {
            out.push(m);
        }
    }
    out.sort_by(|a, b| a.column.cmp(&b.column));
    if out.is_empty() {
        return Err(usage(format!(
            "{} holds no model.json: run keel mixture fit --out {} first",
            dir.display(),
            dir.display()
        )));
    }
    Ok(out)
}

/// Writes the kept columns and each fitted column rebuilt from its mode
/// and normalised value: x = norm · 4σ + μ of the mode.
pub async fn inverse(
    client: &KeelClient,
    dir: &Path,
    input: &Path,
    out: &Path,
) -> Result<usize, ClientError> {
    let models = models(dir)?;
    let from = source(&[input.join("*.parquet").display().to_string()]);
    let schema = schema(client, &from).await?;
    let derived: Vec<String> = models
        .iter()
        .flat_map(|m| [format!("{}_mode", m.column), format!("{}_norm", m.column)])
        .collect();
    for d in &derived {
        if !schema.iter().any(|(n, _)| n == d) {
            return Err(usage(format!(
                "{} has no column {d}: it is not the transform of the models in {}",
                input.display(),
                dir.display()
            )));
        }
    }
    let mut items: Vec<String> = schema
        .iter()
        .filter(|(n, _)| !derived.contains(n))
        .map(|(n, _)| quote(n))
        .collect();
    for m in &models {
        let mode = quote(&format!("{}_mode", m.column));
        let norm = quote(&format!("{}_norm", m.column));
        let whens: Vec<String> = (0..m.means.len())
            .map(|k| {
                format!(
                    "WHEN {k} THEN {norm} * {} + {}",
                    number(4.0 * m.stds[k]),
                    number(m.means[k])
                )
            })
            .collect();
        items.push(format!(
            "CASE {mode} {} END AS {}",
            whens.join(" "),
            quote(&m.column)
        ));
    }
    let sql = format!(
        "COPY (SELECT {} FROM {from}) TO '{}' (FORMAT parquet)",
        items.join(", "),
        out.display().to_string().replace('\'', "''")
    );
    query(client, &sql).await?;
    Ok(models.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialisation_finds_separated_modes_and_is_seeded() {
        // A histogram of a million rows from three Gaussians.
        let modes = [(0.3, -5.0, 1.0), (0.5, 0.0, 0.5), (0.2, 8.0, 2.0)];
        let bins: Vec<(f64, f64)> = (0..1000)
            .map(|i| -10.0 + 0.025 * i as f64)
            .map(|x| {
                let density: f64 = modes
                    .iter()
                    .map(|(w, m, s)| {
                        w * (-0.5 * ((x - m) / s).powi(2)).exp()
                            / (s * (2.0 * std::f64::consts::PI).sqrt())
                    })
                    .sum();
                (x, (1e6 * density * 0.025).round())
            })
            .filter(|b| b.1 > 0.0)
            .collect();
        let m = initial_model("x", &bins, 10, 7);
        assert_eq!(m.weights.len(), 3, "{m:?}");
        let mut means = m.means.clone();
        means.sort_by(f64::total_cmp);
        for (got, want) in means.iter().zip([-5.0, 0.0, 8.0]) {
            assert!((got - want).abs() < 0.02, "{means:?}");
        }
        assert_eq!(m, initial_model("x", &bins, 10, 7));
    }

    #[test]
    fn m_step_moves_means_and_drops_light_modes() {
        let model = Model {
            column: "x".into(),
            weights: vec![0.5, 0.499, 0.001],
            means: vec![0.0, 10.0, 20.0],
            stds: vec![1.0, 1.0, 1.0],
            log_likelihood: 0.0,
            iterations: 0,
            rows: 100,
        };
        // 60 rows at 1 (mode 0), 39.9 at 10, 0.1 at 20.
        let sums = [
            100.0, -150.0, 60.0, 60.0, 60.0, 39.9, 0.0, 39.9, 0.1, 0.0, 0.0,
        ];
        let (next, ll) = m_step(&model, &sums, 0.005);
        assert_eq!(ll, -1.5);
        assert_eq!(next.weights.len(), 2);
        assert!((next.means[0] - 1.0).abs() < 1e-12);
        assert!((next.weights[0] - 60.0 / 99.9).abs() < 1e-12);
    }
}
