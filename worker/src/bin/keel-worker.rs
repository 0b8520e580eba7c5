use std::path::PathBuf;

use clap::Parser;
use keel_proto::net::ServeArgs;
use keel_proto::paths::AllowedPaths;
use keel_proto::size::parse_size;
use keel_worker::service::{default_memory_limit, run, WorkerConfig};
use keel_worker::shuffle::ShuffleCompression;

/// A Keel worker: runs tasks for the scheduler and serves their output over Arrow Flight.
#[derive(Parser)]
#[command(name = "keel-worker", version)]
struct Args {
    /// Scheduler gRPC address, e.g. http://127.0.0.1:50050
    #[arg(long, env = "KEEL_SCHEDULER")]
    scheduler: String,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:50051")]
    bind: String,
    /// host:port other workers and clients use to reach this worker (default: the bound address).
    #[arg(long, env = "KEEL_ADVERTISE")]
    advertise: Option<String>,
    /// Tasks run at once (default: the number of cores).
    #[arg(long, env = "KEEL_CORES")]
    cores: Option<usize>,
    /// Memory the worker may use in all, e.g. 4GiB (a container's limit); operators get 80% of it.
    /// Default: the cgroup limit, or total memory.
    #[arg(long, env = "KEEL_MEMORY_LIMIT", value_parser = parse_size)]
    memory_limit: Option<usize>,
    /// Directory for shuffle files (default: a keel-worker directory under the system temp dir).
    #[arg(long, env = "KEEL_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Compression of shuffle files: none (default; cheapest on one machine
    /// or a fast network) or lz4 (fewer bytes over a slow network).
    #[arg(
        long,
        env = "KEEL_SHUFFLE_COMPRESSION",
        value_enum,
        default_value = "none"
    )]
    shuffle_compression: ShuffleCompression,
    /// Confine tasks' reads and writes to this directory (repeatable; default: anywhere).
    #[arg(long = "allow-path", value_name = "DIR")]
    allow_paths: Vec<PathBuf>,
    #[command(flatten)]
    net: ServeArgs,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        // Colour codes only on a terminal: logs piped to files or collectors stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cores = args.cores.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    keel_worker::allocator::limit_arenas(cores);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args, cores))
}

async fn serve(args: Args, cores: usize) -> anyhow::Result<()> {
    let (connect, serve) = args.net.load().map_err(anyhow::Error::msg)?;
    let allowed = AllowedPaths::new(&args.allow_paths).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", args.bind))?;
    // Tests and scripts read the bound address from this line (the port may be 0).
    println!("keel-worker listening on {}", listener.local_addr()?);
    let work_dir = args.work_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "keel-worker-{}",
            listener.local_addr().map(|a| a.port()).unwrap_or(0)
        ))
    });
    let config = WorkerConfig {
        scheduler_url: args.scheduler,
        advertise: args.advertise,
        cores,
        memory_limit: args.memory_limit.unwrap_or_else(default_memory_limit),
        work_dir,
        shuffle_compression: args.shuffle_compression,
        connect,
        serve,
        allowed,
    };
    run(config, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
