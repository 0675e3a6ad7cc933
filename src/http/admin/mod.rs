//! The operator API, behind `Authorization: Bearer <admin.token>`. With an empty token the
//! routes are not registered at all (404), so a forgotten token never opens them. Each client
//! address has a budget of admin requests (`limits.admin_per_ip`), spent before the token is
//! checked, so guessing the token is as slow as using it.
//!
//! `GET /admin/members?email=<email>`: a member, their balance and their ledger.
//! `GET /admin/members?<filters>`, `GET /admin/members/<id>`: see `segments.rs`.
//! `POST /admin/members/{id}/adjustments`: an operator's change of a balance, with its reason
//! (`adjustments.rs`).
//! `GET /admin/email/preview?member=<email>&kind=statement`: a member's mail, rendered
//! (`email.rs`).
//! `GET /admin/export`: the whole store, streamed in the export format (`export.rs`).
//! `GET|PUT /admin/messenger/processing` `{"held": bool}`: hold back Messenger processing
//! (webhooks are still recorded and acknowledged), e.g. while the shop is down for maintenance.

mod adjustments;
mod email;

pub use email::parse_day;
mod export;
mod segments;

use super::ApiError;
use crate::channels::messenger::Messenger;
use crate::config::Secret;
use crate::domain::{Email, EntryKind, LedgerEntry};
use crate::limits::Limits;
use crate::program::Program;
use crate::signature;
use crate::store::MemberAccount;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::future::{ready, Ready};
use std::sync::Arc;

/// Registers the admin routes; call only when the admin token is set. `messenger`: the
/// enabled Messenger channel, whose processing can be held back.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    program: Arc<Program>,
    token: Secret,
    messenger: Option<Arc<Messenger>>,
    mailroom: Arc<crate::email::mailroom::Mailroom>,
) {
    let mut scope = web::scope("/admin")
        .app_data(web::Data::from(mailroom))
        .app_data(web::Data::new(AdminToken(token)))
        .app_data(web::Data::new(AdminLimits(Arc::clone(program.limits()))))
        .app_data(web::Data::from(program))
        .route(
            "/members",
            web::get().guard(segments::asks_by_email()).to(member),
        )
        .route("/members", web::get().to(segments::members))
        .route("/members/{id}", web::get().to(segments::member))
        .route(
            "/members/{id}/adjustments",
            web::post().to(adjustments::adjust),
        )
        .route("/export", web::get().to(export::export))
        .route("/email/preview", web::get().to(email::preview));
    if let Some(m) = messenger {
        scope = scope
            .app_data(web::Data::from(m))
            .route("/messenger/processing", web::get().to(processing))
            .route("/messenger/processing", web::put().to(set_processing));
    }
    cfg.service(scope);
}

/// `{"held": true}` holds back the processing of new Messenger events (see
/// [`Messenger::hold_processing`]); `{"held": false}` lets it go.
#[derive(Debug, Deserialize, Serialize)]
struct Processing {
    held: bool,
}

async fn processing(_: Admin, messenger: web::Data<Messenger>) -> HttpResponse {
    HttpResponse::Ok().json(Processing {
        held: messenger.processing_held(),
    })
}

async fn set_processing(
    _: Admin,
    messenger: web::Data<Messenger>,
    body: web::Json<Processing>,
) -> HttpResponse {
    messenger.hold_processing(body.held);
    HttpResponse::Ok().json(Processing {
        held: messenger.processing_held(),
    })
}

struct AdminToken(Secret);
struct AdminLimits(Arc<Limits>);

/// Proof that the request carried the admin token. Extracted first, so a caller without the
/// token learns nothing else (not even whether the query was valid).
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Err(e) = within_address_budget(req) {
            return ready(Err(e));
        }
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        let ok = req
            .app_data::<web::Data<AdminToken>>()
            .is_some_and(|t| signature::bearer_matches(header, t.0.expose()));
        ready(if ok {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized)
        })
    }
}

fn within_address_budget(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(limits) = req.app_data::<web::Data<AdminLimits>>() else {
        return Ok(());
    };
    match crate::limits::client_ip(req, &limits.0) {
        Some(ip) => limits.0.admin_per_ip.acquire(&ip).map_err(|l| {
            tracing::warn!(
                retry_after_secs = l.retry_after_secs(),
                "admin request refused: rate limit"
            );
            ApiError::from(l)
        }),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
struct MemberQuery {
    email: String,
}

#[derive(Debug, Serialize)]
struct MemberView {
    id: u64,
    email: String,
    points: u64,
    ledger: Vec<EntryView>,
}

#[derive(Debug, Serialize)]
struct EntryView {
    kind: EntryKind,
    points: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reward_id: Option<String>,
    /// Order reversals: the part of the credit already spent, so not debited.
    #[serde(skip_serializing_if = "Option::is_none")]
    shortfall: Option<u64>,
    /// Adjustments: why the operator changed the balance.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// RFC 3339, UTC.
    at: String,
}

impl MemberView {
    fn new(account: MemberAccount, ledger: Vec<LedgerEntry>) -> Self {
        MemberView {
            id: account.member.id.0,
            email: account.member.email.to_string(),
            points: account.balance.0,
            ledger: ledger.into_iter().map(EntryView::from).collect(),
        }
    }
}

impl From<LedgerEntry> for EntryView {
    fn from(e: LedgerEntry) -> Self {
        // Coupon codes stay out: they are bearer values, and the operator has the shop for them.
        EntryView {
            kind: e.kind,
            points: e.points,
            order_number: e.order_number.map(|o| o.as_str().to_owned()),
            reward_id: e.reward_id,
            shortfall: e.shortfall.map(|p| p.0),
            reason: e.reason,
            at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

#[tracing::instrument(name = "admin.member", skip_all)]
async fn member(
    _: Admin,
    program: web::Data<Program>,
    q: web::Query<MemberQuery>,
) -> Result<HttpResponse, ApiError> {
    let email = Email::parse(&q.email).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let found = program.member_with_ledger_by_email(&email).await?;
    let (account, ledger) =
        found.ok_or_else(|| ApiError::NotFound("no member has this email".into()))?;
    tracing::info!(member.id = %account.member.id, "admin looked up a member");
    Ok(HttpResponse::Ok().json(MemberView::new(account, ledger)))
}
