//! `loyalty-bot statements`: member mail from a stopped store. `--dry-run` prints what is due
//! (and what the rules would do with it) or one member's statement, changing nothing; without
//! it, one pass of the service's scheduler sends what is due now.

use crate::cli::StatementsArgs;
use crate::clock::{Clock, ManualClock};
use crate::config::Settings;
use crate::domain::mail::{decide, Decision, MailKind};
use crate::domain::Email;
use crate::email::scheduler::Scheduler;
use crate::http::admin::parse_day;
use crate::startup::Services;
use anyhow::{bail, Context};
use chrono::Utc;
use std::sync::Arc;

pub async fn run(settings: &Settings, args: &StatementsArgs) -> anyhow::Result<()> {
    let as_of = match &args.as_of {
        Some(d) => parse_day(d)
            .map_err(anyhow::Error::msg)
            .context("--as-of")?,
        None => Utc::now(),
    };
    if !args.dry_run && !settings.email.enabled() {
        bail!("email.smtp_url is empty, so nothing can be sent; --dry-run shows what would be");
    }
    let clock = Arc::new(ManualClock::default());
    clock.set(as_of);
    let services =
        Services::open_with_clock(settings, &crate::metrics::Metrics::default(), clock.clone())
            .await?;
    let result = if args.dry_run {
        match &args.member {
            Some(email) => one_member(&services, email, as_of).await,
            None => due_list(&services, settings, as_of).await,
        }
    } else {
        send_due(&services, settings, clock).await
    };
    let Services { store, .. } = services;
    store.flush_now().context("final store flush")?;
    result
}

async fn one_member(
    services: &Services,
    email: &str,
    as_of: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let email = Email::parse(email).context("--member")?;
    let program = &services.program;
    let account = program
        .member_by_email(&email)
        .await?
        .with_context(|| format!("no member has the email {email}"))?;
    let subject = program
        .mail_subject(account.member.id)
        .await?
        .context("the member went away")?;
    let content = services
        .mailroom
        .render(MailKind::Statement, None, &subject, as_of)?
        .context("no statement for this member")?;
    let state = &subject.state;
    let note = if state.undeliverable {
        " (not sent: the address bounced)"
    } else if state.unsubscribed {
        " (not sent: the member opted out)"
    } else {
        ""
    };
    println!("To: {email}{note}");
    if let Some(next) = state.next_statement_at {
        println!("Next statement due: {}", next.to_rfc3339());
    }
    println!("Subject: {}\n\n{}", content.subject, content.text);
    Ok(())
}

async fn due_list(
    services: &Services,
    settings: &Settings,
    as_of: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let program = &services.program;
    let policy = settings.email.policy();
    let due = program.due_mails(as_of, usize::MAX).await?;
    let (mut send, mut other) = (0u64, 0u64);
    for d in &due {
        let Some(subject) = program.mail_subject(d.member).await? else {
            continue;
        };
        let to = subject.account.member.email.masked();
        let verdict = match decide(d, &subject.state, &policy, as_of) {
            Decision::Send => {
                match services
                    .mailroom
                    .render(d.kind, d.coupon.as_ref(), &subject, as_of)?
                {
                    Some(c) => {
                        send += 1;
                        format!("send: {}", c.subject)
                    }
                    None => {
                        other += 1;
                        "drop: no longer applies".to_owned()
                    }
                }
            }
            Decision::Postpone(at) => {
                other += 1;
                format!("postpone to {}", at.to_rfc3339())
            }
            Decision::Drop(why) => {
                other += 1;
                format!("drop: {why}")
            }
        };
        println!(
            "{}  {:<15}  member {:<8} {:<28} {verdict}",
            d.at.format("%Y-%m-%d %H:%M"),
            d.kind.as_str(),
            d.member,
            to
        );
    }
    eprintln!(
        "{} due as of {}: {send} would be sent, {other} not; nothing was sent or recorded",
        due.len(),
        as_of.to_rfc3339()
    );
    Ok(())
}

async fn send_due(
    services: &Services,
    settings: &Settings,
    clock: Arc<ManualClock>,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = clock;
    let scheduler = Scheduler::new(
        Arc::clone(&services.program),
        Arc::clone(&services.mailroom),
        &settings.email,
        clock,
    );
    let report = scheduler
        .pass(&tokio_util::sync::CancellationToken::new())
        .await?;
    println!(
        "{} sent, {} refused, {} to retry, {} postponed, {} dropped",
        report.sent, report.failed, report.retrying, report.postponed, report.dropped
    );
    Ok(())
}
