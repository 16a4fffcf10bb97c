use crate::helpers::{Owned, generated, read_all_with, read_ok, write_list};
use chukan_replica_list::{Limits, ListReader, ListWriter, Operation};

/// Byte ranges of every entry element in a list we wrote.
fn entry_spans(xml: &[u8]) -> Vec<(usize, usize)> {
    let text = std::str::from_utf8(xml).unwrap();
    let (open, close) = (
        "<InformationOfSPIRegistrationDelete>",
        "</InformationOfSPIRegistrationDelete>",
    );
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(start) = text[from..].find(open) {
        let start = from + start;
        let end = start + text[start..].find(close).unwrap() + close.len();
        spans.push((start, end));
        from = end;
    }
    spans
}

#[tokio::test]
async fn many_entries_survive_writer_then_reader() {
    let written: Vec<Owned> = (0..500).map(generated).collect();
    assert!(
        written
            .iter()
            .any(|e| e.operation == Operation::Delete && e.payload.is_empty())
    );
    let xml = write_list(&written);
    let spans = entry_spans(&xml);

    let entries = read_ok(&xml).await;
    assert_eq!(entries.len(), written.len());
    for (i, (entry, expected)) in entries.iter().zip(&written).enumerate() {
        assert_eq!(entry.ordinal, i as u64 + 1);
        expected.assert_read_as(entry);
        assert_eq!(
            entry.byte_len,
            (spans[i].1 - spans[i].0) as u64,
            "entry {i}"
        );
    }

    // Segment elements are written only when the operation changes.
    let segments = std::str::from_utf8(&xml)
        .unwrap()
        .matches("<SegmentOfRegistrationDelete>")
        .count();
    let changes = 1 + written
        .windows(2)
        .filter(|w| w[0].operation != w[1].operation)
        .count();
    assert_eq!(segments, changes);
}

#[tokio::test]
async fn a_reader_that_yields_one_byte_at_a_time() {
    let written: Vec<Owned> = (0..60).map(generated).collect();
    let xml = write_list(&written);
    let (entries, err) = read_all_with(&xml, Limits::default(), 1).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(entries.len(), written.len());
    let spans = entry_spans(&xml);
    for (i, (entry, expected)) in entries.iter().zip(&written).enumerate() {
        expected.assert_read_as(entry);
        assert_eq!(entry.byte_len, (spans[i].1 - spans[i].0) as u64);
    }
}

#[tokio::test]
async fn position_reports_progress() {
    let xml = write_list(&(0..10).map(generated).collect::<Vec<_>>());
    let mut reader = ListReader::new(&xml[..], Limits::default());
    let spans = entry_spans(&xml);
    let mut last = 0;
    let mut n = 0;
    while let Some(_entry) = reader.next_entry().await.unwrap() {
        assert_eq!(reader.position(), spans[n].1 as u64);
        assert!(reader.position() > last);
        last = reader.position();
        n += 1;
    }
    assert_eq!(reader.position(), xml.len() as u64);
}

#[tokio::test]
async fn writer_output_shape() {
    let entry = generated(1);
    let mut w = ListWriter::new(Vec::new()).unwrap();
    w.write(&entry.spec()).unwrap();
    let mut delete = generated(3);
    delete.payload.clear();
    w.write(&delete.spec()).unwrap();
    let xml = String::from_utf8(w.finish().unwrap()).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SPIRegistrationDeleteList>\n  <SegmentOfRegistrationDelete>1</SegmentOfRegistrationDelete>\n"));
    assert!(xml.contains("<DuplicateCopyData><![CDATA[<I0001 Version=\"0002\" TimeAndDateOfUpdate=\"2017-03-02\">2001</I0001><I0002>2017-02-28</I0002><I0003 ReasonOfNull=\"NotAcceptable\" xsi:nil=\"true\"/>]]></DuplicateCopyData>"));
    assert!(xml.contains("<SegmentOfRegistrationDelete>2</SegmentOfRegistrationDelete>"));
    assert!(xml.contains("<DuplicateCopyData/>"));
    assert!(xml.contains("<PublishedEndDate/>"));
    assert!(xml.ends_with("</SPIRegistrationDeleteList>\n"));
}

#[test]
fn writer_refuses_item_codes_that_are_not_names() {
    let mut entry = generated(1);
    entry.payload[0].code = "I 1<".into();
    let mut w = ListWriter::new(Vec::new()).unwrap();
    let err = w.write(&entry.spec()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn copying_a_list_through_as_spec_is_lossless() {
    let xml = write_list(&(0..50).map(generated).collect::<Vec<_>>());
    let entries = read_ok(&xml).await;
    let mut w = ListWriter::new(Vec::new()).unwrap();
    for e in &entries {
        w.write(&e.as_spec()).unwrap();
    }
    assert_eq!(w.finish().unwrap(), xml);
}

#[tokio::test]
async fn debug_output_masks_personal_values() {
    let mut owned = generated(1);
    owned.addressee = "000000000099999".into();
    owned.record_key = "SECRET-KEY".into();
    owned.parent_record_key = Some("SECRET-PARENT".into());
    owned.payload[0].value = Some("SECRET-VALUE".into());
    let entries = read_ok(&write_list(&[owned.clone()])).await;
    let shown = format!("{:?} {:?}", entries[0], owned.spec());
    for secret in ["99999", "SECRET-KEY", "SECRET-PARENT", "SECRET-VALUE"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains(&owned.record_id));
}

#[test]
fn the_reader_can_move_between_threads() {
    fn assert_send<T: Send>(_: &T) {}
    let file = tokio::io::BufReader::new(tokio::io::empty());
    let mut reader = ListReader::new(file, Limits::default());
    assert_send(&reader.next_entry());
}
