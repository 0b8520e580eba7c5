//! The `keel` command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use keel_proto::net::{Connect, ConnectArgs};
use keel_proto::paths::parse_table;
use keel_proto::pb::StageProgress;

use crate::client::KeelClient;
use crate::datagen::{generate, ImbalancedJoin};
use crate::embedded::EmbeddedCluster;
use crate::error::ClientError;
use crate::output::{print, Format};
use keel_scheduler::planner::stages::human_bytes;

#[derive(Parser)]
#[command(name = "keel", version, about = "Keel: distributed SQL over Parquet")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub net: ConnectArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a query and print its result.
    Sql(SqlArgs),
    /// Print the distributed plan of a query: stages, exchanges, task counts, sizes.
    Explain(ExplainArgs),
    /// Distinct counts and Theil's U for every ordered pair of columns of a table, in one job.
    Profile(ProfileArgs),
    /// Per-column Gaussian mixtures: fit them (and transform every value), or invert the transform.
    Mixture {
        #[command(subcommand)]
        action: MixtureCommand,
    },
    /// Generate a data set from WORKLOADS.md.
    Datagen {
        #[command(subcommand)]
        set: DataSet,
    },
    /// Generate a small story-1 data set, run the story-1 query on an embedded cluster, print a summary.
    Demo {
        /// Row scale of the generated data (1 is about 4 billion rows).
        #[arg(long, default_value_t = 0.00005)]
        scale: f64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// List the scheduler's jobs: id, state, elapsed time, SQL.
    Jobs {
        #[arg(long, env = "KEEL_SCHEDULER", default_value = "http://127.0.0.1:50050")]
        scheduler: String,
    },
    /// Exit 0 when the scheduler answers and has a live worker (or, with
    /// --worker, when that worker's gRPC health service reports SERVING).
    Health {
        #[arg(long, env = "KEEL_SCHEDULER", default_value = "http://127.0.0.1:50050")]
        scheduler: String,
        /// Probe one worker instead, e.g. http://127.0.0.1:50051.
        #[arg(long)]
        worker: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum DataSet {
    /// Story 1: skewed many-to-many join, then group-by sum (df1/ and df2/).
    ImbalancedJoin {
        #[command(flatten)]
        args: GenArgs,
        /// Make key 1 hold this share of df1's rows (0 to 1, exclusive of 1),
        /// for testing skew handling; by default key 1 draws like any key.
        #[arg(long)]
        hot_key_share: Option<f64>,
    },
    /// Story 4: two daily snapshots of 40 signals whose sizes spread 100×
    /// (day1/ and day2/, one Parquet file per signal; 10 k to 1 M rows at scale 1).
    Backups(GenArgs),
    /// Story 2: a bike-share trips table (trips/): --rows N, or --scale S (about 9.5 M rows at scale 1).
    Trips {
        #[arg(long, conflicts_with = "scale", required_unless_present = "scale")]
        rows: Option<u64>,
        #[arg(long)]
        scale: Option<f64>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Story 3: device polls and alerts (polls/ and alerts/), the hottest
    /// device owning about a quarter of each.
    Devices {
        #[arg(long, default_value_t = 2_000_000)]
        polls: u64,
        #[arg(long, default_value_t = 2_000_000)]
        alerts: u64,
        #[arg(long, default_value_t = 1000)]
        devices: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// The eight TPC-H tables (region/ ... lineitem/), the same rows as the
    /// TPC's dbgen at --scale (1 is about 8.7 M rows, 6 M of them lineitem).
    Tpch {
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        scale: f64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum MixtureCommand {
    /// Fit a 1-D Gaussian mixture to each column by EM on the cluster, write
    /// DIR/<column>/model.json as each converges, then DIR/transformed/ with
    /// each value's mode (c_mode) and normalised value (c_norm).
    Fit(MixtureFitArgs),
    /// Rebuild the fitted columns from DIR/transformed (or --input) into --out.
    Inverse(MixtureInverseArgs),
}

#[derive(Args)]
pub struct MixtureFitArgs {
    /// Parquet files, directories or globs.
    #[arg(required = true)]
    paths: Vec<String>,
    /// The columns to fit.
    #[arg(long, value_delimiter = ',', required = true)]
    columns: Vec<String>,
    /// Where models and the transform go.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 10)]
    max_modes: usize,
    /// Modes whose weight falls under this are dropped.
    #[arg(long, default_value_t = 0.005)]
    min_weight: f64,
    /// Columns copied through the transform unchanged (ids).
    #[arg(long, value_delimiter = ',')]
    keep: Vec<String>,
    #[arg(long, default_value_t = 100)]
    max_iter: usize,
    /// Stop when the mean log-likelihood per row gains less than this.
    #[arg(long, default_value_t = 1e-4)]
    tol: f64,
    /// Seeds the k-means++ initialisation: one seed, one answer.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep every column whose model.json is complete; fit the rest.
    #[arg(long)]
    resume: bool,
    /// Scheduler to submit to; without it an embedded cluster runs the jobs.
    #[arg(long, env = "KEEL_SCHEDULER", conflicts_with = "workers")]
    scheduler: Option<String>,
    /// Workers of the embedded cluster (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(Args)]
pub struct MixtureInverseArgs {
    /// The directory `keel mixture fit --out` wrote.
    dir: PathBuf,
    /// The transformed values (default: DIR/transformed).
    #[arg(long)]
    input: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, env = "KEEL_SCHEDULER", conflicts_with = "workers")]
    scheduler: Option<String>,
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(Args)]
pub struct GenArgs {
    #[arg(long)]
    scale: f64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args)]
pub struct SqlArgs {
    #[command(flatten)]
    query: QueryArgs,
    /// Write the job profile (per stage and task: worker, attempt, time,
    /// rows and bytes in and out, peak memory, bytes spilled) to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
}

#[derive(Args)]
pub struct ProfileArgs {
    /// The table: a Parquet file, directory or glob, or a name registered with --table.
    target: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The columns to relate (default: every column with at most --max-distinct values).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// Without --columns: the most distinct values a column may have to be chosen.
    #[arg(long, default_value_t = 1000)]
    max_distinct: u64,
    /// table: the matrix with distinct counts; csv and json: one (x, y, u) per ordered pair.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also draw the matrix as an SVG heat map to FILE.
    #[arg(long, value_name = "FILE")]
    heatmap: Option<PathBuf>,
}

#[derive(Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    query: QueryArgs,
    /// Run the query and print the plan as it ran, with measured figures per stage.
    #[arg(long)]
    analyze: bool,
}

/// Where jobs run and the tables they may name.
#[derive(Args)]
pub struct ClusterArgs {
    /// Scheduler to submit to; without it an embedded cluster runs the job.
    #[arg(long, env = "KEEL_SCHEDULER", conflicts_with = "workers")]
    scheduler: Option<String>,
    /// Workers of the embedded cluster (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Register a table: NAME=PATH (a file, a directory or a glob).
    #[arg(long = "table", value_parser = parse_table)]
    tables: Vec<(String, String)>,
}

#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Read the query from a file.
    #[arg(long, conflicts_with = "query")]
    file: Option<PathBuf>,
    query: Option<String>,
}

/// A connection to a cluster, and the embedded cluster behind it if we started one.
struct Session {
    client: KeelClient,
    embedded: Option<EmbeddedCluster>,
}

impl Session {
    async fn open(
        scheduler: Option<&str>,
        workers: Option<usize>,
        connect: &Connect,
    ) -> Result<Self, ClientError> {
        match scheduler {
            Some(url) => Ok(Session {
                client: KeelClient::connect(url, connect).await?,
                embedded: None,
            }),
            None => {
                let n = workers.unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(1)
                });
                if n == 0 {
                    return Err(ClientError::Usage {
                        message: "--workers must be at least 1".into(),
                    });
                }
                let cluster = EmbeddedCluster::start(n, 1).await?;
                Ok(Session {
                    // The embedded cluster is this process's own: no token, no TLS.
                    client: KeelClient::connect(&cluster.url, &Connect::default()).await?,
                    embedded: Some(cluster),
                })
            }
        }
    }

    async fn close(self) {
        if let Some(c) = self.embedded {
            c.shutdown().await;
        }
    }
}

