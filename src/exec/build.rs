//! Images built from the repository (`build:`, issue 9), made present on the hosts whose
//! create and replace steps need them: built once per pass on the builder (`builder:` in
//! `convoy.yaml`, by default the local engine, else the first host), then shipped to each host
//! once, by image ID with the registry-less copy (`infra::images::push_image`), or through the
//! registry named by `image:` for a host with `images: pull` (the builder pushes `image:` and
//! the `build.tags` that name a registry, once per pass; the host pulls, even when it is the
//! builder itself).
//!
//! Content addressed: the tag `convoy-build/<stack>-<context folder>:<hash16>` names one context and
//! set of options, so a host or a builder that has the tag has the build, and nothing is built
//! or sent again. A no-op pass has no create step and never gets here. A failed build fails
//! the steps that need its image (with the build's last lines) before anything of theirs is
//! stopped; other services go on. It decides nothing about placement and touches no container.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::infra::docker::Engine;
use crate::model::plan::Replica;
use crate::model::spec::{BuildSpec, PullPolicy};

type Cell<T> = Arc<OnceCell<Result<T, String>>>;

/// The builds and transfers of one pass, each done once however many steps need it.
pub struct Builds {
    /// `builder:` as written; `None` for the default.
    setting: Option<String>,
    engines: Arc<BTreeMap<String, Engine>>,
    /// Hosts with `images: push`: they always get the image copied, never pulled.
    push_hosts: BTreeSet<String>,
    builder: OnceCell<Result<Engine, String>>,
    /// By Convoy's tag: the image ID on the builder.
    built: Mutex<BTreeMap<String, Cell<String>>>,
    /// By image reference: pushed to its registry from the builder.
    pushed: Mutex<BTreeMap<String, Cell<()>>>,
    /// By (host, Convoy's tag): present on the host.
    shipped: Mutex<BTreeMap<(String, String), Cell<()>>>,
}

impl Builds {
    /// Nothing is contacted until a step needs a build.
    pub fn new(
        setting: Option<String>,
        engines: Arc<BTreeMap<String, Engine>>,
        push_hosts: BTreeSet<String>,
    ) -> Builds {
        Builds {
            setting,
            engines,
            push_hosts,
            builder: OnceCell::new(),
            built: Mutex::default(),
            pushed: Mutex::default(),
            shipped: Mutex::default(),
        }
    }

    /// Makes the image of `replica`'s build present on `host` as its `pull_policy` says:
    /// `missing` and `build` build when the builder lacks the tag and ship when the host lacks
    /// it; `always` builds again once per pass (pulling the base images) and ships what
    /// changed; `never` builds and ships nothing and fails when the host lacks the image.
    pub async fn ensure(
        &self,
        engine: &Engine,
        host: &str,
        replica: &Replica,
    ) -> Result<(), String> {
        let Some(build) = &replica.spec.build else {
            return Ok(());
        };
        let image = &replica.spec.image;
        let policy = replica.spec.pull_policy;
        if policy == PullPolicy::Never {
            return match present(engine, image, &build.input.tag).await? {
                true => Ok(()),
                false => Err(format!(
                    "image `{image}` is not on host `{host}`, and service `{}/{}` has \
                     `pull_policy: never`: nothing is built for it; load the image on the host, \
                     or change the pull policy",
                    replica.stack, replica.service
                )),
            };
        }
        let key = (host.to_string(), build.input.tag.clone());
        let cell = cell(&self.shipped, key);
        cell.get_or_init(|| async {
            if policy != PullPolicy::Always && present(engine, image, &build.input.tag).await? {
                return Ok(());
            }
            let builder = self.builder().await?;
            let id = self
                .build(&builder, build, policy == PullPolicy::Always)
                .await?;
            self.ship(&builder, engine, host, replica, build, &id).await
        })
        .await
        .clone()
    }

    /// The builder's engine, resolved once.
    async fn builder(&self) -> Result<Engine, String> {
        self.builder
            .get_or_init(|| async {
                match self.setting.as_deref() {
                    Some("local") => local_engine().await,
                    Some(host) => self
                        .engines
                        .get(host)
                        .cloned()
                        .ok_or_else(|| format!("the builder, host `{host}`, is not connected")),
                    None => match local_engine().await {
                        Ok(e) => Ok(e),
                        Err(why) => self.engines.values().next().cloned().ok_or_else(|| {
                            format!("no engine to build on: {why}, and no host is connected")
                        }),
                    },
                }
            })
            .await
            .clone()
    }

