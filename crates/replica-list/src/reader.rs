//! Streaming reader of the list: one entry in memory at a time, whatever the file size.

use crate::{
    date::parse_date,
    entry::{Defect, Entry, Operation, element},
    error::ListError,
    escape::{is_blank, trim_xml},
    payload::{describe, parse_payload, resolve_reference, short},
    source::TrackedSource,
};
use chrono::NaiveDate;
use chukan_layout::Payload;
use quick_xml::{
    Reader,
    errors::IllFormedError,
    events::{BytesStart, Event},
};
use std::sync::Arc;
use tokio::io::AsyncBufRead;

/// Bounds on what one entry may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest entry element in bytes (start tag to end tag); a larger one ends the file with
    /// [`ListError::EntryTooLarge`]. Also bounds any single piece of markup between entries.
    pub max_entry_bytes: usize,
    /// Longest header field (record id, addressee, codes, keys) in characters; a longer one
    /// is a defect of its entry.
    pub max_field_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_bytes: 1024 * 1024,
            max_field_chars: 64,
        }
    }
}

/// Reads a replica registration list (副本登録リスト) entry by entry.
pub struct ListReader<R> {
    xml: Reader<TrackedSource<R>>,
    /// Event buffer, reused: holds one event at a time.
    buf: Vec<u8>,
    list: ListState,
}

impl<R: AsyncBufRead + Unpin> ListReader<R> {
    /// A reader over `reader`; nothing is read until [`next_entry`](Self::next_entry).
    pub fn new(reader: R, limits: Limits) -> Self {
        let mut xml = Reader::from_reader(TrackedSource::new(reader));
        let config = xml.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        ListReader {
            xml,
            buf: Vec::with_capacity(4096),
            list: ListState {
                limits,
                place: Place::Prolog,
                segment: SegmentInForce::Valid(Operation::Register),
                segment_text: String::new(),
                ordinal: 0,
                entry: EntryBuilder::default(),
            },
        }
    }

    /// The next entry, `Ok(None)` at a proper end of document. Fatal errors end the file:
    /// after one, this returns `Ok(None)`.
    pub async fn next_entry(&mut self) -> Result<Option<Entry>, ListError> {
        loop {
            if matches!(self.list.place, Place::Done) {
                return Ok(None);
            }
            let before = self.xml.buffer_position();
            let limit = self.list.read_limit(before);
            let source = self.xml.get_mut();
            source.set_limit(limit);
            source.forget_before(before);
            self.buf.clear();

            let read = self.xml.read_event_into_async(&mut self.buf).await;
            let after = self.xml.buffer_position();
            let step = match read {
                Ok(event) => self.list.on_event(event, before, after, self.xml.get_ref()),
                Err(err) => self.list.on_error(err, &self.xml),
            };
            match step {
                Ok(Step::Continue) => {}
                Ok(Step::Entry(entry)) => return Ok(Some(entry)),
                Ok(Step::End) => {
                    self.list.place = Place::Done;
                    return Ok(None);
                }
                Err(err) => {
                    self.list.place = Place::Done;
                    return Err(err);
                }
            }
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn position(&self) -> u64 {
        self.xml.buffer_position()
    }
}

/// Where in the document the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Before the root element.
    Prolog,
    /// Directly inside the root element.
    Root,
    /// Inside a root-level `SegmentOfRegistrationDelete`.
    RootSegment,
    /// Inside an element of the root that we do not know, this deep.
    RootSkip(u32),
    /// Inside an entry.
    Entry,
    /// After the root element.
    Epilog,
    /// Finished, properly or not.
    Done,
}

/// The root-level 登録削除区分 that applies to the entries that follow it.
#[derive(Debug, Clone, Copy)]
enum SegmentInForce {
    Valid(Operation),
    /// The last segment had a value other than 1 or 2: its entries cannot be applied.
    Invalid,
}

#[expect(
    clippy::large_enum_variant,
    reason = "the entry is moved out at once; boxing it would cost an allocation per entry"
)]
enum Step {
    Continue,
    Entry(Entry),
    End,
}

