//! Leases (`/v3/lease/*`) and the cluster's view of itself (`/v3/cluster/member/list`,
//! `/v3/maintenance/status`).

use crate::client::{CallOpts, EtcdClient};
use crate::error::EtcdError;
use crate::json::{self, Obj};
use crate::types::{LeaseTimeToLive, Member, MemberList, Status};

/// etcd's gRPC code for "not found" ("etcdserver: requested lease not found").
const CODE_NOT_FOUND: i32 = 5;

fn lease_gone(id: i64) -> impl Fn(EtcdError) -> EtcdError {
    move |e| match e {
        EtcdError::Server { code, .. } if code == CODE_NOT_FOUND => EtcdError::LeaseExpired { id },
        e => e,
    }
}

impl EtcdClient {
    /// A new lease of `ttl_secs` seconds; returns its id and the TTL etcd granted (etcd raises
    /// a TTL below its minimum, about 1.5 x the election timeout).
    pub async fn lease_grant(&self, ttl_secs: i64) -> Result<(i64, i64), EtcdError> {
        let body = Obj::default().int("TTL", ttl_secs).done();
        let resp: json::LeaseGrantResponse = self
            .call("/v3/lease/grant", &body, CallOpts::write())
            .await?;
        if !resp.error.is_empty() {
            return Err(EtcdError::Server {
                code: 2,
                message: resp.error,
            });
        }
        Ok((resp.id, resp.ttl))
    }

    /// Renews the lease once (one message on `/v3/lease/keepalive`); returns its TTL again.
    /// [`EtcdError::LeaseExpired`] when it is gone. Safe to repeat, so retried like a read.
    /// Call it every TTL/3 or so.
    pub async fn lease_keepalive(&self, id: i64) -> Result<i64, EtcdError> {
        let body = Obj::default().int("ID", id).done();
        let resp: json::LeaseKeepAliveResponse = self
            .call_first("/v3/lease/keepalive", &body, CallOpts::read())
            .await
            .map_err(lease_gone(id))?;
        // The gateway leaves out a TTL of 0: the lease does not exist (any more).
        if resp.ttl <= 0 {
            return Err(EtcdError::LeaseExpired { id });
        }
        Ok(resp.ttl)
    }

    /// Ends the lease now, deleting its keys. [`EtcdError::LeaseExpired`] when it was already
    /// gone.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        let body = Obj::default().int("ID", id).done();
        let _: json::HeaderOnly = self
            .call("/v3/lease/revoke", &body, CallOpts::write())
            .await
            .map_err(lease_gone(id))?;
        Ok(())
    }

    /// The lease's remaining TTL (and, with `keys`, its keys). [`EtcdError::LeaseExpired`]
    /// when it is gone (etcd answers TTL -1).
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLive, EtcdError> {
        let body = Obj::default().int("ID", id).flag("keys", keys).done();
        let resp: json::LeaseTimeToLiveResponse = self
            .call("/v3/lease/timetolive", &body, CallOpts::read())
            .await
            .map_err(lease_gone(id))?;
        if resp.ttl < 0 {
            return Err(EtcdError::LeaseExpired { id });
        }
        Ok(LeaseTimeToLive {
            id: resp.id,
            ttl: resp.ttl,
            granted_ttl: resp.granted_ttl,
            keys: resp.keys,
        })
    }

    /// The cluster's members as the current endpoint's member sees them (answered even by a
    /// member without a leader).
    pub async fn member_list(&self) -> Result<MemberList, EtcdError> {
        let opts = CallOpts {
            require_leader: false,
            ..CallOpts::read()
        };
        let (resp, endpoint): (json::MemberListResponse, _) = self
            .call_from("/v3/cluster/member/list", &Obj::default().done(), opts)
            .await?;
        Ok(MemberList {
            endpoint,
            member_id: resp.header.member_id,
            cluster_id: resp.header.cluster_id,
            members: resp
                .members
                .into_iter()
                .map(|m| Member {
                    id: m.id,
                    name: m.name,
                    peer_urls: m.peer_urls,
                    client_urls: m.client_urls,
                    is_learner: m.is_learner,
                })
                .collect(),
        })
    }

    /// The current endpoint's member: its id, the leader it knows (0: none; answered even
    /// then), raft term and index, database size, version.
    pub async fn status(&self) -> Result<Status, EtcdError> {
        let opts = CallOpts {
            require_leader: false,
            ..CallOpts::read()
        };
        let (resp, endpoint): (json::StatusResponse, _) = self
            .call_from("/v3/maintenance/status", &Obj::default().done(), opts)
            .await?;
        Ok(Status {
            endpoint,
            member_id: resp.header.member_id,
            cluster_id: resp.header.cluster_id,
            leader: resp.leader,
            raft_term: resp.raft_term,
            raft_index: resp.raft_index,
            raft_applied_index: resp.raft_applied_index,
            db_size: resp.db_size,
            db_size_in_use: resp.db_size_in_use,
            version: resp.version,
            errors: resp.errors,
            revision: resp.header.revision,
            is_learner: resp.is_learner,
        })
    }
}