impl QueryArgs {
    fn sql(&self) -> Result<String, ClientError> {
        match (&self.query, &self.file) {
            (Some(q), None) => Ok(q.clone()),
            (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| ClientError::Io {
                path: f.display().to_string(),
                source: e,
            }),
            _ => Err(ClientError::Usage {
                message: "give a query, or --file FILE".into(),
            }),
        }
    }
}

pub async fn run(cli: Cli) -> Result<(), ClientError> {
    let connect = &cli
        .net
        .load()
        .map_err(|message| ClientError::Usage { message })?;
    match cli.command {
        Command::Sql(args) => sql(args, connect).await,
        Command::Profile(args) => profile(args, connect).await,
        Command::Mixture { action } => mixture(action, connect).await,
        Command::Explain(ExplainArgs {
            query: args,
            analyze,
        }) => {
            let sql = args.sql()?;
            let session = Session::open(
                args.cluster.scheduler.as_deref(),
                args.cluster.workers,
                connect,
            )
            .await?;
            let plan = if analyze {
                run_query(&session.client, &sql, &args.cluster.tables)
                    .await
                    .map(|r| r.report.analyzed_plan)
            } else {
                session.client.explain(&sql, &args.cluster.tables).await
            };
            session.close().await;
            print!("{}", plan?);
            Ok(())
        }
        Command::Datagen {
            set:
                DataSet::ImbalancedJoin {
                    args: GenArgs { scale, out, seed },
                    hot_key_share,
                },
        } => {
            let started = Instant::now();
            let spec = ImbalancedJoin {
                hot_key_share,
                ..ImbalancedJoin::new(scale, seed)
            };
            let g = generate(&spec, &out)?;
            eprintln!(
                "wrote {} df1 rows in {} files and {} df2 rows under {} in {:.1}s",
                g.df1_rows,
                g.df1_files,
                g.df2_rows,
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Datagen {
            set: DataSet::Backups(GenArgs { scale, out, seed }),
        } => {
            let started = Instant::now();
            let b = crate::datagen_backups::generate(scale, seed, &out)?;
            eprintln!(
                "wrote {} day-1 rows and {} day-2 rows in {} files under {} in {:.1}s",
                b.day1_rows,
                b.day2_rows,
                b.files,
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Datagen {
            set:
                DataSet::Trips {
                    rows,
                    scale,
                    out,
                    seed,
                },
        } => {
            let started = Instant::now();
            let rows = match (rows, scale) {
                (Some(0), _) => {
                    return Err(ClientError::Usage {
                        message: "--rows must be at least 1".into(),
                    })
                }
                (Some(n), _) => n,
                (None, Some(s)) => crate::datagen_trips::rows_at_scale(s)?,
                (None, None) => unreachable!("clap requires --rows or --scale"),
            };
            let t = crate::datagen_trips::generate(rows, seed, &out)?;
            eprintln!(
                "wrote {} trips in {} files under {} in {:.1}s",
                t.rows,
                t.files,
                out.join("trips").display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Datagen {
            set:
                DataSet::Devices {
                    polls,
                    alerts,
                    devices,
                    out,
                    seed,
                },
        } => {
            let started = Instant::now();
            let spec = crate::datagen_devices::Devices {
                polls,
                alerts,
                devices,
            };
            let w = crate::datagen_devices::generate(&spec, seed, &out)?;
            eprintln!(
                "wrote {} polls and {} alerts of {devices} devices in {} files under {} in {:.1}s",
                w.polls,
                w.alerts,
                w.files,
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Datagen {
            set: DataSet::Tpch { scale, out },
        } => {
            let started = Instant::now();
            let written = crate::datagen_tpch::generate(scale, &out)?;
            for w in &written {
                eprintln!(
                    "{:<9} {:>11} rows in {:>2} file{} {:>10}",
                    w.table.name(),
                    w.rows,
                    w.files,
                    if w.files == 1 { " " } else { "s" },
                    human_bytes(w.bytes)
                );
            }
            eprintln!(
                "wrote TPC-H at scale {scale}: {} rows in {} files ({}) under {} in {:.1}s",
                written.iter().map(|w| w.rows).sum::<u64>(),
                written.iter().map(|w| w.files).sum::<usize>(),
                human_bytes(written.iter().map(|w| w.bytes).sum()),
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Demo { scale, workers } => crate::demo::run(scale, workers).await,
        Command::Jobs { scheduler } => {
            for j in KeelClient::connect(&scheduler, connect)
                .await?
                .jobs()
                .await?
            {
                println!(
                    "{}\t{}\t{:.1}s\t{}",
                    j.job_id,
                    j.state,
                    j.elapsed_ms as f64 / 1000.0,
                    j.sql.replace('\n', " ")
                );
            }
            Ok(())
        }
        Command::Health {
            worker: Some(url), ..
        } => crate::health::check_worker(&url, connect).await,
        Command::Health {
            scheduler,
            worker: None,
        } => {
            let client = KeelClient::connect(&scheduler, connect).await?;
            let workers = client.workers().await?;
            if workers.is_empty() {
                return Err(ClientError::Usage {
                    message: format!("scheduler at {scheduler} answers but has no live workers"),
                });
            }
            println!("ok: {} workers", workers.len());
            Ok(())
        }
    }
}

async fn sql(
    SqlArgs {
        query: args,
        profile,
    }: SqlArgs,
    connect: &Connect,
) -> Result<(), ClientError> {
    let script = args.sql()?;
    let requests = crate::script::requests(&script);
    if requests.is_empty() {
        return Err(ClientError::Usage {
            message: "the script has no query to run (only CREATE VIEW and DROP VIEW statements)"
                .into(),
        });
    }
    if profile.is_some() && requests.len() > 1 {
        return Err(ClientError::Usage {
            message: format!(
                "--profile takes one query; the script has {}",
                requests.len()
            ),
        });
    }
    let session = Session::open(
        args.cluster.scheduler.as_deref(),
        args.cluster.workers,
        connect,
    )
    .await?;
    let mut outcome = Ok(());
    for (i, sql) in requests.iter().enumerate() {
        if i > 0 {
            println!();
        }
        outcome = run_and_print(&session, sql, &args, profile.as_deref()).await;
        if outcome.is_err() {
            break;
        }
    }
    session.close().await;
    outcome
}

/// Runs one query of a script and prints its result (or what it wrote).
async fn run_and_print(
    session: &Session,
    sql: &str,
    args: &QueryArgs,
    profile: Option<&std::path::Path>,
) -> Result<(), ClientError> {
    let result = run_query(&session.client, sql, &args.cluster.tables).await?;
    if let Some(path) = profile {
        std::fs::write(path, &result.report.profile_json).map_err(|e| ClientError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
    }
    let mut stdout = std::io::stdout().lock();
    if result.report.copied_to.is_empty() {
        print(args.format, &result.schema, &result.batches, &mut stdout)?;
    } else {
        let io = |e| ClientError::Io {
            path: "stdout".into(),
            source: e,
        };
        writeln!(
            stdout,
            "wrote {} rows to {}",
            result.report.rows_written, result.report.copied_to
        )
        .map_err(io)?;
    }
    if result.report.spilled_bytes > 0 {
        eprintln!(
            "spilled {} to disk in {} files",
            human_bytes(result.report.spilled_bytes),
            result.report.spill_files
        );
    }
    if result.report.tasks_retried > 0 {
        let memory = match result.report.memory_failures {
            0 => String::new(),
            n => format!(" ({n} for memory)"),
        };
        eprintln!(
            "{} task attempts were retried{memory}:",
            result.report.tasks_retried
        );
        for r in &result.report.retry_reasons {
            eprintln!("  {r}");
        }
    }
    Ok(())
}

async fn profile(args: ProfileArgs, connect: &Connect) -> Result<(), ClientError> {
    use crate::profile::{choose_columns, compute, counts_sql, source};
    let from = source(&args.target, &args.cluster.tables);
    let session = Session::open(
        args.cluster.scheduler.as_deref(),
        args.cluster.workers,
        connect,
    )
    .await?;
    let run = async {
        let columns = choose_columns(
            &session.client,
            &from,
            &args.cluster.tables,
            &args.columns,
            args.max_distinct,
        )
        .await?;
        let result = run_query(
            &session.client,
            &counts_sql(&from, &columns),
            &args.cluster.tables,
        )
        .await?;
        compute(&columns, &result.batches)
    };
    let result = run.await;
    session.close().await;
    let profile = result?;
    if let Some(path) = &args.heatmap {
        profile.heatmap(path)?;
    }
    let mut stdout = std::io::stdout().lock();
    let io = |e| ClientError::Io {
        path: "stdout".into(),
        source: e,
    };
    match args.format {
        Format::Json => writeln!(stdout, "{}", profile.json()).map_err(io),
        Format::Csv => profile.csv(&mut stdout).map_err(io),
        Format::Table => profile.table(&mut stdout).map_err(io),
    }
}

async fn mixture(action: MixtureCommand, connect: &Connect) -> Result<(), ClientError> {
    match action {
        MixtureCommand::Fit(args) => {
            let options = crate::mixture::FitOptions {
                columns: args.columns,
                out: args.out,
                max_modes: args.max_modes,
                min_weight: args.min_weight,
                keep: args.keep,
                max_iter: args.max_iter,
                tol: args.tol,
                seed: args.seed,
                resume: args.resume,
            };
            let session = Session::open(args.scheduler.as_deref(), args.workers, connect).await?;
            let result = crate::mixture::fit(&session.client, &args.paths, &options).await;
            session.close().await;
            for f in result? {
                let m = &f.model;
                println!(
                    "{}: {} modes, {} iterations, log-likelihood {:.6} per row over {} rows ({})",
                    m.column,
                    m.weights.len(),
                    m.iterations,
                    m.log_likelihood,
                    m.rows,
                    if f.resumed { "resumed" } else { "fitted" }
                );
            }
            println!("wrote {}", options.out.join("transformed").display());
            Ok(())
        }
        MixtureCommand::Inverse(args) => {
            let input = args.input.unwrap_or_else(|| args.dir.join("transformed"));
            let session = Session::open(args.scheduler.as_deref(), args.workers, connect).await?;
            let result =
                crate::mixture::inverse(&session.client, &args.dir, &input, &args.out).await;
            session.close().await;
            let n = result?;
            println!("rebuilt {n} columns into {}", args.out.display());
            Ok(())
        }
    }
}

/// Runs a query with a progress bar on a terminal; Ctrl-C cancels the job.
pub async fn run_query(
    client: &KeelClient,
    sql: &str,
    tables: &[(String, String)],
) -> Result<crate::client::QueryResult, ClientError> {
    run_query_with(client, sql, tables, true).await
}

/// [`run_query`], with a progress bar of its tasks only if `progress`.
pub async fn run_query_with(
    client: &KeelClient,
    sql: &str,
    tables: &[(String, String)],
    progress: bool,
) -> Result<crate::client::QueryResult, ClientError> {
    let job = client.submit(sql, tables).await?;
    let bar = progress.then(progress_bar).flatten();
    let update = |stages: &[StageProgress]| {
        if let Some(bar) = &bar {
            let total: u32 = stages.iter().map(|s| s.tasks_total).sum();
            let done: u32 = stages.iter().map(|s| s.tasks_done).sum();
            let stages_done = stages
                .iter()
                .filter(|s| s.tasks_total > 0 && s.tasks_done == s.tasks_total)
                .count();
            bar.set_length(total.max(1) as u64);
            bar.set_position(done as u64);
            bar.set_message(format!("stages {stages_done}/{}", stages.len()));
        }
    };
    let report = tokio::select! {
        r = client.wait(&job, update) => r,
        _ = tokio::signal::ctrl_c() => {
            let _ = client.cancel(&job).await;
            if let Some(b) = &bar { b.finish_and_clear(); }
            return Err(ClientError::JobFailed { message: format!("job {job} cancelled by Ctrl-C") });
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = report?;
    let fetched = client.fetch(&report).await;
    let _ = client.release(&job).await;
    let (schema, batches) = fetched?;
    Ok(crate::client::QueryResult {
        schema,
        batches,
        report,
    })
}

fn progress_bar() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks, {msg}",
        )
        .ok()?,
    );
    Some(bar)
}
