//! Consul's ACL tables: tokens, policies, roles, auth methods and binding rules, stored as
//! documents (so they persist, snapshot and replicate like every other table) and changed only
//! through the writer, so that uniqueness (names, secrets) is checked and kept in one step.
//!
//! Records are kept in their wire shape without the indexes (which come from the document).
//! Links from tokens and roles to policies and roles are stored by ID and resolved to their
//! current names when read; a link to a deleted policy reads as nothing, as in Consul.

use cairn_acl::{GLOBAL_MANAGEMENT_RULES, GLOBAL_READ_ONLY_RULES};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApplyError, Changes, State, Table};

/// The builtin policy granting everything.
pub const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";
pub const GLOBAL_MANAGEMENT_NAME: &str = "global-management";
/// The builtin policy granting read on everything.
pub const GLOBAL_READ_ONLY_ID: &str = "00000000-0000-0000-0000-000000000002";
pub const GLOBAL_READ_ONLY_NAME: &str = "builtin/global-read-only";
/// The anonymous token: what a request without a token is.
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";
pub const ANONYMOUS_SECRET: &str = "anonymous";
/// IDs Consul keeps for its builtin objects; nobody may create one.
const RESERVED_PREFIX: &str = "00000000-0000-0000-0000-0000000000";
/// Key of the bootstrap marker in the system table.
pub const BOOTSTRAP_KEY: &str = "acl-bootstrap";

/// A link from a token or role to a policy or role (stored by ID; the name is filled on read).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Link {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Name", default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceIdentity {
    #[serde(default)]
    pub service_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeIdentity {
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub datacenter: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateVariables {
    #[serde(
        rename = "name",
        alias = "Name",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TemplatedPolicy {
    #[serde(default)]
    pub template_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<TemplateVariables>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Token {
    #[serde(rename = "AccessorID", default)]
    pub accessor_id: String,
    #[serde(rename = "SecretID", default)]
    pub secret_id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Link>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Link>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicy>,
    #[serde(default)]
    pub local: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_method: String,
    /// RFC 3339; the token stops working (and disappears from reads) then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    #[serde(default)]
    pub create_time: String,
    #[serde(default)]
    pub hash: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub rules: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
    #[serde(default)]
    pub hash: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Role {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Link>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicy>,
    #[serde(default)]
    pub hash: String,
}

/// A change to the ACL tables, applied by the writer.
#[derive(Debug, Clone)]
pub enum AclOp {
    /// Stores the builtin policies and the anonymous token if missing, and the configured
    /// initial management token (which also ends bootstrapping).
    Seed {
        initial_management: Option<String>,
        accessor: String,
        now: String,
    },
    /// `PUT /v1/acl/bootstrap`: the first management token, once.
    Bootstrap {
        token: Token,
    },
    /// Create (`create`) or update a token; the handler filled generated fields.
    TokenSet {
        token: Token,
        create: bool,
    },
    TokenDelete {
        accessor: String,
        /// The accessor of the token making the request (a token may not delete itself).
        caller: String,
    },
    PolicySet {
        policy: Policy,
        create: bool,
    },
    PolicyDelete(String),
    RoleSet {
        role: Role,
        create: bool,
    },
    RoleDelete(String),
    AuthMethodSet {
        method: Value,
        create: bool,
    },
    AuthMethodDelete(String),
    BindingRuleSet {
        rule: Value,
        create: bool,
    },
    BindingRuleDelete(String),
}

/// What an ACL change answers: the record as stored, or whether something was deleted.
#[derive(Debug)]
pub enum AclReply {
    Record(Value),
    Deleted(bool),
}

fn rpc<T>(msg: impl Into<String>) -> Result<T, ApplyError> {
    Err(ApplyError::Rpc(msg.into()))
}

/// Whether `s` is a UUID in Consul's 8-4-4-4-12 hex form.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn reserved(id: &str) -> bool {
    id.to_ascii_lowercase().starts_with(RESERVED_PREFIX)
}

/// Consul's rule for policy and role names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Policy names may also be a builtin's `builtin/...` form, which users cannot create.
fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn from_value<T: for<'de> Deserialize<'de> + Default>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

/// A stable digest of a record's content, base64 (Consul's `Hash` field).
fn hash_of(v: &Value) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        m.remove("Hash");
        m.remove("CreateTime");
    }
    let digest = sha2::Sha256::digest(v.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..16])
}

