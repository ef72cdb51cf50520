//! `lbconf watch --tls-certs DIR`: the certificates HAProxy's HTTPS frontend serves, chosen by
//! SNI, one PEM file per name in DIR (certificate chain and private key; wildcards allowed).
//!
//! [`CertStore`] keeps a validated copy of each of DIR's `*.pem` files in a private state
//! directory, plus the crt-list HAProxy's bind reads
//! (`bind ... ssl crt-list <state_dir>/crt-list.txt alpn h2,http/1.1`). HAProxy only ever reads
//! those copies, so a broken new version in DIR never replaces the one it serves: it is refused
//! (reported once per content) and the old copy keeps serving.
//!
//! Changes reach a running HAProxy through its runtime API, with no reload and no dropped
//! connection ([`CertStore::apply`]): `set ssl cert` + `commit ssl cert` for a renewal,
//! `new ssl cert` + `set` + `commit` + `add ssl crt-list` for a new certificate, `del ssl
//! crt-list` + `del ssl cert` for a removed one. The copies and the crt-list on disk follow
//! only what HAProxy accepted, so the next reload loads the same set. What the runtime API cannot
//! do (HAProxy's default certificate of a bind without `strict-sni` cannot be deleted; a payload
//! beyond HAProxy's CLI buffer; an unreachable socket) is reported as pending: the next
//! [`CertStore::rescan`] plans it again, and [`CertStore::apply_on_disk`] + a reload makes it.
//!
//! With `strict-sni` on the bind, HAProxy also starts with an empty crt-list (a warning, not an
//! error) and every certificate, the first one included, can be removed at runtime; without it,
//! an empty crt-list fails `haproxy -c` and the first line's certificate (the default one, served
//! to clients without or with an unknown SNI) only goes at a reload.
//!
//! [`watch_dir`] tells when DIR may have changed (inotify through `notify`, debounced, plus a
//! periodic rescan for filesystems without events).
//!
//! Secrets: PEM contents and key bytes are never logged nor put into errors; errors name the file
//! and what is wrong with it. Copies are named after the source file's name, never after anything
//! inside the PEM.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Most `*.pem` files served from DIR; more are refused (and reported).
pub const MAX_CERTS: usize = 1000;
/// Largest PEM file read from DIR, in bytes; a larger one is refused.
pub const MAX_PEM_BYTES: u64 = 64 * 1024;
/// Longest `set ssl cert` command with its payload sent to HAProxy. HAProxy gathers a command
/// and its payload in one buffer of `tune.bufsize` (16 KiB by default) and drops the connection
/// when it overflows; a larger certificate is left pending (it goes at the next reload).
const MAX_RUNTIME_COMMAND: usize = 15 * 1024;
/// The crt-list's file name in the state directory.
const CRT_LIST: &str = "crt-list.txt";
/// How long one runtime API command may take (connection, answer).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest runtime API answer read.
const MAX_ANSWER: u64 = 1024 * 1024;
/// How often a command answered "currently locked" (another certificate operation running in
/// HAProxy) is tried, and the pause between tries.
const LOCKED_TRIES: u32 = 20;
const LOCKED_PAUSE: Duration = Duration::from_millis(50);
/// How long DIR must be quiet after an event before [`watch_dir`] reports it.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Why the store cannot be opened or DIR cannot be read. Refusals of single files are
/// [`Refused`], not errors.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("watching the certificate directory needs a tokio runtime")]
    NoRuntime,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A file of DIR that is not served as it is (invalid, too large, one too many), or a change
/// HAProxy did not take. `file` is the file's name in DIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub file: String,
    pub reason: String,
}

/// What [`validate`] finds out about a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertInfo {
    /// The first certificate's DNS names: its subjectAltName dNSNames, else its subject CN.
    pub names: Vec<String>,
    /// The first certificate's notAfter.
    pub not_after: Option<jiff::Timestamp>,
}

/// A valid PEM file: what it is and its normalised form (the certificates in file order, then
/// the key, base64 in 64-column lines, no blank line: HAProxy's CLI payload ends at the first
/// blank line).
struct Valid {
    info: CertInfo,
    pem: Vec<u8>,
}

/// Validation of one PEM file: at least one CERTIFICATE and exactly one private key (PKCS#8,
/// RSA or EC), the key matching the first certificate (rustls `sign::CertifiedKey::keys_match`
/// with the ring provider's `any_supported_type`), every certificate parsable. Returns the
/// first certificate's DNS names (SAN, else CN) and notAfter, else an error naming what is wrong
/// (never any of the file's contents).
pub fn validate(pem: &[u8]) -> Result<CertInfo, String> {
    check(pem).map(|v| v.info)
}

fn check(pem: &[u8]) -> Result<Valid, String> {
    if pem.iter().all(u8::is_ascii_whitespace) {
        return Err("empty file".into());
    }
    // rustls-pki-types skips sections it does not know: an encrypted key would otherwise read
    // as "no private key".
    for line in pem.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line == b"-----BEGIN ENCRYPTED PRIVATE KEY-----" || line == b"Proc-Type: 4,ENCRYPTED" {
            return Err("the private key is encrypted; HAProxy needs it unencrypted".into());
        }
    }
    let mut certs: Vec<CertificateDer<'static>> = Vec::new();
    let mut keys: Vec<(SectionKind, Vec<u8>)> = Vec::new();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(pem_error)?;
        match kind {
            SectionKind::Certificate => certs.push(CertificateDer::from(der)),
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
                keys.push((kind, der));
            }
            // Public keys, CRLs, CSRs: not part of what HAProxy serves; left out of the copy.
            _ => {}
        }
    }
    if certs.is_empty() {
        return Err("no CERTIFICATE section".into());
    }
    let (key_kind, key_der) = match keys.len() {
        0 => {
            return Err(
                "no private key (a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section)".into(),
            );
        }
        1 => keys.pop().expect("one key"),
        n => return Err(format!("{n} private keys; exactly one is needed")),
    };
    for (i, cert) in certs.iter().enumerate() {
        rustls::server::ParsedCertificate::try_from(cert)
            .map_err(|e| format!("certificate #{} cannot be parsed: {e}", i + 1))?;
    }
    let key = match key_kind {
        SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(key_der.clone().into()),
        SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(key_der.clone().into()),
        _ => PrivateKeyDer::Sec1(key_der.clone().into()),
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| {
        "the private key cannot be read or its type is not supported \
         (RSA of 2048 bits or more, ECDSA P-256 or P-384, Ed25519)"
            .to_string()
    })?;
    let certified = rustls::sign::CertifiedKey::new(certs.clone(), signer);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err("the private key does not match the first certificate".into());
        }
        Err(e) => {
            return Err(format!(
                "cannot check the private key against the certificate: {e}"
            ));
        }
    }
    let info = cert_info(&certs[0]).unwrap_or_default();
    let mut out = Vec::with_capacity(pem.len());
    for cert in &certs {
        pem_section(&mut out, "CERTIFICATE", cert);
    }
    let label = match key_kind {
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        _ => "EC PRIVATE KEY",
    };
    pem_section(&mut out, label, &key_der);
    Ok(Valid { info, pem: out })
}

/// A PEM syntax error in words that carry none of the file's bytes.
fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "truncated PEM: a section has no END line".into(),
        E::IllegalSectionStart { .. } => "malformed PEM: a BEGIN line is broken".into(),
        E::Base64Decode(_) => "malformed PEM: a section is not valid base64".into(),
        E::SectionTooLarge => "malformed PEM: a section is too large".into(),
        _ => "malformed PEM".into(),
    }
}

fn pem_section(out: &mut Vec<u8>, label: &str, der: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    out.extend_from_slice(format!("-----BEGIN {label}-----\n").as_bytes());
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
}

/// One DER element: (tag, contents, what follows). Definite lengths of up to 4 bytes only
/// (DER certificates use nothing else).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The element at the front of `input` if it has `tag`: (contents, what follows).
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(input)? {
        (t, content, rest) if t == tag => Some((content, rest)),
        _ => None,
    }
}

const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// Names and notAfter of an X.509 certificate (RFC 5280's TBSCertificate read in order).
fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let (cert, _) = expect(der, 0x30)?;
    let (tbs, _) = expect(cert, 0x30)?;
    let mut rest = tbs;
    if let Some((_, after)) = expect(rest, 0xa0) {
        rest = after; // version
    }
    let (_, rest) = expect(rest, 0x02)?; // serialNumber
    let (_, rest) = expect(rest, 0x30)?; // signature
    let (_, rest) = expect(rest, 0x30)?; // issuer
    let (validity, rest) = expect(rest, 0x30)?;
    let (subject, rest) = expect(rest, 0x30)?;
    let (_, mut rest) = expect(rest, 0x30)?; // subjectPublicKeyInfo
    let not_after = {
        let (_, _, after_nb) = tlv(validity)?;
        let (tag, time, _) = tlv(after_nb)?;
        parse_time(tag, time)
    };
    let mut names = Vec::new();
    while let Some((tag, content, after)) = tlv(rest) {
        rest = after;
        if tag != 0xa3 {
            continue; // issuerUniqueID, subjectUniqueID
        }
        let (mut exts, _) = expect(content, 0x30)?;
        while let Some((ext, after)) = expect(exts, 0x30) {
            exts = after;
            let (oid, ext) = expect(ext, 0x06)?;
            if oid != OID_SAN {
                continue;
            }
            let ext = expect(ext, 0x01).map_or(ext, |(_, after)| after); // critical
            let (value, _) = expect(ext, 0x04)?;
            let (mut general_names, _) = expect(value, 0x30)?;
            while let Some((tag, name, after)) = tlv(general_names) {
                general_names = after;
                if tag == 0x82
                    && let Ok(name) = std::str::from_utf8(name)
                {
                    names.push(name.to_string());
                }
            }
        }
    }
    if names.is_empty() {
        names.extend(common_name(subject));
    }
    Some(CertInfo { names, not_after })
}

/// The subject's first commonName.
fn common_name(mut subject: &[u8]) -> Option<String> {
    while let Some((set, after)) = expect(subject, 0x31) {
        subject = after;
        let mut set = set;
        while let Some((attr, after)) = expect(set, 0x30) {
            set = after;
            let (oid, value) = expect(attr, 0x06)?;
            if oid != OID_CN {
                continue;
            }
            let (tag, value, _) = tlv(value)?;
            // UTF8String, PrintableString, T61String, IA5String
            if matches!(tag, 0x0c | 0x13 | 0x14 | 0x16) {
                return std::str::from_utf8(value).ok().map(str::to_string);
            }
        }
    }
    None
}