struct ListState {
    limits: Limits,
    place: Place,
    segment: SegmentInForce,
    segment_text: String,
    /// Entries started so far.
    ordinal: u64,
    entry: EntryBuilder,
}

fn local<'a>(start: &'a BytesStart<'_>) -> &'a [u8] {
    start.local_name().into_inner()
}

fn truncated<R>(source: &TrackedSource<R>, pos: u64) -> ListError {
    ListError::Truncated {
        line: source.line_at(pos),
    }
}

impl ListState {
    /// How far the XML reader may read for its next event.
    fn read_limit(&self, before: u64) -> u64 {
        let max = self.limits.max_entry_bytes as u64;
        match self.place {
            Place::Entry => self.entry.start.saturating_add(max),
            _ => before.saturating_add(max),
        }
    }

    fn on_event<R>(
        &mut self,
        event: Event<'_>,
        before: u64,
        after: u64,
        source: &TrackedSource<R>,
    ) -> Result<Step, ListError> {
        match self.place {
            Place::Prolog => self.in_prolog(event, before, after, source),
            Place::Root => self.in_root(event, before, after, source),
            Place::RootSegment => {
                match event {
                    Event::Text(t) => match t.xml10_content() {
                        Ok(s) => self.segment_text.push_str(&s),
                        Err(_) => self.segment_text.push('\u{fffd}'),
                    },
                    Event::CData(c) => match c.xml10_content() {
                        Ok(s) => self.segment_text.push_str(&s),
                        Err(_) => self.segment_text.push('\u{fffd}'),
                    },
                    Event::GeneralRef(r) => self
                        .segment_text
                        .push(resolve_reference(&r).unwrap_or('\u{fffd}')),
                    Event::Start(_) => {
                        self.segment = SegmentInForce::Invalid;
                        self.place = Place::RootSkip(1);
                    }
                    Event::Empty(_) => self.segment_text.push('\u{fffd}'),
                    Event::End(_) => {
                        self.segment =
                            match Operation::from_segment_code(trim_xml(&self.segment_text)) {
                                Some(op) => SegmentInForce::Valid(op),
                                None => SegmentInForce::Invalid,
                            };
                        self.place = Place::Root;
                    }
                    Event::Eof => return Err(truncated(source, after)),
                    _ => {}
                }
                Ok(Step::Continue)
            }
            Place::RootSkip(depth) => {
                match event {
                    Event::Start(_) => self.place = Place::RootSkip(depth + 1),
                    Event::End(_) if depth == 0 => self.place = Place::Root,
                    Event::End(_) => self.place = Place::RootSkip(depth - 1),
                    Event::Eof => return Err(truncated(source, after)),
                    _ => {}
                }
                Ok(Step::Continue)
            }
            Place::Entry => {
                if let Event::Eof = event {
                    return Err(truncated(source, after));
                }
                if self.entry.on_event(event, &self.limits) {
                    self.place = Place::Root;
                    return Ok(Step::Entry(self.finish_entry(after)));
                }
                Ok(Step::Continue)
            }
            Place::Epilog => match event {
                Event::Eof => Ok(Step::End),
                Event::Text(t) if is_blank(&t) => Ok(Step::Continue),
                Event::Start(_)
                | Event::Empty(_)
                | Event::End(_)
                | Event::Text(_)
                | Event::CData(_)
                | Event::GeneralRef(_) => Err(ListError::Malformed {
                    line: source.line_at(before),
                    detail: "ルート要素 </SPIRegistrationDeleteList> の後に内容があります"
                        .to_owned(),
                }),
                _ => Ok(Step::Continue),
            },
            Place::Done => Ok(Step::End),
        }
    }

