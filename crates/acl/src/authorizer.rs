//! The authorizer a token's policies compile to: Consul's `policyAuthorizer` (built from the
//! merged policies) chained in front of a static authorizer for the default policy
//! (`ChainedAuthorizer` over `allowAll`/`denyAll`), or the static `manageAll` alone.
//!
//! The policies decide first; the default policy only answers what no rule decided. A rule of
//! the token that denies therefore denies even under `allow`, and the default `allow` grants
//! everything except `acl` read and write (and snapshots), which only management has.
//!
//! Lookup structure: per resource kind one sorted `Vec` of names, each entry holding its exact
//! rule and its prefix rule (either may be absent) and the index of the nearest shorter entry
//! whose name is a prefix of it and which has a prefix rule. A check binary-searches the name:
//! an exact hit with an exact rule answers; otherwise the longest prefix rule is found by
//! walking those parent links from the entry at or before the name (any prefix of the name sorts
//! between the prefix and the name, so it is an ancestor of that entry). That is O(log n) string
//! comparisons plus a walk as deep as the prefixes nest, without allocation, on one contiguous
//! array; a radix tree (what Consul uses) would give the same answers with more pointers to
//! chase for the few dozen rules a token has.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::rules::{RawRule, Resource, Rules, Scalar};

/// The `acl.default_policy` setting: what a check answers when none of the token's rules
/// applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefaultPolicy {
    /// Everything is allowed except ACL management (`acl` read and write, snapshots).
    Allow,
    /// Everything is denied.
    Deny,
}

/// A default policy that is neither `allow` nor `deny`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid ACL default policy {value:?}: must be \"allow\" or \"deny\"")]
pub struct DefaultPolicyError {
    pub value: String,
}

impl FromStr for DefaultPolicy {
    type Err = DefaultPolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "allow" => Ok(DefaultPolicy::Allow),
            "deny" => Ok(DefaultPolicy::Deny),
            other => Err(DefaultPolicyError {
                value: other.to_string(),
            }),
        }
    }
}

impl fmt::Display for DefaultPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DefaultPolicy::Allow => "allow",
            DefaultPolicy::Deny => "deny",
        })
    }
}

/// A rule's access level. `Write` grants read and list, `List` grants read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Deny,
    Read,
    List,
    Write,
}

impl Access {
    /// Consul's `AccessLevelFromString`, which lowercases first.
    fn parse(word: &str) -> Option<Access> {
        match word.to_lowercase().as_str() {
            "deny" => Some(Access::Deny),
            "read" => Some(Access::Read),
            "list" => Some(Access::List),
            "write" => Some(Access::Write),
            _ => None,
        }
    }

    /// Consul's `enforce`: does this rule grant the required level?
    fn grants(self, required: Access) -> bool {
        match self {
            Access::Write => true,
            Access::List => matches!(required, Access::List | Access::Read),
            Access::Read => required == Access::Read,
            Access::Deny => false,
        }
    }

