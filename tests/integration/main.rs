//! One integration-test binary (each extra binary costs a link): every module is a suite.
//! Scenarios declared with `on_both_databases!` run on SQLite and, when `PORTAL_TEST_POSTGRES_URL`
//! is set, on PostgreSQL too.

mod audit;
mod browser;
mod delivery;
mod faults;
mod fuzz;
mod helpers;
mod html;
mod invitations;
mod layers;
mod lifecycle;
mod links;
mod log_output;
mod metrics;
mod oidc;
mod operations;
mod platform;
mod portal;
mod portal_access;
mod portal_security;
mod races;
mod receipts;
mod sms_gateway;
mod smtp;
mod throttling;
mod traces;
mod web;
mod webhooks;
