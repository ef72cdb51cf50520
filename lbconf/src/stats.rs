//! HAProxy's own figures through its runtime API, for lbconf's metrics: one connection sends
//! `show info;show stat -1 6 -1` (backends and servers, no frontends), and the answer is folded
//! per backend as it streams in, so the tens of megabytes a fleet's servers make are never held
//! at once. `show info` gives the worker's pid: a new pid is a new process (a reload or a
//! restart), whose counters started again from 0.
//!
//! `show stat` is CSV whose first line is its header (`# pxname,svname,...`); HAProxy adds
//! columns between versions, so fields are found by their header name, never by position. The
//! CSV itself (HAProxy quotes a field holding a comma) is the `csv` crate's.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;

/// What lbconf asks HAProxy: the worker's identity, then backends (type 2) and servers (type 4)
/// of every proxy (`-1`).
pub const COMMAND: &str = "show info;show stat -1 6 -1";

/// Whether a server's `addr` is where lbconf parks a spare slot ([`crate::render::PARKED_IP`]):
/// such a slot is no server.
fn parked(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(ip, port)| {
        ip == crate::render::PARKED_IP && port.parse() == Ok(crate::render::PARKED_PORT)
    })
}

/// Servers of one backend by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounts {
    /// Taking traffic: `UP` (also `UP 1/3`, still up while checks fail) and `no check`.
    pub up: u64,
    /// Not taking traffic by their checks: `DOWN` (also `DOWN 1/2`, still down while checks
    /// pass), `NOLB`, and any state HAProxy may add.
    pub down: u64,
    /// Out by an operator's (or lbconf's) decision: `MAINT` in all its forms, `DRAIN`.
    pub maint: u64,
}

impl ServerCounts {
    fn count(&mut self, status: &str) {
        match status.split_whitespace().next().unwrap_or("") {
            // `no check`: a server without health checks is served as up.
            "UP" | "no" => self.up += 1,
            "MAINT" | "DRAIN" => self.maint += 1,
            _ => self.down += 1,
        }
    }
}

/// One backend's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Requests the backend served (`req_tot`) for an HTTP backend; sessions (`stot`) for a TCP
    /// one (or an HTTP one on an HAProxy that does not count backend requests).
    pub requests: u64,
    /// Per second over the last second: `req_rate` where HAProxy gives it for a backend, else
    /// `rate`, new sessions per second (HAProxy 2.6 has no backend `req_rate`; an HTTP request
    /// is a session of its own to a backend, so the figures agree).
    pub rate: u64,
    /// Servers by state; spare slots (parked at [`crate::render::PARKED_IP`]) are not counted.
    pub servers: ServerCounts,
}

/// One answer of HAProxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// The worker process that answered (`show info`'s `Pid`), when it said.
    pub pid: Option<u32>,
    /// By backend name.
    pub backends: HashMap<String, BackendStats>,
}

/// Why HAProxy's figures could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("connecting to HAProxy's runtime API: {0}")]
    Connect(String),
    #[error("reading HAProxy's answer: {0}")]
    Io(#[from] std::io::Error),
    #[error("HAProxy's answer is larger than {0} bytes")]
    TooLarge(u64),
    #[error("HAProxy did not answer within {0:?}")]
    Timeout(Duration),
    #[error("HAProxy answered no `show stat` header but {0:?}")]
    NoHeader(String),
    #[error("`show stat` has no {0} column")]
    MissingColumn(&'static str),
    #[error("`show stat` line {line}: {why}")]
    Row { line: u64, why: String },
}

/// Reads HAProxy's figures through the runtime API socket: the whole exchange within
/// `timeout`, the answer at most `max_bytes`.
pub async fn read(socket: &Path, timeout: Duration, max_bytes: u64) -> Result<Reading, StatsError> {
    let deadline = Instant::now() + timeout;
    let exchange = async {
        let mut stream = crate::watch::connect(socket)
            .await
            .map_err(StatsError::Connect)?;
        stream.write_all(format!("{COMMAND}\n").as_bytes()).await?;
        Ok::<_, StatsError>(stream)
    };
    let stream = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| StatsError::Timeout(timeout))??;
    // The answer is read on a blocking thread: the csv reader takes a `Read`, and streaming it
    // row by row is what keeps a large answer out of memory. The socket's read timeout bounds
    // each read, the deadline the whole.
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(timeout))?;
    let input = Bounded {
        inner: stream,
        left: max_bytes,
        max: max_bytes,
        deadline,
        timeout,
    };
    tokio::task::spawn_blocking(move || parse(std::io::BufReader::new(input)))
        .await
        .map_err(|e| StatsError::Io(std::io::Error::other(e)))?
}

