//! `idgraph serve`: load the configuration, open the engine, serve until SIGTERM or Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use idgraph_server::ServerConfig;

pub(crate) fn run(
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = match &config_path {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::development(
            listen.unwrap_or_else(|| {
                idgraph_server::config::LISTEN_DEFAULT.parse().expect("valid default")
            }),
            PathBuf::from(idgraph_server::config::DATA_DIR_DEFAULT),
        ),
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(data_dir) = data_dir {
        config.data_dir = data_dir;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let res = runtime.block_on(async move {
        let engine = idgraph_server::open_engine(&config)?;
        let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        if config_path.is_none() {
            let workspace = &config.workspaces[0];
            outln!(
                "development workspace `{}` (strategy default): api_key `{}`, api_secret `{}`, key-only allowed",
                workspace.workspace.name, workspace.api_key, workspace.api_secret
            );
        }
        // Tests and scripts read this line to find the port.
        outln!("listening on http://{address}");
        std::io::stdout().flush()?;
        idgraph_server::serve(config, engine, listener, idgraph_server::shutdown_signal()).await
    });
    // Dropping a runtime waits for every blocking task, and an engine call stuck past the
    // shutdown deadline (or a long what-if) would then hold the process forever: `serve` has
    // already synced the log and said why, so the runtime gets a moment, then is let go.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    res?;
    outln!("stopped");
    Ok(())
}
