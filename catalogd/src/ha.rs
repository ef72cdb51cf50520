//! catalogd as one of several replicas on etcd (`catalogd serve --etcd URL,...`): the shared
//! store under `<prefix>data/` and the election under `<prefix>` (`leader`, `members/`), whose
//! outcome is the [`Leadership`] the TTL sweeper and `/v1/status/*` read.

use std::sync::Arc;

use anyhow::Context as _;
use cairn_etcd::{ElectionConfig, ElectionView, EtcdArgs, EtcdStore};
use cairn_store::Store;
use tokio_util::sync::CancellationToken;

use crate::leader::{Leadership, View};

/// The default key prefix of catalogd's replicas.
pub const DEFAULT_PREFIX: &str = "/cairn/catalogd/";

/// How catalogd joins its replicas.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    pub args: EtcdArgs,
    /// This replica's name among them: the address clients reach it at (`--advertise-addr`).
    pub name: String,
}

/// A replica's connection to etcd: its store, and the election it takes part in.
pub struct Replicated {
    pub store: Arc<dyn Store>,
    pub leadership: Leadership,
    stop: CancellationToken,
    election: tokio::task::JoinHandle<()>,
}

impl Replicated {
    /// Connects to etcd, opens the store and starts campaigning.
    pub async fn start(config: &EtcdConfig) -> anyhow::Result<Replicated> {
        let client = config
            .args
            .client(cairn_etcd::DEFAULT_REQUEST_TIMEOUT)
            .context("the --etcd settings")?
            .context("--etcd names no endpoint")?;
        let prefix = config.args.prefix_or(DEFAULT_PREFIX);
        let store = EtcdStore::open(client.clone(), format!("{prefix}data/"))
            .await
            .with_context(|| {
                format!(
                    "opening the store in etcd at {}",
                    config
                        .args
                        .endpoints
                        .iter()
                        .map(url::Url::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })?;
        let leadership = Leadership::follower();
        let (tx, mut rx) = tokio::sync::watch::channel(ElectionView::default());
        let stop = CancellationToken::new();
        let election = tokio::spawn(cairn_etcd::campaign(
            client,
            ElectionConfig {
                prefix: prefix.into_bytes(),
                name: config.name.clone(),
                ttl: config.args.lease_ttl,
            },
            tx,
            stop.clone(),
        ));
        let follower = leadership.clone();
        tokio::spawn(async move {
            loop {
                let view = rx.borrow_and_update().clone();
                follower.set(View {
                    leader: view.leader.clone(),
                    is_self: view.is_leader(),
                    peers: view.members.clone(),
                });
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Replicated {
            store: Arc::new(store),
            leadership,
            stop,
            election,
        })
    }

    /// Leaves the election (a leader hands over at once) and waits for it to end.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.election.await {
            tracing::warn!(error = %e, "the election task failed");
        }
    }
}
