//! `missive-server`: start the example server (`--help` lists every option).
//!
//! Prints `listening on http://ADDR` on stdout once the socket is bound (tests and scripts parse
//! it; with `--port 0` it is the only way to learn the port), logs to stderr, and shuts down
//! gracefully on SIGINT or SIGTERM.

#![forbid(unsafe_code)]

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use clap::Parser;
use missive_server::App;
use missive_server::config::{Config, Options};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let options = Options::parse();
    let print_config = options.print_config;
    let config = match Config::load(options) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("missive-server: {e}");
            return ExitCode::from(2);
        }
    };
    if print_config {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    let filter: tracing_subscriber::filter::Targets = config
        .log
        .parse()
        .expect("the log filter was checked when the configuration was resolved");
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(filter)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("missive-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let bind = (config.bind, config.port);
    let app = match App::open(config) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("missive-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(bind).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "missive-server: cannot listen on {}:{}: {e}",
                bind.0, bind.1
            );
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            println!("listening on http://{addr}");
            let _ = std::io::stdout().flush();
        }
        Err(e) => {
            eprintln!("missive-server: {e}");
            return ExitCode::FAILURE;
        }
    }
    app.serve(listener, shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
        _ = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
