//! `SmtpServer`: a real SMTP server for the email tests, Debian's aiosmtpd run by the system
//! python (`/usr/bin/python3`; pyenv's python3 may come first on PATH and lacks the module) on
//! a free loopback port, with the handler in `fixtures/smtp/loyalty_sink.py`. It stores every
//! message byte for byte in a Maildir in a temp dir, and refuses recipients whose local part
//! starts with `bounce` (550), `tempfail` (451) or `authfail` (535). Killed on drop.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PYTHON: &str = "/usr/bin/python3";

pub struct SmtpServer {
    pub port: u16,
    maildir: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// One message as the server received it.
pub struct Received {
    /// The stored file: the three envelope lines the sink adds, then the message as sent.
    pub raw: Vec<u8>,
    pub path: PathBuf,
    /// The envelope recipients (`RCPT TO`), from the sink's `X-RcptTo`.
    pub rcpt_to: Vec<String>,
    /// The client's `address:port`: one value per SMTP connection.
    pub peer: String,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .unwrap_or_else(|| panic!("{} is not a mail", self.path.display()))
    }
}

/// Panics with the package to install when the system python cannot run `module`.
pub fn require_python_module(module: &str, package: &str) {
    let found = Command::new(PYTHON)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{PYTHON} cannot import {module}: run `apt-get install {package}` (the email tests need it)"
    );
}

impl SmtpServer {
    /// Starts aiosmtpd and returns once its port accepts connections.
    pub fn start() -> SmtpServer {
        require_python_module("aiosmtpd", "python3-aiosmtpd");
        let dir = tempfile::tempdir().expect("temp dir");
        let maildir = dir.path().join("md");
        // The free port is found by binding port 0 and letting go, so another process may take
        // it before aiosmtpd binds: then aiosmtpd exits, and we try another.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(PYTHON)
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "loyalty_sink.Sink"])
                .arg(&maildir)
                .env("PYTHONPATH", super::repo_path("fixtures/smtp"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start aiosmtpd");
            if wait_until_listening(&mut child, port) {
                return SmtpServer {
                    port,
                    maildir,
                    child,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("aiosmtpd did not start listening (see its output above)");
    }

    /// `smtp://127.0.0.1:<port>`: plain SMTP, as `email.smtp_url` would say.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("maildir entry").path()).collect();
        paths.sort();
        paths.into_iter().map(|p| read(&p)).collect()
    }

    /// The one message delivered to `rcpt`; panics if there is none or more than one.
    pub fn message_to(&self, rcpt: &str) -> Received {
        let mut found: Vec<Received> = self
            .messages()
            .into_iter()
            .filter(|m| m.rcpt_to.iter().any(|r| r == rcpt))
            .collect();
        assert_eq!(found.len(), 1, "messages to {rcpt}");
        found.pop().unwrap()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

/// True once aiosmtpd answers on `port`; false if the process exits first, another program
/// answers, or 10 s pass.
fn wait_until_listening(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().expect("poll aiosmtpd").is_some() {
            return false;
        }
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            // Another process may have the port: only aiosmtpd greets like this.
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut greeting = String::new();
            let _ = BufReader::new(stream).read_line(&mut greeting);
            return greeting.starts_with("220 ") && greeting.contains("Python SMTP");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn read(path: &Path) -> Received {
    let raw = std::fs::read(path).expect("read a received message");
    let header = |name: &str| -> String {
        let text = String::from_utf8_lossy(&raw);
        let prefix = format!("{name}: ");
        text.split("\r\n")
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("{} has no {name}", path.display()))
    };
    let rcpt_to = header("X-RcptTo").split(", ").map(str::to_owned).collect();
    Received {
        peer: header("X-Peer"),
        rcpt_to,
        path: path.to_owned(),
        raw,
    }
}
