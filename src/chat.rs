//! `loyalty-bot chat`: the owner talks to the bot in a terminal, as a customer would in
//! Messenger, with the same engine and store (so the data dir must not be in use by a running
//! `serve`). Choices are numbered; typing the number taps it.

use crate::config::Settings;
use crate::domain::{Channel, ChatIdentity, DomainError, Profile};
use crate::flows::{Button, Engine, Input, InputEvent, Turn};
use crate::program::ProgramError;
use crate::startup::{Services, StartupError};
use std::fmt::Write as _;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("`--as`: {0}")]
    Identity(#[source] DomainError),
    #[error("the conversation failed")]
    Engine(#[from] ProgramError),
    #[error("terminal input/output failed")]
    Io(#[from] std::io::Error),
}

/// Opens the store and converses over stdin/stdout until EOF or `/quit`.
pub async fn run(settings: Settings, id: &str) -> Result<(), ChatError> {
    let who = ChatIdentity::new(Channel::Terminal, id).map_err(ChatError::Identity)?;
    let Services {
        store,
        program,
        engine,
        ..
    } = Services::open(&settings).await?;
    drop(program);
    let stdin = BufReader::new(tokio::io::stdin());
    let result = converse(&engine, who, stdin, tokio::io::stdout()).await;
    drop(engine);
    if let Err(e) = store.flush_now() {
        tracing::error!(error = %e, "final store flush failed");
    }
    result
}

/// The conversation loop, over any line source and sink.
pub async fn converse<R, W>(
    engine: &Engine,
    who: ChatIdentity,
    input: R,
    mut out: W,
) -> Result<(), ChatError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    out.write_all(b"Chatting with the loyalty bot. Type /quit (or Ctrl-D) to leave.\n")
        .await?;
    let mut lines = input.lines();
    let mut event = Some(InputEvent::GetStarted { referral: None });
    let mut options = Vec::new();
    loop {
        if let Some(event) = event.take() {
            let result = engine
                .converse(Input {
                    who: who.clone(),
                    profile: Profile::default(),
                    event,
                    request_id: None,
                })
                .await;
            // A failure is answered as a customer would see it, and the chat goes on.
            let turn = result.unwrap_or_else(|e| {
                tracing::error!(error = %e, "engine failed");
                Turn {
                    replies: vec![engine.apology(&Profile::default())],
                    ..Turn::default()
                }
            });
            let (text, payloads) = render(&turn);
            out.write_all(text.as_bytes()).await?;
            options = payloads;
        }
        out.write_all(b"> ").await?;
        out.flush().await?;
        let Some(line) = lines.next_line().await? else {
            out.write_all(b"\n").await?;
            break;
        };
        match interpret(&line, &options) {
            Typed::Quit => break,
            Typed::Nothing => {}
            Typed::Send(e) => event = Some(e),
        }
    }
    out.flush().await?;
    Ok(())
}

/// The turn as terminal text, and the payloads its numbered options stand for.
pub fn render(turn: &Turn) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut payloads = Vec::new();
    for reply in &turn.replies {
        let _ = writeln!(text, "{}", reply.text);
        for choice in &reply.choices {
            payloads.push(choice.payload.clone());
            let _ = writeln!(text, "  {}) {}", payloads.len(), choice.title);
        }
        for button in &reply.buttons {
            match button {
                Button::Url { title, url } => {
                    let _ = writeln!(text, "  [{title}] {url}");
                }
                Button::Postback { title, payload } => {
                    payloads.push(payload.clone());
                    let _ = writeln!(text, "  {}) {title}", payloads.len());
                }
            }
        }
    }
    (text, payloads)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    Send(InputEvent),
    Nothing,
    Quit,
}

/// A typed line: `/quit`, a number picking one of `options`, or text for the bot.
pub fn interpret(line: &str, options: &[String]) -> Typed {
    let line = line.trim();
    if line.is_empty() {
        return Typed::Nothing;
    }
    if line == "/quit" {
        return Typed::Quit;
    }
    let picked = line
        .parse::<usize>()
        .ok()
        .and_then(|n| options.get(n.checked_sub(1)?));
    match picked {
        Some(payload) => Typed::Send(InputEvent::Payload(payload.clone())),
        None => Typed::Send(InputEvent::Text(line.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::{Choice, Reply};

    #[test]
    fn choices_and_postbacks_are_numbered_and_links_shown() {
        let turn = Turn {
            replies: vec![
                Reply {
                    text: "Join our club?".into(),
                    choices: vec![
                        Choice {
                            title: "Yes, join".into(),
                            payload: "LOYALTY_JOIN_YES".into(),
                        },
                        Choice {
                            title: "No".into(),
                            payload: "LOYALTY_JOIN_NO".into(),
                        },
                    ],
                    buttons: vec![],
                },
                Reply {
                    text: "Your coupon".into(),
                    choices: vec![],
                    buttons: vec![
                        Button::Url {
                            title: "Shop".into(),
                            url: "https://shop.example/m".into(),
                        },
                        Button::Postback {
                            title: "Balance".into(),
                            payload: "LOYALTY_BALANCE".into(),
                        },
                    ],
                },
            ],
            ..Turn::default()
        };
        let (text, payloads) = render(&turn);
        assert_eq!(
            text,
            "Join our club?\n  1) Yes, join\n  2) No\nYour coupon\n  [Shop] https://shop.example/m\n  3) Balance\n"
        );
        assert_eq!(
            payloads,
            ["LOYALTY_JOIN_YES", "LOYALTY_JOIN_NO", "LOYALTY_BALANCE"]
        );
    }

    #[test]
    fn numbers_pick_options_and_anything_else_is_text() {
        let options = vec!["A".to_owned(), "B".to_owned()];
        let payload = |p: &str| Typed::Send(InputEvent::Payload(p.into()));
        let text = |t: &str| Typed::Send(InputEvent::Text(t.into()));
        assert_eq!(interpret(" 2 ", &options), payload("B"));
        assert_eq!(interpret("1", &options), payload("A"));
        assert_eq!(interpret("3", &options), text("3"));
        assert_eq!(interpret("0", &options), text("0"));
        assert_eq!(interpret("1001", &[]), text("1001"));
        assert_eq!(
            interpret("ana@example.com", &options),
            text("ana@example.com")
        );
        assert_eq!(interpret("   ", &options), Typed::Nothing);
        assert_eq!(interpret("/quit", &options), Typed::Quit);
    }
}
