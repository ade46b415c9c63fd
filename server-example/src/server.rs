//! The accept loop: HTTP/1.1 connections served by hyper, each in its own task.
//!
//! axum's `serve` offers no header-read timeout and no connection cap, both of which a public
//! messaging server needs, so this loop drives hyper directly:
//!
//! - at most `connections_max` connections are open (a semaphore permit per TCP connection,
//!   carried into the WebSocket task after an upgrade); past it, new connections wait in the
//!   listen backlog instead of exhausting file descriptors;
//! - a client must send its request headers (a WebSocket upgrade included) within the
//!   handshake timeout, which also ends idle keep-alive connections;
//! - at shutdown, in-flight requests finish and idle connections close.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::state::AppState;

/// One of the `connections_max` connection slots, held by the connection (and by its WebSocket
/// task after an upgrade).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionPermit(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// Accept errors that concern one connection only.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serves `router` on `listener` until `signal` completes or shutdown begins another way, then
/// begins shutdown and returns (connections are drained by the caller).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    state: AppState,
    signal: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(state.config.connections_max));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.handshake_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let builder = Arc::new(builder);
    tokio::pin!(signal);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
            _ = &mut signal => break,
            _ = state.shutdown.started() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
            _ = state.shutdown.started() => break,
        };
        let _ = stream.set_nodelay(true);
        let permit = ConnectionPermit(Arc::new(permit));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(permit.clone());
            router.clone().oneshot(request)
        });
        let builder = builder.clone();
        let shutdown = state.shutdown.clone();
        let tracked = shutdown.track_connection();
        tokio::spawn(async move {
            let _tracked = tracked;
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.started() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    state.shutdown.begin();
}
