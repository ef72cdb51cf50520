//! One template: Tera source plus the functions that read catalog and KV data. Rendering also
//! discovers dependencies: a function whose data has not been fetched yet records it as missing,
//! and the caller fetches it and renders again (consul-template's model). A template never
//! produces output from missing data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cairn_cli::LockOrExit as _;
use serde_json::Value;
use tera::Tera;

use crate::deps::Dep;

/// Fetched data: `Some(v)` exists, `None` fetched and absent (a missing key).
pub type Data = BTreeMap<Dep, Option<Value>>;

/// Why a template cannot be used: names the file, and line and column when Tera knows them.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TemplateError {
    pub file: String,
    pub message: String,
}

/// The result of one render.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    /// Every dependency was available.
    Complete { text: String, deps: BTreeSet<Dep> },
    /// Some data is not there yet: `missing` must be fetched, `blocked` names keys that do not
    /// exist (a template using `key` waits for them, as consul-template does).
    Incomplete {
        missing: BTreeSet<Dep>,
        blocked: Vec<String>,
        deps: BTreeSet<Dep>,
    },
}

#[derive(Default)]
struct RenderState {
    data: Arc<Data>,
    used: BTreeSet<Dep>,
    missing: BTreeSet<Dep>,
    blocked: Vec<String>,
}

type Shared = Arc<Mutex<RenderState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, RenderState> {
    s.lock_or_exit("template render state")
}

/// Looks a dependency up; records it as used, and as missing when not fetched yet.
fn lookup(state: &Shared, dep: Dep) -> Option<Value> {
    let mut st = lock(state);
    st.used.insert(dep.clone());
    match st.data.get(&dep) {
        Some(v) => v.clone(),
        None => {
            st.missing.insert(dep.clone());
            None
        }
    }
}

fn str_arg(args: &HashMap<String, Value>, func: &str, name: &str) -> tera::Result<Option<String>> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(tera::Error::msg(format!(
            "{func}(): argument {name} must be a string, got {other}"
        ))),
    }
}

fn required(args: &HashMap<String, Value>, func: &str, name: &str) -> tera::Result<String> {
    str_arg(args, func, name)?
        .ok_or_else(|| tera::Error::msg(format!("{func}(): missing argument {name}")))
}

/// The first string argument under any of `names` (functions take `name=` or `path=` alike).
fn first_of(args: &HashMap<String, Value>, func: &str, names: &[&str]) -> tera::Result<String> {
    for n in names {
        if let Some(v) = str_arg(args, func, n)? {
            return Ok(v);
        }
    }
    Err(tera::Error::msg(format!(
        "{func}(): missing argument {}",
        names[0]
    )))
}

/// A template function over catalog data.
type DataFn = Arc<dyn Fn(&HashMap<String, Value>) -> tera::Result<Value> + Send + Sync>;

/// Functions whose results loops iterate: hoisted out of `{% for %}` headers (see [`hoist`]).
const HOISTABLE: &[&str] = &["service", "services", "ls", "tree", "nodes"];

/// A loop container computed once per render and placed in the context, so the loop iterates
/// it by reference. Tera clones every element of a function result on each `{{ x.Field }}`
/// access, which dominated rendering 10,000 instances.
#[derive(Debug)]
struct Hoisted {
    var: String,
    func: String,
    args: HashMap<String, Value>,
}

/// A literal argument's value.
fn literal(e: &tera::ast::Expr) -> Option<Value> {
    use tera::ast::ExprVal;
    if e.negated || !e.filters.is_empty() {
        return None;
    }
    match &e.val {
        ExprVal::String(s) => Some(Value::String(s.clone())),
        ExprVal::Int(i) => Some(Value::from(*i)),
        ExprVal::Float(f) => Some(Value::from(*f)),
        ExprVal::Bool(b) => Some(Value::Bool(*b)),
        _ => None,
    }
}

