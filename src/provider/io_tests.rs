//! The provider's calls run on the runtime it was built on: a call made from a worker's runtime
//! that is then shut down leaves behind a connection that a call from another worker can use.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

/// A keep-alive HTTP/1.1 server answering 200 "ok", counting the connections it accepts.
async fn counting_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, connections)
}

/// One call from a fresh single-threaded runtime (as a worker has), which is then shut down.
fn call_from_a_worker(http: &ProviderHttp, url: &str) -> Result<Vec<u8>, ProviderError> {
    let worker = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a worker runtime");
    let answer = worker.block_on(http.send(http.get(url)));
    drop(worker);
    answer.and_then(|a| a.body)
}

#[test]
fn a_connection_dialled_for_a_worker_outlives_that_worker() {
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("the I/O runtime");
    let (addr, connections) = io.block_on(counting_server());
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client");
    let http = io
        .block_on(async { ProviderHttp::new(client) })
        .expect("built on the I/O runtime");
    let url = format!("http://{addr}/");

    assert_eq!(call_from_a_worker(&http, &url).expect("first call"), b"ok");
    // The runtime that asked first is gone; its call's connection was not on it.
    assert_eq!(call_from_a_worker(&http, &url).expect("second call"), b"ok");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the second call reused the first call's connection"
    );
}

#[test]
fn outside_a_runtime_there_is_nowhere_to_run_calls() {
    assert!(ProviderHttp::new(reqwest::Client::new()).is_err());
}
