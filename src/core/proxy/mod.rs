//! The per-host proxy's pure side (issue 13): the ports of the cross-host listeners (`ports`).
//!
//! Nothing here does I/O; the executor ships what this decides.

pub mod ports;
