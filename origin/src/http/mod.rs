//! HTTP handlers: the public API, the admin API and the gate.

pub mod admin;
pub mod error;
pub mod extract;
pub mod gate;
pub mod proxy;
pub mod public;
