//! One parsed policy ([`Rules`]): the decoding of a policy text into rules as Consul's
//! `acl/policy.go` does it (HCL 1's decoder, then `PolicyRules.Validate`), with Consul's error
//! texts.
//!
//! Decoding follows `hashicorp/hcl` v1's struct decoder, because that is what accepts or refuses
//! a policy in Consul:
//! - key names match case-insensitively (`Key_Prefix`, `Policy`);
//! - keys Consul's policy struct does not have are ignored, at the top and inside a rule
//!   (Consul never refused them; a misspelt `sevice "web" {}` grants nothing, silently);
//! - an attribute set twice in one object is refused (Consul decodes with
//!   `DecodeErrorOnDuplicates`);
//! - a number decodes into a string field as written; other non-string values are refused.
//!
//! Policy values are kept as written. Consul validates them case-insensitively but merges
//! several policies by comparing the exact lowercase words, and derives a service's intentions
//! from the exact words `read` and `write`; the authorizer reproduces that from the stored text.

use std::fmt::Write as _;

use crate::syntax::{self, Item, Key, Value};

/// The resource kinds that have per-name rules, each with an exact form (`key`) and a prefix form
/// (`key_prefix`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Agent,
    Key,
    Node,
    Service,
    Session,
    Event,
    Query,
}

impl Resource {
    /// In the order Consul validates them.
    pub(crate) const ALL: [Resource; 7] = [
        Resource::Agent,
        Resource::Key,
        Resource::Node,
        Resource::Service,
        Resource::Session,
        Resource::Event,
        Resource::Query,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The rule's keyword in a policy (`key`); the prefix form adds `_prefix`.
    fn keyword(self) -> &'static str {
        match self {
            Resource::Agent => "agent",
            Resource::Key => "key",
            Resource::Node => "node",
            Resource::Service => "service",
            Resource::Session => "session",
            Resource::Event => "event",
            Resource::Query => "query",
        }
    }

    fn prefix_keyword(self) -> &'static str {
        match self {
            Resource::Agent => "agent_prefix",
            Resource::Key => "key_prefix",
            Resource::Node => "node_prefix",
            Resource::Service => "service_prefix",
            Resource::Session => "session_prefix",
            Resource::Event => "event_prefix",
            Resource::Query => "query_prefix",
        }
    }

    /// Only key rules may say `list`.
    fn allows_list(self) -> bool {
        self == Resource::Key
    }

    /// How Go's `%#v` prints one of Consul's rule structs, which its validation errors embed:
    /// `&acl.KeyRule{Prefix:"a/", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}`.
    fn go_struct(self, rule: &RawRule) -> String {
        let (type_name, name_field, enterprise) = match self {
            Resource::Agent => ("AgentRule", "Node", false),
            Resource::Key => ("KeyRule", "Prefix", true),
            Resource::Node => ("NodeRule", "Name", true),
            Resource::Service => ("ServiceRule", "Name", true),
            Resource::Session => ("SessionRule", "Node", false),
            Resource::Event => ("EventRule", "Event", false),
            Resource::Query => ("PreparedQueryRule", "Prefix", false),
        };
        let mut text = format!(
            "&acl.{type_name}{{{name_field}:{}, Policy:{}",
            go_quote(&rule.name),
            go_quote(&rule.policy)
        );
        if self == Resource::Service {
            let _ = write!(text, ", Intentions:{}", go_quote(&rule.intentions));
        }
        if enterprise {
            text.push_str(", EnterpriseRule:acl.EnterpriseRule{}");
        }
        text.push('}');
        text
    }
}

/// The top-level single-word grants, in the order Consul validates them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    Acl,
    Keyring,
    Operator,
    Mesh,
    Peering,
}

impl Scalar {
    pub(crate) const ALL: [Scalar; 5] = [
        Scalar::Acl,
        Scalar::Keyring,
        Scalar::Operator,
        Scalar::Mesh,
        Scalar::Peering,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn keyword(self) -> &'static str {
        match self {
            Scalar::Acl => "acl",
            Scalar::Keyring => "keyring",
            Scalar::Operator => "operator",
            Scalar::Mesh => "mesh",
            Scalar::Peering => "peering",
        }
    }
}

/// One rule as written: the name (or prefix) it applies to and its policy words. `intentions` is
/// used by service rules only; empty means "derive from the policy".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawRule {
    pub name: String,
    pub policy: String,
    pub intentions: String,
}

