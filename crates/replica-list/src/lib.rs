//! The replica registration list (副本登録リスト): the XML file in which business systems
//! register and delete replicas (副本), one `InformationOfSPIRegistrationDelete` entry each.
//!
//! [`ListReader`] streams a file of any size holding one entry at a time; [`ListWriter`]
//! produces the same format (REST batches are stored in it too). The replica itself travels
//! as an XML fragment inside `DuplicateCopyData`: [`parse_payload`] and [`write_payload`]
//! convert it to and from a [`Payload`](chukan_layout::Payload).

mod date;
mod entry;
mod error;
mod escape;
mod payload;
mod reader;
mod source;
mod writer;

pub use entry::{Defect, Entry, EntrySpec, Operation, is_xml_char};
pub use error::ListError;
pub use payload::{is_item_name, parse_payload, write_payload};
pub use reader::{Limits, ListReader};
pub use writer::ListWriter;
