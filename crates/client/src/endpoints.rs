//! [`Endpoints`]: the replicas of one service (catalogd, offerd) a client may talk to, from a
//! `--catalog URL[,URL...]` value, and the failover between them. One replica going away must
//! not stop its clients, and a client must not turn one write into two: so a request moves on
//! only when the replica could not be reached, and a request that may already have been applied
//! (a write whose connection died after it was sent) is never sent again.
//!
//! The rules, in [`Endpoints::run`] and [`may_fail_over`]:
//! - a request goes to the current endpoint (the first at start);
//! - on a connection error it is sent to the next endpoint, and so on, each other endpoint at
//!   most once per request; a read (GET) moves on after any transport failure before the
//!   answer's head (refused, reset, DNS failure, timeout), any other method only after a
//!   failure to connect (it was never sent);
//! - an answer, whatever its status (a 5xx included), ends the request: it is not a failover;
//! - the endpoint that answered becomes the current one (sticky) for every clone, so later
//!   requests do not pay for the dead one again;
//! - each failover is logged once at info with both URLs (an endpoint known to be down logs at
//!   debug until it answers again), so an hour-long outage does not flood the log.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use url::Url;

use crate::client::parse_base_url;
use crate::error::ClientError;

/// The replicas a client may send a request to, in the order given, with the one in use now.
/// Clones share which endpoint is current.
#[derive(Clone)]
pub struct Endpoints {
    shared: Arc<Shared>,
}

struct Shared {
    urls: Vec<Url>,
    /// Where the next request starts.
    current: AtomicUsize,
    /// Failed to connect since its last answer: a second failover from it is not news.
    down: Vec<AtomicBool>,
}

/// How a request ended without an answer: the error of the last endpoint tried.
#[derive(Debug)]
pub struct Failed<E> {
    /// The position of the endpoint `error` came from.
    pub endpoint: usize,
    pub error: E,
    /// How many endpoints the request was sent to (1: no failover happened).
    pub tried: usize,
}

