//! Domain types, the service calendar and problem+json errors shared by every chukan service.
//!
//! Types here parse at the edge: once a value is an [`ids::OrgCode`] it is a valid one.

pub mod calendar;
pub mod clock;
pub mod edge;
pub mod ids;
pub mod json_int;
pub mod problem;
pub mod schema;
pub mod worker;

pub use calendar::{ServiceCalendar, ServiceState};
pub use clock::{Clock, ManualClock, SystemClock};
pub use problem::{Cause, Problem};
