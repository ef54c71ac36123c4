//! Bounded work per request.
//!
//! - **Bodies in flight** are bounded in count and in bytes ([`InFlight`], the
//!   [`bound_bodies`] middleware). A request whose body does not fit gets 503 with
//!   `Retry-After` and an OperationOutcome, and nothing more of its body is read: the count is
//!   checked before any byte is read, a declared `Content-Length` is reserved whole before
//!   reading, and a chunked body is reserved chunk by chunk. The reservation is held until
//!   the answer is ready (the body and what is parsed from it live that long), then released.
//!
//! Large requests are evaluated off the I/O workers, on the pool of [`super::pool`]; its queue
//! is bounded by these bounds, so a burst cannot pile up work.

use super::error::outcome_response;
use super::AppState;
use crate::protocol::{IssueCode, OperationOutcome};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{web, HttpMessage, HttpResponse};
use futures_util::{Stream, StreamExt};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Seconds a client is asked to wait after a 503 for load.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The bodies in flight: how many, and how many bytes, against their bounds.
#[derive(Debug)]
pub struct InFlight {
    max_bodies: usize,
    max_bytes: usize,
    /// Bytes past this per body are not kept by the handlers (they answer 413), so they are
    /// not reserved.
    max_body: usize,
    bodies: AtomicUsize,
    bytes: AtomicUsize,
}

impl InFlight {
    pub fn new(max_bodies: usize, max_bytes: usize, max_body: usize) -> Arc<Self> {
        Arc::new(Self { max_bodies, max_bytes, max_body, bodies: AtomicUsize::new(0), bytes: AtomicUsize::new(0) })
    }

    /// (bodies, bytes) in flight now.
    pub fn usage(&self) -> (usize, usize) {
        (self.bodies.load(Ordering::Acquire), self.bytes.load(Ordering::Acquire))
    }

    /// A place for one more body, if the count allows.
    pub fn enter(self: &Arc<Self>) -> Option<BodyPermit> {
        take(&self.bodies, 1, self.max_bodies)?;
        Some(BodyPermit(Arc::new(PermitInner {
            limits: self.clone(),
            bytes: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
        })))
    }
}

/// Adds `n` to `counter` if the result stays within `max`.
fn take(counter: &AtomicUsize, n: usize, max: usize) -> Option<()> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| now.checked_add(n).filter(|&after| after <= max))
        .ok()
        .map(|_| ())
}

/// One body's place in flight and the bytes reserved for it; released when the last clone is
/// dropped (the answer is ready, or evaluation on the pool has finished).
#[derive(Debug, Clone)]
pub struct BodyPermit(Arc<PermitInner>);

#[derive(Debug)]
struct PermitInner {
    limits: Arc<InFlight>,
    bytes: AtomicUsize,
    /// The body outgrew what was left: the request is answered 503.
    refused: AtomicBool,
}

impl BodyPermit {
    /// Reserves bytes up to `total` for this body (never past the per-body limit);
    /// `false` when the bound does not allow it.
    fn reserve_up_to(&self, total: usize) -> bool {
        let inner = &self.0;
        let wanted = total.min(inner.limits.max_body);
        let have = inner.bytes.load(Ordering::Acquire);
        if wanted <= have {
            return true;
        }
        if take(&inner.limits.bytes, wanted - have, inner.limits.max_bytes).is_none() {
            inner.refused.store(true, Ordering::Release);
            return false;
        }
        inner.bytes.fetch_add(wanted - have, Ordering::AcqRel);
        true
    }

    fn refused(&self) -> bool {
        self.0.refused.load(Ordering::Acquire)
    }
}

impl Drop for PermitInner {
    fn drop(&mut self) {
        self.limits.bytes.fetch_sub(*self.bytes.get_mut(), Ordering::AcqRel);
        self.limits.bodies.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The body as the handler reads it: each chunk is reserved before it is handed on; once the
/// bound is reached the stream ends with an error and nothing more is read.
struct Reserved {
    inner: Payload,
    permit: BodyPermit,
    received: usize,
    stopped: bool,
}

impl Stream for Reserved {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.stopped {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.received = self.received.saturating_add(chunk.len());
                if self.permit.reserve_up_to(self.received) {
                    Poll::Ready(Some(Ok(chunk)))
                } else {
                    self.stopped = true;
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            }
            other => other,
        }
    }
}

/// Whether a request comes with a body: a non-zero `Content-Length`, or a chunked one.
fn declared_body(req: &ServiceRequest) -> Option<Option<usize>> {
    let headers = req.headers();
    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
        return match length.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()) {
            Some(0) => None,
            Some(n) => Some(Some(n)),
            // Unparseable: actix refuses it before it gets here; count it as unknown.
            None => Some(None),
        };
    }
    headers.contains_key(header::TRANSFER_ENCODING).then_some(None)
}

