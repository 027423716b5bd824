//! The containers, networks and volumes of the Compose projects the fleet file adopts
//! (`model::adopt`), read into the host's snapshot as if they carried the fleet's label.
//!
//! Ownership widens here, and only here, by the adoption record: a container is taken only
//! when it carries `com.docker.compose.project=<project>` for a project adopted on this host,
//! no `convoy.fleet` label (another fleet's container is never claimed), and is no
//! `docker-compose run` one-off. Its stack is the record's, its service and slot Compose's
//! labels, its spec hash empty (the planner then decides from drift alone). Compose's own
//! bookkeeping (its `com.docker.compose.*` labels, the container-name alias Compose v2 adds) is
//! not the user's setting and is left out of `actual`, so that it never reads as drift. It only
//! reads; it must not list anything but the adopted projects' resources.

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions, ListVolumesOptions};

use crate::model::adopt::{
    COMPOSE_LABEL_PREFIX, COMPOSE_NUMBER, COMPOSE_ONEOFF, COMPOSE_PROJECT, COMPOSE_SERVICE,
};
use crate::model::observed::{HostSnapshot, ImageDefaults, ObservedNetwork, ObservedResource};
use crate::model::spec::{DesiredState, LABEL_FLEET};

use super::{DockerError, Engine};

/// `com.docker.compose.network`, `com.docker.compose.volume`: the Compose-level name.
const COMPOSE_NETWORK: &str = "com.docker.compose.network";
const COMPOSE_VOLUME: &str = "com.docker.compose.volume";

impl Engine {
    /// `observe`, then the projects `desired` adopts on `host` read into the same snapshot.
    pub async fn observe_with_adopted(
        &self,
        desired: &DesiredState,
        host: &str,
        images: &BTreeMap<(String, String), String>,
    ) -> Result<HostSnapshot, DockerError> {
        let mut snap = self.observe(&desired.fleet, images).await?;
        for a in desired.settings.adopted.iter().filter(|a| a.host == host) {
            self.observe_adopted(&mut snap, &a.project, &a.stack, images)
                .await?;
        }
        Ok(snap)
    }

    /// Reads the containers, networks and volumes of Compose project `project` into `snap`,
    /// as stack `stack`.
    pub async fn observe_adopted(
        &self,
        snap: &mut HostSnapshot,
        project: &str,
        stack: &str,
        images: &BTreeMap<(String, String), String>,
    ) -> Result<(), DockerError> {
        let filter = || Some(project_filter(project));
        for mut oc in self.project_containers(project).await? {
            oc.stack = stack.to_string();
            if let Some(image) = images.get(&(oc.stack.clone(), oc.service.clone())) {
                if !snap.image_ids.contains_key(image) {
                    if let Some(id) = self.image_id(image).await? {
                        snap.image_ids.insert(image.clone(), id);
                    }
                }
            }
            snap.foreign_names.remove(&oc.name);
            snap.adopted.insert(oc.name.clone(), project.to_string());
            snap.containers.insert(oc.name.clone(), oc);
        }

        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions { filters: filter() }))
            .await
            .map_err(|e| self.err(format!("list networks of project `{project}`"), e))?;
        for n in networks {
            let labels = n.labels.unwrap_or_default();
            let (Some(id), Some(name)) = (n.id, n.name) else {
                continue;
            };
            if labels.contains_key(LABEL_FLEET)
                || labels.get(COMPOSE_PROJECT).map(String::as_str) != Some(project)
            {
                continue;
            }
            let inspected = match self
                .docker
                .inspect_network(
                    &id,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            {
                Ok(n) => n,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => continue,
                Err(e) => return Err(self.err(format!("inspect network {id}"), e)),
            };
            let network = ObservedNetwork {
                id: id.clone(),
                stack: stack.to_string(),
                resource: labels.get(COMPOSE_NETWORK).cloned().unwrap_or_default(),
                created: super::observe::sortable_time(
                    inspected.created.as_deref().unwrap_or_default(),
                ),
                containers: inspected
                    .containers
                    .unwrap_or_default()
                    .into_values()
                    .filter_map(|c| c.name)
                    .collect(),
            };
            snap.foreign_networks.remove(&name);
            let held = snap.networks.entry(name).or_default();
            if !held.iter().any(|h| h.id == id) {
                held.push(network);
                held.sort_by(|a, b| a.id.cmp(&b.id));
            }
        }

        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions { filters: filter() }))
            .await
            .map_err(|e| self.err(format!("list volumes of project `{project}`"), e))?;
        for v in volumes.volumes.unwrap_or_default() {
            if v.labels.contains_key(LABEL_FLEET)
                || v.labels.get(COMPOSE_PROJECT).map(String::as_str) != Some(project)
            {
                continue;
            }
            snap.volumes.entry(v.name).or_insert(ObservedResource {
                stack: stack.to_string(),
                resource: v.labels.get(COMPOSE_VOLUME).cloned().unwrap_or_default(),
            });
        }
        Ok(())
    }
}