/// One parsed and validated policy: Consul's `PolicyRules`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Exact-name rules per [`Resource`], in source order.
    pub(crate) exact: [Vec<RawRule>; 7],
    /// Prefix rules per [`Resource`], in source order.
    pub(crate) prefix: [Vec<RawRule>; 7],
    /// `acl`, `keyring`, `operator`, `mesh`, `peering` as written; empty when absent.
    pub(crate) scalars: [String; 5],
}

/// Why a policy text was refused; the texts are Consul's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// The text is not HCL or JSON, or its values have the wrong types.
    #[error("Failed to parse ACL rules: {0}")]
    Parse(String),
    /// A policy word that is not `read`, `write`, `deny` (or `list` for keys); `detail` is the
    /// rule as Consul prints it.
    #[error("Invalid {keyword} policy: {detail}")]
    InvalidPolicy {
        keyword: &'static str,
        detail: String,
    },
    /// A service rule's `intentions` word is not `read`, `write` or `deny`.
    #[error("Invalid {keyword} intentions policy: {detail}")]
    InvalidIntentions {
        keyword: &'static str,
        detail: String,
    },
}

impl Rules {
    /// Parses a policy in HCL or JSON (JSON when the first non-blank character is `{`, as in
    /// Consul). An empty text is a policy with no rules.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        if text.is_empty() {
            return Ok(Rules::default());
        }
        let items = syntax::parse(text).map_err(|error| RulesError::Parse(error.to_string()))?;
        let rules = decode(&items).map_err(RulesError::Parse)?;
        rules.validate()?;
        Ok(rules)
    }

    /// True when the policy grants and denies nothing.
    pub fn is_empty(&self) -> bool {
        self.exact
            .iter()
            .chain(self.prefix.iter())
            .all(Vec::is_empty)
            && self.scalars.iter().all(String::is_empty)
    }

    /// `PolicyRules.Validate`: the first invalid rule, in Consul's order.
    fn validate(&self) -> Result<(), RulesError> {
        let scalar_error = |scalar: Scalar| -> Result<(), RulesError> {
            let word = &self.scalars[scalar.index()];
            if !word.is_empty() && !is_policy_valid(word, false) {
                return Err(RulesError::InvalidPolicy {
                    keyword: scalar.keyword(),
                    detail: go_quote(word),
                });
            }
            Ok(())
        };
        scalar_error(Scalar::Acl)?;
        for resource in Resource::ALL {
            for (rules, keyword) in [
                (&self.exact[resource.index()], resource.keyword()),
                (&self.prefix[resource.index()], resource.prefix_keyword()),
            ] {
                for rule in rules {
                    if !is_policy_valid(&rule.policy, resource.allows_list()) {
                        return Err(RulesError::InvalidPolicy {
                            keyword,
                            detail: resource.go_struct(rule),
                        });
                    }
                    if resource == Resource::Service
                        && !rule.intentions.is_empty()
                        && !is_policy_valid(&rule.intentions, false)
                    {
                        return Err(RulesError::InvalidIntentions {
                            keyword,
                            detail: resource.go_struct(rule),
                        });
                    }
                }
            }
        }
        for scalar in [
            Scalar::Keyring,
            Scalar::Operator,
            Scalar::Mesh,
            Scalar::Peering,
        ] {
            scalar_error(scalar)?;
        }
        Ok(())
    }
}

/// Consul's `isPolicyValid`: the words compare case-insensitively.
fn is_policy_valid(word: &str, allow_list: bool) -> bool {
    match word.to_lowercase().as_str() {
        "deny" | "read" | "write" => true,
        "list" => allow_list,
        _ => false,
    }
}

/// How Go's `%q` / `%#v` quotes a string.
pub(crate) fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for ch in text.chars() {
        match ch {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{b}' => quoted.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(quoted, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let code = c as u32;
                if code <= 0xffff {
                    let _ = write!(quoted, "\\u{code:04x}");
                } else {
                    let _ = write!(quoted, "\\U{code:08x}");
                }
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The Go type HCL 1 names when a value cannot go into a string field.
fn go_node_type(value: &Value) -> &'static str {
    match value {
        Value::List(_) => "*ast.ListType",
        Value::Object(_) => "*ast.ObjectList",
        _ => "*ast.LiteralType",
    }
}

/// HCL 1's `decodeString`: strings and heredocs as they are, integers as written.
fn decode_string(path: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) | Value::Heredoc(text) | Value::Number(text) => Ok(text.clone()),
        other => Err(format!(
            "{path}: unknown type for string {}",
            go_node_type(other)
        )),
    }
}

fn duplicate(key: &Key) -> String {
    format!(
        "The argument {} at {} was already set. Each argument can only be defined once",
        go_quote(&key.text),
        key.pos
    )
}

