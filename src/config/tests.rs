//! The settings' own tests: layering, typed values, and every mistake naming its key.

use super::*;
use crate::limits::LimitSettings;

/// Every key at its default, as an operator's file.
const BASE: &str = DEFAULTS;

fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::from_toml(
        text,
        Path::new("config.toml"),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[test]
fn a_file_with_one_key_is_enough_and_the_environment_sets_any_other_with_its_type() {
    let minimal = "[program]\nsignup_bonus = 75\n";
    let env = [
        ("LOYALTY__MESSENGER__MAX_TURNS_AT_ONCE", "32"),
        ("LOYALTY__STORE__FLUSH_GAP_US", "3000"),
        ("LOYALTY__STORE__DURABILITY", "process_crash"),
        ("LOYALTY__PROGRAM__POINTS_PER_CURRENCY_UNIT", "1.5"),
        ("LOYALTY__MESSENGER__VERIFY_TOKEN", "12345"),
    ];
    let s = load(minimal, &env).unwrap();
    assert_eq!(s.program.signup_bonus, 75);
    assert_eq!(s.program.currency.as_str(), "EUR", "the default");
    assert_eq!(s.messenger.max_turns_at_once, 32);
    assert_eq!(s.store.flush_gap, Duration::from_micros(3000));
    assert_eq!(s.store.durability, Durability::ProcessCrash);
    assert_eq!(s.program.points_per_currency_unit, Decimal::new(15, 1));
    // A secret of digits stays a string.
    assert_eq!(s.messenger.verify_token.expose(), "12345");
    let e = load(minimal, &[("LOYALTY__MESSENGER__TURN_GRACE_MS", "soon")]).unwrap_err();
    assert!(e.to_string().contains("whole number"), "{e}");
}

#[test]
fn no_file_at_all_runs_on_the_defaults_the_fixture_shop_and_the_built_in_flows() {
    let s = Settings::load(None, Vec::new()).unwrap();
    assert_eq!(s.shop.kind, ShopKind::Fixture);
    assert_eq!(s.shop.orders_file, None);
    assert_eq!(s.flows_dir, None);
    assert_eq!(s.server.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(s.store.path, Path::new("data"));
}

#[test]
fn a_file_named_but_missing_is_an_error_naming_it() {
    let e = Settings::load(Some(Path::new("/no/such/loyalty.toml")), Vec::new()).unwrap_err();
    assert!(e.to_string().contains("/no/such/loyalty.toml"), "{e}");
}

#[test]
fn a_generic_shop_needs_no_orders_file_but_its_urls_and_secret() {
    let generic = "[shop]\nkind = \"generic\"\nverify_url = \"https://s.example/v\"\ncoupon_url = \"https://s.example/c\"\n";
    let e = load(generic, &[]).unwrap_err().to_string();
    assert!(e.contains("shop.secret"), "{e}");
    let s = load(generic, &[("LOYALTY__SHOP__SECRET", "x")]).unwrap();
    assert_eq!(s.shop.kind, ShopKind::Generic);
    let e = load("[shop]\nkind = \"generic\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`shop.verify_url`") && e.contains("required"),
        "{e}"
    );
}

#[test]
fn values_are_typed_at_start_and_a_wrong_one_names_its_key() {
    let s = load("[server]\npublic_url = \"https://loyalty.example/\"\n", &[]).unwrap();
    assert_eq!(
        s.public_url("/manychat/join"),
        "https://loyalty.example/manychat/join"
    );
    for (file, key) in [
        ("[server]\npublic_url = \"ftp://x\"\n", "server.public_url"),
        (
            "[server]\npublic_url = \"not a url\"\n",
            "server.public_url",
        ),
        ("[server]\nbind = \"localhost\"\n", "server.bind"),
        ("[program]\nlocale = \"fr\"\n", "program.locale"),
        ("[program]\ncurrency = \"euro\"\n", "program.currency"),
        (
            "[shop]\norders_file = \"/no/such/orders.json\"\n",
            "shop.orders_file",
        ),
        (
            "[program]\nsignup_bonus = \"many\"\n",
            "program.signup_bonus",
        ),
    ] {
        let e = load(file, &[]).unwrap_err().to_string();
        assert!(e.contains(key), "{file}: {e}");
    }
}

#[test]
fn every_secret_field_is_listed_for_redaction() {
    let env: Vec<(String, String)> = SECRET_KEYS
        .iter()
        .map(|k| {
            let var = format!("LOYALTY__{}", k.replace('.', "__").to_ascii_uppercase());
            (var, format!("value-of-{k}"))
        })
        .collect();
    let s = Settings::load(None, env).unwrap();
    let dbg = format!("{s:?}");
    // A Secret field missing from the list would still be empty, and show as such.
    assert_eq!(dbg.matches("[empty]").count(), 0, "{dbg}");
    assert_eq!(
        dbg.matches("[redacted]").count(),
        SECRET_KEYS.len(),
        "{dbg}"
    );
}

#[test]
fn committed_config_is_valid_and_has_channels_disabled() {
    let s = load(BASE, &[]).unwrap();
    assert_eq!(s.program.signup_bonus, 50);
    assert!(!s.messenger.enabled());
    assert!(!s.manychat.token.is_set());
    assert_eq!(s.catalogue().cheapest().unwrap().points, Points(200));
}

#[test]
fn environment_overrides_any_key_with_its_type() {
    let s = load(
        BASE,
        &[
            ("LOYALTY__MESSENGER__APP_SECRET", "s3cret"),
            ("LOYALTY__PROGRAM__SIGNUP_BONUS", "75"),
            ("LOYALTY__SERVER__BIND", "127.0.0.1:9999"),
            ("UNRELATED", "x"),
        ],
    )
    .unwrap();
    assert_eq!(s.messenger.app_secret.expose(), "s3cret");
    assert_eq!(s.program.signup_bonus, 75);
    assert_eq!(s.server.bind.to_string(), "127.0.0.1:9999");
}

#[test]
fn the_points_rate_may_be_fractional_from_file_or_environment() {
    let s = load(
        BASE,
        &[("LOYALTY__PROGRAM__POINTS_PER_CURRENCY_UNIT", "1.5")],
    )
    .unwrap();
    assert_eq!(s.program.points_per_currency_unit.to_string(), "1.5");
    let text = BASE.replace(
        "points_per_currency_unit = 1",
        "points_per_currency_unit = 0.5",
    );
    let s = load(&text, &[]).unwrap();
    assert_eq!(s.program.points_per_currency_unit.to_string(), "0.5");
    for bad in ["0", "-1", "abc", "1001"] {
        let e = load(BASE, &[("LOYALTY__PROGRAM__POINTS_PER_CURRENCY_UNIT", bad)]).unwrap_err();
        assert!(
            e.to_string().contains("POINTS_PER_CURRENCY_UNIT")
                || e.to_string().contains("points_per_currency_unit"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn answers_wait_for_power_loss_safety_unless_the_owner_chooses_otherwise() {
    let s = load(BASE, &[]).unwrap();
    assert_eq!(s.store.durability, Durability::PowerLoss);
    let without = BASE.replace("durability = \"power_loss\"", "");
    assert_ne!(without, BASE, "the committed config names its durability");
    assert_eq!(
        load(&without, &[]).unwrap().store.durability,
        Durability::PowerLoss
    );
    let s = load(BASE, &[("LOYALTY__STORE__DURABILITY", "process_crash")]).unwrap();
    assert_eq!(s.store.durability, Durability::ProcessCrash);
    let e = load(BASE, &[("LOYALTY__STORE__DURABILITY", "sometimes")]).unwrap_err();
    assert!(e.to_string().contains("store.durability"), "{e}");
}

#[test]
fn mistakes_name_the_key() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("LOYALTY__PROGRAM__SIGNUP_BONUS", "lots")],
            "LOYALTY__PROGRAM__SIGNUP_BONUS",
        ),
        (
            &[("LOYALTY__PROGRAM__CURRENCY", "euro")],
            "program.currency",
        ),
        (&[("LOYALTY__SERVER__BIND", "nowhere")], "server.bind"),
        (&[("LOYALTY__SHOP__KIND", "generic")], "shop.verify_url"),
        (&[("LOYALTY__SHOP__TIMEOUT_SECS", "0")], "shop.timeout_secs"),
        (
            &[
                ("LOYALTY__MANYCHAT__API_TOKEN", "1:key"),
                ("LOYALTY__MANYCHAT__API_URL", "api.manychat.com"),
            ],
            "manychat.api_url",
        ),
        (
            // The token would cross the network in the clear.
            &[
                ("LOYALTY__MANYCHAT__API_TOKEN", "1:key"),
                ("LOYALTY__MANYCHAT__API_URL", "http://api.manychat.com"),
            ],
            "manychat.api_url",
        ),
        (
            &[("LOYALTY__SERVER__SHUTDOWN_TIMEOUT_SECS", "0")],
            "server.shutdown_timeout_secs",
        ),
        (&[("LOYALTY__PROGRAM__LOCALE", "fr")], "program.locale"),
        (
            &[("LOYALTY__PROGRAM__COLOUR", "red")],
            "LOYALTY__PROGRAM__COLOUR",
        ),
        (
            &[("LOYALTY__SERVER__BODY_TIMEOUT_MS", "0")],
            "server.body_timeout_ms",
        ),
        (
            &[("LOYALTY__SERVER__MAX_BODY_BYTES", "10")],
            "server.max_body_bytes",
        ),
        (
            &[("LOYALTY__MESSENGER__MAX_BODY_BYTES", "999999999")],
            "messenger.max_body_bytes",
        ),
        (
            &[("LOYALTY__MESSENGER__MAX_EVENTS_IN_MEMORY", "0")],
            "messenger.max_events_in_memory",
        ),
        (
            &[("LOYALTY__STORE__MAX_UNWRITTEN_EVENTS_MB", "0")],
            "store.max_unwritten_events_mb",
        ),
        (&[("LOYALTY__STORE__FLUSH_BATCH", "0")], "store.flush_batch"),
        (
            &[("LOYALTY__MESSENGER__MAX_TURNS_AT_ONCE", "100001")],
            "messenger.max_turns_at_once",
        ),
        (
            &[("LOYALTY__MESSENGER__TURN_GRACE_MS", "10001")],
            "messenger.turn_grace_ms",
        ),
        (
            &[("LOYALTY__MESSENGER__SEND_TIMEOUT_MS", "99")],
            "messenger.send_timeout_ms",
        ),
        (
            &[("LOYALTY__MESSENGER__PROFILE_TIMEOUT_MS", "30001")],
            "messenger.profile_timeout_ms",
        ),
        (
            &[(
                "LOYALTY__LIMITS__FAILED_CLAIMS_PER_MEMBER__WINDOW_SECS",
                "0",
            )],
            "limits.failed_claims_per_member.window_secs",
        ),
        (
            &[("LOYALTY__LIMITS__ADMIN_PER_IP__MAX", "-1")],
            "limits.admin_per_ip.max",
        ),
        (
            &[("LOYALTY__LIMITS__TRUSTED_PROXIES", "10.0.0.1, proxy")],
            "limits.trusted_proxies",
        ),
        (
            &[("LOYALTY__LIMITS__MAX_TRACKED_KEYS", "5")],
            "limits.max_tracked_keys",
        ),
    ];
    for (env, key) in cases {
        let e = load(BASE, env).unwrap_err().to_string();
        assert!(e.contains(key), "{env:?}: {e}");
    }
}

#[test]
fn a_catalogue_larger_than_one_set_of_quick_replies_is_refused() {
    let mut text = BASE.to_owned();
    for i in 0..10 {
        text.push_str(&format!(
            "\n[[rewards]]\nid = \"r{i}\"\ntitle = \"R{i}\"\npoints = {}\nproduct_ids = [\"p\"]\ncheckout_url = \"https://shop.example/\"\n",
            300 + i
        ));
    }
    let e = load(&text, &[]).unwrap_err().to_string();
    assert!(e.contains("`rewards`") && e.contains("at most 10"), "{e}");
}

#[test]
fn every_secret_is_redacted_in_debug_output() {
    let secrets = [
        ("LOYALTY__MESSENGER__APP_SECRET", "app-secret-111"),
        ("LOYALTY__MESSENGER__VERIFY_TOKEN", "verify-token-222"),
        ("LOYALTY__MESSENGER__PAGE_ACCESS_TOKEN", "page-token-333"),
        ("LOYALTY__MANYCHAT__TOKEN", "manychat-token-444"),
        ("LOYALTY__ADMIN__TOKEN", "admin-token-555"),
        ("LOYALTY__SHOP__SECRET", "shop-secret-666"),
    ];
    let s = load(BASE, &secrets).unwrap();
    for dbg in [format!("{s:?}"), format!("{s:#?}")] {
        for (var, value) in secrets {
            assert!(!dbg.contains(value), "{var} shows in {dbg}");
        }
        assert_eq!(dbg.matches("[redacted]").count(), secrets.len(), "{dbg}");
    }
    assert_eq!(format!("{:?}", Secret::new("x")), "[redacted]");
    assert_eq!(format!("{:?}", Secret::default()), "[empty]");
}

#[test]
fn the_committed_limits_are_the_documented_defaults() {
    let s = load(BASE, &[]).unwrap();
    let defaults = LimitSettings::default();
    assert_eq!(s.limits.rates(), defaults.rates());
    assert_eq!(s.limits.trusted_proxies, defaults.trusted_proxies);
    assert_eq!(s.limits.max_tracked_keys, defaults.max_tracked_keys);
    let ms = Duration::from_millis;
    let server = (
        s.server.max_body_bytes,
        s.server.header_timeout,
        s.server.body_timeout,
        s.server.keep_alive,
        s.server.disconnect_timeout,
    );
    let want = (
        65536,
        ms(5000),
        ms(10_000),
        Duration::from_secs(5),
        ms(1000),
    );
    assert_eq!(server, want);
    assert_eq!(s.messenger.max_body_bytes, 1 << 20);
    assert_eq!(s.messenger.max_events_in_memory, 20_000);
    assert_eq!(s.messenger.max_turns_at_once, 64);
    assert_eq!(s.messenger.turn_grace, ms(5));
    assert_eq!(s.messenger.send_timeout, ms(10_000));
    assert_eq!(s.messenger.profile_timeout, ms(2_000));
    assert_eq!(s.store.max_unwritten_events_mb, 8);
    let pacing = (s.store.flush_gap, s.store.flush_batch);
    assert_eq!(pacing, (Duration::from_micros(2000), 32));
    // Every key is documented in docs/limits.md.
    let doc = include_str!("../../docs/limits.md");
    let mut keys: Vec<String> = s
        .limits
        .rates()
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    keys.extend(
        [
            "limits.trusted_proxies",
            "limits.max_tracked_keys",
            "server.max_body_bytes",
            "server.header_timeout_ms",
            "server.body_timeout_ms",
            "server.keep_alive_secs",
            "server.disconnect_timeout_ms",
            "messenger.max_body_bytes",
            "messenger.max_events_in_memory",
            "messenger.max_turns_at_once",
            "messenger.turn_grace_ms",
            "messenger.send_timeout_ms",
            "messenger.profile_timeout_ms",
            "store.max_unwritten_events_mb",
        ]
        .map(String::from),
    );
    for key in keys {
        assert!(
            doc.contains(&format!("`{key}")),
            "{key} is not in docs/limits.md"
        );
    }
}

#[test]
fn any_limit_can_be_set_from_the_environment() {
    let s = load(
        BASE,
        &[
            ("LOYALTY__LIMITS__FAILED_CLAIMS_PER_MEMBER__MAX", "2"),
            ("LOYALTY__LIMITS__ADMIN_PER_IP__WINDOW_SECS", "10"),
            ("LOYALTY__LIMITS__TRUSTED_PROXIES", "10.0.0.1,::1"),
            ("LOYALTY__SERVER__BODY_TIMEOUT_MS", "250"),
        ],
    )
    .unwrap();
    assert_eq!(s.limits.failed_claims_per_member.max, 2);
    assert_eq!(s.limits.admin_per_ip.window_secs, 10);
    let ranges: Vec<String> = (s.limits.trusted_proxies.ranges().iter())
        .map(ToString::to_string)
        .collect();
    assert_eq!(ranges, ["10.0.0.1/32", "::1/128"]);
    assert_eq!(s.server.body_timeout, Duration::from_millis(250));
}

#[test]
fn every_key_outside_limits_is_in_the_readmes_configuration_table() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## Configuration")
        .expect("a Configuration section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let defaults: toml::Table = DEFAULTS.parse().unwrap();
    let mut keys = Vec::new();
    layers::known_keys(&defaults, "", &mut keys);
    for key in keys.iter().filter(|k| !k.starts_with("limits.")) {
        let field = key.rsplit('.').next().unwrap();
        assert!(
            section.contains(field),
            "{key} is not in the README's configuration table"
        );
    }
}

#[test]
fn email_is_off_until_an_smtp_url_is_set_and_then_verifies_joins() {
    let s = load(BASE, &[]).unwrap();
    assert!(!s.email.enabled() && !s.email.verifies());
    let s = load(
        BASE,
        &[("LOYALTY__EMAIL__SMTP_URL", "smtp://127.0.0.1:2525")],
    )
    .unwrap();
    assert!(s.email.enabled() && s.email.verifies());
    assert_eq!(s.email.policy().statement_every, chrono::Duration::days(28));
}

#[test]
fn email_mistakes_name_their_key() {
    for (var, value, key) in [
        (
            "LOYALTY__EMAIL__SMTP_URL",
            "smtp://mail.example.com",
            "email.smtp_url",
        ),
        (
            "LOYALTY__EMAIL__SMTP_URL",
            "https://mail.example.com:587",
            "email.smtp_url",
        ),
        ("LOYALTY__EMAIL__FROM", "nobody", "email.from"),
        (
            "LOYALTY__EMAIL__STATEMENT_EVERY_DAYS",
            "0",
            "email.statement_every_days",
        ),
        ("LOYALTY__EMAIL__DKIM_SELECTOR", "s1", "email.dkim_domain"),
        ("LOYALTY__PROGRAM__SHOP_URL", "shop.example", "shop_url"),
    ] {
        let err = load(BASE, &[(var, value)]).unwrap_err().to_string();
        assert!(err.contains(key), "{var}={value}: {err}");
    }
}

#[test]
fn reward_values_are_exact_amounts() {
    let s = load(BASE, &[]).unwrap();
    let mug = s.catalogue().cheapest().unwrap().clone();
    assert_eq!(mug.value, Some("12.00".parse().unwrap()));
    let file = "[[rewards]]\nid = \"x\"\ntitle = \"X\"\npoints = 10\nproduct_ids = [\"p\"]\ncheckout_url = \"https://s.example/x\"\n";
    let s = Settings::from_toml(file, std::path::Path::new("c.toml"), Vec::new()).unwrap();
    assert_eq!(s.catalogue().cheapest().unwrap().value, None);
    let bad = file.replace("checkout_url", "value = \"12,00\"\ncheckout_url");
    let err = Settings::from_toml(&bad, std::path::Path::new("c.toml"), Vec::new()).unwrap_err();
    assert!(err.to_string().contains("value"), "{err}");
}

#[test]
fn the_hand_built_email_defaults_are_the_files() {
    let (file, code) = (
        load(BASE, &[]).unwrap().email,
        crate::email::EmailSettings::default(),
    );
    assert_eq!(file.smtp_url.is_some(), code.smtp_url.is_some());
    assert_eq!(
        (
            &file.from,
            &file.reply_to,
            file.verify,
            file.max_per_minute,
            file.scan_every
        ),
        (
            &code.from,
            &code.reply_to,
            code.verify,
            code.max_per_minute,
            code.scan_every
        )
    );
    assert_eq!(file.policy(), code.policy());
    assert!(file.dkim.is_none() && code.dkim.is_none());
}
