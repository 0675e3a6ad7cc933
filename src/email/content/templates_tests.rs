use super::*;
use crate::domain::CouponStatus;
use crate::email::content::model::MailProgram;
use crate::email::content::sample::{self, account, catalogue, coupon, now};
use crate::flows::definition::LOCALES;

const UNSUBSCRIBE: &str = "https://loyalty.example/email/unsubscribe?t=TOKEN123";

fn repo_email_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("flows/email")
}

/// A flows dir whose `email/` holds `files`, loaded over the built-in templates.
fn load_with(files: &[(&str, &str)]) -> Result<EmailTemplates, TemplateError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("email")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("email").join(name), text).unwrap();
    }
    EmailTemplates::load(Some(dir.path()))
}

/// `name` from the repository with `from` replaced by `to`, as an override.
fn load_edited(name: &str, from: &str, to: &str) -> Result<EmailTemplates, TemplateError> {
    let text = std::fs::read_to_string(repo_email_dir().join(name)).unwrap();
    assert!(text.contains(from), "{name} has no {from:?}");
    load_with(&[(name, &text.replace(from, to))])
}

fn member_mail(kind: MailKind, first_name: &str, locale: &str) -> MailModel {
    let c = catalogue(true);
    let p = MailProgram {
        catalogue: &c,
        currency: "EUR",
        page_username: Some("shop.example"),
        shop_url: Some("https://shop.example/"),
    };
    let coupons = [
        coupon("mug", "MUG-AAAA-BBBB", CouponStatus::Issued, 4),
        coupon("coffee", "COFFEE-CCCC-DDDD", CouponStatus::Issued, -2),
    ];
    let a = account(Some(first_name), locale, 250);
    MailModel::build(kind, None, &a, &coupons, &p, Some(UNSUBSCRIBE), now()).unwrap()
}

fn verification_mail(locale: &str) -> MailModel {
    let c = catalogue(true);
    let p = MailProgram {
        catalogue: &c,
        currency: "EUR",
        page_username: Some("shop.example"),
        shop_url: None,
    };
    let code = crate::domain::verification::VerificationCode::parse("314159").unwrap();
    MailModel::verification(
        &code,
        chrono::Duration::minutes(15),
        Some("Ana"),
        Some(locale),
        &p,
    )
}

#[test]
fn the_built_in_templates_load() {
    let t = EmailTemplates::load(None).unwrap();
    let mail = t
        .render(
            MailKind::Statement,
            "en",
            &member_mail(MailKind::Statement, "Ana", "en"),
        )
        .unwrap();
    assert_eq!(mail.subject, "You have 250 points: a reward is waiting");
    assert!(
        mail.text.starts_with("Hi Ana,\n\nhere is where you stand"),
        "{}",
        mail.text
    );
}

