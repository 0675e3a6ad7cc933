//! Composing and sending over real SMTP (aiosmtpd, `tests/common/smtp.rs`): what a member's mail
//! server receives (recipient, subject, both parts, the one-click headers, Message-IDs, a DKIM
//! signature that an independent verifier accepts), how each kind of failure is classified, and
//! many sends over one pool.

mod common;

use common::smtp::{require_python_module, Received, SmtpServer, PYTHON};
use loyalty_bot::domain::{Email, MemberId};
use loyalty_bot::email::{
    token, Composer, DkimSettings, EmailSettings, MailContent, MailTransport, SendError, SmtpMailer,
};
use mail_parser::MimeHeaders;
use std::time::{Duration, Instant};

const SUBJECT: &str = "Ihr Punktestand: 120 Punkte – schön, dass Sie da sind, Jürgen";

fn settings() -> EmailSettings {
    EmailSettings {
        from: "Bäckerei Süß <punkte@baeckerei.example>".into(),
        reply_to: Some("hilfe@baeckerei.example".into()),
        ..EmailSettings::default()
    }
}

fn with_dkim(mut settings: EmailSettings) -> EmailSettings {
    settings.dkim = Some(DkimSettings {
        selector: "mail".into(),
        domain: "baeckerei.example".into(),
        key_file: common::repo_path("fixtures/smtp/dkim-test.pkcs1.pem"),
    });
    settings
}

fn statement(url: &url::Url) -> MailContent {
    MailContent {
        subject: SUBJECT.into(),
        text: format!("Sie haben 120 Punkte. Noch 30 bis zum Gratis-Brot.\n\nAbmelden: {url}\n"),
        html: format!(
            "<p>Sie haben <b>120 Punkte</b>. Noch 30 bis zum Gratis-Brot.</p>\
             <p><a href=\"{url}\">Abmelden</a></p>"
        ),
    }
}

fn verification() -> MailContent {
    MailContent {
        subject: "Ihr Code: 493817".into(),
        text: "Ihr Code lautet 493817.\n".into(),
        html: "<p>Ihr Code lautet <b>493817</b>.</p>".into(),
    }
}

fn unsubscribe_url(member: u64) -> url::Url {
    let t = token::sign(&[3; 32], MemberId(member));
    url::Url::parse(&format!("https://bot.example/email/unsubscribe?t={t}")).unwrap()
}

fn mailer(server: &SmtpServer, pool: u32) -> SmtpMailer {
    SmtpMailer::new(&server.url(), pool, Duration::from_secs(10)).unwrap()
}

/// Composes with a fresh Message-ID and sends; the Message-ID on success.
async fn send(
    mailer: &SmtpMailer,
    composer: &Composer,
    to: &str,
    content: &MailContent,
    unsubscribe: Option<&url::Url>,
) -> Result<String, SendError> {
    let id = composer.message_id();
    let msg = composer
        .compose(&Email::parse(to).unwrap(), content, &id, unsubscribe)
        .unwrap();
    mailer.send(msg).await.map(|()| id)
}

/// The decoded text of the only part of type `text/<subtype>`.
fn part(received: &Received, subtype: &str) -> String {
    let msg = received.parsed();
    let parts: Vec<_> = msg
        .parts
        .iter()
        .filter(|p| p.is_content_type("text", subtype))
        .collect();
    assert_eq!(parts.len(), 1, "text/{subtype} parts");
    parts[0].text_contents().expect("a text part").to_owned()
}

fn header(received: &Received, name: &str) -> Option<String> {
    received
        .parsed()
        .header_raw(name)
        .map(|v| v.trim().to_owned())
}

