//! Where the provider's HTTP runs. Every call to the identity provider (discovery, introspection,
//! JWKS, token, registration) is sent and read on one runtime that lives as long as the process:
//! the one the provider was built on, the main runtime (which also carries the admin listener and
//! reload and outlives every worker: it returns only once all have drained). Not on the worker that
//! asked: reqwest keeps a pooled connection on the runtime that dialled it, so a worker that
//! finished draining first would take its connections, and the calls of other workers riding on
//! them, down with it. Only misses pay this hop: a cached verdict and a known key never reach the
//! provider.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use reqwest::header::HeaderMap;
use reqwest::{IntoUrl, RequestBuilder, StatusCode};
use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinError, JoinHandle};

use super::{ProviderError, error_chain};

/// Bodies from the provider larger than this are refused rather than buffered.
const MAX_PROVIDER_BODY: usize = 1024 * 1024;

/// The provider's pooled HTTP client and the runtime its calls run on.
#[derive(Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
    io: Handle,
}

/// One answer from the provider, read whole on the I/O runtime. A body that could not be read is
/// kept as its error, so a caller looks at the status first (a 429 stays a 429).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Result<Vec<u8>, ProviderError>,
}

/// A task on the I/O runtime that is aborted when its caller stops waiting for it: a request the
/// client gave up on, or a coalesced cache miss dropped, does not leave its call running unbudgeted.
struct Call<T>(JoinHandle<T>);

// === impl ProviderHttp ===

impl ProviderHttp {
    /// Calls go to the runtime this is built on; outside one there is nowhere to run them.
    pub fn new(client: reqwest::Client) -> Result<Self, ProviderError> {
        let io = Handle::try_current().map_err(|_| {
            ProviderError::Unreachable("the provider was built outside an async runtime".to_owned())
        })?;
        Ok(ProviderHttp { client, io })
    }

    pub fn get(&self, url: impl IntoUrl) -> RequestBuilder {
        self.client.get(url)
    }

    pub fn post(&self, url: impl IntoUrl) -> RequestBuilder {
        self.client.post(url)
    }

    /// Any method (client registration also PUTs and DELETEs).
    pub fn request(&self, method: reqwest::Method, url: impl IntoUrl) -> RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends a request built by `get`/`post` and reads its body, up to [`MAX_PROVIDER_BODY`], on
    /// the I/O runtime; the caller, on whatever runtime, only waits for the answer.
    pub async fn send(&self, request: RequestBuilder) -> Result<Answer, ProviderError> {
        let exchange = async move {
            let resp = request
                .send()
                .await
                .map_err(|e| ProviderError::from_reqwest(&e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = read_limited(resp).await;
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        Call(self.io.spawn(exchange))
            .await
            .unwrap_or_else(|e| Err(ended(&e)))
    }

    /// Runs a task whose end others wait for (a shared JWKS fetch) on the I/O runtime, to its end
    /// whoever stops waiting.
    pub fn run<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> JoinHandle<T> {
        self.io.spawn(task)
    }

    /// Runs a background task (the JWKS refresh) on the I/O runtime; its owner aborts it.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
        self.io.spawn(task).abort_handle()
    }
}

/// The I/O runtime is shutting down (the process is exiting), or the call panicked.
fn ended(e: &JoinError) -> ProviderError {
    ProviderError::Unreachable(format!(
        "the provider call did not finish: {}",
        error_chain(e)
    ))
}

/// Reads a body up to [`MAX_PROVIDER_BODY`].
async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ProviderError::from_reqwest(&e))?
    {
        if body.len() + chunk.len() > MAX_PROVIDER_BODY {
            return Err(ProviderError::Malformed("body too large".to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

// === impl Call ===

impl<T> Future for Call<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for Call<T> {
    fn drop(&mut self) {
        // A no-op once the task has finished.
        self.0.abort();
    }
}

#[cfg(test)]
#[path = "io_tests.rs"]
mod tests;
