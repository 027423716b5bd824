//! The per-host proxy's pure half: the cross-host discovery mesh (`mesh`). Pure: no I/O.

pub mod mesh;
