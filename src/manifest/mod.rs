//! Reads a fleet repository (the fleet file `convoy.yaml` and the Compose stacks under `stacks/`)
//! into a validated `DesiredState`, or into every located error found.
//!
//! It does no I/O of its own: the caller hands it a `RepoTree` (a directory on disk or a git tree)
//! and the process environment as a map, so the result depends on its arguments only. It never
//! returns a partial state: one broken file anywhere means no `DesiredState` at all ("a
//! repository that does not validate changes nothing"), and an empty repository is an error,
//! not a request to remove everything ("removal is never the side effect of an error").

mod adopt;
mod compose;
mod fleet;
pub use fleet::FLEET_FILE;
pub use notify::read_config_notifications;
pub use values::suggest;
mod fleetwide;
mod interpolate;
mod notify;
mod proxy;
pub mod sops;
mod sync_windows;
#[cfg(test)]
mod tests;
mod typed;
mod values;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::model::spec::{DesiredState, StackSpec};
use typed::Diag;

pub use crate::model::tree::{DirEntry, RepoTree};

/// One problem in one file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// Repository-relative path.
    pub file: String,
    /// 1-based; 0 when the error concerns the file as a whole.
    pub line: usize,
    pub column: usize,
    /// Dotted key path (`services.web.deploy.replicas`); empty for file-level errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found in a repository (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in the fleet repository", .0.len())]
pub struct ManifestErrors(pub Vec<ManifestError>);

/// Names a Compose file may have inside a stack folder, in Compose's order of preference.
const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Reads and validates the whole repository. `env` is the process environment used for
/// interpolation and for the default local engine (`DOCKER_HOST`).
pub fn load(
    tree: &dyn RepoTree,
    env: &BTreeMap<String, String>,
) -> Result<DesiredState, ManifestErrors> {
    load_with_keys(tree, env, &sops::NoKeys)
}

