//! The catalog side of `scripts/bench/scale`: a fleet-sized catalog and a stream of changes
//! timed until the consumers show them.
//!
//! - `catalog-load` registers `--services` x `--instances` service instances spread over
//!   `--nodes` nodes (each with one passing service check and `lb_vhost` meta, so lbconf routes
//!   every service), over concurrent keep-alive connections.
//! - `changes` flips instances' checks (passing <-> critical) at `--rate` per second and times,
//!   for each change, the write's acknowledgement, the first dnsbridge answer that shows it
//!   (`--dns`: the instance's address in or out of `svc-S.service.<domain>` A) and the first
//!   HAProxy state that shows it (`--haproxy-socket`: the instance's address and port on a
//!   server of its backend that is not in maintenance, per `show servers state`). With
//!   `--new-service` it then registers one more service of `--instances` instances and times
//!   until HAProxy has its backend with every instance ready and DNS answers every address.
//!
//! Both use the same [`Layout`], so `changes` knows where each instance lives. Output on stdout
//! is one `key=value` line per phase for scripts; diagnostics go to stderr.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::common::{cpu_time, ms, percentile};
use crate::http::{self, Conn};

/// Where every instance lives. Instance `i` of service `s` is number `k = s * instances + i`
/// and sits on node `k % nodes`, so one service's instances are on distinct nodes as long as
/// there are at least as many nodes as instances per service.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct Layout {
    /// Services (svc-0, svc-1, ...)
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Instances of each service
    #[arg(long, default_value_t = 100)]
    instances: usize,
    /// Nodes the instances are spread over (node-0, node-1, ...)
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
}

impl Layout {
    fn check(&self) -> anyhow::Result<()> {
        if self.services == 0 || self.instances == 0 || self.nodes == 0 {
            bail!("--services, --instances and --nodes must be at least 1");
        }
        if self.nodes >= 1 << 24 {
            bail!("--nodes must be below 2^24 (addresses are 10.x.y.z)");
        }
        Ok(())
    }

    fn total(&self) -> usize {
        self.services * self.instances
    }

    fn node_of(&self, s: usize, i: usize) -> usize {
        (s * self.instances + i) % self.nodes
    }

    /// 10.0.0.1 upwards: records only, never contacted.
    fn node_addr(node: usize) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_0000 + node as u32 + 1)
    }

    fn service_name(s: usize) -> String {
        format!("svc-{s}")
    }

    /// A service's port (the same on every node; a node holds at most one instance of it).
    fn port(s: usize) -> u16 {
        20_000 + (s % 40_000) as u16
    }

    /// The catalog registration of one instance with its check in `status`.
    fn register_body(&self, service: &str, s: usize, i: usize, status: &str) -> Vec<u8> {
        let node = self.node_of(s, i);
        let id = format!("{service}-{i}");
        json!({
            "Node": format!("node-{node}"),
            "Address": Self::node_addr(node).to_string(),
            "Service": {
                "ID": id,
                "Service": service,
                "Port": Self::port(s),
                "Tags": ["v1"],
                "Meta": { "lb_vhost": format!("{service}.test") },
            },
            "Check": {
                "CheckID": format!("{id}:alive"),
                "Name": "alive",
                "ServiceID": id,
                "Status": status,
            },
        })
        .to_string()
        .into_bytes()
    }
}

