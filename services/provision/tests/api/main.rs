//! Integration tests of the provision service against real PostgreSQL and RabbitMQ.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod openapi;
mod provisions;
mod quota;
mod reconciliation;
mod replicas;
mod revisions;
mod staging;
mod uploads;
