//! `convoy export`: a fleet's desired state as another engine's files, for a fleet that
//! outgrows Convoy. `swarm` writes one `docker stack deploy` file per stack, `kubernetes` one
//! multi-document file of manifests per stack.
//!
//! Pure: a `DesiredState` in, the files' bytes and what could not be expressed out; writing
//! them and printing the notes is the command's job. Nothing that cannot be expressed in the
//! target is dropped silently: each is an `Unexpressed` note, service by service. A secret's
//! value is only ever in `files` when the caller asked for secrets to be included.

#[cfg(test)]
mod jobs_tests;
pub mod kubernetes;
pub mod swarm;
#[cfg(test)]
mod swarm_tests;

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

/// What an export produced.
#[derive(Debug, Default)]
pub struct Exported {
    /// Paths relative to the output folder, and their bytes.
    pub files: Vec<ExportFile>,
    /// What the target cannot express, service by service.
    pub unexpressed: Vec<Unexpressed>,
    /// Commands to run before deploying (secrets to create, node labels to add).
    pub commands: Vec<String>,
}

#[derive(Debug)]
pub struct ExportFile {
    pub path: String,
    pub data: Vec<u8>,
    /// Holds a secret's value: written with mode 0600.
    pub secret: bool,
}

/// One thing the target cannot say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unexpressed {
    pub stack: String,
    /// Empty for a stack-level or fleet-level note.
    pub service: String,
    pub what: String,
}

impl std::fmt::Display for Unexpressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.service.is_empty() {
            write!(f, "{}: {}", self.stack, self.what)
        } else {
            write!(f, "{}/{}: {}", self.stack, self.service, self.what)
        }
    }
}

/// What the caller asks of an export.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    /// Write secrets' values as files next to the stack files (mode 0600) instead of naming
    /// external secrets to create.
    pub include_secrets: bool,
}

/// An insertion-ordered YAML mapping, for readable output in the order a person writes it.
#[derive(Default)]
pub(crate) struct Map(Hash);

impl Map {
    pub fn new() -> Map {
        Map(Hash::new())
    }

    pub fn put(&mut self, key: &str, value: Yaml) {
        self.0.insert(Yaml::String(key.to_string()), value);
    }

    pub fn put_str(&mut self, key: &str, value: &str) {
        self.put(key, s(value));
    }

    /// Puts a mapping unless it is empty.
    pub fn put_map(&mut self, key: &str, value: Map) {
        if !value.0.is_empty() {
            self.put(key, value.into_yaml());
        }
    }

    /// Puts a list unless it is empty.
    pub fn put_list(&mut self, key: &str, items: Vec<Yaml>) {
        if !items.is_empty() {
            self.put(key, Yaml::Array(items));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_yaml(self) -> Yaml {
        Yaml::Hash(self.0)
    }
}

/// A string value, with `$` written `$$`: `docker stack deploy` interpolates every value, and
/// the desired state's strings are already interpolated (a `$` in them is meant literally).
pub(crate) fn s(v: &str) -> Yaml {
    Yaml::String(v.replace('$', "$$"))
}

/// A string value that `docker stack deploy` is meant to interpolate (`${NAME}`).
pub(crate) fn interpolated(v: &str) -> Yaml {
    Yaml::String(v.to_string())
}

pub(crate) fn int(v: i64) -> Yaml {
    Yaml::Integer(v)
}

pub(crate) fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> Vec<Yaml> {
    items.into_iter().map(|v| s(v)).collect()
}

/// A string map as a YAML mapping.
pub(crate) fn string_map<'a>(items: impl IntoIterator<Item = (&'a String, &'a String)>) -> Map {
    let mut m = Map::new();
    for (k, v) in items {
        m.put_str(k, v);
    }
    m
}

/// A duration in Compose's form (`1m30s` is also read, but `90s` and `500ms` are simplest).
pub(crate) fn duration_ns(ns: i64) -> String {
    if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{}us", ns / 1_000)
    }
}

pub(crate) fn duration_ms(ms: u64) -> String {
    duration_ns(ms as i64 * 1_000_000)
}

/// A stack's named volumes by engine name: mounts name the engine's volume, files the
/// Compose name.
pub(crate) fn volume_names(
    stack: &crate::model::spec::StackSpec,
) -> std::collections::BTreeMap<&str, &str> {
    stack
        .volumes
        .iter()
        .map(|(name, v)| (v.engine_name.as_str(), name.as_str()))
        .collect()
}

/// The bytes of a content-addressed file; `None` for a folder (or content not read).
pub(crate) fn single_file(
    payload: &crate::model::files::FilePayload,
    address: &str,
) -> Option<Vec<u8>> {
    payload
        .blobs
        .get(address)
        .and_then(|b| match b.entries.as_slice() {
            [only] if only.path.is_empty() => only.data.clone(),
            _ => None,
        })
}

/// A document as YAML text, without the `---` line the emitter starts with.
pub(crate) fn dump(doc: &Yaml) -> String {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    // Writing to a String cannot fail; the emitter only fails on its writer.
    let _ = emitter.dump(doc);
    let body = out.strip_prefix("---\n").unwrap_or(&out).to_string();
    format!("{body}\n")
}
