//! Streaming writer of the list, for tests, the REST API (which stores its batches in this
//! same format) and load generators.

use crate::{
    date::push_date,
    entry::{EntrySpec, Operation, element},
    escape::{push_cdata, push_text},
    payload::{is_item_name, push_payload},
};
use std::io::{self, Write};

/// Writes a replica registration list (副本登録リスト) one entry at a time.
pub struct ListWriter<W: Write> {
    out: W,
    /// Operation of the last `SegmentOfRegistrationDelete` written.
    segment: Option<Operation>,
    /// One entry's XML, reused.
    scratch: String,
    /// One entry's payload fragment, reused.
    fragment: String,
}

impl<W: Write> ListWriter<W> {
    /// Writes the XML declaration and the root start tag.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SPIRegistrationDeleteList>\n",
        )?;
        Ok(ListWriter {
            out,
            segment: None,
            scratch: String::with_capacity(2048),
            fragment: String::with_capacity(1024),
        })
    }

    /// Writes one entry, preceded by a `SegmentOfRegistrationDelete` when the operation
    /// differs from the previous entry's. Fails with `InvalidInput` if an item code cannot be
    /// an element name.
    pub fn write(&mut self, entry: &EntrySpec<'_>) -> io::Result<()> {
        if let Some(bad) = entry.payload.iter().find(|item| !is_item_name(&item.code)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("項目コード {:?} は要素名にできません", bad.code),
            ));
        }
        let s = &mut self.scratch;
        s.clear();
        if self.segment != Some(entry.operation) {
            s.push_str("  <SegmentOfRegistrationDelete>");
            s.push_str(entry.operation.segment_code());
            s.push_str("</SegmentOfRegistrationDelete>\n");
        }
        s.push_str("  <InformationOfSPIRegistrationDelete>\n");
        text_element(s, element::RECORD_ID, entry.record_id);
        text_element(s, element::ADDRESSEE, entry.addressee);
        text_element(s, element::INFO_CODE, entry.info_code);
        text_element(s, element::DATASET, entry.dataset);
        text_element(s, element::RECORD_KEY, entry.record_key);
        text_element(s, element::MAJOR_VERSION, entry.major_version);
        text_element(
            s,
            element::PARENT_KEY,
            entry.parent_record_key.unwrap_or(""),
        );
        date_element(s, element::PUBLIC_START, entry.public_start);
        date_element(s, element::PUBLIC_END, entry.public_end);
        if entry.payload.is_empty() {
            s.push_str("    <DuplicateCopyData/>\n");
        } else {
            self.fragment.clear();
            push_payload(&mut self.fragment, entry.payload);
            s.push_str("    <DuplicateCopyData>");
            push_cdata(s, &self.fragment);
            s.push_str("</DuplicateCopyData>\n");
        }
        s.push_str("  </InformationOfSPIRegistrationDelete>\n");
        self.out.write_all(s.as_bytes())?;
        self.segment = Some(entry.operation);
        Ok(())
    }

    /// Writes the root end tag, flushes, and hands back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(b"</SPIRegistrationDeleteList>\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn text_element(s: &mut String, name: &str, value: &str) {
    s.push_str("    <");
    s.push_str(name);
    if value.is_empty() {
        s.push_str("/>\n");
        return;
    }
    s.push('>');
    push_text(s, value);
    s.push_str("</");
    s.push_str(name);
    s.push_str(">\n");
}

fn date_element(s: &mut String, name: &str, value: Option<chrono::NaiveDate>) {
    s.push_str("    <");
    s.push_str(name);
    match value {
        Some(date) => {
            s.push('>');
            push_date(s, date);
            s.push_str("</");
            s.push_str(name);
            s.push_str(">\n");
        }
        None => s.push_str("/>\n"),
    }
}
