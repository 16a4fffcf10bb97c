use crate::helpers::{date, item, read_all, read_all_with, read_ok};
use chukan_layout::ItemValue;
use chukan_replica_list::{Limits, ListError, Operation};

/// The sample of the DOMAIN appendix, verbatim.
const APPENDIX: &str = r#"<SPIRegistrationDeleteList>
  <SegmentOfRegistrationDelete>1</SegmentOfRegistrationDelete>   <!-- 1 register, 2 delete (our coding) -->
  <InformationOfSPIRegistrationDelete>
    <RecordIdentificationNumber>R2018070100000001</RecordIdentificationNumber> <!-- unique -->
    <IntegratedAddressNumber>000000000012345</IntegratedAddressNumber>
    <SpecificPersonalInformationCode>TM00000000000031</SpecificPersonalInformationCode>
    <DataSetIdentificationItemCode>0101</DataSetIdentificationItemCode>
    <DataSetRecordKey>K-12345-1</DataSetRecordKey>       <!-- same key again = overwrite -->
    <SPIMajorVersion>0002</SPIMajorVersion>
    <ParentDataSetRecordKey/>
    <PublicationDate>2018-07-02</PublicationDate>        <!-- 公開開始日 -->
    <PublishedEndDate/>                                  <!-- 公開終了日 -->
    <DuplicateCopyData><![CDATA[
      <I0001 Version="0002" TimeAndDateOfUpdate="2017-03-01">2222</I0001>
      <I0002>2017-02-28</I0002>
      <I0003 ReasonOfNull="NotAcceptable" xsi:nil="true"/>
    ]]></DuplicateCopyData>
  </InformationOfSPIRegistrationDelete>
</SPIRegistrationDeleteList>
"#;

fn appendix_payload() -> Vec<ItemValue> {
    vec![
        ItemValue {
            version: Some("0002".into()),
            updated: Some(date(2017, 3, 1)),
            ..item("I0001", Some("2222"))
        },
        item("I0002", Some("2017-02-28")),
        ItemValue {
            null_reason: Some("NotAcceptable".into()),
            ..item("I0003", None)
        },
    ]
}

#[tokio::test]
async fn the_appendix_sample_parses_exactly() {
    let entries = read_ok(APPENDIX.as_bytes()).await;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert!(e.defects.is_empty(), "{:?}", e.defects);
    assert_eq!(e.ordinal, 1);
    assert_eq!(e.operation, Operation::Register);
    assert_eq!(e.record_id, "R2018070100000001");
    assert_eq!(e.addressee, "000000000012345");
    assert_eq!(e.info_code, "TM00000000000031");
    assert_eq!(e.dataset, "0101");
    assert_eq!(e.record_key, "K-12345-1");
    assert_eq!(e.major_version, "0002");
    assert_eq!(e.parent_record_key, None);
    assert_eq!(e.public_start, Some(date(2018, 7, 2)));
    assert_eq!(e.public_end, None);
    assert_eq!(e.payload, appendix_payload());

    let start = APPENDIX
        .find("<InformationOfSPIRegistrationDelete>")
        .unwrap();
    let end_tag = "</InformationOfSPIRegistrationDelete>";
    let end = APPENDIX.find(end_tag).unwrap() + end_tag.len();
    assert_eq!(e.byte_len, (end - start) as u64);
}

#[tokio::test]
async fn namespaced_list_with_declaration_and_prefixes() {
    let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<!-- exported by a business system -->
<rl:SPIRegistrationDeleteList xmlns:rl="urn:example:replica" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <rl:Header><rl:Count>2</rl:Count></rl:Header>
  <rl:SegmentOfRegistrationDelete> 2 </rl:SegmentOfRegistrationDelete>
  <rl:InformationOfSPIRegistrationDelete  id="a" >
    <rl:RecordIdentificationNumber> R1 </rl:RecordIdentificationNumber>
    <rl:IntegratedAddressNumber>1</rl:IntegratedAddressNumber>
    <rl:SpecificPersonalInformationCode>TM00000000000031</rl:SpecificPersonalInformationCode>
    <rl:DataSetIdentificationItemCode>0101</rl:DataSetIdentificationItemCode>
    <rl:DataSetRecordKey>K&amp;1</rl:DataSetRecordKey>
    <rl:SPIMajorVersion>0002</rl:SPIMajorVersion>
    <rl:ParentDataSetRecordKey></rl:ParentDataSetRecordKey>
    <rl:PublicationDate>20180702</rl:PublicationDate>
    <rl:PublishedEndDate>2019-03-31</rl:PublishedEndDate>
    <rl:DuplicateCopyData/>
  </rl:InformationOfSPIRegistrationDelete>
  <rl:InformationOfSPIRegistrationDelete/>
</rl:SPIRegistrationDeleteList>"#;
    let entries = read_ok(xml.as_bytes()).await;
    assert_eq!(entries.len(), 2);
    let e = &entries[0];
    assert!(e.defects.is_empty(), "{:?}", e.defects);
    assert_eq!(e.operation, Operation::Delete);
    assert_eq!(e.record_id, "R1");
    assert_eq!(e.record_key, "K&1");
    assert_eq!(e.parent_record_key, None);
    assert_eq!(e.public_start, Some(date(2018, 7, 2)));
    assert_eq!(e.public_end, Some(date(2019, 3, 31)));
    assert!(e.payload.is_empty());
    let start = xml
        .find("<rl:InformationOfSPIRegistrationDelete  id")
        .unwrap();
    let end_tag = "</rl:InformationOfSPIRegistrationDelete>";
    let end = xml.find(end_tag).unwrap() + end_tag.len();
    assert_eq!(e.byte_len, (end - start) as u64);

    // An empty entry element is an entry with everything missing.
    let empty = &entries[1];
    assert_eq!(empty.ordinal, 2);
    assert_eq!(
        empty.byte_len,
        "<rl:InformationOfSPIRegistrationDelete/>".len() as u64
    );
    assert!(empty.defects.iter().all(|d| d.code == "missing-element"));
    assert_eq!(empty.defects.len(), 6);
}