    fn in_prolog<R>(
        &mut self,
        event: Event<'_>,
        before: u64,
        after: u64,
        source: &TrackedSource<R>,
    ) -> Result<Step, ListError> {
        match event {
            Event::Decl(decl) => {
                if let Some(Ok(encoding)) = decl.encoding() {
                    let utf8 = encoding.eq_ignore_ascii_case(b"utf-8")
                        || encoding.eq_ignore_ascii_case(b"utf8");
                    if !utf8 {
                        return Err(ListError::Malformed {
                            line: source.line_at(before),
                            detail: "文字コードは UTF-8 のみ受け付けます (XML 宣言の encoding を確認してください)"
                                .to_owned(),
                        });
                    }
                }
            }
            Event::Start(e) if local(&e) == element::ROOT.as_bytes() => self.place = Place::Root,
            Event::Empty(e) if local(&e) == element::ROOT.as_bytes() => {
                self.place = Place::Epilog;
            }
            Event::Start(_) | Event::Empty(_) | Event::CData(_) | Event::GeneralRef(_) => {
                return Err(ListError::NotARegistrationList);
            }
            // quick-xml drops a byte-order mark only when its first read holds all of it.
            Event::Text(t) if !is_blank(t.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&t)) => {
                return Err(ListError::NotARegistrationList);
            }
            Event::Eof => return Err(truncated(source, after)),
            _ => {}
        }
        Ok(Step::Continue)
    }

    fn in_root<R>(
        &mut self,
        event: Event<'_>,
        before: u64,
        after: u64,
        source: &TrackedSource<R>,
    ) -> Result<Step, ListError> {
        match event {
            Event::Start(e) => match local(&e) {
                name if name == element::SEGMENT.as_bytes() => {
                    self.segment_text.clear();
                    self.place = Place::RootSegment;
                }
                name if name == element::ENTRY.as_bytes() => {
                    self.ordinal += 1;
                    self.entry.begin(before);
                    self.place = Place::Entry;
                }
                // Elements of other schemas (headers, counts) carry nothing for us.
                _ => self.place = Place::RootSkip(0),
            },
            Event::Empty(e) => match local(&e) {
                name if name == element::SEGMENT.as_bytes() => {
                    self.segment = SegmentInForce::Invalid;
                }
                name if name == element::ENTRY.as_bytes() => {
                    self.ordinal += 1;
                    self.entry.begin(before);
                    return Ok(Step::Entry(self.finish_entry(after)));
                }
                _ => {}
            },
            Event::End(_) => self.place = Place::Epilog,
            Event::Eof => return Err(truncated(source, after)),
            // Whitespace, comments, and stray text between entries are harmless.
            _ => {}
        }
        Ok(Step::Continue)
    }

    fn on_error<R>(
        &mut self,
        err: quick_xml::Error,
        xml: &Reader<TrackedSource<R>>,
    ) -> Result<Step, ListError> {
        let source = xml.get_ref();
        if source.limit_hit() {
            return Err(match self.place {
                Place::Entry => ListError::EntryTooLarge {
                    ordinal: self.ordinal,
                    limit: self.limits.max_entry_bytes,
                },
                _ => ListError::Malformed {
                    line: source.line_at(xml.buffer_position()),
                    detail: format!(
                        "エントリの外の要素または文字列が上限の {} バイトを超えています",
                        self.limits.max_entry_bytes
                    ),
                },
            });
        }
        match err {
            quick_xml::Error::Io(io) => {
                Err(ListError::Io(Arc::try_unwrap(io).unwrap_or_else(|io| {
                    std::io::Error::new(io.kind(), io.to_string())
                })))
            }
            quick_xml::Error::Syntax(_) if source.at_eof() => {
                Err(truncated(source, xml.buffer_position()))
            }
            // A lone `&` spoils one value, not the document structure: the reader resumes
            // after it, and the entry is refused.
            quick_xml::Error::IllFormed(IllFormedError::UnclosedReference)
                if self.place == Place::Entry =>
            {
                self.entry.bad_reference();
                Ok(Step::Continue)
            }
            other => Err(ListError::Malformed {
                line: source.line_at(xml.error_position()),
                detail: describe(&other),
            }),
        }
    }

    fn finish_entry(&mut self, after: u64) -> Entry {
        let b = &mut self.entry;
        let mut defects = std::mem::take(&mut b.defects);
        let operation = match (b.operation, self.segment) {
            (Some(op), _) => op,
            (None, SegmentInForce::Valid(op)) => op,
            (None, SegmentInForce::Invalid) => {
                defects.push(Defect::new(
                    "invalid-segment",
                    element::SEGMENT,
                    "このエントリに適用される SegmentOfRegistrationDelete が 1 (登録) または 2 (削除) ではありません",
                ));
                Operation::Register
            }
        };
        let mut required = |slot: &mut Option<String>, name: &'static str| -> String {
            match slot.take() {
                Some(value) if !value.is_empty() => value,
                Some(_) => {
                    defects.push(Defect::new(
                        "missing-element",
                        name,
                        format!("必須要素 {name} が空です"),
                    ));
                    String::new()
                }
                None => {
                    defects.push(Defect::new(
                        "missing-element",
                        name,
                        format!("必須要素 {name} がありません"),
                    ));
                    String::new()
                }
            }
        };
        let mut record_id = required(&mut b.record_id, element::RECORD_ID);
        let mut addressee = required(&mut b.addressee, element::ADDRESSEE);
        let mut info_code = required(&mut b.info_code, element::INFO_CODE);
        let mut dataset = required(&mut b.dataset, element::DATASET);
        let mut record_key = required(&mut b.record_key, element::RECORD_KEY);
        let mut major_version = required(&mut b.major_version, element::MAJOR_VERSION);
        let mut payload = b.payload.take().unwrap_or_default();
        let mut parent_record_key = b.parent_record_key.take().filter(|k| !k.is_empty());
        // A character XML forbids (NUL above all) refuses the entry, naming the first field
        // that holds one; it is replaced so that nothing of it is stored with the report.
        let mut forbidden: Vec<&'static str> = Vec::new();
        for (name, text) in [
            (element::RECORD_ID, &mut record_id),
            (element::ADDRESSEE, &mut addressee),
            (element::INFO_CODE, &mut info_code),
            (element::DATASET, &mut dataset),
            (element::RECORD_KEY, &mut record_key),
            (element::MAJOR_VERSION, &mut major_version),
        ] {
            if crate::entry::scrub(text) {
                forbidden.push(name);
            }
        }
        if parent_record_key.as_mut().is_some_and(crate::entry::scrub) {
            forbidden.push(element::PARENT_KEY);
        }
        let mut payload_forbidden = false;
        for item in &mut payload {
            for text in [&mut item.value, &mut item.version, &mut item.null_reason]
                .into_iter()
                .flatten()
            {
                payload_forbidden |= crate::entry::scrub(text);
            }
        }
        if payload_forbidden {
            forbidden.push(element::PAYLOAD);
        }
        for (i, field) in forbidden.into_iter().enumerate() {
            defects.insert(
                i,
                Defect::new(
                    "invalid-character",
                    field,
                    format!("{field} に使用できない文字（NUL などの制御文字）が含まれています"),
                ),
            );
        }
        if operation == Operation::Register
            && payload.is_empty()
            && !defects.iter().any(|d| d.field == element::PAYLOAD)
        {
            defects.push(Defect::new(
                "missing-element",
                element::PAYLOAD,
                "登録には DuplicateCopyData (副本データ) が必要です",
            ));
        }
        Entry {
            ordinal: self.ordinal,
            byte_len: after.saturating_sub(b.start),
            operation,
            record_id,
            addressee,
            info_code,
            dataset,
            record_key,
            major_version,
            parent_record_key,
            public_start: b.public_start.take(),
            public_end: b.public_end.take(),
            payload,
            defects,
        }
    }
}

