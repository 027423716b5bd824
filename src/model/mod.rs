//! The shared vocabulary of every layer: the desired state (`spec`), what engines report
//! (`observed`), the plan's steps and reasons (`plan`), a pass's result and hold reasons
//! (`outcome`), and the repository tree the manifest reads (`tree`).
//!
//! Types, their fixed text forms and small pure helpers only: no I/O, no clock, no async.
//! Everything else imports from here; this imports nothing of the crate's but itself.

pub mod adopt;
pub mod compose_project;
pub mod engine_more;
pub mod files;
pub mod history;
pub mod hooks;
pub mod job;
pub mod job_history;
pub mod notify;
pub mod notify_spec;
pub mod observed;
pub mod outcome;
pub mod plan;
pub mod proxy;
pub mod rollout;
pub mod schedule;
pub mod share;
pub mod signature;
pub mod spec;
pub mod sync_window;
pub mod time;
pub mod tree;
