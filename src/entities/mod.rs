//! SeaORM entities, one per table. Timestamps are milliseconds since the Unix epoch
//! (see [`crate::clock::to_millis`]).

pub mod customer;
pub mod service_key;
pub mod shop;
pub mod webhook_message;
