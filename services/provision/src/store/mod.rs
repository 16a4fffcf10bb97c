//! SQL of the provision service, one function per question. Tenant-owned tables are only
//! touched inside `chukan_db::tenant_tx`; every statement also names the tenant so the indexes
//! lead with it.
//!
//! One module per aggregate; the service calls them as `store::…`.

mod orgs;
mod provisions;
mod reconciliations;
mod replica_stage;
mod replicas;
mod residents;
mod uploads;

pub use orgs::*;
pub use provisions::*;
pub use reconciliations::*;
pub use replica_stage::*;
pub use replicas::*;
pub use residents::*;
pub use uploads::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// The API shows a state as serde writes it and the database keeps it as `as_str`: one
    /// text for both, for every state.
    #[test]
    fn every_state_is_shown_as_it_is_stored() {
        fn check<T: serde::Serialize + Copy>(all: &[T], text: impl Fn(T) -> &'static str) {
            for &v in all {
                assert_eq!(serde_json::to_value(v).unwrap(), text(v));
            }
        }
        check(UploadState::ALL, UploadState::as_str);
        check(UploadSource::ALL, UploadSource::as_str);
        check(ReconciliationState::ALL, ReconciliationState::as_str);
        check(AnswerState::ALL, AnswerState::as_str);
        check(AnswerStatus::ALL, AnswerStatus::as_str);
    }
}