impl Endpoints {
    /// Parses a comma-separated list of base URLs (`http://a:8500,b:8500`), each as
    /// [`parse_base_url`] does (a bare `host:port` is `http://`). An empty entry, an invalid one
    /// or one listed twice (after normalisation) is an error naming it.
    pub fn parse(list: &str) -> Result<Endpoints, ClientError> {
        if list.trim().is_empty() {
            // The single-address message, as before lists existed.
            return Err(parse_base_url(list)
                .err()
                .unwrap_or(ClientError::InvalidUrl {
                    url: list.to_string(),
                    reason: "empty".into(),
                }));
        }
        let entries: Vec<&str> = list.split(',').collect();
        let mut urls = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            if entry.trim().is_empty() {
                // Named by position: the entry has no text, and the list may carry secrets.
                return Err(ClientError::InvalidUrl {
                    url: String::new(),
                    reason: format!("entry {} of {} in the list is empty", i + 1, entries.len()),
                });
            }
            urls.push(parse_base_url(entry)?);
        }
        Endpoints::new(urls)
    }

    /// Endpoints from parsed base URLs (at least one, none twice).
    pub fn new(urls: Vec<Url>) -> Result<Endpoints, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::InvalidUrl {
                url: String::new(),
                reason: "no address given".into(),
            });
        }
        for (i, url) in urls.iter().enumerate() {
            if let Some(first) = urls[..i].iter().position(|u| u == url) {
                return Err(ClientError::InvalidUrl {
                    url: url.to_string(),
                    reason: format!("listed twice (entries {} and {})", first + 1, i + 1),
                });
            }
        }
        let down = urls.iter().map(|_| AtomicBool::new(false)).collect();
        Ok(Endpoints {
            shared: Arc::new(Shared {
                urls,
                current: AtomicUsize::new(0),
                down,
            }),
        })
    }

    /// The base URLs, in the order given.
    pub fn urls(&self) -> &[Url] {
        &self.shared.urls
    }

    /// How many endpoints there are (at least 1).
    pub fn len(&self) -> usize {
        self.shared.urls.len()
    }

    /// Never: a list holds at least one endpoint. (For clippy's `len` convention.)
    pub fn is_empty(&self) -> bool {
        self.shared.urls.is_empty()
    }

    /// The position of the endpoint the next request starts with.
    pub fn current(&self) -> usize {
        self.shared.current.load(Ordering::Relaxed) % self.len()
    }

    /// The base URL the next request starts with.
    pub fn current_url(&self) -> &Url {
        &self.shared.urls[self.current()]
    }

    /// The base URL at position `i`.
    pub fn get(&self, i: usize) -> Option<&Url> {
        self.shared.urls.get(i)
    }

    /// Sends one request with failover: `attempt(i)` sends it to endpoint `i`, starting with the
    /// current one; when it fails and `may_fail_over` says the error allows it, the next endpoint
    /// is tried, each at most once. Returns the answering endpoint's position with its answer,
    /// or the last error.
    pub async fn run<T, E, F, Fut>(
        &self,
        may_fail_over: impl Fn(&E) -> bool,
        mut attempt: F,
    ) -> Result<(usize, T), Failed<E>>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        let n = self.len();
        let start = self.current();
        let mut i = start;
        let mut tried = 0;
        loop {
            tried += 1;
            match attempt(i).await {
                Ok(answer) => {
                    self.answered(i, start);
                    return Ok((i, answer));
                }
                Err(error) => {
                    if tried >= n || !may_fail_over(&error) {
                        return Err(Failed {
                            endpoint: i,
                            error,
                            tried,
                        });
                    }
                    let next = (i + 1) % n;
                    self.fail_over(i, next, &error);
                    i = next;
                }
            }
        }
    }

    /// Endpoint `i` answered a request that started at `start`.
    fn answered(&self, i: usize, start: usize) {
        if self.shared.down[i].load(Ordering::Relaxed) {
            self.shared.down[i].store(false, Ordering::Relaxed);
        }
        if i != start {
            // Sticky: whoever failed over last decides; any working endpoint will do.
            self.shared.current.store(i, Ordering::Relaxed);
        }
    }

    /// Moves the current endpoint from `from` to `to` unless another request moved it already,
    /// and logs it once per outage of `from`.
    fn fail_over(&self, from: usize, to: usize, error: &dyn fmt::Display) {
        let _ =
            self.shared
                .current
                .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed);
        let (from_url, to_url) = (&self.shared.urls[from], &self.shared.urls[to]);
        if self.shared.down[from].swap(true, Ordering::Relaxed) {
            tracing::debug!(from = %from_url, to = %to_url, %error, "endpoint still unreachable; failing over");
        } else {
            tracing::info!(from = %from_url, to = %to_url, %error, "endpoint unreachable; failing over");
        }
    }
}

/// Whether a request that failed with `error` may be sent to another endpoint: it never reached
/// the server (a connection, DNS or TLS failure: nothing was sent), or it is a read (GET, HEAD),
/// which may be sent twice, and no answer arrived (reset, closed, timed out before the head).
/// A body, redirect or build error is not about the endpoint.
pub fn may_fail_over(method: &reqwest::Method, error: &reqwest::Error) -> bool {
    if error.is_connect() {
        return true;
    }
    let read = *method == reqwest::Method::GET || *method == reqwest::Method::HEAD;
    read && (error.is_request() || error.is_timeout())
        && !error.is_builder()
        && !error.is_redirect()
        && !error.is_body()
        && !error.is_decode()
}

impl PartialEq for Endpoints {
    fn eq(&self, other: &Self) -> bool {
        self.shared.urls == other.shared.urls
    }
}

impl Eq for Endpoints {}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoints")
            .field(
                "urls",
                &self.shared.urls.iter().map(Url::as_str).collect::<Vec<_>>(),
            )
            .field("current", &self.current())
            .finish()
    }
}

