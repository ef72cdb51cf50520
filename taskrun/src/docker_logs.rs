//! A container's output, copied into its task's sandbox: Docker's log stream (`follow`, both
//! streams, with timestamps) is appended to the same `stdout`/`stderr` files the exec driver's
//! tasks write, so the logs endpoint, following and rotation work unchanged for containers.
//!
//! Resuming after an agent restart: every entry comes with Docker's timestamp (RFC 3339, UTC,
//! nanoseconds); the timestamp of the last entry written is kept in `<sandbox>/log_cursor`. A
//! resumed copy asks Docker for the entries since that second (the API takes whole seconds) and
//! skips those not newer than the cursor, so nothing is written twice from one cursor. The
//! cursor is saved after the bytes it covers, at most once a second while output flows and when
//! the stream ends: an agent killed in between writes again what came after the last save — up to
//! a second of output may be duplicated after `kill -9` of the agent, never lost (as long as
//! Docker's own log still holds it). A write that fails (a full disk) stops the copy without
//! moving the cursor past it; the copy starts again from the last entry written.
//!
//! The files are rotated by size as they are written ([`crate::logs::RotatingFile`]), as the
//! exec driver's supervisor does, and each keeps its time index (`stdout.idx`, see
//! [`crate::logs`]) by Docker's own stamps: an entry copied late (after an agent restart) is
//! indexed at the time the container wrote it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::StreamExt as _;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::docker::{Engine, Stamp};
use crate::logs::{KEEP, RotatingFile};
use crate::sandbox::{LOG_CURSOR_FILE, STDERR_FILE, STDOUT_FILE};

/// Least time between two saves of the cursor.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Retry delay while the engine cannot be reached.
const RETRY: Duration = Duration::from_secs(1);

/// Splits a log entry `"<timestamp> <text>"` into its stamp, the stamp as written, and the text.
pub fn split_stamp(entry: &[u8]) -> Option<(Stamp, &str, &[u8])> {
    let space = entry.iter().take(64).position(|b| *b == b' ')?;
    let raw = std::str::from_utf8(&entry[..space]).ok()?;
    let stamp = Stamp::parse(raw)?;
    Some((stamp, raw, &entry[space + 1..]))
}

/// The cursor saved in `sandbox`, if any.
pub fn load_cursor(sandbox: &Path) -> Option<Stamp> {
    let text = std::fs::read_to_string(sandbox.join(LOG_CURSOR_FILE)).ok()?;
    Stamp::parse(text.trim())
}

/// Saves the cursor (atomically: a torn cursor would be no cursor).
async fn save_cursor(sandbox: &Path, raw: &str) -> std::io::Result<()> {
    let path = sandbox.join(LOG_CURSOR_FILE);
    let bytes = format!("{raw}\n").into_bytes();
    tokio::task::spawn_blocking(move || cairn_cli::replace_file(&path, &bytes, None))
        .await
        .map_err(std::io::Error::other)?
}

/// Starts copying container `id`'s output into `sandbox` (each file rotated above
/// `rotate_bytes`); the task ends once the container has stopped and its output is all copied,
/// or the container is gone.
pub fn follow(engine: Engine, id: String, sandbox: PathBuf, rotate_bytes: u64) -> JoinHandle<()> {
    tokio::spawn(async move { pump(&engine, &id, &sandbox, rotate_bytes).await })
}

/// The sandbox's two log files.
struct Files {
    out: RotatingFile,
    err: RotatingFile,
}

