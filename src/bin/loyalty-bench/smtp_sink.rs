//! A loopback SMTP server that takes every message and keeps none: the mail row's stand-in for
//! the owner's mail relay. It speaks the part of SMTP that lettre's client uses (EHLO, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT; no TLS, no AUTH), counts messages, bytes and connections, and
//! counts a message as wrong when it lacks what every statement must carry (a recipient, a
//! `Message-ID`, the one-click unsubscribe headers, the text and HTML parts).
//!
//! With `quick_ack`, the sink acknowledges every TCP segment at once (`TCP_QUICKACK`) instead
//! of delaying the ACK as Linux does on a connection that takes turns, as SMTP does. lettre
//! leaves Nagle's algorithm on and writes a message's closing `.` apart from its body, so that
//! small write waits for the body's ACK: against an ordinary server, each message waits for the
//! delayed ACK (40 ms on Linux). The quick sink shows what the service does without that wait.
//!
//! Written here rather than started as Debian's `python3 -m aiosmtpd` with its `Sink` handler:
//! the bench then needs nothing beyond the Rust toolchain (CI's smoke run included), and the
//! sink costs microseconds of this process's CPU per message instead of a Python process's
//! milliseconds competing with the service for the machine's two CPUs.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the sink has taken so far.
#[derive(Debug, Default)]
pub struct Received {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub wrong: AtomicU64,
    pub connections: AtomicU64,
}

pub struct SmtpSink {
    pub addr: SocketAddr,
    pub received: Arc<Received>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Headers and parts every statement carries (`src/email/message.rs`).
const MUST_HAVE: [&[u8]; 4] = [
    b"\nmessage-id: <",
    b"\nlist-unsubscribe: <",
    b"\nlist-unsubscribe-post: list-unsubscribe=one-click",
    b"multipart/alternative",
];

impl SmtpSink {
    pub async fn start(quick_ack: bool) -> anyhow::Result<SmtpSink> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the SMTP sink")?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Received::default());
        let stop = CancellationToken::new();
        let task = {
            let (received, stop) = (Arc::clone(&received), stop.clone());
            tokio::spawn(async move {
                loop {
                    let conn = tokio::select! {
                        _ = stop.cancelled() => return,
                        c = listener.accept() => c,
                    };
                    let Ok((stream, _)) = conn else { continue };
                    received.connections.fetch_add(1, Relaxed);
                    let (received, stop) = (Arc::clone(&received), stop.clone());
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = serve(stream, &received, quick_ack) => {}
                        }
                    });
                }
            })
        };
        Ok(SmtpSink {
            addr,
            received,
            stop,
            task,
        })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// One connection, until QUIT or the client goes.
async fn serve(stream: TcpStream, received: &Received, quick_ack: bool) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(64 * 1024, read);
    write.write_all(b"220 sink.bench.invalid ESMTP\r\n").await?;
    let (mut line, mut message) = (Vec::new(), Vec::with_capacity(64 * 1024));
    let mut recipients = 0;
    // The kernel leaves quick-ACK mode by itself, so it is asked again before each read.
    let ack_now = |read: &BufReader<OwnedReadHalf>| {
        if quick_ack {
            let _ = rustix::net::sockopt::set_tcp_quickack(read.get_ref().as_ref(), true);
        }
    };
    loop {
        line.clear();
        ack_now(&read);
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .get(..4)
            .map(|v| v.to_ascii_uppercase())
            .unwrap_or_default();
        let reply: &[u8] = match &verb[..] {
            b"EHLO" => {
                b"250-sink.bench.invalid\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 52428800\r\n"
            }
            b"HELO" => b"250 sink.bench.invalid\r\n",
            b"MAIL" | b"RSET" => {
                recipients = 0;
                b"250 2.1.0 Ok\r\n"
            }
            b"RCPT" => {
                recipients += 1;
                b"250 2.1.5 Ok\r\n"
            }
            b"NOOP" => b"250 2.0.0 Ok\r\n",
            b"QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            b"DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                message.clear();
                message.push(b'\n');
                loop {
                    let start = message.len();
                    ack_now(&read);
                    if read.read_until(b'\n', &mut message).await? == 0 {
                        return Ok(());
                    }
                    if &message[start..] == b".\r\n" {
                        message.truncate(start);
                        break;
                    }
                }
                received.messages.fetch_add(1, Relaxed);
                received.bytes.fetch_add(message.len() as u64 - 1, Relaxed);
                if recipients == 0 || !looks_right(&message) {
                    received.wrong.fetch_add(1, Relaxed);
                }
                recipients = 0;
                b"250 2.0.0 Ok: queued\r\n"
            }
            _ => b"502 5.5.2 Command not recognized\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The headers (case aside) and parts a statement must have.
fn looks_right(message: &[u8]) -> bool {
    let head_end = find(message, b"\r\n\r\n").unwrap_or(message.len());
    let head = message[..head_end].to_ascii_lowercase();
    MUST_HAVE.iter().all(|m| find(&head, m).is_some())
        && find(message, b"text/plain").is_some()
        && find(message, b"text/html").is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_needs_its_headers_and_both_parts() {
        let good = b"\nMessage-ID: <a@shop.example>\r\nList-Unsubscribe: <https://x/u?t=1>\r\n\
List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n";
        assert!(looks_right(good));
        let text = String::from_utf8_lossy(good);
        let without_post = text.replace("List-Unsubscribe-Post", "X-Other");
        assert!(!looks_right(without_post.as_bytes()));
        let without_html = text.replace("text/html", "text/other");
        assert!(!looks_right(without_html.as_bytes()));
    }
}
