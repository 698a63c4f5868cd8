//! One integration-test binary: each module drives a real server over a socket.

mod common;
mod import_cli;
mod network;
mod server;
mod store;
