//! Shipping the tasks' output to a syslog collector (`taskrun agent --log-forward`): one
//! forwarder per agent tails every task's `stdout` and `stderr` in its sandbox (a
//! [`LogReader`] each, following rotations) and sends one RFC 5424 message per line, so rsyslog,
//! Logstash or Graylog ingest the cluster's output with its origin attached:
//!
//! ```text
//! <14>1 2026-05-07T21:09:36.123456Z node-1 /shop/web shop_web.4f1c.. stdout [cairn@32473 app="/shop/web" task="shop_web.4f1c.." node="node-1" stream="stdout"] the line
//! ```
//!
//! - PRI: `--log-forward-facility` (default `user`) x 8 + severity: stdout `info` (6), stderr
//!   `err` (3). TIMESTAMP: when the forwarder read the line (RFC 3339, UTC, microseconds).
//!   HOSTNAME: the node. APP-NAME: the app id, printable ASCII (others become `_`), its last
//!   48 characters when longer (the leaf names the app). PROCID: the task id (at most 128).
//!   MSGID: `stdout` or `stderr`. STRUCTURED-DATA: `cairn@32473` (32473 is the enterprise
//!   number RFC 5612 reserves for documentation) with the whole app, task, node and stream, `"`,
//!   `\` and `]` escaped as RFC 5424 says. MSG: the line's bytes without its newline, no BOM
//!   (RFC 5424's MSG-ANY: a task's output need not be UTF-8).
//! - Transports: `syslog://HOST[:PORT]` (or `syslog+udp://`) is UDP (RFC 5426), a datagram
//!   per message of at most [`UDP_MAX`] octets (what every receiver must accept);
//!   `syslog+tcp://HOST[:PORT]` is TCP with RFC 6587 octet counting (`LEN SP MSG`), messages of
//!   at most [`TCP_MAX`] octets (rsyslog's default `maxMessageSize`). Port 514 by default.
//!   Longer lines are cut (at a character boundary) and counted in
//!   [`ForwardStats::truncated`]; a line never costs more memory than the bound, however long.
//! - Tasks never wait for the collector: they write their files, the forwarder only reads them.
//!   A slow or absent TCP collector stops the forwarder's reading (at most a chunk per stream
//!   is held), and the connection is made again with a backoff (100 ms doubling to 10 s); a
//!   connection the collector closed is noticed before the next write (the collector never
//!   sends, so a readable socket is a closed one), so lines written while it was away or after
//!   it is back are sent on the new connection. UDP has no such signal: a datagram the network
//!   or the receiver drops is lost (RFC 5426 has no acknowledgement), and one the kernel
//!   refuses is counted in [`ForwardStats::dropped`].
//! - Where each stream stands is saved in the sandbox (`stdout.fwd`, `stderr.fwd`: the file's
//!   inode and the offset after the last line sent), at most once a second and when the
//!   forwarder stops. A restarted agent resumes there: delivery is at least once from the last
//!   saved cursor (up to a second of lines, or a TCP write whose fate is unknown, is sent again
//!   after a restart or a reconnection), and nothing is skipped unless the file rotated more
//!   than once while nobody read it (the forwarder then starts at the current file and logs
//!   it). A stream without a cursor starts at the beginning of its current file when the task
//!   is live or ended after the forwarder started; a task that ended before (with output from
//!   before `--log-forward` was set) is not sent.
//! - Message contents are never logged (a task's output may print its secrets); only the
//!   collector's address and connection errors are.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::http::KnownTasks;
use crate::logs::{LogReader, Position};
use crate::sandbox::{STDERR_FILE, STDOUT_FILE};

/// Largest UDP message: RFC 5426 says every receiver must take 2048 octets.
pub const UDP_MAX: usize = 2048;
/// Largest TCP message (octet-counting frame excluded): rsyslog's default `maxMessageSize`.
pub const TCP_MAX: usize = 8192;
/// The default syslog port.
pub const DEFAULT_PORT: u16 = 514;
/// How often the task files are looked at when nothing was new.
const POLL: Duration = Duration::from_millis(250);
/// How often the task table is read for tasks to start or stop tailing.
const REFRESH: Duration = Duration::from_secs(1);
/// Least time between two saves of a stream's cursor.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Reconnection backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A connection or a write that takes longer is given up (and made again).
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The structured data element's id.
pub const SD_ID: &str = "cairn@32473";

