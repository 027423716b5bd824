//! The process's registry of known secret values: every value of `DesiredState::secret_values`
//! in any desired state this process has loaded (`load_with_env` registers them), so that what
//! is written outside a pass's own masking (the log writer's lines, a container's own log lines
//! in `status`) can mask them too ("secrets stay masked").
//!
//! It only remembers: it prints nothing and masks nothing itself. It never forgets a value
//! either, since a secret rotated away in a newer commit still runs in the old container until
//! it is replaced (and its inspect output may be logged); the set grows with the distinct values
//! one process ever loads, which a daemon reloading the same repository keeps small.

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock};

/// The known values; a new `Arc` each time a value is added, so a reader can cache what it
/// derives from one set and see that it changed by pointer.
static KNOWN: RwLock<Option<Arc<BTreeSet<String>>>> = RwLock::new(None);

/// Adds `values` (empty strings left out) to the known secret values of this process.
pub fn register_secrets(values: &BTreeSet<String>) {
    let is_new = |known: &Option<Arc<BTreeSet<String>>>| {
        values
            .iter()
            .any(|v| !v.is_empty() && !known.as_ref().is_some_and(|k| k.contains(v)))
    };
    if !is_new(&KNOWN.read().unwrap_or_else(PoisonError::into_inner)) {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(PoisonError::into_inner);
    if !is_new(&known) {
        return;
    }
    let mut set = known.as_deref().cloned().unwrap_or_default();
    set.extend(values.iter().filter(|v| !v.is_empty()).cloned());
    *known = Some(Arc::new(set));
}

/// Every secret value registered so far (the same `Arc` until a value is added).
pub fn known_secrets() -> Arc<BTreeSet<String>> {
    static EMPTY: std::sync::OnceLock<Arc<BTreeSet<String>>> = std::sync::OnceLock::new();
    KNOWN
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| EMPTY.get_or_init(Default::default).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_known_and_stay_known() {
        let a = "registry-test-value-a".to_string();
        let b = "registry-test-value-b".to_string();
        register_secrets(&BTreeSet::from([a.clone(), String::new()]));
        let first = known_secrets();
        assert!(first.contains(&a));
        assert!(!first.contains(""));
        register_secrets(&BTreeSet::from([b.clone()]));
        let second = known_secrets();
        assert!(second.contains(&a) && second.contains(&b));
    }
}
