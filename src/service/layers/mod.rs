//! What stands in front of the routes, outermost first: the access log and
//! per-call metrics, the token check, the min-revision wait, and the
//! rewrite of the statuses tonic makes before a handler runs. The checks
//! are [`gate::Gate`]s behind one generic layer.

pub mod auth;
pub mod call_log;
pub mod gate;
pub mod min_revision;
pub mod wire_status;