impl Engine {
    /// The containers of Compose project `project` that adoption may take, as observed
    /// containers with Compose's service and number as service and slot, no stack, no spec
    /// hash, and Compose's bookkeeping left out: not a one-off, not carrying any fleet's label.
    pub async fn project_containers(
        &self,
        project: &str,
    ) -> Result<Vec<crate::model::observed::ObservedContainer>, DockerError> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(project_filter(project)),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err(format!("list containers of project `{project}`"), e))?;
        let mut out = Vec::new();
        let mut defaults_of: BTreeMap<String, ImageDefaults> = BTreeMap::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            if labels.contains_key(LABEL_FLEET)
                || labels
                    .get(COMPOSE_ONEOFF)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"))
                || labels.get(COMPOSE_PROJECT).map(String::as_str) != Some(project)
            {
                continue;
            }
            let Some(id) = c.id else { continue };
            let inspect = match self.docker.inspect_container(&id, None).await {
                Ok(i) => i,
                // Removed between list and inspect: gone, which is what we observe.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => continue,
                Err(e) => return Err(self.err(format!("inspect container {id}"), e)),
            };
            let image_id = inspect.image.clone().unwrap_or_default();
            if !defaults_of.contains_key(&image_id) {
                let defaults = self.image_defaults(&image_id).await?;
                defaults_of.insert(image_id.clone(), defaults);
            }
            let defaults = defaults_of[&image_id].clone();
            let Some(mut oc) = super::observe::observed_container(inspect, defaults) else {
                continue;
            };
            oc.service = labels.get(COMPOSE_SERVICE).cloned().unwrap_or_default();
            oc.slot = labels
                .get(COMPOSE_NUMBER)
                .cloned()
                .unwrap_or_else(|| "1".into());
            oc.spec_hash = String::new();
            oc.commit = String::new();
            strip_compose_bookkeeping(&mut oc.actual, &oc.name);
            out.push(oc);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// What `convoy adopt` reads of Compose project `project`: its containers
    /// (`project_containers`), and for each network and named volume they use, the
    /// Compose-level name when the project made it (empty: not the project's, external).
    pub async fn project_view(
        &self,
        project: &str,
    ) -> Result<crate::model::compose_project::ProjectView, DockerError> {
        let containers = self.project_containers(project).await?;
        let mut view = crate::model::compose_project::ProjectView {
            project: project.to_string(),
            ..Default::default()
        };
        for c in &containers {
            for net in c.actual.networks.keys() {
                if view.networks.contains_key(net) {
                    continue;
                }
                let labels = match self
                    .docker
                    .inspect_network(
                        net,
                        None::<bollard::query_parameters::InspectNetworkOptions>,
                    )
                    .await
                {
                    Ok(n) => n
                        .labels
                        .unwrap_or_default()
                        .into_iter()
                        .collect::<BTreeMap<_, _>>(),
                    Err(e) => return Err(self.err(format!("inspect network `{net}`"), e)),
                };
                view.networks
                    .insert(net.clone(), compose_name(&labels, project, COMPOSE_NETWORK));
            }
            for m in &c.actual.mounts {
                if m.kind != crate::model::spec::MountKind::Volume
                    || view.volumes.contains_key(&m.source)
                {
                    continue;
                }
                let labels: BTreeMap<String, String> =
                    match self.docker.inspect_volume(&m.source).await {
                        Ok(v) => v.labels.into_iter().collect(),
                        Err(e) => return Err(self.err(format!("inspect volume `{}`", m.source), e)),
                    };
                let name = compose_name(&labels, project, COMPOSE_VOLUME);
                view.volumes.insert(m.source.clone(), name);
            }
        }
        view.containers = containers;
        Ok(view)
    }

    /// Every Compose project with a container on this engine that no fleet labels.
    pub async fn compose_projects(&self) -> Result<Vec<String>, DockerError> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![COMPOSE_PROJECT.to_string()],
                )])),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err("list Compose containers", e))?;
        let mut out: Vec<String> = list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                if labels.contains_key(LABEL_FLEET) {
                    return None;
                }
                labels.get(COMPOSE_PROJECT).cloned()
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

fn project_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{COMPOSE_PROJECT}={project}")],
    )])
}

/// The Compose-level name of a network or volume of `project` (its `key` label), empty when
/// the project did not make it.
fn compose_name(labels: &BTreeMap<String, String>, project: &str, key: &str) -> String {
    if labels.get(COMPOSE_PROJECT).map(String::as_str) != Some(project) {
        return String::new();
    }
    labels.get(key).cloned().unwrap_or_default()
}

/// Leaves out of an adopted container's settings what Compose added for itself: its labels
/// and the alias of the container's own name on each network (Compose v2).
pub(crate) fn strip_compose_bookkeeping(
    actual: &mut crate::model::spec::ContainerSpec,
    name: &str,
) {
    actual
        .labels
        .retain(|k, _| !k.starts_with(COMPOSE_LABEL_PREFIX));
    for att in actual.networks.values_mut() {
        att.aliases.retain(|a| a != name);
    }
}

#[cfg(test)]
mod tests {
    use super::strip_compose_bookkeeping;
    use crate::model::spec::{ContainerSpec, NetworkAttachment};

    #[test]
    fn compose_bookkeeping_is_not_a_setting() {
        let mut c = ContainerSpec::default();
        c.labels
            .insert("com.docker.compose.project".into(), "shop".into());
        c.labels
            .insert("com.docker.compose.config-hash".into(), "abc".into());
        c.labels.insert("team".into(), "web".into());
        c.networks.insert(
            "shop_default".into(),
            NetworkAttachment {
                aliases: vec!["shop-web-1".into(), "web".into()],
                ..Default::default()
            },
        );
        strip_compose_bookkeeping(&mut c, "shop-web-1");
        assert_eq!(c.labels.keys().collect::<Vec<_>>(), ["team"]);
        assert_eq!(c.networks["shop_default"].aliases, ["web"]);
    }
}