impl State {
    pub fn acl_token(&self, accessor: &str) -> Option<(Token, &super::Doc)> {
        let doc = self.doc(Table::AclTokens, &key(accessor))?;
        Some((from_value(&doc.value), doc))
    }

    /// The accessor of the token with this secret.
    pub fn acl_accessor_of(&self, secret: &str) -> Option<&str> {
        self.doc(Table::AclSecrets, secret)
            .and_then(|d| d.value.as_str())
    }

    pub fn acl_policy(&self, id: &str) -> Option<(Policy, &super::Doc)> {
        let doc = self.doc(Table::AclPolicies, &key(id))?;
        Some((from_value(&doc.value), doc))
    }

    pub fn acl_policy_by_name(&self, name: &str) -> Option<(Policy, &super::Doc)> {
        self.docs_with_prefix(Table::AclPolicies, "")
            .map(|(_, d)| (from_value::<Policy>(&d.value), d))
            .find(|(p, _)| p.name == name)
    }

    pub fn acl_role(&self, id: &str) -> Option<(Role, &super::Doc)> {
        let doc = self.doc(Table::AclRoles, &key(id))?;
        Some((from_value(&doc.value), doc))
    }

    pub fn acl_role_by_name(&self, name: &str) -> Option<(Role, &super::Doc)> {
        self.docs_with_prefix(Table::AclRoles, "")
            .map(|(_, d)| (from_value::<Role>(&d.value), d))
            .find(|(r, _)| r.name == name)
    }

    /// Whether bootstrapping is over, and at which index it ended.
    pub fn acl_bootstrapped(&self) -> Option<u64> {
        self.doc(Table::System, BOOTSTRAP_KEY)
            .map(|d| d.modify_index)
    }

    /// Applies an ACL change.
    pub fn acl_apply(&mut self, op: AclOp, ch: &mut Changes) -> Result<AclReply, ApplyError> {
        match op {
            AclOp::Seed {
                initial_management,
                accessor,
                now,
            } => {
                self.acl_seed(initial_management, accessor, now, ch);
                Ok(AclReply::Deleted(false))
            }
            AclOp::Bootstrap { token } => {
                if let Some(idx) = self.acl_bootstrapped() {
                    return Err(ApplyError::Forbidden(format!(
                        "Permission denied: ACL bootstrap no longer allowed (reset index: {idx})"
                    )));
                }
                let stored = self.as_one_write(|st| {
                    let stored = st.token_set(token, true, ch)?;
                    st.put_doc(Table::System, BOOTSTRAP_KEY, Value::Bool(true), ch);
                    Ok::<_, ApplyError>(stored)
                })?;
                Ok(AclReply::Record(stored))
            }
            AclOp::TokenSet { token, create } => {
                Ok(AclReply::Record(self.token_set(token, create, ch)?))
            }
            AclOp::TokenDelete { accessor, caller } => {
                if key(&accessor) == ANONYMOUS_ACCESSOR {
                    return rpc("Delete operation not permitted on the anonymous token");
                }
                if key(&accessor) == key(&caller) {
                    return rpc("Deletion of the request's authorization token is not permitted");
                }
                Ok(AclReply::Deleted(self.token_delete(&accessor, ch)))
            }
            AclOp::PolicySet { policy, create } => {
                Ok(AclReply::Record(self.policy_set(policy, create, ch)?))
            }
            AclOp::PolicyDelete(id) => {
                if key(&id) == GLOBAL_MANAGEMENT_ID {
                    return rpc(
                        "Delete operation not permitted on the builtin global-management policy",
                    );
                }
                if key(&id) == GLOBAL_READ_ONLY_ID {
                    return rpc(
                        "Delete operation not permitted on the builtin global-read-only policy",
                    );
                }
                Ok(AclReply::Deleted(self.delete_doc(
                    Table::AclPolicies,
                    &key(&id),
                    ch,
                )))
            }
            AclOp::RoleSet { role, create } => {
                Ok(AclReply::Record(self.role_set(role, create, ch)?))
            }
            AclOp::RoleDelete(id) => Ok(AclReply::Deleted(self.delete_doc(
                Table::AclRoles,
                &key(&id),
                ch,
            ))),
            AclOp::AuthMethodSet { method, create } => {
                Ok(AclReply::Record(self.auth_method_set(method, create, ch)?))
            }
            AclOp::AuthMethodDelete(name) => Ok(AclReply::Deleted(
                self.as_one_write(|st| st.auth_method_delete(&name, ch)),
            )),
            AclOp::BindingRuleSet { rule, create } => {
                Ok(AclReply::Record(self.binding_rule_set(rule, create, ch)?))
            }
            AclOp::BindingRuleDelete(id) => Ok(AclReply::Deleted(self.delete_doc(
                Table::AclBindingRules,
                &key(&id),
                ch,
            ))),
        }
    }

