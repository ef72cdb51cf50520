//! What offerd and taskrun agree on: Marathon's app definition (fields, defaults, validation with
//! Marathon's 422 detail paths), Mesos-style resource and attribute strings, constraints, task
//! states, the service name an app gets in the catalog, and the JSON of the agent protocol
//! (registration, desired task set, status batches).
//!
//! Everything here is plain data and pure functions so that both sides, the scheduler benchmark
//! and the tests share one definition of each rule.

mod agent;
mod app;
pub mod autoscale;
mod constraint;
mod container;
mod host_policy;
mod network;
mod resources;
mod task_state;
mod time;
mod validate;
mod violation;

pub use agent::{
    AgentInfo, AgentRegistration, DesiredTasks, RegisterResponse, StatusBatch, TaskSpec,
    TaskStatusUpdate,
};
pub use app::{
    App, CommandValue, HealthCheckDef, PortDefinition, UpgradeStrategy, VersionInfo, merge_update,
    service_name, task_id_for,
};
pub use constraint::{Constraint, Operator};
pub use container::{
    DockerNetwork, DockerSpec, Parameter, PortMapping, SUPPORTED_PARAMETERS, Volume, docker_spec,
};
pub use host_policy::{HostPolicy, PRIVILEGED_PARAMETERS};
pub use network::{Network, NetworkMode, has_non_host};
pub use resources::{Attributes, PortRange, ResourceError, Resources, parse_attributes};
pub use task_state::TaskState;
pub use time::{iso8601_millis, now_millis};
pub use validate::{MAX_ID_LEN, MAX_INSTANCES, canonical, normalize_id, parse_app};
pub use violation::{ValidationError, Violation, marathon_path};
