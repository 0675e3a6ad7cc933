//! `loyalty-bot check-config`'s report: every key's effective value, one per line as
//! `key = value  # layer`, with secrets shown as `[redacted]`.

use super::{Layered, SECRET_KEYS};
use toml::Value;

/// The effective configuration, in the defaults' key order, each line naming its layer.
pub fn render(layered: &Layered) -> String {
    let mut lines = Vec::new();
    leaves(&layered.value, "", &mut lines);
    let width = lines
        .iter()
        .map(|(k, v)| k.len() + v.len() + 3)
        .max()
        .unwrap_or(0);
    let mut out = String::from(
        "# loyalty-bot effective configuration: built-in defaults, then the file, then LOYALTY__ variables\n",
    );
    for (key, value) in lines {
        let line = format!("{key} = {value}");
        let source = layered.source(&key);
        out.push_str(&format!("{line:<width$}  # {source}\n"));
    }
    out
}

fn leaves(value: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Table(table) => {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(value, &path, out);
            }
        }
        Value::Array(items) if items.iter().all(Value::is_table) && !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                leaves(item, &format!("{prefix}[{i}]"), out);
            }
        }
        Value::String(s) if SECRET_KEYS.contains(&prefix) && !s.is_empty() => {
            out.push((prefix.to_owned(), "\"[redacted]\"".into()));
        }
        Value::String(s) if prefix == "email.smtp_url" => {
            out.push((prefix.to_owned(), format!("{:?}", without_password(s))));
        }
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// An SMTP URL with its password (if any) shown as `[redacted]`: the host and port are what an
/// operator checks; the password is a secret.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("[redacted]"));
            u.to_string().replace("%5Bredacted%5D", "[redacted]")
        }
        Ok(_) => url.to_owned(),
        // Not a URL: it may still hold a password somewhere; show nothing of it.
        Err(_) if url.is_empty() => String::new(),
        Err(_) => "[redacted: not a URL]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_report_names_each_layer_and_hides_secrets() {
        let file = "[program]\nsignup_bonus = 75\n";
        let env = [
            (
                "LOYALTY__ADMIN__TOKEN".to_string(),
                "hunter2-admin".to_string(),
            ),
            ("LOYALTY__PROGRAM__LOCALE".to_string(), "de".to_string()),
            (
                "LOYALTY__EMAIL__SMTP_URL".to_string(),
                "smtp://relay:hunter2@mail.example.com:587".to_string(),
            ),
        ];
        let layered = Layered::merge(Some((file, Path::new("/etc/lb.toml"))), env).unwrap();
        let report = render(&layered);
        let line = |key: &str| {
            report
                .lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("{key} missing from\n{report}"))
                .to_owned()
        };
        assert!(line("program.signup_bonus").contains("75"), "{report}");
        assert!(line("program.signup_bonus").ends_with("# file /etc/lb.toml"));
        assert!(line("program.locale").ends_with("# env LOYALTY__PROGRAM__LOCALE"));
        assert!(line("program.currency").ends_with("# default"));
        assert!(line("rewards[1].points").contains("500"), "{report}");
        assert!(line("admin.token").contains("[redacted]"));
        assert!(!line("email.smtp_url").contains("hunter2"));
        assert!(line("email.smtp_url").contains("smtp://relay:[redacted]@mail.example.com:587"));
        assert!(!report.contains("hunter2"), "{report}");
        // An empty secret shows as empty: the owner sees it is not set.
        assert!(line("manychat.token").contains("\"\""), "{report}");
    }
}
