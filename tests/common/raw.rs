//! Raw HTTP/1.1 over a `TcpStream`, for what a well-behaved client never does: declare a body
//! it does not send, trickle headers or a body byte by byte, leave a chunked body unfinished.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawClient {
    stream: TcpStream,
}

/// What the server sent before it closed the connection (or before the wait ran out).
pub struct RawAnswer {
    pub text: String,
    /// The server closed the connection (EOF or reset) within the wait.
    pub closed: bool,
}

impl RawAnswer {
    /// The status code of the first response, if one arrived.
    pub fn status(&self) -> Option<u16> {
        self.text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }
}

impl RawClient {
    /// `address` as in `TestApp::address` (`http://127.0.0.1:<port>`).
    pub async fn connect(address: &str) -> RawClient {
        let host = address.trim_start_matches("http://");
        let stream = TcpStream::connect(host).await.expect("connect");
        RawClient { stream }
    }

    /// Writes bytes; `false` once the server has closed the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok() && self.stream.flush().await.is_ok()
    }

    /// Writes `bytes` one at a time, `every` apart; `false` once the server has closed.
    pub async fn trickle(&mut self, bytes: &[u8], every: Duration) -> bool {
        for b in bytes {
            if !self.send(std::slice::from_ref(b)).await {
                return false;
            }
            tokio::time::sleep(every).await;
        }
        true
    }

    /// Reads until the server closes the connection, for at most `wait`.
    pub async fn read_until_closed(&mut self, wait: Duration) -> RawAnswer {
        read_until_closed(&mut self.stream, wait).await
    }

    /// Trickles `bytes` (one every `every`) while reading; returns what the server answered
    /// and whether it closed the connection within `wait`. The trickle stops once it closes.
    pub async fn trickle_and_read(
        &mut self,
        bytes: &[u8],
        every: Duration,
        wait: Duration,
    ) -> RawAnswer {
        let (mut reader, mut writer) = self.stream.split();
        let trickle = async {
            for b in bytes {
                if writer.write_all(std::slice::from_ref(b)).await.is_err() {
                    break;
                }
                tokio::time::sleep(every).await;
            }
            // Then stay silent, holding the connection open, until the reader is done.
            std::future::pending::<()>().await;
        };
        tokio::select! {
            answer = read_until_closed(&mut reader, wait) => answer,
            _ = trickle => unreachable!("the trickle never ends by itself"),
        }
    }
}

async fn read_until_closed(reader: &mut (impl AsyncReadExt + Unpin), wait: Duration) -> RawAnswer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = tokio::time::timeout(wait, async {
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    RawAnswer {
        text: String::from_utf8_lossy(&buf).into_owned(),
        closed,
    }
}