    fn acl_seed(
        &mut self,
        initial_management: Option<String>,
        accessor: String,
        now: String,
        ch: &mut Changes,
    ) {
        for (id, name, description, rules) in [
            (
                GLOBAL_MANAGEMENT_ID,
                GLOBAL_MANAGEMENT_NAME,
                "Builtin Policy that grants unlimited access",
                GLOBAL_MANAGEMENT_RULES,
            ),
            (
                GLOBAL_READ_ONLY_ID,
                GLOBAL_READ_ONLY_NAME,
                "Builtin Policy that grants unlimited read-only access to all components",
                GLOBAL_READ_ONLY_RULES,
            ),
        ] {
            if self.doc(Table::AclPolicies, id).is_none() {
                let mut policy = to_value(&Policy {
                    id: id.into(),
                    name: name.into(),
                    description: description.into(),
                    rules: rules.into(),
                    ..Policy::default()
                });
                let hash = hash_of(&policy);
                policy["Hash"] = Value::String(hash);
                self.put_doc(Table::AclPolicies, id, policy, ch);
            }
        }
        if self.doc(Table::AclTokens, ANONYMOUS_ACCESSOR).is_none() {
            let token = Token {
                accessor_id: ANONYMOUS_ACCESSOR.into(),
                secret_id: ANONYMOUS_SECRET.into(),
                description: "Anonymous Token".into(),
                create_time: now.clone(),
                ..Token::default()
            };
            self.store_token(token, ch);
        }
        if let Some(secret) = initial_management.filter(|s| !s.is_empty())
            && self.acl_accessor_of(&secret).is_none()
        {
            let token = Token {
                accessor_id: accessor,
                secret_id: secret,
                description: "Initial Management Token".into(),
                policies: vec![Link {
                    id: GLOBAL_MANAGEMENT_ID.into(),
                    name: GLOBAL_MANAGEMENT_NAME.into(),
                }],
                create_time: now,
                ..Token::default()
            };
            self.store_token(token, ch);
            if self.acl_bootstrapped().is_none() {
                self.put_doc(Table::System, BOOTSTRAP_KEY, Value::Bool(true), ch);
            }
        }
    }

    fn store_token(&mut self, mut token: Token, ch: &mut Changes) -> Value {
        token.hash.clear();
        let mut value = to_value(&token);
        value["Hash"] = Value::String(hash_of(&value));
        let accessor = key(&token.accessor_id);
        self.put_doc(
            Table::AclSecrets,
            &token.secret_id,
            Value::String(accessor.clone()),
            ch,
        );
        self.put_doc(Table::AclTokens, &accessor, value.clone(), ch);
        value
    }

    /// Policies given by ID or name, checked to exist and stored as IDs.
    fn link_policies(&self, links: Vec<Link>) -> Result<Vec<Link>, ApplyError> {
        let mut out: Vec<Link> = Vec::new();
        for link in links {
            let found = if !link.id.is_empty() {
                self.acl_policy(&link.id)
                    .ok_or_else(|| format!("No such ACL policy with ID {:?}", link.id))
            } else if !link.name.is_empty() {
                self.acl_policy_by_name(&link.name)
                    .ok_or_else(|| format!("No such ACL policy with name {:?}", link.name))
            } else {
                Err("Policy link is missing both an ID and a name".to_string())
            };
            let (policy, _) = found.map_err(ApplyError::Rpc)?;
            if !out.iter().any(|l| l.id == policy.id) {
                out.push(Link {
                    id: policy.id,
                    name: policy.name,
                });
            }
        }
        Ok(out)
    }

