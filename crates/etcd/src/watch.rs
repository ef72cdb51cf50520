//! [`Watch`]: a watch over the gateway's `POST /v3/watch`, which answers a never-ending stream
//! of `{"result": WatchResponse}` objects (one per line), resumed on another endpoint when its
//! connection breaks.
//!
//! Resumption: the watch remembers the next revision it owes the caller (the last event's
//! `mod_revision` + 1; before any event, the revision after the one the watch was created at,
//! or after a progress notification's). When the stream ends, is cut, or the member loses its
//! leader, it creates the watch again on the next endpoint from that revision. etcd never splits
//! one revision's events across two messages, so this yields every event once: no gap, no
//! duplicate (events below that revision are dropped, should a server send them again). When the
//! revision has been compacted meanwhile, the watch ends with [`EtcdError::Compacted`].

use std::time::Duration;

use futures::Stream;
use url::Url;

use crate::client::{CallOpts, EtcdClient, Fail, StreamReader, item_result};
use crate::error::{CODE_UNAVAILABLE, EtcdError};
use crate::json::{self, StreamItem};
use crate::types::{Event, KeyValue, WatchRequest, WatchResponse};

/// Pause before a new round of endpoints after `rounds` rounds failed: 100 ms doubling, at most
/// 2 s.
fn backoff(rounds: u32) -> Duration {
    Duration::from_millis(100u64 << rounds.saturating_sub(1).min(5)).min(Duration::from_secs(2))
}

/// A live watch. Read it with [`Watch::next`] or as a [`Stream`] ([`Watch::into_stream`]);
/// dropping it cancels the watch (the connection is closed).
///
/// When its connection breaks (the member died, lost its leader, the stream was cut), the watch
/// is created again on the next endpoint from [`Watch::next_revision`]: the last event's
/// revision + 1. etcd never splits one revision's events across messages, so nothing is lost or
/// repeated.
///
/// Errors: [`EtcdError::Unavailable`] when no endpoint took the watch back after a break; the
/// watch stays usable, and the next call to `next` tries again (after a short pause) from where
/// it was. [`EtcdError::Compacted`] and any other error end it: `next` then returns `None`.
/// A caller starting over (a new client, a restart) watches from [`Watch::next_revision`],
/// which is the last revision it was given + 1.
pub struct Watch {
    client: EtcdClient,
    request: WatchRequest,
    /// The first revision not yet given to the caller; 0 until the watch is created ("now").
    next_revision: i64,
    stream: Option<Connected>,
    /// A message read while connecting that is not the creation's.
    pending: Option<json::WatchResponse>,
    /// The endpoint to try first on the next connection.
    start: Option<usize>,
    failed_rounds: u32,
    finished: bool,
}

struct Connected {
    reader: StreamReader,
    index: usize,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("request", &self.request)
            .field("next_revision", &self.next_revision)
            .field("endpoint", &self.endpoint())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// What one message of the stream means for the caller.
enum Step {
    Yield(WatchResponse),
    Skip,
    Reconnect(String),
    End(EtcdError),
}

impl EtcdClient {
    /// Starts watching `request`: returns once etcd has created the watch, so a change made
    /// after this returns is seen even when `start_revision` is 0 ("from now").
    pub async fn watch(&self, request: WatchRequest) -> Result<Watch, EtcdError> {
        let mut watch = Watch {
            client: self.clone(),
            next_revision: request.start_revision.max(0),
            request,
            stream: None,
            pending: None,
            start: None,
            failed_rounds: 0,
            finished: false,
        };
        watch.connect().await?;
        Ok(watch)
    }
}

impl Watch {
    /// The next batch of changes (or a progress notification: no events). `None` once the watch
    /// has ended with an error.
    pub async fn next(&mut self) -> Option<Result<WatchResponse, EtcdError>> {
        loop {
            if self.finished {
                return None;
            }
            let step = if let Some(pending) = self.pending.take() {
                self.step(StreamItem {
                    result: Some(pending),
                    error: Default::default(),
                })
            } else if let Some(connected) = &mut self.stream {
                match connected.reader.next::<json::WatchResponse>().await {
                    Ok(Some(item)) => self.step(item),
                    Ok(None) => Step::Reconnect("etcd ended the watch stream".into()),
                    Err(Fail::Error(e)) => Step::End(e),
                    Err(Fail::Connect(reason) | Fail::Lost(reason)) => Step::Reconnect(reason),
                    Err(Fail::Status { code, message }) => {
                        Step::End(EtcdError::Server { code, message })
                    }
                }
            } else {
                match self.connect().await {
                    Ok(()) => continue,
                    Err(e) => {
                        if !matches!(e, EtcdError::Unavailable { .. }) {
                            self.finished = true;
                        }
                        return Some(Err(e));
                    }
                }
            };
            match step {
                Step::Yield(resp) => return Some(Ok(resp)),
                Step::Skip => {}
                Step::Reconnect(reason) => {
                    if let Some(lost) = self.stream.take() {
                        tracing::warn!(
                            endpoint = %lost.reader.endpoint(),
                            %reason,
                            next_revision = self.next_revision,
                            "etcd watch interrupted; resuming on the next endpoint"
                        );
                        self.start = Some(lost.index + 1);
                    }
                }
                Step::End(e) => {
                    self.finished = true;
                    self.stream = None;
                    return Some(Err(e));
                }
            }
        }
    }

