//! How calls run, whatever the method: connections and their limits,
//! admission of analyses (slots, queues, fair shares), streaming of
//! analysis results with deadlines and stalls, and the resumable feeds
//! behind the watches.

pub mod admission;
pub mod connections;
pub mod feed;
pub mod streaming;
