//! Compose's lifecycle hooks of a container (`post_start`, `pre_stop`), as the executor runs
//! them through the engine's exec API: a command with its user, privilege, working folder and
//! environment (issue 9); and `pre_start`, the same fields run in a one-off container of the
//! service's image before the replica starts (see `exec::hooks`).
//!
//! Data only, already validated by the manifest. A hook is not container configuration: the
//! engine keeps no record of it, so drift has nothing to read back and a changed hook is seen
//! through the spec hash alone. "Upgrades are invisible": the value is left out of the
//! serialised spec while no hook is declared, so a spec without hooks hashes as before.
//! Environment values may be secrets: `Debug` shows only the names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

/// One hook: a command run inside the container.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// The command, already split into words (a string is split as a shell would).
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Variables of the hook's process, over the container's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("command", &self.command)
            .field("user", &self.user)
            .field("privileged", &self.privileged)
            .field("working_dir", &self.working_dir)
            .field("environment", &self.environment.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Hook {
    /// `KEY=value` entries for the engine's exec.
    pub fn env_list(&self) -> Vec<String> {
        self.environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }
}

/// The hooks of a container, each list in the order written (Compose runs them in order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    /// Run once the container has started; a failure fails the step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_start: Vec<Hook>,
    /// Run before Convoy stops the container; best effort, bounded by the grace period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_stop: Vec<Hook>,
    /// Run each in a one-off container of the service's image, with the replica's volumes
    /// and networks, after the replica is created and before it starts; a failure fails the
    /// step and the replica never starts. An empty `command` runs the image's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_start: Vec<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.post_start.is_empty() && self.pre_stop.is_empty() && self.pre_start.is_empty()
    }
}
