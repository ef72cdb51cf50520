//! Data-driven tests: tables of (policies, default policy, checks with expected answers), parse
//! errors with Consul's texts, the synthesized policies and the templated policies.

use crate::templated::{self, TemplateError};
use crate::{
    Authorizer, DefaultPolicy, Rules, RulesError, node_identity_rules, service_identity_rules,
};

use DefaultPolicy::{Allow, Deny};

/// One permission question.
#[derive(Clone, Copy, Debug)]
enum Check {
    AclRead,
    AclWrite,
    Snapshot,
    OperatorRead,
    OperatorWrite,
    KeyringRead,
    KeyringWrite,
    MeshRead,
    MeshWrite,
    PeeringRead,
    PeeringWrite,
    KeyRead(&'static str),
    KeyList(&'static str),
    KeyWrite(&'static str),
    KeyWritePrefix(&'static str),
    ServiceRead(&'static str),
    ServiceWrite(&'static str),
    ServiceReadAll,
    ServiceWriteAny,
    IntentionRead(&'static str),
    IntentionWrite(&'static str),
    IntentionDefaultAllow,
    NodeRead(&'static str),
    NodeWrite(&'static str),
    NodeReadAll,
    SessionRead(&'static str),
    SessionWrite(&'static str),
    AgentRead(&'static str),
    AgentWrite(&'static str),
    EventRead(&'static str),
    EventWrite(&'static str),
    QueryRead(&'static str),
    QueryWrite(&'static str),
}

use Check::*;

fn ask(authorizer: &Authorizer, check: Check) -> bool {
    match check {
        AclRead => authorizer.acl_read(),
        AclWrite => authorizer.acl_write(),
        Snapshot => authorizer.snapshot(),
        OperatorRead => authorizer.operator_read(),
        OperatorWrite => authorizer.operator_write(),
        KeyringRead => authorizer.keyring_read(),
        KeyringWrite => authorizer.keyring_write(),
        MeshRead => authorizer.mesh_read(),
        MeshWrite => authorizer.mesh_write(),
        PeeringRead => authorizer.peering_read(),
        PeeringWrite => authorizer.peering_write(),
        KeyRead(key) => authorizer.key_read(key),
        KeyList(key) => authorizer.key_list(key),
        KeyWrite(key) => authorizer.key_write(key),
        KeyWritePrefix(prefix) => authorizer.key_write_prefix(prefix),
        ServiceRead(name) => authorizer.service_read(name),
        ServiceWrite(name) => authorizer.service_write(name),
        ServiceReadAll => authorizer.service_read_all(),
        ServiceWriteAny => authorizer.service_write_any(),
        IntentionRead(name) => authorizer.intention_read(name),
        IntentionWrite(name) => authorizer.intention_write(name),
        IntentionDefaultAllow => authorizer.intention_default_allow(),
        NodeRead(name) => authorizer.node_read(name),
        NodeWrite(name) => authorizer.node_write(name),
        NodeReadAll => authorizer.node_read_all(),
        SessionRead(node) => authorizer.session_read(node),
        SessionWrite(node) => authorizer.session_write(node),
        AgentRead(node) => authorizer.agent_read(node),
        AgentWrite(node) => authorizer.agent_write(node),
        EventRead(name) => authorizer.event_read(name),
        EventWrite(name) => authorizer.event_write(name),
        QueryRead(name) => authorizer.query_read(name),
        QueryWrite(name) => authorizer.query_write(name),
    }
}

struct Case {
    name: &'static str,
    policies: &'static [&'static str],
    default: DefaultPolicy,
    checks: &'static [(Check, bool)],
}

fn authorizer_for(policies: &[&str], default: DefaultPolicy) -> Authorizer {
    let parsed: Vec<Rules> = policies
        .iter()
        .map(|text| {
            Rules::parse(text)
                .unwrap_or_else(|error| panic!("policy {text:?} should parse: {error}"))
        })
        .collect();
    Authorizer::new(&parsed, default)
}

/// Runs every check of every case and reports all the wrong answers at once.
fn run(cases: &[Case]) {
    let mut failures = Vec::new();
    let mut count = 0;
    for case in cases {
        let authorizer = authorizer_for(case.policies, case.default);
        for &(check, expected) in case.checks {
            count += 1;
            let answer = ask(&authorizer, check);
            if answer != expected {
                failures.push(format!(
                    "{}: {check:?} answered {answer}, expected {expected}",
                    case.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} checks wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rule_matching() {
    run(&[
        Case {
            name: "exact rule beats prefix rule",
            policies: &[r#"
                key_prefix "foo/" { policy = "write" }
                key "foo/bar" { policy = "deny" }
                service_prefix "" { policy = "write" }
                service "db" { policy = "read" }
            "#],
            default: Deny,
            checks: &[
                (KeyWrite("foo/bar"), false),
                (KeyRead("foo/bar"), false),
                (KeyWrite("foo/baz"), true),
                // An exact rule covers its name only.
                (KeyWrite("foo/bar/x"), true),
                (KeyWrite("foo/ba"), true),
                (ServiceWrite("db"), false),
                (ServiceRead("db"), true),
                (ServiceWrite("dbx"), true),
            ],
        },
        Case {
            name: "longest prefix wins",
            policies: &[r#"
                key_prefix "" { policy = "read" }
                key_prefix "foo/" { policy = "write" }
                key_prefix "foo/bar/" { policy = "deny" }
                key_prefix "foo/bar/baz/" { policy = "read" }
                node_prefix "web" { policy = "write" }
                node_prefix "web-canary" { policy = "deny" }
            "#],
            default: Allow,
            checks: &[
                (KeyRead("zzz"), true),
                (KeyWrite("zzz"), false),
                (KeyWrite("foo/x"), true),
                (KeyWrite("foo/"), true),
                (KeyWrite("foo"), false),
                (KeyRead("foo/bar/x"), false),
                (KeyRead("foo/bar/"), false),
                (KeyRead("foo/bar/baz/1"), true),
                (KeyWrite("foo/bar/baz/1"), false),
                (KeyRead("foo/bar"), true),
                (KeyWrite("foo/bar"), true),
                (NodeWrite("web-1"), true),
                (NodeWrite("web-canary-1"), false),
                (NodeRead("web-canary-1"), false),
                // No rule: the default policy (allow) answers.
                (NodeWrite("db-1"), true),
            ],
        },
        Case {
            name: "catch-all prefix",
            policies: &[
                r#"session_prefix "" { policy = "write" } event_prefix "" { policy = "read" }"#,
            ],
            default: Deny,
            checks: &[
                (SessionWrite(""), true),
                (SessionWrite("any-node"), true),
                (EventRead("deploy"), true),
                (EventWrite("deploy"), false),
                (AgentRead("n1"), false),
            ],
        },
        Case {
            name: "exact empty name is not a catch-all",
            policies: &[r#"key "" { policy = "write" }"#],
            default: Deny,
            checks: &[
                (KeyWrite(""), true),
                (KeyWrite("a"), false),
                (KeyRead("a"), false),
            ],
        },
        Case {
            name: "every resource kind",
            policies: &[r#"
                agent "n1" { policy = "write" }
                agent_prefix "n" { policy = "read" }
                session "n1" { policy = "write" }
                session_prefix "" { policy = "read" }
                event "deploy" { policy = "write" }
                query_prefix "geo-" { policy = "write" }
                query "geo-secret" { policy = "deny" }
            "#],
            default: Deny,
            checks: &[
                (AgentWrite("n1"), true),
                (AgentWrite("n2"), false),
                (AgentRead("n2"), true),
                (AgentRead("x"), false),
                (SessionWrite("n1"), true),
                (SessionWrite("n2"), false),
                (SessionRead("n2"), true),
                (EventWrite("deploy"), true),
                (EventWrite("deploy2"), false),
                (QueryWrite("geo-db"), true),
                (QueryRead("geo-secret"), false),
                (QueryRead("other"), false),
            ],
        },
    ]);
}

#[test]
fn merging_several_policies() {
    run(&[
        Case {
            name: "deny in one policy beats write in another",
            policies: &[
                r#"service "web" { policy = "write" } key_prefix "app/" { policy = "write" } operator = "write""#,
                r#"service "web" { policy = "deny" } key_prefix "app/" { policy = "deny" } operator = "deny""#,
            ],
            default: Allow,
            checks: &[
                (ServiceWrite("web"), false),
                (ServiceRead("web"), false),
                (KeyRead("app/x"), false),
                (OperatorRead, false),
            ],
        },
        Case {
            name: "write beats read, list beats read, in any order",
            policies: &[
                r#"service "web" { policy = "read" } key_prefix "a/" { policy = "read" } keyring = "read""#,
                r#"service "web" { policy = "write" } key_prefix "a/" { policy = "list" } keyring = "write""#,
                r#"node "n" { policy = "write" }"#,
                r#"node "n" { policy = "read" }"#,
            ],
            default: Deny,
            checks: &[
                (ServiceWrite("web"), true),
                (KeyList("a/"), true),
                (KeyWrite("a/b"), false),
                (KeyringWrite, true),
                (NodeWrite("n"), true),
            ],
        },
        Case {
            name: "the same name twice in one policy merges too",
            policies: &[r#"
                key "k" { policy = "write" }
                key "k" { policy = "read" }
                event "e" { policy = "read" }
                event "e" { policy = "deny" }
            "#],
            default: Deny,
            checks: &[(KeyWrite("k"), true), (EventRead("e"), false)],
        },
        Case {
            name: "rules of different policies combine",
            policies: &[
                r#"key_prefix "a/" { policy = "write" }"#,
                r#"key "a/b" { policy = "deny" }"#,
            ],
            default: Deny,
            checks: &[(KeyWrite("a/c"), true), (KeyWrite("a/b"), false)],
        },
        Case {
            // Consul merges by comparing the words as written; `READ` passes validation but
            // ranks below every lowercase word and is never merged in at the top level.
            name: "mixed-case words follow Consul's merge",
            policies: &[
                r#"operator = "READ" service "web" { policy = "WRITE" }"#,
                r#"service "api" { policy = "write" }"#,
                r#"service "api" { policy = "DENY" }"#,
            ],
            default: Deny,
            checks: &[
                (OperatorRead, false),
                (ServiceWrite("web"), true),
                // Intentions are derived from the exact words `read`/`write` only.
                (IntentionRead("web"), false),
                (ServiceWrite("api"), true),
            ],
        },
    ]);
}

#[test]
fn default_policy_fallbacks_and_management() {
    const EVERYTHING_BUT_ACL: &[(Check, bool)] = &[
        (AclRead, false),
        (AclWrite, false),
        (Snapshot, false),
        (OperatorRead, true),
        (OperatorWrite, true),
        (KeyringWrite, true),
        (MeshWrite, true),
        (PeeringWrite, true),
        (KeyWrite("any"), true),
        (KeyList("any"), true),
        (KeyWritePrefix(""), true),
        (ServiceWrite("any"), true),
        (ServiceReadAll, true),
        (ServiceWriteAny, true),
        (IntentionWrite("any"), true),
        (IntentionWrite("*"), true),
        (IntentionDefaultAllow, true),
        (NodeWrite("any"), true),
        (NodeReadAll, true),
        (SessionWrite("any"), true),
        (AgentWrite("any"), true),
        (EventWrite("any"), true),
        (QueryWrite("any"), true),
    ];
    const NOTHING: &[(Check, bool)] = &[
        (AclRead, false),
        (AclWrite, false),
        (OperatorRead, false),
        (KeyringRead, false),
        (MeshRead, false),
        (PeeringRead, false),
        (KeyRead("any"), false),
        (KeyWritePrefix(""), false),
        (ServiceRead("any"), false),
        (ServiceReadAll, false),
        (ServiceWriteAny, false),
        (IntentionRead("*"), false),
        (IntentionDefaultAllow, false),
        (NodeRead("any"), false),
        (NodeReadAll, false),
        (SessionRead("any"), false),
        (AgentRead("any"), false),
        (EventRead("any"), false),
        (QueryRead("any"), false),
    ];
    run(&[
        Case {
            name: "no rules, default allow",
            policies: &[],
            default: Allow,
            checks: EVERYTHING_BUT_ACL,
        },
        Case {
            name: "empty policy, default allow",
            policies: &[""],
            default: Allow,
            checks: EVERYTHING_BUT_ACL,
        },
        Case {
            name: "no rules, default deny",
            policies: &[],
            default: Deny,
            checks: NOTHING,
        },
        Case {
            name: "a rule that denies wins over default allow",
            policies: &[
                r#"key_prefix "secret/" { policy = "deny" } service "db" { policy = "read" } acl = "read""#,
            ],
            default: Allow,
            checks: &[
                (KeyRead("secret/x"), false),
                (KeyRead("public/x"), true),
                (ServiceWrite("db"), false),
                (ServiceRead("db"), true),
                (ServiceWrite("web"), true),
                // The policy grants acl read; default allow never grants acl write.
                (AclRead, true),
                (AclWrite, false),
                // A deny below the root denies the recursive delete of the root.
                (KeyWritePrefix(""), false),
                (KeyWritePrefix("public/"), true),
            ],
        },
        Case {
            name: "a rule that grants wins over default deny",
            policies: &[r#"acl = "write" operator = "read""#],
            default: Deny,
            checks: &[
                (AclRead, true),
                (AclWrite, true),
                (Snapshot, true),
                (OperatorRead, true),
                (OperatorWrite, false),
                (KeyRead("k"), false),
            ],
        },
    ]);

    let management = Authorizer::management();
    assert!(management.is_management());
    for check in [
        AclRead,
        AclWrite,
        Snapshot,
        OperatorWrite,
        KeyringWrite,
        MeshWrite,
        PeeringWrite,
        KeyWrite("k"),
        KeyWritePrefix(""),
        ServiceWrite("s"),
        ServiceReadAll,
        IntentionWrite("*"),
        NodeWrite("n"),
        NodeReadAll,
        SessionWrite("n"),
        AgentWrite("n"),
        EventWrite("e"),
        QueryWrite("q"),
    ] {
        assert!(ask(&management, check), "management must allow {check:?}");
    }
    assert!(!authorizer_for(&[crate::GLOBAL_MANAGEMENT_RULES], Deny).is_management());
    assert!(!authorizer_for(&[], Allow).is_management());
}

#[test]
fn builtin_policies_grant_what_they_say() {
    run(&[
        Case {
            name: "global-management",
            policies: &[crate::GLOBAL_MANAGEMENT_RULES],
            default: Deny,
            checks: &[
                (AclWrite, true),
                (OperatorWrite, true),
                (KeyringWrite, true),
                (MeshWrite, true),
                (PeeringWrite, true),
                (KeyWritePrefix(""), true),
                (ServiceWrite("x"), true),
                (IntentionWrite("*"), true),
                (IntentionWrite("x"), true),
                (NodeReadAll, true),
                (SessionWrite("n"), true),
                (AgentWrite("n"), true),
                (EventWrite("e"), true),
                (QueryWrite("q"), true),
            ],
        },
        Case {
            name: "global-read-only",
            policies: &[crate::GLOBAL_READ_ONLY_RULES],
            default: Deny,
            checks: &[
                (AclRead, true),
                (AclWrite, false),
                (OperatorRead, true),
                (OperatorWrite, false),
                (KeyRead("k"), true),
                (KeyWrite("k"), false),
                (ServiceReadAll, true),
                (IntentionRead("x"), true),
                (IntentionWrite("x"), false),
                (NodeReadAll, true),
            ],
        },
    ]);
}

#[test]
fn key_list_and_recursive_delete() {
    run(&[
        Case {
            name: "list grants list and read, not write; read does not grant list",
            policies: &[r#"
                key_prefix "listable/" { policy = "list" }
                key_prefix "readable/" { policy = "read" }
                key_prefix "writable/" { policy = "write" }
            "#],
            default: Deny,
            checks: &[
                (KeyList("listable/"), true),
                (KeyRead("listable/a"), true),
                (KeyWrite("listable/a"), false),
                (KeyList("readable/"), false),
                (KeyRead("readable/a"), true),
                (KeyList("writable/"), true),
                (KeyList("other/"), false),
            ],
        },
        Case {
            name: "recursive delete needs write at the prefix and nothing narrower below",
            policies: &[r#"
                key_prefix "" { policy = "write" }
                key "app/config/locked" { policy = "deny" }
                key_prefix "app/readonly/" { policy = "read" }
                key_prefix "tmp/" { policy = "write" }
                key "tmp/keep" { policy = "write" }
            "#],
            default: Deny,
            checks: &[
                (KeyWritePrefix(""), false),
                (KeyWritePrefix("app/"), false),
                (KeyWritePrefix("app/config/"), false),
                (KeyWritePrefix("app/config/locked"), false),
                (KeyWritePrefix("app/readonly/"), false),
                (KeyWritePrefix("app/other/"), true),
                (KeyWritePrefix("tmp/"), true),
                (KeyWritePrefix("zzz/"), true),
                // Single writes are unaffected by the deny below.
                (KeyWrite("app/x"), true),
                (KeyWrite("app/config/locked"), false),
            ],
        },
        Case {
            name: "recursive delete without a prefix rule above falls to the default",
            policies: &[r#"key "a/b" { policy = "write" } key_prefix "c/" { policy = "read" }"#],
            default: Allow,
            checks: &[
                (KeyWritePrefix("a/"), true),
                (KeyWritePrefix("c/"), false),
                (KeyWritePrefix(""), false),
                (KeyWritePrefix("d/"), true),
            ],
        },
        Case {
            name: "recursive delete under default deny with an exact write only",
            policies: &[r#"key "a/b" { policy = "write" }"#],
            default: Deny,
            checks: &[
                (KeyWritePrefix("a/"), false),
                (KeyWritePrefix("a/b"), false),
                (KeyWrite("a/b"), true),
            ],
        },
    ]);
}

#[test]
fn intentions_follow_service_rules() {
    run(&[
        Case {
            name: "derived from the service policy",
            policies: &[r#"
                service "reader" { policy = "read" }
                service "writer" { policy = "write" }
                service "denied" { policy = "deny" }
                service "explicit" { policy = "read" intentions = "write" }
                service "closed" { policy = "write" intentions = "deny" }
                service_prefix "team-" { policy = "read" }
            "#],
            default: Deny,
            checks: &[
                (IntentionRead("reader"), true),
                (IntentionWrite("reader"), false),
                // Service write grants only intention read.
                (IntentionRead("writer"), true),
                (IntentionWrite("writer"), false),
                (IntentionRead("denied"), false),
                (IntentionWrite("explicit"), true),
                (IntentionRead("closed"), false),
                (ServiceWrite("closed"), true),
                (IntentionRead("team-a"), true),
                (IntentionRead("other"), false),
                // "*": any readable; all writable.
                (IntentionRead("*"), true),
                (IntentionWrite("*"), false),
            ],
        },
        Case {
            name: "wildcard intentions with a catch-all",
            policies: &[
                r#"service_prefix "" { policy = "write" intentions = "write" } service "db" { policy = "read" }"#,
            ],
            default: Deny,
            checks: &[
                (IntentionWrite("web"), true),
                (IntentionRead("db"), true),
                (IntentionWrite("db"), false),
                // "db" derives only read, so not every intention is writable.
                (IntentionWrite("*"), false),
                (IntentionRead("*"), true),
            ],
        },
        Case {
            name: "merged intentions: the stronger word wins separately from the policy",
            policies: &[
                r#"service "web" { policy = "write" }"#,
                r#"service "web" { policy = "read" intentions = "write" }"#,
            ],
            default: Deny,
            checks: &[(ServiceWrite("web"), true), (IntentionWrite("web"), true)],
        },
        Case {
            name: "intention default comes from the default policy",
            policies: &[r#"service_prefix "" { policy = "write" intentions = "write" }"#],
            default: Deny,
            checks: &[(IntentionDefaultAllow, false)],
        },
    ]);
}

#[test]
fn read_all_and_write_any() {
    run(&[
        Case {
            name: "read all needs the catch-all and no deny",
            policies: &[
                r#"service_prefix "" { policy = "read" } node_prefix "" { policy = "read" } node "secret" { policy = "deny" }"#,
            ],
            default: Deny,
            checks: &[
                (ServiceReadAll, true),
                (NodeReadAll, false),
                (ServiceWriteAny, false),
            ],
        },
        Case {
            name: "without a catch-all the default decides read all",
            policies: &[r#"service "web" { policy = "write" }"#],
            default: Allow,
            checks: &[
                (ServiceReadAll, true),
                (ServiceWriteAny, true),
                (NodeReadAll, true),
            ],
        },
        Case {
            name: "without a catch-all under deny",
            policies: &[r#"service "web" { policy = "write" }"#],
            default: Deny,
            checks: &[(ServiceReadAll, false), (ServiceWriteAny, true)],
        },
        Case {
            name: "a denying catch-all with one writable service",
            policies: &[
                r#"service_prefix "" { policy = "deny" } service "web" { policy = "write" }"#,
            ],
            default: Allow,
            checks: &[
                (ServiceReadAll, false),
                (ServiceWriteAny, true),
                (ServiceRead("db"), false),
            ],
        },
    ]);
}

#[test]
fn mesh_and_peering_fall_back_to_operator() {
    run(&[
        Case {
            name: "operator only",
            policies: &[r#"operator = "write""#],
            default: Deny,
            checks: &[(MeshRead, true), (MeshWrite, true), (PeeringWrite, true)],
        },
        Case {
            name: "mesh rule overrides operator",
            policies: &[r#"operator = "write" mesh = "read" peering = "deny""#],
            default: Deny,
            checks: &[
                (MeshRead, true),
                (MeshWrite, false),
                (PeeringRead, false),
                (OperatorWrite, true),
            ],
        },
        Case {
            name: "operator deny under default allow",
            policies: &[r#"operator = "deny""#],
            default: Allow,
            checks: &[(MeshRead, false), (PeeringRead, false)],
        },
    ]);
}

/// Consul's own "Basic" policy test, in HCL and JSON.
const BASIC_HCL: &str = r#"
    agent_prefix "bar" {
        policy = "write"
    }
    agent "foo" {
        policy = "read"
    }
    event_prefix "" {
        policy = "read"
    }
    event "foo" {
        policy = "write"
    }
    event "bar" {
        policy = "deny"
    }
    key_prefix "" {
        policy = "read"
    }
    key_prefix "foo/" {
        policy = "write"
    }
    key_prefix "foo/bar/" {
        policy = "read"
    }
    key "foo/bar/baz" {
        policy = "deny"
    }
    keyring = "deny"
    node_prefix "" {
        policy = "read"
    }
    node "foo" {
        policy = "write"
    }
    node "bar" {
        policy = "deny"
    }
    operator = "deny"
    mesh = "deny"
    peering = "deny"
    service_prefix "" {
        policy = "write"
    }
    service "foo" {
        policy = "read"
    }
    session "foo" {
        policy = "write"
    }
    session "bar" {
        policy = "deny"
    }
    session_prefix "baz" {
        policy = "deny"
    }
    query_prefix "" {
        policy = "read"
    }
    query "foo" {
        policy = "write"
    }
    query "bar" {
        policy = "deny"
    }
"#;

const BASIC_JSON: &str = r#"
{
  "agent_prefix": { "bar": { "policy": "write" } },
  "agent": { "foo": { "policy": "read" } },
  "event_prefix": { "": { "policy": "read" } },
  "event": { "foo": { "policy": "write" }, "bar": { "policy": "deny" } },
  "key_prefix": {
    "": { "policy": "read" },
    "foo/": { "policy": "write" },
    "foo/bar/": { "policy": "read" }
  },
  "key": { "foo/bar/baz": { "policy": "deny" } },
  "keyring": "deny",
  "node_prefix": { "": { "policy": "read" } },
  "node": { "foo": { "policy": "write" }, "bar": { "policy": "deny" } },
  "operator": "deny",
  "mesh": "deny",
  "peering": "deny",
  "service_prefix": { "": { "policy": "write" } },
  "service": { "foo": { "policy": "read" } },
  "session_prefix": { "baz": { "policy": "deny" } },
  "session": { "foo": { "policy": "write" }, "bar": { "policy": "deny" } },
  "query_prefix": { "": { "policy": "read" } },
  "query": { "foo": { "policy": "write" }, "bar": { "policy": "deny" } }
}
"#;

const BASIC_CHECKS: &[(Check, bool)] = &[
    (AgentWrite("bar-1"), true),
    (AgentWrite("foo"), false),
    (AgentRead("foo"), true),
    (AgentRead("baz"), false),
    (EventRead("x"), true),
    (EventWrite("foo"), true),
    (EventRead("bar"), false),
    (KeyRead("x"), true),
    (KeyWrite("x"), false),
    (KeyWrite("foo/x"), true),
    (KeyWrite("foo/bar/x"), false),
    (KeyRead("foo/bar/x"), true),
    (KeyRead("foo/bar/baz"), false),
    (KeyWritePrefix("foo/"), false),
    (KeyringRead, false),
    (NodeRead("x"), true),
    (NodeWrite("foo"), true),
    (NodeRead("bar"), false),
    (NodeReadAll, false),
    (OperatorRead, false),
    (MeshRead, false),
    (PeeringRead, false),
    (ServiceWrite("x"), true),
    (ServiceWrite("foo"), false),
    (ServiceRead("foo"), true),
    (ServiceReadAll, true),
    (IntentionRead("x"), true),
    (IntentionWrite("x"), false),
    (SessionWrite("foo"), true),
    (SessionRead("bar"), false),
    (SessionRead("baz-1"), false),
    (SessionRead("other"), false),
    (QueryRead("x"), true),
    (QueryWrite("foo"), true),
    (QueryRead("bar"), false),
    (AclRead, false),
];

#[test]
fn hcl_and_json_forms_answer_alike() {
    run(&[
        Case {
            name: "Consul's Basic policy in HCL",
            policies: &[BASIC_HCL],
            default: Deny,
            checks: BASIC_CHECKS,
        },
        Case {
            name: "Consul's Basic policy in JSON",
            policies: &[BASIC_JSON],
            default: Deny,
            checks: BASIC_CHECKS,
        },
    ]);
    assert_eq!(parse(BASIC_HCL), parse(BASIC_JSON));

    // Pairs of the same policy written differently; each pair must parse to the same rules.
    let pairs: &[(&str, &str)] = &[
        (
            r#"key_prefix "" { policy = "read" } operator = "read""#,
            r#"{"key_prefix": {"": {"policy": "read"}}, "operator": "read"}"#,
        ),
        // Consul's own one-line form: two attributes in one block.
        (
            r#"service "foo" { policy = "write" intentions = "read" }"#,
            r#"{ "service": { "foo": { "policy": "write", "intentions": "read" }}}"#,
        ),
        // HCL 1 allows `=` objects for blocks, commas between items, unquoted labels.
        (
            r#"key = { "a/" = { policy = "read", }, b = { policy = "write" } }"#,
            "key \"a/\" {\n policy = \"read\"\n}\nkey b { policy = \"write\" }",
        ),
        // Key names match case-insensitively, as HCL 1 decodes them.
        (
            r#"Key_Prefix "x" { Policy = "read" }"#,
            r#"key_prefix "x" { policy = "read" }"#,
        ),
        // Keys Consul does not know are ignored, at the top and in a rule.
        (
            r#"sentinel = "x" key "a" { policy = "read" code = "whatever" }"#,
            r#"key "a" { policy = "read" }"#,
        ),
        // JSON lists of objects, as HCL 1's JSON reader flattens them.
        (
            r#"{"node": [{"a": {"policy": "write"}}, {"b": [{"policy": "read"}]}]}"#,
            r#"node "a" { policy = "write" } node "b" { policy = "read" }"#,
        ),
        // Numbers decode into string fields as written (and then fail validation alike).
        (
            "# comment\n// another\n/* block */ event \"e\" { policy = \"deny\" }",
            r#"{"event": {"e": {"policy": "deny"}}}"#,
        ),
    ];
    for (first, second) in pairs {
        assert_eq!(
            parse(first),
            parse(second),
            "{first:?} and {second:?} should parse alike"
        );
    }
}

fn parse(text: &str) -> Rules {
    Rules::parse(text).unwrap_or_else(|error| panic!("{text:?} should parse: {error}"))
}

fn parse_error(text: &str) -> String {
    match Rules::parse(text) {
        Ok(rules) => panic!("{text:?} should not parse, got {rules:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn empty_and_blank_policies_have_no_rules() {
    for text in ["", "   \n", "# only a comment\n", "{}", " { } "] {
        assert!(parse(text).is_empty(), "{text:?}");
    }
    assert!(!parse(r#"operator = "read""#).is_empty());
}

#[test]
fn invalid_policies_are_refused_with_consul_texts() {
    let cases: &[(&str, &str)] = &[
        (r#"acl = "list""#, r#"Invalid acl policy: "list""#),
        (r#"{ "acl": "list" }"#, r#"Invalid acl policy: "list""#),
        (
            r#"agent "foo" { policy = "nope" }"#,
            r#"Invalid agent policy: &acl.AgentRule{Node:"foo", Policy:"nope"}"#,
        ),
        (
            r#"agent_prefix "foo" { policy = "nope" }"#,
            r#"Invalid agent_prefix policy: &acl.AgentRule{Node:"foo", Policy:"nope"}"#,
        ),
        (
            r#"key "foo" { policy = "nope" }"#,
            r#"Invalid key policy: &acl.KeyRule{Prefix:"foo", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}"#,
        ),
        (
            r#"{ "key_prefix": { "foo": { "policy": "nope" }}}"#,
            r#"Invalid key_prefix policy: &acl.KeyRule{Prefix:"foo", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}"#,
        ),
        (
            r#"node "foo" { policy = "list" }"#,
            r#"Invalid node policy: &acl.NodeRule{Name:"foo", Policy:"list", EnterpriseRule:acl.EnterpriseRule{}}"#,
        ),
        (
            r#"node_prefix "foo" { policy = "nope" }"#,
            r#"Invalid node_prefix policy: &acl.NodeRule{Name:"foo", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}"#,
        ),
        (
            r#"service "foo" { policy = "nope" }"#,
            r#"Invalid service policy: &acl.ServiceRule{Name:"foo", Policy:"nope", Intentions:"", EnterpriseRule:acl.EnterpriseRule{}}"#,
        ),
        (
            r#"service "foo" { policy = "write" intentions = "foo" }"#,
            r#"Invalid service intentions policy: &acl.ServiceRule{Name:"foo", Policy:"write", Intentions:"foo", EnterpriseRule:acl.EnterpriseRule{}}"#,
        ),
        (
            r#"service_prefix "foo" { policy = "write" intentions = "list" }"#,
            r#"Invalid service_prefix intentions policy: &acl.ServiceRule{Name:"foo", Policy:"write", Intentions:"list", EnterpriseRule:acl.EnterpriseRule{}}"#,
        ),
        (
            r#"session "foo" { policy = "nope" }"#,
            r#"Invalid session policy: &acl.SessionRule{Node:"foo", Policy:"nope"}"#,
        ),
        (
            r#"session_prefix "foo" { policy = "nope" }"#,
            r#"Invalid session_prefix policy: &acl.SessionRule{Node:"foo", Policy:"nope"}"#,
        ),
        (
            r#"event "foo" { policy = "nope" }"#,
            r#"Invalid event policy: &acl.EventRule{Event:"foo", Policy:"nope"}"#,
        ),
        (
            r#"event_prefix "foo" { policy = "nope" }"#,
            r#"Invalid event_prefix policy: &acl.EventRule{Event:"foo", Policy:"nope"}"#,
        ),
        (
            r#"query "foo" { policy = "nope" }"#,
            r#"Invalid query policy: &acl.PreparedQueryRule{Prefix:"foo", Policy:"nope"}"#,
        ),
        (
            r#"query_prefix "foo" { policy = "nope" }"#,
            r#"Invalid query_prefix policy: &acl.PreparedQueryRule{Prefix:"foo", Policy:"nope"}"#,
        ),
        (r#"keyring = "nope""#, r#"Invalid keyring policy: "nope""#),
        (r#"operator = "nope""#, r#"Invalid operator policy: "nope""#),
        (r#"mesh = "nope""#, r#"Invalid mesh policy: "nope""#),
        (
            r#"{ "peering": "nope" }"#,
            r#"Invalid peering policy: "nope""#,
        ),
        // A rule without a policy has an empty one, which is invalid.
        (
            r#"key "" { }"#,
            r#"Invalid key policy: &acl.KeyRule{Prefix:"", Policy:"", EnterpriseRule:acl.EnterpriseRule{}}"#,
        ),
        (r#"operator = 7"#, r#"Invalid operator policy: "7""#),
        // An HCL 1 heredoc keeps its last newline, so Consul refuses it as a policy word.
        (
            "query \"q\" {\n  policy = <<EOF\nwrite\nEOF\n}",
            r#"Invalid query policy: &acl.PreparedQueryRule{Prefix:"q", Policy:"write\n"}"#,
        ),
        (
            r#"key "a\"b" { policy = "x" }"#,
            r#"Invalid key policy: &acl.KeyRule{Prefix:"a\"b", Policy:"x", EnterpriseRule:acl.EnterpriseRule{}}"#,
        ),
        // Syntax and type errors.
        (
            r#"key "a" {"#,
            "Failed to parse ACL rules: At 1:10: object expected closing RBRACE got: EOF",
        ),
        (
            "key \"a\" {\n  policy = \"read\"\n  policy = \"write\"\n}",
            r#"Failed to parse ACL rules: The argument "policy" at 3:3 was already set. Each argument can only be defined once"#,
        ),
        (
            "operator = \"read\"\noperator = \"write\"",
            r#"Failed to parse ACL rules: The argument "operator" at 2:1 was already set. Each argument can only be defined once"#,
        ),
        (
            r#"key "a" { policy = read }"#,
            "Failed to parse ACL rules: At 1:20: Unknown token: {Type:IDENT Pos:{Filename: Offset:19 Line:1 Column:20} Text:read JSON:false}",
        ),
        (
            r#"key "a""#,
            r#"Failed to parse ACL rules: At 1:8: key 'key "a"' expected start of object ('{') or assignment ('=')"#,
        ),
        (
            r#"key "a" = { }"#,
            "Failed to parse ACL rules: At 1:9: nested object expected: LBRACE got: ASSIGN",
        ),
        (
            r#"key "a" { policy = "read }"#,
            "Failed to parse ACL rules: At 1:20: literal not terminated",
        ),
        (
            r#"operator = true"#,
            "Failed to parse ACL rules: root.operator: unknown type for string *ast.LiteralType",
        ),
        (
            r#"operator "x" { }"#,
            "Failed to parse ACL rules: root.operator: unknown type for string *ast.ObjectList",
        ),
        (
            r#"key "a" { policy = ["read"] }"#,
            "Failed to parse ACL rules: root.key[0].Policy: unknown type for string *ast.ListType",
        ),
        (
            r#"{"key": {"a": "read"}}"#,
            "Failed to parse ACL rules: root.key[0]: not an object type for struct (*ast.LiteralType)",
        ),
        (
            r#"{"key": {"a": {"policy": "read"}}"#,
            "Failed to parse ACL rules: At 1:34: expected ',' or '}' in object",
        ),
    ];
    let mut failures = Vec::new();
    for (text, expected) in cases {
        let error = parse_error(text);
        if error != *expected {
            failures.push(format!("{text:?}\n   got: {error}\n  want: {expected}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} texts wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The error variants carry the parts.
    assert_eq!(
        Rules::parse(r#"operator = "nope""#),
        Err(RulesError::InvalidPolicy {
            keyword: "operator",
            detail: "\"nope\"".to_string()
        })
    );
    assert!(matches!(Rules::parse("key {"), Err(RulesError::Parse(_))));
}

#[test]
fn policy_words_are_case_insensitive_in_validation() {
    let rules = parse(r#"key "a" { policy = "WRITE" } node_prefix "" { policy = "Read" }"#);
    let authorizer = Authorizer::new([&rules], Deny);
    assert!(authorizer.key_write("a"));
    assert!(authorizer.node_read("x"));
    assert!(!authorizer.node_write("x"));
}

#[test]
fn service_and_node_identities() {
    let service = service_identity_rules("web");
    assert!(service.starts_with(
        "\nservice \"web\" {\n\tpolicy = \"write\"\n}\nservice \"web-sidecar-proxy\""
    ));
    let node = node_identity_rules("node-1");
    assert_eq!(
        node,
        "\nnode \"node-1\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}"
    );
    let checks_service: &[(Check, bool)] = &[
        (ServiceWrite("web"), true),
        (ServiceWrite("web-sidecar-proxy"), true),
        (ServiceWrite("web2"), false),
        (ServiceWrite("api"), false),
        (ServiceRead("api"), true),
        (ServiceReadAll, true),
        (NodeRead("any"), true),
        (NodeReadAll, true),
        (NodeWrite("any"), false),
        (IntentionRead("web"), true),
        (IntentionWrite("web"), false),
        (KeyRead("k"), false),
        (AgentRead("n"), false),
        (OperatorRead, false),
    ];
    let checks_node: &[(Check, bool)] = &[
        (NodeWrite("node-1"), true),
        (NodeWrite("node-2"), false),
        (NodeRead("node-2"), false),
        (ServiceRead("any"), true),
        (ServiceWrite("any"), false),
        (KeyRead("k"), false),
    ];
    for (text, checks) in [
        (service.as_str(), checks_service),
        (node.as_str(), checks_node),
    ] {
        let authorizer = authorizer_for(&[text], Deny);
        for &(check, expected) in checks {
            assert_eq!(ask(&authorizer, check), expected, "{check:?} for {text}");
        }
    }
    // A token with both identities gets the union.
    let both = authorizer_for(&[&service, &node], Deny);
    assert!(both.service_write("web") && both.node_write("node-1") && both.node_read("other"));

    assert!(crate::is_valid_service_identity_name("web_1-a"));
    for invalid in ["", "Web", "-web", "web-", "we b", "web.1", &"a".repeat(257)] {
        assert!(
            !crate::is_valid_service_identity_name(invalid),
            "{invalid:?}"
        );
    }
    assert!(crate::is_valid_node_identity_name(&"a".repeat(256)));
}

#[test]
fn templated_policies() {
    let names: Vec<&str> = templated::builtins()
        .iter()
        .map(|template| template.name)
        .collect();
    assert_eq!(
        names,
        [
            "builtin/service",
            "builtin/node",
            "builtin/dns",
            "builtin/nomad-server",
            "builtin/api-gateway",
            "builtin/nomad-client"
        ]
    );

    let service = templated::render("builtin/service", Some("my-service")).expect("renders");
    assert!(service.contains("service \"my-service\" {"), "{service}");
    assert!(
        service.contains("service \"my-service-sidecar-proxy\" {"),
        "{service}"
    );
    // The templated service policy is the service identity's synthetic policy.
    assert_eq!(service, service_identity_rules("my-service"));
    assert_eq!(
        templated::render("builtin/node", Some("web")),
        Ok(node_identity_rules("web"))
    );

    let refused: &[(&str, Option<&str>, &str)] = &[
        (
            "builtin/service",
            None,
            r#"service identity "" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"#,
        ),
        (
            "builtin/service",
            Some("My_Service"),
            r#"service identity "My_Service" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"#,
        ),
        (
            "builtin/node",
            Some(""),
            r#"node identity ""  has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"#,
        ),
        (
            "builtin/api-gateway",
            None,
            "1 error occurred:\n\t* name is required\n\n",
        ),
        (
            "builtin/workload-identity",
            Some("w"),
            "acl templated policy does not exist: builtin/workload-identity",
        ),
        (
            "service",
            Some("web"),
            "acl templated policy does not exist: service",
        ),
    ];
    for (name, variable, expected) in refused {
        match templated::render(name, *variable) {
            Ok(rules) => panic!("{name} with {variable:?} should be refused, rendered {rules:?}"),
            Err(error) => assert_eq!(error.to_string(), *expected, "{name} with {variable:?}"),
        }
    }
    assert_eq!(
        templated::render("builtin/service", None),
        Err(TemplateError::InvalidServiceName(String::new()))
    );

    // Templates without variables render without a name, and ignore one given.
    let dns = templated::render("builtin/dns", None).expect("renders");
    assert_eq!(
        templated::render("builtin/dns", Some("ignored")),
        Ok(dns.clone())
    );

    // Every builtin renders to a valid policy granting what its description promises.
    for template in templated::builtins() {
        let rendered = templated::render(template.name, Some("web")).expect("renders");
        let rules =
            Rules::parse(&rendered).unwrap_or_else(|error| panic!("{}: {error}", template.name));
        assert!(!rules.is_empty(), "{}", template.name);
        assert_eq!(templated::find(template.name), Some(template));
        assert_eq!(
            template.schema.is_empty(),
            !template.template.contains("{{.Name}}"),
            "{}",
            template.name
        );
    }
    let dns_authorizer = authorizer_for(&[&dns], Deny);
    assert!(
        dns_authorizer.service_read("x")
            && dns_authorizer.node_read("x")
            && dns_authorizer.query_read("q")
    );
    assert!(!dns_authorizer.service_write("x"));
    let gateway = authorizer_for(
        &[&templated::render("builtin/api-gateway", Some("gw")).expect("renders")],
        Deny,
    );
    assert!(
        gateway.service_write("gw")
            && gateway.mesh_read()
            && !gateway.mesh_write()
            && !gateway.service_write("x")
    );
    let nomad_server = authorizer_for(
        &[&templated::render("builtin/nomad-server", None).expect("renders")],
        Deny,
    );
    assert!(
        nomad_server.acl_write() && nomad_server.service_write("x") && nomad_server.agent_read("n")
    );
    let nomad_client = authorizer_for(
        &[&templated::render("builtin/nomad-client", None).expect("renders")],
        Deny,
    );
    assert!(
        nomad_client.key_read("k")
            && !nomad_client.key_write("k")
            && nomad_client.service_write("x")
    );
}

#[test]
fn default_policy_from_str() {
    assert_eq!("allow".parse::<DefaultPolicy>(), Ok(Allow));
    assert_eq!("deny".parse::<DefaultPolicy>(), Ok(Deny));
    let error = "Deny"
        .parse::<DefaultPolicy>()
        .expect_err("case matters, as in Consul");
    assert_eq!(
        error.to_string(),
        r#"invalid ACL default policy "Deny": must be "allow" or "deny""#
    );
    assert_eq!(Allow.to_string(), "allow");
}

#[test]
fn authorizer_is_cheap_to_share() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Authorizer>();
    assert_shareable::<Rules>();

    // A 50-rule policy: clones share the compiled tables and answer alike.
    let mut text = String::new();
    for index in 0..25 {
        text.push_str(&format!(
            "service \"svc-{index}\" {{ policy = \"write\" }}\n"
        ));
        text.push_str(&format!(
            "key_prefix \"app/{index}/\" {{ policy = \"read\" }}\n"
        ));
    }
    let authorizer = authorizer_for(&[&text], Deny);
    let clone = authorizer.clone();
    for index in 0..25 {
        let service = format!("svc-{index}");
        let key = format!("app/{index}/config");
        assert!(
            clone.service_write(&service)
                && authorizer.key_read(&key)
                && !authorizer.key_write(&key)
        );
    }
    assert!(
        !clone.service_write("svc-25") && !clone.key_read("app/25/x") && !clone.key_read("app/1")
    );
}