/// The child elements of an entry that we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    RecordId,
    Addressee,
    InfoCode,
    Dataset,
    RecordKey,
    MajorVersion,
    ParentKey,
    PublicStart,
    PublicEnd,
    Segment,
    Payload,
}

impl Field {
    fn from_name(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"RecordIdentificationNumber" => Field::RecordId,
            b"IntegratedAddressNumber" => Field::Addressee,
            b"SpecificPersonalInformationCode" => Field::InfoCode,
            b"DataSetIdentificationItemCode" => Field::Dataset,
            b"DataSetRecordKey" => Field::RecordKey,
            b"SPIMajorVersion" => Field::MajorVersion,
            b"ParentDataSetRecordKey" => Field::ParentKey,
            b"PublicationDate" => Field::PublicStart,
            b"PublishedEndDate" => Field::PublicEnd,
            b"SegmentOfRegistrationDelete" => Field::Segment,
            b"DuplicateCopyData" => Field::Payload,
            _ => return None,
        })
    }

    fn element(self) -> &'static str {
        match self {
            Field::RecordId => element::RECORD_ID,
            Field::Addressee => element::ADDRESSEE,
            Field::InfoCode => element::INFO_CODE,
            Field::Dataset => element::DATASET,
            Field::RecordKey => element::RECORD_KEY,
            Field::MajorVersion => element::MAJOR_VERSION,
            Field::ParentKey => element::PARENT_KEY,
            Field::PublicStart => element::PUBLIC_START,
            Field::PublicEnd => element::PUBLIC_END,
            Field::Segment => element::SEGMENT,
            Field::Payload => element::PAYLOAD,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Where inside an entry the reader is.
#[derive(Debug, Clone, Copy, Default)]
enum InEntry {
    /// Directly inside the entry element.
    #[default]
    Top,
    /// Inside a known child, `depth` levels into elements that should not be there (for
    /// `DuplicateCopyData`: into the replica's own elements written without CDATA).
    Field { field: Field, depth: u32 },
    /// Inside an unknown child, this deep.
    Skip(u32),
}

/// The entry being read; its buffers are reused from one entry to the next.
#[derive(Default)]
struct EntryBuilder {
    /// Absolute byte position of the entry's start tag.
    start: u64,
    at: InEntry,
    /// Text of the current header field.
    text: String,
    /// The `DuplicateCopyData` fragment as XML text.
    payload_text: String,
    /// Fields seen, one bit per [`Field`].
    seen: u16,
    record_id: Option<String>,
    addressee: Option<String>,
    info_code: Option<String>,
    dataset: Option<String>,
    record_key: Option<String>,
    major_version: Option<String>,
    parent_record_key: Option<String>,
    public_start: Option<NaiveDate>,
    public_end: Option<NaiveDate>,
    operation: Option<Operation>,
    payload: Option<Payload>,
    defects: Vec<Defect>,
}

impl EntryBuilder {
    fn begin(&mut self, start: u64) {
        self.start = start;
        self.at = InEntry::Top;
        self.seen = 0;
        self.record_id = None;
        self.addressee = None;
        self.info_code = None;
        self.dataset = None;
        self.record_key = None;
        self.major_version = None;
        self.parent_record_key = None;
        self.public_start = None;
        self.public_end = None;
        self.operation = None;
        self.payload = None;
        self.defects.clear();
    }

    fn defect_once(&mut self, code: &'static str, field: &'static str, detail: impl Into<String>) {
        if !self
            .defects
            .iter()
            .any(|d| d.code == code && d.field == field)
        {
            self.defects.push(Defect::new(code, field, detail));
        }
    }

    fn current_element(&self) -> &'static str {
        match self.at {
            InEntry::Field { field, .. } => field.element(),
            _ => element::ENTRY,
        }
    }

    fn bad_reference(&mut self) {
        let field = self.current_element();
        self.defect_once(
            "invalid-reference",
            field,
            format!("{field} に `;` で終わらない `&` があります (`&` は `&amp;` と書きます)"),
        );
    }

    fn not_utf8(&mut self, field: &'static str) {
        self.defect_once(
            "invalid-encoding",
            field,
            format!("{field} が UTF-8 ではありません"),
        );
    }

    /// Takes one event inside the entry; `true` when the entry's end tag was read.
    fn on_event(&mut self, event: Event<'_>, limits: &Limits) -> bool {
        match self.at {
            InEntry::Top => match event {
                Event::Start(e) => match Field::from_name(local(&e)) {
                    Some(field) => {
                        self.open_field(field);
                        self.at = InEntry::Field { field, depth: 0 };
                    }
                    None => {
                        self.unknown_child(&e);
                        self.at = InEntry::Skip(0);
                    }
                },
                Event::Empty(e) => match Field::from_name(local(&e)) {
                    Some(field) => {
                        self.open_field(field);
                        self.close_field(field, limits);
                    }
                    None => self.unknown_child(&e),
                },
                Event::End(_) => return true,
                Event::Text(t) if is_blank(&t) => {}
                Event::CData(c) if c.is_empty() => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => self.defect_once(
                    "unexpected-text",
                    element::ENTRY,
                    "InformationOfSPIRegistrationDelete の直下に文字列があります",
                ),
                _ => {}
            },
            InEntry::Field {
                field: Field::Payload,
                depth,
            } => self.payload_event(event, depth, limits),
            InEntry::Field { field, depth } => match event {
                Event::Text(t) if depth == 0 => match t.xml10_content() {
                    Ok(s) => self.text.push_str(&s),
                    Err(_) => self.not_utf8(field.element()),
                },
                Event::CData(c) if depth == 0 => match c.xml10_content() {
                    Ok(s) => self.text.push_str(&s),
                    Err(_) => self.not_utf8(field.element()),
                },
                Event::GeneralRef(r) if depth == 0 => match resolve_reference(&r) {
                    Some(c) => self.text.push(c),
                    None => self.defect_once(
                        "invalid-reference",
                        field.element(),
                        format!("{} に定義されていない参照があります", field.element()),
                    ),
                },
                Event::Start(_) | Event::Empty(_) => {
                    self.defect_once(
                        "unexpected-child",
                        field.element(),
                        format!("{} の中に子要素があります", field.element()),
                    );
                    if let Event::Start(_) = event {
                        self.at = InEntry::Field {
                            field,
                            depth: depth + 1,
                        };
                    }
                }
                Event::End(_) if depth == 0 => {
                    self.close_field(field, limits);
                    self.at = InEntry::Top;
                }
                Event::End(_) => {
                    self.at = InEntry::Field {
                        field,
                        depth: depth - 1,
                    }
                }
                _ => {}
            },
            InEntry::Skip(depth) => match event {
                Event::Start(_) => self.at = InEntry::Skip(depth + 1),
                Event::End(_) if depth == 0 => self.at = InEntry::Top,
                Event::End(_) => self.at = InEntry::Skip(depth - 1),
                _ => {}
            },
        }
        false
    }

    /// `DuplicateCopyData` content: CDATA or escaped text is the fragment itself; elements
    /// written directly (no CDATA) are copied back as markup, their text left escaped.
    fn payload_event(&mut self, event: Event<'_>, depth: u32, limits: &Limits) {
        let field = Field::Payload;
        let raw = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(str::to_owned);
        match event {
            Event::Text(t) if depth == 0 => match t.xml10_content() {
                Ok(s) => self.payload_text.push_str(&s),
                Err(_) => self.not_utf8(element::PAYLOAD),
            },
            Event::CData(c) if depth == 0 => match c.xml10_content() {
                Ok(s) => self.payload_text.push_str(&s),
                Err(_) => self.not_utf8(element::PAYLOAD),
            },
            Event::GeneralRef(r) if depth == 0 => match resolve_reference(&r) {
                Some(c) => self.payload_text.push(c),
                None => self.defect_once(
                    "invalid-reference",
                    element::PAYLOAD,
                    "DuplicateCopyData に定義されていない参照があります",
                ),
            },
            Event::Text(t) => match std::str::from_utf8(&t) {
                Ok(s) => self.payload_text.push_str(s),
                Err(_) => self.not_utf8(element::PAYLOAD),
            },
            Event::CData(c) => match std::str::from_utf8(&c) {
                Ok(s) => {
                    self.payload_text.push_str("<![CDATA[");
                    self.payload_text.push_str(s);
                    self.payload_text.push_str("]]>");
                }
                Err(_) => self.not_utf8(element::PAYLOAD),
            },
            Event::GeneralRef(r) => match raw(&r) {
                Some(s) => {
                    self.payload_text.push('&');
                    self.payload_text.push_str(&s);
                    self.payload_text.push(';');
                }
                None => self.not_utf8(element::PAYLOAD),
            },
            Event::Start(e) => {
                self.payload_text.push('<');
                self.payload_text.push_str(&String::from_utf8_lossy(&e));
                self.payload_text.push('>');
                self.at = InEntry::Field {
                    field,
                    depth: depth + 1,
                };
            }
            Event::Empty(e) => {
                self.payload_text.push('<');
                self.payload_text.push_str(&String::from_utf8_lossy(&e));
                self.payload_text.push_str("/>");
            }
            Event::End(_) if depth == 0 => {
                self.close_field(field, limits);
                self.at = InEntry::Top;
            }
            Event::End(e) => {
                self.payload_text.push_str("</");
                self.payload_text
                    .push_str(&String::from_utf8_lossy(e.name().into_inner()));
                self.payload_text.push('>');
                self.at = InEntry::Field {
                    field,
                    depth: depth - 1,
                };
            }
            _ => {}
        }
    }

    fn open_field(&mut self, field: Field) {
        if self.seen & field.bit() != 0 {
            self.defect_once(
                "duplicate-element",
                field.element(),
                format!("要素 {} が重複しています", field.element()),
            );
        }
        self.seen |= field.bit();
        self.text.clear();
        if field == Field::Payload {
            self.payload_text.clear();
        }
    }

    fn unknown_child(&mut self, e: &BytesStart<'_>) {
        let name = String::from_utf8_lossy(local(e)).into_owned();
        self.defects.push(Defect::new(
            "unknown-element",
            element::ENTRY,
            format!(
                "InformationOfSPIRegistrationDelete に未知の要素 <{}> があります",
                short(&name)
            ),
        ));
    }

    fn close_field(&mut self, field: Field, limits: &Limits) {
        let value = trim_xml(&self.text);
        let header = |defects: &mut Vec<Defect>| {
            // Byte length bounds the character count from above: count only when needed.
            if value.len() > limits.max_field_chars
                && value.chars().count() > limits.max_field_chars
            {
                defects.push(Defect::new(
                    "field-too-long",
                    field.element(),
                    format!(
                        "{} が {} 文字を超えています",
                        field.element(),
                        limits.max_field_chars
                    ),
                ));
            }
            Some(value.to_owned())
        };
        let date = |defects: &mut Vec<Defect>| {
            if value.is_empty() {
                return None;
            }
            let parsed = parse_date(value);
            if parsed.is_none() {
                defects.push(Defect::new(
                    "invalid-date",
                    field.element(),
                    format!("{} が日付 (YYYY-MM-DD) ではありません", field.element()),
                ));
            }
            parsed
        };
        let defects = &mut self.defects;
        match field {
            Field::RecordId => self.record_id = header(defects),
            Field::Addressee => self.addressee = header(defects),
            Field::InfoCode => self.info_code = header(defects),
            Field::Dataset => self.dataset = header(defects),
            Field::RecordKey => self.record_key = header(defects),
            Field::MajorVersion => self.major_version = header(defects),
            Field::ParentKey => self.parent_record_key = header(defects),
            Field::PublicStart => self.public_start = date(defects),
            Field::PublicEnd => self.public_end = date(defects),
            Field::Segment => match Operation::from_segment_code(value) {
                Some(op) => self.operation = Some(op),
                None => defects.push(Defect::new(
                    "invalid-segment",
                    element::SEGMENT,
                    "SegmentOfRegistrationDelete は 1 (登録) または 2 (削除) でなければなりません",
                )),
            },
            Field::Payload => {
                self.payload = if is_blank(self.payload_text.as_bytes()) {
                    None
                } else {
                    match parse_payload(&self.payload_text) {
                        Ok(payload) => Some(payload),
                        Err(defect) => {
                            defects.push(defect);
                            None
                        }
                    }
                };
            }
        }
    }
}
