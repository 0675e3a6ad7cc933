//! `BinaryApp`: the real `loyalty-bot` binary as a child process, configured with the committed
//! `config.toml` plus `LOYALTY__…` environment overrides, for crash, shutdown and log tests.
//! Everything it writes (stderr and stdout) is captured.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct BinaryApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    child: Child,
    logs: Arc<Mutex<String>>,
    /// The threads draining stdout and stderr; they end when the process does.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl BinaryApp {
    /// Starts `loyalty-bot serve --config <repo>/config.toml` with only `env` set (plus
    /// `RUST_LOG=info`), binds port 0, and returns once `/healthz` answers.
    pub async fn start(env: &[(String, String)]) -> BinaryApp {
        Self::start_logging(env, "info").await
    }

    /// Like [`BinaryApp::start`], with `RUST_LOG` set to `filter`.
    pub async fn start_logging(env: &[(String, String)], filter: &str) -> BinaryApp {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_loyalty-bot")), env, filter).await
    }

    /// Like [`BinaryApp::start`], with SIGXFSZ ignored (through `sh`'s `trap`, which `exec`
    /// keeps), so that a write beyond a file-size limit set later ([`BinaryApp::pid`]) fails
    /// with `EFBIG`, as on a full disk, instead of killing the process.
    pub async fn start_ignoring_sigxfsz(env: &[(String, String)]) -> BinaryApp {
        let mut sh = Command::new("/bin/sh");
        sh.args(["-c", r#"trap '' XFSZ; exec "$0" "$@""#])
            .arg(env!("CARGO_BIN_EXE_loyalty-bot"));
        Self::spawn(sh, env, "info").await
    }

    async fn spawn(mut command: Command, env: &[(String, String)], filter: &str) -> BinaryApp {
        let mut child = command
            .args(["serve", "--config"])
            .arg(super::repo_path("config.toml"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .env("RUST_LOG", filter)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the loyalty-bot binary");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (stderr, stdout) = (child.stderr.take(), child.stdout.take());
        // Drains both pipes for the child's whole life, so neither fills and blocks it.
        let sink = Arc::clone(&logs);
        let stderr_reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr.expect("piped stderr"))
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = listening_address(&line) {
                    tx.take().map(|tx| tx.send(addr));
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let sink = Arc::clone(&logs);
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout.expect("piped stdout"))
                .lines()
                .map_while(Result::ok)
            {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let Ok(Ok(addr)) = tokio::time::timeout(Duration::from_secs(30), rx).await else {
            let _ = child.kill();
            panic!("the binary did not start:\n{}", logs.lock().unwrap());
        };
        let app = BinaryApp {
            address: format!("http://{addr}"),
            child,
            logs,
            readers: vec![stderr_reader, stdout_reader],
        };
        app.wait_healthy().await;
        app
    }

    async fn wait_healthy(&self) {
        // The socket is bound before "listening" is logged, so this normally succeeds at once.
        let client = reqwest::Client::new();
        for _ in 0..50 {
            let res = client.get(format!("{}/healthz", self.address)).send().await;
            if res.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("/healthz never answered:\n{}", self.logs());
    }

    /// The process id (the service's own, also when started through `sh`, which `exec`s it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no drain, no flush, no destructors.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.send_sigterm();
        self.child.wait().expect("reap")
    }

    /// Sends SIGTERM and returns at once; [`BinaryApp::wait_exit`] waits for the exit.
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// The exit status once the process has exited, or `None` if it still runs after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything the process wrote so far, stderr and stdout, line by line.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// SIGTERM, waits for the exit and for the last line written, then returns everything
    /// the process wrote.
    pub fn terminate_and_collect(mut self) -> String {
        let readers = std::mem::take(&mut self.readers);
        let logs = Arc::clone(&self.logs);
        let status = self.terminate();
        for reader in readers {
            reader.join().expect("log reader thread");
        }
        let text = logs.lock().unwrap().clone();
        if !status.success() {
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "the binary exited with {status}; its last lines:\n{}",
                tail.join("\n")
            );
        }
        text
    }
}

impl Drop for BinaryApp {
    fn drop(&mut self) {
        // Never leave a server behind a failed test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address from the start-up line `... listening address=127.0.0.1:PORT`.
fn listening_address(line: &str) -> Option<String> {
    if !line.contains("listening") {
        return None;
    }
    let rest = line.split("address=").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}
