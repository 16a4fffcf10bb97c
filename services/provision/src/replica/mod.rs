//! 副本登録 (replica registration): registration lists and REST batches in, replicas out —
//! uploads, their checks and application, the daily quota and upload slots, the nightly
//! scheduler, reconciliation files, and the organisations' settings learnt from admin.

pub mod api;
pub mod apply;
pub mod batch_health;
pub mod intake;
pub mod jobs;
pub mod quota;
pub mod reconcile;
pub mod scheduler;
mod seen;
pub mod slots;
pub mod tenants;
