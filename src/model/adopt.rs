//! Adopted Compose projects: the record in `convoy.yaml` that says which project, running on
//! which host, is which stack, and the Compose labels that map its containers to replicas.
//!
//! Labels cannot be added to a running container, so a container started by `docker-compose
//! up` carries no `convoy.fleet` label; the adoption record is the repository's word that the
//! fleet owns the containers of exactly that project on exactly that host, and nothing else
//! un-labelled. This module is data only: no I/O. It must not widen ownership beyond the
//! (project, host) pairs written in the record.

use serde::Serialize;

/// `com.docker.compose.project`: the project a Compose container, volume or network belongs to.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// `com.docker.compose.service`: the service of a Compose container.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// `com.docker.compose.container-number`: the replica number, which becomes the slot.
pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
/// `com.docker.compose.oneoff`: `True` on a `docker-compose run` container, never adopted.
pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
/// The prefix of every label Compose writes for its own bookkeeping: not the user's, so never
/// compared as drift nor written into an inferred compose file.
pub const COMPOSE_LABEL_PREFIX: &str = "com.docker.compose.";

/// One entry of `adopt:` in `convoy.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Adoption {
    /// The Compose project name, as in `com.docker.compose.project`.
    pub project: String,
    /// The host of the fleet the project runs on.
    pub host: String,
    /// The stack of the repository that describes it.
    pub stack: String,
}

/// Compose's project names: lower-case letters, digits, `_` and `-`, starting with a letter or
/// digit (what `docker-compose` itself accepts after normalising).
pub fn is_project_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::is_project_name;

    #[test]
    fn project_names_are_composes() {
        assert!(is_project_name("shop"));
        assert!(is_project_name("my_app-2"));
        assert!(!is_project_name(""));
        assert!(!is_project_name("Shop"));
        assert!(!is_project_name("-x"));
        assert!(!is_project_name("a b"));
    }
}