/// UTCTime (tag 0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ).
fn parse_time(tag: u8, time: &[u8]) -> Option<jiff::Timestamp> {
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if text.len() == 12 => {
            let yy: i16 = text[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        0x18 if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i8>().ok();
    let dt = jiff::civil::DateTime::new(
        year,
        field(0)?,
        field(2)?,
        field(4)?,
        field(6)?,
        field(8)?,
        0,
    )
    .ok()?;
    Some(dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp())
}

type Sha = [u8; 32];

fn sha256(bytes: &[u8]) -> Sha {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The copy's file name for source file `file`: its stem with anything but `[A-Za-z0-9._-]`
/// replaced by `_` (at most 100 characters), `.pem`; a stem that had to change gets 8 hex
/// digits of its name's SHA-256 too, so that `a b.pem` and `a_b.pem` do not share a copy.
fn copy_name(file: &str) -> String {
    let stem = file.strip_suffix(".pem").unwrap_or(file);
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if clean == stem && !clean.is_empty() {
        format!("{clean}.pem")
    } else {
        format!("{clean}-{}.pem", &hex(&sha256(file.as_bytes()))[..8])
    }
}

/// Whether HAProxy's CLI and crt-list parser take `path` as one word: no blank, `;`, `\`, `#`,
/// `:` (`del ssl crt-list` reads `<file>:<line>`) or other oddity.
fn plain_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() < 1024
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+'))
}

/// A certificate served: its source file in DIR, its copy, the source's SHA-256.
#[derive(Debug, Clone)]
struct Entry {
    file: String,
    copy: PathBuf,
    sha: Sha,
    info: CertInfo,
}

/// What a refusal was about: the content's hash when it was read, and the reason. The same
/// refusal is reported once, not at every rescan.
type Fingerprint = (Option<Sha>, String);

/// Bounds of one store (the constants, smaller in tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_certs: usize,
    max_bytes: u64,
}

const LIMITS: Limits = Limits {
    max_certs: MAX_CERTS,
    max_bytes: MAX_PEM_BYTES,
};

/// A new or renewed certificate of a [`Plan`]. Its PEM stays private (and out of `Debug`).
pub struct Change {
    /// The file's name in DIR.
    pub file: String,
    pub info: CertInfo,
    copy: PathBuf,
    sha: Sha,
    pem: Vec<u8>,
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Change")
            .field("file", &self.file)
            .field("info", &self.info)
            .field("copy", &self.copy)
            .finish_non_exhaustive()
    }
}

/// What changed in DIR since the last apply, by file name (contents compared by SHA-256).
/// `refused` holds the refusals not reported yet: a file refused for the same content and the
/// same reason before is not listed again (its old copy, if any, keeps serving).
#[derive(Debug, Default)]
pub struct Plan {
    pub added: Vec<Change>,
    pub renewed: Vec<Change>,
    /// Files whose certificates are served but which left DIR.
    pub removed: Vec<String>,
    pub refused: Vec<Refused>,
    /// Every refusal as of this scan, reported or not (becomes the store's memory).
    seen: BTreeMap<String, Fingerprint>,
}

impl Plan {
    /// Nothing to change and nothing new to report.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.renewed.is_empty()
            && self.removed.is_empty()
            && self.refused.is_empty()
    }
}

/// What [`CertStore::apply`] did, by file name in DIR.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub added: Vec<String>,
    pub renewed: Vec<String>,
    pub removed: Vec<String>,
    /// Refused until the file changes: the plan's invalid files and what HAProxy refused (its
    /// answer as the reason). The old copies, if any, keep serving.
    pub refused: Vec<Refused>,
    /// Valid changes the runtime API could not make (HAProxy's default certificate of a bind
    /// without `strict-sni`, a certificate larger than HAProxy's CLI buffer, the socket
    /// unreachable or busy, HAProxy's config not knowing the crt-list or copy). Nothing changed
    /// for them; the next rescan plans them again, and [`CertStore::apply_on_disk`] with a
    /// reload makes them.
    pub pending: Vec<Refused>,
}