/// Flags of `cairn-bench catalog-load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// catalogd: http://127.0.0.1:PORT (loopback only)
    #[arg(long)]
    url: String,
    #[command(flatten)]
    layout: Layout,
    /// Concurrent keep-alive connections
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// One PUT on a keep-alive connection; anything but `200 true` is an error naming the path.
async fn put(conn: &mut Conn, host: &str, path: &str, body: &[u8]) -> anyhow::Result<()> {
    conn.send(&http::request("PUT", host, path, body, None))
        .await?;
    let resp = conn.read_response().await?;
    if resp.status != 200 || resp.body.trim_ascii() != b"true" {
        bail!(
            "PUT {path}: status {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
    }
    Ok(())
}

/// Registers instances `0..count` of `service` (service number `s`) over `concurrency`
/// connections.
async fn register_service_instances(
    addr: SocketAddr,
    host: &str,
    layout: Layout,
    jobs: Arc<Vec<(String, usize, usize)>>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..concurrency.clamp(1, jobs.len().max(1)) {
        let (next, jobs, host) = (next.clone(), jobs.clone(), host.to_string());
        set.spawn(async move {
            let mut conn = Conn::connect(addr)
                .await
                .context("connecting to catalogd")?;
            loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some((service, s, i)) = jobs.get(j) else {
                    return anyhow::Ok(());
                };
                let body = layout.register_body(service, *s, *i, "passing");
                put(&mut conn, &host, "/v1/catalog/register", &body).await?;
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.context("registration task")??;
    }
    Ok(())
}

pub async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    args.layout.check()?;
    let (addr, host) = http::loopback_addr(&args.url)?;
    let layout = args.layout;
    let jobs: Vec<(String, usize, usize)> = (0..layout.services)
        .flat_map(|s| (0..layout.instances).map(move |i| (Layout::service_name(s), s, i)))
        .collect();
    let started = Instant::now();
    register_service_instances(addr, &host, layout, Arc::new(jobs), args.concurrency).await?;
    let took = started.elapsed();
    println!(
        "loaded instances={} services={} nodes={} seconds={:.2} per_s={:.0}",
        layout.total(),
        layout.services,
        layout.nodes.min(layout.total()),
        took.as_secs_f64(),
        layout.total() as f64 / took.as_secs_f64(),
    );
    Ok(())
}

/// Flags of `cairn-bench changes`.
#[derive(clap::Args, Debug)]
pub struct ChangesArgs {
    /// catalogd: http://127.0.0.1:PORT (loopback only)
    #[arg(long)]
    url: String,
    /// The layout `catalog-load` registered
    #[command(flatten)]
    layout: Layout,
    /// Changes per second
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Number of changes
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// dnsbridge's address (TCP), to time each change until DNS shows it
    #[arg(long)]
    dns: Option<SocketAddr>,
    /// DNS domain dnsbridge serves
    #[arg(long, default_value = "consul")]
    domain: String,
    /// HAProxy's runtime API socket, to time each change until HAProxy's servers show it
    #[arg(long)]
    haproxy_socket: Option<PathBuf>,
    /// Poll interval of the observers (ms)
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// Give up on seeing a change after this many seconds
    #[arg(long, default_value_t = 20)]
    timeout_s: u64,
    /// catalogd's pid: its CPU time over the changes is reported per change
    #[arg(long)]
    catalogd_pid: Option<u32>,
    /// Then register one more service of --instances instances and time it to HAProxy and DNS
    #[arg(long)]
    new_service: bool,
}

/// What one observer saw of one change.
type Seen = Option<Duration>;

/// One change's timings from the moment its write was sent.
struct ChangeTimes {
    ack: Duration,
    dns: Option<Seen>,
    haproxy: Option<Seen>,
}

/// What a consumer must show for a change to count as seen: the instance's address (and port)
/// present or absent.
#[derive(Clone, Debug)]
struct Expect {
    service: String,
    addr: Ipv4Addr,
    port: u16,
    present: bool,
}

/// A DNS query for `name` A, encoded.
fn dns_query(name: &str) -> anyhow::Result<Vec<u8>> {
    let mut msg = Message::query();
    msg.add_query(Query::query(
        Name::from_ascii(name).with_context(|| format!("DNS name {name:?}"))?,
        RecordType::A,
    ));
    msg.to_vec().context("encoding a DNS query")
}

/// The A records of `name` from the DNS server at `server` (TCP, one query per connection).
async fn dns_addresses(server: SocketAddr, query: &[u8]) -> anyhow::Result<Vec<String>> {
    let mut stream = tokio::net::TcpStream::connect(server)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let mut framed = u16::try_from(query.len())
        .context("DNS query too long")?
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    let msg = Message::from_vec(&buf).context("undecodable DNS answer")?;
    Ok(msg
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.data.to_string())
        .collect())
}

/// A refused or reset connection, worth polling again.
fn is_transient(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::*;
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                WouldBlock | ConnectionRefused | ConnectionReset | NotFound | UnexpectedEof
            )
        })
}

/// One runtime API command's answer.
async fn haproxy_command(socket: &std::path::Path, command: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out)
}

