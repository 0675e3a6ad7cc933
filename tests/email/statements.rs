//! The statement and the reminders, sent by the service's own scheduler on a test clock to a
//! real SMTP server, and the one-click unsubscribe they carry, used over HTTP.

use super::common::psid::{exchange, Psid};
use super::harness::{header, html_part, mail_app, subject, text_part, MailApp};

async fn join(m: &MailApp, who: &Psid, email: &str) {
    let t = m.start_join(who, email).await;
    assert!(t.contains("Welcome"), "{t}");
}

#[tokio::test]
async fn the_statement_arrives_after_28_days_with_the_numbers_links_and_one_click_headers() {
    let m = mail_app(false).await;
    m.app
        .shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    let jane = Psid::new("6915800000000201");
    join(&m, &jane, "jane@example.com").await;
    m.say(&jane, "1001").await;
    m.at_day(27);
    assert!(m.mail_to("jane@example.com").is_empty());

    m.at_day(29);
    let mail = m.wait_for_mail("jane@example.com", 1).await;
    let s = &mail[0];
    assert_eq!(s.rcpt_to, ["jane@example.com"]);
    assert!(
        subject(s).contains("92"),
        "the subject gives the balance: {}",
        subject(s)
    );
    let (text, html) = (text_part(s), html_part(s));
    for body in [&text, &html] {
        assert!(body.contains("92"), "balance in {body}");
        assert!(
            body.contains("108"),
            "points to the Free mug (200 - 92) in {body}"
        );
        assert!(body.contains("Free mug"), "{body}");
        assert!(
            body.contains("https://m.me/cafe.rewards"),
            "chat link in {body}"
        );
    }
    let list = header(s, "List-Unsubscribe").expect("List-Unsubscribe");
    assert!(
        list.starts_with("<https://loyalty-bot.test/email/unsubscribe?t=") && list.ends_with('>'),
        "{list}"
    );
    let url = list.trim_matches(|c| c == '<' || c == '>').to_owned();
    assert!(
        text.contains(&url) && html.contains(&url),
        "a visible link in both bodies"
    );
    assert_eq!(
        header(s, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let id = header(s, "Message-ID").expect("Message-ID");
    assert!(id.ends_with("@shop.example>"), "{id}");

    // A link scanner's GET shows a page and changes nothing.
    let path = &url["https://loyalty-bot.test".len()..];
    let page = m.app.client().get(m.app.url(path)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("<form method=\"post\""), "{page}");
    assert!(!m.mail_state("jane@example.com").await.unsubscribed);

    // A forged token changes nothing either.
    let forged = m
        .app
        .client()
        .post(
            m.app
                .url("/email/unsubscribe?t=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    assert!(!m.mail_state("jane@example.com").await.unsubscribed);

    // The mail client's one-click POST: 200 at once, no redirect, no cookie.
    let res = m
        .app
        .client()
        .post(m.app.url(path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("set-cookie").is_none());
    assert!(m.mail_state("jane@example.com").await.unsubscribed);

    // The next statement is not sent (its turn passes), and only one went out.
    m.at_day(58);
    m.wait_statement_turn_passed("jane@example.com", 80).await;
    assert_eq!(m.mail_to("jane@example.com").len(), 1);
}

#[tokio::test]
async fn stop_emails_in_chat_opts_out_and_start_emails_opts_back_in() {
    let m = mail_app(false).await;
    let ann = Psid::new("6915800000000202");
    join(&m, &ann, "ann@example.com").await;
    let t = m.say(&ann, "stop emails").await;
    assert!(t.contains("won't get statements"), "{t}");
    assert!(m.mail_state("ann@example.com").await.unsubscribed);
    m.at_day(29);
    m.wait_statement_turn_passed("ann@example.com", 50).await;
    assert!(m.mail_to("ann@example.com").is_empty());

    let t = m.say(&ann, "start emails").await;
    assert!(t.contains("again"), "{t}");
    m.at_day(58);
    let mail = m.wait_for_mail("ann@example.com", 1).await;
    assert!(header(&mail[0], "List-Unsubscribe").is_some());
}

#[tokio::test]
async fn reminders_come_when_a_reward_becomes_affordable_and_before_a_coupon_expires() {
    let m = mail_app(false).await;
    m.app
        .shop
        .add_order("1002", "bea@example.com", "159.90", "paid");
    let bea = Psid::new("6915800000000203");
    join(&m, &bea, "bea@example.com").await;
    m.say(&bea, "1002").await;
    let mail = m.wait_for_mail("bea@example.com", 1).await;
    assert!(
        subject(&mail[0]).contains("Free mug"),
        "{}",
        subject(&mail[0])
    );
    assert!(
        text_part(&mail[0]).contains("209"),
        "{}",
        text_part(&mail[0])
    );

    // Redeemed on day 10: the coupon expires on day 40, its reminder is due on day 35 (the
    // statement went out on day 28, more than min_days_between before).
    m.at_day(10);
    let app = &m.app;
    exchange(
        app.client(),
        app.address(),
        &app.graph_api,
        &bea,
        bea.tap("Free mug", "REDEEM:free-mug"),
    )
    .await;
    let code = app.shop.coupons()[0]["code"].as_str().unwrap().to_owned();
    m.at_day(29);
    let mail = m.wait_for_mail("bea@example.com", 2).await;
    assert!(
        text_part(&mail[1]).contains(&code),
        "the statement lists the open coupon"
    );
    m.at_day(36);
    let mail = m.wait_for_mail("bea@example.com", 3).await;
    let text = text_part(&mail[2]);
    assert!(
        text.contains(&code) && text.to_lowercase().contains("if you have not used it yet"),
        "{text}"
    );
}

#[tokio::test]
async fn three_permanent_bounces_mark_the_address_undeliverable() {
    let m = mail_app(false).await;
    let bo = Psid::new("6915800000000204");
    join(&m, &bo, "bounce.bo@example.com").await;
    for (n, day) in [(1, 29), (2, 58), (3, 87)] {
        m.at_day(day);
        m.wait_for_state(
            "bounce.bo@example.com",
            |s| s.bounces >= n,
            "a bounce recorded",
        )
        .await;
    }
    assert!(m.mail_state("bounce.bo@example.com").await.undeliverable);
    assert!(m.mail_to("bounce.bo@example.com").is_empty());
}

#[tokio::test]
async fn the_admin_preview_renders_what_would_be_sent_and_sends_nothing() {
    let m = mail_app(false).await;
    let ivy = Psid::new("6915800000000205");
    join(&m, &ivy, "ivy@example.com").await;
    let get = |query: &'static str| {
        let app = &m.app;
        async move {
            app.client()
                .get(app.url(&format!("/admin/email/preview?{query}")))
                .bearer_auth(super::common::ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
        }
    };
    let res = get("member=ivy@example.com&kind=statement").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(
        html.contains("50") && html.contains("/email/unsubscribe?t="),
        "{html}"
    );
    let text = get("member=ivy@example.com&kind=statement&part=text")
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("150 more points to Free mug"), "{text}");
    let code = get("member=ivy@example.com&kind=verification&part=subject").await;
    assert_eq!(code.status(), 200);

    assert_eq!(
        get("member=ivy@example.com&kind=reward_reminder")
            .await
            .status(),
        404,
        "nothing affordable"
    );
    assert_eq!(get("member=nobody@example.com").await.status(), 404);
    assert_eq!(
        get("member=ivy@example.com&kind=newsletter").await.status(),
        400
    );
    let anonymous = m
        .app
        .client()
        .get(m.app.url("/admin/email/preview?member=ivy@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(m.smtp.messages().is_empty(), "a preview sends nothing");
}

#[tokio::test]
async fn the_statement_speaks_the_language_the_member_chats_in_now() {
    let m = mail_app(false).await;
    let max = Psid::new("6915800000000206");
    join(&m, &max, "max@example.de").await;
    assert_eq!(
        m.member("max@example.de")
            .await
            .unwrap()
            .member
            .locale
            .as_deref(),
        Some("en")
    );
    let t = m.say(&max, "punkte").await;
    assert!(t.contains("Punkte"), "{t}");
    assert_eq!(
        m.member("max@example.de")
            .await
            .unwrap()
            .member
            .locale
            .as_deref(),
        Some("de")
    );
    m.at_day(29);
    let mail = m.wait_for_mail("max@example.de", 1).await;
    assert_eq!(subject(&mail[0]), "Dein Punktestand: 50 Punkte");
    assert!(
        text_part(&mail[0]).contains("Punkte"),
        "{}",
        text_part(&mail[0])
    );
}
