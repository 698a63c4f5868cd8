//! The relations between clusters the policy article names: overlap
//! (重叠), crossing (交叉), substitution (替代) and fusion (融合), plus the
//! supply gaps that substitution leaves. They read the network directly
//! (members, segments, industries, ties); formulas and defaults are in
//! `docs/relations.md`.

pub mod crossing;
pub mod fusion;
pub mod gaps;
pub mod overlap;
pub mod substitution;