#[tokio::test]
async fn a_marketing_mail_arrives_with_both_parts_and_the_one_click_headers() {
    let server = SmtpServer::start();
    let composer = Composer::new(&settings()).unwrap();
    let url = unsubscribe_url(42);
    let id = send(
        &mailer(&server, 2),
        &composer,
        "ana@example.com",
        &statement(&url),
        Some(&url),
    )
    .await
    .unwrap();

    let got = server.message_to("ana@example.com");
    let msg = got.parsed();
    assert_eq!(msg.subject(), Some(SUBJECT));
    let to = msg.to().and_then(|a| a.first()).and_then(|a| a.address());
    assert_eq!(to, Some("ana@example.com"));
    let from = msg.from().and_then(|a| a.first()).unwrap();
    assert_eq!(from.address(), Some("punkte@baeckerei.example"));
    assert_eq!(from.name(), Some("Bäckerei Süß"));
    let reply_to = msg
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address());
    assert_eq!(reply_to, Some("hilfe@baeckerei.example"));
    assert!(msg.date().is_some());
    assert_eq!(Some(id.trim_matches(['<', '>'])), msg.message_id());

    let text = part(&got, "plain");
    assert!(
        text.contains("Sie haben 120 Punkte. Noch 30 bis zum Gratis-Brot."),
        "{text}"
    );
    assert!(text.contains(url.as_str()), "{text}");
    let html = part(&got, "html");
    assert!(html.contains("<b>120 Punkte</b>"), "{html}");
    assert!(
        html.contains(&format!("<a href=\"{url}\">Abmelden</a>")),
        "{html}"
    );

    assert_eq!(header(&got, "List-Unsubscribe"), Some(format!("<{url}>")));
    assert_eq!(
        header(&got, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
}

#[tokio::test]
async fn a_verification_mail_has_no_list_headers() {
    let server = SmtpServer::start();
    let composer = Composer::new(&settings()).unwrap();
    send(
        &mailer(&server, 1),
        &composer,
        "bo@example.com",
        &verification(),
        None,
    )
    .await
    .unwrap();

    let got = server.message_to("bo@example.com");
    assert_eq!(got.parsed().subject(), Some("Ihr Code: 493817"));
    assert!(part(&got, "plain").contains("493817"));
    assert_eq!(header(&got, "List-Unsubscribe"), None);
    assert_eq!(header(&got, "List-Unsubscribe-Post"), None);
}

#[tokio::test]
async fn message_ids_are_on_the_from_domain_and_unique_per_message() {
    let server = SmtpServer::start();
    let composer = Composer::new(&settings()).unwrap();
    let mailer = mailer(&server, 1);
    for i in 0..3 {
        let url = unsubscribe_url(i);
        send(
            &mailer,
            &composer,
            "cy@example.com",
            &statement(&url),
            Some(&url),
        )
        .await
        .unwrap();
    }
    let ids: std::collections::BTreeSet<String> = server
        .messages()
        .iter()
        .map(|m| m.parsed().message_id().expect("a Message-ID").to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids.iter().all(|id| id.ends_with("@baeckerei.example")),
        "{ids:?}"
    );
}

/// `h=` of the received DKIM-Signature, lowercase names.
fn signed_headers(received: &Received) -> Vec<String> {
    let sig = header(received, "DKIM-Signature").expect("a DKIM-Signature");
    let sig: String = sig.chars().filter(|c| !c.is_whitespace()).collect();
    let h = sig
        .split(';')
        .find_map(|tag| tag.strip_prefix("h="))
        .expect("an h= tag");
    h.split(':').map(str::to_ascii_lowercase).collect()
}

/// dkimpy's verdict on `file`, with the public key of the test key.
fn dkim_verifies(file: &std::path::Path) -> bool {
    let out = std::process::Command::new(PYTHON)
        .arg(common::repo_path("fixtures/smtp/dkim_verify.py"))
        .arg(file)
        .arg(common::repo_path("fixtures/smtp/dkim-test.txt"))
        .output()
        .expect("run dkim_verify.py");
    if !out.status.success() {
        eprintln!("dkimpy: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

#[tokio::test]
async fn the_dkim_signature_covers_the_list_headers_and_verifies() {
    require_python_module("dkim", "python3-dkim");
    let server = SmtpServer::start();
    let composer = Composer::new(&with_dkim(settings())).unwrap();
    let mailer = mailer(&server, 1);
    let url = unsubscribe_url(7);
    send(
        &mailer,
        &composer,
        "di@example.com",
        &statement(&url),
        Some(&url),
    )
    .await
    .unwrap();
    send(&mailer, &composer, "ed@example.com", &verification(), None)
        .await
        .unwrap();

    let marketing = server.message_to("di@example.com");
    let h = signed_headers(&marketing);
    for name in ["from", "to", "subject", "date", "message-id"] {
        assert!(h.iter().any(|x| x == name), "{name} not in h={h:?}");
    }
    for name in ["list-unsubscribe", "list-unsubscribe-post"] {
        assert!(h.iter().any(|x| x == name), "{name} not in h={h:?}");
    }
    assert!(
        dkim_verifies(&marketing.path),
        "the marketing mail's signature"
    );
    // The verification mail names the absent List-* headers too; that must not break it.
    assert!(dkim_verifies(&server.message_to("ed@example.com").path));

    // The verifier can say no: a changed unsubscribe URL, or a changed body.
    let dir = tempfile::tempdir().unwrap();
    let raw = String::from_utf8(marketing.raw).unwrap();
    for (what, from, to) in [
        ("header", "unsubscribe?t=", "unsubscribe?t=0"),
        ("body", "Noch 30 bis", "Noch 3 bis"),
    ] {
        assert!(raw.contains(from));
        let tampered = dir.path().join(what);
        std::fs::write(&tampered, raw.replacen(from, to, 1)).unwrap();
        assert!(!dkim_verifies(&tampered), "a changed {what} still verifies");
    }
}

#[tokio::test]
async fn a_refused_recipient_is_permanent_with_the_servers_reply() {
    let server = SmtpServer::start();
    let composer = Composer::new(&settings()).unwrap();
    let err = send(
        &mailer(&server, 1),
        &composer,
        "bounce7@example.com",
        &verification(),
        None,
    )
    .await
    .unwrap_err();
    let SendError::Permanent(reply) = &err else {
        panic!("{err:?}");
    };
    assert!(
        reply.contains("550") && reply.contains("5.1.1 no such user"),
        "{reply}"
    );
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_temporary_refusal_is_transient_with_the_servers_reply() {
    let server = SmtpServer::start();
    let composer = Composer::new(&settings()).unwrap();
    let err = send(
        &mailer(&server, 1),
        &composer,
        "tempfail@example.com",
        &verification(),
        None,
    )
    .await
    .unwrap_err();
    let SendError::Transient(reply) = &err else {
        panic!("{err:?}");
    };
    assert!(
        reply.contains("451") && reply.contains("4.3.0 try later"),
        "{reply}"
    );
}

#[tokio::test]
async fn a_refused_login_is_transient_not_a_bounce() {
    let server = SmtpServer::start();
    let composer = Composer::new(&settings()).unwrap();
    let err = send(
        &mailer(&server, 1),
        &composer,
        "authfail@example.com",
        &verification(),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SendError::Transient(r) if r.contains("535")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_transient() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mailer = SmtpMailer::new(
        &format!("smtp://127.0.0.1:{port}"),
        1,
        Duration::from_secs(5),
    )
    .unwrap();
    let composer = Composer::new(&settings()).unwrap();
    let err = send(&mailer, &composer, "fy@example.com", &verification(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_transient() {
    // Connections complete into the backlog; nobody ever sends the greeting.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("smtp://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let mailer = SmtpMailer::new(&url, 1, Duration::from_millis(500)).unwrap();
    let composer = Composer::new(&settings()).unwrap();
    let started = Instant::now();
    let err = send(&mailer, &composer, "gu@example.com", &verification(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Transient(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_unicode_address_to_a_server_without_smtputf8_is_permanent() {
    let server = SmtpServer::start();
    let composer = Composer::new(&settings()).unwrap();
    let err = send(
        &mailer(&server, 1),
        &composer,
        "jürgen@example.com",
        &verification(),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SendError::Permanent(r) if r.contains("SMTPUTF8")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sends_over_one_pool_all_arrive_over_reused_connections() {
    let server = SmtpServer::start();
    let composer = Composer::new(&with_dkim(settings())).unwrap();
    let mailer = mailer(&server, 4);
    let sends = (0..50).map(|i| {
        let (mailer, composer) = (&mailer, &composer);
        async move {
            let url = unsubscribe_url(i);
            let to = format!("member{i}@example.com");
            send(mailer, composer, &to, &statement(&url), Some(&url)).await
        }
    });
    for result in futures_util::future::join_all(sends).await {
        result.unwrap();
    }

    let received = server.messages();
    assert_eq!(received.len(), 50);
    let recipients: std::collections::BTreeSet<_> =
        received.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    assert_eq!(recipients.len(), 50);
    let connections: std::collections::BTreeSet<_> =
        received.iter().map(|m| m.peer.clone()).collect();
    // Without reuse, 50; a few more than the pool's 4 when a send starts before lettre has
    // parked the connection the previous one freed.
    assert!(connections.len() <= 25, "{} connections", connections.len());
}

#[tokio::test]
async fn the_pool_size_caps_simultaneous_connections() {
    // A server that accepts and never greets holds every send on its connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("smtp://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            sink.lock().unwrap().push(stream);
        }
    });
    let mailer = SmtpMailer::new(&url, 3, Duration::from_secs(5)).unwrap();
    let composer = Composer::new(&settings()).unwrap();
    let sends = (0..10).map(|i| {
        let (mailer, composer) = (&mailer, &composer);
        async move {
            let to = format!("member{i}@example.com");
            send(mailer, composer, &to, &verification(), None).await
        }
    });
    let waited = tokio::time::timeout(
        Duration::from_millis(1500),
        futures_util::future::join_all(sends),
    )
    .await;
    assert!(waited.is_err(), "the silent server answered");
    assert_eq!(accepted.lock().unwrap().len(), 3);
}

/// A scripted SMTP server: answers everything with success, but holds back its reply to the
/// first message's end of DATA for `stall`. Records, per accepted message, which connection
/// (0, 1, …) it came over.
async fn stalling_server(stall: Duration) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<usize>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        for conn in 0.. {
            let (stream, _) = listener.accept().await.unwrap();
            let record = std::sync::Arc::clone(&record);
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 fake ESMTP\r\n").await?;
                let mut in_data = false;
                while let Some(line) = lines.next_line().await? {
                    let reply: &[u8] = if in_data {
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        if conn == 0 && record.lock().unwrap().is_empty() {
                            tokio::time::sleep(stall).await;
                        }
                        record.lock().unwrap().push(conn);
                        b"250 OK\r\n"
                    } else if line.starts_with("DATA") {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if line.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"250 OK\r\n"
                    };
                    write.write_all(reply).await?;
                }
                std::io::Result::Ok(())
            });
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn after_a_timeout_the_next_send_does_not_reuse_the_stuck_connection() {
    let (port, accepted) = stalling_server(Duration::from_secs(3)).await;
    let url = format!("smtp://127.0.0.1:{port}");
    let mailer = SmtpMailer::new(&url, 1, Duration::from_secs(1)).unwrap();
    let composer = Composer::new(&settings()).unwrap();
    let first = send(&mailer, &composer, "ha@example.com", &verification(), None).await;
    assert!(matches!(first, Err(SendError::Transient(_))), "{first:?}");
    // Over the first connection, this send's NOOP would wait behind the late reply and time
    // out as well.
    send(&mailer, &composer, "ida@example.com", &verification(), None)
        .await
        .unwrap();
    assert_eq!(*accepted.lock().unwrap(), vec![1]);
}
