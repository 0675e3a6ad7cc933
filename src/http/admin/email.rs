//! `GET /admin/email/preview?member=<email>&kind=<kind>[&part=html|text|subject][&as_of=<date>]`:
//! the mail a member would get, rendered by the same mailroom that sends it (`kind`:
//! `statement`, `reward_reminder`, `coupon_reminder`, `verification` with a sample code).
//! Nothing is sent or recorded. A reminder that would not go out now (no reward affordable, no
//! open coupon) is a 404 saying so.

use super::Admin;
use crate::domain::mail::MailKind;
use crate::domain::verification::VerificationCode;
use crate::domain::Email;
use crate::email::mailroom::Mailroom;
use crate::http::ApiError;
use crate::program::Program;
use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct PreviewQuery {
    member: String,
    #[serde(default = "statement")]
    kind: String,
    #[serde(default)]
    part: Option<String>,
    #[serde(default)]
    as_of: Option<String>,
}

fn statement() -> String {
    "statement".into()
}

pub(super) async fn preview(
    _: Admin,
    program: web::Data<Program>,
    room: web::Data<Mailroom>,
    q: web::Query<PreviewQuery>,
) -> Result<HttpResponse, ApiError> {
    let email = Email::parse(&q.member).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let kind = MailKind::parse(&q.kind).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "kind `{}` is not one of statement, reward_reminder, coupon_reminder, verification",
            q.kind
        ))
    })?;
    let now = match &q.as_of {
        Some(d) => parse_day(d).map_err(ApiError::BadRequest)?,
        None => program.clock().now(),
    };
    let account = program
        .member_by_email(&email)
        .await?
        .ok_or_else(|| ApiError::NotFound("no member has this email".into()))?;
    let content = if kind == MailKind::Verification {
        let code = VerificationCode::parse("123456").expect("a six-digit sample");
        let member = &account.member;
        room.verification_content(
            &code,
            member.first_name.as_deref(),
            member.locale.as_deref(),
        )
        .map_err(|e| ApiError::Internal(Box::new(e)))?
    } else {
        let subject = program
            .mail_subject(account.member.id)
            .await?
            .ok_or_else(|| ApiError::NotFound("no member has this email".into()))?;
        room.render(kind, None, &subject, now)
            .map_err(|e| ApiError::Internal(Box::new(e)))?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no {} would go to this member now (nothing it is about)",
                    kind.as_str()
                ))
            })?
    };
    tracing::info!(member.id = %account.member.id, kind = kind.as_str(), "admin previewed a member email");
    Ok(match q.part.as_deref().unwrap_or("html") {
        "text" => HttpResponse::Ok()
            .content_type(ContentType::plaintext())
            .body(content.text),
        "subject" => HttpResponse::Ok()
            .content_type(ContentType::plaintext())
            .body(content.subject),
        "html" => HttpResponse::Ok()
            .content_type(ContentType::html())
            .body(content.html),
        other => {
            return Err(ApiError::BadRequest(format!(
                "part `{other}` is not one of html, text, subject"
            )))
        }
    })
}

/// `2027-01-31` (that day's start, UTC) or an RFC 3339 time.
pub fn parse_day(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| format!("`{t}` is not a date like 2027-01-31 or an RFC 3339 time"))
}