    fn decide(self, required: Access) -> Decision {
        if self.grants(required) {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

/// A policy authorizer's answer: `Default` means no rule applied and the next authorizer in the
/// chain (the default policy) decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
    Default,
}

fn decide(rule: Option<Access>, required: Access) -> Decision {
    rule.map_or(Decision::Default, |access| access.decide(required))
}

/// Consul's `takesPrecedenceOver`, on the words as written: deny > write > list > read, and any
/// other spelling (`READ` passes validation) ranks below all of them. So `operator = "READ"`
/// is never merged in and grants nothing, as in Consul.
fn takes_precedence_over(a: &str, b: &str) -> bool {
    for word in ["deny", "write", "list", "read"] {
        if a == word {
            return true;
        }
        if b == word {
            return false;
        }
    }
    false
}

/// Consul's `MergePolicies`: per name, per kind, the rule with the highest precedence; the
/// first one seen when none outranks it.
struct Merged {
    exact: [HashMap<String, RawRule>; 7],
    prefix: [HashMap<String, RawRule>; 7],
    scalars: [String; 5],
}

impl Merged {
    fn new() -> Self {
        Merged {
            exact: Default::default(),
            prefix: Default::default(),
            scalars: Default::default(),
        }
    }

    fn merge(&mut self, rules: &Rules) {
        for scalar in Scalar::ALL {
            let incoming = &rules.scalars[scalar.index()];
            if takes_precedence_over(incoming, &self.scalars[scalar.index()]) {
                self.scalars[scalar.index()] = incoming.clone();
            }
        }
        for resource in Resource::ALL {
            let index = resource.index();
            merge_rules(&mut self.exact[index], &rules.exact[index], resource);
            merge_rules(&mut self.prefix[index], &rules.prefix[index], resource);
        }
    }
}

fn merge_rules(merged: &mut HashMap<String, RawRule>, incoming: &[RawRule], resource: Resource) {
    for rule in incoming {
        match merged.entry(rule.name.clone()) {
            MapEntry::Vacant(slot) => {
                slot.insert(rule.clone());
            }
            MapEntry::Occupied(mut slot) => {
                let existing = slot.get_mut();
                if resource == Resource::Service {
                    // Services merge the policy and the intentions separately.
                    if takes_precedence_over(&rule.policy, &existing.policy) {
                        existing.policy = rule.policy.clone();
                    }
                    if takes_precedence_over(&rule.intentions, &existing.intentions) {
                        existing.intentions = rule.intentions.clone();
                    }
                } else if takes_precedence_over(&rule.policy, &existing.policy) {
                    *existing = rule.clone();
                }
            }
        }
    }
}

/// The intentions a service rule grants: its own `intentions`, else `read` when the policy is
/// exactly `read` or `write`, else `deny` (Consul compares the words as written here).
fn intentions_word(rule: &RawRule) -> &str {
    if !rule.intentions.is_empty() {
        return &rule.intentions;
    }
    match rule.policy.as_str() {
        "read" | "write" => "read",
        _ => "deny",
    }
}

const NO_PARENT: u32 = u32::MAX;

struct TableEntry {
    name: Box<str>,
    exact: Option<Access>,
    prefix: Option<Access>,
    /// The nearest shorter entry that is a prefix of this name and has a prefix rule.
    prefix_parent: u32,
}

/// The rules of one resource kind, sorted by name (see the module documentation).
#[derive(Default)]
struct RuleTable {
    entries: Vec<TableEntry>,
}

impl RuleTable {
    fn build(
        exact: impl IntoIterator<Item = (String, Access)>,
        prefix: impl IntoIterator<Item = (String, Access)>,
    ) -> Self {
        let mut by_name: HashMap<String, (Option<Access>, Option<Access>)> = HashMap::new();
        for (name, access) in exact {
            by_name.entry(name).or_default().0 = Some(access);
        }
        for (name, access) in prefix {
            by_name.entry(name).or_default().1 = Some(access);
        }
        let mut entries: Vec<TableEntry> = by_name
            .into_iter()
            .map(|(name, (exact, prefix))| TableEntry {
                name: name.into_boxed_str(),
                exact,
                prefix,
                prefix_parent: NO_PARENT,
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        // In sorted order the prefix rules that are prefixes of the current name form a stack.
        let mut open: Vec<u32> = Vec::new();
        for index in 0..entries.len() {
            while let Some(&top) = open.last() {
                if entries[index]
                    .name
                    .starts_with(&*entries[top as usize].name)
                {
                    break;
                }
                open.pop();
            }
            entries[index].prefix_parent = open.last().copied().unwrap_or(NO_PARENT);
            if entries[index].prefix.is_some() {
                open.push(index as u32);
            }
        }
        RuleTable { entries }
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|entry| entry.name.as_bytes().cmp(name.as_bytes()))
    }

    /// The longest prefix rule whose name is a prefix of `name` (or equal to it), searching from
    /// the entry at or before `name` in sorted order.
    fn longest_prefix_from(&self, at_or_before: usize, name: &str) -> Option<Access> {
        let start = &self.entries[at_or_before];
        let mut candidate = if start.prefix.is_some() {
            at_or_before as u32
        } else {
            start.prefix_parent
        };
        while candidate != NO_PARENT {
            let entry = &self.entries[candidate as usize];
            if name.starts_with(&*entry.name) {
                return entry.prefix;
            }
            candidate = entry.prefix_parent;
        }
        None
    }

    /// Consul's `getPolicy`: the exact rule for `name`, else the longest matching prefix rule.
    fn lookup(&self, name: &str) -> Option<Access> {
        let at_or_before = match self.position(name) {
            Ok(index) => {
                if let Some(exact) = self.entries[index].exact {
                    return Some(exact);
                }
                index
            }
            Err(0) => return None,
            Err(index) => index - 1,
        };
        self.longest_prefix_from(at_or_before, name)
    }

    /// The longest prefix rule applying to `name`, exact rules ignored.
    fn lookup_prefix(&self, name: &str) -> Option<Access> {
        let at_or_before = match self.position(name) {
            Ok(index) => index,
            Err(0) => return None,
            Err(index) => index - 1,
        };
        self.longest_prefix_from(at_or_before, name)
    }

    fn catch_all_prefix(&self) -> Option<Access> {
        self.entries
            .first()
            .filter(|entry| entry.name.is_empty())
            .and_then(|entry| entry.prefix)
    }

    /// Consul's `allAllowed`: denied when any rule denies the level, else what the catch-all
    /// prefix rule (`*_prefix ""`) says, else no decision.
    fn all_allowed(&self, required: Access) -> Decision {
        let catch_all = decide(self.catch_all_prefix(), required);
        if catch_all == Decision::Deny {
            return Decision::Deny;
        }
        for entry in &self.entries {
            let prefix = decide(entry.prefix, required);
            let verdict = match entry.exact {
                Some(exact) if prefix != Decision::Deny => exact.decide(required),
                _ => prefix,
            };
            if verdict == Decision::Deny {
                return Decision::Deny;
            }
        }
        catch_all
    }

    /// Consul's `anyAllowed`: allowed when any rule grants the level, else what the catch-all
    /// prefix rule says (a deny), else no decision.
    fn any_allowed(&self, required: Access) -> Decision {
        let catch_all = decide(self.catch_all_prefix(), required);
        if catch_all == Decision::Allow {
            return Decision::Allow;
        }
        for entry in &self.entries {
            let mut verdict = decide(entry.prefix, required);
            if verdict != Decision::Allow
                && let Some(exact) = entry.exact
            {
                verdict = exact.decide(required);
            }
            if verdict == Decision::Allow {
                return Decision::Allow;
            }
        }
        catch_all
    }

    /// Consul's `KeyWritePrefix`: the longest prefix rule applying to `prefix` must grant write
    /// (no such rule: no decision), and no rule at or below `prefix`, exact or prefix, may grant
    /// less than write.
    fn write_prefix(&self, prefix: &str) -> Decision {
        let base = match self.lookup_prefix(prefix) {
            Some(Access::Write) => Decision::Allow,
            Some(_) => return Decision::Deny,
            None => Decision::Default,
        };
        let below = self
            .entries
            .partition_point(|entry| entry.name.as_bytes() < prefix.as_bytes());
        for entry in self.entries[below..]
            .iter()
            .take_while(|entry| entry.name.starts_with(prefix))
        {
            let narrows = |rule: Option<Access>| rule.is_some_and(|access| access != Access::Write);
            if narrows(entry.prefix) || narrows(entry.exact) {
                return Decision::Deny;
            }
        }
        base
    }
}

/// A token's policies merged and compiled: Consul's `policyAuthorizer`.
struct PolicyAuthorizer {
    scalars: [Option<Access>; 5],
    tables: [RuleTable; 7],
    /// Intention rules, keyed like service rules and derived from them.
    intentions: RuleTable,
    // Whole-table answers, computed once because they do not depend on the request.
    service_read_all: Decision,
    service_write_any: Decision,
    node_read_all: Decision,
    intention_read_any: Decision,
    intention_write_all: Decision,
}

impl PolicyAuthorizer {
    fn compile<'a>(policies: impl IntoIterator<Item = &'a Rules>) -> Self {
        let mut merged = Merged::new();
        for rules in policies {
            merged.merge(rules);
        }
        let compile_rules = |rules: &HashMap<String, RawRule>| -> Vec<(String, Access)> {
            rules
                .values()
                .filter_map(|rule| Some((rule.name.clone(), Access::parse(&rule.policy)?)))
                .collect()
        };
        let compile_intentions = |rules: &HashMap<String, RawRule>| -> Vec<(String, Access)> {
            rules
                .values()
                .filter_map(|rule| Some((rule.name.clone(), Access::parse(intentions_word(rule))?)))
                .collect()
        };
        let tables: [RuleTable; 7] = std::array::from_fn(|index| {
            RuleTable::build(
                compile_rules(&merged.exact[index]),
                compile_rules(&merged.prefix[index]),
            )
        });
        let service = Resource::Service.index();
        let intentions = RuleTable::build(
            compile_intentions(&merged.exact[service]),
            compile_intentions(&merged.prefix[service]),
        );
        let scalars = std::array::from_fn(|index| {
            let word = &merged.scalars[index];
            if word.is_empty() {
                None
            } else {
                Access::parse(word)
            }
        });
        let service_table = &tables[service];
        PolicyAuthorizer {
            service_read_all: service_table.all_allowed(Access::Read),
            service_write_any: service_table.any_allowed(Access::Write),
            node_read_all: tables[Resource::Node.index()].all_allowed(Access::Read),
            intention_read_any: intentions.any_allowed(Access::Read),
            intention_write_all: intentions.all_allowed(Access::Write),
            scalars,
            tables,
            intentions,
        }
    }

    fn table(&self, resource: Resource) -> &RuleTable {
        &self.tables[resource.index()]
    }

    fn scalar(&self, scalar: Scalar, required: Access) -> Decision {
        decide(self.scalars[scalar.index()], required)
    }

    fn named(&self, resource: Resource, name: &str, required: Access) -> Decision {
        decide(self.table(resource).lookup(name), required)
    }

    /// Mesh and peering fall back to the operator rule when they have none of their own.
    fn scalar_or_operator(&self, scalar: Scalar, required: Access) -> Decision {
        match self.scalars[scalar.index()] {
            Some(access) => access.decide(required),
            None => self.scalar(Scalar::Operator, required),
        }
    }

    fn intention(&self, name: &str, required: Access) -> Decision {
        // "*" asks about intentions in general (listing, wildcard intentions).
        if name == "*" {
            return match required {
                Access::Write => self.intention_write_all,
                _ => self.intention_read_any,
            };
        }
        decide(self.intentions.lookup(name), required)
    }
}

/// What answers when the policies make no decision: Consul's static authorizers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fallback {
    /// Consul's `allowAll`.
    Allow,
    /// Consul's `denyAll`.
    Deny,
    /// Consul's `manageAll`.
    Manage,
}

/// The permissions of one token. Cheap to clone (shared compiled rules); checks do not
/// allocate.
#[derive(Clone)]
pub struct Authorizer {
    policies: Option<Arc<PolicyAuthorizer>>,
    fallback: Fallback,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field(
                "rules",
                &self.policies.as_ref().map_or(0, |p| {
                    p.tables.iter().map(|t| t.entries.len()).sum::<usize>()
                }),
            )
            .field("fallback", &self.fallback)
            .finish()
    }
}

