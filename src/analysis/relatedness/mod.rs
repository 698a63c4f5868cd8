//! Relatedness and economic complexity of clusters (issue 32): which
//! industries each cluster is specialised in, how near the others are, how
//! complex each is, and where each cluster can go next and with whom.
//!
//! * [`complexity`]: the figures on a location × activity matrix, with the
//!   Growth Lab's conventions (checked against `ecomplexity` 0.5.3).

pub mod complexity;
