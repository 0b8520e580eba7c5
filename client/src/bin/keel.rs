use clap::Parser;
use keel_client::cli::{run, Cli};

fn main() {
    tracing_subscriber::fmt()
        // Colour codes only on a terminal: logs piped to files or collectors stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // The embedded cluster's workers run in this process.
    keel_worker::allocator::limit_arenas(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("Error: {e}");
        std::process::exit(1);
    }
}
