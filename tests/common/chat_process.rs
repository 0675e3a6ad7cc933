//! `ChatProcess`: `loyalty-bot chat` as a child process, typed into through stdin and read
//! through stdout, as the shop owner would use it in a terminal.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ChatProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
    /// How much of `output` earlier `expect` calls consumed.
    seen: usize,
}

impl ChatProcess {
    /// `loyalty-bot chat --as <id>` with the committed config and only `env` set.
    pub fn start(env: &[(String, String)], id: &str) -> ChatProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loyalty-bot"))
            .args(["chat", "--as", id, "--config"])
            .arg(super::repo_path("config.toml"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start loyalty-bot chat");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let output = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&output);
        // Raw chunks, not lines: the "> " prompt has no newline.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        ChatProcess {
            stdin: child.stdin.take(),
            child,
            output,
            seen: 0,
        }
    }

    /// Types a line.
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to chat");
        stdin.flush().expect("flush chat stdin");
    }

    /// Waits (at most 10 s) until the output after the last match contains `text`, and
    /// returns that output.
    pub async fn expect(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let out = self.output.lock().unwrap();
                if let Some(at) = out[self.seen..].find(text) {
                    let chunk = out[self.seen..self.seen + at + text.len()].to_owned();
                    self.seen += at + text.len();
                    return chunk;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "chat exited ({status}) before saying {text:?}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chat never said {text:?}; it said:\n{}",
                self.output()
            );
            // Async: the fakes this chat talks to may run on the test's own runtime.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Closes stdin (EOF, as Ctrl-D) and waits for a clean exit.
    pub fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("reap chat")
    }

    /// `kill -9`: no flush, no destructors.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap chat");
    }
}

impl Drop for ChatProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
