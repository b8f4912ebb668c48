use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use queuegate_origin::clock::Clock;
use queuegate_origin::config::{ScheduleArgs, ServeArgs, Settings};
use queuegate_origin::server;
use queuegate_origin::store::OriginStore;
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
    Serve(Box<ServeArgs>),

    /// Run the admission scheduler for the rooms an edge worker serves: every tick, read each
    /// room's load from the edge's admin API and admit a batch there, under the edge's admission
    /// lease. QUEUEGATE_ADMIN_KEY must hold the edge's admin key.
    Schedule(ScheduleArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("QUEUEGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command {
        if let Some(n) = args.workers {
            builder.worker_threads(usize::from(n));
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Schedule(args) => schedule(args).await,
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
    let store: Arc<dyn OriginStore> = queuegate_origin::store::open(&settings.store).await?;
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

async fn schedule(args: ScheduleArgs) -> Result<(), Box<dyn std::error::Error>> {
    use queuegate_origin::config::{DEFAULT_TICK_MS, ENV_ADMIN_KEY};
    use queuegate_origin::scheduler::Scheduler;
    use queuegate_origin::store::edge::EdgeStore;
    use std::time::Duration;

    let admin_key = std::env::var(ENV_ADMIN_KEY)
        .ok()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| format!("{ENV_ADMIN_KEY} must hold the edge's admin key"))?;
    let prefix = args
        .api_prefix
        .unwrap_or_else(|| queuegate::api::DEFAULT_API_PREFIX.to_owned());
    let timeout = Duration::from_millis(args.timeout_ms.unwrap_or(5000));
    let tick = Duration::from_millis(args.tick_ms.unwrap_or(DEFAULT_TICK_MS).clamp(10, 60_000));
    let store = EdgeStore::new(&args.edge, &prefix, admin_key.trim(), timeout, tick)?;
    let holder = format!(
        "schedule-{}",
        queuegate_origin::config::hex(&queuegate_origin::clock::random_bytes::<6>())
    );
    tracing::info!(edge = %args.edge, holder = %holder, "queuegate-origin is scheduling the edge");
    let scheduler = Scheduler::new(Arc::new(store), Clock::System, tick, holder);
    let wake = Arc::new(tokio::sync::Notify::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    scheduler.run(wake, stopped).await;
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