    /// The watch as a [`Stream`] of [`Watch::next`]'s items.
    pub fn into_stream(self) -> impl Stream<Item = Result<WatchResponse, EtcdError>> + Send {
        futures::stream::unfold(self, |mut watch| async move {
            let item = watch.next().await?;
            Some((item, watch))
        })
    }

    /// The first revision not yet given to the caller: where a new watch resumes this one.
    pub fn next_revision(&self) -> i64 {
        self.next_revision
    }

    /// The endpoint the watch is connected to now.
    pub fn endpoint(&self) -> Option<&Url> {
        self.stream.as_ref().map(|c| c.reader.endpoint())
    }

    /// What the watch asked for (its `start_revision` as first given).
    pub fn request(&self) -> &WatchRequest {
        &self.request
    }

    /// Creates the watch on the first endpoint that takes it, from `next_revision`.
    async fn connect(&mut self) -> Result<(), EtcdError> {
        if self.failed_rounds > 0 {
            tokio::time::sleep(backoff(self.failed_rounds)).await;
        }
        let body = self.request.to_json(self.next_revision);
        let limit = self.client.max_body();
        let opts = CallOpts {
            start: self.start,
            ..CallOpts::read()
        };
        let result = self
            .client
            .failover("/v3/watch", &body, opts, move |resp, endpoint| async move {
                let mut reader = StreamReader::new(resp, endpoint, limit);
                match reader.next::<json::WatchResponse>().await? {
                    None => Err(Fail::Lost("the watch stream ended at once".into())),
                    Some(item) => Ok((reader, item_result(item)?)),
                }
            })
            .await;
        let ((reader, first), index) = match result {
            Ok(ok) => ok,
            Err(e) => {
                self.failed_rounds += 1;
                return Err(e);
            }
        };
        self.failed_rounds = 0;
        tracing::debug!(
            endpoint = %reader.endpoint(),
            start_revision = self.next_revision,
            "etcd watch created"
        );
        if first.created {
            if self.next_revision == 0 {
                // Watching "from now": now is the revision the watch was created at.
                self.next_revision = first.header.revision + 1;
            }
        } else {
            self.pending = Some(first);
        }
        self.stream = Some(Connected { reader, index });
        Ok(())
    }

    /// What one message means, and what the watch now owes.
    fn step(&mut self, item: StreamItem<json::WatchResponse>) -> Step {
        if let Some((code, message)) = item.error.status() {
            return if code == CODE_UNAVAILABLE {
                Step::Reconnect(message)
            } else {
                Step::End(EtcdError::Server { code, message })
            };
        }
        let Some(resp) = item.result else {
            return Step::Skip;
        };
        if resp.compact_revision > 0 {
            return Step::End(EtcdError::Compacted {
                compact_revision: resp.compact_revision,
            });
        }
        if resp.canceled {
            if resp.cancel_reason.contains("no leader") {
                return Step::Reconnect(resp.cancel_reason);
            }
            let message = if resp.cancel_reason.is_empty() {
                "etcd canceled the watch".to_string()
            } else {
                resp.cancel_reason
            };
            return Step::End(EtcdError::Server { code: 1, message });
        }
        if resp.created {
            return Step::Skip;
        }
        let revision = resp.header.revision;
        if resp.events.is_empty() {
            // A progress notification: every change up to `revision` has been sent.
            self.next_revision = self.next_revision.max(revision + 1);
            return Step::Yield(WatchResponse {
                revision,
                events: Vec::new(),
            });
        }
        let events: Vec<Event> = resp
            .events
            .into_iter()
            .map(|e| Event {
                kind: e.kind,
                kv: KeyValue::from(e.kv),
                prev_kv: e.prev_kv.map(KeyValue::from),
            })
            .filter(|e| e.kv.mod_revision >= self.next_revision)
            .collect();
        let Some(last) = events.last() else {
            return Step::Skip;
        };
        self.next_revision = last.kv.mod_revision + 1;
        Step::Yield(WatchResponse { revision, events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stops() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(1600));
        assert_eq!(backoff(6), Duration::from_secs(2));
        assert_eq!(backoff(60), Duration::from_secs(2));
    }
}
