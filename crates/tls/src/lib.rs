//! TLS for every link chukan makes or serves (seed §6.3: communication is encrypted).
//!
//! - [`pem`]: certificates and keys read from files (mounted Secrets), never from values.
//! - [`client`]: verifying client configs (PostgreSQL `verify-full`, RabbitMQ `amqps`,
//!   HTTPS to the NWS): the chain up to the configured CA and the server's name.
//! - [`server`]: server configs for the API and the relay's inbound door (mutual TLS).
//! - [`https`]: the one way `reqwest` clients are built (NWS, JWKS, API, relays): CA and
//!   client certificate from the settings.
//! - [`expiry`]: each configured certificate's expiry as a metric.

pub mod client;
pub mod expiry;
pub mod https;
pub mod pem;
pub mod server;