impl Applied {
    /// Whether some valid change waits for a reload.
    pub fn needs_reload(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// The certificates lbconf serves: validated copies of DIR's PEM files kept in `state_dir`
/// (so that a broken new version never replaces the copy HAProxy serves), and the crt-list file
/// HAProxy's HTTPS bind reads (`bind ... ssl crt-list <state_dir>/crt-list.txt alpn h2,http/1.1`).
#[derive(Debug)]
pub struct CertStore {
    dir: PathBuf,
    state_dir: PathBuf,
    crt_list: PathBuf,
    /// In crt-list order, which is HAProxy's: runtime additions go at the end.
    entries: Vec<Entry>,
    refused_seen: BTreeMap<String, Fingerprint>,
    limits: Limits,
}

/// How a change went on the runtime API.
enum Outcome {
    Done,
    Refused(String),
    Pending(String),
}

impl CertStore {
    /// Reads DIR (the *.pem files in it, not recursively; at most MAX_CERTS files of at most
    /// MAX_PEM_BYTES each: more or larger are refused and reported), validates each, writes the
    /// valid ones' copies and the crt-list into state_dir (created mode 0700; copies 0600: they
    /// hold private keys), and returns the store plus what was refused.
    ///
    /// Files whose names start with `.` are skipped; symbolic links are followed (Kubernetes'
    /// secret volumes). Copies left in state_dir by an earlier run and no longer wanted are
    /// deleted. The crt-list lists the copies sorted by file name (its first line is the default
    /// certificate of a bind without `strict-sni`). A running HAProxy does not see this set
    /// until its next reload: open before starting or reloading it. Nothing is logged: the
    /// caller reports the refusals.
    pub fn open(dir: &Path, state_dir: &Path) -> Result<(CertStore, Vec<Refused>), CertError> {
        Self::open_with(dir, state_dir, LIMITS)
    }

    fn open_with(
        dir: &Path,
        state_dir: &Path,
        limits: Limits,
    ) -> Result<(CertStore, Vec<Refused>), CertError> {
        let meta = std::fs::metadata(dir).map_err(io_err(dir))?;
        if !meta.is_dir() {
            return Err(CertError::Unusable {
                path: dir.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        cairn_cli::create_private_dir(state_dir).map_err(io_err(state_dir))?;
        let state = state_dir.canonicalize().map_err(io_err(state_dir))?;
        if !state.to_str().is_some_and(plain_path) {
            return Err(CertError::Unusable {
                path: state,
                reason: "HAProxy's runtime API and crt-list need a path of letters, digits and \
                         / . _ - + only"
                    .into(),
            });
        }
        if dir.canonicalize().map_err(io_err(dir))? == state {
            return Err(CertError::Unusable {
                path: state,
                reason: "the state directory cannot be the certificate directory".into(),
            });
        }
        let mut store = CertStore {
            dir: dir.to_path_buf(),
            crt_list: state.join(CRT_LIST),
            state_dir: state,
            entries: Vec::new(),
            refused_seen: BTreeMap::new(),
            limits,
        };
        // Added in DIR's listing order: by file name.
        let plan = store.rescan()?;
        store.disk(&plan, false)?;
        store.remove_stale_copies()?;
        Ok((store, plan.refused))
    }

    /// The crt-list path for the HAProxy config.
    pub fn crt_list(&self) -> &Path {
        &self.crt_list
    }

    /// How many certificates are served.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no certificate is served (HAProxy refuses such a bind unless it has `strict-sni`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file names (in DIR) of the certificates served, in crt-list order, with what
    /// validation found out about each.
    pub fn served(&self) -> impl Iterator<Item = (&str, &CertInfo)> {
        self.entries.iter().map(|e| (e.file.as_str(), &e.info))
    }

    /// Reads DIR again and works out what changed since the last `apply`: Plan { added,
    /// renewed, removed, refused } (by file name; content compared by SHA-256). A file served
    /// whose new version is invalid is refused and not renewed; a file that left DIR is
    /// removed. Blocking file I/O (small files).
    pub fn rescan(&self) -> Result<Plan, CertError> {
        let mut plan = Plan::default();
        let listing = self.list_dir(&mut plan)?;
        let present: BTreeSet<&str> = listing.iter().map(|(f, _, _)| f.as_str()).collect();
        for e in &self.entries {
            if !present.contains(e.file.as_str()) {
                plan.removed.push(e.file.clone());
            }
        }
        let served_present = self
            .entries
            .iter()
            .filter(|e| present.contains(e.file.as_str()))
            .count();
        let mut room = self.limits.max_certs.saturating_sub(served_present);
        // Copy names taken: by every file served (a removed one's copy too, until the removal
        // is applied) and by those added in this plan.
        let mut copies: BTreeMap<PathBuf, String> = self
            .entries
            .iter()
            .map(|e| (e.copy.clone(), e.file.clone()))
            .collect();
        let by_file: BTreeMap<&str, &Entry> =
            self.entries.iter().map(|e| (e.file.as_str(), e)).collect();
        for (file, path, len) in listing {
            let served = by_file.get(file.as_str()).copied();
            if len > self.limits.max_bytes {
                let reason = format!("larger than {} bytes", self.limits.max_bytes);
                self.refuse(&mut plan, file, None, reason);
                continue;
            }
            if served.is_none() && room == 0 {
                let reason = format!(
                    "more than {} certificate files in {}",
                    self.limits.max_certs,
                    self.dir.display()
                );
                self.refuse(&mut plan, file, None, reason);
                continue;
            }
            let bytes = match self.read_source(&path) {
                Ok(bytes) => bytes,
                Err(reason) => {
                    self.refuse(&mut plan, file, None, reason);
                    continue;
                }
            };
            let sha = sha256(&bytes);
            if served.is_some_and(|e| e.sha == sha) {
                continue;
            }
            if let Some((Some(seen), reason)) = self.refused_seen.get(&file)
                && *seen == sha
            {
                // Refused before for this very content: still refused, not reported again.
                plan.seen.insert(file, (Some(sha), reason.clone()));
                continue;
            }
            let valid = match check(&bytes) {
                Ok(v) => v,
                Err(reason) => {
                    self.refuse(&mut plan, file, Some(sha), reason);
                    continue;
                }
            };
            let copy = match served {
                Some(e) => e.copy.clone(),
                None => {
                    let copy = self.state_dir.join(copy_name(&file));
                    if let Some(other) = copies.get(&copy) {
                        let reason = format!(
                            "its copy's name {} is taken by {other}; rename one of them",
                            copy_name(&file)
                        );
                        self.refuse(&mut plan, file, Some(sha), reason);
                        continue;
                    }
                    copies.insert(copy.clone(), file.clone());
                    copy
                }
            };
            let change = Change {
                file,
                info: valid.info,
                copy,
                sha,
                pem: valid.pem,
            };
            if served.is_some() {
                plan.renewed.push(change);
            } else {
                room -= 1;
                plan.added.push(change);
            }
        }
        Ok(plan)
    }

    /// Records a refusal in the plan; lists it unless it was reported before as it is.
    fn refuse(&self, plan: &mut Plan, file: String, sha: Option<Sha>, reason: String) {
        let fingerprint = (sha, reason);
        if self.refused_seen.get(&file) != Some(&fingerprint) {
            plan.refused.push(Refused {
                file: file.clone(),
                reason: fingerprint.1.clone(),
            });
        }
        plan.seen.insert(file, fingerprint);
    }

    /// DIR's `*.pem` files (name, path, size), sorted by name. Names that are not UTF-8 and
    /// entries that are not files are refused into `plan`.
    fn list_dir(&self, plan: &mut Plan) -> Result<Vec<(String, PathBuf, u64)>, CertError> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let raw = entry.file_name();
            let bytes = raw.as_encoded_bytes();
            if bytes.starts_with(b".") || !bytes.ends_with(b".pem") {
                continue;
            }
            let Some(name) = raw.to_str() else {
                let file = raw.to_string_lossy().into_owned();
                self.refuse(plan, file, None, "the file name is not UTF-8".into());
                continue;
            };
            files.push((name.to_string(), entry.path()));
        }
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for (name, path) in files {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => out.push((name, path, m.len())),
                Ok(_) => self.refuse(plan, name, None, "not a regular file".into()),
                Err(e) => self.refuse(plan, name, None, format!("cannot read it: {e}")),
            }
        }
        Ok(out)
    }

    /// A source file's bytes, at most the limit.
    fn read_source(&self, path: &Path) -> Result<Vec<u8>, String> {
        let max = self.limits.max_bytes;
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
        let mut bytes = Vec::new();
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        if bytes.len() as u64 > max {
            return Err(format!("larger than {max} bytes"));
        }
        Ok(bytes)
    }

    /// For when HAProxy is not running yet or the caller reloads instead: updates copies and
    /// crt-list on disk for every valid change of the plan. New certificates go at the end of
    /// the crt-list. Logs what it did and the plan's refusals. On an error (a copy that cannot be
    /// written), the other changes are still made and the crt-list lists what is on disk; the
    /// change that failed is planned again by the next rescan.
    pub fn apply_on_disk(&mut self, plan: &Plan) -> Result<(), CertError> {
        self.disk(plan, true)
    }

    fn disk(&mut self, plan: &Plan, log: bool) -> Result<(), CertError> {
        let mut first_error = None;
        for change in plan.renewed.iter().chain(&plan.added) {
            match self.store_copy(change) {
                Ok(()) => {
                    if log {
                        tracing::info!(file = %change.file, names = ?change.info.names, "certificate copied; HAProxy serves it from its next reload");
                    }
                }
                Err(e) => {
                    if log {
                        tracing::error!(file = %change.file, error = %e, "cannot write the certificate's copy");
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        for file in &plan.removed {
            if let Err(e) = self.drop_copy(file) {
                if log {
                    tracing::error!(file = %file, error = %e, "cannot remove the certificate's copy");
                }
                first_error.get_or_insert(e);
            } else if log {
                tracing::info!(file = %file, "certificate removed; HAProxy stops serving it at its next reload");
            }
        }
        self.refused_seen.clone_from(&plan.seen);
        if log {
            for r in &plan.refused {
                tracing::warn!(file = %r.file, reason = %r.reason, "certificate refused; the copy served before, if any, stays");
            }
        }
        let written = self.write_crt_list();
        match first_error {
            Some(e) => Err(e),
            None => written,
        }
    }

    /// Writes a change's copy and records it (renewed in place, or added at the end).
    fn store_copy(&mut self, change: &Change) -> Result<(), CertError> {
        cairn_cli::replace_file(&change.copy, &change.pem, Some(0o600))
            .map_err(io_err(&change.copy))?;
        let entry = Entry {
            file: change.file.clone(),
            copy: change.copy.clone(),
            sha: change.sha,
            info: change.info.clone(),
        };
        match self.entries.iter_mut().find(|e| e.file == change.file) {
            Some(e) => *e = entry,
            None => self.entries.push(entry),
        }
        Ok(())
    }

    /// Forgets a served file and deletes its copy.
    fn drop_copy(&mut self, file: &str) -> Result<(), CertError> {
        let Some(i) = self.entries.iter().position(|e| e.file == file) else {
            return Ok(());
        };
        let entry = self.entries.remove(i);
        match std::fs::remove_file(&entry.copy) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&entry.copy)(e)),
            _ => Ok(()),
        }
    }

    fn write_crt_list(&self) -> Result<(), CertError> {
        let mut text = String::new();
        for e in &self.entries {
            text.push_str(&e.copy.to_string_lossy());
            text.push('\n');
        }
        cairn_cli::replace_file(&self.crt_list, text.as_bytes(), Some(0o600))
            .map_err(io_err(&self.crt_list))
    }

    /// Deletes `*.pem` files of the state directory that no entry uses, and temp files left by
    /// an interrupted write.
    fn remove_stale_copies(&self) -> Result<(), CertError> {
        let wanted: BTreeSet<&Path> = self.entries.iter().map(|e| e.copy.as_path()).collect();
        let listing = std::fs::read_dir(&self.state_dir).map_err(io_err(&self.state_dir))?;
        for entry in listing {
            let entry = entry.map_err(io_err(&self.state_dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let stale_copy = name.ends_with(".pem") && !wanted.contains(path.as_path());
            let temp = name.starts_with('.') && name.contains(".tmp-");
            if (stale_copy || temp) && entry.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }

    /// Carries a plan out on a running HAProxy through its runtime socket, with no reload:
    /// renewed: `set ssl cert <copy> <<\n<PEM>\n` then `commit ssl cert <copy>`;
    /// added: `new ssl cert <copy>`, `set ssl cert ...`, `commit ssl cert ...`, `add ssl crt-list <crt-list> <copy>`;
    /// removed: `del ssl crt-list <crt-list> <copy>`, then `del ssl cert <copy>`.
    /// Any answer that is not a success aborts that certificate's transaction (`abort ssl cert
    /// <copy>`), leaves its old copy serving, and is reported; copies and the crt-list on disk
    /// are updated only for what HAProxy accepted, so a later reload loads the same set.
    /// Returns what was applied and what was refused (the plan's refusals included); logs both.
    ///
    /// HAProxy holds one certificate transaction at a time: one left open in this state
    /// directory (an apply cancelled half-way) is aborted first; anyone else's, or "operations
    /// are currently locked" for over a second, leave the change pending.
    pub async fn apply(&mut self, plan: &Plan, socket: &Path) -> Applied {
        let mut applied = Applied {
            refused: plan.refused.clone(),
            ..Applied::default()
        };
        for r in &plan.refused {
            tracing::warn!(file = %r.file, reason = %r.reason, "certificate refused; the copy served before, if any, stays");
        }
        let mut seen = plan.seen.clone();
        let crt_list = self.crt_list.to_string_lossy().into_owned();
        for (change, renewal) in plan
            .renewed
            .iter()
            .map(|c| (c, true))
            .chain(plan.added.iter().map(|c| (c, false)))
        {
            let copy = change.copy.to_string_lossy().into_owned();
            let outcome = if renewal {
                self.runtime_renew(socket, &copy, &change.pem).await
            } else {
                self.runtime_add(socket, &crt_list, &copy, &change.pem)
                    .await
            };
            let what = if renewal { "renewed" } else { "added" };
            match outcome {
                Outcome::Done => match self.store_copy(change).and_then(|()| self.write_crt_list())
                {
                    Ok(()) => {
                        tracing::info!(file = %change.file, names = ?change.info.names, "certificate {what} through the runtime API (no reload)");
                        if renewal {
                            applied.renewed.push(change.file.clone());
                        } else {
                            applied.added.push(change.file.clone());
                        }
                    }
                    Err(e) => {
                        // HAProxy serves the new version; the next rescan sends it again and
                        // retries the write.
                        tracing::error!(file = %change.file, error = %e, "certificate {what} in HAProxy but its copy cannot be written");
                        applied.pending.push(Refused {
                            file: change.file.clone(),
                            reason: format!("served, but its copy cannot be written: {e}"),
                        });
                    }
                },
                Outcome::Refused(reason) => {
                    tracing::warn!(file = %change.file, reason = %reason, "HAProxy refused the certificate; the copy served before, if any, stays");
                    seen.insert(change.file.clone(), (Some(change.sha), reason.clone()));
                    applied.refused.push(Refused {
                        file: change.file.clone(),
                        reason,
                    });
                }
                Outcome::Pending(reason) => {
                    tracing::warn!(file = %change.file, reason = %reason, "certificate not {what} through the runtime API; it waits for a reload");
                    applied.pending.push(Refused {
                        file: change.file.clone(),
                        reason,
                    });
                }
            }
        }
        for file in &plan.removed {
            let Some(entry) = self.entries.iter().find(|e| &e.file == file) else {
                continue;
            };
            let copy = entry.copy.to_string_lossy().into_owned();
            match self.runtime_remove(socket, &crt_list, &copy).await {
                Outcome::Done => {
                    match self.drop_copy(file).and_then(|()| self.write_crt_list()) {
                        Ok(()) => {
                            tracing::info!(file = %file, "certificate removed through the runtime API (no reload)");
                            applied.removed.push(file.clone());
                        }
                        Err(e) => {
                            tracing::error!(file = %file, error = %e, "certificate removed from HAProxy but its copy or the crt-list cannot be updated");
                            applied.pending.push(Refused {
                            file: file.clone(),
                            reason: format!("no longer served, but the state directory cannot be updated: {e}"),
                        });
                        }
                    }
                }
                Outcome::Refused(reason) | Outcome::Pending(reason) => {
                    tracing::warn!(file = %file, reason = %reason, "certificate not removed through the runtime API; it waits for a reload");
                    applied.pending.push(Refused {
                        file: file.clone(),
                        reason,
                    });
                }
            }
        }
        self.refused_seen = seen;
        applied
    }

    /// `set ssl cert` + `commit ssl cert` of a certificate HAProxy serves.
    async fn runtime_renew(&self, socket: &Path, copy: &str, pem: &[u8]) -> Outcome {
        if let Err(outcome) = self.runtime_set(socket, copy, pem).await {
            return outcome;
        }
        self.runtime_commit(socket, copy).await
    }

    /// `new ssl cert`, `set ssl cert`, `commit ssl cert`, `add ssl crt-list`.
    async fn runtime_add(&self, socket: &Path, crt_list: &str, copy: &str, pem: &[u8]) -> Outcome {
        let reply = match command(socket, &format!("new ssl cert {copy}\n")).await {
            Ok(r) => r,
            Err(e) => return Outcome::Pending(e),
        };
        // "already exists": left over by an earlier add or remove that stopped half-way; it is
        // filled anew below.
        let existed = if reply.contains("New empty certificate store") {
            false
        } else if reply.contains("already exists") {
            true
        } else {
            return Outcome::Pending(format!("new ssl cert: {}", one_line(&reply)));
        };
        if let Err(outcome) = self.runtime_set(socket, copy, pem).await {
            return outcome;
        }
        match self.runtime_commit(socket, copy).await {
            Outcome::Done => {}
            other => return other,
        }
        if existed {
            match command(socket, &format!("show ssl crt-list {crt_list}\n")).await {
                Ok(listing)
                    if listing
                        .lines()
                        .any(|l| l.split_whitespace().next() == Some(copy)) =>
                {
                    return Outcome::Done; // in the crt-list already: the commit renewed it
                }
                Ok(_) => {}
                Err(e) => return Outcome::Pending(e),
            }
        }
        let reply = match command(socket, &format!("add ssl crt-list {crt_list} {copy}\n")).await {
            Ok(r) => r,
            Err(e) => return Outcome::Pending(e),
        };
        if succeeded(&reply) {
            return Outcome::Done;
        }
        // Not served: the store filled above goes again.
        let _ = command(socket, &format!("del ssl cert {copy}\n")).await;
        let why = format!("add ssl crt-list: {}", one_line(&reply));
        if unsure(&reply) || reply.contains(&format!("crt-list '{crt_list}' does not exist")) {
            Outcome::Pending(why)
        } else {
            Outcome::Refused(why)
        }
    }

    /// `del ssl crt-list` then `del ssl cert`. Done when HAProxy no longer serves the copy
    /// (including when it did not know it).
    async fn runtime_remove(&self, socket: &Path, crt_list: &str, copy: &str) -> Outcome {
        let reply = match command(socket, &format!("del ssl crt-list {crt_list} {copy}\n")).await {
            Ok(r) => r,
            Err(e) => return Outcome::Pending(e),
        };
        let gone = reply.contains("deleted in crtlist")
            || reply.contains(&format!("certificate '{copy}' does not exist"))
            || reply.contains(&format!("certificate '{copy}' can't be found in crt-list"));
        if !gone {
            let why = if reply.contains("used as default certificate") {
                "HAProxy serves it as the default certificate of a bind without strict-sni, \
                 which the runtime API cannot delete"
                    .to_string()
            } else {
                format!("del ssl crt-list: {}", one_line(&reply))
            };
            return Outcome::Pending(why);
        }
        match command(socket, &format!("del ssl cert {copy}\n")).await {
            Ok(r) if r.contains("deleted!") || r.contains("doesn't exist") => {}
            Ok(r) => {
                tracing::warn!(copy, answer = %one_line(&r), "certificate no longer served but left in HAProxy's memory")
            }
            Err(e) => {
                tracing::warn!(copy, error = %e, "certificate no longer served but left in HAProxy's memory")
            }
        }
        Outcome::Done
    }

    /// `set ssl cert <copy> <<` with the PEM as payload.
    ///
    /// HAProxy holds one certificate transaction at a time, and 2.6 does not refuse a `set ssl
    /// cert` on another `.pem` path while one is open: it silently puts the payload into the
    /// open transaction (its answer names that one's path). So the open transaction is looked
    /// up first: one of this state directory's (an apply interrupted half-way) is aborted;
    /// anyone else's leaves the change pending.
    async fn runtime_set(&self, socket: &Path, copy: &str, pem: &[u8]) -> Result<(), Outcome> {
        let pem = std::str::from_utf8(pem).expect("a normalised PEM is ASCII");
        // The payload ends at its first empty line: `pem` has none and ends with a line break.
        let text = format!("set ssl cert {copy} <<\n{pem}\n");
        if text.len() > MAX_RUNTIME_COMMAND {
            return Err(Outcome::Pending(format!(
                "{} bytes of PEM, more than HAProxy's CLI takes in one command",
                pem.len()
            )));
        }
        let listing = command(socket, "show ssl cert\n")
            .await
            .map_err(Outcome::Pending)?;
        if let Some(other) = open_transaction(&listing)
            && other != copy
        {
            if Path::new(other).parent() != Some(self.state_dir.as_path()) {
                return Err(Outcome::Pending(format!(
                    "HAProxy has another certificate transaction open ({other})"
                )));
            }
            tracing::info!(
                transaction = other,
                "aborting a certificate transaction an interrupted apply left open"
            );
            let reply = command(socket, &format!("abort ssl cert {other}\n"))
                .await
                .map_err(Outcome::Pending)?;
            if !reply.contains("Transaction aborted") {
                return Err(Outcome::Pending(format!(
                    "abort ssl cert {other}: {}",
                    one_line(&reply)
                )));
            }
        }
        let reply = command(socket, &text).await.map_err(Outcome::Pending)?;
        for verb in ["created", "updated"] {
            if reply.contains(&format!("Transaction {verb} for certificate {copy}!")) {
                return Ok(());
            }
        }
        let named = ["created", "updated"].iter().find_map(|verb| {
            let (_, rest) = reply.split_once(&format!("Transaction {verb} for certificate "))?;
            rest.split('!').next()
        });
        if let Some(other) = named {
            // A transaction opened on `other` meanwhile took our payload: it is spoilt.
            let _ = command(socket, &format!("abort ssl cert {other}\n")).await;
            return Err(Outcome::Pending(format!(
                "a certificate transaction on {other} was opened meanwhile (aborted)"
            )));
        }
        let why = format!("set ssl cert: {}", one_line(&reply));
        if reply.contains("not referenced by the configuration") {
            return Err(Outcome::Pending(format!(
                "{why} (HAProxy's config predates this certificate)"
            )));
        }
        if unsure(&reply) {
            return Err(Outcome::Pending(why));
        }
        Err(Outcome::Refused(why))
    }

    /// `commit ssl cert <copy>`; anything but "Success!" aborts the transaction.
    async fn runtime_commit(&self, socket: &Path, copy: &str) -> Outcome {
        let outcome = match command(socket, &format!("commit ssl cert {copy}\n")).await {
            Ok(reply) if succeeded(&reply) => return Outcome::Done,
            Ok(reply) if unsure(&reply) => {
                Outcome::Pending(format!("commit ssl cert: {}", one_line(&reply)))
            }
            Ok(reply) => Outcome::Refused(format!("commit ssl cert: {}", one_line(&reply))),
            Err(e) => Outcome::Pending(e),
        };
        if let Err(e) = command(socket, &format!("abort ssl cert {copy}\n")).await {
            tracing::warn!(copy, error = %e, "cannot abort the certificate transaction");
        }
        outcome
    }
}

/// Whether a failure says nothing about the certificate: HAProxy busy with another certificate
/// operation or transaction, or no answer (HAProxy drops a command larger than its buffer, or
/// was going away).
fn unsure(reply: &str) -> bool {
    reply.trim().is_empty()
        || reply.contains("currently locked")
        || ongoing_transaction(reply).is_some()
}

/// Whether a commit's or an `add ssl crt-list`'s answer ends in success.
fn succeeded(reply: &str) -> bool {
    reply.lines().map(str::trim).any(|l| l == "Success!")
}

/// The certificate transaction `show ssl cert` lists (`*<path>` under `# transaction`).
fn open_transaction(listing: &str) -> Option<&str> {
    listing
        .lines()
        .find_map(|l| l.trim().strip_prefix('*'))
        .filter(|p| !p.is_empty())
}

/// The path in "The ongoing transaction is about '<path>' but ...".
fn ongoing_transaction(reply: &str) -> Option<&str> {
    let rest = reply.split("The ongoing transaction is about '").nth(1)?;
    rest.split('\'').next()
}

/// An answer on one line for logs and reports.
fn one_line(reply: &str) -> String {
    let lines: Vec<&str> = reply
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        "(no answer)".into()
    } else {
        lines.join(" | ")
    }
}

/// One runtime API command (with its payload, if any) on its own connection; its answer. A
/// command answered "currently locked" (another certificate operation under way) is tried
/// again for about a second.
async fn command(socket: &Path, text: &str) -> Result<String, String> {
    // The command without its payload (a private key) for the log.
    let line = text.lines().next().unwrap_or_default();
    let mut reply = String::new();
    for _ in 0..LOCKED_TRIES {
        reply = send(socket, text).await?;
        tracing::debug!(command = line, answer = %one_line(&reply), "runtime API");
        if !reply.contains("Operations on certificates are currently locked") {
            break;
        }
        tokio::time::sleep(LOCKED_PAUSE).await;
    }
    Ok(reply)
}

async fn send(socket: &Path, text: &str) -> Result<String, String> {
    let exchange = async {
        let mut s = crate::watch::connect(socket).await?;
        s.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        let mut reply = String::new();
        s.take(MAX_ANSWER)
            .read_to_string(&mut reply)
            .await
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        Ok(reply)
    };
    tokio::time::timeout(COMMAND_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{}: no answer within {COMMAND_TIMEOUT:?}", socket.display()))?
}

/// Stops [`watch_dir`]'s watching when dropped.
pub struct WatchGuard {
    _watcher: Option<notify::RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchGuard")
            .field("events", &self._watcher.is_some())
            .finish_non_exhaustive()
    }
}

/// Watches DIR (notify crate, plus a rescan every `interval` as a fallback for filesystems without
/// events) and sends () on `tx` (a tokio mpsc, capacity 1, try_send) when something may have changed,
/// debounced by ~200 ms so that a cert written in several steps is read once complete.
///
/// Needs a tokio runtime (it spawns a task). When DIR cannot be watched for events (inotify's
/// limits), it says so in the log and relies on `interval` alone. Reads of DIR (access
/// events, our own rescans among them) are not changes.
pub fn watch_dir(
    dir: &Path,
    interval: Duration,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Result<WatchGuard, CertError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| CertError::NoRuntime)?;
    if !std::fs::metadata(dir).map_err(io_err(dir))?.is_dir() {
        return Err(CertError::Unusable {
            path: dir.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    let interval = interval.max(Duration::from_millis(100));
    let (raw_tx, mut raw_rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = {
        use notify::Watcher as _;
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && matches!(event.kind, notify::EventKind::Access(_))
            {
                return;
            }
            // Full: a wake-up is already queued. An error is a change too (rescan to be sure).
            let _ = raw_tx.try_send(());
        };
        match notify::recommended_watcher(handler) {
            Ok(mut w) => match w.watch(dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, ?interval, "cannot watch the certificate directory for events; rescanning it periodically only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, ?interval, "cannot watch the certificate directory for events; rescanning it periodically only");
                None
            }
        }
    };
    let task = runtime.spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut due: Option<tokio::time::Instant> = None;
        // Closed when there is no watcher: then only the ticks remain.
        let mut events = true;
        loop {
            let tell = tokio::select! {
                event = raw_rx.recv(), if events => {
                    match event {
                        Some(()) => due = Some(tokio::time::Instant::now() + DEBOUNCE),
                        None => events = false,
                    }
                    false
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    due = None;
                    true
                }
                _ = ticks.tick() => true,
            };
            if tell && let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                return;
            }
        }
    });
    Ok(WatchGuard {
        _watcher: watcher,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::{Command, Stdio};
    use std::sync::{Arc, OnceLock};

    /// Fails the test with a clear message when a tool the tests need is missing.
    fn require(tool: &str) {
        let found = Command::new(tool)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        let found = found
            || Command::new(tool)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
        assert!(
            found,
            "`{tool}` is not installed (or not on PATH); the certificate tests need it"
        );
    }

    /// Runs `openssl` with `args` (split on blanks) in `dir`.
    fn openssl(dir: &Path, args: &str) {
        require("openssl");
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A certificate and its key, PEM.
    #[derive(Clone)]
    struct Leaf {
        cert: Vec<u8>,
        key: Vec<u8>,
    }

    impl Leaf {
        fn pem(&self) -> Vec<u8> {
            [self.cert.as_slice(), self.key.as_slice()].concat()
        }

        /// The leaf certificate's DER (what a TLS client is served).
        fn der(&self) -> Vec<u8> {
            CertificateDer::from_pem_slice(&self.cert)
                .expect("leaf PEM")
                .to_vec()
        }
    }

    /// A private CA and the leaves the tests use, made once with openssl.
    struct Pki {
        ca_cert: Vec<u8>,
        a1: Leaf,
        a2: Leaf,
        a3: Leaf,
        weak: Leaf,
        b: Leaf,
        wild: Leaf,
        rsa_pkcs1: Leaf,
        ec_sec1: Leaf,
        cn_only: Leaf,
        other_key: Vec<u8>,
        encrypted_key: Vec<u8>,
    }

    fn pki() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(make_pki)
    }

    fn make_pki() -> Pki {
        let tmp = tempfile::tempdir().expect("temp dir");
        let d = tmp.path();
        let read = |name: &str| std::fs::read(d.join(name)).expect(name);
        const EC: &str = "ec -pkeyopt ec_paramgen_curve:P-256";
        openssl(
            d,
            &format!(
                "req -x509 -newkey {EC} -nodes -keyout ca.key -out ca.crt -days 30 \
                 -subj /CN=cairn-test-CA"
            ),
        );
        let mut serial = 1000;
        // A leaf signed by the CA: `san` None makes a certificate with a CN only; `x509` adds
        // arguments to the signing.
        let mut leaf = |name: &str, san: Option<&str>, key: &str, x509: &str| {
            serial += 1;
            let cn = san.map_or(name, |s| {
                s.split(',').next().unwrap_or(s).trim_start_matches("DNS:")
            });
            openssl(
                d,
                &format!(
                    "req -new -newkey {key} -nodes -keyout {name}.key -out x.csr -subj /CN={cn}"
                ),
            );
            let ext = match san {
                Some(san) => format!("subjectAltName={san}\n"),
                None => "basicConstraints=CA:FALSE\n".to_string(),
            };
            std::fs::write(d.join("x.ext"), ext).expect("ext");
            openssl(
                d,
                &format!(
                    "x509 -req -in x.csr -CA ca.crt -CAkey ca.key -set_serial {serial} -days 30 \
                     -extfile x.ext -out {name}.crt {x509}"
                ),
            );
            Leaf {
                cert: read(&format!("{name}.crt")),
                key: read(&format!("{name}.key")),
            }
        };
        let a1 = leaf("a1", Some("DNS:a.test"), EC, "");
        let a2 = leaf("a2", Some("DNS:a.test"), EC, "");
        let a3 = leaf("a3", Some("DNS:a.test"), EC, "");
        // Valid to lbconf, but OpenSSL 3 at Debian's security level 2 will not serve a
        // certificate signed with SHA-1 ("ca md too weak"): HAProxy refuses it.
        let weak = leaf("weak", Some("DNS:a.test"), EC, "-sha1");
        let b = leaf("b", Some("DNS:b.test"), EC, "");
        let wild = leaf("wild", Some("DNS:*.wild.test"), EC, "");
        let cn_only = leaf("cn.test", None, EC, "");
        let rsa = leaf("rsa", Some("DNS:rsa.test,DNS:www.rsa.test"), "rsa:2048", "");
        openssl(d, "rsa -in rsa.key -traditional -out rsa1.key");
        let sec = leaf("sec", Some("DNS:sec.test"), EC, "");
        openssl(d, "ec -in sec.key -out sec1.key");
        openssl(
            d,
            "genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out other.key",
        );
        openssl(
            d,
            "pkcs8 -topk8 -in other.key -passout pass:secret -out enc.key",
        );
        Pki {
            ca_cert: read("ca.crt"),
            a1,
            a2,
            a3,
            weak,
            b,
            wild,
            rsa_pkcs1: Leaf {
                cert: rsa.cert,
                key: read("rsa1.key"),
            },
            ec_sec1: Leaf {
                cert: sec.cert,
                key: read("sec1.key"),
            },
            cn_only,
            other_key: read("other.key"),
            encrypted_key: read("enc.key"),
        }
    }

    /// `pem` cut in the middle of its first section's base64.
    fn truncated(pem: &[u8]) -> Vec<u8> {
        pem[..pem.len() / 3].to_vec()
    }

    #[test]
    fn validate_table() {
        let p = pki();
        let key_first = [p.a1.key.as_slice(), p.a1.cert.as_slice()].concat();
        let chain = [
            p.a1.cert.as_slice(),
            p.ca_cert.as_slice(),
            p.a1.key.as_slice(),
        ]
        .concat();
        let with_comments = [
            b"Bag Attributes\n  friendlyName: a\n".as_slice(),
            &p.a1.cert,
            b"\n\n".as_slice(),
            &p.a1.key,
        ]
        .concat();
        let two_keys = [p.a1.pem(), p.other_key.clone()].concat();
        let mismatched = [p.a1.cert.as_slice(), p.other_key.as_slice()].concat();
        let encrypted = [p.a1.cert.as_slice(), p.encrypted_key.as_slice()].concat();
        let bad_base64 = [
            p.a1.cert.as_slice(),
            b"-----BEGIN PRIVATE KEY-----\nnot*base64!\n-----END PRIVATE KEY-----\n",
        ]
        .concat();
        let not_a_cert = [
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".as_slice(),
            &p.a1.key,
        ]
        .concat();
        type Want = Result<&'static [&'static str], &'static str>;
        let cases: Vec<(&str, Vec<u8>, Want)> = vec![
            ("cert + PKCS#8 EC key", p.a1.pem(), Ok(&["a.test"])),
            ("key first", key_first, Ok(&["a.test"])),
            ("chain", chain, Ok(&["a.test"])),
            (
                "text around and blank lines",
                with_comments,
                Ok(&["a.test"]),
            ),
            ("wildcard", p.wild.pem(), Ok(&["*.wild.test"])),
            (
                "RSA PKCS#1 key",
                p.rsa_pkcs1.pem(),
                Ok(&["rsa.test", "www.rsa.test"]),
            ),
            ("EC SEC1 key", p.ec_sec1.pem(), Ok(&["sec.test"])),
            ("CN without SAN", p.cn_only.pem(), Ok(&["cn.test"])),
            ("empty", Vec::new(), Err("empty file")),
            ("blank", b"\n  \n".to_vec(), Err("empty file")),
            ("no key", p.a1.cert.clone(), Err("no private key")),
            ("no certificate", p.a1.key.clone(), Err("no CERTIFICATE")),
            ("two keys", two_keys, Err("2 private keys")),
            ("mismatched key", mismatched, Err("does not match")),
            ("encrypted key", encrypted, Err("encrypted")),
            ("truncated", truncated(&p.a1.pem()), Err("truncated PEM")),
            ("bad base64", bad_base64, Err("not valid base64")),
            (
                "garbage certificate",
                not_a_cert,
                Err("certificate #1 cannot be parsed"),
            ),
            ("not PEM at all", b"hello\n".to_vec(), Err("no CERTIFICATE")),
        ];
        for (what, pem, want) in cases {
            let got = validate(&pem);
            match (want, got) {
                (Ok(names), Ok(info)) => {
                    assert_eq!(info.names, names, "{what}");
                    let not_after = info.not_after.unwrap_or_else(|| panic!("{what}: notAfter"));
                    let days = (not_after.as_second() - jiff::Timestamp::now().as_second()) / 86400;
                    assert!((28..=30).contains(&days), "{what}: notAfter {not_after}");
                }
                (Err(want), Err(got)) => {
                    assert!(got.contains(want), "{what}: {got:?} does not say {want:?}");
                    // Never any of the file's contents in the reason.
                    assert!(
                        !got.contains("MII") && !got.contains("----"),
                        "{what}: {got}"
                    );
                }
                (want, got) => panic!("{what}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    /// The copy holds the certificates then the key, with no blank line and nothing else.
    #[test]
    fn copies_are_normalised() {
        let p = pki();
        let messy = [
            b"junk\n".as_slice(),
            &p.a1.key,
            b"\n\n".as_slice(),
            &p.a1.cert,
            &p.ca_cert,
        ]
        .concat();
        let valid = check(&messy).expect("valid");
        let text = String::from_utf8(valid.pem.clone()).expect("ascii");
        assert!(!text.contains("\n\n") && !text.contains("junk"));
        let labels: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-----BEGIN"))
            .collect();
        assert_eq!(
            labels,
            [
                "-----BEGIN CERTIFICATE-----",
                "-----BEGIN CERTIFICATE-----",
                "-----BEGIN PRIVATE KEY-----"
            ]
        );
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(validate(&valid.pem).expect("copy valid").names, ["a.test"]);
        let first = CertificateDer::from_pem_slice(&valid.pem).expect("cert");
        assert_eq!(first.as_ref(), p.a1.der().as_slice());
    }

    #[test]
    fn copy_names_come_from_file_names() {
        assert_eq!(copy_name("a.test.pem"), "a.test.pem");
        assert_eq!(copy_name("my-site_2.pem"), "my-site_2.pem");
        let wild = copy_name("*.wild.test.pem");
        assert!(
            wild.starts_with("_.wild.test-") && wild.ends_with(".pem"),
            "{wild}"
        );
        assert_ne!(copy_name("a b.pem"), copy_name("a_b.pem"));
        assert_ne!(copy_name("a;b.pem"), copy_name("a b.pem"));
        let long = copy_name(&format!("{}.pem", "x".repeat(300)));
        assert!(long.len() < 120, "{long}");
        for name in ["a b.pem", "é.pem", "a;rm -rf.pem", "a:1.pem", ".pem"] {
            let copy = copy_name(name);
            assert!(plain_path(&copy), "{name} → {copy}");
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    fn crt_list_lines(store: &CertStore) -> Vec<String> {
        std::fs::read_to_string(store.crt_list())
            .expect("crt-list")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn copy_of(store: &CertStore, file: &str) -> PathBuf {
        store.state_dir.join(copy_name(file))
    }

    struct Dirs {
        _tmp: tempfile::TempDir,
        src: PathBuf,
        state: PathBuf,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().expect("temp dir");
        let src = tmp.path().join("certs");
        std::fs::create_dir(&src).expect("certs dir");
        let state = tmp.path().join("state/lbconf");
        Dirs {
            src,
            state,
            _tmp: tmp,
        }
    }

    fn files(changes: &[Change]) -> Vec<&str> {
        changes.iter().map(|c| c.file.as_str()).collect()
    }

    #[test]
    fn open_serves_valid_files_and_reports_the_others() {
        let p = pki();
        let d = dirs();
        std::fs::write(d.src.join("a.test.pem"), p.a1.pem()).unwrap();
        std::fs::write(d.src.join("*.wild.test.pem"), p.wild.pem()).unwrap();
        std::fs::write(d.src.join("broken.pem"), truncated(&p.b.pem())).unwrap();
        std::fs::write(d.src.join("notes.txt"), "not a certificate").unwrap();
        std::fs::write(d.src.join(".hidden.pem"), "ignored").unwrap();
        std::fs::create_dir(d.src.join("dir.pem")).unwrap();
        std::os::unix::fs::symlink(d.src.join("a.test.pem"), d.src.join("link.pem")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", d.src.join("dangling.pem")).unwrap();
        // A copy left by an earlier run for a file that is gone, and a foreign file.
        std::fs::create_dir_all(&d.state).unwrap();
        std::fs::write(d.state.join("gone.pem"), "old").unwrap();
        std::fs::write(d.state.join("README"), "kept").unwrap();

        let (store, refused) = CertStore::open(&d.src, &d.state).expect("open");
        assert_eq!(store.len(), 3, "a.test, *.wild.test and the link");
        let mut refused_files: Vec<&str> = refused.iter().map(|r| r.file.as_str()).collect();
        refused_files.sort();
        assert_eq!(refused_files, ["broken.pem", "dangling.pem", "dir.pem"]);
        let broken = refused.iter().find(|r| r.file == "broken.pem").unwrap();
        assert!(broken.reason.contains("truncated"), "{broken:?}");

        assert_eq!(mode(&d.state), 0o700);
        let lines = crt_list_lines(&store);
        let mut want: Vec<String> = ["*.wild.test.pem", "a.test.pem", "link.pem"]
            .iter()
            .map(|f| copy_of(&store, f).to_string_lossy().into_owned())
            .collect();
        want.sort();
        assert_eq!(lines, want, "sorted by file name");
        for line in &lines {
            let path = Path::new(line);
            assert!(path.is_absolute() && path.starts_with(&store.state_dir));
            assert_eq!(mode(path), 0o600, "{line}");
            assert!(plain_path(line), "{line}");
        }
        assert_eq!(
            std::fs::read(copy_of(&store, "a.test.pem")).unwrap(),
            check(&p.a1.pem()).unwrap().pem
        );
        assert!(!d.state.join("gone.pem").exists(), "stale copy removed");
        assert!(
            d.state.join("README").exists(),
            "foreign files are left alone"
        );
        let served: Vec<(&str, Vec<String>)> =
            store.served().map(|(f, i)| (f, i.names.clone())).collect();
        assert!(served.contains(&("*.wild.test.pem", vec!["*.wild.test".to_string()])));

        let plan = store.rescan().expect("rescan");
        assert!(
            plan.is_empty(),
            "nothing changed, nothing new to report: {plan:?}"
        );
    }

    #[test]
    fn rescan_plans_additions_renewals_removals_and_refusals() {
        let p = pki();
        let d = dirs();
        std::fs::write(d.src.join("a.test.pem"), p.a1.pem()).unwrap();
        std::fs::write(d.src.join("c.pem"), p.cn_only.pem()).unwrap();
        let (mut store, refused) = CertStore::open(&d.src, &d.state).expect("open");
        assert!(refused.is_empty());
        let a_copy = copy_of(&store, "a.test.pem");

        // Added.
        std::fs::write(d.src.join("b.test.pem"), p.b.pem()).unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(files(&plan.added), ["b.test.pem"]);
        assert_eq!(plan.added[0].info.names, ["b.test"]);
        assert!(plan.renewed.is_empty() && plan.removed.is_empty() && plan.refused.is_empty());
        assert!(!format!("{plan:?}").contains("PRIVATE"), "no PEM in Debug");
        store.apply_on_disk(&plan).unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(
            crt_list_lines(&store).last().unwrap(),
            &copy_of(&store, "b.test.pem").to_string_lossy(),
            "new certificates go at the end"
        );
        assert_eq!(mode(&copy_of(&store, "b.test.pem")), 0o600);
        assert!(store.rescan().unwrap().is_empty());

        // Renewed.
        std::fs::write(d.src.join("a.test.pem"), p.a2.pem()).unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(files(&plan.renewed), ["a.test.pem"]);
        assert!(plan.added.is_empty() && plan.removed.is_empty());
        store.apply_on_disk(&plan).unwrap();
        assert_eq!(
            std::fs::read(&a_copy).unwrap(),
            check(&p.a2.pem()).unwrap().pem
        );
        assert_eq!(mode(&a_copy), 0o600);

        // A broken new version: refused, reported once, the old copy kept.
        std::fs::write(d.src.join("a.test.pem"), truncated(&p.a3.pem())).unwrap();
        let plan = store.rescan().unwrap();
        assert!(plan.renewed.is_empty() && plan.removed.is_empty());
        assert_eq!(plan.refused.len(), 1);
        assert_eq!(plan.refused[0].file, "a.test.pem");
        store.apply_on_disk(&plan).unwrap();
        assert_eq!(
            std::fs::read(&a_copy).unwrap(),
            check(&p.a2.pem()).unwrap().pem
        );
        assert!(
            store.rescan().unwrap().is_empty(),
            "the same refusal is not repeated"
        );
        // Broken differently: reported again.
        std::fs::write(
            d.src.join("a.test.pem"),
            [p.a3.cert.clone(), p.other_key.clone()].concat(),
        )
        .unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(plan.refused.len(), 1);
        assert!(plan.refused[0].reason.contains("does not match"));
        store.apply_on_disk(&plan).unwrap();
        // Fixed: renewed.
        std::fs::write(d.src.join("a.test.pem"), p.a3.pem()).unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(files(&plan.renewed), ["a.test.pem"]);
        store.apply_on_disk(&plan).unwrap();
        assert_eq!(
            std::fs::read(&a_copy).unwrap(),
            check(&p.a3.pem()).unwrap().pem
        );

        // Removed.
        std::fs::remove_file(d.src.join("c.pem")).unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(plan.removed, ["c.pem"]);
        store.apply_on_disk(&plan).unwrap();
        assert_eq!(store.len(), 2);
        assert!(!copy_of(&store, "c.pem").exists());
        assert_eq!(
            crt_list_lines(&store),
            [
                a_copy.to_string_lossy().into_owned(),
                copy_of(&store, "b.test.pem").to_string_lossy().into_owned()
            ]
        );

        // A served file whose new version is broken and then removed: removed.
        std::fs::write(d.src.join("b.test.pem"), b"garbage").unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(plan.refused.len(), 1);
        store.apply_on_disk(&plan).unwrap();
        std::fs::remove_file(d.src.join("b.test.pem")).unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(plan.removed, ["b.test.pem"]);
    }

    #[test]
    fn limits_refuse_large_files_and_too_many() {
        let p = pki();
        let d = dirs();
        let limits = Limits {
            max_certs: 2,
            max_bytes: 2048,
        };
        std::fs::write(d.src.join("1.pem"), p.a1.pem()).unwrap();
        std::fs::write(d.src.join("2.pem"), p.b.pem()).unwrap();
        std::fs::write(d.src.join("3.pem"), p.wild.pem()).unwrap();
        // Too large; refused without taking room (files are taken in name order).
        std::fs::write(d.src.join("0big.pem"), p.rsa_pkcs1.pem()).unwrap();
        let (mut store, refused) = CertStore::open_with(&d.src, &d.state, limits).expect("open");
        assert_eq!(store.len(), 2);
        let reasons: BTreeMap<&str, &str> = refused
            .iter()
            .map(|r| (r.file.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 2, "{refused:?}");
        assert!(
            reasons["3.pem"].contains("more than 2 certificate files"),
            "{reasons:?}"
        );
        assert!(
            reasons["0big.pem"].contains("larger than 2048 bytes"),
            "{reasons:?}"
        );
        assert!(store.rescan().unwrap().is_empty(), "reported once");

        // Room again: the next file in name order gets in; a served file is never pushed out.
        std::fs::remove_file(d.src.join("1.pem")).unwrap();
        std::fs::write(d.src.join("0.pem"), p.a2.pem()).unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(plan.removed, ["1.pem"]);
        assert_eq!(files(&plan.added), ["0.pem"]);
        store.apply_on_disk(&plan).unwrap();
        assert_eq!(store.len(), 2);

        // The real limits.
        assert_eq!((MAX_CERTS, MAX_PEM_BYTES), (1000, 64 * 1024));
        let big = vec![b'x'; MAX_PEM_BYTES as usize + 1];
        std::fs::write(d.src.join("huge.pem"), big).unwrap();
        let (_, refused) = CertStore::open(&d.src, &d.state).expect("open");
        assert!(
            refused
                .iter()
                .any(|r| r.file == "huge.pem" && r.reason.contains("larger than 65536 bytes")),
            "{refused:?}"
        );
    }

    #[test]
    fn state_dirs_haproxy_cannot_name_are_refused() {
        let p = pki();
        let d = dirs();
        std::fs::write(d.src.join("a.pem"), p.a1.pem()).unwrap();
        let err = CertStore::open(&d.src, &d._tmp.path().join("with space")).unwrap_err();
        assert!(err.to_string().contains("path of letters"), "{err}");
        let err = CertStore::open(&d.src, &d.src).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot be the certificate directory"),
            "{err}"
        );
        let err = CertStore::open(&d.src.join("missing"), &d.state).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn clashing_copy_names_are_refused() {
        let p = pki();
        let d = dirs();
        // Two names that sanitise alike get distinct copies.
        std::fs::write(d.src.join("a b.pem"), p.a1.pem()).unwrap();
        std::fs::write(d.src.join("a_b.pem"), p.b.pem()).unwrap();
        let (store, refused) = CertStore::open(&d.src, &d.state).expect("open");
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(store.len(), 2);
        // A file named like another's hashed copy.
        let taken = copy_name("a b.pem");
        std::fs::write(d.src.join(&taken), p.wild.pem()).unwrap();
        let plan = store.rescan().unwrap();
        assert!(plan.added.is_empty());
        assert!(
            plan.refused[0].reason.contains("is taken by a b.pem"),
            "{plan:?}"
        );
    }

    #[tokio::test]
    async fn watch_dir_reports_changes_once_settled() {
        let d = dirs();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let _guard = watch_dir(&d.src, Duration::from_secs(3600), tx).expect("watch");
        // A file written in several steps: one notification after it settles.
        for i in 0..5 {
            std::fs::write(d.src.join("a.pem"), format!("step {i}")).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a notification")
            .expect("open channel");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(rx.try_recv().is_err(), "debounced into one");
        // Reading the directory (what a rescan does) is no change.
        let _ = std::fs::read(d.src.join("a.pem")).unwrap();
        let _ = std::fs::read_dir(&d.src).unwrap().count();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(rx.try_recv().is_err(), "reads are not changes");
        std::fs::remove_file(d.src.join("a.pem")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("removal noticed")
            .expect("open channel");
    }

    #[tokio::test]
    async fn watch_dir_falls_back_to_the_interval() {
        let d = dirs();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let guard = watch_dir(&d.src, Duration::from_millis(150), tx).expect("watch");
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a tick")
                .expect("open channel");
        }
        drop(guard);
        tokio::time::sleep(Duration::from_millis(50)).await;
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(rx.try_recv().is_err(), "stopped when the guard went");
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let missing = watch_dir(&d.src.join("missing"), Duration::from_secs(1), tx);
        assert!(missing.is_err());
    }

    // ---- against a real HAProxy 2.6 ----

    /// A HAProxy run in the foreground for one test; killed when dropped (a panic included).
    struct Haproxy {
        child: std::process::Child,
        socket: PathBuf,
        port: u16,
        log: PathBuf,
    }

    impl Drop for Haproxy {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Haproxy {
        async fn start(dir: &Path, crt_list: &Path, bind_options: &str) -> Haproxy {
            require("haproxy");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let socket = dir.join("admin.sock");
            let config = format!(
                "global\n  stats socket {sock} level admin\n  nbthread 1\n\
                 defaults\n  mode http\n  timeout client 10s\n  timeout server 10s\n  timeout connect 5s\n\
                 frontend https\n  bind 127.0.0.1:{port} ssl crt-list {list} {bind_options}alpn h2,http/1.1\n\
                 \x20 http-request return status 200 content-type text/plain string ok\n",
                sock = socket.display(),
                list = crt_list.display(),
            );
            let cfg = dir.join("haproxy.cfg");
            std::fs::write(&cfg, config).expect("config");
            let log = dir.join("haproxy.err");
            let child = Command::new("haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("start haproxy");
            let mut h = Haproxy {
                child,
                socket,
                port,
                log,
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = h.child.try_wait().expect("wait") {
                    panic!("haproxy exited ({status}): {}", h.errors());
                }
                if h.pid().await.is_some()
                    && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                {
                    return h;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "haproxy did not come up: {}",
                    h.errors()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        fn errors(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap_or_default()
        }

        /// The pid HAProxy's runtime API reports.
        async fn pid(&self) -> Option<u32> {
            let info = send(&self.socket, "show info\n").await.ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("Pid: "))
                .and_then(|p| p.trim().parse().ok())
        }

        async fn cli(&self, command: &str) -> String {
            send(&self.socket, &format!("{command}\n"))
                .await
                .expect("runtime API")
        }

        /// The process started is still running, and it is the one the runtime API answers for.
        fn assert_running(&mut self, pid: u32) {
            let status = self.child.try_wait().expect("wait");
            assert!(status.is_none(), "haproxy exited: {}", self.errors());
            assert_eq!(self.child.id(), pid, "the same HAProxy process");
        }
    }

    /// Accepts any server certificate: the tests look at which one is served.
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

    /// A TLS connection to HAProxy with SNI `sni`; `ca` verifies the server (else anything goes).
    fn tls(port: u16, sni: &str, ca: Option<&[u8]>) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = match ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(ca).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name =
            rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
        let conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| e.to_string())?;
        }
        Ok(tls)
    }

    /// The leaf certificate HAProxy serves for `sni`.
    fn served(port: u16, sni: &str) -> Result<Vec<u8>, String> {
        let tls = tls(port, sni, None)?;
        let certs = tls.conn.peer_certificates().ok_or("no certificate")?;
        Ok(certs[0].to_vec())
    }

    /// One request on `tls`; the status line and body.
    fn request(tls: &mut Tls, host: &str) -> Result<(String, String), String> {
        use std::io::{Read as _, Write as _};
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tls.read_exact(&mut byte).map_err(|e| e.to_string())?;
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or("no content-length")?;
        let mut body = vec![0u8; len];
        tls.read_exact(&mut body).map_err(|e| e.to_string())?;
        let status = head.lines().next().unwrap_or_default().to_string();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    fn names(applied: &[String]) -> Vec<&str> {
        applied.iter().map(String::as_str).collect()
    }

    /// The lead's bind (no strict-sni): renewals, additions, removals through the runtime API
    /// with the same HAProxy process; a broken PEM is refused and the old certificate serves;
    /// HAProxy's default certificate waits for a reload.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn haproxy_serves_changes_without_a_reload() {
        let p = pki();
        let d = dirs();
        std::fs::write(d.src.join("a.test.pem"), p.a1.pem()).unwrap();
        let (mut store, refused) = CertStore::open(&d.src, &d.state).expect("open");
        assert!(refused.is_empty());
        let mut h = Haproxy::start(d._tmp.path(), store.crt_list(), "").await;
        let pid = h.pid().await.expect("pid");
        h.assert_running(pid);

        // Served and verified against the private CA.
        let mut kept = tls(h.port, "a.test", Some(&p.ca_cert)).expect("verified TLS to a.test");
        assert_eq!(
            kept.conn.peer_certificates().unwrap()[0].as_ref(),
            p.a1.der()
        );
        let (status, body) = request(&mut kept, "a.test").expect("request");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(body, "ok");

        // Renewal: the new certificate on new connections; the open connection goes on.
        std::fs::write(d.src.join("a.test.pem"), p.a2.pem()).unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(files(&plan.renewed), ["a.test.pem"]);
        let applied = store.apply(&plan, &h.socket).await;
        assert_eq!(
            names(&applied.renewed),
            ["a.test.pem"],
            "{applied:?} {}",
            h.errors()
        );
        assert!(
            !applied.needs_reload() && applied.refused.is_empty(),
            "{applied:?}"
        );
        assert_eq!(served(h.port, "a.test").unwrap(), p.a2.der());
        let (status, _) = request(&mut kept, "a.test").expect("the open connection still serves");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(
            std::fs::read(copy_of(&store, "a.test.pem")).unwrap(),
            check(&p.a2.pem()).unwrap().pem
        );

        // Additions: b.test and a wildcard.
        std::fs::write(d.src.join("b.test.pem"), p.b.pem()).unwrap();
        std::fs::write(d.src.join("*.wild.test.pem"), p.wild.pem()).unwrap();
        let plan = store.rescan().unwrap();
        let applied = store.apply(&plan, &h.socket).await;
        let mut added = names(&applied.added);
        added.sort();
        assert_eq!(added, ["*.wild.test.pem", "b.test.pem"], "{applied:?}");
        let mut b = tls(h.port, "b.test", Some(&p.ca_cert)).expect("verified TLS to b.test");
        assert_eq!(b.conn.peer_certificates().unwrap()[0].as_ref(), p.b.der());
        assert!(
            request(&mut b, "b.test")
                .unwrap()
                .0
                .starts_with("HTTP/1.1 200")
        );
        assert_eq!(served(h.port, "x.wild.test").unwrap(), p.wild.der());
        assert_eq!(served(h.port, "a.test").unwrap(), p.a2.der());
        assert_eq!(crt_list_lines(&store).len(), 3);

        // Removal: b.test's name falls back to the default certificate (a.test, first line).
        std::fs::remove_file(d.src.join("b.test.pem")).unwrap();
        let plan = store.rescan().unwrap();
        let applied = store.apply(&plan, &h.socket).await;
        assert_eq!(names(&applied.removed), ["b.test.pem"], "{applied:?}");
        assert_eq!(served(h.port, "b.test").unwrap(), p.a2.der());
        let b_copy = copy_of(&store, "b.test.pem");
        assert!(!b_copy.exists());
        assert!(!crt_list_lines(&store).contains(&b_copy.to_string_lossy().into_owned()));
        let certs = h.cli("show ssl cert").await;
        assert!(!certs.contains(&*b_copy.to_string_lossy()), "{certs}");

        // A broken PEM: refused, the old certificate serves.
        std::fs::write(d.src.join("a.test.pem"), truncated(&p.a3.pem())).unwrap();
        let plan = store.rescan().unwrap();
        assert!(plan.renewed.is_empty());
        let applied = store.apply(&plan, &h.socket).await;
        assert_eq!(applied.refused.len(), 1, "{applied:?}");
        assert_eq!(applied.refused[0].file, "a.test.pem");
        assert_eq!(served(h.port, "a.test").unwrap(), p.a2.der());
        assert!(store.rescan().unwrap().is_empty());

        // Valid to lbconf, refused by HAProxy at the commit: the transaction goes, the old
        // certificate serves, the refusal is not retried while the file stays as it is.
        std::fs::write(d.src.join("a.test.pem"), p.weak.pem()).unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(files(&plan.renewed), ["a.test.pem"]);
        let applied = store.apply(&plan, &h.socket).await;
        assert!(applied.renewed.is_empty(), "{applied:?}");
        assert_eq!(applied.refused.len(), 1, "{applied:?}");
        assert!(
            applied.refused[0].reason.contains("commit ssl cert")
                && applied.refused[0].reason.contains("Failed!"),
            "{applied:?}"
        );
        assert_eq!(served(h.port, "a.test").unwrap(), p.a2.der());
        assert_eq!(
            std::fs::read(copy_of(&store, "a.test.pem")).unwrap(),
            check(&p.a2.pem()).unwrap().pem
        );
        let certs = h.cli("show ssl cert").await;
        assert!(!certs.contains("# transaction"), "{certs}");
        assert!(store.rescan().unwrap().is_empty(), "not retried");

        // A transaction an interrupted apply left open is aborted, then the renewal goes.
        let wild_copy = copy_of(&store, "*.wild.test.pem");
        let pem = String::from_utf8(check(&p.wild.pem()).unwrap().pem).unwrap();
        let open = h
            .cli(&format!("set ssl cert {} <<\n{pem}", wild_copy.display()))
            .await;
        assert!(open.contains("Transaction created"), "{open}");
        std::fs::write(d.src.join("a.test.pem"), p.a3.pem()).unwrap();
        let plan = store.rescan().unwrap();
        let applied = store.apply(&plan, &h.socket).await;
        assert_eq!(names(&applied.renewed), ["a.test.pem"], "{applied:?}");
        assert_eq!(served(h.port, "a.test").unwrap(), p.a3.der());
        let certs = h.cli("show ssl cert").await;
        assert!(!certs.contains("# transaction"), "{certs}");

        // The default certificate cannot go at runtime: pending, still served, still on disk.
        std::fs::remove_file(d.src.join("a.test.pem")).unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(plan.removed, ["a.test.pem"]);
        let applied = store.apply(&plan, &h.socket).await;
        assert!(applied.removed.is_empty(), "{applied:?}");
        assert_eq!(applied.pending.len(), 1, "{applied:?}");
        assert!(
            applied.pending[0].reason.contains("default certificate"),
            "{applied:?}"
        );
        assert_eq!(served(h.port, "a.test").unwrap(), p.a3.der());
        assert!(copy_of(&store, "a.test.pem").exists());
        // The reload path: on disk now.
        let plan = store.rescan().unwrap();
        assert_eq!(plan.removed, ["a.test.pem"]);
        store.apply_on_disk(&plan).unwrap();
        assert_eq!(
            crt_list_lines(&store),
            [wild_copy.to_string_lossy().into_owned()]
        );

        // Never reloaded or restarted.
        assert_eq!(h.pid().await, Some(pid));
        h.assert_running(pid);
    }

    /// With strict-sni, HAProxy starts on an empty crt-list and every certificate comes and
    /// goes at runtime (the first one too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn haproxy_with_strict_sni_starts_empty() {
        let p = pki();
        let d = dirs();
        let (mut store, _) = CertStore::open(&d.src, &d.state).expect("open");
        assert!(store.is_empty());
        let h = Haproxy::start(d._tmp.path(), store.crt_list(), "strict-sni ").await;
        let pid = h.pid().await.expect("pid");
        assert!(served(h.port, "a.test").is_err(), "no certificate yet");

        std::fs::write(d.src.join("a.test.pem"), p.a1.pem()).unwrap();
        let plan = store.rescan().unwrap();
        let applied = store.apply(&plan, &h.socket).await;
        assert_eq!(names(&applied.added), ["a.test.pem"], "{applied:?}");
        assert_eq!(served(h.port, "a.test").unwrap(), p.a1.der());
        assert!(
            served(h.port, "other.test").is_err(),
            "strict-sni: no default"
        );

        std::fs::remove_file(d.src.join("a.test.pem")).unwrap();
        let plan = store.rescan().unwrap();
        let applied = store.apply(&plan, &h.socket).await;
        assert_eq!(names(&applied.removed), ["a.test.pem"], "{applied:?}");
        assert!(served(h.port, "a.test").is_err());
        assert!(crt_list_lines(&store).is_empty());
        assert_eq!(h.pid().await, Some(pid));
    }

    /// A socket nobody listens on: every change pending, nothing changed on disk.
    #[tokio::test(start_paused = true)]
    async fn an_unreachable_haproxy_leaves_everything_pending() {
        let p = pki();
        let d = dirs();
        std::fs::write(d.src.join("a.test.pem"), p.a1.pem()).unwrap();
        let (mut store, _) = CertStore::open(&d.src, &d.state).expect("open");
        std::fs::write(d.src.join("a.test.pem"), p.a2.pem()).unwrap();
        std::fs::write(d.src.join("b.test.pem"), p.b.pem()).unwrap();
        let plan = store.rescan().unwrap();
        let applied = store.apply(&plan, &d._tmp.path().join("nobody.sock")).await;
        assert_eq!(applied.pending.len(), 2, "{applied:?}");
        assert!(applied.added.is_empty() && applied.renewed.is_empty());
        assert_eq!(
            std::fs::read(copy_of(&store, "a.test.pem")).unwrap(),
            check(&p.a1.pem()).unwrap().pem
        );
        assert_eq!(store.len(), 1);
        let again = store.rescan().unwrap();
        assert_eq!(files(&again.renewed), ["a.test.pem"]);
        assert_eq!(files(&again.added), ["b.test.pem"]);
    }

    /// HAProxy drops a command larger than its CLI buffer (16 KiB) without an answer: such a
    /// certificate is not sent, and waits for a reload.
    #[tokio::test(start_paused = true)]
    async fn certificates_beyond_the_cli_buffer_wait_for_a_reload() {
        let p = pki();
        let d = dirs();
        std::fs::write(d.src.join("a.test.pem"), p.a1.pem()).unwrap();
        let (mut store, _) = CertStore::open(&d.src, &d.state).expect("open");
        let chain = p.ca_cert.repeat(30);
        let big = [p.a2.cert.as_slice(), &chain, &p.a2.key].concat();
        assert!(big.len() > 16 * 1024 && (big.len() as u64) < MAX_PEM_BYTES);
        std::fs::write(d.src.join("a.test.pem"), &big).unwrap();
        let plan = store.rescan().unwrap();
        assert_eq!(files(&plan.renewed), ["a.test.pem"]);
        // No socket needed: it is never sent.
        let applied = store.apply(&plan, &d._tmp.path().join("nobody.sock")).await;
        assert_eq!(applied.pending.len(), 1, "{applied:?}");
        assert!(
            applied.pending[0]
                .reason
                .contains("more than HAProxy's CLI takes"),
            "{applied:?}"
        );
        // The reload path takes it.
        store.apply_on_disk(&plan).unwrap();
        assert_eq!(
            std::fs::read(copy_of(&store, "a.test.pem")).unwrap(),
            check(&big).unwrap().pem
        );
    }

    #[test]
    fn answers_are_read_as_haproxy_2_6_writes_them() {
        assert!(succeeded("Committing /s/a.pem\nSuccess!\n\n"));
        assert!(succeeded(
            "Inserting certificate '/s/a.pem' in crt-list '/s/crt-list.txt'.\nSuccess!\n\n"
        ));
        assert!(!succeeded(
            "inconsistencies between private key and certificate loaded '/s/a.pem'.\nCan't commit /s/a.pem!\n\n"
        ));
        assert_eq!(
            ongoing_transaction(
                "The ongoing transaction is about '/s/b.pem' but you are trying to set '/s/a.pem'\nCan't update /s/a.pem!\n"
            ),
            Some("/s/b.pem")
        );
        assert_eq!(
            open_transaction("# transaction\n*/s/b.pem\n# filename\n/s/a.pem\n/s/b.pem\n\n"),
            Some("/s/b.pem")
        );
        assert_eq!(open_transaction("# filename\n/s/a.pem\n\n"), None);
        assert!(
            unsure("")
                && unsure("Can't commit!\nOperations on certificates are currently locked!\n")
        );
        assert!(!unsure(
            "unable to load certificate from file '/s/a.pem'.\nCan't load the payload\n"
        ));
        assert_eq!(one_line("a\n\n b \n"), "a | b");
        assert_eq!(one_line("\n"), "(no answer)");
    }
}
