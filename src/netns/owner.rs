// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who owns a network namespace: the container runtime, the container's id
//! and its name, read from a member process's cgroup path and the runtime's
//! own state files.
//!
//! The cgroup path names the runtime and the id; only the runtime's state
//! names the container. Each runtime's state is one small file per
//! container (or one list), read only for the namespaces found, so the cost
//! grows with the namespaces, not with the containers on disk.

use serde::Serialize;

use crate::sysroot::SysRoot;

/// The software that made the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// The initial network namespace (PID 1's).
    Host,
    /// Docker (moby).
    Docker,
    /// containerd: the Kubernetes CRI plugin or nerdctl.
    Containerd,
    /// CRI-O.
    Crio,
    /// Podman (libpod).
    Podman,
    /// A Kubernetes pod whose runtime the cgroup path does not tell
    /// (the cgroupfs driver's `kubepods/.../<id>`).
    Kubernetes,
    /// A name under `/run/netns` (`ip netns add`).
    Netns,
    /// Nothing better known: the first process's command.
    Process,
}

impl Runtime {
    /// Lower-case name, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Host => "host",
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "kubernetes",
            Runtime::Netns => "netns",
            Runtime::Process => "process",
        }
    }
}

/// A container found in a cgroup path: which runtime, which id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The runtime the path names.
    pub runtime: Runtime,
    /// The container id (hex only: it becomes part of a path).
    pub id: String,
}

/// The owner of a namespace, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Which software.
    pub runtime: Runtime,
    /// The container id, when a container.
    pub id: Option<String>,
    /// The best name found: container name, `namespace/pod`, `ip netns`
    /// name or command.
    pub name: Option<String>,
}

impl Owner {
    /// One short label: `docker web`, `k8s default/api`, `netns blue`,
    /// `process sleep`, `host`.
    pub fn label(&self) -> String {
        let short = |id: &str| id.chars().take(12).collect::<String>();
        match (self.runtime, &self.name, &self.id) {
            (Runtime::Host, _, _) => "host".into(),
            (r, Some(n), _) => format!("{} {n}", r.name()),
            (r, None, Some(id)) => format!("{} {}", r.name(), short(id)),
            (r, None, None) => r.name().into(),
        }
    }
}

/// A container id as the runtimes write them: 64 hex digits (some tools
/// shorten to 12). Anything else is refused, because the id is joined into
/// a path.
fn is_id(s: &str) -> bool {
    (12..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container named by a `/proc/<pid>/cgroup` text, if any. Knows the
/// systemd-driver scopes (`docker-<id>.scope`, `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `libpod-<id>.scope`, `nerdctl-<id>.scope`) and the
/// cgroupfs-driver paths (`/docker/<id>`, `/libpod_parent/libpod-<id>`,
/// `/kubepods/<qos>/pod<uid>/<id>`). The runtimes' monitors
/// (`crio-conmon-`, `libpod-conmon-`) are not the container.
pub fn parse_cgroup(text: &str) -> Option<ContainerRef> {
    let found = |runtime, id: &str| {
        is_id(id).then(|| ContainerRef {
            runtime,
            id: id.to_ascii_lowercase(),
        })
    };
    const SCOPES: [(&str, Runtime); 5] = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
        ("libpod-", Runtime::Podman),
        ("nerdctl-", Runtime::Containerd),
    ];
    // Every hierarchy is tried: under cgroup v1 some lines are "/" while
    // others carry the container's path.
    for path in text.lines().filter_map(|l| l.splitn(3, ':').nth(2)) {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for (i, comp) in comps.iter().enumerate() {
            let scope = comp.strip_suffix(".scope").unwrap_or("");
            let hit = (SCOPES.iter())
                .find_map(|(prefix, rt)| found(*rt, scope.strip_prefix(prefix)?))
                .or_else(|| found(Runtime::Podman, comp.strip_prefix("libpod-")?))
                .or_else(|| {
                    found(
                        Runtime::Docker,
                        comps.get(i + 1).filter(|_| *comp == "docker")?,
                    )
                });
            if hit.is_some() {
                return hit;
            }
        }
        if comps.iter().any(|c| c.starts_with("kubepods")) {
            if let Some(r) = comps.last().and_then(|id| found(Runtime::Kubernetes, id)) {
                return Some(r);
            }
        }
    }
    None
}

/// The `Name` of a Docker `config.v2.json`, without Docker's leading `/`.
pub fn parse_docker_config(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Cfg {
        #[serde(rename = "Name")]
        name: String,
    }
    let c: Cfg = serde_json::from_str(text).ok()?;
    let n = c.name.trim_start_matches('/');
    (!n.is_empty()).then(|| n.to_string())
}

/// The pod or container name in an OCI `config.json`'s annotations, as
/// containerd's CRI plugin, CRI-O and nerdctl write them: `namespace/pod`
/// for a Kubernetes pod, the nerdctl name otherwise.
pub fn parse_oci_annotations(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: std::collections::HashMap<String, String>,
    }
    let s: Spec = serde_json::from_str(text).ok()?;
    let a = |k: &str| s.annotations.get(k).filter(|v| !v.is_empty());
    let pod = a("io.kubernetes.cri.sandbox-name").or_else(|| a("io.kubernetes.pod.name"));
    let ns = a("io.kubernetes.cri.sandbox-namespace").or_else(|| a("io.kubernetes.pod.namespace"));
    match (ns, pod) {
        (Some(ns), Some(pod)) => Some(format!("{ns}/{pod}")),
        (None, Some(pod)) => Some(pod.clone()),
        _ => a("nerdctl/name").cloned(),
    }
}