/// `http://a:8500/,http://b:8500/`: the list as a flag takes it.
impl fmt::Display for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, url) in self.shared.urls.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(url.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each list, and what it parses to: the base URLs, or a text the error must contain.
    #[test]
    fn lists_parse_or_name_the_bad_entry() {
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            ("http://127.0.0.1:8500", Ok(&["http://127.0.0.1:8500/"])),
            ("127.0.0.1:8500", Ok(&["http://127.0.0.1:8500/"])),
            (
                "http://a:8500,http://b:8500",
                Ok(&["http://a:8500/", "http://b:8500/"]),
            ),
            (
                " a:8500 , https://b:8501/ ,c:1",
                Ok(&["http://a:8500/", "https://b:8501/", "http://c:1/"]),
            ),
            (
                "http://h/consul/,h2",
                Ok(&["http://h/consul", "http://h2/"]),
            ),
            ("", Err("invalid catalog URL \"\": empty")),
            ("   ", Err("empty")),
            ("a:1,,b:2", Err("entry 2 of 3 in the list is empty")),
            ("a:1,", Err("entry 2 of 2 in the list is empty")),
            (",a:1", Err("entry 1 of 2 in the list is empty")),
            ("a:1, ,b:2", Err("entry 2 of 3 in the list is empty")),
            (
                "a:1,b:2,http://a:1/",
                Err("\"http://a:1/\": listed twice (entries 1 and 3)"),
            ),
            ("h:1,H:1", Err("listed twice (entries 1 and 2)")),
            ("a:1,ftp://b", Err("\"ftp://b\": unsupported scheme")),
            ("a:1,http://u:p@b", Err("credentials in the URL")),
            ("a:1,http://b/?x=1", Err("no query string")),
        ];
        for (input, want) in cases {
            let got = Endpoints::parse(input);
            match (want, got) {
                (Ok(urls), Ok(e)) => {
                    let got: Vec<&str> = e.urls().iter().map(Url::as_str).collect();
                    assert_eq!(&got, urls, "{input:?}");
                    assert_eq!(e.current(), 0, "{input:?} starts with the first");
                }
                (Err(text), Err(err)) => {
                    assert!(
                        matches!(err, ClientError::InvalidUrl { .. }),
                        "{input:?}: {err:?}"
                    );
                    assert!(err.to_string().contains(text), "{input:?}: {err}");
                }
                (want, got) => panic!("{input:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn display_is_a_flag_value_that_parses_back() {
        let e = Endpoints::parse("a:1,https://b:2/x").unwrap();
        assert_eq!(e.to_string(), "http://a:1/,https://b:2/x");
        assert_eq!(Endpoints::parse(&e.to_string()).unwrap(), e);
    }

    /// The order of attempts, stickiness and when a failure ends the request, with a scripted
    /// `attempt` (the HTTP side is in tests/failover.rs).
    #[tokio::test]
    async fn run_tries_each_other_endpoint_once_and_sticks() {
        let e = Endpoints::parse("a:1,b:1,c:1").unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        // a and b refuse, c answers.
        let got = e
            .run(
                |_: &String| true,
                |i| {
                    seen.lock().unwrap().push(i);
                    async move {
                        if i == 2 {
                            Ok(i)
                        } else {
                            Err(format!("down {i}"))
                        }
                    }
                },
            )
            .await
            .unwrap();
        assert_eq!(got, (2, 2));
        assert_eq!(*seen.lock().unwrap(), [0, 1, 2]);
        assert_eq!(e.current(), 2, "sticky");
        assert_eq!(e.clone().current(), 2, "clones share it");

        // Everything down: each endpoint once, starting at the current one; the last error.
        seen.lock().unwrap().clear();
        let failed = e
            .run(
                |_: &String| true,
                |i| {
                    seen.lock().unwrap().push(i);
                    async move { Err::<(), _>(format!("down {i}")) }
                },
            )
            .await
            .unwrap_err();
        assert_eq!(*seen.lock().unwrap(), [2, 0, 1]);
        assert_eq!((failed.endpoint, failed.tried), (1, 3));
        assert_eq!(failed.error, "down 1");

        // An error that forbids failover ends the request on its endpoint.
        seen.lock().unwrap().clear();
        let start = e.current();
        let failed = e
            .run(
                |_: &String| false,
                |i| {
                    seen.lock().unwrap().push(i);
                    async move { Err::<(), _>(format!("written {i}")) }
                },
            )
            .await
            .unwrap_err();
        assert_eq!(*seen.lock().unwrap(), [start]);
        assert_eq!(failed.tried, 1);
    }
}
