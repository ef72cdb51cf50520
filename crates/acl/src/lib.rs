//! Consul's ACL rules language (HCL and JSON) and the authorizer a token's policies compile to.
//!
//! - [`Rules::parse`] reads one policy as Consul's `acl/policy.go` does: HCL version 1 or JSON,
//!   the same keywords (`key`, `key_prefix`, `service`, `service_prefix`, `node`, `node_prefix`,
//!   `session`, `session_prefix`, `agent`, `agent_prefix`, `event`, `event_prefix`, `query`,
//!   `query_prefix`, and the top-level `acl`, `operator`, `keyring`, `mesh`, `peering`), the
//!   same validation and error texts.
//! - [`Authorizer::new`] merges a token's policies (deny > write > list > read per name) and
//!   answers checks the way Consul's policy authorizer chained with the default policy does: an
//!   exact rule beats a prefix rule, the longest prefix wins, `*_prefix ""` is the catch-all,
//!   intentions follow the service rules unless they say otherwise, and the default policy
//!   answers only what no rule decided (`allow` still keeps ACL management to management).
//! - [`service_identity_rules`], [`node_identity_rules`] and [`templated`] produce the policies
//!   Consul synthesizes for service identities, node identities and builtin templated policies.
//!
//! Checks are cheap: the rules are compiled once per token into one sorted table per resource
//! kind (binary search for the name, parent links for the longest prefix; `src/authorizer.rs`
//! explains the choice) and a check allocates nothing.

mod authorizer;
mod identity;
mod rules;
mod syntax;
pub mod templated;

pub use authorizer::{Authorizer, DefaultPolicy, DefaultPolicyError};
pub use identity::{
    GLOBAL_MANAGEMENT_RULES, GLOBAL_READ_ONLY_RULES, NODE_IDENTITY_NAME_MAX_LENGTH,
    SERVICE_IDENTITY_NAME_MAX_LENGTH, is_valid_node_identity_name, is_valid_service_identity_name,
    node_identity_rules, service_identity_rules,
};
pub use rules::{Rules, RulesError};

#[cfg(test)]
mod tests;