/// Rewrites `{% for x in service(name="web") %}` (literal arguments) into a loop over a context
/// variable filled before rendering.
fn hoist(nodes: &mut [tera::ast::Node], out: &mut Vec<Hoisted>) {
    use tera::ast::{Expr, ExprVal, Node};
    for node in nodes {
        match node {
            Node::Forloop(_, f, _) => {
                if let ExprVal::FunctionCall(call) = &f.container.val
                    && HOISTABLE.contains(&call.name.as_str())
                    && !f.container.negated
                    && f.container.filters.is_empty()
                {
                    let args: Option<HashMap<String, Value>> = call
                        .args
                        .iter()
                        .map(|(k, v)| Some((k.clone(), literal(v)?)))
                        .collect();
                    if let Some(args) = args {
                        let var = format!("__cairn_loop_{}", out.len());
                        out.push(Hoisted {
                            var: var.clone(),
                            func: call.name.clone(),
                            args,
                        });
                        f.container = Expr::new(ExprVal::Ident(var));
                    }
                }
                hoist(&mut f.body, out);
                if let Some(empty) = &mut f.empty_body {
                    hoist(empty, out);
                }
            }
            Node::If(i, _) => {
                for (_, _, body) in &mut i.conditions {
                    hoist(body, out);
                }
                if let Some((_, body)) = &mut i.otherwise {
                    hoist(body, out);
                }
            }
            Node::FilterSection(_, section, _) => hoist(&mut section.body, out),
            _ => {}
        }
    }
}

fn register(tera: &mut Tera, state: &Shared) -> HashMap<&'static str, DataFn> {
    let mut fns: HashMap<&'static str, DataFn> = HashMap::new();
    let s = state.clone();
    fns.insert(
        "service",
        Arc::new(move |args: &HashMap<String, Value>| {
            let name = required(args, "service", "name")?;
            let tag = str_arg(args, "service", "tag")?;
            let passing = match args.get("passing") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(tera::Error::msg(format!(
                        "service(): passing must be true or false, got {other}"
                    )));
                }
            };
            let dep = Dep::Service { name, tag, passing };
            Ok(lookup(&s, dep.clone()).unwrap_or_else(|| dep.absent_value()))
        }),
    );
    let s = state.clone();
    fns.insert(
        "services",
        Arc::new(move |_: &HashMap<String, Value>| {
            Ok(lookup(&s, Dep::Services).unwrap_or_else(|| Dep::Services.absent_value()))
        }),
    );
    let s = state.clone();
    tera.register_function("key", move |args: &HashMap<String, Value>| {
        let path = first_of(args, "key", &["path", "name", "key"])?;
        let dep = Dep::Key(path.clone());
        let fetched = lock(&s).data.contains_key(&dep);
        match lookup(&s, dep) {
            Some(v) => Ok(v),
            None => {
                if fetched {
                    lock(&s).blocked.push(path);
                }
                Ok(Value::String(String::new()))
            }
        }
    });
    let s = state.clone();
    tera.register_function("key_or_default", move |args: &HashMap<String, Value>| {
        let path = first_of(args, "key_or_default", &["path", "name", "key"])?;
        let default = args
            .get("default")
            .cloned()
            .unwrap_or(Value::String(String::new()));
        Ok(lookup(&s, Dep::Key(path)).unwrap_or(default))
    });
    for (fname, recursive) in [("ls", false), ("tree", true)] {
        let s = state.clone();
        fns.insert(
            fname,
            Arc::new(move |args: &HashMap<String, Value>| {
                let prefix = first_of(args, fname, &["prefix", "path", "name"])?;
                let dep = if recursive {
                    Dep::Tree(prefix)
                } else {
                    Dep::Ls(prefix)
                };
                Ok(lookup(&s, dep.clone()).unwrap_or_else(|| dep.absent_value()))
            }),
        );
    }
    let s = state.clone();
    fns.insert(
        "nodes",
        Arc::new(move |_: &HashMap<String, Value>| {
            Ok(lookup(&s, Dep::Nodes).unwrap_or_else(|| Dep::Nodes.absent_value()))
        }),
    );
    // The same functions, callable from anywhere in a template.
    for (name, f) in &fns {
        let f = f.clone();
        tera.register_function(name, move |args: &HashMap<String, Value>| f(args));
    }
    let s = state.clone();
    tera.register_function("node", move |args: &HashMap<String, Value>| {
        let name = str_arg(args, "node", "name")?.unwrap_or_default();
        Ok(lookup(&s, Dep::Node(name)).unwrap_or(Value::Null))
    });
    tera.register_function("env", |args: &HashMap<String, Value>| {
        let name = required(args, "env", "name")?;
        Ok(Value::String(std::env::var(name).unwrap_or_default()))
    });
    fns
}

/// The deepest message of a Tera error chain, with pest's `--> line:col` turned into a prefix.
fn describe(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    let full = parts.join("\n");
    let position = full.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("-->")?.trim();
        let (line, col) = rest.split_once(':')?;
        Some(format!("line {}, column {}", line.trim(), col.trim()))
    });
    let detail = parts
        .iter()
        .rev()
        .flat_map(|p| p.lines())
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("-->")
                && !l.starts_with('|')
                && !l.chars().next().is_some_and(|c| c.is_ascii_digit())
                && *l != "="
        })
        .unwrap_or("template error")
        .trim_start_matches("= ")
        .to_string();
    match position {
        Some(pos) => format!("{pos}: {detail}"),
        None => parts.join(": ").replace('\n', " "),
    }
}

