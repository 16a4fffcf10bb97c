//! Result tables for the operator commands (comfy-table): Japanese headings with the English in
//! parentheses, numbers right-aligned.

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};

/// Narrower terminals (or a pseudo-terminal reporting no size) would wrap every cell into
/// slivers; below this the rows are left long instead.
const MIN_WRAP_WIDTH: u16 = 80;

pub fn table(headings: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_header(headings.iter().map(|h| Cell::new(*h)));
    let arrangement = match t.width() {
        Some(w) if w >= MIN_WRAP_WIDTH => ContentArrangement::Dynamic,
        _ => ContentArrangement::Disabled,
    };
    t.set_content_arrangement(arrangement);
    t
}

pub fn number(n: i64) -> Cell {
    Cell::new(n).set_alignment(CellAlignment::Right)
}
