//! Everything that talks to the outside: Docker engines (`docker`), SSH transport (`ssh`), the
//! fleet's connections (`fleet`), registry-less image copy (`images`), the per-fleet lock in the
//! state directory (`lock`) and the repository's files at a revision (`source`).
//!
//! Infra reports what is; it never decides what should be. It imports the shared vocabulary
//! (`model`) and never the planner.

pub mod docker;
pub mod files;
pub mod fleet;
pub mod haproxy_cli;
pub mod history;
pub mod images;
pub mod lock;
pub mod notify;
pub mod probe;
pub mod sops_keys;
pub mod source;
pub mod ssh;
