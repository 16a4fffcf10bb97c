use crate::helpers::{list_of, read_all_with, read_ok, valid_body};
use chukan_replica_list::{Limits, Operation};

fn codes(e: &chukan_replica_list::Entry) -> Vec<(&'static str, &'static str)> {
    e.defects.iter().map(|d| (d.code, d.field)).collect()
}

#[tokio::test]
async fn defects_refuse_the_entry_and_reading_goes_on() {
    let bad_date = valid_body("R1").replace("2018-07-02", "2018-02-30");
    let no_record_id = valid_body("R2").replace(
        "<RecordIdentificationNumber>R2</RecordIdentificationNumber>",
        "",
    );
    let broken_payload = valid_body("R3").replace("<I0001>1</I0001>", "<I0001>1</I0002>");
    let unknown_child = format!("{}<Extra><Deep>x</Deep></Extra>", valid_body("R4"));
    let too_long = valid_body("R5").replace("K-1", &"鍵".repeat(65));
    let duplicated = format!(
        "{}<DataSetRecordKey>K-2</DataSetRecordKey>",
        valid_body("R6")
    );
    let child_in_header =
        valid_body("R7").replace("<SPIMajorVersion>0002", "<SPIMajorVersion><b>0002</b>");
    let register_without_payload = valid_body("R8").replace(
        "<DuplicateCopyData><![CDATA[<I0001>1</I0001>]]></DuplicateCopyData>",
        "<DuplicateCopyData><![CDATA[  ]]></DuplicateCopyData>",
    );
    let lone_ampersand = valid_body("R9").replace("K-1", "K & 1");
    let bad_update = valid_body("R10").replace(
        "<I0001>1</I0001>",
        "<I0001 TimeAndDateOfUpdate=\"yesterday\">1</I0001>",
    );
    let empty_required = valid_body("R11").replace(
        "<SPIMajorVersion>0002</SPIMajorVersion>",
        "<SPIMajorVersion> </SPIMajorVersion>",
    );
    let xml = list_of(&[
        &bad_date,
        &no_record_id,
        &broken_payload,
        &unknown_child,
        &too_long,
        &duplicated,
        &child_in_header,
        &register_without_payload,
        &lone_ampersand,
        &bad_update,
        &empty_required,
        &valid_body("R12"),
    ]);
    let entries = read_ok(xml.as_bytes()).await;
    assert_eq!(entries.len(), 12);
    assert_eq!(codes(&entries[0]), [("invalid-date", "PublicationDate")]);
    assert_eq!(entries[0].public_start, None);
    assert_eq!(
        codes(&entries[1]),
        [("missing-element", "RecordIdentificationNumber")]
    );
    assert_eq!(
        codes(&entries[2]),
        [("payload-malformed", "DuplicateCopyData")]
    );
    assert!(entries[2].payload.is_empty());
    assert_eq!(
        codes(&entries[3]),
        [("unknown-element", "InformationOfSPIRegistrationDelete")]
    );
    assert!(entries[3].defects[0].detail.contains("Extra"));
    assert_eq!(codes(&entries[4]), [("field-too-long", "DataSetRecordKey")]);
    assert_eq!(
        codes(&entries[5]),
        [("duplicate-element", "DataSetRecordKey")]
    );
    // Text inside the stray child is not the field's value: the field is empty as well.
    assert_eq!(
        codes(&entries[6]),
        [
            ("unexpected-child", "SPIMajorVersion"),
            ("missing-element", "SPIMajorVersion")
        ]
    );
    assert_eq!(
        codes(&entries[7]),
        [("missing-element", "DuplicateCopyData")]
    );
    assert_eq!(
        codes(&entries[8]),
        [("invalid-reference", "DataSetRecordKey")]
    );
    assert_eq!(codes(&entries[9]), [("invalid-date", "DuplicateCopyData")]);
    assert_eq!(
        codes(&entries[10]),
        [("missing-element", "SPIMajorVersion")]
    );
    assert!(entries[11].defects.is_empty());
    assert_eq!(entries[11].record_id, "R12");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.ordinal, i as u64 + 1);
        assert!(e.defects.iter().all(|d| !d.detail.contains("K-1")));
    }
}

#[tokio::test]
async fn a_deletion_needs_no_payload() {
    let body = valid_body("R1").replace(
        "<DuplicateCopyData><![CDATA[<I0001>1</I0001>]]></DuplicateCopyData>",
        "<SegmentOfRegistrationDelete>2</SegmentOfRegistrationDelete>",
    );
    let entries = read_ok(list_of(&[&body]).as_bytes()).await;
    assert_eq!(entries[0].operation, Operation::Delete);
    assert!(entries[0].defects.is_empty(), "{:?}", entries[0].defects);
}

#[tokio::test]
async fn the_field_limit_counts_characters_not_bytes() {
    let body = valid_body("R1").replace("K-1", &"鍵".repeat(64));
    let entries = read_ok(list_of(&[&body]).as_bytes()).await;
    assert!(entries[0].defects.is_empty());
    let limits = Limits {
        max_field_chars: 10,
        ..Limits::default()
    };
    let (entries, err) = read_all_with(list_of(&[&body]).as_bytes(), limits, 64).await;
    assert!(err.is_none());
    assert_eq!(entries[0].defects[0].code, "field-too-long");
}

#[tokio::test]
async fn a_nul_or_another_character_xml_forbids_refuses_the_entry_naming_the_field() {
    let cases = [
        // (body, the field named)
        (
            valid_body("R1").replace("K-1", "K&#0;1"),
            "DataSetRecordKey",
        ),
        (
            valid_body("R2").replace("K-1", "K&#x0;1"),
            "DataSetRecordKey",
        ),
        (
            valid_body("R3").replace("K-1", "K\u{1}1"),
            "DataSetRecordKey",
        ),
        (
            valid_body("R4").replace("<I0001>1</I0001>", "<I0001>1&amp;#0;</I0001>"),
            "",
        ),
        (
            valid_body("R5").replace("<I0001>1</I0001>", "<I0001>1&#0;</I0001>"),
            "DuplicateCopyData",
        ),
        (
            valid_body("R6").replace("<I0001>1</I0001>", "<I0001 Version=\"&#0;\">1</I0001>"),
            "DuplicateCopyData",
        ),
        (
            valid_body("R7").replace("<I0001>1</I0001>", "<I0001>1\u{0}</I0001>"),
            "DuplicateCopyData",
        ),
    ];
    let bodies: Vec<&str> = cases.iter().map(|(b, _)| b.as_str()).collect();
    let mut bodies = bodies;
    let good = valid_body("R8");
    bodies.push(&good);
    let entries = read_ok(list_of(&bodies).as_bytes()).await;
    assert_eq!(entries.len(), 8);
    for (entry, (_, field)) in entries.iter().zip(&cases) {
        if field.is_empty() {
            // `&amp;#0;` is the text "&#0;", not a NUL.
            assert!(entry.defects.is_empty(), "{:?}", entry.defects);
            continue;
        }
        // A reference to NUL is an undefined reference; a raw one is a forbidden character.
        let refused = codes(entry).first().copied();
        assert!(
            [
                Some(("invalid-character", *field)),
                Some(("invalid-reference", *field)),
                Some(("payload-malformed", *field)),
            ]
            .contains(&refused),
            "{}: {:?}",
            entry.record_id,
            entry.defects
        );
        assert!(
            entry.record_key.chars().all(|c| c >= ' ')
                && entry.payload.iter().all(|i| i
                    .value
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .all(|c| c >= ' ')),
            "nothing forbidden is kept"
        );
    }
    assert!(entries[7].defects.is_empty());
}
