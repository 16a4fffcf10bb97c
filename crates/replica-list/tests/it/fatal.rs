use crate::helpers::{generated, list_of, read_all, read_all_with, valid_body, write_list};
use chukan_replica_list::{Limits, ListError, ListReader};
use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};
use tokio::io::{AsyncRead, ReadBuf};

fn lines_before(xml: &[u8], pos: usize) -> u64 {
    1 + xml[..pos].iter().filter(|&&b| b == b'\n').count() as u64
}

#[tokio::test]
async fn mismatched_tags_are_malformed_with_their_line() {
    let xml = "<SPIRegistrationDeleteList>\n  <InformationOfSPIRegistrationDelete>\n    <RecordIdentificationNumber>R1</RecordIdentificationNumbr>\n  </InformationOfSPIRegistrationDelete>\n</SPIRegistrationDeleteList>\n";
    let (entries, err) = read_all(xml.as_bytes()).await;
    assert!(entries.is_empty());
    match err {
        Some(ListError::Malformed { line, detail }) => {
            assert_eq!(line, 3);
            assert!(detail.contains("RecordIdentificationNumbr"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn malformed_far_into_a_file_reports_the_right_line() {
    let written: Vec<_> = (0..200).map(generated).collect();
    let mut xml = String::from_utf8(write_list(&written)).unwrap();
    // Break the 150th entry's end tag.
    let mut at = 0;
    for _ in 0..150 {
        at += xml[at..]
            .find("</InformationOfSPIRegistrationDelete>")
            .unwrap()
            + 1;
    }
    let at = at - 1;
    xml.replace_range(at..at + 3, "</X");
    let expected_line = lines_before(xml.as_bytes(), at);
    assert!(expected_line > 1000);
    for capacity in [8192, 7, 1] {
        let (entries, err) = read_all_with(xml.as_bytes(), Limits::default(), capacity).await;
        assert_eq!(entries.len(), 149);
        match err {
            Some(ListError::Malformed { line, .. }) => assert_eq!(line, expected_line),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_syntax_is_malformed() {
    for (xml, line) in [
        (
            "<SPIRegistrationDeleteList>\n<InformationOfSPIRegistrationDelete>\n<!x>\n",
            3,
        ),
        (
            "<SPIRegistrationDeleteList>\n</InformationOfSPIRegistrationDelete>\n",
            2,
        ),
        (
            "<SPIRegistrationDeleteList>\n &bad \n<InformationOfSPIRegistrationDelete/>",
            2,
        ),
        (
            "<SPIRegistrationDeleteList/>\n<SPIRegistrationDeleteList/>",
            2,
        ),
    ] {
        let (_, err) = read_all(xml.as_bytes()).await;
        match err {
            Some(ListError::Malformed { line: l, .. }) => assert_eq!(l, line, "{xml}"),
            other => panic!("{xml}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_file_cut_anywhere_is_truncated() {
    let written: Vec<_> = (0..4).map(generated).collect();
    let xml = write_list(&written);
    let complete = xml.len() - 1; // up to and including the root end tag's `>`
    for cut in 0..complete {
        let part = &xml[..cut];
        for capacity in [4096, 3] {
            let (entries, err) = read_all_with(part, Limits::default(), capacity).await;
            match err {
                Some(ListError::Truncated { line }) => {
                    assert_eq!(line, lines_before(part, cut), "cut at {cut}");
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
            assert!(entries.len() <= written.len());
            for (entry, expected) in entries.iter().zip(&written) {
                expected.assert_read_as(entry);
            }
        }
    }
}

#[tokio::test]
async fn a_file_cut_in_the_middle_keeps_the_entries_before_the_cut() {
    let written: Vec<_> = (0..100).map(generated).collect();
    let xml = write_list(&written);
    let cut = xml.len() / 2;
    let (entries, err) = read_all(&xml[..cut]).await;
    assert!(matches!(err, Some(ListError::Truncated { .. })));
    assert!(
        entries.len() >= 45 && entries.len() < 55,
        "{}",
        entries.len()
    );
    assert_eq!(err.unwrap().code(), "truncated-file");
}

#[tokio::test]
async fn the_wrong_root_is_not_a_registration_list() {
    for xml in [
        "<?xml version=\"1.0\"?><Other><InformationOfSPIRegistrationDelete/></Other>",
        "<Other/>",
        "RecordIdentificationNumber,IntegratedAddressNumber\nR1,1\n",
    ] {
        let (_, err) = read_all(xml.as_bytes()).await;
        assert!(
            matches!(err, Some(ListError::NotARegistrationList)),
            "{xml}: {err:?}"
        );
    }
}

#[tokio::test]
async fn an_empty_file_is_truncated() {
    let (_, err) = read_all(b"").await;
    assert!(
        matches!(err, Some(ListError::Truncated { line: 1 })),
        "{err:?}"
    );
}

/// `head`, then `fill` forever (up to a safety cap), counting what was read.
struct Endless {
    head: Vec<u8>,
    fill: u8,
    sent: Arc<AtomicU64>,
}

const SAFETY_CAP: u64 = 64 * 1024 * 1024;

impl AsyncRead for Endless {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let sent = this.sent.load(Ordering::Relaxed);
        if sent >= SAFETY_CAP {
            return Poll::Ready(Ok(()));
        }
        let n = if (sent as usize) < this.head.len() {
            let rest = &this.head[sent as usize..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            n
        } else {
            let n = buf.remaining().min(4096);
            buf.put_slice(&vec![this.fill; n]);
            n
        };
        this.sent.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

async fn read_endless(head: String, fill: u8, limit: usize) -> (Vec<u64>, ListError, u64) {
    let sent = Arc::new(AtomicU64::new(0));
    let source = Endless {
        head: head.into_bytes(),
        fill,
        sent: sent.clone(),
    };
    let limits = Limits {
        max_entry_bytes: limit,
        ..Limits::default()
    };
    let mut reader = ListReader::new(tokio::io::BufReader::new(source), limits);
    let mut ordinals = Vec::new();
    loop {
        match reader.next_entry().await {
            Ok(Some(e)) => ordinals.push(e.ordinal),
            Ok(None) => panic!("an endless file cannot end"),
            Err(err) => return (ordinals, err, sent.load(Ordering::Relaxed)),
        }
    }
}

#[tokio::test]
async fn an_oversized_entry_stops_reading() {
    let limit = 64 * 1024;
    let head = list_of(&[&valid_body("R1")]).replace("</SPIRegistrationDeleteList>\n", "")
        + "<InformationOfSPIRegistrationDelete><DuplicateCopyData><![CDATA[";
    let (ordinals, err, sent) = read_endless(head, b'x', limit).await;
    assert_eq!(ordinals, [1]);
    match err {
        ListError::EntryTooLarge { ordinal, limit: l } => {
            assert_eq!((ordinal, l), (2, limit));
        }
        other => panic!("{other:?}"),
    }
    // Read no further than the limit and one buffer of the BufReader.
    assert!(sent < (2 * limit + 16 * 1024) as u64, "read {sent} bytes");
}

#[tokio::test]
async fn an_entry_just_within_the_limit_is_read() {
    let body = valid_body("R1");
    let xml = list_of(&[&body, &body]);
    let len = "<InformationOfSPIRegistrationDelete></InformationOfSPIRegistrationDelete>".len()
        + body.len();
    for (limit, ok) in [(len, true), (len - 1, false)] {
        let limits = Limits {
            max_entry_bytes: limit,
            ..Limits::default()
        };
        let (entries, err) = read_all_with(xml.as_bytes(), limits, 16).await;
        if ok {
            assert!(err.is_none(), "{err:?}");
            assert_eq!(entries[1].byte_len, len as u64);
        } else {
            assert!(matches!(
                err,
                Some(ListError::EntryTooLarge { ordinal: 1, .. })
            ));
        }
    }
}

#[tokio::test]
async fn oversized_text_between_entries_stops_reading() {
    let head = "<SPIRegistrationDeleteList>\n".to_owned();
    let (_, err, sent) = read_endless(head, b' ', 4096).await;
    assert!(
        matches!(err, ListError::Malformed { line: 2, .. }),
        "{err:?}"
    );
    assert!(sent < 64 * 1024, "read {sent} bytes");
}

#[test]
fn errors_have_stable_codes_and_japanese_messages() {
    let cases = [
        (
            ListError::Malformed {
                line: 3,
                detail: "x".into(),
            },
            "malformed-xml",
        ),
        (ListError::Truncated { line: 9 }, "truncated-file"),
        (ListError::NotARegistrationList, "not-a-registration-list"),
        (
            ListError::EntryTooLarge {
                ordinal: 2,
                limit: 10,
            },
            "entry-too-large",
        ),
        (ListError::Io(io::Error::other("disk")), "io"),
    ];
    for (err, code) in cases {
        assert_eq!(err.code(), code);
        assert!(!err.to_string().is_ascii(), "{err}");
    }
}
