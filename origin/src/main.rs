use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use queuegate_origin::clock::Clock;
use queuegate_origin::config::{ServeArgs, Settings};
use queuegate_origin::server;
use queuegate_origin::store::Store;
use tracing_subscriber::EnvFilter;

/// queuegate's native origin: a virtual waiting room in front of a web application.
#[derive(Debug, Parser)]
#[command(name = "queuegate-origin", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the public API, the gate and the admin API, and run the admission scheduler.
    ///
    /// Secrets come from the environment: QUEUEGATE_ADMIN_KEY (the admin API's bearer key) and
    /// QUEUEGATE_SIGNING_KEYS (comma-separated kid:secret pairs, the first one signs). Without
    /// them, keys are generated for this run and the admin key is printed to the log.
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("QUEUEGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("queuegate-origin: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::resolve(&args, |name| std::env::var(name).ok())?;
    let store: Arc<dyn Store> = queuegate_origin::store::open(&settings.store).await?;
    let running = server::start(&settings, store.clone(), Clock::System).await?;
    for secret in &settings.generated {
        tracing::warn!("{secret} is not set: generated one for this run only");
    }
    if settings
        .generated
        .contains(&queuegate_origin::config::ENV_ADMIN_KEY)
    {
        tracing::warn!(admin_key = %settings.admin_key, "use this admin key for this run");
    }
    let rooms: Vec<String> = settings
        .rooms
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    tracing::info!(
        url = %running.url(),
        store = store.kind(),
        upstream = settings.upstream.as_deref().unwrap_or("built-in demo page"),
        rooms = ?rooms,
        "queuegate-origin is serving"
    );
    let shutdown = running.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown.send(true);
    });
    running.wait().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
