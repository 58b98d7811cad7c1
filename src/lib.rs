//! portal-invites: lets a workshop's staff invite a customer to the shop's Customer Portal from the
//! host platform's star menu, by email or SMS, and gives the customer the pages to set a password,
//! log in and reset it.
//!
//! ARCHITECTURE.md at the repository's root is the map: the layers, what each module owns, and the
//! path of each kind of request.

pub mod access;
pub mod accounts;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod entities;
pub mod fingerprint;
pub mod health;
pub mod host;
pub mod identity;
pub mod inbox;
pub mod invitations;
pub mod links;
pub mod maintenance;
pub mod manifest;
pub mod metrics;
pub mod oidc;
pub mod outbox;
pub mod portal;
pub mod random;
pub mod recover;
pub mod sealing;
pub mod shops;
pub mod signature;
pub mod telemetry;
pub mod templates;
pub mod tokens;
pub mod twilio;