/// How messages travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// `--log-forward`: where messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    /// A name or an address (IPv6 without its brackets).
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The largest message this transport carries.
    pub fn max_message(&self) -> usize {
        match self.transport {
            Transport::Udp => UDP_MAX,
            Transport::Tcp => TCP_MAX,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "syslog",
            Transport::Tcp => "syslog+tcp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Target {
    type Err = String;

    /// `syslog://HOST[:PORT]`, `syslog+udp://...`, `syslog+tcp://...`; `[v6]` for IPv6.
    fn from_str(s: &str) -> Result<Target, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!("{s:?}: expected syslog://HOST[:PORT] or syslog+tcp://HOST[:PORT]")
        })?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "syslog" | "syslog+udp" => Transport::Udp,
            "syslog+tcp" => Transport::Tcp,
            other => {
                return Err(format!("{other:?} is not syslog, syslog+udp or syslog+tcp"));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!("{s:?}: only HOST[:PORT] may follow the scheme"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed '['"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| format!("{s:?}: expected :PORT after the address"))?,
                    ),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("{s:?}: {p:?} is not a port")),
            },
        };
        Ok(Target {
            transport,
            host: host.to_string(),
            port,
        })
    }
}

/// Syslog facilities by name (RFC 5424 table 1; `local0`..`local7`).
const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// A syslog facility (`--log-forward-facility`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facility(u8);

impl Facility {
    pub const USER: Facility = Facility(1);
}

impl FromStr for Facility {
    type Err = String;

    fn from_str(s: &str) -> Result<Facility, String> {
        FACILITIES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, code)| Facility(*code))
            .ok_or_else(|| {
                let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
                format!("{s:?} is not a facility: one of {}", names.join(", "))
            })
    }
}

/// A task's output stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// RFC 5424 severity: informational for stdout, error for stderr.
    fn severity(self) -> u8 {
        match self {
            Stream::Stdout => 6,
            Stream::Stderr => 3,
        }
    }

    fn file(self) -> &'static str {
        match self {
            Stream::Stdout => STDOUT_FILE,
            Stream::Stderr => STDERR_FILE,
        }
    }

    /// Where the forwarder's cursor of this stream is saved in the sandbox.
    pub fn cursor_file(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout.fwd",
            Stream::Stderr => "stderr.fwd",
        }
    }
}