    fn link_roles(&self, links: Vec<Link>) -> Result<Vec<Link>, ApplyError> {
        let mut out: Vec<Link> = Vec::new();
        for link in links {
            let found = if !link.id.is_empty() {
                self.acl_role(&link.id)
                    .ok_or_else(|| format!("No such ACL role with ID {:?}", link.id))
            } else if !link.name.is_empty() {
                self.acl_role_by_name(&link.name)
                    .ok_or_else(|| format!("No such ACL role with name {:?}", link.name))
            } else {
                Err("Role link is missing both an ID and a name".to_string())
            };
            let (role, _) = found.map_err(ApplyError::Rpc)?;
            if !out.iter().any(|l| l.id == role.id) {
                out.push(Link {
                    id: role.id,
                    name: role.name,
                });
            }
        }
        Ok(out)
    }

    fn token_set(
        &mut self,
        mut token: Token,
        create: bool,
        ch: &mut Changes,
    ) -> Result<Value, ApplyError> {
        if !is_uuid(&token.accessor_id) {
            return rpc("Invalid Token: AccessorID is not a valid UUID");
        }
        let existing = self.acl_token(&token.accessor_id).map(|(t, _)| t);
        if create {
            if existing.is_some() {
                return rpc("Invalid Token: AccessorID is already in use");
            }
            if reserved(&token.accessor_id) {
                return rpc(format!(
                    "Invalid Token: UUIDs with the prefix {RESERVED_PREFIX:?} are reserved"
                ));
            }
            if self.acl_accessor_of(&token.secret_id).is_some() {
                return rpc("Invalid Token: SecretID is already in use");
            }
            if reserved(&token.secret_id) || token.secret_id == ANONYMOUS_SECRET {
                return rpc(format!(
                    "Invalid Token: UUIDs with the prefix {RESERVED_PREFIX:?} are reserved"
                ));
            }
        } else {
            let Some(old) = existing.as_ref() else {
                return rpc(format!("Cannot find token {:?}", token.accessor_id));
            };
            if token.secret_id.is_empty() {
                token.secret_id = old.secret_id.clone();
            } else if token.secret_id != old.secret_id {
                return rpc("Changing a token's SecretID is not permitted");
            }
            if token.local != old.local {
                return rpc(format!("Cannot toggle local mode of {}", token.accessor_id));
            }
            if token.auth_method.is_empty() {
                token.auth_method = old.auth_method.clone();
            } else if token.auth_method != old.auth_method {
                return rpc(format!("Cannot change AuthMethod of {}", token.accessor_id));
            }
            match &token.expiration_time {
                None => token.expiration_time = old.expiration_time.clone(),
                Some(t) if Some(t) != old.expiration_time.as_ref() => {
                    return rpc(format!(
                        "Cannot change expiration time of {}",
                        token.accessor_id
                    ));
                }
                Some(_) => {}
            }
            token.accessor_id = old.accessor_id.clone();
            token.create_time = old.create_time.clone();
        }
        if token.secret_id.is_empty() {
            return rpc("Invalid Token: SecretID is empty");
        }
        token.policies = self.link_policies(std::mem::take(&mut token.policies))?;
        token.roles = self.link_roles(std::mem::take(&mut token.roles))?;
        check_identities(
            &token.service_identities,
            &token.node_identities,
            &token.templated_policies,
            token.local,
            "token",
        )?;
        Ok(self.store_token(token, ch))
    }

    fn token_delete(&mut self, accessor: &str, ch: &mut Changes) -> bool {
        let Some((token, _)) = self.acl_token(accessor) else {
            return false;
        };
        self.as_one_write(|st| {
            st.delete_doc(Table::AclSecrets, &token.secret_id, ch);
            st.delete_doc(Table::AclTokens, &key(accessor), ch)
        })
    }

