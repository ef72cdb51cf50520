//! Marathon 1.5+ networking as data: the app's `networks` (`host`, `container/bridge`, or named
//! `container` networks), and the messages both readers of networking share (the container's
//! and the app's validation). Turning the older form (`container.docker.network`) into this one
//! is part of parsing an app (`validate::networking`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Marathon's network modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    #[serde(rename = "host")]
    Host,
    #[serde(rename = "container/bridge")]
    ContainerBridge,
    #[serde(rename = "container")]
    Container,
}

/// RAML's default mode is `container`.
fn container_mode() -> NetworkMode {
    NetworkMode::Container
}

/// One entry of the app's `networks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default = "container_mode")]
    pub mode: NetworkMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Network {
    pub fn host() -> Network {
        Network {
            mode: NetworkMode::Host,
            name: None,
            labels: BTreeMap::new(),
        }
    }

    pub(crate) fn of_mode(mode: NetworkMode, name: Option<String>) -> Network {
        Network {
            mode,
            name,
            labels: BTreeMap::new(),
        }
    }
}

/// Whether any network is not the host's (the app's ports are then its port mappings).
pub fn has_non_host(networks: &[Network]) -> bool {
    networks.iter().any(|n| n.mode != NetworkMode::Host)
}

// Marathon's messages (NetworkValidation, AppValidation) that the container's rules use too.
pub(crate) const NETWORK_NAME_REQUIRED: &str =
    "Network name must be specified when container network is selected.";
pub(crate) const NO_PORT_MAPPINGS_ON_HOST: &str =
    "portMappings are not allowed with host-networking";