/// Middleware: admits a request with a body only while the in-flight bounds allow it, and
/// holds its reservation until the answer is ready.
pub async fn bound_bodies(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(declared) = declared_body(&req) else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let Some(in_flight) = req.app_data::<web::Data<AppState>>().map(|s| s.in_flight.clone()) else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let permit = match in_flight.enter() {
        Some(p) if declared.is_none_or(|n| p.reserve_up_to(n)) => p,
        _ => return Ok(refuse(req, &in_flight)),
    };
    let inner = req.take_payload();
    let reserved = Reserved { inner, permit: permit.clone(), received: 0, stopped: false };
    req.set_payload(Payload::Stream { payload: Box::pin(reserved) });
    req.extensions_mut().insert(permit.clone());
    let res = next.call(req).await?.map_into_boxed_body();
    if permit.refused() {
        let (req, _) = res.into_parts();
        return Ok(refuse_parts(req, &in_flight));
    }
    drop(permit);
    Ok(res)
}

fn refuse(req: ServiceRequest, in_flight: &InFlight) -> ServiceResponse<BoxBody> {
    let (req, _payload) = req.into_parts();
    refuse_parts(req, in_flight)
}

/// 503 with `Retry-After`: the connection is closed, the rest of the body is not read.
fn refuse_parts(req: actix_web::HttpRequest, in_flight: &InFlight) -> ServiceResponse<BoxBody> {
    let (bodies, bytes) = in_flight.usage();
    metrics::counter!(crate::metrics::BODIES_REFUSED).increment(1);
    tracing::warn!(
        bodies_in_flight = bodies,
        bytes_in_flight = bytes,
        max_bodies = in_flight.max_bodies,
        max_bytes = in_flight.max_bytes,
        "request refused: bodies in flight at their bound"
    );
    let mut builder = HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE);
    builder.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
    builder.insert_header((header::CONNECTION, "close"));
    let outcome = OperationOutcome::error(
        IssueCode::Throttled,
        format!(
            "the service is receiving as many request bodies as it accepts at once \
             (at most {} bodies, {} bytes); retry after {RETRY_AFTER_SECS} s",
            in_flight.max_bodies, in_flight.max_bytes
        ),
    );
    ServiceResponse::new(req, outcome_response(builder, &outcome))
}

/// The in-flight bounds and the evaluation pool, as `serve` was told.
pub fn from_args(args: &crate::cli::ServeArgs) -> std::io::Result<(Arc<InFlight>, super::pool::EvalPool)> {
    if args.max_inflight_bytes < args.max_body {
        tracing::warn!(
            max_inflight_bytes = args.max_inflight_bytes,
            max_body = args.max_body,
            "--max-inflight-bytes is below --max-body: bodies larger than it are always refused (503)"
        );
    }
    let in_flight = InFlight::new(args.max_inflight_bodies, args.max_inflight_bytes, args.max_body);
    let threads = args.eval_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    Ok((in_flight, super::pool::EvalPool::new(threads, args.offload_above)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_and_bytes_are_taken_within_the_bounds_and_given_back_on_drop() {
        let in_flight = InFlight::new(2, 100, 60);
        let a = in_flight.enter().expect("first place");
        assert!(a.reserve_up_to(50));
        let b = in_flight.enter().expect("second place");
        assert!(in_flight.enter().is_none(), "no third place");
        // 50 + 60 > 100: refused, and the permit says so.
        assert!(!b.reserve_up_to(1000));
        assert!(b.refused() && !a.refused());
        assert_eq!(in_flight.usage(), (2, 50));
        // A clone shares the reservation; the last drop gives it back.
        let a2 = a.clone();
        drop(a);
        assert_eq!(in_flight.usage(), (2, 50));
        drop((a2, b));
        assert_eq!(in_flight.usage(), (0, 0));
    }

    #[test]
    fn bytes_past_the_body_limit_are_not_reserved() {
        // The handler answers 413 past --max-body and keeps none of those bytes.
        let in_flight = InFlight::new(4, 100, 60);
        let permit = in_flight.enter().unwrap();
        assert!(permit.reserve_up_to(10) && permit.reserve_up_to(5_000_000));
        assert_eq!(in_flight.usage(), (1, 60));
    }
}
