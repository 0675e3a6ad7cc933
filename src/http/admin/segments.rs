//! Members and segments in the admin API.
//!
//! `GET /admin/members?<filters>`: the members the filters admit (parameters in
//! [`crate::domain::segments`]), in id order. `format=json` (the default) answers a page,
//! `{"members": [...], "next_cursor": "..."}`, of `limit` members (default 100, at most
//! 1,000); `next_cursor` is absent on the last page, and passed back as `cursor` it gives the
//! next. `format=csv` streams the whole segment in one response ([`crate::segments`]). With
//! `email`, the route is the single-member look-up it always was (`super::member`).
//! `GET /admin/members/<id>`: a member and their ledger, as the look-up by email shows them.

use super::{Admin, ApiError, MemberView};
use crate::domain::segments::unknown_parameter;
use crate::domain::{MemberId, SegmentFilter};
use crate::program::Program;
use crate::segments::{MemberJson, SegmentError, SegmentFormat};
use actix_web::guard::{self, Guard};
use actix_web::http::header::CONTENT_DISPOSITION;
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use serde::Serialize;
use std::sync::Arc;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;
/// The listing's own parameters, besides the filters.
const LISTING: [&str; 3] = ["format", "limit", "cursor"];
/// CSV is handed to actix in pieces of about this size, at most [`CHUNKS`] of them waiting:
/// what a segment export holds in memory, however many members it has.
const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 4;

/// Requests that look a member up by email (`GET /admin/members?email=`), whatever else
/// their query holds.
pub(super) fn asks_by_email() -> impl Guard {
    guard::fn_guard(|ctx| {
        ctx.head().uri.query().is_some_and(|q| {
            url::form_urlencoded::parse(q.as_bytes()).any(|(name, _)| name == "email")
        })
    })
}

#[derive(Serialize)]
struct Page<'a> {
    members: Vec<MemberJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

struct Listing {
    csv: bool,
    limit: Option<usize>,
    cursor: Option<MemberId>,
}

#[tracing::instrument(name = "admin.members", skip_all)]
pub(super) async fn members(
    _: Admin,
    program: web::Data<Program>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let (listing, filter) = read_query(&program, &query)?;
    if listing.csv {
        return Ok(csv_response(program.into_inner(), filter));
    }
    let limit = listing.limit.unwrap_or(DEFAULT_LIMIT);
    let (rows, more) = program.member_page(filter, listing.cursor, limit).await?;
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|row| hex::encode(row.member.id.0.to_be_bytes()));
    Ok(HttpResponse::Ok().json(Page {
        members: rows.iter().map(MemberJson::from).collect(),
        next_cursor,
    }))
}

#[tracing::instrument(name = "admin.member_by_id", skip_all)]
pub(super) async fn member(
    _: Admin,
    program: web::Data<Program>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id
        .parse::<u64>()
        .map(MemberId)
        .map_err(|_| ApiError::BadRequest("`id`: must be a member id, a whole number".into()))?;
    let (account, ledger) = program
        .member_with_ledger(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no member has this id".into()))?;
    tracing::info!(member.id = %id, "admin looked up a member");
    Ok(HttpResponse::Ok().json(MemberView::new(account, ledger)))
}

fn read_query(
    program: &Program,
    query: &[(String, String)],
) -> Result<(Listing, SegmentFilter), ApiError> {
    let bad = |name: &str, problem: &str| ApiError::BadRequest(format!("`{name}`: {problem}"));
    let mut listing = Listing {
        csv: false,
        limit: None,
        cursor: None,
    };
    let mut filters = Vec::new();
    for (i, (name, value)) in query.iter().enumerate() {
        if !LISTING.contains(&name.as_str()) {
            if !crate::domain::segments::PARAMETERS.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(
                    unknown_parameter(name, &LISTING).to_string(),
                ));
            }
            filters.push((name.as_str(), value.as_str()));
            continue;
        }
        if query[..i].iter().any(|(earlier, _)| earlier == name) {
            return Err(bad(name, "given more than once"));
        }
        match name.as_str() {
            "format" => match value.as_str() {
                "json" => listing.csv = false,
                "csv" => listing.csv = true,
                _ => return Err(bad(name, "must be json or csv")),
            },
            "limit" => {
                let limit = value.trim().parse::<usize>().ok().filter(|n| *n >= 1);
                let Some(limit) = limit.filter(|n| *n <= MAX_LIMIT) else {
                    return Err(bad(name, &format!("must be from 1 to {MAX_LIMIT}")));
                };
                listing.limit = Some(limit);
            }
            _ => {
                let cursor = hex::decode(value.trim())
                    .ok()
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(|b| MemberId(u64::from_be_bytes(b)));
                let Some(cursor) = cursor else {
                    return Err(bad(name, "not a cursor this API gave out"));
                };
                listing.cursor = Some(cursor);
            }
        }
    }
    if listing.csv {
        if listing.limit.is_some() {
            return Err(bad(
                "limit",
                "pages are for format=json; csv is the whole segment",
            ));
        }
        if listing.cursor.is_some() {
            return Err(bad(
                "cursor",
                "pages are for format=json; csv is the whole segment",
            ));
        }
    }
    let filter = program
        .segment_filter(filters)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((listing, filter))
}

/// The whole segment as CSV, written on the blocking pool into a bounded channel that the
/// response drains: memory stays flat, and a client that reads slowly slows the writer down.
/// A failure after the first bytes cuts the response short (no final chunk), so a client
/// never takes a partial file for a whole one.
fn csv_response(program: Arc<Program>, filter: SegmentFilter) -> HttpResponse {
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        match program.write_segment(&filter, SegmentFormat::Csv, &mut out) {
            Ok(rows) => tracing::info!(rows, "admin exported a segment"),
            Err(SegmentError::Write(e)) => {
                tracing::info!(error = %e, "segment export ended early: the client went away");
            }
            Err(e) => {
                tracing::error!(error = ?anyhow::Error::new(e), "segment export failed");
                let cut = std::io::Error::other("the segment export failed");
                let _ = out.tx.blocking_send(Err(cut));
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let name = format!(
        "attachment; filename=\"members-{}.csv\"",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    );
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((CONTENT_DISPOSITION, name))
        .streaming(body)
}

/// A writer that hands what it is given to the response in [`CHUNK`]-sized pieces, waiting
/// while [`CHUNKS`] are queued; it fails once the response is gone.
struct Chunks {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}
