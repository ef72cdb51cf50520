//! `tmpl render --data FILE`: a JSON document stands in for the catalog, so templates can be
//! rendered (and tested) without a catalogd. Shape:
//! `{"services": {"web": [{"Node", "Address", "Port", "Tags", "Meta", "Status", ...}]},
//!   "kv": {"path/key": "value"}, "nodes": [{"Node", "Address", ...}]}`.

use serde_json::{Value, json};

use crate::deps::Dep;

fn kv_children(doc: &Value, prefix: &str, recursive: bool) -> Value {
    let dir = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    let mut out = Vec::new();
    if let Some(kv) = doc.get("kv").and_then(Value::as_object) {
        for (k, v) in kv {
            let Some(rel) = k.strip_prefix(&dir) else {
                continue;
            };
            if rel.is_empty() || (!recursive && rel.contains('/')) {
                continue;
            }
            out.push(json!({"Key": rel, "Value": v.as_str().map_or_else(|| v.to_string(), str::to_string)}));
        }
    }
    Value::Array(out)
}

/// The value of `dep` in the document (None = absent, like a missing key).
pub fn resolve(doc: &Value, dep: &Dep) -> Option<Value> {
    let services = doc.get("services").and_then(Value::as_object);
    match dep {
        Dep::Service { name, tag, passing } => {
            let list = services
                .and_then(|s| s.get(name))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let kept: Vec<Value> = list
                .into_iter()
                .filter(|i| {
                    let tag_ok = tag.as_ref().is_none_or(|t| {
                        i.get("Tags")
                            .and_then(Value::as_array)
                            .is_some_and(|ts| ts.iter().any(|x| x.as_str() == Some(t)))
                    });
                    let status = i.get("Status").and_then(Value::as_str).unwrap_or("passing");
                    tag_ok && (!passing || status == "passing")
                })
                .map(|mut i| {
                    if let Some(obj) = i.as_object_mut() {
                        obj.entry("Name")
                            .or_insert_with(|| Value::String(name.clone()));
                        obj.entry("Status")
                            .or_insert_with(|| Value::String("passing".into()));
                    }
                    i
                })
                .collect();
            Some(Value::Array(kept))
        }
        Dep::Services => Some(Value::Array(
            services
                .map(|s| {
                    s.iter()
                        .map(|(name, list)| {
                            let mut tags: Vec<Value> = Vec::new();
                            for t in list
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|i| i.get("Tags")?.as_array())
                                .flatten()
                            {
                                if !tags.contains(t) {
                                    tags.push(t.clone());
                                }
                            }
                            json!({"Name": name, "Tags": tags})
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )),
        Dep::Key(k) => doc.get("kv").and_then(|kv| kv.get(k)).map(|v| match v {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        }),
        Dep::Ls(p) => Some(kv_children(doc, p, false)),
        Dep::Tree(p) => Some(kv_children(doc, p, true)),
        Dep::Nodes => Some(
            doc.get("nodes")
                .cloned()
                .unwrap_or(Value::Array(Vec::new())),
        ),
        Dep::Node(name) => {
            let node = doc
                .get("nodes")?
                .as_array()?
                .iter()
                .find(|n| n.get("Node").and_then(Value::as_str) == Some(name))?;
            let svcs: Vec<Value> = services
                .into_iter()
                .flatten()
                .flat_map(|(svc, list)| {
                    list.as_array()
                        .into_iter()
                        .flatten()
                        .filter(|i| i.get("Node").and_then(Value::as_str) == Some(name))
                        .map(move |i| {
                            let mut i = i.clone();
                            if let Some(o) = i.as_object_mut() {
                                o.entry("Service")
                                    .or_insert_with(|| Value::String(svc.clone()));
                                o.entry("Name")
                                    .or_insert_with(|| Value::String(svc.clone()));
                            }
                            i
                        })
                })
                .collect();
            Some(json!({"Node": node, "Services": svcs}))
        }
    }
}
