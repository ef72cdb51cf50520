//! `cairn-bench place`: offerd's placement alone, in process — N apps × M instances with a mix
//! of Marathon constraints on simulated agents — reporting placements per second and how tightly
//! the tasks were packed compared with the lower bound (total demand / agent size).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use cairn_marathon::{Constraint, Operator, PortRange};
use cairn_placement::{Demand, Offer, Placer};

#[derive(clap::Args, Debug)]
pub struct PlaceArgs {
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    #[arg(long, default_value_t = 1000)]
    pub apps: usize,
    #[arg(long, default_value_t = 100)]
    pub instances: usize,
    /// CPUs per agent
    #[arg(long, default_value_t = 64.0)]
    pub agent_cpus: f64,
    /// Memory per agent (MB)
    #[arg(long, default_value_t = 65536.0)]
    pub agent_mem: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn constraint(field: &str, op: Operator, value: Option<&str>) -> Constraint {
    Constraint {
        field: field.into(),
        operator: op,
        value: value.map(String::from),
    }
}

pub fn run(args: PlaceArgs) -> anyhow::Result<()> {
    let mut rng = Rng(args.seed.max(1));
    let mut offers: Vec<Offer> = (0..args.agents)
        .map(|i| Offer {
            node: format!("agent-{i:05}"),
            attributes: [
                ("rack".to_string(), format!("r{}", i % 40)),
                ("zone".to_string(), format!("z{}", i % 4)),
            ]
            .into_iter()
            .collect(),
            total_cpus: args.agent_cpus,
            total_mem: args.agent_mem,
            free_cpus: args.agent_cpus,
            free_mem: args.agent_mem,
            free_disk: 1_000_000.0,
            port_ranges: vec![PortRange {
                begin: 31000,
                end: 32000,
            }],
            used_ports: BTreeSet::new(),
            app_counts: HashMap::new(),
        })
        .collect();
    // The constraint mix: a fifth each of none, UNIQUE hostname, GROUP_BY zone, MAX_PER rack,
    // and LIKE on half the racks.
    let mixes: Vec<Vec<Constraint>> = vec![
        vec![],
        vec![constraint("hostname", Operator::Unique, None)],
        vec![constraint("zone", Operator::GroupBy, None)],
        vec![constraint("rack", Operator::MaxPer, Some("5"))],
        vec![constraint("rack", Operator::Like, Some("r[0-9]|r1[0-9]"))],
    ];
    let apps: Vec<(String, f64, f64, usize)> = (0..args.apps)
        .map(|i| {
            let cpus = [0.1, 0.25, 0.5, 1.0][rng.below(4) as usize];
            let mem = [64.0, 128.0, 256.0, 512.0][rng.below(4) as usize];
            (format!("/bench/app-{i:05}"), cpus, mem, i % mixes.len())
        })
        .collect();
    let (demand_cpus, demand_mem): (f64, f64) = apps
        .iter()
        .map(|(_, c, m, _)| (c * args.instances as f64, m * args.instances as f64))
        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));

    let start = Instant::now();
    let (mut placed, mut failed) = (0usize, 0usize);
    for (id, cpus, mem, mix) in &apps {
        let demand = Demand {
            app_id: id,
            cpus: *cpus,
            mem: *mem,
            disk: 0.0,
            ports: 1,
            required_ports: Vec::new(),
            constraints: &mixes[*mix],
        };
        let mut placer = Placer::new(&offers, demand).map_err(anyhow::Error::msg)?;
        for _ in 0..args.instances {
            match placer.place_one(&mut offers) {
                Ok(_) => placed += 1,
                Err(_) => failed += 1,
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let used: Vec<&Offer> = offers
        .iter()
        .filter(|o| o.free_cpus < o.total_cpus)
        .collect();
    let lower_bound = (demand_cpus / args.agent_cpus)
        .max(demand_mem / args.agent_mem)
        .ceil();
    let mean_load = used.iter().map(|o| o.load()).sum::<f64>() / used.len().max(1) as f64;
    let rate = placed as f64 / secs;
    println!(
        "tasks={} agents={} placed={placed} unplaced={failed}",
        args.apps * args.instances,
        args.agents
    );
    println!(
        "seconds={secs:.3} placements_per_s={rate:.0} vs_nomad_c1m_3750={:.1}x",
        rate / 3750.0
    );
    println!(
        "agents_used={} lower_bound={} ratio={:.3} mean_load_of_used={:.1}%",
        used.len(),
        lower_bound,
        used.len() as f64 / lower_bound.max(1.0),
        mean_load * 100.0
    );
    Ok(())
}