impl Files {
    async fn open(sandbox: &Path, rotate_bytes: u64) -> std::io::Result<Files> {
        let sandbox = sandbox.to_path_buf();
        tokio::task::spawn_blocking(move || {
            Ok(Files {
                out: RotatingFile::open_indexed(&sandbox.join(STDOUT_FILE), rotate_bytes, KEEP)?,
                err: RotatingFile::open_indexed(&sandbox.join(STDERR_FILE), rotate_bytes, KEEP)?,
            })
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// The two sandbox files and where the copy stands.
struct Sink {
    /// `None` after a write that panicked.
    files: Option<Files>,
    /// The newest entry written: a resumed stream skips what is not newer.
    cursor: Option<Stamp>,
    /// The stamp (as written by Docker) of the newest entry written but not yet saved.
    unsaved: Option<String>,
    saved_at: Instant,
}

impl Sink {
    fn new(files: Files, cursor: Option<Stamp>) -> Sink {
        Sink {
            files: Some(files),
            cursor,
            unsaved: None,
            saved_at: Instant::now(),
        }
    }

    /// Appends one entry, unless the cursor says it was copied already. The cursor moves only
    /// once the entry is written: a failed write leaves it where it was, and stops the copy.
    async fn entry(&mut self, stderr: bool, entry: &[u8]) -> std::io::Result<()> {
        let (stamp, text) = match split_stamp(entry) {
            Some((stamp, raw, text)) => {
                if self.cursor.is_some_and(|c| stamp <= c) {
                    return Ok(());
                }
                (Some((stamp, raw.to_string())), text)
            }
            None => (None, entry),
        };
        // Docker's time of the entry for the index; now for an entry without one.
        let written_ms = stamp.as_ref().and_then(|(s, _)| s.unix_millis());
        let mut files = self.files.take().ok_or_else(|| {
            std::io::Error::other("an earlier write of the container's output failed")
        })?;
        let text = text.to_vec();
        let (files, written) = tokio::task::spawn_blocking(move || {
            let file = if stderr {
                &mut files.err
            } else {
                &mut files.out
            };
            let written = match written_ms {
                Some(ms) => file.write_all_at(&text, ms),
                None => file.write_all(&text),
            };
            (files, written)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.files = Some(files);
        written?;
        if let Some((stamp, raw)) = stamp {
            self.cursor = Some(stamp);
            self.unsaved = Some(raw);
        }
        Ok(())
    }

    /// Saves the cursor of what is written (the files have no buffer of their own: a write
    /// that returned is in the kernel's hands). A cursor that cannot be saved is kept for the
    /// next checkpoint (an agent restart meanwhile copies some entries twice, never loses one).
    async fn checkpoint(&mut self, sandbox: &Path) {
        if let Some(raw) = self.unsaved.take()
            && let Err(e) = save_cursor(sandbox, &raw).await
        {
            tracing::warn!(error = %e, "cannot save the log cursor");
            self.unsaved = Some(raw);
        }
        self.saved_at = Instant::now();
    }
}

/// How one read of the log stream ended.
enum StreamEnd {
    /// The stream ended: the container stopped, or the connection closed under a running one.
    Ended,
    /// The stream broke: follow again from the cursor.
    Broken,
    /// Nothing more to copy (the container is gone, or the engine cannot give its logs).
    Done,
    /// Writing to the sandbox failed; the cursor stays at the last entry written.
    WriteFailed(std::io::Error),
}

/// Copies one log stream into the sink.
async fn copy_stream(
    engine: &Engine,
    id: &str,
    sandbox: &Path,
    sink: &mut Sink,
) -> Option<StreamEnd> {
    let d = match engine.client().await {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(id, error = %e, "cannot reach the Docker engine for logs; retrying");
            return None;
        }
    };
    let mut opts = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .timestamps(true);
    if let Some(c) = sink.cursor {
        opts = opts.since(c.since_secs());
    }
    let mut stream = d.logs(id, Some(opts.build()));
    while let Some(item) = stream.next().await {
        let written = match item {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                sink.entry(false, &message).await
            }
            Ok(LogOutput::StdErr { message }) => sink.entry(true, &message).await,
            Ok(LogOutput::StdIn { .. }) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Some(StreamEnd::Done),
            Err(e @ bollard::errors::Error::DockerResponseServerError { .. }) => {
                // The engine refuses (e.g. a logging driver it cannot read back): say so where
                // the task's output would be.
                let why = crate::docker::reason(&e);
                tracing::warn!(id, error = %why, "cannot read the container's logs");
                let note = format!("taskrun: cannot read the container's logs: {why}\n");
                return Some(match sink.entry(true, note.as_bytes()).await {
                    Ok(()) => StreamEnd::Done,
                    Err(e) => StreamEnd::WriteFailed(e),
                });
            }
            Err(other) => {
                tracing::debug!(id, error = %crate::docker::reason(&other), "the log stream broke; resuming");
                return Some(StreamEnd::Broken);
            }
        };
        if let Err(e) = written {
            return Some(StreamEnd::WriteFailed(e));
        }
        if sink.unsaved.is_some() && sink.saved_at.elapsed() >= SAVE_EVERY {
            sink.checkpoint(sandbox).await;
        }
    }
    Some(StreamEnd::Ended)
}

async fn pump(engine: &Engine, id: &str, sandbox: &Path, rotate_bytes: u64) {
    let mut cursor = load_cursor(sandbox);
    let mut failing = false;
    // A follow stream can end as the container exits before it delivered the last entries;
    // once the container is seen stopped, one more pass from the cursor reads them (entries
    // already written are skipped), then the copy ends.
    let mut final_pass = false;
    loop {
        let files = match Files::open(sandbox, rotate_bytes).await {
            Ok(f) => f,
            Err(e) => {
                if !failing {
                    failing = true;
                    tracing::warn!(id, error = %e, "cannot open the sandbox's log files; the container's output is copied once they can be");
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut sink = Sink::new(files, cursor);
        let end = copy_stream(engine, id, sandbox, &mut sink).await;
        sink.checkpoint(sandbox).await;
        cursor = sink.cursor;
        match end {
            None | Some(StreamEnd::Broken) => tokio::time::sleep(RETRY).await,
            Some(StreamEnd::Done) => return,
            Some(StreamEnd::WriteFailed(e)) => {
                // Stop this copy; the next one starts again after the last entry written.
                if !failing {
                    failing = true;
                    tracing::warn!(id, error = %e, "cannot write the container's output to the sandbox; copying it again once it can be");
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
            Some(StreamEnd::Ended) => match engine.inspect(id).await {
                Ok(Some(st)) if st.running => tokio::time::sleep(Duration::from_millis(200)).await,
                Ok(Some(_)) if !final_pass => final_pass = true,
                Ok(_) => return,
                Err(_) => tokio::time::sleep(RETRY).await,
            },
        }
        if failing {
            failing = false;
            tracing::info!(id, "the container's output is copied again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_entries() {
        let (stamp, raw, text) =
            split_stamp(b"2026-05-07T21:09:36.000000001Z hello world\n").unwrap();
        assert_eq!(stamp.nanos, 1);
        assert_eq!(raw, "2026-05-07T21:09:36.000000001Z");
        assert_eq!(text, b"hello world\n");
        assert_eq!(split_stamp(b"no stamp here"), None);
        assert_eq!(split_stamp(b""), None);
    }

    #[tokio::test]
    async fn entries_at_or_before_the_cursor_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_CURSOR_FILE), "2026-05-07T21:09:36.5Z\n").unwrap();
        let files = Files::open(dir.path(), 1 << 20).await.unwrap();
        let mut sink = Sink::new(files, load_cursor(dir.path()));
        // A resumed stream starts at the cursor's whole second.
        for (stderr, entry) in [
            (false, &b"2026-05-07T21:09:36.1Z old\n"[..]),
            (false, b"2026-05-07T21:09:36.5Z last copied\n"),
            (false, b"2026-05-07T21:09:36.6Z new\n"),
            (true, b"2026-05-07T21:09:37Z err\n"),
        ] {
            sink.entry(stderr, entry).await.unwrap();
        }
        sink.checkpoint(dir.path()).await;
        assert_eq!(
            std::fs::read(dir.path().join(STDOUT_FILE)).unwrap(),
            b"new\n"
        );
        assert_eq!(
            std::fs::read(dir.path().join(STDERR_FILE)).unwrap(),
            b"err\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOG_CURSOR_FILE)).unwrap(),
            "2026-05-07T21:09:37Z\n"
        );
        assert_eq!(
            load_cursor(dir.path()),
            Stamp::parse("2026-05-07T21:09:37Z")
        );
        // Indexed at Docker's times, not the copy's.
        let second = Stamp::parse("2026-05-07T21:09:36Z").unwrap().secs as u64;
        let out = dir.path().join(STDOUT_FILE);
        let at = |secs| crate::logs::since_offset(&out, secs).unwrap();
        assert_eq!(at(second), crate::logs::SinceAnswer::Offset(0));
        assert_eq!(at(second + 1), crate::logs::SinceAnswer::Offset(4));
    }

    /// A write that fails (here /dev/full: ENOSPC) is an error, and the cursor — in memory and
    /// on disk — stays at the last entry written.
    #[tokio::test]
    async fn a_failed_write_stops_the_copy_without_moving_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files {
            out: RotatingFile::open(&dir.path().join(STDOUT_FILE), 1 << 20, KEEP).unwrap(),
            err: RotatingFile::open(Path::new("/dev/full"), 0, KEEP).unwrap(),
        };
        let mut sink = Sink::new(files, None);
        sink.entry(false, b"2026-05-07T21:09:36Z written\n")
            .await
            .unwrap();
        sink.checkpoint(dir.path()).await;
        let err = sink
            .entry(true, b"2026-05-07T21:09:37Z lost\n")
            .await
            .expect_err("writing to a full disk");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(sink.cursor, Stamp::parse("2026-05-07T21:09:36Z"));
        sink.checkpoint(dir.path()).await;
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOG_CURSOR_FILE)).unwrap(),
            "2026-05-07T21:09:36Z\n",
            "the cursor on disk does not cover the entry that was not written"
        );
        assert_eq!(
            std::fs::read(dir.path().join(STDOUT_FILE)).unwrap(),
            b"written\n"
        );
    }
}
