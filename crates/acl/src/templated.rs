//! Consul's builtin templated policies (`agent/structs/acl_templated_policy.go` and the
//! `acltemplatedpolicy/` tree of Consul's community edition): their names, the JSON schemas of
//! their variables, the HCL templates and descriptions, and rendering with a `Name` variable.
//!
//! These are the six templates current Consul ships. `builtin/workload-identity` existed in
//! Consul 1.17–1.18 and was removed with the v2 catalog (its ID is retired as "formerly
//! workload identity"), so it is not offered.

use crate::identity::{is_valid_node_identity_name, is_valid_service_identity_name};
use crate::rules::go_quote;

/// One builtin templated policy, as Consul's `GET /v1/acl/templated-policy/name/:name` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    pub name: &'static str,
    /// Consul's template ID (`ACLTemplatedPolicy…ID`); reserved IDs, never shown to users.
    pub id: &'static str,
    /// The JSON schema the variables must satisfy; empty when the template takes none.
    pub schema: &'static str,
    /// The rules, in Go template syntax (`{{.Name}}`).
    pub template: &'static str,
    pub description: &'static str,
}

/// The schema of the templates that need a name (service, node, api-gateway).
const NAME_REQUIRED_SCHEMA: &str = "{\n\t\"type\": \"object\",\n\t\"properties\": {\n\t\t\"name\": { \"type\": \"string\", \"$ref\": \"#/definitions/min-length-one\" }\n\t},\n\t\"required\": [\"name\"],\n\t\"definitions\": {\n\t\t\"min-length-one\": {\n\t\t\t\t\"type\": \"string\",\n\t\t\t\t\"minLength\": 1\n\t\t}\n\t}\n}";

const BUILTINS: [Template; 6] = [
    Template {
        name: "builtin/service",
        id: "00000000-0000-0000-0000-000000000003",
        schema: NAME_REQUIRED_SCHEMA,
        template: "\nservice \"{{.Name}}\" {\n\tpolicy = \"write\"\n}\nservice \"{{.Name}}-sidecar-proxy\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nnode_prefix \"\" {\n\tpolicy = \"read\"\n}",
        description: "Gives the token or role permissions to register a service and discover services in the Consul catalog. It also gives the specified service's sidecar proxy the permission to discover and route traffic to other services.",
    },
    Template {
        name: "builtin/node",
        id: "00000000-0000-0000-0000-000000000004",
        schema: NAME_REQUIRED_SCHEMA,
        template: "\nnode \"{{.Name}}\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}",
        description: "Gives the token or role permissions for a register an agent/node into the catalog. A node is typically a consul agent but can also be a physical server, cloud instance or a container.",
    },
    Template {
        name: "builtin/dns",
        id: "00000000-0000-0000-0000-000000000005",
        schema: "",
        template: "\nnode_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nquery_prefix \"\" {\n\tpolicy = \"read\"\n}",
        description: "Gives the token or role permissions for the Consul DNS to query services in the network.",
    },
    Template {
        name: "builtin/nomad-server",
        id: "00000000-0000-0000-0000-000000000006",
        schema: "",
        template: "\nacl = \"write\"\nagent_prefix \"\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}\nservice_prefix \"\" {\n  policy = \"write\"\n}",
        description: "Gives the token or role permissions required for integration with a nomad server.",
    },
    Template {
        name: "builtin/api-gateway",
        id: "00000000-0000-0000-0000-000000000008",
        schema: NAME_REQUIRED_SCHEMA,
        template: "mesh = \"read\"\nnode_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice \"{{.Name}}\" {\n\tpolicy = \"write\"\n}",
        description: "Gives the token or role permissions for a Consul api gateway",
    },
    Template {
        name: "builtin/nomad-client",
        id: "00000000-0000-0000-0000-000000000009",
        schema: "",
        template: "agent_prefix \"\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}\nservice_prefix \"\" {\n  policy = \"write\"\n}\nkey_prefix \"\" {\n  policy = \"read\"\n}",
        description: "Gives the token or role permissions required for integration with a nomad client.",
    },
];

/// Why a templated policy could not be rendered; the texts are Consul's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No builtin template has this name.
    #[error("acl templated policy does not exist: {0}")]
    NotFound(String),
    /// `builtin/service` with a name that cannot be a service identity.
    #[error("service identity {} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed", go_quote(.0))]
    InvalidServiceName(String),
    /// `builtin/node` with a name that cannot be a node identity (Consul's text has two spaces).
    #[error("node identity {}  has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed", go_quote(.0))]
    InvalidNodeName(String),
    /// The variables do not satisfy the template's schema; Consul lists the schema errors in
    /// go-multierror's format.
    #[error("{}", multierror_text(.0))]
    Schema(Vec<String>),
}

/// go-multierror's list format, which Consul's schema errors arrive in.
fn multierror_text(errors: &[String]) -> String {
    let points: Vec<String> = errors.iter().map(|error| format!("* {error}")).collect();
    match errors.len() {
        1 => format!("1 error occurred:\n\t{}\n\n", points.join("")),
        count => format!("{count} errors occurred:\n\t{}\n\n", points.join("\n\t")),
    }
}

/// Every builtin templated policy.
pub fn builtins() -> &'static [Template] {
    &BUILTINS
}

/// The builtin templated policy with this name.
pub fn find(name: &str) -> Option<&'static Template> {
    BUILTINS.iter().find(|template| template.name == name)
}

/// Renders a template with its variables (Consul's `TemplateVariables`, whose only variable is
/// `Name`), after validating them as Consul's `ValidateTemplatedPolicy` does. No name is
/// treated as an empty one, as Consul's preview endpoint decodes a missing body into empty
/// variables; a template that needs a name then refuses. Templates that take no variables
/// ignore a name given to them.
pub fn render(name: &str, variable_name: Option<&str>) -> Result<String, TemplateError> {
    let template = find(name).ok_or_else(|| TemplateError::NotFound(name.to_string()))?;
    let value = variable_name.unwrap_or("");
    if !template.schema.is_empty() {
        // Consul checks identity names before it looks at the schema's verdict.
        if template.name == "builtin/service" && !is_valid_service_identity_name(value) {
            return Err(TemplateError::InvalidServiceName(value.to_string()));
        }
        if template.name == "builtin/node" && !is_valid_node_identity_name(value) {
            return Err(TemplateError::InvalidNodeName(value.to_string()));
        }
        // The schema: `name` required, at least one character. The variables reach the
        // validator as JSON with `omitempty`, so an empty name is a missing one.
        if value.is_empty() {
            return Err(TemplateError::Schema(vec!["name is required".to_string()]));
        }
    }
    // `{{.Name}}` is the only action in the builtin templates; Go's text/template inserts the
    // value as is.
    Ok(template.template.replace("{{.Name}}", value))
}