/// A parsed template.
pub struct Template {
    /// Where it came from (a path, or `-`).
    pub source: PathBuf,
    tera: Tera,
    state: Shared,
    functions: HashMap<&'static str, DataFn>,
    hoisted: Vec<Hoisted>,
    /// The same template with `service(name=<variable>)` loops reading a prepared map (see
    /// [`index_services`]); None when the template has no such loop.
    fast: Option<Tera>,
    /// Dependencies of the last general render (the fast path does not call `service()`).
    last_deps: Mutex<Option<BTreeSet<Dep>>>,
    /// The service lists the fast path reads, kept between renders with the version each was
    /// copied at, so a change copies only the lists that changed.
    services: Mutex<(serde_json::Map<String, Value>, HashMap<String, u64>)>,
}

/// Per-dependency change counters kept by the caller (the watch engine); a dependency without
/// one counts as changed.
pub type Versions = HashMap<Dep, u64>;

const NAME: &str = "template";
/// Context variable holding every fetched `service(name)` list, by service name.
const SERVICES_VAR: &str = "__cairn_services";

/// Rewrites `{% for s in service(name=svc.Name) %}` into `{% for s in __cairn_services[svc.Name] %}`
/// so the nested loop of the classic "every instance of every service" template iterates the
/// context by reference. Returns whether anything was rewritten.
fn index_services(nodes: &mut [tera::ast::Node]) -> bool {
    use tera::ast::{Expr, ExprVal, Node};
    let mut changed = false;
    for node in nodes {
        match node {
            Node::Forloop(_, f, _) => {
                if let ExprVal::FunctionCall(call) = &f.container.val
                    && call.name == "service"
                    && call.args.len() == 1
                    && !f.container.negated
                    && f.container.filters.is_empty()
                    && let Some(arg) = call.args.get("name")
                    && let ExprVal::Ident(path) = &arg.val
                    && !arg.negated
                    && arg.filters.is_empty()
                {
                    f.container = Expr::new(ExprVal::Ident(format!("{SERVICES_VAR}[{path}]")));
                    changed = true;
                }
                changed |= index_services(&mut f.body);
                if let Some(empty) = &mut f.empty_body {
                    changed |= index_services(empty);
                }
            }
            Node::If(i, _) => {
                for (_, _, body) in &mut i.conditions {
                    changed |= index_services(body);
                }
                if let Some((_, body)) = &mut i.otherwise {
                    changed |= index_services(body);
                }
            }
            Node::FilterSection(_, section, _) => changed |= index_services(&mut section.body),
            _ => {}
        }
    }
    changed
}

