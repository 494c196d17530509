//! # fedgate-gateway — the s2s runtime of fedgate
//!
//! - [`config`] — the `fedgate serve` TOML configuration (docs/config-contract.md).
pub mod config;