    /// The image ID of `build` on the builder: built when missing (or always, `again`).
    async fn build(
        &self,
        builder: &Engine,
        build: &BuildSpec,
        again: bool,
    ) -> Result<String, String> {
        let input = build.input.clone();
        let cell = cell(&self.built, input.tag.clone());
        cell.get_or_init(|| async {
            if !again {
                if let Some(id) = builder.image_id(&input.tag).await.map_err(|e| e.to_string())? {
                    tracing::debug!(image = %input.tag, builder = %builder.host(), "already built");
                    for t in &input.tags {
                        builder.tag_image(&input.tag, t).await.map_err(|e| e.to_string())?;
                    }
                    return Ok(id);
                }
            }
            tracing::info!(
                image = %input.tag,
                context = %input.context,
                builder = %builder.host(),
                files = input.files.len(),
                "building image"
            );
            match builder.build_image(input.clone(), false, again).await {
                Ok(id) => {
                    tracing::info!(image = %input.tag, id = %crate::model::plan::short_id(&id), "image built");
                    Ok(id)
                }
                Err(e) => {
                    let mut msg = e.message;
                    if !e.last_lines.is_empty() {
                        msg.push_str("\nlast lines of the build:");
                        for l in &e.last_lines {
                            msg.push_str("\n  ");
                            msg.push_str(l);
                        }
                    }
                    Err(msg)
                }
            }
        })
        .await
        .clone()
    }

    /// Sends the built image to `host`, and tags it there as the service names it.
    async fn ship(
        &self,
        builder: &Engine,
        engine: &Engine,
        host: &str,
        replica: &Replica,
        build: &BuildSpec,
        id: &str,
    ) -> Result<(), String> {
        let image = replica.spec.image.as_str();
        let platform = replica.spec.platform.as_deref();
        let tag = &build.input.tag;
        if image != tag && !self.push_hosts.contains(host) && names_a_registry(image) {
            // Through the registry: the builder pushes once, the host pulls. Also when the
            // builder is this very host: `image:` names where the image is published, and the
            // pull proves the host can get it there (as every other `images: pull` host must).
            let pushed = cell(&self.pushed, image.to_string());
            pushed
                .get_or_init(|| async {
                    // `image:` first, then the `tags` that name a registry; a Docker Hub name
                    // (`team/app`) is not pushed: publishing there is not asked for by a tag.
                    for t in build.input.tags.iter().filter(|t| names_a_registry(t)) {
                        tracing::info!(image = %t, builder = %builder.host(), "pushing built image");
                        builder
                            .push_to_registry(t)
                            .await
                            .map_err(|e| format!("cannot push built image `{t}`: {e}"))?;
                    }
                    Ok(())
                })
                .await
                .clone()?;
            engine
                .ensure_image_for(image, platform, true)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(image = %image, host = %host, "pulled built image");
            return engine
                .tag_image(image, tag)
                .await
                .map_err(|e| e.to_string());
        }
        // The builder may be this very engine.
        if engine
            .image_id(tag)
            .await
            .map_err(|e| e.to_string())?
            .as_deref()
            == Some(id)
        {
            return retag(engine, tag, image).await;
        }
        match crate::infra::images::push_image(builder, engine, host, tag).await {
            Ok(outcome) => {
                tracing::info!(image = %tag, host = %host, outcome = ?outcome, "shipped built image");
            }
            Err(e) => {
                return Err(format!(
                    "cannot send built image `{tag}` to host `{host}`: {e}"
                ))
            }
        }
        retag(engine, tag, image).await
    }
}

/// Whether the host has this build: Convoy's tag, and the service's reference on the same ID.
async fn present(engine: &Engine, image: &str, tag: &str) -> Result<bool, String> {
    let Some(id) = engine.image_id(tag).await.map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    if image == tag {
        return Ok(true);
    }
    if engine
        .image_id(image)
        .await
        .map_err(|e| e.to_string())?
        .as_deref()
        != Some(id.as_str())
    {
        retag(engine, tag, image).await?;
    }
    Ok(true)
}

async fn retag(engine: &Engine, tag: &str, image: &str) -> Result<(), String> {
    if image == tag {
        return Ok(());
    }
    engine
        .tag_image(tag, image)
        .await
        .map_err(|e| e.to_string())
}

/// Whether a reference starts with a registry (`host:port/...`, `registry.example/...`,
/// `localhost/...`), as Docker tells one from a Docker Hub user name.
pub fn names_a_registry(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

fn cell<K: Ord, T>(map: &Mutex<BTreeMap<K, Cell<T>>>, key: K) -> Cell<T> {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

/// The engine of the machine Convoy runs on: `DOCKER_HOST` (unix) or the default socket.
async fn local_engine() -> Result<Engine, String> {
    let path = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let engine = Engine::unix("(local)", std::path::Path::new(&path)).map_err(|e| e.to_string())?;
    engine
        .ping()
        .await
        .map_err(|e| format!("the local engine at unix://{path} does not answer: {e}"))?;
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_told_from_hub_names() {
        assert!(names_a_registry("127.0.0.1:5000/app:1"));
        assert!(names_a_registry("registry.example/team/app"));
        assert!(names_a_registry("localhost/app"));
        assert!(!names_a_registry("team/app:1"));
        assert!(!names_a_registry("app"));
        assert!(!names_a_registry("convoy-build/web-app:0123"));
    }
}
