//! What every chukan service is given ([`Context`]) and what it gives back ([`Parts`]).
//!
//! The binary builds one `Context` per process, calls each selected service's
//! `start(&ctx)`, mounts every service's routes on one HTTP server and runs the workers;
//! on SIGTERM it stops them stage by stage (see [`chukan_core::worker::StopStage`]).

use std::sync::Arc;

use actix_web::web::ServiceConfig;
use chukan_config::Settings;
use chukan_core::{Clock, ServiceCalendar};

pub use chukan_core::worker::{StopStage, Worker};

/// Shared by every service in the process. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    /// Pool of the application role (row-level security applies).
    pub db: chukan_db::Pool,
    pub bus: chukan_mq::Bus,
    pub kek: chukan_crypto::Kek,
    pub clock: Arc<dyn Clock>,
    pub calendar: Arc<ServiceCalendar>,
    pub tokens: Arc<chukan_auth::TokenVerifier>,
}

/// Routes a service mounts on the shared HTTP server (called once per HTTP worker).
pub type Routes = Arc<dyn Fn(&mut ServiceConfig) + Send + Sync>;

/// What a started service hands back to the binary.
pub struct Parts {
    pub name: &'static str,
    pub routes: Option<Routes>,
    pub workers: Vec<Worker>,
}
