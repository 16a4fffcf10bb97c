use chrono::NaiveDate;
use chukan_layout::{ItemValue, Payload};
use chukan_replica_list::{Entry, EntrySpec, Limits, ListError, ListReader, ListWriter, Operation};

/// Reads every entry, or the first fatal error together with the entries before it.
pub async fn read_all_with(
    xml: &[u8],
    limits: Limits,
    capacity: usize,
) -> (Vec<Entry>, Option<ListError>) {
    let mut reader = ListReader::new(tokio::io::BufReader::with_capacity(capacity, xml), limits);
    let mut entries = Vec::new();
    loop {
        match reader.next_entry().await {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => return (entries, None),
            Err(err) => {
                // A fatal error ends the file.
                assert!(reader.next_entry().await.unwrap().is_none());
                return (entries, Some(err));
            }
        }
    }
}

pub async fn read_all(xml: &[u8]) -> (Vec<Entry>, Option<ListError>) {
    read_all_with(xml, Limits::default(), 8192).await
}

pub async fn read_ok(xml: &[u8]) -> Vec<Entry> {
    let (entries, err) = read_all(xml).await;
    assert!(err.is_none(), "unexpected error: {err:?}");
    entries
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub fn item(code: &str, value: Option<&str>) -> ItemValue {
    ItemValue {
        code: code.to_owned(),
        value: value.map(str::to_owned),
        version: None,
        updated: None,
        null_reason: None,
    }
}

/// An entry to write, owning its data.
#[derive(Debug, Clone)]
pub struct Owned {
    pub operation: Operation,
    pub record_id: String,
    pub addressee: String,
    pub info_code: String,
    pub dataset: String,
    pub record_key: String,
    pub major_version: String,
    pub parent_record_key: Option<String>,
    pub public_start: Option<NaiveDate>,
    pub public_end: Option<NaiveDate>,
    pub payload: Payload,
}

impl Owned {
    pub fn spec(&self) -> EntrySpec<'_> {
        EntrySpec {
            operation: self.operation,
            record_id: &self.record_id,
            addressee: &self.addressee,
            info_code: &self.info_code,
            dataset: &self.dataset,
            record_key: &self.record_key,
            major_version: &self.major_version,
            parent_record_key: self.parent_record_key.as_deref(),
            public_start: self.public_start,
            public_end: self.public_end,
            payload: &self.payload,
        }
    }

    pub fn assert_read_as(&self, entry: &Entry) {
        assert!(entry.defects.is_empty(), "{:?}", entry.defects);
        assert_eq!(entry.operation, self.operation);
        assert_eq!(entry.record_id, self.record_id);
        assert_eq!(entry.addressee, self.addressee);
        assert_eq!(entry.info_code, self.info_code);
        assert_eq!(entry.dataset, self.dataset);
        assert_eq!(entry.record_key, self.record_key);
        assert_eq!(entry.major_version, self.major_version);
        assert_eq!(entry.parent_record_key, self.parent_record_key);
        assert_eq!(entry.public_start, self.public_start);
        assert_eq!(entry.public_end, self.public_end);
        assert_eq!(entry.payload, self.payload);
    }
}

/// A varied entry: deletes every 7th (runs of deletes too), parents, end dates, null items,
/// repeating group attributes, Japanese text and markup characters.
pub fn generated(i: u64) -> Owned {
    let delete = i % 7 == 3 || (40..45).contains(&i);
    let mut payload = Vec::new();
    if !delete || i.is_multiple_of(2) {
        payload.push(ItemValue {
            version: Some("0002".into()),
            updated: Some(date(2017, 3, 1 + (i % 28) as u32)),
            ..item("I0001", Some(&format!("{}", 2000 + i)))
        });
        payload.push(item("I0002", Some("2017-02-28")));
        payload.push(ItemValue {
            null_reason: Some("NotAcceptable".into()),
            ..item("I0003", None)
        });
        if i.is_multiple_of(3) {
            payload.push(item("I0004", Some("山田　太郎 <&> ]]> \"引用\" 'x'")));
        }
        if i.is_multiple_of(5) {
            payload.push(item("I0005", Some("line1\nline2\r\nline3\ttab")));
        }
    }
    Owned {
        operation: if delete {
            Operation::Delete
        } else {
            Operation::Register
        },
        record_id: format!("R20180701{i:08}"),
        addressee: format!("{:015}", 12345 + i),
        info_code: "TM00000000000031".into(),
        dataset: if i.is_multiple_of(2) { "0101" } else { "0102" }.into(),
        record_key: if i.is_multiple_of(4) {
            format!("K-<{i}>&\"鍵\"]]>")
        } else {
            format!("K-{i}-1")
        },
        major_version: "0002".into(),
        parent_record_key: (i % 2 == 1).then(|| format!("K-{}-0", i)),
        public_start: (i % 3 != 2).then(|| date(2018, 7, 2)),
        public_end: (i.is_multiple_of(6)).then(|| date(2019, 3, 31)),
        payload,
    }
}

pub fn write_list(entries: &[Owned]) -> Vec<u8> {
    let mut writer = ListWriter::new(Vec::new()).unwrap();
    for entry in entries {
        writer.write(&entry.spec()).unwrap();
    }
    writer.finish().unwrap()
}

/// A list of one raw entry body (the children of InformationOfSPIRegistrationDelete).
pub fn list_of(bodies: &[&str]) -> String {
    let mut s =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SPIRegistrationDeleteList>\n");
    for body in bodies {
        s.push_str("<InformationOfSPIRegistrationDelete>");
        s.push_str(body);
        s.push_str("</InformationOfSPIRegistrationDelete>\n");
    }
    s.push_str("</SPIRegistrationDeleteList>\n");
    s
}

/// The header children of a valid entry, with a payload.
pub fn valid_body(record_id: &str) -> String {
    format!(
        "<RecordIdentificationNumber>{record_id}</RecordIdentificationNumber>\
         <IntegratedAddressNumber>000000000012345</IntegratedAddressNumber>\
         <SpecificPersonalInformationCode>TM00000000000031</SpecificPersonalInformationCode>\
         <DataSetIdentificationItemCode>0101</DataSetIdentificationItemCode>\
         <DataSetRecordKey>K-1</DataSetRecordKey>\
         <SPIMajorVersion>0002</SPIMajorVersion>\
         <ParentDataSetRecordKey/>\
         <PublicationDate>2018-07-02</PublicationDate>\
         <PublishedEndDate/>\
         <DuplicateCopyData><![CDATA[<I0001>1</I0001>]]></DuplicateCopyData>"
    )
}
