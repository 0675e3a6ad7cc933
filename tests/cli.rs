//! The binary as an operator meets it: `--version`, `--help`, the layered configuration (a file
//! with one key, no file at all, from any folder), typos refused with the key named, and
//! `check-config`'s report and exit codes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_loyalty-bot");

/// The binary run in `dir` with only `env` set (no config file unless `dir` holds one).
fn loyalty_bot(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run loyalty-bot")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_and_help_explain_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let out = loyalty_bot(dir.path(), &["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("loyalty-bot {}", env!("CARGO_PKG_VERSION"))
    );
    let help = text(&loyalty_bot(dir.path(), &["--help"], &[]).stdout);
    for command in [
        "serve",
        "chat",
        "check-config",
        "members",
        "export",
        "import",
        "import-balances",
    ] {
        assert!(help.contains(&format!("  {command} ")), "{command}: {help}");
        let out = loyalty_bot(dir.path(), &[command, "--help"], &[]);
        assert!(out.status.success(), "{command} --help");
        assert!(
            text(&out.stdout).contains("Usage: loyalty-bot"),
            "{command}"
        );
    }
    let out = loyalty_bot(dir.path(), &["launch"], &[]);
    assert_eq!(out.status.code(), Some(2), "a usage mistake");
}

#[test]
fn a_typo_in_the_file_or_the_environment_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[program]\nsigup_bonus = 75\n",
    )
    .unwrap();
    let out = loyalty_bot(dir.path(), &["serve"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("`program.sigup_bonus`"), "{err}");
    assert!(
        err.contains("did you mean `program.signup_bonus`?"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let out = loyalty_bot(
        empty.path(),
        &["serve"],
        &[("LOYALTY__SHOP__ORDRES_FILE", "x.json")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("LOYALTY__SHOP__ORDRES_FILE"), "{err}");
    assert!(err.contains("did you mean `shop.orders_file`?"), "{err}");
}

#[test]
fn check_config_shows_each_value_with_its_layer_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[program]\nsignup_bonus = 75\n",
    )
    .unwrap();
    let env = [
        ("LOYALTY__ADMIN__TOKEN", "admin-token-do-not-print"),
        ("LOYALTY__PROGRAM__LOCALE", "de"),
    ];
    let out = loyalty_bot(dir.path(), &["check-config"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    let line = |key: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} not in\n{report}"))
            .to_owned()
    };
    assert!(line("program.signup_bonus").contains("75"));
    assert!(line("program.signup_bonus").ends_with("# file config.toml"));
    assert!(line("program.locale").ends_with("# env LOYALTY__PROGRAM__LOCALE"));
    assert!(line("program.currency").ends_with("# default"));
    assert!(line("admin.token").contains("[redacted]"));
    assert!(!report.contains("admin-token-do-not-print"));

    let out = loyalty_bot(
        dir.path(),
        &["check-config"],
        &[("LOYALTY__SHOP__KIND", "generic")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("shop.verify_url"));
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[server]\nbind = \"nowhere\"\n").unwrap();
    let out = loyalty_bot(
        dir.path(),
        &["check-config", "--config", other.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("server.bind"));
}

/// `serve` from an empty folder with a one-key file: the built-in defaults, flows and sample
/// orders carry the rest, and the service answers.
#[test]
fn a_config_file_with_one_key_serves_from_any_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[program]\nsignup_bonus = 75\n",
    )
    .unwrap();
    let data = dir.path().join("store");
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("RUST_LOG", "info")
        .env("LOYALTY__SERVER__BIND", "127.0.0.1:0")
        .env("LOYALTY__STORE__PATH", &data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained for the child's whole life: a closed pipe would fail its next log line.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    let address = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!("no start within 30 s:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("listening") {
            let address = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("address="))
                .map(str::to_owned);
            break address.unwrap_or_else(|| panic!("no address in:\n{seen}"));
        }
    };
    let status = http_get_status(&address, "/healthz");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{seen}");
    assert!(
        data.join("db").exists(),
        "the store is where the environment said"
    );
}

