//! clusternet: a graph analytics server for industrial-cluster networks.
//!
//! The firm network (actors and their links) and the inter-cluster network
//! (clusters, their sites and the ties between them) are kept in a sled store
//! and in memory, and served over gRPC (`clusternet.v1.NetworkService`).
//!
//! The crate is layered: [`model`] holds plain domain types and their
//! validation; [`network`] the in-memory network and its queries (no I/O);
//! [`store`] keeps it durable; only [`service`] (and the binary) know about
//! gRPC. See `ARCHITECTURE.md`.

pub mod alert;
pub mod analysis;
pub mod auth;
mod background;
pub mod cli;
pub mod demo;
pub mod draw;
pub mod error;
pub mod export;
pub mod geo;
pub mod graph;
pub mod import;
pub mod model;
pub mod network;
pub mod replica;
pub mod service;
pub mod store;
pub mod synthetic;
#[cfg(test)]
mod testing;

pub use error::{Error, Result};