/// A reader that fails past `max` bytes or past `deadline`, with the errors [`parse`] turns
/// back into [`StatsError::TooLarge`] and [`StatsError::Timeout`].
struct Bounded<R> {
    inner: R,
    left: u64,
    max: u64,
    deadline: Instant,
    timeout: Duration,
}

/// The payload of the io errors [`Bounded`] makes.
#[derive(Debug, thiserror::Error)]
enum Bound {
    #[error("answer larger than {0} bytes")]
    Size(u64),
    #[error("no answer within {0:?}")]
    Time(Duration),
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(std::io::Error::other(Bound::Time(self.timeout)));
        }
        // One byte more than is left: reading it proves the answer too large.
        let room = usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX);
        let n = buf.len().min(room);
        let got = self.inner.read(&mut buf[..n]).map_err(|e| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                // The socket's read timeout.
                std::io::Error::other(Bound::Time(self.timeout))
            } else {
                e
            }
        })?;
        if got as u64 > self.left {
            return Err(std::io::Error::other(Bound::Size(self.max)));
        }
        self.left -= got as u64;
        Ok(got)
    }
}

/// An io error back into what [`Bounded`] meant by it.
fn io_error(e: std::io::Error) -> StatsError {
    if let Some(bound) = e.get_ref().and_then(|inner| inner.downcast_ref::<Bound>()) {
        return match bound {
            Bound::Size(max) => StatsError::TooLarge(*max),
            Bound::Time(t) => StatsError::Timeout(*t),
        };
    }
    StatsError::Io(e)
}

/// The columns of `show stat` lbconf reads.
struct Columns {
    pxname: usize,
    kind: usize,
    status: usize,
    stot: usize,
    rate: usize,
    req_tot: Option<usize>,
    req_rate: Option<usize>,
    mode: Option<usize>,
    addr: Option<usize>,
}

impl Columns {
    fn from_header(header: &str) -> Result<Columns, StatsError> {
        let names: Vec<&str> = header.trim_end().split(',').map(str::trim).collect();
        let find = |name: &str| names.iter().position(|n| *n == name);
        let need = |name: &'static str| find(name).ok_or(StatsError::MissingColumn(name));
        Ok(Columns {
            pxname: need("pxname")?,
            kind: need("type")?,
            status: need("status")?,
            stot: need("stot")?,
            rate: need("rate")?,
            req_tot: find("req_tot"),
            req_rate: find("req_rate"),
            mode: find("mode"),
            addr: find("addr"),
        })
    }
}

/// Longest line of `show info` (or the `show stat` header) taken as one line.
const MAX_LINE: u64 = 64 * 1024;

/// Reads one line of at most [`MAX_LINE`] bytes; None at the end of the input.
fn line(input: &mut impl BufRead) -> Result<Option<String>, StatsError> {
    let mut buf = Vec::new();
    let n = input
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut buf)
        .map_err(io_error)?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&buf).trim_end().to_string()))
}