    fn policy_set(
        &mut self,
        mut policy: Policy,
        create: bool,
        ch: &mut Changes,
    ) -> Result<Value, ApplyError> {
        if policy.name.is_empty() {
            return rpc("Invalid Policy: no Name is set");
        }
        let existing = self.acl_policy(&policy.id).map(|(p, _)| p);
        let builtin =
            [GLOBAL_MANAGEMENT_ID, GLOBAL_READ_ONLY_ID].contains(&key(&policy.id).as_str());
        if builtin {
            let Some(old) = existing.as_ref() else {
                return rpc(format!("Cannot find policy {:?}", policy.id));
            };
            if policy.name != old.name {
                return rpc(format!(
                    "Changing the Name for the builtin {} policy is not permitted",
                    old.name
                ));
            }
            if policy.rules != old.rules {
                return rpc(format!(
                    "Changing the Rules for the builtin {} policy is not permitted",
                    old.name
                ));
            }
        } else if !valid_name(&policy.name) {
            return rpc(format!(
                "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are \
                 allowed: {:?}",
                policy.name
            ));
        }
        if create {
            if reserved(&policy.id) {
                return rpc(format!(
                    "Invalid Policy: UUIDs with the prefix {RESERVED_PREFIX:?} are reserved"
                ));
            }
        } else if existing.is_none() {
            return rpc(format!("Cannot find policy {:?}", policy.id));
        }
        if let Some((other, _)) = self.acl_policy_by_name(&policy.name)
            && key(&other.id) != key(&policy.id)
        {
            return rpc(format!(
                "Invalid Policy: A Policy with Name {:?} already exists",
                policy.name
            ));
        }
        if let Err(e) = cairn_acl::Rules::parse(&policy.rules) {
            return rpc(format!("Invalid Policy: {e}"));
        }
        if let Some(old) = existing {
            policy.id = old.id;
        }
        policy.hash.clear();
        let mut value = to_value(&policy);
        value["Hash"] = Value::String(hash_of(&value));
        self.put_doc(Table::AclPolicies, &key(&policy.id), value.clone(), ch);
        Ok(value)
    }

    fn role_set(
        &mut self,
        mut role: Role,
        create: bool,
        ch: &mut Changes,
    ) -> Result<Value, ApplyError> {
        if role.name.is_empty() {
            return rpc("Invalid Role: no Name is set");
        }
        if !valid_name(&role.name) {
            return rpc(format!(
                "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are \
                 allowed: {:?}",
                role.name
            ));
        }
        let existing = self.acl_role(&role.id).map(|(r, _)| r);
        if !create && existing.is_none() {
            return rpc(format!("Cannot find role {}", role.id));
        }
        if let Some((other, _)) = self.acl_role_by_name(&role.name)
            && key(&other.id) != key(&role.id)
        {
            return rpc(format!(
                "Invalid Role: A Role with Name {:?} already exists",
                role.name
            ));
        }
        role.policies = self.link_policies(std::mem::take(&mut role.policies))?;
        check_identities(
            &role.service_identities,
            &role.node_identities,
            &role.templated_policies,
            false,
            "role",
        )?;
        if let Some(old) = existing {
            role.id = old.id;
        }
        role.hash.clear();
        let mut value = to_value(&role);
        value["Hash"] = Value::String(hash_of(&value));
        self.put_doc(Table::AclRoles, &key(&role.id), value.clone(), ch);
        Ok(value)
    }

    fn auth_method_set(
        &mut self,
        method: Value,
        create: bool,
        ch: &mut Changes,
    ) -> Result<Value, ApplyError> {
        let name = method["Name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() {
            return rpc("Invalid Auth Method: no Name is set");
        }
        let kind = method["Type"].as_str().unwrap_or_default();
        if !["kubernetes", "jwt", "oidc"].contains(&kind) {
            return rpc("Invalid Auth Method: Type should be one of: [jwt kubernetes oidc]");
        }
        let existing = self
            .doc(Table::AclAuthMethods, &name)
            .map(|d| d.value.clone());
        match &existing {
            Some(old) if create => {
                let _ = old;
                return rpc(format!(
                    "Invalid Auth Method: Auth Method with Name {name:?} already exists"
                ));
            }
            Some(old) if old["Type"] != method["Type"] => {
                return rpc(format!(
                    "Invalid Auth Method: the Type field is immutable ({})",
                    old["Type"].as_str().unwrap_or_default()
                ));
            }
            None if !create => return rpc(format!("Cannot find auth method {name:?}")),
            _ => {}
        }
        self.put_doc(Table::AclAuthMethods, &name, method.clone(), ch);
        Ok(method)
    }