/// A bare HTTP/1.1 GET, to keep this test free of an async runtime.
fn http_get_status(address: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[test]
fn import_balances_reports_what_it_did_and_refuses_a_file_with_bad_rows_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let env = [("LOYALTY__STORE__PATH", store.to_str().unwrap())];
    let good = dir.path().join("good.csv");
    std::fs::write(
        &good,
        "email,points\nana@example.com,120\nben@example.com,30\n",
    )
    .unwrap();
    let out = loyalty_bot(dir.path(), &["import-balances", "good.csv"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2 rows: 2 waiting"),
        "{}",
        text(&out.stdout)
    );
    let out = loyalty_bot(dir.path(), &["import-balances", "good.csv"], &env);
    assert!(
        text(&out.stdout).contains("2 imported before"),
        "{}",
        text(&out.stdout)
    );

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "email,points\ncarl@example.com,10\nnot-an-email,5\ndora@example.com,-3\n",
    )
    .unwrap();
    let out = loyalty_bot(dir.path(), &["import-balances", "bad.csv"], &env);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("line 3") && err.contains("line 4"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    // carl's valid row was not written either: importing him alone now counts him as new.
    std::fs::write(&bad, "email,points\ncarl@example.com,10\n").unwrap();
    let out = loyalty_bot(dir.path(), &["import-balances", "bad.csv"], &env);
    assert!(
        text(&out.stdout).contains("1 rows: 1 waiting"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn export_and_import_move_a_stopped_store_and_an_import_refuses_a_store_holding_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let run = |args: &[&str], store: &Path| {
        loyalty_bot(
            dir.path(),
            args,
            &[("LOYALTY__STORE__PATH", store.to_str().unwrap())],
        )
    };
    std::fs::write(
        dir.path().join("b.csv"),
        "email,points\nana@example.com,120\n",
    )
    .unwrap();
    assert!(run(&["import-balances", "b.csv"], &old).status.success());

    let out = run(&["export", "--out", "first.ndjson"], &old);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = std::fs::read_to_string(dir.path().join("first.ndjson")).unwrap();
    assert!(
        first.starts_with("{\"format\":\"loyalty-bot-export\",\"version\":1"),
        "{first}"
    );
    assert!(first.contains("ana@example.com"), "{first}");
    assert!(
        !dir.path().join(".first.ndjson.partial").exists(),
        "the partial file was renamed"
    );

    let out = run(&["import", "first.ndjson"], &new);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["export", "--out", "-"], &new);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let without_time = |export: &str| -> Vec<String> {
        export
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("exported_at");
                v.to_string()
            })
            .collect()
    };
    assert_eq!(without_time(&text(&out.stdout)), without_time(&first));

    let out = run(&["import", "first.ndjson"], &new);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn members_lists_a_segment_of_a_stopped_store_as_csv_and_names_a_bad_filter() {
    use loyalty_bot::domain::{Channel, ChatIdentity, Email, Points, Profile};
    use loyalty_bot::store::{LoyaltyStore, NewMember, SledStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = SledStore::open(&path, 8 << 20).unwrap();
        for (name, bonus) in [("ana", 50), ("ben", 150), ("cy", 300)] {
            let new = NewMember {
                identity: ChatIdentity::new(Channel::Manychat, name).unwrap(),
                email: Email::parse(&format!("{name}@example.com")).unwrap(),
                profile: Profile::default(),
                bonus: Points(bonus),
            };
            store.join(new, chrono::Utc::now()).unwrap();
        }
        store.close().unwrap();
    }
    let env = [("LOYALTY__STORE__PATH", path.to_str().unwrap())];
    let out = loyalty_bot(
        dir.path(),
        &["members", "--min-points", "100", "--csv"],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,email,points,joined_at,last_activity_at,orders_claimed,points_earned,points_redeemed,rewards_redeemed,locale,channels"
    );
    let emails: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(emails, ["ben@example.com", "cy@example.com"], "{csv}");
    assert!(lines[2].contains(",300,"), "{csv}");
    // Piped, no progress is drawn: the only word on stderr is the count.
    assert_eq!(text(&out.stderr).trim(), "2 members");

    let out = loyalty_bot(dir.path(), &["members", "--channel", "fax"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("channel"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn statements_dry_run_lists_what_is_due_and_prints_a_statement_without_sending_or_recording() {
    use loyalty_bot::domain::{Channel, ChatIdentity, Email, Points, Profile};
    use loyalty_bot::store::{LoyaltyStore, NewMember, SledStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let joined = chrono::DateTime::parse_from_rfc3339("2027-01-01T09:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    {
        let store = SledStore::open(&path, 8 << 20).unwrap();
        for (name, bonus, days) in [("ana", 250, 0), ("ben", 50, 10)] {
            let new = NewMember {
                identity: ChatIdentity::new(Channel::Manychat, name).unwrap(),
                email: Email::parse(&format!("{name}@example.com")).unwrap(),
                profile: Profile::default(),
                bonus: Points(bonus),
            };
            store
                .join(new, joined + chrono::Duration::days(days))
                .unwrap();
        }
        store.close().unwrap();
    }
    let env = [("LOYALTY__STORE__PATH", path.to_str().unwrap())];
    let due = |as_of: &str| {
        let out = loyalty_bot(
            dir.path(),
            &["statements", "--dry-run", "--as-of", as_of],
            &env,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let (list, summary) = due("2027-01-30");
    assert_eq!(list.lines().count(), 1, "only ana is due on day 29: {list}");
    assert!(
        list.contains("statement")
            && list.contains("a***@example.com")
            && list.contains("send: You have 250 points"),
        "{list}"
    );
    assert!(
        summary.contains("1 would be sent") && summary.contains("nothing was sent"),
        "{summary}"
    );
    // Nothing was recorded: the same run shows the same, and ben is due ten days later.
    assert_eq!(due("2027-01-30").0, list);
    assert_eq!(due("2027-02-09").0.lines().count(), 2);

    let out = loyalty_bot(
        dir.path(),
        &["statements", "--dry-run", "--member", "Ben@Example.com"],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let statement = text(&out.stdout);
    assert!(statement.starts_with("To: ben@example.com"), "{statement}");
    assert!(
        statement.contains("Subject: Your points statement: 50 points"),
        "{statement}"
    );
    assert!(
        statement.contains("150 more points to Free mug"),
        "{statement}"
    );

    let out = loyalty_bot(dir.path(), &["statements"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("email.smtp_url"),
        "{}",
        text(&out.stderr)
    );
}