/// `load`, with the stacks' SOPS-encrypted files (Compose files, `.env`, env files) decrypted
/// in memory with data keys from `keys`; every value that was encrypted is a secret value.
pub fn load_with_keys(
    tree: &dyn RepoTree,
    env: &BTreeMap<String, String>,
    keys: &dyn sops::KeySource,
) -> Result<DesiredState, ManifestErrors> {
    let decrypting = sops::DecryptingTree::new(tree, keys);
    let tree: &dyn RepoTree = &decrypting;
    let mut errors: Vec<ManifestError> = Vec::new();

    let fleet = read_fleet(tree, env, &mut errors);
    let host_names: Option<BTreeSet<String>> =
        fleet.as_ref().map(|f| f.hosts.keys().cloned().collect());

    // Which folders to read: the list in convoy.yaml, or every folder under stacks/.
    let mut folders: Vec<String> = Vec::new();
    let listed = fleet.as_ref().and_then(|f| f.stacks.clone());
    let entries = match tree.list("stacks") {
        Ok(e) => e,
        Err(e) => {
            errors.push(file_error("stacks", format!("cannot list: {e}")));
            Vec::new()
        }
    };
    let dirs: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.is_dir)
        .map(|e| e.name.clone())
        .collect();
    match &listed {
        Some(list) => {
            for (name, node) in list {
                if dirs.contains(name) {
                    folders.push(name.clone());
                } else {
                    errors.push(ManifestError {
                        file: fleet::FLEET_FILE.into(),
                        line: node.line,
                        column: node.col,
                        key: "stacks".into(),
                        message: format!("stack folder `stacks/{name}` does not exist"),
                    });
                }
            }
        }
        None => folders.extend(dirs.iter().cloned()),
    }
    if listed.is_none() && folders.is_empty() && fleet.is_some() {
        errors.push(file_error(
            "stacks",
            "no stacks found under `stacks/`; write `stacks: []` in convoy.yaml to run none on purpose",
        ));
    }

    let mut stacks: BTreeMap<String, StackSpec> = BTreeMap::new();
    let mut places: BTreeMap<String, BTreeMap<String, compose::Place>> = BTreeMap::new();
    let mut secret_values: BTreeSet<String> = BTreeSet::new();
    let mut files = crate::model::files::FilePayload::default();
    let no_profiles = BTreeMap::new();
    let profiles = fleet.as_ref().map_or(&no_profiles, |f| &f.profiles);
    let proxy = fleet.as_ref().and_then(|f| f.settings.proxy.as_ref());
    for folder in &folders {
        if let Some(compose::Read {
            spec: stack,
            places: stack_places,
            files: stack_files,
        }) = read_stack(
            tree,
            env,
            folder,
            host_names.as_ref(),
            profiles,
            proxy,
            &mut errors,
            &mut secret_values,
        ) {
            if let Some(other) = stacks.get(&stack.name) {
                errors.push(file_error(
                    &stack.file,
                    format!(
                        "stack name `{}` is also used by `{}`",
                        stack.name, other.file
                    ),
                ));
                continue;
            }
            places.insert(stack.name.clone(), stack_places);
            files.blobs.extend(stack_files.blobs);
            files.secrets.extend(stack_files.secrets);
            files.warnings.extend(stack_files.warnings);
            stacks.insert(stack.name.clone(), stack);
        }
    }
    // Profiles enabled for a stack the repository does not have: a typo would silently leave
    // the stack's optional services out. A folder whose stack did not load is not reported.
    for (name, node) in fleet.iter().flat_map(|f| &f.profile_stacks) {
        if !stacks.contains_key(name) && !folders.contains(name) {
            errors.push(ManifestError {
                file: fleet::FLEET_FILE.into(),
                line: node.line,
                column: node.col,
                key: format!("profiles.{name}"),
                message: format!("no stack is named `{name}`"),
            });
        }
    }
    if let Some(f) = &fleet {
        adopt::check_stacks(
            fleet::FLEET_FILE,
            &f.adopt_stacks,
            &stacks,
            &folders,
            &mut errors,
        );
    }
    if let Some(f) = &fleet {
        sync_windows::check_stacks(
            fleet::FLEET_FILE,
            &f.window_stacks,
            &stacks,
            &folders,
            &mut errors,
        );
    }
    if let Some(m) = proxy::check_range(
        &stacks,
        fleet.as_ref().and_then(|f| f.settings.proxy.as_ref()),
    ) {
        errors.push(file_error(fleet::FLEET_FILE, m));
    }
    fleetwide::check(
        &stacks,
        &places,
        &host_names.unwrap_or_default(),
        &mut errors,
    );
    // "Secrets stay masked", in every message: each file masked its own already; a value
    // made secret in one stack may still be quoted by another's.
    let mut secret_values = secret_values_of(&stacks, secret_values);
    secret_values.extend(
        decrypting
            .secrets()
            .into_iter()
            .filter(|v| v.chars().count() >= MIN_SECRET_LEN),
    );
    for e in &mut errors {
        e.message = crate::model::spec::mask_secrets(&e.message, &secret_values);
    }

    errors.sort_by(|a, b| {
        (&a.file, a.line, a.column, &a.key, &a.message)
            .cmp(&(&b.file, b.line, b.column, &b.key, &b.message))
    });
    errors.dedup();
    match fleet {
        Some(f) if errors.is_empty() => Ok(DesiredState {
            fleet: f.fleet,
            hosts: f.hosts,
            secret_values,
            stacks,
            settings: f.settings,
            files,
            kept_networks: Default::default(),
        }),
        _ => {
            if errors.is_empty() {
                errors.push(file_error(fleet::FLEET_FILE, "invalid fleet file"));
            }
            Err(ManifestErrors(errors))
        }
    }
}

/// Values shorter than this are not masked: they are not secrets anyone relies on, and masking
/// `1` or `true` wherever it appears would make every diff unreadable.
const MIN_SECRET_LEN: usize = 4;

/// Every value to mask in output: those of secret-named variables used for interpolation
/// (`found`), and the environment values of secret-named or env_file-set variables.
fn secret_values_of(
    stacks: &BTreeMap<String, StackSpec>,
    mut found: BTreeSet<String>,
) -> BTreeSet<String> {
    for svc in stacks.values().flat_map(|s| s.services.values()) {
        for name in &svc.secret_env {
            if let Some(v) = svc.container.env.get(name) {
                if v.chars().count() >= MIN_SECRET_LEN {
                    found.insert(v.clone());
                }
            }
        }
    }
    found
}

fn file_error(file: &str, message: impl Into<String>) -> ManifestError {
    ManifestError {
        file: file.to_string(),
        line: 0,
        column: 0,
        key: String::new(),
        message: message.into(),
    }
}

/// A file's text, or a file-level error.
fn read_text(
    tree: &dyn RepoTree,
    path: &str,
    errors: &mut Vec<ManifestError>,
) -> Option<Option<String>> {
    match tree.read(path) {
        Ok(None) => Some(None),
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(s) => Some(Some(s)),
            Err(_) => {
                errors.push(file_error(path, "not valid utf-8"));
                None
            }
        },
        Err(e) => {
            errors.push(file_error(path, format!("cannot read: {e}")));
            None
        }
    }
}

