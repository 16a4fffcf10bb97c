//! Integration tests of the audit service (情報提供等記録) against real PostgreSQL and
//! RabbitMQ: one binary, one module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod disclosure;
mod head_age;
mod helpers;
mod records;
mod retention;
mod tamper;
