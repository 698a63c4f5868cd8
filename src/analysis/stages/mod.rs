//! The integration stages (regional, global value chain, virtual), the
//! virtual-integration patterns behind the third, and what the stage
//! analyses share: places, core firms, upgrading over time, and the
//! settings (`stage_config`). A cluster is judged on its own network; see
//! `docs/stages.md`.

pub mod core_firms;
pub mod measures;
pub mod places;
pub mod stage;
pub mod stage_config;
#[cfg(test)]
mod stage_validity;
pub mod upgrading;
pub mod virtual_integration;
pub mod wholes;

use crate::{
    analysis::{stages::stage_config::StageConfig, Control},
    graph::GraphFilter,
    network::Network,
};

/// What every stage analysis reads: the network, the part of it asked about
/// (kinds, channels, date, clusters), the settings, and the call's control
/// (cancellation, deadline, progress). One value instead of four arguments
/// passed together through every function.
#[derive(Clone, Copy)]
pub struct StageContext<'a> {
    pub network: &'a Network,
    pub filter: &'a GraphFilter,
    pub config: &'a StageConfig,
    pub control: &'a Control<'a>,
}
