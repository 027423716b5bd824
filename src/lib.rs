//! Convoy as a library: the pipeline behind the `convoy` binary, public so that benchmarks and
//! integration tests can drive its parts in-process. The binary (`main.rs`) owns arguments,
//! logging and exit codes; nothing here prints except the command layer (`app`).

pub mod app;
pub mod cli;
pub mod daemon;
pub mod docker;
pub mod drift;
pub mod executor;
pub mod fleet;
pub mod images;
pub mod manifest;
pub mod observed;
pub mod plan;
pub mod render;
pub mod schedule;
pub mod source;
pub mod spec;
pub mod ssh;