/// A header field RFC 5424 wants in printable US-ASCII (33..=126) of at most `max` characters:
/// anything else becomes `_`, empty is the NILVALUE `-`. `keep_tail`: a longer value keeps its
/// end instead of its start.
fn header_field(value: &str, max: usize, keep_tail: bool) -> String {
    let clean: Vec<char> = value
        .chars()
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .collect();
    if clean.is_empty() {
        return "-".into();
    }
    let kept = if clean.len() <= max {
        &clean[..]
    } else if keep_tail {
        &clean[clean.len() - max..]
    } else {
        &clean[..max]
    };
    kept.iter().collect()
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (RFC 5424 6.3.3); at most `max`
/// characters of the value are kept.
fn param_value(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars().take(max) {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What every message of one task stream starts with, but its time: made once per stream.
#[derive(Clone, Debug)]
pub struct StreamHeader {
    /// `<PRI>1 `.
    head: String,
    /// ` HOSTNAME APP-NAME PROCID MSGID [SD] `.
    tail: String,
}

impl StreamHeader {
    pub fn new(facility: Facility, stream: Stream, node: &str, app: &str, task: &str) -> Self {
        let pri = u16::from(facility.0) * 8 + u16::from(stream.severity());
        // Values are bounded so the header always leaves room in a UDP message: app and task
        // ids are at most 200 characters already, node names are cut at 255 (a host name's
        // longest).
        let sd = format!(
            "[{SD_ID} app=\"{}\" task=\"{}\" node=\"{}\" stream=\"{}\"]",
            param_value(app, 200),
            param_value(task, 200),
            param_value(node, 255),
            stream.name()
        );
        StreamHeader {
            head: format!("<{pri}>1 "),
            tail: format!(
                " {} {} {} {} {sd} ",
                header_field(node, 255, false),
                header_field(app, 48, true),
                header_field(task, 128, false),
                stream.name()
            ),
        }
    }

    /// The message for `line` stamped `timestamp`, at most `max` octets (the line cut at a
    /// character boundary when it does not fit); whether it was cut.
    pub fn message(&self, timestamp: &str, line: &[u8], max: usize) -> (Vec<u8>, bool) {
        let fixed = self.head.len() + timestamp.len() + self.tail.len();
        let room = max.saturating_sub(fixed);
        let cut = line.len() > room;
        let line = if cut {
            &line[..char_boundary(line, room)]
        } else {
            line
        };
        let mut msg = Vec::with_capacity(fixed + line.len());
        msg.extend_from_slice(self.head.as_bytes());
        msg.extend_from_slice(timestamp.as_bytes());
        msg.extend_from_slice(self.tail.as_bytes());
        msg.extend_from_slice(line);
        (msg, cut)
    }
}

/// The largest `n <= at` that does not split a UTF-8 sequence of `bytes` (looking back at most
/// three continuation bytes; bytes that are not UTF-8 are cut where asked).
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    let at = at.min(bytes.len());
    let is_continuation = |i: usize| bytes.get(i).is_some_and(|b| b & 0xC0 == 0x80);
    (at.saturating_sub(3)..=at)
        .rev()
        .find(|&i| !is_continuation(i))
        .unwrap_or(at)
}

/// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`, appended to `out`.
pub fn octet_counted(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// RFC 3339 in UTC with microseconds, as TIMESTAMP.
fn timestamp_now() -> String {
    format!("{:.6}", jiff::Timestamp::now())
}

/// The forwarder's counters, for whoever reports them (a `/metrics`).
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Messages handed to the network.
    pub sent: AtomicU64,
    /// Messages the kernel refused (UDP: no route, buffer full); not sent again.
    pub dropped: AtomicU64,
    /// Lines cut to the message bound.
    pub truncated: AtomicU64,
    /// TCP connections made (the first, and each after a failure).
    pub connects: AtomicU64,
    /// Streams whose cursor could not be resumed (rotated more than once while nobody read):
    /// started again at the current file.
    pub skipped: AtomicU64,
}

/// `--log-forward` and `--log-forward-facility`.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    pub target: Target,
    pub facility: Facility,
}

/// A saved cursor: `<inode> <offset>`.
fn load_cursor(path: &Path) -> Option<Position> {
    let text = std::fs::read_to_string(path).ok()?;
    let (ino, offset) = text.trim().split_once(' ')?;
    Some(Position {
        ino: ino.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

/// A line read and not yet sent, with the position after it.
struct Line {
    bytes: Vec<u8>,
    end: Position,
}

/// One task stream being tailed.
struct Tail {
    header: StreamHeader,
    path: PathBuf,
    cursor_path: PathBuf,
    /// `None` until the file exists.
    reader: Option<LogReader>,
    /// Complete lines read and not yet sent (at most a chunk's).
    lines: VecDeque<Line>,
    /// The unfinished line (at most `max_line` bytes are kept).
    partial: Vec<u8>,
    /// The unfinished line went past `max_line`: the rest of it is dropped.
    overflow: bool,
    max_line: usize,
    /// After the last line sent; what is saved.
    sent: Option<Position>,
    saved: Option<Position>,
    saved_at: Instant,
    /// The task ended: once the file is drained, the tail is done.
    terminal: bool,
    done: bool,
}

impl Tail {
    /// Reads the next chunk into lines, when none are waiting. True when it read something.
    fn fill(&mut self, truncated: &AtomicU64) -> io::Result<bool> {
        if !self.lines.is_empty() || self.done {
            return Ok(false);
        }
        if self.reader.is_none() {
            self.reader = Some(LogReader::open(&self.path, 0)?);
        }
        let Some(reader) = &mut self.reader else {
            return Ok(false);
        };
        let chunk = reader.read_chunk()?;
        let Some(end) = reader.position()? else {
            // No file yet; a task that ended without one never wrote.
            if self.terminal {
                self.finish();
            }
            return Ok(false);
        };
        if chunk.is_empty() {
            if self.terminal {
                // Drained: what is left of an unfinished line is the last line.
                if !self.partial.is_empty() {
                    let bytes = std::mem::take(&mut self.partial);
                    self.lines.push_back(Line { bytes, end });
                }
                self.overflow = false;
                if self.lines.is_empty() {
                    self.finish();
                }
            }
            return Ok(false);
        }
        let mut start = 0;
        for (i, b) in chunk.iter().enumerate() {
            if *b != b'\n' {
                continue;
            }
            self.push_partial(&chunk[start..i], truncated);
            let bytes = std::mem::take(&mut self.partial);
            self.overflow = false;
            let after = (chunk.len() - i - 1) as u64;
            self.lines.push_back(Line {
                bytes,
                end: Position {
                    ino: end.ino,
                    offset: end.offset - after,
                },
            });
            start = i + 1;
        }
        self.push_partial(&chunk[start..], truncated);
        Ok(true)
    }

    /// Nothing more to send: the file is closed (a kept tail only says "done").
    fn finish(&mut self) {
        self.done = true;
        self.reader = None;
    }

    /// Adds to the unfinished line, keeping at most `max_line` bytes of it.
    fn push_partial(&mut self, bytes: &[u8], truncated: &AtomicU64) {
        let room = self.max_line.saturating_sub(self.partial.len());
        if bytes.len() > room {
            if !self.overflow {
                truncated.fetch_add(1, Ordering::Relaxed);
                self.overflow = true;
            }
            self.partial.extend_from_slice(&bytes[..room]);
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// Saves the cursor when it moved (and `force`, or a second has passed).
    fn checkpoint(&mut self, force: bool) {
        let Some(pos) = self.sent else {
            return;
        };
        if self.saved == Some(pos) || !(force || self.saved_at.elapsed() >= SAVE_EVERY) {
            return;
        }
        let text = format!("{} {}\n", pos.ino, pos.offset);
        match cairn_cli::replace_file(&self.cursor_path, text.as_bytes(), None) {
            Ok(()) => self.saved = Some(pos),
            // The sandbox was collected meanwhile, or the disk is full: the next save tries
            // again; a restart before it sends those lines again.
            Err(e) => {
                tracing::debug!(path = %self.cursor_path.display(), error = %e, "cannot save the log forwarding cursor")
            }
        }
        self.saved_at = Instant::now();
    }
}

/// The connection to the collector.
enum Conn {
    Udp {
        socket: Option<(UdpSocket, SocketAddr)>,
    },
    Tcp {
        stream: Option<TcpStream>,
    },
}

/// The forwarder: task streams and the connection.
struct Forwarder {
    cfg: ForwardConfig,
    node: String,
    tasks: Arc<dyn KnownTasks>,
    stats: Arc<ForwardStats>,
    tails: BTreeMap<(String, Stream), Tail>,
    conn: Conn,
    /// Unix ms when the forwarder started: a task that ended before, with no cursor, is not
    /// sent.
    started_ms: u64,
    /// When a connection may be tried again, and the next backoff.
    retry_at: Instant,
    backoff: Duration,
    /// The collector is known to be unreachable (logged once per outage).
    down: bool,
}

impl Forwarder {
    /// Starts tailing new tasks' streams, notes which ended, forgets the collected.
    fn refresh(&mut self) {
        let records = self.tasks.records();
        let known: std::collections::BTreeSet<&str> = records.iter().map(|r| r.id()).collect();
        self.tails.retain(|(id, _), _| known.contains(id.as_str()));
        for record in &records {
            let terminal = record.state.is_terminal();
            for stream in [Stream::Stdout, Stream::Stderr] {
                let key = (record.id().to_string(), stream);
                if let Some(tail) = self.tails.get_mut(&key) {
                    tail.terminal = terminal;
                    continue;
                }
                let sandbox = self.tasks.sandbox(record.id());
                let tail = self.new_tail(record, stream, &sandbox, terminal);
                self.tails.insert(key, tail);
            }
        }
    }

    fn new_tail(
        &self,
        record: &crate::sandbox::TaskRecord,
        stream: Stream,
        sandbox: &Path,
        terminal: bool,
    ) -> Tail {
        let path = sandbox.join(stream.file());
        let cursor_path = sandbox.join(stream.cursor_file());
        let mut tail = Tail {
            header: StreamHeader::new(
                self.cfg.facility,
                stream,
                &self.node,
                &record.spec.app_id,
                record.id(),
            ),
            path,
            cursor_path,
            reader: None,
            lines: VecDeque::new(),
            partial: Vec::new(),
            overflow: false,
            max_line: self.cfg.target.max_message(),
            sent: None,
            saved: None,
            saved_at: Instant::now(),
            terminal,
            done: false,
        };
        match load_cursor(&tail.cursor_path) {
            Some(pos) => {
                tail.saved = Some(pos);
                tail.sent = Some(pos);
                match LogReader::resume(&tail.path, pos) {
                    Ok(Some(reader)) => tail.reader = Some(reader),
                    Ok(None) => {
                        self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(task = %record.id(), stream = stream.name(), "the log rotated more than once since it was last forwarded; forwarding from the current file");
                    }
                    Err(e) => {
                        tracing::debug!(task = %record.id(), error = %e, "cannot resume forwarding; from the current file")
                    }
                }
            }
            None => {
                let ended_before = record.finished_at.is_some_and(|at| at < self.started_ms);
                if terminal && ended_before {
                    tail.finish();
                }
            }
        }
        tail
    }

    /// Reads a chunk of every stream with nothing waiting (on the blocking pool). True when any
    /// read something.
    async fn read(&mut self) -> bool {
        let mut tails = std::mem::take(&mut self.tails);
        let stats = self.stats.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut any = false;
            for ((id, _), tail) in tails.iter_mut() {
                match tail.fill(&stats.truncated) {
                    Ok(read) => any |= read,
                    Err(e) => {
                        tracing::debug!(task = %id, error = %e, "cannot read the task's log to forward it")
                    }
                }
            }
            (tails, any)
        })
        .await;
        match read {
            Ok((tails, any)) => {
                self.tails = tails;
                any
            }
            // A panic while reading: the streams start again from their saved cursors.
            Err(_) => false,
        }
    }

    /// Sends what every stream has waiting; stops at the first failure of the connection.
    async fn send(&mut self) {
        let max = self.cfg.target.max_message();
        let keys: Vec<(String, Stream)> = self
            .tails
            .iter()
            .filter(|(_, t)| !t.lines.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if !self.connected().await {
                return;
            }
            let Some(tail) = self.tails.get_mut(&key) else {
                continue;
            };
            let timestamp = timestamp_now();
            let mut messages = Vec::with_capacity(tail.lines.len());
            for line in &tail.lines {
                let (msg, cut) = tail.header.message(&timestamp, &line.bytes, max);
                if cut {
                    self.stats.truncated.fetch_add(1, Ordering::Relaxed);
                }
                messages.push(msg);
            }
            let sent = match &mut self.conn {
                Conn::Udp { socket } => {
                    let Some((sock, addr)) = socket else {
                        return;
                    };
                    for msg in &messages {
                        match sock.send_to(msg, *addr).await {
                            Ok(_) => self.stats.sent.fetch_add(1, Ordering::Relaxed),
                            Err(_) => self.stats.dropped.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    true
                }
                Conn::Tcp { stream } => {
                    let Some(s) = stream else {
                        return;
                    };
                    let mut buf = Vec::new();
                    for msg in &messages {
                        octet_counted(msg, &mut buf);
                    }
                    match tokio::time::timeout(IO_TIMEOUT, s.write_all(&buf)).await {
                        Ok(Ok(())) => {
                            self.stats
                                .sent
                                .fetch_add(messages.len() as u64, Ordering::Relaxed);
                            true
                        }
                        Ok(Err(e)) => {
                            self.lost(&e.to_string());
                            false
                        }
                        Err(_) => {
                            self.lost("a write timed out");
                            false
                        }
                    }
                }
            };
            if !sent {
                // Sent again on the next connection: at least once.
                return;
            }
            if let Some(tail) = self.tails.get_mut(&key)
                && let Some(last) = tail.lines.back()
            {
                tail.sent = Some(last.end);
                tail.lines.clear();
            }
        }
    }

    /// The TCP connection broke: dropped, made again after the backoff.
    fn lost(&mut self, why: &str) {
        if let Conn::Tcp { stream } = &mut self.conn {
            *stream = None;
        }
        if !self.down {
            self.down = true;
            tracing::warn!(collector = %self.cfg.target, error = why, "log forwarding: the collector connection failed; reconnecting");
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Whether a connection is there to write on, making one when the backoff allows.
    async fn connected(&mut self) -> bool {
        // A TCP collector never writes: a readable socket has been closed (or reset) by it.
        if let Conn::Tcp { stream: Some(s) } = &self.conn {
            let mut probe = [0u8; 256];
            match s.try_read(&mut probe) {
                Ok(0) => self.lost("the collector closed the connection"),
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => self.lost(&e.to_string()),
                _ => {}
            }
        }
        let have = match &self.conn {
            Conn::Udp { socket } => socket.is_some(),
            Conn::Tcp { stream } => stream.is_some(),
        };
        if have {
            return true;
        }
        if Instant::now() < self.retry_at {
            return false;
        }
        match self.connect().await {
            Ok(()) => {
                if self.down {
                    tracing::info!(collector = %self.cfg.target, "log forwarding: connected again");
                }
                self.down = false;
                self.backoff = BACKOFF_MIN;
                true
            }
            Err(e) => {
                self.lost(&e.to_string());
                false
            }
        }
    }

    async fn connect(&mut self) -> io::Result<()> {
        let target = &self.cfg.target;
        let addr = tokio::time::timeout(
            IO_TIMEOUT,
            tokio::net::lookup_host((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "resolving the collector"))??
        .next()
        .ok_or_else(|| io::Error::other("the collector's name has no address"))?;
        match &mut self.conn {
            Conn::Udp { socket } => {
                let local: SocketAddr = if addr.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                *socket = Some((UdpSocket::bind(local).await?, addr));
            }
            Conn::Tcp { stream } => {
                let s = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting"))??;
                s.set_nodelay(true)?;
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                *stream = Some(s);
            }
        }
        Ok(())
    }

    /// Saves the cursors due (all of them with `force`), drops the finished streams.
    async fn checkpoint(&mut self, force: bool) {
        let mut tails = std::mem::take(&mut self.tails);
        let saved = tokio::task::spawn_blocking(move || {
            for tail in tails.values_mut() {
                let finished = tail.done && tail.lines.is_empty();
                tail.checkpoint(force || finished);
            }
            tails
        })
        .await;
        if let Ok(tails) = saved {
            self.tails = tails;
        }
    }
}

/// Forwards every task's output as configured until `stop` is cancelled, saving the cursors
/// before it returns.
pub async fn run(
    cfg: ForwardConfig,
    node: String,
    tasks: Arc<dyn KnownTasks>,
    stats: Arc<ForwardStats>,
    stop: CancellationToken,
) {
    tracing::info!(collector = %cfg.target, "forwarding the tasks' output as syslog");
    let conn = match cfg.target.transport {
        Transport::Udp => Conn::Udp { socket: None },
        Transport::Tcp => Conn::Tcp { stream: None },
    };
    let mut fwd = Forwarder {
        cfg,
        node,
        tasks,
        stats,
        tails: BTreeMap::new(),
        conn,
        started_ms: cairn_marathon::now_millis(),
        retry_at: Instant::now(),
        backoff: BACKOFF_MIN,
        down: false,
    };
    let mut refreshed = Instant::now() - REFRESH;
    while !stop.is_cancelled() {
        if refreshed.elapsed() >= REFRESH {
            fwd.refresh();
            refreshed = Instant::now();
        }
        let read = fwd.read().await;
        fwd.send().await;
        fwd.checkpoint(false).await;
        // More is waiting when a chunk was read and sent: go on at once; else look again soon.
        let waiting = fwd.tails.values().any(|t| !t.lines.is_empty());
        if read && !waiting {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = stop.cancelled() => {}
        }
    }
    fwd.checkpoint(true).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |s: &str| s.parse::<Target>();
        let ok = |transport, host: &str, port| Target {
            transport,
            host: host.into(),
            port,
        };
        for (raw, want) in [
            ("syslog://logs:1514", ok(Transport::Udp, "logs", 1514)),
            ("syslog://logs", ok(Transport::Udp, "logs", 514)),
            (
                "syslog+udp://10.0.0.1:514/",
                ok(Transport::Udp, "10.0.0.1", 514),
            ),
            ("SYSLOG+TCP://logs:6514", ok(Transport::Tcp, "logs", 6514)),
            ("syslog+tcp://[::1]:601", ok(Transport::Tcp, "::1", 601)),
            ("syslog+tcp://[::1]", ok(Transport::Tcp, "::1", 514)),
        ] {
            assert_eq!(t(raw).unwrap(), want, "{raw}");
        }
        assert_eq!(
            t("syslog+tcp://[::1]:601").unwrap().to_string(),
            "syslog+tcp://[::1]:601"
        );
        for (raw, why) in [
            ("logs:514", "expected syslog://"),
            ("http://logs:514", "is not syslog"),
            ("syslog://:514", "no host"),
            ("syslog://logs:0", "is not a port"),
            ("syslog://logs:x", "is not a port"),
            ("syslog://logs:514/path", "only HOST[:PORT]"),
            ("syslog://user@logs", "only HOST[:PORT]"),
            ("syslog://[::1", "unclosed"),
        ] {
            let err = t(raw).unwrap_err();
            assert!(err.contains(why), "{raw}: {err}");
        }
    }

    #[test]
    fn facilities() {
        assert_eq!("user".parse::<Facility>().unwrap(), Facility::USER);
        assert_eq!("LOCAL7".parse::<Facility>().unwrap(), Facility(23));
        assert!("nope".parse::<Facility>().unwrap_err().contains("local0"));
    }

    const TS: &str = "2026-05-07T21:09:36.123456Z";

    fn message(h: &StreamHeader, line: &[u8], max: usize) -> (String, bool) {
        let (m, cut) = h.message(TS, line, max);
        (String::from_utf8(m).unwrap(), cut)
    }

    /// The RFC 5424 form, case by case: PRI from facility and stream, header fields made
    /// printable and bounded, SD values escaped, lines cut at the bound.
    #[test]
    fn rfc5424_messages() {
        struct Case {
            facility: Facility,
            stream: Stream,
            node: &'static str,
            app: &'static str,
            task: &'static str,
            line: &'static str,
            max: usize,
            want: &'static str,
            cut: bool,
        }
        let cases = [
            Case {
                facility: Facility::USER,
                stream: Stream::Stdout,
                node: "node-1",
                app: "/shop/web",
                task: "shop_web.1",
                line: "hello",
                max: UDP_MAX,
                want: "<14>1 2026-05-07T21:09:36.123456Z node-1 /shop/web shop_web.1 stdout [cairn@32473 app=\"/shop/web\" task=\"shop_web.1\" node=\"node-1\" stream=\"stdout\"] hello",
                cut: false,
            },
            // stderr is err (3); local7 is 23: 23 * 8 + 3.
            Case {
                facility: Facility(23),
                stream: Stream::Stderr,
                node: "n",
                app: "/a",
                task: "t",
                line: "",
                max: UDP_MAX,
                want: "<187>1 2026-05-07T21:09:36.123456Z n /a t stderr [cairn@32473 app=\"/a\" task=\"t\" node=\"n\" stream=\"stderr\"] ",
                cut: false,
            },
            // `"`, `\` and `]` escaped in SD values; spaces and non-ASCII in header fields
            // become `_`; an empty field is `-`.
            Case {
                facility: Facility(0),
                stream: Stream::Stdout,
                node: "my node",
                app: "/we\"ird]\\app",
                task: "",
                line: "x",
                max: UDP_MAX,
                want: "<6>1 2026-05-07T21:09:36.123456Z my_node /we\"ird]\\app - stdout [cairn@32473 app=\"/we\\\"ird\\]\\\\app\" task=\"\" node=\"my node\" stream=\"stdout\"] x",
                cut: false,
            },
            Case {
                facility: Facility::USER,
                stream: Stream::Stdout,
                node: "nœud",
                app: "/é",
                task: "t",
                line: "ünïcode ok",
                max: UDP_MAX,
                want: "<14>1 2026-05-07T21:09:36.123456Z n_ud /_ t stdout [cairn@32473 app=\"/é\" task=\"t\" node=\"nœud\" stream=\"stdout\"] ünïcode ok",
                cut: false,
            },
            // APP-NAME keeps its last 48 characters.
            Case {
                facility: Facility::USER,
                stream: Stream::Stdout,
                node: "n",
                app: "/a-very-long-group-name/another-long-group/and-the-app-itself",
                task: "t",
                line: "x",
                max: UDP_MAX,
                want: "<14>1 2026-05-07T21:09:36.123456Z n group-name/another-long-group/and-the-app-itself t stdout [cairn@32473 app=\"/a-very-long-group-name/another-long-group/and-the-app-itself\" task=\"t\" node=\"n\" stream=\"stdout\"] x",
                cut: false,
            },
            // Cut to the bound, never inside a character (é is two bytes).
            Case {
                facility: Facility::USER,
                stream: Stream::Stdout,
                node: "n",
                app: "/a",
                task: "t",
                line: "abcé",
                max: 109,
                want: "<14>1 2026-05-07T21:09:36.123456Z n /a t stdout [cairn@32473 app=\"/a\" task=\"t\" node=\"n\" stream=\"stdout\"] abc",
                cut: true,
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            let h = StreamHeader::new(c.facility, c.stream, c.node, c.app, c.task);
            let (got, cut) = message(&h, c.line.as_bytes(), c.max);
            assert_eq!(got, c.want, "case {i}");
            assert_eq!(cut, c.cut, "case {i}");
            assert!(got.len() <= c.max, "case {i}");
        }
        // The longest header cairn makes (200-character ids of characters that all need
        // escaping, a 300-character node) still leaves room in a UDP message.
        let id = "]".repeat(200);
        let h = StreamHeader::new(Facility::USER, Stream::Stdout, &"n".repeat(300), &id, &id);
        let (m, cut) = h.message(TS, &[b'x'; 5000], UDP_MAX);
        assert!(cut);
        assert_eq!(m.len(), UDP_MAX);
        let header = m.len() - m.iter().rev().take_while(|b| **b == b'x').count();
        assert!(header <= UDP_MAX - 256, "a {header}-octet header");
    }

    #[test]
    fn octet_counting() {
        let mut out = Vec::new();
        octet_counted(b"<14>1 - - - - - - hi", &mut out);
        octet_counted("é".as_bytes(), &mut out);
        octet_counted(b"", &mut out);
        assert_eq!(out, "20 <14>1 - - - - - - hi2 é0 ".as_bytes());
    }

    #[test]
    fn char_boundaries() {
        let s = "aé€𝄞".as_bytes(); // 1 + 2 + 3 + 4 bytes
        for (at, want) in [
            (0, 0),
            (1, 1),
            (2, 1),
            (3, 3),
            (4, 3),
            (5, 3),
            (6, 6),
            (9, 6),
            (10, 10),
            (99, 10),
        ] {
            assert_eq!(char_boundary(s, at), want, "{at}");
        }
        // Not UTF-8: cut where asked.
        assert_eq!(char_boundary(&[0x80; 10], 5), 5);
    }

    /// Lines are split at newlines with the position after each; an unfinished line waits for
    /// its end (and is sent as it is once the task ended and the file is drained); a line past
    /// the bound keeps its head.
    #[test]
    fn tails_split_lines_with_their_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        std::fs::write(&path, b"one\ntwo\nthr").unwrap();
        let truncated = AtomicU64::new(0);
        let mut tail = Tail {
            header: StreamHeader::new(Facility::USER, Stream::Stdout, "n", "/a", "t"),
            cursor_path: dir.path().join("stdout.fwd"),
            path: path.clone(),
            reader: None,
            lines: VecDeque::new(),
            partial: Vec::new(),
            overflow: false,
            max_line: 8,
            sent: None,
            saved: None,
            saved_at: Instant::now(),
            terminal: false,
            done: false,
        };
        assert!(tail.fill(&truncated).unwrap());
        let got: Vec<(&[u8], u64)> = tail
            .lines
            .iter()
            .map(|l| (&l.bytes[..], l.end.offset))
            .collect();
        assert_eq!(got, [(&b"one"[..], 4), (&b"two"[..], 8)]);
        tail.sent = tail.lines.back().map(|l| l.end);
        tail.lines.clear();
        tail.checkpoint(true);
        let saved = load_cursor(&tail.cursor_path).unwrap();
        assert_eq!(saved.offset, 8);
        // The rest of the line, then a line far past the bound.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"ee\n0123456789abcdef\nlast").unwrap();
        assert!(tail.fill(&truncated).unwrap());
        let got: Vec<&[u8]> = tail.lines.iter().map(|l| &l.bytes[..]).collect();
        assert_eq!(got, [&b"three"[..], b"01234567"]);
        assert_eq!(truncated.load(Ordering::Relaxed), 1);
        tail.lines.clear();
        // Not ended: the unfinished line waits.
        assert!(!tail.fill(&truncated).unwrap());
        assert!(tail.lines.is_empty() && !tail.done);
        tail.terminal = true;
        assert!(!tail.fill(&truncated).unwrap());
        assert_eq!(tail.lines[0].bytes, b"last");
        assert_eq!(tail.lines[0].end.offset, 35);
        tail.lines.clear();
        assert!(!tail.fill(&truncated).unwrap());
        assert!(tail.done);
        // A resumed reader starts after what was saved.
        let mut r = LogReader::resume(&path, saved).unwrap().unwrap();
        assert_eq!(r.read_chunk().unwrap(), b"three\n0123456789abcdef\nlast");
    }
}
