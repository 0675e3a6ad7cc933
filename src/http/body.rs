//! How long a client may take to send a request body, and what happens to a body nobody read.
//!
//! actix bounds the time to the end of the headers (`server.header_timeout_ms`) but not the
//! body: a client trickling its body byte by byte would keep the request open for as long as it
//! likes. [`limit_body_time`] ends the body stream after `server.body_timeout_ms`; the handler's
//! extractor then fails and the answer is 408 with the connection closed.
//!
//! It also keeps the request body stream alive until the response has been written. actix
//! closes the connection after answering a request whose body was not read to the end, *unless*
//! that body is chunked and its reader is gone: then it reads and discards the rest for as long
//! as the client keeps sending, with no timer. Holding the stream turns that into a close, so a
//! refused oversized or slow chunked body cannot keep its connection busy either.

use super::ApiError;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, ResponseError};
use futures_util::Stream;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// App data: the longest a request body may take to arrive, from the end of its headers.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Middleware (for `from_fn`): bounds the body's arrival time, see the module docs.
pub async fn limit_body_time(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(BodyTimeout(limit)) = req.app_data::<BodyTimeout>().copied() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let body = Rc::new(RefCell::new(payload));
    let timed_out = Rc::new(Cell::new(false));
    req.set_payload(Payload::Stream {
        payload: Box::pin(Deadline {
            body: Rc::clone(&body),
            deadline: Box::pin(tokio::time::sleep(limit)),
            timed_out: Rc::clone(&timed_out),
        }),
    });
    let res = next.call(req).await?;
    let res = if timed_out.get() {
        tracing::info!(
            body_timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            "request body too slow; 408"
        );
        let (req, _) = res.into_parts();
        ServiceResponse::new(req, ApiError::RequestTimeout.error_response())
    } else {
        res.map_into_boxed_body()
    };
    Ok(res.map_body(|_, answer| {
        BoxBody::new(Holding {
            answer,
            _request_body: body,
        })
    }))
}

/// The response body, holding the request body until it has been sent (see the module docs):
/// actix decides between closing and draining once the last byte of the answer is out.
struct Holding {
    answer: BoxBody,
    _request_body: Rc<RefCell<Payload>>,
}

impl MessageBody for Holding {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.answer.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().answer).poll_next(cx)
    }
}

/// The request body, ending in an error once the deadline has passed.
struct Deadline {
    body: Rc<RefCell<Payload>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: Rc<Cell<bool>>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Data already here is delivered even at the deadline; only waiting is cut short.
        if let Poll::Ready(item) = Pin::new(&mut *self.body.borrow_mut()).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.timed_out.set(true);
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body too slow");
            return Poll::Ready(Some(Err(PayloadError::Io(e))));
        }
        Poll::Pending
    }
}
