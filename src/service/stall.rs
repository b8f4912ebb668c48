//! Bodies that must keep moving: a body that yields nothing for its window ends with an error,
//! so a client uploading a byte a minute, or an application that stops sending halfway, cannot
//! hold a connection (and the upstream's) for ever.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::BoxError;
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};

use super::state::Platform;

pub struct Stalling<B> {
    inner: B,
    platform: Arc<dyn Platform>,
    window_ms: u64,
    /// The window running since the last frame.
    timer: Option<BoxFuture<'static, ()>>,
}

impl<B> Stalling<B> {
    pub fn new(inner: B, platform: Arc<dyn Platform>, window_ms: u64) -> Self {
        Stalling {
            inner,
            platform,
            window_ms,
            timer: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the body sent nothing for {0} ms")]
pub struct Stalled(u64);

impl<B> Body for Stalling<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let window = this.window_ms;
                let platform = &this.platform;
                let timer = this.timer.get_or_insert_with(|| platform.sleep(window));
                match Pin::new(timer).poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Stalled(window).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
