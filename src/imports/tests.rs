use super::*;

fn now() -> DateTime<Utc> {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn rows(text: &str) -> Result<Vec<ImportRow>, ImportError> {
    read_rows(text.as_bytes(), now())
}

fn errors(text: &str) -> Vec<(u64, String)> {
    match rows(text) {
        Err(ImportError::InvalidRows { errors, .. }) => {
            errors.into_iter().map(|e| (e.line, e.message)).collect()
        }
        other => panic!("expected invalid rows, got {other:?}"),
    }
}

#[test]
fn rows_are_read_by_their_header_in_any_order_and_case() {
    let text = "\u{feff}Points, EMAIL ,joined_at\n120, Jane@Example.com ,2021-03-04\n\n7,bo@example.com,\n8,cy@example.com,2020-01-02T03:04:05+01:00\n";
    let got = rows(text).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].email.as_str(), "jane@example.com");
    assert_eq!(got[0].points.value(), 120);
    assert_eq!(
        got[0].joined_at,
        Some("2021-03-04T00:00:00Z".parse().unwrap())
    );
    assert_eq!(got[1].joined_at, None);
    assert_eq!(
        got[2].joined_at,
        Some("2020-01-02T02:04:05Z".parse().unwrap())
    );
    assert_eq!(rows("email,points\n").unwrap(), vec![]);
}

#[test]
fn every_invalid_row_is_reported_with_its_line_number() {
    let text = "email,points,joined_at\n\
                ok@example.com,10,\n\
                not-an-email,10,\n\
                a@example.com,ten,\n\
                b@example.com,-5,\n\
                c@example.com,0,\n\
                d@example.com,1.5,\n\
                e@example.com,10,yesterday\n\
                f@example.com,10,2999-01-01\n\
                OK@example.com,3,\n\
                g@example.com,10\n\
                h@example.com,99999999999,\n";
    let got = errors(text);
    let lines: Vec<u64> = got.iter().map(|e| e.0).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "{got:#?}");
    let names = [
        "email",
        "points",
        "points",
        "points",
        "points",
        "joined_at",
        "future",
        "line 2",
        "fields",
        "limit",
    ];
    for ((_, message), name) in got.iter().zip(names) {
        assert!(message.contains(name), "{message} should name {name}");
    }
}

#[test]
fn a_row_with_several_problems_reports_each() {
    let got = errors("email,points\nnope,nope\n");
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|e| e.0 == 2));
}

#[test]
fn a_missing_header_or_an_unknown_column_is_refused_by_name() {
    for (text, says) in [
        ("", "header row"),
        ("jane@example.com,10\n", "header row"),
        ("email,points,name\n", "unknown column `name`"),
        ("email,joined\n", "unknown column `joined`"),
        ("email,joined_at\n", "header row"),
        ("email,points,Email\n", "twice"),
    ] {
        match rows(text) {
            Err(ImportError::Header(m)) => assert!(m.contains(says), "{text:?}: {m}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn text_that_is_not_utf8_is_a_row_error() {
    let mut text = b"email,points\nok@example.com,1\n".to_vec();
    text.extend_from_slice(b"j\xe9r\xf4me@example.com,5\n");
    match read_rows(&text[..], now()) {
        Err(ImportError::InvalidRows { errors, rows }) => {
            assert_eq!(rows, 2);
            assert_eq!(errors[0].line, 3);
            assert!(errors[0].message.contains("UTF-8"));
        }
        other => panic!("{other:?}"),
    }
}
