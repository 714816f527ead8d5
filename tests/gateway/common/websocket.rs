//! A real WebSocket upstream (tokio-tungstenite on 127.0.0.1:0) that echoes every text and binary
//! message, records each opening handshake's headers and counts the connections it accepted, and a
//! client that opens a WebSocket through the gateway with a bearer token.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The echoing upstream.
pub struct WsServer {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    handshakes: Arc<Mutex<Vec<HeaderMap>>>,
    task: JoinHandle<()>,
}

impl Drop for WsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsServer {
    pub async fn start() -> WsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("address");
        let connections = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let (counted, seen) = (connections.clone(), handshakes.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(echo(stream, seen.clone()));
            }
        });
        WsServer {
            addr,
            connections,
            handshakes,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted, upgraded or not.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The headers of every opening handshake, in order.
    pub fn handshakes(&self) -> Vec<HeaderMap> {
        self.handshakes.lock().unwrap().clone()
    }
}

async fn echo(stream: TcpStream, seen: Arc<Mutex<Vec<HeaderMap>>>) {
    // The callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let record = |req: &Request, resp: Response| {
        seen.lock().unwrap().push(req.headers().clone());
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `ws://<gateway><path>` over a plain TCP connection, with `Authorization: Bearer <token>`
/// when a token is given. An HTTP refusal comes back as `Err(Error::Http(response))`.
pub async fn connect(
    gateway: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<Client, Error> {
    let mut request = format!("ws://{gateway}{path}")
        .into_client_request()
        .expect("a WebSocket request");
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("a header value"),
        );
    }
    let stream = TcpStream::connect(gateway).await.expect("connecting");
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await?;
    Ok(ws)
}

/// Sends `message` and expects it echoed back as it was.
pub async fn round_trip(ws: &mut Client, message: Message) {
    ws.send(message.clone()).await.expect("sending");
    let echoed = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("an echo within 5 s")
        .expect("the tunnel open")
        .expect("a message");
    assert_eq!(echoed, message);
}