/// Parses HAProxy's answer to [`COMMAND`]: `show info`'s lines up to an empty one, then
/// `show stat`'s header and rows. Rows of frontends and listeners (if any) are skipped.
pub fn parse(mut input: impl BufRead) -> Result<Reading, StatsError> {
    let mut reading = Reading::default();
    // What HAProxy said first, for the error when no header comes: its complaint ("Unknown
    // command", "Permission denied") rather than the `show info` lines that may follow.
    let mut first: Option<String> = None;
    let header = loop {
        let Some(l) = line(&mut input)? else {
            return Err(StatsError::NoHeader(first.unwrap_or_default()));
        };
        if let Some(h) = l.strip_prefix("# ") {
            break h.to_string();
        }
        if let Some(pid) = l.strip_prefix("Pid:") {
            reading.pid = pid.trim().parse().ok();
        }
        if first.is_none() && !l.is_empty() {
            first = Some(l.chars().take(200).collect());
        }
    };
    let cols = Columns::from_header(&header)?;
    let mut rows = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    loop {
        match rows.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(match e.into_kind() {
                    csv::ErrorKind::Io(io) => io_error(io),
                    other => StatsError::Row {
                        line: record.position().map_or(0, |p| p.line()),
                        why: format!("{other:?}"),
                    },
                });
            }
        }
        let field = |i: usize| std::str::from_utf8(record.get(i).unwrap_or_default()).unwrap_or("");
        let opt = |i: Option<usize>| i.map(field).filter(|v| !v.is_empty());
        let line = record.position().map_or(0, |p| p.line());
        let number = |name: &str, v: &str| -> Result<u64, StatsError> {
            v.parse().map_err(|_| StatsError::Row {
                line,
                why: format!("{name} {v:?} is not a count"),
            })
        };
        match field(cols.kind) {
            // A backend's own row (it follows its servers').
            "1" => {
                let http = opt(cols.mode) == Some("http");
                let requests = match opt(cols.req_tot) {
                    Some(v) if http => number("req_tot", v)?,
                    _ => number("stot", field(cols.stot))?,
                };
                let rate = match opt(cols.req_rate) {
                    Some(v) => number("req_rate", v)?,
                    None => number("rate", field(cols.rate))?,
                };
                let b = reading
                    .backends
                    .entry(field(cols.pxname).to_string())
                    .or_default();
                b.requests = requests;
                b.rate = rate;
            }
            "2" => {
                if opt(cols.addr).is_some_and(parked) {
                    continue;
                }
                reading
                    .backends
                    .entry(field(cols.pxname).to_string())
                    .or_default()
                    .servers
                    .count(field(cols.status));
            }
            // Frontends (0) and listeners (3), should HAProxy send them.
            _ => {}
        }
    }
    Ok(reading)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HAProxy 2.6's answer to [`COMMAND`] for lbconf's layout (trimmed `show info`): an HTTP
    /// backend with two instances (one checked, one not) and a spare slot, a TCP backend with
    /// one instance and a spare slot, the no_route backend.
    const HAPROXY_2_6: &str = "\
Name: HAProxy
Version: 2.6.12-1+deb12u4
Pid: 12659
Uptime_sec: 134

# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
be_web,s1,0,0,0,1,,2,164,1072,,0,,0,0,0,0,UP,1,1,0,1,1,9,1,,1,3,1,,2,,2,0,,1,L4OK,,0,0,2,0,0,0,0,,,,2,0,0,,,,,3,,,0,0,3,3,,,,Layer4 check passed,,2,3,4,,,,127.0.0.1:18081,,http,,,,,,,,0,2,0,,,0,,0,0,4,4,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be_web,s2,0,0,0,1,,12,246,651,,0,,3,0,9,0,no check,1,1,0,,,10,,,1,3,2,,3,,2,1,,2,,,,0,0,0,0,0,0,,,,0,0,0,,,,,0,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:18082,,http,,,,,,,,0,12,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be_web,s3,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,,,10,,,1,3,3,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:1,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be_web,BACKEND,0,0,0,1,999,5,410,1723,0,0,,3,0,9,0,UP,2,2,0,,0,10,0,,1,3,0,,5,,1,0,,2,,,,0,2,0,0,3,0,,,,5,0,0,0,0,0,0,3,,,0,0,2,2,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,14,0,0,0,,,0,0,4,4,0,,,,,2,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,14,14,1074,158,0,0,
be_tcp,s1,0,0,0,1,,1,79,537,,0,,0,0,0,0,no check,1,1,0,,,10,,,1,5,1,,1,,2,1,,1,,,,,,,,,,,,,,0,0,,,,,0,,,0,0,0,2,,,,,,,,,,,,127.0.0.1:18081,,tcp,,,,,,,,0,1,0,,,0,,0,0,0,2,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be_tcp,s2,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,,,10,,,1,5,2,,0,,2,0,,0,,,,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:1,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be_tcp,BACKEND,0,0,0,1,999,7,79,537,0,0,,0,0,0,0,UP,1,1,0,,0,10,0,,1,5,0,,1,,1,3,,1,,,,,,,,,,,,,,0,0,0,0,0,0,0,,,0,0,0,2,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,1,0,,,,,0,0,0,2,0,,,,,1,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
no_route,BACKEND,0,0,0,0,999,0,0,0,0,0,,0,0,0,0,UP,0,0,0,,0,10,,,1,4,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,