/// The first name of container `id` in containers/storage's
/// `containers.json` (Podman and CRI-O), a list of `{id, names}`.
pub fn parse_storage_containers(text: &str, id: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct C {
        id: String,
        #[serde(default)]
        names: Vec<String>,
    }
    let list: Vec<C> = serde_json::from_str(text).ok()?;
    list.into_iter()
        .find(|c| c.id.eq_ignore_ascii_case(id))
        .and_then(|c| c.names.into_iter().find(|n| !n.is_empty()))
}

const CONTAINERD_TASKS: &str = "run/containerd/io.containerd.runtime.v2.task";
const STORAGE_LIST: &str = "var/lib/containers/storage/overlay-containers/containers.json";

/// The container's name from its runtime's state files, or None.
pub fn container_name(root: &SysRoot, c: &ContainerRef) -> Option<String> {
    let read = |rel: &str| root.read_some(rel);
    let id = &c.id;
    match c.runtime {
        Runtime::Docker => read(&format!("var/lib/docker/containers/{id}/config.v2.json"))
            .and_then(|t| parse_docker_config(&t)),
        Runtime::Containerd | Runtime::Kubernetes | Runtime::Crio => {
            // containerd keeps one bundle per containerd namespace
            // (k8s.io for Kubernetes, default for nerdctl, moby for Docker);
            // CRI-O keeps the spec in the container's userdata.
            let mut candidates = vec![format!("{CONTAINERD_TASKS}/k8s.io/{id}/config.json")];
            if let Ok(dir) = std::fs::read_dir(root.path(CONTAINERD_TASKS)) {
                for e in dir.flatten().take(64) {
                    let ns = e.file_name().to_string_lossy().into_owned();
                    if ns != "k8s.io" && !ns.contains('/') && !ns.starts_with('.') {
                        candidates.push(format!("{CONTAINERD_TASKS}/{ns}/{id}/config.json"));
                    }
                }
            }
            for base in ["run", "var/lib"] {
                candidates.push(format!(
                    "{base}/containers/storage/overlay-containers/{id}/userdata/config.json"
                ));
            }
            candidates
                .iter()
                .find_map(|p| read(p).and_then(|t| parse_oci_annotations(&t)))
                .or_else(|| read(STORAGE_LIST).and_then(|t| parse_storage_containers(&t, id)))
        }
        Runtime::Podman => read(STORAGE_LIST).and_then(|t| parse_storage_containers(&t, id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e8a1c2b7d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";

    #[test]
    fn cgroup_paths_of_each_runtime() {
        let cases = [
            (format!("0::/system.slice/docker-{ID}.scope\n"), Runtime::Docker),
            (format!("12:pids:/docker/{ID}\n0::/\n"), Runtime::Docker),
            (
                format!("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-{ID}.scope\n"),
                Runtime::Containerd,
            ),
            (
                format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podx.slice/crio-{ID}.scope\n"),
                Runtime::Crio,
            ),
            (format!("0::/machine.slice/libpod-{ID}.scope/container\n"), Runtime::Podman),
            (format!("1:name=systemd:/libpod_parent/libpod-{ID}\n"), Runtime::Podman),
            (
                format!("4:memory:/kubepods/burstable/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/{ID}\n"),
                Runtime::Kubernetes,
            ),
            (format!("0::/user.slice/user-1000.slice/user@1000.service/app.slice/nerdctl-{ID}.scope\n"), Runtime::Containerd),
        ];
        for (text, runtime) in cases {
            assert_eq!(
                parse_cgroup(&text),
                Some(ContainerRef {
                    runtime,
                    id: ID.into()
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn cgroup_paths_that_are_not_containers() {
        for text in [
            "0::/init.scope\n",
            "0::/system.slice/docker.service\n",
            "0::/user.slice/user-0.slice/session-3.scope\n",
            &format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"),
            &format!("0::/system.slice/crio-conmon-{ID}.scope\n"),
            "0::/system.slice/docker-../../etc.scope\n",
            "0::/docker/not-hex\n",
            "garbage",
            "",
        ] {
            assert_eq!(parse_cgroup(text), None, "{text}");
        }
    }

    #[test]
    fn owner_labels() {
        let o = |runtime, id: Option<&str>, name: Option<&str>| Owner {
            runtime,
            id: id.map(Into::into),
            name: name.map(Into::into),
        };
        assert_eq!(
            o(Runtime::Docker, Some(ID), Some("web")).label(),
            "docker web"
        );
        assert_eq!(
            o(Runtime::Docker, Some(ID), None).label(),
            "docker 3f4e8a1c2b7d"
        );
        assert_eq!(o(Runtime::Host, None, None).label(), "host");
        assert_eq!(o(Runtime::Netns, None, Some("blue")).label(), "netns blue");
    }
}
