//! Body types: every body the proxy sends or returns is a boxed stream of `Bytes`, so request
//! and response bodies stream through without being collected.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

pub fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

pub fn boxed<B>(b: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed()
}

/// How reading the client's body ended, as seen by [`Watched`].
pub const BODY_OK: u8 = 0;
/// The body broke off or its framing was invalid.
pub const BODY_INVALID: u8 = 1;
/// The body exceeded `limits.max_body_bytes`.
pub const BODY_TOO_LARGE: u8 = 2;

/// Wraps the client's request body and remembers whether reading it failed (bad framing or the
/// size limit), so an aborted upstream request is answered 400/413 rather than blamed on the
/// upstream.
pub struct Watched<B> {
    inner: B,
    failed: Arc<AtomicU8>,
}

impl<B> Watched<B> {
    pub fn new(inner: B) -> (Watched<B>, Arc<AtomicU8>) {
        let failed = Arc::new(AtomicU8::new(BODY_OK));
        (
            Watched {
                inner,
                failed: failed.clone(),
            },
            failed,
        )
    }
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                let kind = if e.is::<http_body_util::LengthLimitError>() {
                    BODY_TOO_LARGE
                } else {
                    BODY_INVALID
                };
                self.failed.store(kind, Ordering::Relaxed);
                Poll::Ready(Some(Err(e)))
            }
            other => other.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
