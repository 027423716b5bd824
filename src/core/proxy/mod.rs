//! The per-host proxy's pure side (issue 13): the ports of the cross-host listeners (`ports`)
//! and the configuration of each host's proxy (`render`).
//!
//! Nothing here does I/O; the executor ships what this decides.

pub mod ports;
pub mod render;
#[cfg(test)]
mod render_tests;