impl Template {
    /// Parses template text; `source` names it in errors.
    pub fn parse(source: &Path, text: &str) -> Result<Template, TemplateError> {
        let state: Shared = Arc::default();
        let mut tera = Tera::default();
        let functions = register(&mut tera, &state);
        tera.add_raw_template(NAME, text)
            .map_err(|e| TemplateError {
                file: source.display().to_string(),
                message: describe(&e),
            })?;
        let mut hoisted = Vec::new();
        if let Some(t) = tera.templates.get_mut(NAME) {
            hoist(&mut t.ast, &mut hoisted);
        }
        let mut fast = tera.clone();
        let indexed = fast
            .templates
            .get_mut(NAME)
            .is_some_and(|t| index_services(&mut t.ast));
        Ok(Template {
            source: source.to_path_buf(),
            tera,
            state,
            functions,
            hoisted,
            fast: indexed.then_some(fast),
            last_deps: Mutex::new(None),
            services: Mutex::default(),
        })
    }

    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        Template::parse(path, &text)
    }

    /// Renders against `data`.
    pub fn render(&self, data: &Arc<Data>) -> Result<Rendered, TemplateError> {
        self.render_versioned(data, &Versions::new())
    }

    /// Renders against `data`, reusing what did not change since the last render per `versions`.
    pub fn render_versioned(
        &self,
        data: &Arc<Data>,
        versions: &Versions,
    ) -> Result<Rendered, TemplateError> {
        let error = |e: tera::Error| TemplateError {
            file: self.source.display().to_string(),
            message: describe(&e),
        };
        let previous = self.last_deps.lock_or_exit("template dependencies").clone();
        if let (Some(fast), Some(previous)) = (&self.fast, previous) {
            // Every list the template read last time is fetched: try the by-reference path.
            let mut guard = self.services.lock_or_exit("template service lists");
            let (lists, copied_at) = &mut *guard;
            for (dep, v) in data.iter() {
                if let (
                    Dep::Service {
                        name,
                        tag: None,
                        passing: true,
                    },
                    Some(v),
                ) = (dep, v)
                {
                    let version = versions.get(dep);
                    if version.is_none()
                        || copied_at.get(name) != version
                        || !lists.contains_key(name)
                    {
                        lists.insert(name.clone(), v.clone());
                        match version {
                            Some(ver) => copied_at.insert(name.clone(), *ver),
                            None => copied_at.remove(name),
                        };
                    }
                }
            }
            let services = Value::Object(std::mem::take(lists));
            let (result, services) = self.render_with(fast, data, services);
            if let Value::Object(back) = services {
                *lists = back;
            }
            drop(guard);
            if let Ok(Rendered::Complete { text, deps }) = result.map_err(error) {
                let deps: BTreeSet<Dep> = deps.union(&previous).cloned().collect();
                return Ok(Rendered::Complete { text, deps });
            }
            // A list it needs is not fetched yet (or anything else went wrong): the general
            // path below discovers what is missing.
        }
        let (rendered, _) = self.render_with(&self.tera, data, Value::Null);
        let rendered = rendered.map_err(error)?;
        // What it read (fetched or still missing) is what the fast path must keep depending on.
        let (Rendered::Complete { deps, .. } | Rendered::Incomplete { deps, .. }) = &rendered;
        *self.last_deps.lock_or_exit("template dependencies") = Some(deps.clone());
        Ok(rendered)
    }

    /// One render with `tera`, with the hoisted loop containers and `services` (unless null) in
    /// the context; hands `services` back so the caller keeps it for the next render.
    fn render_with(
        &self,
        tera: &Tera,
        data: &Arc<Data>,
        services: Value,
    ) -> (tera::Result<Rendered>, Value) {
        *lock(&self.state) = RenderState {
            data: data.clone(),
            ..Default::default()
        };
        let mut vars = serde_json::Map::new();
        let mut failed = None;
        for h in &self.hoisted {
            let value = self
                .functions
                .get(h.func.as_str())
                .ok_or_else(|| tera::Error::msg(format!("function {} is not defined", h.func)))
                .and_then(|f| f(&h.args));
            match value {
                Ok(v) => {
                    vars.insert(h.var.clone(), v);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let has_services = !services.is_null();
        if has_services {
            vars.insert(SERVICES_VAR.to_string(), services);
        }
        let (result, services) = match failed {
            Some(e) => (Err(e), vars.remove(SERVICES_VAR).unwrap_or(Value::Null)),
            None => match tera::Context::from_value(Value::Object(vars)) {
                Ok(mut ctx) => {
                    let out = tera.render(NAME, &ctx);
                    (out, ctx.remove(SERVICES_VAR).unwrap_or(Value::Null))
                }
                Err(e) => (Err(e), Value::Null),
            },
        };
        // Always release the data, so the engine can update it in place.
        let st = std::mem::take(&mut *lock(&self.state));
        let text = match result {
            Ok(text) => text,
            // A null from a not-yet-fetched function (e.g. `node().Node.Address`) fails the
            // render; that is not an error until every dependency is there.
            Err(_) if !st.missing.is_empty() => String::new(),
            Err(e) => return (Err(e), services),
        };
        let rendered = if st.missing.is_empty() && st.blocked.is_empty() {
            Rendered::Complete {
                text,
                deps: st.used,
            }
        } else {
            Rendered::Incomplete {
                missing: st.missing,
                blocked: st.blocked,
                deps: st.used,
            }
        };
        (Ok(rendered), services)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(pairs: Vec<(Dep, Option<Value>)>) -> Arc<Data> {
        Arc::new(pairs.into_iter().collect())
    }

    #[test]
    fn dependencies_are_discovered_then_rendered() {
        let t = Template::parse(
            Path::new("t.tmpl"),
            "{% for s in service(name=\"web\") %}{{ s.Address }}:{{ s.Port }} {% endfor %}{{ key_or_default(path=\"x\", default=\"d\") }}",
        )
        .unwrap();
        let web = Dep::Service {
            name: "web".into(),
            tag: None,
            passing: true,
        };
        match t.render(&data(vec![])).unwrap() {
            Rendered::Incomplete { missing, .. } => {
                assert!(missing.contains(&web) && missing.contains(&Dep::Key("x".into())));
            }
            other => panic!("expected missing deps, got {other:?}"),
        }
        let d = data(vec![
            (web, Some(json!([{"Address": "10.0.0.1", "Port": 80}]))),
            (Dep::Key("x".into()), None),
        ]);
        assert_eq!(
            t.render(&d).unwrap(),
            Rendered::Complete {
                text: "10.0.0.1:80 d".into(),
                deps: [
                    Dep::Service {
                        name: "web".into(),
                        tag: None,
                        passing: true
                    },
                    Dep::Key("x".into())
                ]
                .into()
            }
        );
    }

    #[test]
    fn every_data_function_works_in_loops_and_elsewhere() {
        let t = Template::parse(
            Path::new("all.tmpl"),
            "{% for s in services() %}{{ s.Name }};{% endfor %}{% for k in ls(prefix=\"a\") %}{{ k.Key }};{% endfor %}\
             {% for k in tree(prefix=\"a\") %}{{ k.Key }};{% endfor %}{% for n in nodes() %}{{ n.Node }};{% endfor %}\
             {{ services() | length }}{% if true %}{% for s in service(name=\"web\", tag=\"x\") %}{{ s.Port }}{% endfor %}{% endif %}",
        )
        .unwrap();
        let d = data(vec![
            (Dep::Services, Some(json!([{"Name": "web", "Tags": []}]))),
            (
                Dep::Ls("a".into()),
                Some(json!([{"Key": "k1", "Value": "v"}])),
            ),
            (
                Dep::Tree("a".into()),
                Some(json!([{"Key": "k1", "Value": "v"}, {"Key": "d/k2", "Value": "w"}])),
            ),
            (Dep::Nodes, Some(json!([{"Node": "n1"}]))),
            (
                Dep::Service {
                    name: "web".into(),
                    tag: Some("x".into()),
                    passing: true,
                },
                Some(json!([{"Port": 8080}])),
            ),
        ]);
        match t.render(&d).unwrap() {
            Rendered::Complete { text, .. } => assert_eq!(text, "web;k1;k1;d/k2;n1;18080"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nested_service_loops_take_the_indexed_path_and_stay_correct() {
        let t = Template::parse(
            Path::new("lb.tmpl"),
            "{% for svc in services() %}[{{ svc.Name }}]{% for s in service(name=svc.Name) %} {{ s.Port }}{% endfor %}{% endfor %}",
        )
        .unwrap();
        assert!(t.fast.is_some());
        let web = Dep::Service {
            name: "web".into(),
            tag: None,
            passing: true,
        };
        let db = Dep::Service {
            name: "db".into(),
            tag: None,
            passing: true,
        };
        let mut d: Data = [(Dep::Services, Some(json!([{"Name": "web"}])))]
            .into_iter()
            .collect();
        assert!(matches!(
            t.render(&Arc::new(d.clone())).unwrap(),
            Rendered::Incomplete { .. }
        ));
        d.insert(web.clone(), Some(json!([{"Port": 1}, {"Port": 2}])));
        let first = t.render(&Arc::new(d.clone())).unwrap();
        assert_eq!(
            first,
            Rendered::Complete {
                text: "[web] 1 2".into(),
                deps: [Dep::Services, web.clone()].into()
            }
        );
        // A new service appears: the indexed path cannot see it yet, the general path fetches it.
        d.insert(
            Dep::Services,
            Some(json!([{"Name": "db"}, {"Name": "web"}])),
        );
        match t.render(&Arc::new(d.clone())).unwrap() {
            Rendered::Incomplete { missing, .. } => assert_eq!(missing, [db.clone()].into()),
            other => panic!("{other:?}"),
        }
        d.insert(db.clone(), Some(json!([{"Port": 5432}])));
        d.insert(web.clone(), Some(json!([{"Port": 3}])));
        match t.render(&Arc::new(d)).unwrap() {
            Rendered::Complete { text, deps } => {
                assert_eq!(text, "[db] 5432[web] 3");
                assert!(deps.contains(&db) && deps.contains(&web));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_key_blocks_and_syntax_errors_have_positions() {
        let t = Template::parse(Path::new("k.tmpl"), "v={{ key(path=\"a/b\") }}").unwrap();
        match t
            .render(&data(vec![(Dep::Key("a/b".into()), None)]))
            .unwrap()
        {
            Rendered::Incomplete { blocked, .. } => assert_eq!(blocked, vec!["a/b".to_string()]),
            other => panic!("a missing key must block: {other:?}"),
        }
        let err = Template::parse(Path::new("bad.tmpl"), "line one\n{% for x in %}\n")
            .err()
            .unwrap();
        assert_eq!(err.file, "bad.tmpl");
        assert!(err.message.starts_with("line 2, column"), "{}", err.message);
    }
}
