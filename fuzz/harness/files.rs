//! Files the owner edits: flow files and `config.toml` with its environment overrides. Not
//! attacker input in production, but a typo must give an error naming the key, never a panic.

use loyalty_bot::config::Settings;
use loyalty_bot::flows::{check_flow_texts, BUILT_IN_FLOWS};
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};

/// The shipped flows, which the fuzzed file joins: alone, a file could never pass the checks
/// across files (every locale has every message, one fallback flow), which is where most of
/// the loading code is.
const SHIPPED: [(&str, &str); 8] = BUILT_IN_FLOWS;

/// One flow file. Layout: a byte choosing which shipped file the text replaces (`n % 7`; 6
/// adds it as `fuzz.toml`), then the file's text.
pub fn flow_file(data: &[u8]) {
    let Some((&slot, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut files: Vec<(PathBuf, String)> = SHIPPED
        .iter()
        .map(|(name, text)| (Path::new("flows").join(name), (*text).to_owned()))
        .collect();
    match usize::from(slot) % (SHIPPED.len() + 1) {
        i if i < SHIPPED.len() => files[i].1 = text.to_owned(),
        _ => files.push((PathBuf::from("flows/fuzz.toml"), text.to_owned())),
    }
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    match check_flow_texts(files) {
        Ok((ids, fallback)) => assert!(ids.contains(&fallback), "{fallback} not in {ids:?}"),
        // Errors name a file the owner can open (or the folder, for checks across files).
        Err(e) => assert!(
            paths.contains(&e.file) || e.file == Path::new("flows"),
            "{e}"
        ),
    }
}

/// Reads one setting.
type Getter = fn(&Settings) -> &str;

/// Keys whose environment override is a string that validation keeps as given.
const STRING_KEYS: [(&str, Getter); 6] = [
    ("PROGRAM__CURRENCY", |s| s.program.currency.as_str()),
    ("PROGRAM__LOCALE", |s| s.program.locale.as_str()),
    ("ADMIN__TOKEN", |s| s.admin.token.expose()),
    ("MESSENGER__APP_SECRET", |s| s.messenger.app_secret.expose()),
    ("MANYCHAT__TOKEN", |s| s.manychat.token.expose()),
    ("SHOP__SECRET", |s| s.shop.secret.expose()),
];

/// `config.toml` plus overrides. Layout: the TOML text, then optionally a NUL byte and
/// `SECTION__KEY=value` lines, each passed as `LOYALTY__SECTION__KEY`.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml_text, env_text) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(String, String)> = env_text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("LOYALTY__{k}"), v.to_owned()))
        .collect();
    let Ok(s) = Settings::from_toml(toml_text, Path::new("config.toml"), env.clone()) else {
        return;
    };
    let rate = s.program.points_per_currency_unit;
    assert!(
        rate > Decimal::ZERO && rate <= Decimal::from(1000),
        "rate {rate}"
    );
    assert!((1..=3650).contains(&s.program.coupon_valid_days));
    assert!((1..=60).contains(&s.shop.timeout.as_secs()));
    assert!((1..=10).contains(&s.catalogue().all().len()));
    let _ = s.public_url("/manychat/join");
    // The environment wins over the file: the last override of a key is what is used.
    for (key, get) in STRING_KEYS {
        let last = env.iter().rev().find(|(k, _)| {
            k.strip_prefix("LOYALTY__")
                .is_some_and(|k| k.eq_ignore_ascii_case(key))
        });
        if let Some((_, value)) = last {
            assert_eq!(get(&s), value, "{key}");
        }
    }
}
