//! Background work of admin.

pub mod batch_progress;
