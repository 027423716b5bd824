//! Convoy as a library: the pipeline behind the `convoy` binary, public so that benchmarks and
//! integration tests can drive its parts in-process. The binary (`main.rs`) owns arguments,
//! logging and the exit-code policy; only the command layer (`cmd`) prints.
//!
//! The folders are the layers (ARCHITECTURE.md names the arrows between them): `model` is the
//! shared vocabulary; `manifest`, `core` and `render` are the pure planning core; `infra` speaks
//! to engines, SSH and git; `exec` turns a plan into engine calls; `reconcile` is the one pass
//! every caller runs; `daemon` decides when passes run; `cmd` is the commands.

pub mod api;
pub mod cli;
pub mod cmd;
pub mod core;
pub mod daemon;
pub mod exec;
pub mod infra;
pub mod manifest;
pub mod model;
pub mod reconcile;
pub mod render;