/// A string field of a struct: the one `name = value` item matching it (case-insensitively).
/// A block form (`name "x" { }`) cannot be a string; a second assignment is a duplicate.
fn decode_string_field(items: &[Item], field: &str, path: &str) -> Result<String, String> {
    let mut found: Option<String> = None;
    for item in items
        .iter()
        .filter(|item| item.keys[0].text.eq_ignore_ascii_case(field))
    {
        if item.keys.len() > 1 {
            return Err(format!("{path}: unknown type for string *ast.ObjectList"));
        }
        if found.is_some() {
            return Err(duplicate(&item.keys[0]));
        }
        found = Some(decode_string(path, &item.value)?);
    }
    Ok(found.unwrap_or_default())
}

/// The body of one rule: `policy` and, for services, `intentions`; other keys are ignored as in
/// Consul (enterprise-only and Sentinel settings among them).
fn decode_rule(
    resource: Resource,
    name: &str,
    body: &Value,
    path: &str,
) -> Result<RawRule, String> {
    let Value::Object(items) = body else {
        return Err(format!(
            "{path}: not an object type for struct ({})",
            go_body_type(body)
        ));
    };
    let policy = decode_string_field(items, "policy", &format!("{path}.Policy"))?;
    let intentions = if resource == Resource::Service {
        decode_string_field(items, "intentions", &format!("{path}.Intentions"))?
    } else {
        String::new()
    };
    Ok(RawRule {
        name: name.to_string(),
        policy,
        intentions,
    })
}

fn go_body_type(value: &Value) -> &'static str {
    match value {
        Value::List(_) => "*ast.ListType",
        Value::Object(_) => "*ast.ObjectType",
        _ => "*ast.LiteralType",
    }
}

/// Every `(name, body)` pair a rule keyword's items hold, in HCL 1's decoding order: the block
/// forms (`key "a" { }`) first, then the assignments (`key = { a = { } }`, which is also what
/// JSON gives). A JSON list of objects stands for several of them, as HCL 1's JSON reader
/// flattens it.
fn rule_entries<'a>(items: &'a [Item], keyword: &str) -> Vec<(&'a str, &'a Value)> {
    let matching = || {
        items
            .iter()
            .filter(move |item| item.keys[0].text.eq_ignore_ascii_case(keyword))
    };
    let mut entries = Vec::new();
    for item in matching().filter(|item| item.keys.len() > 1) {
        push_bodies(&mut entries, &item.keys[1].text, &item.value);
    }
    for item in matching().filter(|item| item.keys.len() == 1) {
        push_named_objects(&mut entries, &item.value);
    }
    entries
}

/// `{ name = body, ... }` (or a list of such objects): each member is one rule.
fn push_named_objects<'a>(entries: &mut Vec<(&'a str, &'a Value)>, value: &'a Value) {
    match value {
        Value::Object(members) => {
            for member in members {
                push_bodies(entries, &member.keys[0].text, &member.value);
            }
        }
        Value::List(elements) => {
            for element in elements {
                push_named_objects(entries, element);
            }
        }
        // Not a map of rules: decoding the (absent) name fails in Consul; keep the value so the
        // rule decoder reports its type.
        other => entries.push(("", other)),
    }
}

/// A rule's body, or a list of bodies for the same name.
fn push_bodies<'a>(entries: &mut Vec<(&'a str, &'a Value)>, name: &'a str, value: &'a Value) {
    match value {
        Value::List(elements)
            if elements
                .iter()
                .all(|element| matches!(element, Value::Object(_))) =>
        {
            for element in elements {
                entries.push((name, element));
            }
        }
        other => entries.push((name, other)),
    }
}

/// The top-level object into [`Rules`], as HCL 1 decodes it into Consul's `Policy` struct.
fn decode(items: &[Item]) -> Result<Rules, String> {
    let mut rules = Rules::default();
    for resource in Resource::ALL {
        for (keyword, target) in [
            (resource.keyword(), &mut rules.exact[resource.index()]),
            (
                resource.prefix_keyword(),
                &mut rules.prefix[resource.index()],
            ),
        ] {
            for (index, (name, body)) in rule_entries(items, keyword).into_iter().enumerate() {
                target.push(decode_rule(
                    resource,
                    name,
                    body,
                    &format!("root.{keyword}[{index}]"),
                )?);
            }
        }
    }
    for scalar in Scalar::ALL {
        let keyword = scalar.keyword();
        rules.scalars[scalar.index()] =
            decode_string_field(items, keyword, &format!("root.{keyword}"))?;
    }
    Ok(rules)
}
