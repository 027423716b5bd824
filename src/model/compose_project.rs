//! What one Compose project runs on an engine, as `convoy adopt` reads it to write a stack
//! (`infra::docker` fills it, `render::adopt` writes the compose file from it).
//!
//! Data only: no I/O. Apart from `model::adopt` because it names observed containers, which
//! `model::adopt` (read by the fleet settings) must not.

/// What one Compose project runs on an engine, as `convoy adopt` reads it to write a stack.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectView {
    pub project: String,
    /// Its containers (`service` and `slot` from Compose's labels, no stack, no spec hash), by
    /// name.
    pub containers: Vec<crate::model::observed::ObservedContainer>,
    /// Engine name → Compose-level name of each network the containers use; empty when the
    /// project did not make it (an external network).
    pub networks: std::collections::BTreeMap<String, String>,
    /// The same for the named volumes they mount.
    pub volumes: std::collections::BTreeMap<String, String>,
}
