//! taskrun: the node agent of cairn (Mesos agent + executor + registrator in one process).
//!
//! `taskrun agent` registers the node with offerd, long-polls the node's *desired* task set and
//! converges on it by comparing sets (start what it never ran, kill what is no longer wanted),
//! reports every state change in batches, registers running tasks as services with their health
//! checks in the catalog and runs those checks in-process (the `healthcheck` agent), and serves
//! task lists and logs over HTTP. Tasks run as processes (the exec driver) or, when the app has a
//! DOCKER container, as containers of the local Docker engine (the Docker driver). `taskrun run`
//! runs one task with the same exec driver in the foreground, like `docker run` for a process.
//!
//! Tasks outlive taskrun: each process runs under a small supervisor (`taskrun wrap`, the same
//! binary) in its own session, with its output appended straight to files in its sandbox and its
//! exit status written to a file there; each container is the engine's, its id recorded in the
//! sandbox and its output copied to the same files. A restarted agent re-adopts what still runs
//! and learns how the rest ended.
//!
//! Module map: [`cli`] (flags, wiring) · [`agent`] (task table, recovery, offerd protocol, one supervisor
//! over the exec and Docker drivers) ·
//! [`desired`] (set diff) · [`drain`] (deregister, wait, then kill) · [`status`] (batched status
//! updates) · [`catalog`] (services and checks) · [`checks`] (tasks' COMMAND checks as their
//! user) · [`http`] (API) · [`run`] (one foreground
//! task) · [`exec`] (spawn, wait, kill) · [`wrap`] (the per-task supervisor process) ·
//! [`container`] (which tasks are containers; Marathon's container → Docker's create body) ·
//! [`docker`] (engine calls: pull, create, wait, stop, list; Docker's timestamps) ·
//! [`docker_logs`] (container output into the sandbox) · [`logship`] (the tasks' output as
//! syslog to a collector, `--log-forward`) · [`outcome`] (how a task ended, for
//! both drivers) · [`sandbox`] (task.json, exit file, log file names, GC) · [`env`] (task environment) · [`limits`] (cgroup v2,
//! cgroup v1 or rlimits) · [`logs`] (rotation, tailing) · [`procfs`] (process identity, adoption) ·
//! [`node`] (host facts, default resources) · [`user`] (who a task runs as) · [`metrics`]
//! (`/metrics`: the tasks' and the node's figures, collected at scrape time) · [`cgroupfs`]
//! (cgroup files: v1 hierarchies, accounting).

pub mod agent;
pub mod catalog;
pub mod cgroupfs;
pub mod checks;
pub mod cli;
pub mod container;
pub mod desired;
pub mod docker;
pub mod docker_logs;
pub mod drain;
pub mod env;
pub mod exec;
pub mod http;
pub mod limits;
pub mod logs;
pub mod logship;
pub mod metrics;
pub mod node;
pub mod outcome;
pub mod procfs;
pub mod run;
pub mod sandbox;
pub mod status;
pub mod user;
pub mod wrap;