impl Authorizer {
    /// The authorizer of a token with these policies (service and node identities and templated
    /// policies included, as their rules), under the agent's default policy.
    pub fn new<'a>(
        policies: impl IntoIterator<Item = &'a Rules>,
        default: DefaultPolicy,
    ) -> Authorizer {
        Authorizer {
            policies: Some(Arc::new(PolicyAuthorizer::compile(policies))),
            fallback: match default {
                DefaultPolicy::Allow => Fallback::Allow,
                DefaultPolicy::Deny => Fallback::Deny,
            },
        }
    }

    /// Consul's `ManageAll`: everything allowed, ACL management included (the initial
    /// management token, or ACLs switched off).
    pub fn management() -> Authorizer {
        Authorizer {
            policies: None,
            fallback: Fallback::Manage,
        }
    }

    /// True only for [`Authorizer::management`]. A token whose policies happen to grant
    /// everything (Consul's `global-management` policy) is not "management" here; check the
    /// permission the operation needs instead.
    pub fn is_management(&self) -> bool {
        self.fallback == Fallback::Manage
    }

    /// The chain: the policies' decision, else the static default. `manage_only` marks the
    /// permissions the default `allow` does not grant (ACL management).
    #[inline]
    fn allowed(
        &self,
        manage_only: bool,
        check: impl FnOnce(&PolicyAuthorizer) -> Decision,
    ) -> bool {
        if let Some(policies) = &self.policies {
            match check(policies) {
                Decision::Allow => return true,
                Decision::Deny => return false,
                Decision::Default => {}
            }
        }
        match self.fallback {
            Fallback::Manage => true,
            Fallback::Allow => !manage_only,
            Fallback::Deny => false,
        }
    }

    pub fn acl_read(&self) -> bool {
        self.allowed(true, |p| p.scalar(Scalar::Acl, Access::Read))
    }

    pub fn acl_write(&self) -> bool {
        self.allowed(true, |p| p.scalar(Scalar::Acl, Access::Write))
    }

    /// Taking or restoring a snapshot: Consul requires `acl = "write"`.
    pub fn snapshot(&self) -> bool {
        self.allowed(true, |p| p.scalar(Scalar::Acl, Access::Write))
    }

    pub fn operator_read(&self) -> bool {
        self.allowed(false, |p| p.scalar(Scalar::Operator, Access::Read))
    }

    pub fn operator_write(&self) -> bool {
        self.allowed(false, |p| p.scalar(Scalar::Operator, Access::Write))
    }

    pub fn keyring_read(&self) -> bool {
        self.allowed(false, |p| p.scalar(Scalar::Keyring, Access::Read))
    }

    pub fn keyring_write(&self) -> bool {
        self.allowed(false, |p| p.scalar(Scalar::Keyring, Access::Write))
    }

    /// `mesh` read, or `operator` read when the policies say nothing about `mesh`.
    pub fn mesh_read(&self) -> bool {
        self.allowed(false, |p| p.scalar_or_operator(Scalar::Mesh, Access::Read))
    }

    /// `mesh` write, or `operator` write when the policies say nothing about `mesh`.
    pub fn mesh_write(&self) -> bool {
        self.allowed(false, |p| p.scalar_or_operator(Scalar::Mesh, Access::Write))
    }

    /// `peering` read, or `operator` read when the policies say nothing about `peering`.
    pub fn peering_read(&self) -> bool {
        self.allowed(false, |p| {
            p.scalar_or_operator(Scalar::Peering, Access::Read)
        })
    }

    /// `peering` write, or `operator` write when the policies say nothing about `peering`.
    pub fn peering_write(&self) -> bool {
        self.allowed(false, |p| {
            p.scalar_or_operator(Scalar::Peering, Access::Write)
        })
    }

    pub fn key_read(&self, key: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Key, key, Access::Read))
    }

    /// Listing keys under `prefix`: needs a `list` or `write` rule. (Consul checks this only when
    /// `acl.enable_key_list_policy` is on; otherwise listings are filtered by [`key_read`].)
    ///
    /// [`key_read`]: Authorizer::key_read
    pub fn key_list(&self, prefix: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Key, prefix, Access::List))
    }

    pub fn key_write(&self, key: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Key, key, Access::Write))
    }

    /// Deleting everything under `prefix` (a recursive delete): the rule applying to the prefix
    /// grants write and no narrower rule below it grants less.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        self.allowed(false, |p| p.table(Resource::Key).write_prefix(prefix))
    }

    pub fn service_read(&self, name: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Service, name, Access::Read))
    }

    pub fn service_write(&self, name: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Service, name, Access::Write))
    }

    /// Read on every service: no service rule denies read and the catch-all `service_prefix ""`
    /// grants it (else the default policy decides).
    pub fn service_read_all(&self) -> bool {
        self.allowed(false, |p| p.service_read_all)
    }

    /// Write on at least one service name (Consul's `ServiceWriteAny`).
    pub fn service_write_any(&self) -> bool {
        self.allowed(false, |p| p.service_write_any)
    }

    /// Reading intentions whose destination is `name`; `"*"` asks whether any may be read.
    pub fn intention_read(&self, name: &str) -> bool {
        self.allowed(false, |p| p.intention(name, Access::Read))
    }

    /// Writing intentions whose destination is `name`; `"*"` asks whether all may be written.
    pub fn intention_write(&self, name: &str) -> bool {
        self.allowed(false, |p| p.intention(name, Access::Write))
    }

    /// Whether connections without a matching intention are allowed: a policy cannot say, so
    /// the default policy decides (Consul's `IntentionDefaultAllow`).
    pub fn intention_default_allow(&self) -> bool {
        self.allowed(false, |_| Decision::Default)
    }

    pub fn node_read(&self, name: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Node, name, Access::Read))
    }

    pub fn node_write(&self, name: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Node, name, Access::Write))
    }

    /// Read on every node (Consul's `NodeReadAll`), as [`service_read_all`] for nodes.
    ///
    /// [`service_read_all`]: Authorizer::service_read_all
    pub fn node_read_all(&self) -> bool {
        self.allowed(false, |p| p.node_read_all)
    }

    pub fn session_read(&self, node: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Session, node, Access::Read))
    }

    pub fn session_write(&self, node: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Session, node, Access::Write))
    }

    pub fn agent_read(&self, node: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Agent, node, Access::Read))
    }

    pub fn agent_write(&self, node: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Agent, node, Access::Write))
    }

    pub fn event_read(&self, name: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Event, name, Access::Read))
    }

    pub fn event_write(&self, name: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Event, name, Access::Write))
    }

    pub fn query_read(&self, name: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Query, name, Access::Read))
    }

    pub fn query_write(&self, name: &str) -> bool {
        self.allowed(false, |p| p.named(Resource::Query, name, Access::Write))
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    /// The sorted table against the obvious scan over all rules, on names built to nest and
    /// to sit between siblings.
    #[test]
    fn longest_prefix_matches_a_naive_scan() {
        let prefixes = [
            "", "a", "ab", "abc", "abd", "b", "ba/", "ba/x", "c/d/", "c/d/e/f",
        ];
        let exacts = ["ab", "abz", "ba/x", "q"];
        let access_of =
            |index: usize| [Access::Read, Access::Write, Access::Deny, Access::List][index % 4];
        let table = RuleTable::build(
            exacts
                .iter()
                .enumerate()
                .map(|(i, name)| (name.to_string(), access_of(i + 1))),
            prefixes
                .iter()
                .enumerate()
                .map(|(i, name)| (name.to_string(), access_of(i))),
        );
        let naive = |name: &str| -> Option<Access> {
            if let Some(i) = exacts.iter().position(|exact| *exact == name) {
                return Some(access_of(i + 1));
            }
            prefixes
                .iter()
                .enumerate()
                .filter(|(_, prefix)| name.starts_with(*prefix))
                .max_by_key(|(_, prefix)| prefix.len())
                .map(|(i, _)| access_of(i))
        };
        let probes = [
            "", "a", "aa", "ab", "abb", "abc", "abcd", "abd", "abe", "abz", "abzz", "b", "ba",
            "ba/", "ba/w", "ba/x", "ba/xy", "ba/y", "bb", "c", "c/d", "c/d/", "c/d/e", "c/d/e/f",
            "c/d/e/fg", "q", "qq", "z",
        ];
        for probe in probes {
            assert_eq!(table.lookup(probe), naive(probe), "lookup({probe:?})");
        }
    }
}
