//! `POST /admin/members/{id}/adjustments` `{"points": -20, "reason": "damaged parcel goodwill"}`:
//! an operator's change of a balance, as one `adjustment` ledger entry carrying the reason.
//!
//! The `Idempotency-Key` header is required (1 to 200 visible ASCII characters; a UUID does).
//! The first request with a key answers 201 with the entry and the balance after it; the same
//! request again, even after a restart, answers the same 201 with the same body (and
//! `Idempotent-Replayed: true`) and changes nothing. The same key with a different request
//! (another member, points or reason) is refused with 422 `idempotency_key_reused`, as the
//! IETF draft "The Idempotency-Key HTTP Header Field" recommends: the client has a bug, and
//! neither applying nor silently replaying would be what it meant.
//!
//! Only an applied adjustment is remembered. A refused one (400, 404, or 409
//! `insufficient_points` for a debit below zero) changes nothing, its key included, so the
//! operator can fix the request and send it again under the same key.

use super::{Admin, EntryView};
use crate::domain::{Adjustment, MemberId, RequestKey};
use crate::http::ApiError;
use crate::program::Program;
use crate::store::{AdjustOutcome, Adjusted};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

const KEY_HEADER: &str = "Idempotency-Key";

/// Both fields optional here, so that a missing one gets a message of ours naming it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdjustmentBody {
    points: Option<serde_json::Value>,
    reason: Option<String>,
}

#[derive(Serialize)]
struct AdjustedView {
    member_id: u64,
    /// The balance right after this entry.
    points: u64,
    entry: EntryView,
}

#[tracing::instrument(name = "admin.adjust", skip_all)]
pub(super) async fn adjust(
    _: Admin,
    program: web::Data<Program>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<AdjustmentBody>,
) -> Result<HttpResponse, ApiError> {
    let key = request_key(&req)?;
    let adjustment = adjustment(&body)?;
    let member = id
        .parse()
        .map(MemberId)
        .map_err(|_| ApiError::NotFound(format!("no member has the id {id}")))?;
    let change = adjustment.points();
    let (adjusted, replayed) = match program.adjust(member, adjustment, key).await? {
        AdjustOutcome::Applied(a) => (a, false),
        AdjustOutcome::Repeated(a) => (a, true),
        AdjustOutcome::KeyReused => return Err(ApiError::IdempotencyKeyReused),
        AdjustOutcome::Insufficient { balance } => {
            return Err(ApiError::InsufficientPoints(format!(
                "the balance is {balance} points: a debit of {} would take it below zero; \
                 nothing changed",
                change.unsigned_abs()
            )))
        }
        AdjustOutcome::UnknownMember => {
            return Err(ApiError::NotFound(format!("no member has the id {member}")))
        }
    };
    let mut res = HttpResponse::Created();
    if replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(res.json(view(adjusted)))
}

fn request_key(req: &HttpRequest) -> Result<RequestKey, ApiError> {
    let Some(raw) = req.headers().get(KEY_HEADER) else {
        return Err(ApiError::BadRequest(format!(
            "the {KEY_HEADER} header is required: a new unique value (a UUID) per adjustment, \
             the same value when retrying it"
        )));
    };
    let raw = raw.to_str().unwrap_or("\u{fffd}");
    RequestKey::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn adjustment(body: &AdjustmentBody) -> Result<Adjustment, ApiError> {
    let points = match &body.points {
        None => return Err(ApiError::BadRequest("`points` is required".into())),
        Some(p) => p.as_i64().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`points` must be a whole number of points, negative to debit (got {p})"
            ))
        })?,
    };
    let reason = body.reason.as_deref().unwrap_or_default();
    Adjustment::new(points, reason).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn view(a: Adjusted) -> AdjustedView {
    AdjustedView {
        member_id: a.member.0,
        points: a.balance.0,
        entry: EntryView::from(a.entry),
    }
}
