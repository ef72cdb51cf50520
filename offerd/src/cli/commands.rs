//! `offerd apps`, `tasks`, `scale`, `kill`, `agents`.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ClientAuth, OfferdClient, app_path};

#[derive(clap::Args, Debug)]
pub struct JsonFlag {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub auth: ClientAuth,
}

#[derive(clap::Args, Debug)]
pub struct TasksArgs {
    /// Only the tasks of this app
    pub app: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub auth: ClientAuth,
}

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    /// App id
    pub app: String,
    /// New number of instances
    pub instances: u32,
    /// Override a deployment in progress
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub auth: ClientAuth,
}

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Task id
    pub task: String,
    /// Also lower the app's instances, so the task is not replaced
    #[arg(long)]
    pub scale: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub auth: ClientAuth,
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub async fn apps(c: &OfferdClient, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut v = c.get("/v2/apps", &[("embed", "apps.counts")]).await?;
    // Marathon itself, or an offerd before autoscaling, has no such route: no column then.
    let scaling: std::collections::HashMap<String, Value> = c
        .get("/v1/autoscale/status", &[])
        .await
        .ok()
        .and_then(|st| st["apps"].as_array().cloned())
        .into_iter()
        .flatten()
        .map(|a| (s(&a["appId"]).to_string(), a))
        .collect();
    if as_json {
        for a in v["apps"].as_array_mut().into_iter().flatten() {
            if let Some(st) = scaling.get(s(&a["id"])) {
                a["autoscale"] = st.clone();
            }
        }
        print_json(&v["apps"]);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:>9} {:>7} {:>7} {:>6} {:>7}  {:<9}  AUTOSCALE",
        "ID", "INSTANCES", "RUNNING", "STAGED", "CPUS", "MEM", "DEPLOYING"
    );
    for a in v["apps"].as_array().into_iter().flatten() {
        println!(
            "{:<32} {:>9} {:>7} {:>7} {:>6} {:>7}  {:<9}  {}",
            s(&a["id"]),
            a["instances"],
            a["tasksRunning"],
            a["tasksStaged"],
            a["cpus"],
            a["mem"],
            if a["deployments"].as_array().is_some_and(|d| !d.is_empty()) {
                "yes"
            } else {
                "no"
            },
            scaling
                .get(s(&a["id"]))
                .map_or_else(|| "-".to_string(), autoscale_cell)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `rps 42.50/50 [1..10] steady`, or `... hold: <why>`.
fn autoscale_cell(st: &Value) -> String {
    let value = st["value"]
        .as_f64()
        .map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    let target = st["target"]
        .as_f64()
        .map_or_else(|| "-".to_string(), |t| t.to_string());
    let mut cell = format!(
        "{} {value}/{target} [{}..{}] {}",
        s(&st["metric"]),
        st["min"],
        st["max"],
        s(&st["decision"])
    );
    if st["decision"] == "hold" {
        cell.push_str(": ");
        cell.push_str(s(&st["reason"]));
    }
    cell
}

pub async fn tasks(c: &OfferdClient, args: TasksArgs) -> anyhow::Result<ExitCode> {
    let v = match &args.app {
        Some(app) => c.get(&format!("{}/tasks", app_path(app)), &[]).await?,
        None => c.get("/v2/tasks", &[]).await?,
    };
    if args.json {
        print_json(&v["tasks"]);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<56} {:<14} {:<16} {:<14} PORTS",
        "ID", "STATE", "HOST", "AGENT"
    );
    for t in v["tasks"].as_array().into_iter().flatten() {
        let ports: Vec<String> = t["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p.to_string())
            .collect();
        println!(
            "{:<56} {:<14} {:<16} {:<14} {}",
            s(&t["id"]),
            s(&t["state"]),
            s(&t["host"]),
            s(&t["slaveId"]),
            ports.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn scale(c: &OfferdClient, args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let query: &[(&str, &str)] = if args.force {
        &[("force", "true")]
    } else {
        &[]
    };
    let v = c
        .call(
            Method::PUT,
            &app_path(&args.app),
            query,
            Some(&json!({ "instances": args.instances })),
        )
        .await?;
    if args.json {
        print_json(&v);
    } else {
        println!(
            "scaling {} to {} (deployment {})",
            args.app,
            args.instances,
            s(&v["deploymentId"])
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn kill(c: &OfferdClient, args: KillArgs) -> anyhow::Result<ExitCode> {
    let query: &[(&str, &str)] = if args.scale {
        &[("scale", "true")]
    } else {
        &[]
    };
    let v = c
        .call(
            Method::POST,
            "/v2/tasks/delete",
            query,
            Some(&json!({ "ids": [args.task] })),
        )
        .await?;
    if args.json {
        print_json(&v);
    } else if args.scale {
        println!(
            "killed {} and scaled its app down (deployment {})",
            args.task,
            s(&v["deploymentId"])
        );
    } else {
        println!("killed {} (it will be replaced)", args.task);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub action: Option<AgentsAction>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub auth: ClientAuth,
}

#[derive(clap::Subcommand, Debug)]
pub enum AgentsAction {
    /// Forget a lost agent now (a connected one is refused); it must register to come back
    Remove(RemoveAgentArgs),
}

#[derive(clap::Args, Debug)]
pub struct RemoveAgentArgs {
    /// Node name of the agent
    pub node: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub async fn agents(c: &OfferdClient, args: AgentsArgs) -> anyhow::Result<ExitCode> {
    if let Some(AgentsAction::Remove(r)) = args.action {
        let v = c
            .call(Method::DELETE, &format!("/v1/agents/{}", r.node), &[], None)
            .await?;
        if r.json {
            print_json(&v);
        } else {
            println!("{}: {}", r.node, s(&v["state"]));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let as_json = args.json;
    let v = c.get("/v1/agents", &[]).await?;
    if as_json {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<16} {:<7} {:>5} {:>13} {:>17}",
        "NODE", "ADDRESS", "STATE", "TASKS", "CPUS used/all", "MEM used/all"
    );
    for a in v.as_array().into_iter().flatten() {
        println!(
            "{:<20} {:<16} {:<7} {:>5} {:>13} {:>17}",
            s(&a["node"]),
            s(&a["address"]),
            s(&a["state"]),
            a["tasks"],
            format!("{}/{}", a["used"]["cpus"], a["resources"]["cpus"]),
            format!("{}/{}", a["used"]["mem"], a["resources"]["mem"]),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    /// Node name of the agent
    pub node: String,
    /// Wait until the agent is drained (no task left), printing progress
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub auth: ClientAuth,
}

pub async fn drain(c: &OfferdClient, args: DrainArgs, on: bool) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/agents/{}/drain", args.node);
    let method = if on { Method::POST } else { Method::DELETE };
    let mut v = c.call(method, &path, &[], None).await?;
    if on && args.wait {
        let mut last = None;
        loop {
            let agents = c.get("/v1/agents", &[]).await?;
            let me = agents
                .as_array()
                .and_then(|a| a.iter().find(|a| a["node"] == args.node.as_str()))
                .cloned()
                .unwrap_or(Value::Null);
            let tasks = me["tasks"].as_u64().unwrap_or(0);
            if last != Some(tasks) && !args.json {
                eprintln!("{}: {} task(s) left", args.node, tasks);
                last = Some(tasks);
            }
            if me["state"] == "drained" {
                v = json!({ "node": args.node, "state": "drained" });
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    if args.json {
        print_json(&v);
    } else {
        println!("{}: {}", args.node, s(&v["state"]));
    }
    Ok(ExitCode::SUCCESS)
}
