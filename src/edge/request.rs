//! The runtime's request as the router takes it. The body stays the runtime's stream until a
//! handler reads it, and a handler that stops early (a body over the limit) or never starts (a
//! 405, a 401) leaves the rest unread: the reader's lock is released, the stream is never
//! cancelled. `worker`'s own conversion takes a reader at once and cancels it when dropped, and
//! under `wrangler dev` a cancelled request body restarted the worker, failing the requests in
//! flight.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use worker::send::SendWrapper;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{js_sys, web_sys};

/// Builds the router's request from the runtime's.
pub fn from_runtime(req: web_sys::Request) -> Result<Request<Body>, String> {
    let mut builder = Request::builder()
        .method(Method::from_bytes(req.method().as_bytes()).map_err(|e| e.to_string())?)
        .uri(req.url());
    let headers = worker::Headers(req.headers());
    for (name, value) in headers.entries() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            builder = builder.header(name, value);
        }
    }
    let body = StreamBody {
        stream: req.body().map(SendWrapper::new),
        reader: None,
        read: None,
        done: false,
    };
    builder.body(Body::new(body)).map_err(|e| e.to_string())
}

struct StreamBody {
    /// The stream, until the first read takes a reader.
    stream: Option<SendWrapper<web_sys::ReadableStream>>,
    reader: Option<SendWrapper<web_sys::ReadableStreamDefaultReader>>,
    /// The read in flight.
    read: Option<SendWrapper<JsFuture>>,
    done: bool,
}

fn error(e: JsValue) -> worker::Error {
    worker::Error::JsError(format!("{e:?}"))
}

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = worker::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, worker::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(stream) = this.stream.take() {
            let reader: web_sys::ReadableStreamDefaultReader =
                stream.0.get_reader().unchecked_into();
            this.reader = Some(SendWrapper::new(reader));
        }
        let Some(reader) = this.reader.as_ref() else {
            this.done = true;
            return Poll::Ready(None);
        };
        let read = this
            .read
            .get_or_insert_with(|| SendWrapper::new(JsFuture::from(reader.0.read())));
        let result = match Pin::new(&mut read.0).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result,
        };
        this.read = None;
        let result = match result {
            Ok(result) => result,
            Err(e) => {
                this.done = true;
                return Poll::Ready(Some(Err(error(e))));
            }
        };
        let field = |name: &str| js_sys::Reflect::get(&result, &JsValue::from_str(name));
        if field("done").map_err(error)?.is_truthy() {
            this.done = true;
            return Poll::Ready(None);
        }
        let chunk: js_sys::Uint8Array = field("value").map_err(error)?.unchecked_into();
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk.to_vec())))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.stream.is_none() && self.reader.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        // Unread data stays the runtime's: let go of the stream without cancelling it.
        if let Some(reader) = self.reader.take() {
            if self.read.is_none() {
                reader.0.release_lock();
            }
        }
    }
}
