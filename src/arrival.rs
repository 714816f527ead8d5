//! A request as a listener hands it to the request path (access log → policy → forwarder), with
//! what its connection knows beside it: the client's address and verified certificate. Beside, not
//! in the request's extensions: there they cost a map, its table and a box per request, and a
//! hashed lookup at each of the three layers that read them.

use std::sync::Arc;

use http::Request;

use crate::body::ProxyBody;
use crate::client_cert::ClientCertificate;
use crate::trust::ClientAddr;

/// A request and its connection's facts.
pub struct Arrival {
    pub request: Request<ProxyBody>,
    /// The client as `trusted_proxies` resolved it; `None` where no listener made the request
    /// (benchmarks of the policy alone).
    pub client: Option<ClientAddr>,
    /// The certificate the client presented over TLS, verified.
    pub client_cert: Option<Arc<ClientCertificate>>,
}

impl Arrival {
    /// A request with no connection facts.
    pub fn bare(request: Request<ProxyBody>) -> Self {
        Arrival {
            request,
            client: None,
            client_cert: None,
        }
    }
}