#[test]
fn the_built_in_templates_are_the_repositorys_email_files() {
    let mut names: Vec<String> = std::fs::read_dir(repo_email_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut built_in: Vec<&str> = super::super::BUILT_IN.iter().map(|(n, _)| *n).collect();
    built_in.sort();
    assert_eq!(names, built_in, "a template file is missing from BUILT_IN");
}

#[test]
fn a_file_in_the_flows_dir_replaces_the_built_in_one_of_that_name() {
    let t = load_with(&[(
        "statement.en.subject.txt",
        "Hello {{ first_name }}: {{ points }}",
    )])
    .unwrap();
    let en = t
        .render(
            MailKind::Statement,
            "en",
            &member_mail(MailKind::Statement, "Ana", "en"),
        )
        .unwrap();
    assert_eq!(en.subject, "Hello Ana: 250");
    let de = t
        .render(
            MailKind::Statement,
            "de",
            &member_mail(MailKind::Statement, "Ana", "de"),
        )
        .unwrap();
    assert_eq!(
        de.subject, "Du hast 250 Punkte: Eine Prämie wartet auf dich",
        "the others stay built in"
    );
    assert!(
        EmailTemplates::load(Some(Path::new("/nonexistent"))).is_ok(),
        "no email/: built-ins"
    );
}

#[test]
fn mistakes_in_an_override_name_the_file_and_the_problem() {
    let cases: Vec<(Result<EmailTemplates, TemplateError>, &str, &str)> = vec![
        (
            load_edited(
                "statement.de.html",
                "{{ big_number(points,",
                "{{ big_number(pionts,",
            ),
            "statement.de.html",
            "unknown variable `pionts`",
        ),
        (
            load_edited(
                "statement.en.txt",
                "{% if won.total %}",
                "{% if won.total %}{{ totl }}",
            ),
            "statement.en.txt",
            "unknown variable `totl`",
        ),
        (
            load_edited("statement.en.txt", "Hi {{", "Code {{ code }} Hi {{"),
            "statement.en.txt",
            "unknown variable `code` (only in other kinds of mail",
        ),
        (
            load_edited("coupon_reminder.de.txt", "{% endif %}", ""),
            "coupon_reminder.de.txt",
            "syntax error",
        ),
        (
            load_edited(
                "statement.en.html",
                "{{ heading(\"Your coupons\") }}",
                "{{ heading(\"Your coupons\"|upper(1)) }}",
            ),
            "statement.en.html",
            "line",
        ),
        (
            load_edited(
                "footer.en.txt",
                "{{ unsubscribe_url }}",
                "(see our website)",
            ),
            "statement.en.txt",
            "must show {{ unsubscribe_url }} in both bodies",
        ),
        (
            load_with(&[("statement.fr.html", "x")]),
            "statement.fr.html",
            "not a template name",
        ),
        (
            load_edited(
                "layout.html",
                "{% block content %}{% endblock %}",
                "{% block content %}{% endblock %}{{ won.count }}",
            ),
            "layout.html",
            "undefined",
        ),
    ];
    for (result, file, want) in cases {
        let err = result.unwrap_err();
        let shown = err.to_string();
        assert!(
            err.file.ends_with(file),
            "want the error in {file}: {shown}"
        );
        let footer_case = file == "statement.en.txt" && want.contains("both bodies");
        assert!(
            footer_case || !shown.contains("built-in"),
            "the owner's file is named: {shown}"
        );
        assert!(shown.contains(want), "want {want:?} in {shown:?}");
    }
}

#[test]
fn html_escapes_what_members_typed_and_text_does_not() {
    let t = EmailTemplates::load(None).unwrap();
    let m = member_mail(MailKind::Statement, "<script>alert(1)</script>", "en");
    let mail = t.render(MailKind::Statement, "en", &m).unwrap();
    assert!(!mail.html.contains("<script>"), "{}", mail.html);
    assert!(
        mail.html
            .contains("Hi &lt;script&gt;alert(1)&lt;/script&gt;,"),
        "{}",
        mail.html
    );
    assert!(mail.text.starts_with("Hi <script>alert(1)</script>,"));
}

#[test]
fn marketing_mail_shows_the_unsubscribe_link_in_both_bodies() {
    let t = EmailTemplates::load(None).unwrap();
    for kind in [
        MailKind::Statement,
        MailKind::RewardReminder,
        MailKind::CouponReminder,
    ] {
        for locale in LOCALES {
            let mail = t
                .render(kind, locale, &member_mail(kind, "Ana", locale))
                .unwrap();
            assert!(mail.text.contains(UNSUBSCRIBE), "{kind:?} {locale} text");
            assert!(
                mail.html.contains(&format!("href=\"{UNSUBSCRIBE}\"")),
                "{kind:?} {locale} html: a link, not only the address"
            );
        }
    }
}

#[test]
fn verification_mail_has_the_code_and_no_unsubscribe_link() {
    let t = EmailTemplates::load(None).unwrap();
    for locale in LOCALES {
        let mail = t
            .render(MailKind::Verification, locale, &verification_mail(locale))
            .unwrap();
        assert!(mail.subject.contains("314159"), "{}", mail.subject);
        assert!(mail.text.contains("314159") && mail.html.contains("314159"));
        assert!(
            mail.text.contains("15") && mail.html.contains("15"),
            "validity in minutes"
        );
        for body in [&mail.text, &mail.html] {
            let lower = body.to_lowercase();
            assert!(
                !lower.contains("unsubscribe") && !lower.contains("abmelden"),
                "{body}"
            );
        }
    }
}

#[test]
fn the_german_statement_is_in_german() {
    let t = EmailTemplates::load(None).unwrap();
    let mail = t
        .render(
            MailKind::Statement,
            "de_DE",
            &member_mail(MailKind::Statement, "Ana", "de"),
        )
        .unwrap();
    assert!(mail.text.starts_with("Hallo Ana,"), "{}", mail.text);
    for want in [
        "250 Punkte",
        "Noch 250 Punkte bis Tote bag",
        "Was du bisher gewonnen hast",
        "bis 06.03.2026",
    ] {
        assert!(mail.html.contains(want), "{want} in the HTML");
    }
    assert!(mail.text.contains("Von diesen E-Mails abmelden"));
    assert!(mail.html.contains("<html lang=\"de\">"));
    assert!(!mail.text.contains(" points") && !mail.html.contains(" points"));
}

#[test]
fn an_unsupported_locale_gets_the_default_one() {
    let t = EmailTemplates::load(None).unwrap();
    let m = member_mail(MailKind::Statement, "Ana", "en");
    assert_eq!(
        t.render(MailKind::Statement, "fr_FR", &m).unwrap(),
        t.render(MailKind::Statement, "en", &m).unwrap()
    );
}

/// What a mail client needs of every mail: a fixed-width table layout with inline styles and
/// nothing fetched, a preheader, no template syntax left over, and the unsubscribe link.
#[test]
fn every_kind_and_locale_renders_a_mail_client_safe_message() {
    let t = EmailTemplates::load(None).unwrap();
    for kind in KINDS {
        for locale in LOCALES {
            let models = sample::models(kind, locale);
            assert!(models.len() >= 2, "{kind:?}: the samples build");
            for model in models {
                let mail = t.render(kind, locale, &model).unwrap();
                let what = format!("{kind:?} {locale}");
                for body in [&mail.subject, &mail.text, &mail.html] {
                    for left in ["{{", "}}", "{%", "%}", "{#"] {
                        assert!(!body.contains(left), "{what}: {left} left in {body}");
                    }
                    let words = body.replace(":none", "");
                    assert!(!words.contains("none"), "{what}: a none printed in {body}");
                }
                assert!(
                    !mail.subject.contains('\n') && mail.subject.len() < 90,
                    "{what}: {}",
                    mail.subject
                );
                let html = &mail.html;
                assert!(html.starts_with("<!DOCTYPE html>"), "{what}");
                assert!(
                    html.contains("<table role=\"presentation\" width=\"600\""),
                    "{what}"
                );
                assert!(html.contains("max-width:600px"), "{what}");
                assert!(html.contains("name=\"viewport\""), "{what}");
                assert!(
                    html.contains("display:none;font-size:1px"),
                    "{what}: a preheader"
                );
                for fetched in ["<link", "<script", "<img", "<style", "url("] {
                    assert!(!html.contains(fetched), "{what}: {fetched}");
                }
                assert!(
                    !mail.text.contains("&amp;") && !mail.text.contains("&lt;"),
                    "{what}: text is not escaped"
                );
                let unsubscribe = model.unsubscribe_url.as_deref();
                assert_eq!(kind.is_marketing(), unsubscribe.is_some(), "{what}");
                if let Some(url) = unsubscribe {
                    assert!(
                        mail.text.contains(url) && html.contains(&format!("href=\"{url}\"")),
                        "{what}"
                    );
                }
            }
        }
    }
}
