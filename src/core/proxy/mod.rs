//! The per-host proxy's pure side (issue 13): the ports of the cross-host listeners (`ports`)
//! and the discovery mesh of each (host, stack) (`mesh`).
//!
//! Nothing here does I/O; the executor ships what this decides.

pub mod mesh;
pub mod ports;
