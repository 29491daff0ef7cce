//! `/healthz` and `/readyz` on `--healthz-ip:--healthz-port`, with Flannel's answers:
//! `/healthz` is 200 `flanneld is running` whenever the process serves; `/readyz` is 200
//! `flanneld is ready` once the lease is held, rules are in place and `subnet.env` is written,
//! and 503 `flanneld is not ready yet` before that. `/metrics` (flannel-rs only) is the
//! Prometheus text of [`crate::metrics`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::metrics::{self, Metrics};

/// Shared readiness flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Mark ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

fn router(ready: Readiness, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "flanneld is running" }))
        .route(
            "/metrics",
            get(move || {
                let text = metrics.encode();
                async move { ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text) }
            }),
        )
        .route(
            "/readyz",
            get(|State(ready): State<Readiness>| async move {
                if ready.is_ready() {
                    (StatusCode::OK, "flanneld is ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "flanneld is not ready yet")
                }
            }),
        )
        .with_state(ready)
}

/// Bind now (so a bad address fails start-up) and serve until `cancel` fires.
pub async fn serve(
    addr: SocketAddr,
    ready: Readiness,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the health server to {addr}"))?;
    info!(%addr, "serving /healthz, /readyz and /metrics");
    tokio::spawn(async move {
        let server = axum::serve(listener, router(ready, metrics))
            .with_graceful_shutdown(async move { cancel.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "health server stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn answers_like_flannel() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let ready = Readiness::default();
        let cancel = CancellationToken::new();
        let metrics = Metrics::new();
        metrics.set_peers("vxlan", 2);
        serve(addr, ready.clone(), metrics, cancel.clone())
            .await
            .expect("serve");
        let h = get(addr, "/healthz").await;
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        assert!(h.ends_with("flanneld is running"), "{h}");
        let r = get(addr, "/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.ends_with("flanneld is not ready yet"), "{r}");
        ready.set(true);
        let r = get(addr, "/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("flanneld is ready"),
            "{r}"
        );
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(
            m.contains("content-type: application/openmetrics-text"),
            "{m}"
        );
        assert!(m.contains("\nflannel_peers{backend=\"vxlan\"} 2\n"), "{m}");
        cancel.cancel();
    }
}