/// Parses YAML, turning its issues into errors of `file`.
fn parse_yaml(file: &str, text: &str, errors: &mut Vec<ManifestError>) -> Option<yaml::Node> {
    let (node, issues) = yaml::parse(text);
    let clean = issues.is_empty();
    errors.extend(issues.into_iter().map(|i| ManifestError {
        file: file.to_string(),
        line: i.line,
        column: i.col,
        key: i.key,
        message: i.message,
    }));
    node.filter(|_| clean)
}

fn read_fleet(
    tree: &dyn RepoTree,
    env: &BTreeMap<String, String>,
    errors: &mut Vec<ManifestError>,
) -> Option<fleet::Fleet> {
    let text = match read_text(tree, fleet::FLEET_FILE, errors)? {
        Some(t) => t,
        None => {
            errors.push(file_error(
                fleet::FLEET_FILE,
                format!(
                    "missing: the fleet file `convoy.yaml` must be at the root of {}",
                    tree.describe()
                ),
            ));
            return None;
        }
    };
    let root = parse_yaml(fleet::FLEET_FILE, &text, errors)?;
    let mut d = Diag::new(fleet::FLEET_FILE);
    let fleet = fleet::read(&mut d, &root, env);
    errors.extend(d.errors);
    fleet
}

#[allow(clippy::too_many_arguments)]
fn read_stack(
    tree: &dyn RepoTree,
    env: &BTreeMap<String, String>,
    folder: &str,
    hosts: Option<&BTreeSet<String>>,
    profiles: &BTreeMap<String, BTreeSet<String>>,
    proxy: Option<&crate::model::proxy::ProxySettings>,
    errors: &mut Vec<ManifestError>,
    secrets: &mut BTreeSet<String>,
) -> Option<compose::Read> {
    let dir = format!("stacks/{folder}");
    let listing = match tree.list(&dir) {
        Ok(l) => l,
        Err(e) => {
            errors.push(file_error(&dir, format!("cannot list: {e}")));
            return None;
        }
    };
    let found: Vec<&str> = COMPOSE_FILES
        .iter()
        .copied()
        .filter(|f| listing.iter().any(|e| !e.is_dir && e.name == *f))
        .collect();
    let file_name = match found.as_slice() {
        [one] => *one,
        [] => {
            errors.push(file_error(
                &dir,
                "no compose file (expected `compose.yaml`, `compose.yml`, `docker-compose.yaml` or `docker-compose.yml`)",
            ));
            return None;
        }
        many => {
            errors.push(file_error(
                &dir,
                format!(
                    "more than one compose file ({}); keep one",
                    many.iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            return None;
        }
    };
    let file = format!("{dir}/{file_name}");
    let text = read_text(tree, &file, errors)??;
    let mut root = parse_yaml(&file, &text, errors)?;

    // Variables: `.env` beside the compose file, overridden by the environment (as Compose).
    // Its variables are expanded lazily, each at most once and within the caps: one that
    // nothing uses costs nothing, however it is written.
    let dotenv_path = format!("{dir}/.env");
    let entries = match read_text(tree, &dotenv_path, errors).flatten() {
        Some(text) => match values::parse_dotenv(&text) {
            Ok(entries) => entries,
            Err((line, message)) => {
                errors.push(dotenv_error(&dotenv_path, line, message));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    // A secret-named variable may be interpolated anywhere (`command: --password ${DB_PASSWORD}`):
    // its value is masked wherever it shows up, not only in `environment`. A `.env` variable
    // nothing uses never reaches a container, and is not expanded to be masked.
    let is_secret = |(k, v): &(&String, &String)| {
        crate::model::spec::is_secret_name(k) && v.chars().count() >= MIN_SECRET_LEN
    };
    secrets.extend(env.iter().filter(is_secret).map(|(_, v)| v.clone()));
    let outer = |n: &str| env.get(n).cloned();
    let dotenv = values::DotenvVars::new(
        &entries,
        &outer,
        interpolate::MAX_VALUE_BYTES,
        interpolate::MAX_FILE_BYTES,
    );
    let (interp_errors, mut used) = values::interpolate_file(&mut root, env, &dotenv);
    let dotenv_errors = |errors: &mut Vec<ManifestError>| {
        for (line, message) in dotenv.take_errors() {
            errors.push(dotenv_error(&dotenv_path, line, message));
        }
    };
    if !interp_errors.is_empty() {
        errors.extend(
            interp_errors
                .into_iter()
                .map(|(line, column, key, message)| ManifestError {
                    file: file.clone(),
                    line,
                    column,
                    key,
                    message,
                }),
        );
        dotenv_errors(errors);
        for name in used.iter() {
            if let interpolate::Var::Set(v) = dotenv.get(name) {
                if is_secret(&(name, &v)) {
                    secrets.insert(v);
                }
            }
        }
        return None;
    }

    // The services may still look `.env` variables up: a bare `environment: [K]`, and the
    // references inside their env files. Those that may be (their names are written there)
    // are expanded for them; the others stay unexpanded.
    let mut note = |text: &str| {
        used.extend(
            values::name_words(text)
                .filter(|w| dotenv.defines(w) && !env.contains_key(*w))
                .map(str::to_string),
        );
    };
    interpolate::each_scalar(&root, &mut note);
    for path in env_file_paths(&root, &dir) {
        if let Ok(Some(bytes)) = tree.read(&path) {
            note(&String::from_utf8_lossy(&bytes));
        }
    }
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for name in used {
        if let interpolate::Var::Set(v) = dotenv.get(&name) {
            vars.insert(name, v);
        }
    }
    dotenv_errors(errors);
    secrets.extend(vars.iter().filter(is_secret).map(|(_, v)| v.clone()));
    for (k, v) in env {
        vars.insert(k.clone(), v.clone());
    }

    let mut d = Diag::new(&file);
    let input = compose::Input {
        folder_name: folder,
        dir: &dir,
        vars: &vars,
        tree,
        hosts,
        profiles,
        proxy,
    };
    let stack = compose::read(&mut d, &root, &input);
    secrets.append(&mut d.secrets);
    errors.extend(d.errors);
    stack
}

/// An error in a stack's `.env`, on the line it names (the file as a whole when 0).
fn dotenv_error(path: &str, line: usize, message: String) -> ManifestError {
    ManifestError {
        file: path.to_string(),
        line,
        column: usize::from(line > 0),
        key: String::new(),
        message,
    }
}

/// The repository paths of the env files a stack's services name (`env_file: x`, or a list of
/// `x` and `{path: x}`), relative to the stack's folder; those leaving the repository are left
/// out (the services' reader reports them).
fn env_file_paths(root: &yaml::Node, dir: &str) -> Vec<String> {
    use yaml::{Kind, Node};
    fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
        match &node.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    let mut out = Vec::new();
    let Some(Kind::Map(services)) = get(root, "services").map(|s| &s.kind) else {
        return out;
    };
    for (_, service) in services {
        let Some(v) = get(service, "env_file") else {
            continue;
        };
        let items: Vec<&Node> = match &v.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![v],
        };
        for item in items {
            let file = match &item.kind {
                Kind::Map(_) => get(item, "path").and_then(Node::scalar),
                _ => item.scalar(),
            };
            out.extend(file.and_then(|f| compose::resolve(dir, f)));
        }
    }
    out
}

/// A repository held in memory: files by repository-relative path, for tests.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    pub files: BTreeMap<String, Vec<u8>>,
}

#[cfg(test)]
impl MemoryTree {
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Adds a file (builder style).
    pub fn with(mut self, path: &str, contents: &str) -> MemoryTree {
        self.insert(path, contents);
        self
    }

    pub fn insert(&mut self, path: &str, contents: &str) {
        self.files.insert(
            path.trim_start_matches('/').to_string(),
            contents.as_bytes().to_vec(),
        );
    }
}

#[cfg(test)]
impl RepoTree for MemoryTree {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.files.get(path).cloned())
    }

    fn list(&self, dir: &str) -> Result<Vec<DirEntry>, String> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{}/", dir.trim_end_matches('/'))
        };
        let mut out: BTreeSet<DirEntry> = BTreeSet::new();
        for path in self.files.keys() {
            if let Some(rest) = path.strip_prefix(&prefix) {
                match rest.split_once('/') {
                    Some((d, _)) => out.insert(DirEntry {
                        name: d.to_string(),
                        is_dir: true,
                    }),
                    None => out.insert(DirEntry {
                        name: rest.to_string(),
                        is_dir: false,
                    }),
                };
            }
        }
        Ok(out.into_iter().collect())
    }

    fn describe(&self) -> String {
        "the in-memory repository".into()
    }
}