#[tokio::test]
async fn payload_as_escaped_text_or_as_plain_elements() {
    let escaped = "<DuplicateCopyData>\n &lt;I0001 Version=\"0002\" TimeAndDateOfUpdate=\"2017-03-01T09:00:00\"&gt;2222&lt;/I0001&gt;\
        &lt;I0002&gt;2017-02-28&lt;/I0002&gt;&lt;I0003 ReasonOfNull=\"NotAcceptable\" xsi:nil=\"true\"/&gt;\n</DuplicateCopyData>";
    let plain = "<DuplicateCopyData>\n <I0001 Version=\"0002\" TimeAndDateOfUpdate=\"2017-03-01\">2222</I0001>\
        <I0002><![CDATA[2017-02-28]]></I0002><I0003 ReasonOfNull=\"NotAcceptable\" xsi:nil=\"true\"/>\n</DuplicateCopyData>";
    for payload in [escaped, plain] {
        let body = crate::helpers::valid_body("R1").replace(
            "<DuplicateCopyData><![CDATA[<I0001>1</I0001>]]></DuplicateCopyData>",
            payload,
        );
        let entries = read_ok(crate::helpers::list_of(&[&body]).as_bytes()).await;
        assert!(entries[0].defects.is_empty(), "{:?}", entries[0].defects);
        assert_eq!(entries[0].payload, appendix_payload());
    }

    // Text in a plain element keeps its escapes until the fragment is parsed.
    let body = crate::helpers::valid_body("R1").replace(
        "<DuplicateCopyData><![CDATA[<I0001>1</I0001>]]></DuplicateCopyData>",
        "<DuplicateCopyData><I0001>a &amp;lt; &lt;b&gt;</I0001></DuplicateCopyData>",
    );
    let entries = read_ok(crate::helpers::list_of(&[&body]).as_bytes()).await;
    assert_eq!(entries[0].payload, vec![item("I0001", Some("a &lt; <b>"))]);
}

#[tokio::test]
async fn segments_apply_until_the_next_one_and_inside_an_entry_only_to_it() {
    let body = crate::helpers::valid_body;
    let xml = format!(
        "<SPIRegistrationDeleteList>\
         <InformationOfSPIRegistrationDelete>{}</InformationOfSPIRegistrationDelete>\
         <SegmentOfRegistrationDelete>2</SegmentOfRegistrationDelete>\
         <InformationOfSPIRegistrationDelete>{}</InformationOfSPIRegistrationDelete>\
         <InformationOfSPIRegistrationDelete><SegmentOfRegistrationDelete>1</SegmentOfRegistrationDelete>{}</InformationOfSPIRegistrationDelete>\
         <InformationOfSPIRegistrationDelete>{}</InformationOfSPIRegistrationDelete>\
         <SegmentOfRegistrationDelete>3</SegmentOfRegistrationDelete>\
         <InformationOfSPIRegistrationDelete>{}</InformationOfSPIRegistrationDelete>\
         <InformationOfSPIRegistrationDelete>{}<SegmentOfRegistrationDelete>2</SegmentOfRegistrationDelete></InformationOfSPIRegistrationDelete>\
         </SPIRegistrationDeleteList>",
        body("R1"),
        body("R2"),
        body("R3"),
        body("R4"),
        body("R5"),
        body("R6"),
    );
    let entries = read_ok(xml.as_bytes()).await;
    let ops: Vec<_> = entries.iter().map(|e| e.operation).collect();
    use Operation::{Delete, Register};
    assert_eq!(ops, [Register, Delete, Register, Delete, Register, Delete]);
    assert!(entries[..4].iter().all(|e| e.defects.is_empty()));
    assert_eq!(entries[4].defects[0].code, "invalid-segment");
    assert!(entries[5].defects.is_empty());
}

#[tokio::test]
async fn an_empty_list_has_no_entries() {
    assert!(read_ok(b"<SPIRegistrationDeleteList/>").await.is_empty());
    let with_bom = b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<SPIRegistrationDeleteList>\n</SPIRegistrationDeleteList>\n<!-- end -->\n";
    for capacity in [8192, 2, 1] {
        let (entries, err) = read_all_with(with_bom, Limits::default(), capacity).await;
        assert!(err.is_none(), "{capacity}: {err:?}");
        assert!(entries.is_empty());
    }
}

#[tokio::test]
async fn other_encodings_are_refused() {
    let (_, err) =
        read_all(b"<?xml version=\"1.0\" encoding=\"Shift_JIS\"?>\n<SPIRegistrationDeleteList/>")
            .await;
    assert!(
        matches!(err, Some(ListError::Malformed { line: 1, .. })),
        "{err:?}"
    );
}
