//! One integration-test binary: each module drives a real server over a socket.

mod alert_feed;
mod alerts;
mod analysis;
mod auth;
mod changes;
mod command_line;
mod common;
mod crash;
mod crash_cycle;
mod export;
mod fuzz;
mod graphs;
mod import_cli;
mod limits;
mod network;
mod pictures;
mod python_client;
mod reference;
mod relatedness;
mod replicas;
mod server;
mod stages;
mod store;
mod tls;
