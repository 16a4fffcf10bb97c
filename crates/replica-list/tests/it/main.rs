//! Tests of the replica registration list reader and writer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod defects;
mod fatal;
mod helpers;
mod roundtrip;
mod sample;
