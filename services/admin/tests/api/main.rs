#![allow(clippy::unwrap_used, clippy::expect_used)]
//! admin's API against real PostgreSQL and RabbitMQ, one fresh database per test.

mod batches;
mod calendar;
mod clients;
mod departments;
mod helpers;
mod login;
mod openapi;
mod status;
mod tenants;
mod users;
