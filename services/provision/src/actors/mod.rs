//! Background workers of the provision service.

pub mod scheduler;
pub mod tenants;
