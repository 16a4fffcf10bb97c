//! The data standard layout (データ標準レイアウト) catalogue.
//!
//! Releases (版) of the national catalogue live as TOML snapshots in `proto/layout/` and are
//! compiled into the binary; [`Catalogue::load_dir`] lets operators use their own. From the
//! snapshots this crate derives the revisions between releases (改版: major revision, dataset
//! added, item added, dataset abolished), resolves a record's dataset layout, and validates
//! replica payloads against it.

mod catalogue;
mod load;
pub mod record;
mod revision;
mod validate;

pub use catalogue::{
    Catalogue, CatalogueError, Dataset, Field, FieldType, History, ItemLayout, LayoutError, Release,
};
pub use record::{ItemValue, Payload, RecordKind};
pub use revision::{Abolition, Revision, RevisionKind};
pub use validate::{Rejection, Validated, Violation};
