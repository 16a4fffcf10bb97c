//! SQL of the provision service, one function per question. Tenant-owned tables are only
//! touched inside `chukan_db::tenant_tx`; every statement also names the tenant so the indexes
//! lead with it.
//!
//! One module per aggregate; the service calls them as `store::…`.

mod orgs;
mod provisions;
mod reconciliations;
mod replicas;
mod residents;
mod uploads;

pub use orgs::*;
pub use provisions::*;
pub use reconciliations::*;
pub use replicas::*;
pub use residents::*;
pub use uploads::*;