    /// Deletes an auth method with its binding rules and the tokens logged in through it.
    fn auth_method_delete(&mut self, name: &str, ch: &mut Changes) -> bool {
        if !self.delete_doc(Table::AclAuthMethods, name, ch) {
            return false;
        }
        let rules: Vec<String> = self
            .docs_with_prefix(Table::AclBindingRules, "")
            .filter(|(_, d)| d.value["AuthMethod"] == name)
            .map(|(k, _)| k.to_string())
            .collect();
        for id in rules {
            self.delete_doc(Table::AclBindingRules, &id, ch);
        }
        let tokens: Vec<String> = self
            .docs_with_prefix(Table::AclTokens, "")
            .filter(|(_, d)| d.value["AuthMethod"] == name)
            .map(|(k, _)| k.to_string())
            .collect();
        for accessor in tokens {
            self.token_delete(&accessor, ch);
        }
        true
    }

    fn binding_rule_set(
        &mut self,
        rule: Value,
        create: bool,
        ch: &mut Changes,
    ) -> Result<Value, ApplyError> {
        let id = rule["ID"].as_str().unwrap_or_default().to_string();
        let method = rule["AuthMethod"].as_str().unwrap_or_default();
        if method.is_empty() {
            return rpc("Invalid Binding Rule: no AuthMethod is set");
        }
        if self.doc(Table::AclAuthMethods, method).is_none() {
            return rpc(format!(
                "Invalid Binding Rule: unknown auth method {method:?}"
            ));
        }
        let bind_type = rule["BindType"].as_str().unwrap_or_default();
        if !["service", "node", "role", "policy", "templated-policy"].contains(&bind_type) {
            return rpc(format!(
                "Invalid Binding Rule: unknown BindType {bind_type:?}"
            ));
        }
        if rule["BindName"].as_str().unwrap_or_default().is_empty() {
            return rpc("Invalid Binding Rule: no BindName is set");
        }
        let existing = self.doc(Table::AclBindingRules, &key(&id));
        if !create && existing.is_none() {
            return rpc(format!("Cannot find binding rule {id:?}"));
        }
        if create && existing.is_some() {
            return rpc(format!("Binding rule {id:?} already exists"));
        }
        self.put_doc(Table::AclBindingRules, &key(&id), rule.clone(), ch);
        Ok(rule)
    }
}

/// Checks service identities, node identities and templated policies as Consul does.
fn check_identities(
    services: &[ServiceIdentity],
    nodes: &[NodeIdentity],
    templated: &[TemplatedPolicy],
    local: bool,
    owner: &str,
) -> Result<(), ApplyError> {
    for s in services {
        if s.service_name.is_empty() {
            return rpc(format!(
                "Service identity is missing the service name field on this {owner}"
            ));
        }
        if local && !s.datacenters.is_empty() {
            return rpc(format!(
                "Service identity {:?} cannot specify a list of datacenters on a local token",
                s.service_name
            ));
        }
    }
    for n in nodes {
        if n.node_name.is_empty() {
            return rpc(format!(
                "Node identity is missing the node name field on this {owner}"
            ));
        }
        if n.datacenter.is_empty() {
            return rpc(format!(
                "Node identity is missing the datacenter field on this {owner}"
            ));
        }
    }
    for t in templated {
        let name = t
            .template_variables
            .as_ref()
            .map(|v| v.name.as_str())
            .filter(|n| !n.is_empty());
        if let Err(e) = cairn_acl::templated::render(&t.template_name, name) {
            return rpc(e.to_string());
        }
    }
    Ok(())
}
