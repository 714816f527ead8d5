//! The one body type that flows through the proxy, both ways: incoming bodies stream through
//! unbuffered, and locally made ones (refusals, a rewritten form) use the same type.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};

/// A streaming HTTP body, whatever its origin.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A body made from bytes we hold.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    full(Bytes::new())
}
