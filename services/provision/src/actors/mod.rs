//! Background workers of the provision service.

pub mod code_links;
pub mod expiry;
pub mod nws_in;
pub mod scheduler;
pub mod tenants;
