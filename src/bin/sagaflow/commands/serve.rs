//! `serve`: the web dashboard over the store, and the loopback-host guard it uses without a token.

use std::net::SocketAddr;

use sagaflow::store::redact_url;
use serde_json::json;

use super::Ctx;
use crate::{CliError, Serve};

pub(super) async fn serve(ctx: &Ctx, args: Serve) -> Result<(), CliError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(args.listen.as_str())
        .await
        .map_err(|e| CliError::Usage(format!("`--listen {}` is not an address to listen on: {e}", args.listen)))?
        .collect();
    let Some(&addr) = addrs.first() else {
        return Err(CliError::Usage(format!("`--listen {}` names no address", args.listen)));
    };
    let loopback = addrs.iter().all(|a| a.ip().is_loopback());
    let token = args.token.filter(|t| !t.is_empty());
    if !loopback && token.is_none() {
        return Err(CliError::Usage(format!(
            "refusing to serve on {addr} without authentication: anyone who reaches it would see every \
             execution's data; pass `--token` (or set SAGAFLOW_DASHBOARD_TOKEN), or listen on a loopback address"
        )));
    }
    let path = args.path.trim_end_matches('/').to_owned();
    if !path.is_empty() && !path.starts_with('/') {
        return Err(CliError::Usage(format!("`--path {}` must start with `/`", args.path)));
    }
    let reads = ctx.reads().await?;
    let control = ctx.control().await?;
    let dashboard = sagaflow::dashboard::Dashboard::over_store(reads, Some(control));
    let (router, actions) = match &token {
        Some(t) => {
            (dashboard.bearer_token(t.clone()).map_err(|e| CliError::Usage(format!("`--token`: {e}")))?.router(), true)
        }
        None => (dashboard.router(), false),
    };
    let app = if path.is_empty() { router } else { axum::Router::new().nest(&path, router) };
    // Without a token, only loopback clients that name a loopback host: a web page
    // cannot use DNS rebinding to read the dashboard through the browser.
    let app = if token.is_none() { app.layer(axum::middleware::from_fn(loopback_host_only)) } else { app };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Other(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| CliError::Other(e.to_string()))?;
    let url = format!("http://{bound}{}", if path.is_empty() { "/" } else { &path });
    if ctx.json {
        ctx.print_json(&json!({ "listening": url, "store": redact_url(&ctx.url), "actions": actions }))?;
    } else {
        ctx.line(&format!("sagaflow dashboard: {url}"))?;
        ctx.line(&format!("store: {}", redact_url(&ctx.url)))?;
        ctx.line(if actions {
            "every request needs the token; browsers log in once"
        } else {
            "read-only: no token, so no actions (pass `--token` to enable cancel, pause, resume and retry)"
        })?;
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| CliError::Other(format!("the dashboard stopped: {e}")))
}

async fn loopback_host_only(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = req.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let loopback =
        name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        next.run(req).await
    } else {
        (axum::http::StatusCode::FORBIDDEN, "this dashboard answers requests for a loopback host only").into_response()
    }
}
