//! The accept loop both dev servers share: HTTP/1.1 and h2c on a listener the caller bound, each
//! connection in a task owned by the loop, so aborting the loop's task closes every connection too.

use std::future::Future;

use http::{Request, Response};
use tokio::net::TcpListener;

use crate::body::ProxyBody;
use crate::config::ConnectionLimits;

/// Connections each dev server holds at once.
const MAX_CONNECTIONS: usize = 256;

/// Serves `handle` on `listener` until the task running this future is aborted, with the
/// gateway's accept loop and connection deadlines (their defaults).
pub(crate) async fn serve_http<H, F>(listener: TcpListener, handle: H)
where
    H: Fn(Request<ProxyBody>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    crate::server::serve_plain(
        &listener,
        MAX_CONNECTIONS,
        ConnectionLimits::default(),
        handle,
    )
    .await;
}