/// Whether `show servers state` output has `addr:port` on a server not in maintenance.
fn haproxy_serves(state: &str, addr: &str, port: u16) -> bool {
    let mut columns: Vec<&str> = Vec::new();
    for line in state.lines() {
        if let Some(header) = line.strip_prefix("# ") {
            columns = header.split_whitespace().collect();
            continue;
        }
        let col = |name: &str| columns.iter().position(|c| *c == name);
        let (Some(a), Some(p), Some(admin)) =
            (col("srv_addr"), col("srv_port"), col("srv_admin_state"))
        else {
            continue;
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or_default();
        // Admin state bit 0x01 is forced maintenance (`set server ... state maint`).
        let in_maint = field(admin).parse::<u32>().map_or(true, |s| s & 0x01 != 0);
        if field(a) == addr && field(p) == port.to_string() && !in_maint {
            return true;
        }
    }
    false
}

/// One observer's question to HAProxy at a time: the runtime socket has a short backlog, and
/// observers polling it in parallel would crowd out lbconf, whose updates are being timed.
static HAPROXY_TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// A consumer of the catalog whose view is timed.
#[derive(Clone)]
enum Consumer {
    /// dnsbridge: the service's A answer, over TCP.
    Dns { server: SocketAddr, domain: String },
    /// HAProxy: the service's backend in `show servers state`.
    Haproxy { socket: PathBuf },
}

impl Consumer {
    /// Whether the consumer shows `want` now; None when it could not be asked this time (a
    /// refused or reset connection).
    async fn shows(&self, want: &Expect) -> anyhow::Result<Option<bool>> {
        let addr = want.addr.to_string();
        let answer = match self {
            Consumer::Dns { server, domain } => {
                let query = dns_query(&format!("{}.service.{domain}.", want.service))?;
                dns_addresses(*server, &query)
                    .await
                    .map(|answer| answer.contains(&addr))
            }
            Consumer::Haproxy { socket } => {
                let command = format!("show servers state be_{}", want.service);
                let turn = HAPROXY_TURN.acquire().await.context("HAProxy turn")?;
                let answer = haproxy_command(socket, &command).await;
                drop(turn);
                answer.map(|state| haproxy_serves(&state, &addr, want.port))
            }
        };
        match answer {
            Ok(present) => Ok(Some(present == want.present)),
            // The runtime socket's backlog is short: many observers at once are refused
            // (EAGAIN) for a moment, and a reloading HAProxy briefly has no socket.
            Err(e) if is_transient(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Polls until the consumer shows each of `wants` in turn; the time from `sent` at which
    /// each was seen, up to the first one not seen within `timeout`.
    async fn observe(
        &self,
        wants: &[Expect],
        sent: Instant,
        poll: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Duration>> {
        let mut seen = Vec::with_capacity(wants.len());
        for want in wants {
            loop {
                if sent.elapsed() >= timeout {
                    return Ok(seen);
                }
                if self.shows(want).await? == Some(true) {
                    seen.push(sent.elapsed());
                    break;
                }
                tokio::time::sleep(poll).await;
            }
        }
        Ok(seen)
    }

    /// Observes `wants` in a task of its own.
    fn spawn_observe(
        &self,
        wants: Arc<Vec<Expect>>,
        sent: Instant,
        poll: Duration,
        timeout: Duration,
    ) -> tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>> {
        let consumer = self.clone();
        tokio::spawn(async move { consumer.observe(&wants, sent, poll, timeout).await })
    }
}

/// Everything one change needs, shared by its tasks.
struct Observers {
    dns: Option<Consumer>,
    haproxy: Option<Consumer>,
    poll: Duration,
    timeout: Duration,
}

/// Sends one write and watches the consumers until they show it.
async fn one_change(
    addr: SocketAddr,
    host: String,
    body: Vec<u8>,
    want: Expect,
    observers: Arc<Observers>,
) -> anyhow::Result<ChangeTimes> {
    let mut conn = Conn::connect(addr)
        .await
        .context("connecting to catalogd")?;
    let req = http::request("PUT", &host, "/v1/catalog/register", &body, None);
    let sent = Instant::now();
    conn.send(&req).await?;
    let want = Arc::new(vec![want]);
    let (poll, timeout) = (observers.poll, observers.timeout);
    let dns = (observers.dns.as_ref()).map(|c| c.spawn_observe(want.clone(), sent, poll, timeout));
    let haproxy =
        (observers.haproxy.as_ref()).map(|c| c.spawn_observe(want.clone(), sent, poll, timeout));
    let resp = conn.read_response().await?;
    let ack = sent.elapsed();
    if resp.status != 200 {
        bail!("PUT /v1/catalog/register: status {}", resp.status);
    }
    let first = |seen: Vec<Duration>| seen.first().copied();
    let dns = match dns {
        Some(task) => Some(first(task.await.context("DNS observer")??)),
        None => None,
    };
    let haproxy = match haproxy {
        Some(task) => Some(first(task.await.context("HAProxy observer")??)),
        None => None,
    };
    Ok(ChangeTimes { ack, dns, haproxy })
}

/// p50/p99/max and misses of one observer's times, as `key=value` fields.
fn summary(name: &str, seen: &[Seen]) -> String {
    let mut times: Vec<f64> = seen.iter().flatten().map(|d| ms(*d)).collect();
    times.sort_by(f64::total_cmp);
    format!(
        " {name}_p50_ms={:.1} {name}_p99_ms={:.1} {name}_max_ms={:.1} {name}_missed={}",
        percentile(&times, 50.0),
        percentile(&times, 99.0),
        percentile(&times, 100.0),
        seen.len() - times.len(),
    )
}

/// A deterministic walk over the instances (a fixed odd stride), so runs are comparable.
fn pick(j: usize, total: usize) -> usize {
    (j.wrapping_mul(7919) + 13) % total
}

pub async fn run_changes(args: ChangesArgs) -> anyhow::Result<()> {
    args.layout.check()?;
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    let (addr, host) = http::loopback_addr(&args.url)?;
    let layout = args.layout;
    let observers = Arc::new(Observers {
        dns: args.dns.map(|server| Consumer::Dns {
            server,
            domain: args.domain.trim_matches('.').to_string(),
        }),
        haproxy: (args.haproxy_socket.clone()).map(|socket| Consumer::Haproxy { socket }),
        poll: Duration::from_millis(args.poll_ms.max(1)),
        timeout: Duration::from_secs(args.timeout_s),
    });
    let mut critical: HashSet<usize> = HashSet::new();
    let in_flight: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let cpu_before = args
        .catalogd_pid
        .map(|p| cpu_time(&p.to_string()))
        .transpose()?;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut set = JoinSet::new();
    let started = Instant::now();
    let mut j = 0;
    for _ in 0..args.count {
        ticker.tick().await;
        // The next instance with no change in flight, so every observation has one cause.
        let k = loop {
            let k = pick(j, layout.total());
            j += 1;
            if in_flight.lock().await.insert(k) {
                break k;
            }
        };
        let (s, i) = (k / layout.instances, k % layout.instances);
        let now_critical = !critical.remove(&k) && critical.insert(k);
        let service = Layout::service_name(s);
        let status = if now_critical { "critical" } else { "passing" };
        let body = layout.register_body(&service, s, i, status);
        let want = Expect {
            service,
            addr: Layout::node_addr(layout.node_of(s, i)),
            port: Layout::port(s),
            present: !now_critical,
        };
        let (host, observers, in_flight) = (host.clone(), observers.clone(), in_flight.clone());
        set.spawn(async move {
            let times = one_change(addr, host, body, want, observers).await;
            in_flight.lock().await.remove(&k);
            times
        });
    }
    let mut all = Vec::with_capacity(args.count);
    while let Some(done) = set.join_next().await {
        all.push(done.context("change task")??);
    }
    let elapsed = started.elapsed();
    let cpu = match (args.catalogd_pid, cpu_before) {
        (Some(pid), Some(before)) => {
            let used = cpu_time(&pid.to_string())?.saturating_sub(before);
            format!(
                " catalogd_cpu_ms_per_change={:.2}",
                ms(used) / args.count as f64
            )
        }
        _ => String::new(),
    };
    let mut acks: Vec<f64> = all.iter().map(|t| ms(t.ack)).collect();
    acks.sort_by(f64::total_cmp);
    let dns: Vec<Seen> = all.iter().filter_map(|t| t.dns).collect();
    let haproxy: Vec<Seen> = all.iter().filter_map(|t| t.haproxy).collect();
    println!(
        "changes count={} rate_per_s={:.1} ack_p50_ms={:.1} ack_p99_ms={:.1}{}{}{cpu}",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&acks, 50.0),
        percentile(&acks, 99.0),
        if dns.is_empty() {
            String::new()
        } else {
            summary("dns", &dns)
        },
        if haproxy.is_empty() {
            String::new()
        } else {
            summary("haproxy", &haproxy)
        },
    );
    // Back to all passing, so a later run starts from the loaded catalog.
    let mut conn = Conn::connect(addr)
        .await
        .context("connecting to catalogd")?;
    for k in critical {
        let (s, i) = (k / layout.instances, k % layout.instances);
        let body = layout.register_body(&Layout::service_name(s), s, i, "passing");
        put(&mut conn, &host, "/v1/catalog/register", &body).await?;
    }
    if args.new_service {
        new_service(addr, &host, layout, &observers).await?;
    }
    Ok(())
}

/// Registers service `svc-new` (`layout.instances` instances) and times until HAProxy serves
/// every instance and DNS answers every address.
async fn new_service(
    addr: SocketAddr,
    host: &str,
    layout: Layout,
    observers: &Observers,
) -> anyhow::Result<()> {
    let service = "svc-new".to_string();
    // Numbered past the loaded services, so its port and nodes follow the same layout.
    let s = layout.services;
    let jobs: Vec<(String, usize, usize)> = (0..layout.instances)
        .map(|i| (service.clone(), s, i))
        .collect();
    let started = Instant::now();
    register_service_instances(addr, host, layout, Arc::new(jobs), 8).await?;
    let registered = started.elapsed();
    let expects: Vec<Expect> = (0..layout.instances)
        .map(|i| Expect {
            service: service.clone(),
            addr: Layout::node_addr(layout.node_of(s, i)),
            port: Layout::port(s),
            present: true,
        })
        .collect();
    let mut line = format!(
        "new_service instances={} registered_ms={:.1}",
        layout.instances,
        ms(registered)
    );
    // Both consumers watched at once, each until it shows every instance.
    let expects = Arc::new(expects);
    let (poll, timeout) = (observers.poll, observers.timeout * 3);
    let haproxy = (observers.haproxy.as_ref())
        .map(|c| c.spawn_observe(expects.clone(), started, poll, timeout));
    let dns =
        (observers.dns.as_ref()).map(|c| c.spawn_observe(expects.clone(), started, poll, timeout));
    let describe = |name: &str, seen: Vec<Duration>| match (seen.first(), seen.len()) {
        (Some(first), n) if n == expects.len() => format!(
            " {name}_first_ms={:.1} {name}_ms={:.1}",
            ms(*first),
            ms(seen[n - 1])
        ),
        (_, n) => format!(" {name}_ms=timeout {name}_seen={n}"),
    };
    if let Some(task) = haproxy {
        line.push_str(&describe(
            "haproxy",
            task.await.context("HAProxy observer")??,
        ));
    }
    if let Some(task) = dns {
        line.push_str(&describe("dns", task.await.context("DNS observer")??));
    }
    println!("{line}");
    // Gone again, so the next run against this catalog registers it anew.
    let mut conn = Conn::connect(addr)
        .await
        .context("connecting to catalogd")?;
    for i in 0..layout.instances {
        let node = format!("node-{}", layout.node_of(s, i));
        let body = json!({ "Node": node, "ServiceID": format!("{service}-{i}") }).to_string();
        put(&mut conn, host, "/v1/catalog/deregister", body.as_bytes()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_has_its_instances_on_distinct_nodes() {
        let layout = Layout {
            services: 1000,
            instances: 100,
            nodes: 10_000,
        };
        for s in [0, 1, 99, 100, 999] {
            let nodes: HashSet<usize> = (0..100).map(|i| layout.node_of(s, i)).collect();
            assert_eq!(nodes.len(), 100, "service {s}");
        }
        assert_eq!(Layout::node_addr(0).to_string(), "10.0.0.1");
        assert_eq!(Layout::node_addr(9999).to_string(), "10.0.39.16");
    }

    #[test]
    fn haproxy_state_shows_only_servers_out_of_maintenance() {
        let state = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state \
                     srv_uweight srv_iweight srv_time_since_last_change srv_check_status \
                     srv_check_result srv_check_health srv_check_state srv_agent_state \
                     bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord\n\
                     3 be_svc-1 1 s1 10.0.0.2 2 0 1 1 5 1 0 0 0 0 0 0 - 20001 -\n\
                     3 be_svc-1 2 s2 10.0.0.3 0 1 1 1 5 1 0 0 0 0 0 0 - 20001 -\n";
        assert!(haproxy_serves(state, "10.0.0.2", 20001));
        assert!(!haproxy_serves(state, "10.0.0.2", 20002), "other port");
        assert!(!haproxy_serves(state, "10.0.0.3", 20001), "in maintenance");
        assert!(!haproxy_serves("", "10.0.0.2", 20001));
    }

    #[test]
    fn the_walk_changes_distinct_instances() {
        let picked: HashSet<usize> = (0..1000).map(|j| pick(j, 100_000)).collect();
        assert_eq!(picked.len(), 1000);
    }
}
