//! `/email/unsubscribe?t=TOKEN`: the opt-out every marketing email links to, in its body and in
//! `List-Unsubscribe` (RFC 8058). `POST` with `List-Unsubscribe=One-Click` (form-encoded or
//! multipart) opts out at once: 200, no redirect, no cookie. `GET` only shows a page with a
//! button that posts, because link scanners fetch every URL in a mail and must not unsubscribe
//! anyone. The token is signed with the store's link key, so it cannot be guessed from a
//! member id; a bad one gets 404 and changes nothing.

use crate::domain::MemberId;
use crate::flows::locale_of;
use crate::program::Program;
use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use std::sync::Arc;

pub const PATH: &str = "/email/unsubscribe";

/// The body a one-click POST carries (RFC 8058 §3.1).
const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

pub fn configure(cfg: &mut web::ServiceConfig, program: Arc<Program>) {
    cfg.service(
        web::resource(PATH)
            .app_data(web::Data::from(program))
            .route(web::get().to(confirm_page))
            .route(web::post().to(unsubscribe)),
    );
}

#[derive(Deserialize)]
struct Token {
    #[serde(default)]
    t: String,
}

/// The member a token names, and the language to answer them in.
async fn member_of(
    program: &Program,
    token: &str,
) -> Result<Option<(MemberId, &'static str)>, HttpResponse> {
    let key = program.mail_link_key().await.map_err(|e| {
        tracing::error!(error = %crate::telemetry::chain(&e), "unsubscribe: the link key is unreadable");
        HttpResponse::InternalServerError().finish()
    })?;
    let Some(member) = crate::email::token::verify(&key, token) else {
        return Ok(None);
    };
    let account = program.member(member).await.map_err(|e| {
        tracing::error!(error = %crate::telemetry::chain(&e), "unsubscribe: member unreadable");
        HttpResponse::InternalServerError().finish()
    })?;
    Ok(account.map(|a| {
        let locale = a
            .member
            .locale
            .as_deref()
            .and_then(locale_of)
            .unwrap_or("en");
        (member, locale)
    }))
}

async fn confirm_page(program: web::Data<Program>, q: web::Query<Token>) -> HttpResponse {
    match member_of(&program, &q.t).await {
        Ok(Some((_, locale))) => page(HttpResponse::Ok(), locale, Page::Confirm, &q.t),
        Ok(None) => page(HttpResponse::NotFound(), "en", Page::BadLink, &q.t),
        Err(resp) => resp,
    }
}

async fn unsubscribe(
    program: web::Data<Program>,
    q: web::Query<Token>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(form) = one_click(&body) else {
        return HttpResponse::BadRequest()
            .content_type(ContentType::plaintext())
            .body("expected the body List-Unsubscribe=One-Click (RFC 8058)");
    };
    let (member, locale) = match member_of(&program, &q.t).await {
        Ok(Some(found)) => found,
        Ok(None) => return page(HttpResponse::NotFound(), "en", Page::BadLink, &q.t),
        Err(resp) => return resp,
    };
    if let Err(e) = program.set_marketing_opt_out(member, true).await {
        tracing::error!(error = %crate::telemetry::chain(&e), "unsubscribe not recorded");
        return HttpResponse::InternalServerError().finish();
    }
    match form {
        // A mail client's one-click POST: it shows nothing, so nothing to read.
        Form::OneClick => HttpResponse::Ok().finish(),
        // Our own page's button: the person is looking at the answer.
        Form::Page => page(HttpResponse::Ok(), locale, Page::Done, &q.t),
    }
}

enum Form {
    OneClick,
    Page,
}

/// The one-click pair in a form-encoded or multipart body; our page sends it plus `page=1`.
fn one_click(body: &[u8]) -> Option<Form> {
    let text = std::str::from_utf8(body).ok()?;
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(text.trim().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let has = |k: &str, v: &str| pairs.iter().any(|(pk, pv)| pk == k && pv == v);
    if has("List-Unsubscribe", "One-Click") {
        return Some(if has("page", "1") {
            Form::Page
        } else {
            Form::OneClick
        });
    }
    // multipart/form-data: a part named List-Unsubscribe whose value is One-Click.
    let named = text.find("name=\"List-Unsubscribe\"")?;
    let value = text[named..].split("\r\n\r\n").nth(1)?;
    value
        .trim_start()
        .starts_with("One-Click")
        .then_some(Form::OneClick)
}

#[derive(Clone, Copy)]
enum Page {
    Confirm,
    Done,
    BadLink,
}

fn page(
    mut resp: actix_web::HttpResponseBuilder,
    locale: &str,
    which: Page,
    token: &str,
) -> HttpResponse {
    let de = locale == "de";
    let (title, text) = match (which, de) {
        (Page::Confirm, false) => ("Unsubscribe", "Stop receiving points statements and reminder emails from our rewards program? Your points stay as they are."),
        (Page::Confirm, true) => ("Abmelden", "Keine Kontoauszüge und Erinnerungen mehr per E-Mail von unserem Prämienprogramm? Deine Punkte bleiben erhalten."),
        (Page::Done, false) => ("You are unsubscribed", "You will not get statements or reminder emails any more. To get them back, type \"start emails\" in our chat."),
        (Page::Done, true) => ("Du bist abgemeldet", "Du bekommst keine Kontoauszüge und Erinnerungen per E-Mail mehr. Wenn du sie wieder möchtest, schreib \"emails an\" in unserem Chat."),
        (Page::BadLink, _) => ("Link not valid", "This unsubscribe link is not valid. Please use the link from your most recent email."),
    };
    let button = match which {
        Page::Confirm => {
            let (name, value) = ONE_CLICK.split_once('=').unwrap_or_default();
            format!(
                "<form method=\"post\" action=\"{PATH}?t={}\"><input type=\"hidden\" name=\"{name}\" value=\"{value}\"><input type=\"hidden\" name=\"page\" value=\"1\"><button type=\"submit\">{}</button></form>",
                escape(token),
                if de { "Abmelden" } else { "Unsubscribe" }
            )
        }
        _ => String::new(),
    };
    let html = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"robots\" content=\"noindex\"><title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head><body><h1>{title}</h1><p>{text}</p>{button}</body></html>",
        if de { "de" } else { "en" }
    );
    resp.content_type(ContentType::html())
        .insert_header(("Cache-Control", "no-store"))
        .body(html)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_click_body_is_recognised_form_encoded_and_multipart() {
        assert!(matches!(
            one_click(b"List-Unsubscribe=One-Click"),
            Some(Form::OneClick)
        ));
        assert!(matches!(
            one_click(b"List-Unsubscribe=One-Click&page=1"),
            Some(Form::Page)
        ));
        let multipart = b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n";
        assert!(matches!(one_click(multipart), Some(Form::OneClick)));
        assert!(one_click(b"").is_none());
        assert!(one_click(b"List-Unsubscribe=Maybe").is_none());
    }
}