";

    fn servers(up: u64, down: u64, maint: u64) -> ServerCounts {
        ServerCounts { up, down, maint }
    }

    #[test]
    fn haproxy_2_6_answer() {
        let r = parse(HAPROXY_2_6.as_bytes()).expect("parsed");
        assert_eq!(r.pid, Some(12659));
        assert_eq!(r.backends.len(), 3, "{:?}", r.backends);
        // req_tot for HTTP (the server rows' stot of 12 are retries, not requests).
        assert_eq!(
            r.backends["be_web"],
            BackendStats {
                requests: 5,
                rate: 0,
                servers: servers(2, 0, 0),
            }
        );
        // stot for TCP (its req_tot is empty); `rate` for the rate.
        assert_eq!(
            r.backends["be_tcp"],
            BackendStats {
                requests: 7,
                rate: 3,
                servers: servers(1, 0, 0),
            }
        );
        assert_eq!(r.backends["no_route"].servers, servers(0, 0, 0));
    }

    /// Each case: a header, rows, and what one backend `be` reads as (or the error's text).
    #[test]
    fn fields_are_found_by_header_name() {
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [&'a str],
            Result<BackendStats, &'a str>,
        );
        let stats = |requests, rate, servers| BackendStats {
            requests,
            rate,
            servers,
        };
        let cases: &[Case] = &[
            (
                "columns in another order, others unknown",
                "# type,new_field,svname,pxname,mode,status,rate,stot,req_tot,addr",
                &[
                    "2,x,s1,be,http,UP,0,9,9,10.0.0.1:80",
                    "2,x,s2,be,http,DOWN,0,0,0,10.0.0.2:80",
                    "2,x,s3,be,http,MAINT,0,0,0,10.0.0.3:80",
                    "1,x,BACKEND,be,http,UP,4,30,21,",
                ],
                Ok(stats(21, 4, servers(1, 1, 1))),
            ),
            (
                "transitional and admin states",
                "# pxname,svname,type,status,stot,rate,req_tot,mode,addr",
                &[
                    "be,s1,2,UP 1/3,0,0,0,http,10.0.0.1:80",
                    "be,s2,2,DOWN 1/2,0,0,0,http,10.0.0.2:80",
                    "be,s3,2,NOLB,0,0,0,http,10.0.0.3:80",
                    "be,s4,2,DRAIN,0,0,0,http,10.0.0.4:80",
                    "be,s5,2,MAINT (via be2/s1),0,0,0,http,10.0.0.5:80",
                    "be,s6,2,no check,0,0,0,http,10.0.0.6:80",
                    "be,s7,2,MAINT,0,0,0,http,127.0.0.1:1",
                    "be,BACKEND,1,UP,0,0,0,http,",
                ],
                Ok(stats(0, 0, servers(2, 2, 2))),
            ),
            (
                "a quoted field holding commas",
                "# pxname,svname,type,check_desc,status,stot,rate,req_tot,mode,addr",
                &[
                    "be,s1,2,\"Layer7 wrong status, code 503, body\",DOWN,0,0,0,http,10.0.0.1:80",
                    "be,BACKEND,1,,DOWN,3,1,2,http,",
                ],
                Ok(stats(2, 1, servers(0, 1, 0))),
            ),
            (
                "req_rate where HAProxy gives it for a backend",
                "# pxname,svname,type,status,stot,rate,req_rate,req_tot,mode",
                &["be,BACKEND,1,UP,10,2,5,40,http"],
                Ok(stats(40, 5, servers(0, 0, 0))),
            ),
            (
                "no req_tot column (an old HAProxy): sessions",
                "# pxname,svname,type,status,stot,rate,mode",
                &["be,BACKEND,1,UP,10,2,http"],
                Ok(stats(10, 2, servers(0, 0, 0))),
            ),
            (
                "frontend rows are not backends",
                "# pxname,svname,type,status,stot,rate,req_tot,mode",
                &[
                    "fe,FRONTEND,0,OPEN,10,2,10,http",
                    "be,BACKEND,1,UP,1,0,1,http",
                ],
                Ok(stats(1, 0, servers(0, 0, 0))),
            ),
            (
                "short rows: missing fields are empty",
                "# pxname,svname,type,status,stot,rate,req_tot,mode,addr",
                &["be,BACKEND,1,UP,8,1"],
                Ok(stats(8, 1, servers(0, 0, 0))),
            ),
            (
                "a column lbconf needs is missing",
                "# pxname,svname,type,status,rate",
                &["be,BACKEND,1,UP,0"],
                Err("no stot column"),
            ),
            (
                "a count that is not one",
                "# pxname,svname,type,status,stot,rate,req_tot,mode",
                &["be,BACKEND,1,UP,8,1,-3,http"],
                Err("req_tot \"-3\" is not a count"),
            ),
        ];
        for (what, header, rows, want) in cases {
            let text = format!("Pid: 7\n\n{header}\n{}\n\n", rows.join("\n"));
            match (parse(text.as_bytes()), want) {
                (Ok(r), Ok(want)) => {
                    assert_eq!(r.pid, Some(7), "{what}");
                    assert_eq!(r.backends.get("be"), Some(want), "{what}");
                    assert!(r.backends.keys().all(|k| k == "be"), "{what}: {r:?}");
                }
                (Err(e), Err(want)) => {
                    assert!(e.to_string().contains(want), "{what}: {e}")
                }
                (got, want) => panic!("{what}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn answers_that_are_no_stats() {
        type Case<'a> = (&'a str, &'a str);
        let cases: &[Case] = &[
            (
                "Unknown command: 'show stat -1 6 -1'\n\n",
                "Unknown command",
            ),
            ("Permission denied\n\n", "Permission denied"),
            ("", "no `show stat` header but \"\""),
            (
                "Name: HAProxy\nPid: 3\n\n",
                "no `show stat` header but \"Name: HAProxy\"",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text.as_bytes()).expect_err(text);
            assert!(e.to_string().contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn answers_past_the_size_bound_are_refused() {
        let input = Bounded {
            inner: HAPROXY_2_6.as_bytes(),
            left: 1000,
            max: 1000,
            deadline: Instant::now() + Duration::from_secs(60),
            timeout: Duration::from_secs(60),
        };
        let e = parse(std::io::BufReader::new(input)).expect_err("too large");
        assert!(matches!(e, StatsError::TooLarge(1000)), "{e}");
        let exact = HAPROXY_2_6.len() as u64;
        let input = Bounded {
            inner: HAPROXY_2_6.as_bytes(),
            left: exact,
            max: exact,
            deadline: Instant::now() + Duration::from_secs(60),
            timeout: Duration::from_secs(60),
        };
        assert!(
            parse(std::io::BufReader::new(input)).is_ok(),
            "exactly the bound fits"
        );
    }

    #[test]
    fn answers_past_the_deadline_are_refused() {
        let input = Bounded {
            inner: HAPROXY_2_6.as_bytes(),
            left: u64::MAX,
            max: u64::MAX,
            deadline: Instant::now(),
            timeout: Duration::from_secs(2),
        };
        let e = parse(std::io::BufReader::new(input)).expect_err("late");
        assert!(matches!(e, StatsError::Timeout(_)), "{e}");
    }
}
