use super::sink::cut;
use super::*;
use crate::domain::{Channel, ChatIdentity, Email, Points, Profile};
use crate::store::{JoinOutcome, NewMember, SledStore};

fn store_with_two() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    let people = [
        (Channel::Manychat, "ana@example.com", Some("de_DE"), 50),
        // A locale with a comma and a quote: the platform's text, which CSV must quote.
        (Channel::Messenger, "bo@example.com", Some("x,\"y"), 7),
    ];
    for (i, (channel, email, locale, bonus)) in people.into_iter().enumerate() {
        let new = NewMember {
            identity: ChatIdentity::new(channel, &i.to_string()).unwrap(),
            email: Email::parse(email).unwrap(),
            profile: Profile {
                first_name: None,
                locale: locale.map(str::to_owned),
            },
            bonus: Points(bonus),
        };
        assert!(matches!(
            store.join(new, Utc::now()).unwrap(),
            JoinOutcome::Joined(_)
        ));
    }
    (dir, store)
}

fn write(store: &SledStore, filter: &SegmentFilter, format: SegmentFormat) -> (u64, String) {
    let mut out = Vec::new();
    let mut reported = Vec::new();
    let n = write_segment(store, filter, format, &mut out, &mut |k| reported.push(k)).unwrap();
    assert_eq!(reported.last(), Some(&n), "the end is reported");
    (n, String::from_utf8(out).unwrap())
}

#[test]
fn csv_has_the_header_then_one_quoted_row_per_member() {
    let (_d, store) = store_with_two();
    let (n, text) = write(&store, &SegmentFilter::default(), SegmentFormat::Csv);
    assert_eq!(n, 2);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        &csv::StringRecord::from(CSV_COLUMNS.to_vec())
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][1], "ana@example.com");
    assert_eq!(&rows[0][2], "50");
    let figures: Vec<&str> = (5..9).map(|i| &rows[0][i]).collect();
    assert_eq!(figures, ["0", "50", "0", "0"]);
    assert_eq!(&rows[0][9], "de_DE");
    assert_eq!(&rows[0][10], "manychat");
    assert_eq!(&rows[1][9], "x,\"y", "read back whole");
    assert!(text.contains("\"x,\"\"y\""), "quoted: {text}");
    for row in &rows {
        for t in [&row[3], &row[4]] {
            assert!(DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
        }
    }
}

#[test]
fn json_lines_and_the_table_carry_the_same_members() {
    let (_d, store) = store_with_two();
    let filter = SegmentFilter {
        min_points: Some(Points(10)),
        ..SegmentFilter::default()
    };
    let (n, lines) = write(&store, &filter, SegmentFormat::JsonLines);
    assert_eq!(n, 1);
    let v: serde_json::Value = serde_json::from_str(lines.trim_end()).unwrap();
    assert_eq!(v["email"], "ana@example.com");
    assert_eq!(v["points"], 50);
    assert_eq!(v["channels"], serde_json::json!(["manychat"]));
    let (n, table) = write(&store, &SegmentFilter::default(), SegmentFormat::Table);
    assert_eq!(n, 2);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].contains("email") && lines[0].contains("last active"));
    assert!(lines[1].contains("ana@example.com") && lines[2].contains("bo@example.com"));
}

#[test]
fn a_failing_writer_is_an_error_not_a_short_file() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (_d, store) = store_with_two();
    let r = write_segment_csv(&store, &SegmentFilter::default(), &mut Full, &mut |_| {});
    assert!(matches!(r, Err(SegmentError::Write(_))), "{r:?}");
}

#[test]
fn long_emails_are_cut_in_the_table_only() {
    assert_eq!(cut("abcdef", 4), "abc…");
    assert_eq!(cut("abcd", 4), "abcd");
}
