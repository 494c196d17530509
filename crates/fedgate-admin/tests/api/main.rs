//! The admin API end to end over a real SQLite file: every endpoint, every invalid value, tokens
//! and roles, optimistic concurrency, dry runs, metrics and the OpenAPI document.

mod auth;
mod common;
mod openapi;
mod panel;
mod partner_test;
mod partners;
mod policies;
mod status;
