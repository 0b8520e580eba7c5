use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use keel_proto::net::ServeArgs;
use keel_proto::paths::parse_table;
use keel_proto::paths::AllowedPaths;
use keel_proto::size::parse_size;
use keel_scheduler::server::run;
use keel_scheduler::skew::SkewConfig;
use keel_scheduler::state::SchedulerConfig;

/// The Keel scheduler: plans SQL into stages and tasks and runs them on workers.
#[derive(Parser)]
#[command(name = "keel-scheduler", version)]
struct Args {
    /// Address to serve gRPC on; port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:50050")]
    bind: String,
    /// Address to serve the dashboard, the JSON API and Prometheus metrics
    /// on (HTTP); port 0 picks a free port, `off` serves none.
    #[arg(long, default_value = "0.0.0.0:50080")]
    http_bind: String,
    /// Seconds without a heartbeat after which a worker is lost.
    #[arg(long, default_value_t = 5.0)]
    heartbeat_timeout: f64,
    /// Attempts a task may fail before its job fails.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Bytes of Parquet row groups per scan task (default: sized to the cluster's cores).
    #[arg(long, value_parser = parse_size)]
    split_bytes: Option<usize>,
    /// Most bytes one reduce task reads; map partitions are coalesced up to it.
    #[arg(long, value_parser = parse_size, default_value = "64MiB")]
    task_bytes: usize,
    /// A join side smaller than this is broadcast instead of shuffled (0 disables broadcasts).
    #[arg(long, value_parser = parse_size, default_value = "32MiB")]
    broadcast_bytes: usize,
    /// Seconds a job with work to do waits for a live worker before it fails.
    #[arg(long, default_value_t = 60.0)]
    worker_wait: f64,
    /// Partitions each hash exchange writes.
    #[arg(long, default_value_t = 64)]
    shuffle_partitions: u32,
    /// Memory-aware admission: `on` starts a task only where its estimated
    /// memory fits the worker's budget; `off` places tasks by free cores alone.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    admission: Switch,
    /// Skew-aware shuffle joins: `on` splits a join partition that hot keys
    /// made too big over several tasks; `off` leaves every partition whole.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    skew_join: Switch,
    /// A join partition is skewed above this many times its side's median partition…
    #[arg(long, default_value_t = 4.0)]
    skew_factor: f64,
    /// …and above this many bytes.
    #[arg(long, value_parser = parse_size, default_value = "8MiB")]
    skew_min_bytes: usize,
    /// A global aggregate over more partial tasks than this merges their
    /// states in a tree of this fan-in, no task reading more (0: all to one).
    #[arg(long, default_value_t = 16)]
    tree_fan_in: usize,
    /// A table every query can name, and that Flight SQL clients see
    /// (repeatable): NAME=PATH, a Parquet file, directory or glob.
    #[arg(long = "table", value_name = "NAME=PATH", value_parser = parse_table)]
    tables: Vec<(String, String)>,
    /// Confine queries' reads and writes to this directory (repeatable; default: anywhere).
    #[arg(long = "allow-path", value_name = "DIR")]
    allow_paths: Vec<PathBuf>,
    #[command(flatten)]
    net: ServeArgs,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        // Colour codes only on a terminal: logs piped to files or collectors stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.max_attempts == 0 {
        anyhow::bail!("--max-attempts must be at least 1");
    }
    if !(args.skew_factor >= 1.0) {
        anyhow::bail!(
            "--skew-factor must be at least 1 (a partition is skewed above that many times the median), got {}",
            args.skew_factor
        );
    }
    if args.tree_fan_in == 1 {
        anyhow::bail!(
            "--tree-fan-in must be at least 2 (or 0 to merge all partial states in one task)"
        );
    }
    let (connect, serve) = args.net.load().map_err(anyhow::Error::msg)?;
    let allowed = AllowedPaths::new(&args.allow_paths).map_err(anyhow::Error::msg)?;
    let config = SchedulerConfig {
        heartbeat_timeout: Duration::from_secs_f64(args.heartbeat_timeout),
        max_attempts: args.max_attempts,
        max_task_bytes: args.task_bytes as u64,
        min_task_bytes: (args.task_bytes as u64).min(4 << 20),
        broadcast_bytes: args.broadcast_bytes as u64,
        shuffle_partitions: args.shuffle_partitions.max(1),
        split_bytes: args.split_bytes.map(|b| b as u64),
        worker_wait: Duration::from_secs_f64(args.worker_wait),
        admission: args.admission == Switch::On,
        skew: (args.skew_join == Switch::On).then(|| SkewConfig {
            factor: args.skew_factor,
            min_bytes: args.skew_min_bytes as u64,
        }),
        tree_fan_in: args.tree_fan_in,
        serve,
        connect,
        allowed,
        tables: args.tables,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", args.bind))?;
    let http = match args.http_bind.as_str() {
        "off" => None,
        addr => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot bind --http-bind {addr}: {e}"))?,
        ),
    };
    // Tests and scripts read the bound addresses from these lines (the ports may be 0).
    println!("keel-scheduler listening on {}", listener.local_addr()?);
    if let Some(http) = &http {
        println!("keel-scheduler http on {}", http.local_addr()?);
    }
    run(config, listener, http, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
