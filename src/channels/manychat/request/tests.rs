use super::*;

const MODERN: &str = include_str!("../../../../fixtures/manychat/full-contact-data-request.json");
const DOCS: &str =
    include_str!("../../../../fixtures/manychat/full-contact-data-request-docs-shape.json");

fn parse(body: &str) -> ContactRequest {
    ContactRequest::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn modern_fixture_with_string_ids_yields_id_profile_and_step_fields() {
    let req = parse(MODERN);
    assert_eq!(req.subscriber_id, "1515862162");
    assert_eq!(req.profile.first_name.as_deref(), Some("Jane"));
    assert_eq!(req.profile.locale.as_deref(), Some("en_US"));
    assert_eq!(
        req.vars_for(Endpoint::Join),
        vars(&[("email", "jane@example.com")])
    );
    assert_eq!(
        req.vars_for(Endpoint::Claim),
        vars(&[("email", "jane@example.com"), ("order_number", "1001")])
    );
    // Stale custom fields from other steps stay out of unrelated flows.
    assert!(req.vars_for(Endpoint::Balance).is_empty());
    assert!(req.vars_for(Endpoint::Rewards).is_empty());
}

#[test]
fn docs_fixture_with_numeric_ids_parses_without_going_through_floats() {
    let req = parse(DOCS);
    assert_eq!(req.subscriber_id, "1324564712345678");
    assert!(
        req.vars_for(Endpoint::Join).is_empty(),
        "no email anywhere in the docs shape"
    );
    // 2^53 + 1 is not representable as f64; the digits must survive.
    let req = parse(r#"{"id": 9007199254740993}"#);
    assert_eq!(req.subscriber_id, "9007199254740993");
    let req = parse(r#"{"subscriber_id": 18446744073709551615}"#);
    assert_eq!(req.subscriber_id, "18446744073709551615");
}

#[test]
fn subscriber_id_problems_are_told_apart() {
    let cases: &[(&str, &str)] = &[
        ("{}", "missing_subscriber_id"),
        (r#"{"id": null}"#, "missing_subscriber_id"),
        (r#"{"id": "  "}"#, "missing_subscriber_id"),
        (r#"{"id": 1.5e15}"#, "invalid_subscriber_id"),
        (r#"{"subscriber_id": true}"#, "invalid_subscriber_id"),
        ("[1, 2]", "not_an_object"),
        ("{\"id\": \"1\",", "malformed_json"),
        ("", "malformed_json"),
    ];
    for (body, code) in cases {
        let err = ContactRequest::parse(body.as_bytes()).unwrap_err();
        assert_eq!(err.code(), *code, "body {body:?}: {err}");
    }
}

#[test]
fn malformed_json_error_says_where() {
    let err = ContactRequest::parse(b"{\"id\": \"1\",").unwrap_err();
    assert!(err.to_string().contains("line 1 column"), "{err}");
}

#[test]
fn top_level_step_fields_beat_custom_fields() {
    let req = parse(
        r##"{"id": "7", "order_number": "#2002", "reward_id": "tote-bag",
            "custom_fields": {"order_number_input": "1001", "reward_id": "free-mug"}}"##,
    );
    assert_eq!(
        req.vars_for(Endpoint::Claim),
        vars(&[("order_number", "#2002")])
    );
    assert_eq!(
        req.vars_for(Endpoint::Redeem),
        vars(&[("reward_id", "tote-bag")])
    );
}

#[test]
fn custom_field_variants_are_found_and_numbers_keep_their_digits() {
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"email": "a@b.co"}"#, "email", "a@b.co"),
        (
            r#"{"email_input": "x@y.co", "email": "a@b.co"}"#,
            "email",
            "x@y.co",
        ),
        (r#"{"order_number": 1001}"#, "order_number", "1001"),
        (r#"{"order_number_input": 1001.0}"#, "order_number", "1001"),
        (
            r##"{"order_number_input": " #1001 "}"##,
            "order_number",
            "#1001",
        ),
    ];
    for (fields, name, want) in cases {
        let req = parse(&format!(r#"{{"id": "7", "custom_fields": {fields}}}"#));
        assert_eq!(
            req.vars_for(Endpoint::Claim).get(*name).map(String::as_str),
            Some(*want),
            "{fields}"
        );
    }
}

#[test]
fn explicit_email_input_beats_the_contacts_system_email() {
    let req =
        parse(r#"{"id": "7", "email": "old@b.co", "custom_fields": {"email_input": "new@b.co"}}"#);
    assert_eq!(req.vars_for(Endpoint::Join), vars(&[("email", "new@b.co")]));
    let req = parse(r#"{"id": "7", "email": "old@b.co", "custom_fields": {"email_input": ""}}"#);
    assert_eq!(req.vars_for(Endpoint::Join), vars(&[("email", "old@b.co")]));
}

#[test]
fn our_callback_payload_passes_every_var_but_the_contact_keys() {
    let req = parse(
        r#"{"subscriber_id": "1515862162", "locale": "de_DE", "first_name": "Jane",
            "order_number": "1001", "email": "jane@example.com", "step": 2, "empty": ""}"#,
    );
    assert_eq!(req.subscriber_id, "1515862162");
    assert_eq!(req.profile.locale.as_deref(), Some("de_DE"));
    let want = vars(&[
        ("email", "jane@example.com"),
        ("order_number", "1001"),
        ("step", "2"),
    ]);
    assert_eq!(req.vars_for(Endpoint::Claim), want);
}

#[test]
fn rewards_endpoint_never_passes_a_reward_id() {
    let req = parse(r#"{"subscriber_id": "1", "reward_id": "free-mug"}"#);
    assert!(req.vars_for(Endpoint::Rewards).is_empty());
    assert_eq!(
        req.vars_for(Endpoint::Redeem),
        vars(&[("reward_id", "free-mug")])
    );
}
