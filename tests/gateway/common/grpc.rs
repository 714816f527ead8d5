//! A real gRPC server and client (tonic) for one hand-written service, `test.Notes`, its message
//! derived with prost (no protoc, no build script). The server counts the calls it got and records
//! each call's request headers (the metadata, identity headers included); the client calls each
//! method with an optional bearer token.
//!
//! Methods: `Echo` (unary), `Repeat` (server streaming: `count` copies; the text `fail` ends the
//! stream with DATA_LOSS and an `x-checksum` trailer instead of OK), `Join` (client streaming:
//! the texts joined, `count` = how many), `Chat` (bidi: each note echoed), `Slow` (unary, after
//! `count` milliseconds).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use http::HeaderMap;
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;
use tower::service_fn;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Note {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

pub fn note(text: &str, count: u32) -> Note {
    Note {
        text: text.to_owned(),
        count,
    }
}

type NoteStream = Pin<Box<dyn Stream<Item = Result<Note, Status>> + Send>>;

#[derive(Default)]
struct Record {
    calls: AtomicUsize,
    headers: Mutex<Vec<HeaderMap>>,
}

/// The `test.Notes` service as a tower service, the shape tonic's generated servers have.
#[derive(Clone)]
struct Notes(Arc<Record>);

impl NamedService for Notes {
    const NAME: &'static str = "test.Notes";
}

impl Service<http::Request<Body>> for Notes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        self.0.headers.lock().unwrap().push(req.headers().clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Note, Note>::default());
            let response = match req.uri().path() {
                "/test.Notes/Echo" => grpc.unary(service_fn(echo), req).await,
                "/test.Notes/Slow" => grpc.unary(service_fn(slow), req).await,
                "/test.Notes/Repeat" => grpc.server_streaming(service_fn(repeat), req).await,
                "/test.Notes/Join" => grpc.client_streaming(service_fn(join), req).await,
                "/test.Notes/Chat" => grpc.streaming(service_fn(chat), req).await,
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(response)
        })
    }
}

async fn echo(req: Request<Note>) -> Result<Response<Note>, Status> {
    Ok(Response::new(req.into_inner()))
}

async fn slow(req: Request<Note>) -> Result<Response<Note>, Status> {
    let note = req.into_inner();
    tokio::time::sleep(Duration::from_millis(note.count.into())).await;
    Ok(Response::new(note))
}

async fn repeat(req: Request<Note>) -> Result<Response<NoteStream>, Status> {
    let note = req.into_inner();
    let mut items: Vec<Result<Note, Status>> = (0..note.count)
        .map(|i| Ok(self::note(&note.text, i)))
        .collect();
    if note.text == "fail" {
        let mut trailers = MetadataMap::new();
        trailers.insert("x-checksum", "c0ffee".parse().unwrap());
        items.push(Err(Status::with_metadata(
            Code::DataLoss,
            "the stream ends badly",
            trailers,
        )));
    }
    Ok(Response::new(Box::pin(futures_util::stream::iter(items))))
}

async fn join(req: Request<Streaming<Note>>) -> Result<Response<Note>, Status> {
    let mut inbound = req.into_inner();
    let (mut texts, mut count) = (Vec::new(), 0);
    while let Some(note) = inbound.next().await {
        texts.push(note?.text);
        count += 1;
    }
    Ok(Response::new(note(&texts.join(" "), count)))
}

async fn chat(req: Request<Streaming<Note>>) -> Result<Response<NoteStream>, Status> {
    Ok(Response::new(Box::pin(req.into_inner())))
}

/// The running server.
pub struct GrpcServer {
    pub addr: SocketAddr,
    record: Arc<Record>,
    task: JoinHandle<()>,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcServer {
    pub async fn start() -> GrpcServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("address");
        let record = Arc::new(Record::default());
        let service = Notes(record.clone());
        let task = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        GrpcServer { addr, record, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls received, of any method.
    pub fn calls(&self) -> usize {
        self.record.calls.load(Ordering::SeqCst)
    }

    /// Each call's request headers, in order.
    pub fn headers(&self) -> Vec<HeaderMap> {
        self.record.headers.lock().unwrap().clone()
    }
}

/// A client of `test.Notes` at `addr` (the gateway, over h2c), sending `token` as a bearer token.
pub struct NotesClient {
    grpc: tonic::client::Grpc<Channel>,
    token: Option<String>,
}

impl NotesClient {
    pub async fn connect(addr: SocketAddr, token: Option<&str>) -> NotesClient {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("an endpoint")
            .connect()
            .await
            .expect("connecting over h2c");
        NotesClient {
            grpc: tonic::client::Grpc::new(channel),
            token: token.map(str::to_owned),
        }
    }

    /// A request carrying the token (when there is one) and `grpc-timeout` (when given).
    pub fn request<T>(&self, message: T, timeout: Option<Duration>) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        request
    }

    pub async fn echo(&mut self, note: Note) -> Result<Response<Note>, Status> {
        self.unary("/test.Notes/Echo", note, None).await
    }

    pub async fn slow(&mut self, millis: u32, timeout: Duration) -> Result<Response<Note>, Status> {
        self.unary("/test.Notes/Slow", note("slow", millis), Some(timeout))
            .await
    }

    async fn unary(
        &mut self,
        path: &'static str,
        note: Note,
        timeout: Option<Duration>,
    ) -> Result<Response<Note>, Status> {
        let request = self.request(note, timeout);
        self.ready().await?;
        self.grpc
            .unary(
                request,
                PathAndQuery::from_static(path),
                ProstCodec::default(),
            )
            .await
    }

    pub async fn repeat(&mut self, note: Note) -> Result<Response<Streaming<Note>>, Status> {
        let request = self.request(note, None);
        self.ready().await?;
        let path = PathAndQuery::from_static("/test.Notes/Repeat");
        self.grpc
            .server_streaming(request, path, ProstCodec::default())
            .await
    }

    pub async fn join(&mut self, notes: Vec<Note>) -> Result<Response<Note>, Status> {
        let request = self.request(futures_util::stream::iter(notes), None);
        self.ready().await?;
        let path = PathAndQuery::from_static("/test.Notes/Join");
        self.grpc
            .client_streaming(request, path, ProstCodec::default())
            .await
    }

    /// A bidi call whose requests are whatever `outbound` yields.
    pub async fn chat(
        &mut self,
        outbound: impl Stream<Item = Note> + Send + 'static,
    ) -> Result<Response<Streaming<Note>>, Status> {
        let request = self.request(outbound, None);
        self.ready().await?;
        let path = PathAndQuery::from_static("/test.Notes/Chat");
        self.grpc
            .streaming(request, path, ProstCodec::default())
            .await
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("not ready: {e}")))
    }
}
