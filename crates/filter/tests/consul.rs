//! End-to-end tests of the public API against Consul-shaped JSON: a health entry, a list of
//! catalog services, and the error messages an HTTP client would see.

use cairn_filter::{Filter, FilterError};
use serde_json::{Value, json};

fn health_entry() -> Value {
    json!({
        "Node": {"Node": "n1", "Meta": {"rack": "r1"}},
        "Service": {
            "Service": "web",
            "Tags": ["prod", "v2"],
            "Port": 8080,
            "Meta": {"env": "prod"}
        },
        "Checks": [{"Status": "passing"}, {"Status": "warning"}]
    })
}

fn parse(expr: &str) -> Filter {
    match Filter::parse(expr) {
        Ok(filter) => filter,
        Err(err) => panic!("parse({expr:?}) failed: {err}"),
    }
}

#[test]
fn documented_examples_match_the_health_entry() {
    let entry = health_entry();
    for expr in [
        "Service.Service == web",
        r#""prod" in Service.Tags"#,
        "Service.Tags contains v2",
        "Service.Port == 8080",
        r#"Service.Meta.env == "prod" and Node.Meta.rack != r2"#,
        "not (Service.Service == db)",
        r#"Service.Service matches "^w.b$""#,
        "Service.Meta is not empty",
        "Node.Meta.missing is empty",
        "Checks.Status == warning",
        r#"Service.Meta["env"] == prod"#,
    ] {
        assert!(parse(expr).matches(&entry), "{expr} should match");
    }
}

#[test]
fn negated_examples_do_not_match_the_health_entry() {
    let entry = health_entry();
    for expr in [
        "Service.Service != web",
        r#""prod" not in Service.Tags"#,
        "Service.Tags not contains v2",
        "Service.Port != 8080",
        r#"Service.Meta.env == "prod" and Node.Meta.rack == r2"#,
        "not (Service.Service == web)",
        r#"Service.Service not matches "^w.b$""#,
        "Service.Meta is empty",
        "Node.Meta.missing is not empty",
        "Checks.Status == critical",
        r#"Service.Meta["env"] != prod"#,
    ] {
        assert!(!parse(expr).matches(&entry), "{expr} should not match");
    }
}

#[test]
fn filters_a_catalog_service_list() {
    let services = [
        json!({"ServiceName": "web", "ServiceTags": ["prod"], "ServiceMeta": {"version": "1.2"}, "ServicePort": 80}),
        json!({"ServiceName": "web", "ServiceTags": ["canary"], "ServiceMeta": {}, "ServicePort": 8080}),
        json!({"ServiceName": "db", "ServiceTags": [], "ServiceMeta": {"version": "9"}, "ServicePort": 5432}),
    ];
    let names = |expr: &str| -> Vec<u64> {
        let filter = parse(expr);
        services
            .iter()
            .filter(|s| filter.matches(s))
            .filter_map(|s| s["ServicePort"].as_u64())
            .collect()
    };
    assert_eq!(names("ServiceName == web"), vec![80, 8080]);
    assert_eq!(names("ServiceTags is empty"), vec![5432]);
    assert_eq!(names("version in ServiceMeta"), vec![80, 5432]);
    assert_eq!(names("ServiceMeta.version == 1.2"), vec![80]);
    assert_eq!(
        names("ServiceName == web and (canary in ServiceTags or ServicePort == 80)"),
        vec![80, 8080]
    );
    assert_eq!(
        names("ServicePort != 80 and not ServiceName == db"),
        vec![8080]
    );
    assert_eq!(
        names(r#"ServiceName matches "^(web|db)$""#),
        vec![80, 8080, 5432]
    );
}

#[test]
fn errors_name_what_was_expected_and_where() {
    let message = |expr: &str| match Filter::parse(expr) {
        Ok(filter) => panic!("parse({expr:?}) unexpectedly gave {filter}"),
        Err(err) => err.to_string(),
    };
    assert_eq!(
        message("Service.Port =="),
        "filter: expected a value after '==' at column 16, found end of input"
    );
    assert_eq!(
        message("Service.Port = 80"),
        "filter: expected '==' at column 14, found '='"
    );
    assert_eq!(
        message("Service.Port == 80 and"),
        "filter: expected an expression after 'and' at column 23, found end of input"
    );
    assert!(
        message(r#"Service.Service matches "[a-""#)
            .starts_with(r#"filter: invalid regex "[a-" at column 25"#)
    );
    assert!(matches!(
        Filter::parse("(a == b"),
        Err(FilterError::Expected { column: 8, .. })
    ));
    assert!(matches!(Filter::parse(""), Err(FilterError::Empty)));
    assert!(matches!(
        Filter::parse(r#"a == "b"#),
        Err(FilterError::UnterminatedString { column: 6 })
    ));
}

#[test]
fn filter_is_clone_debug_and_display() {
    let filter = parse(r#"Service.Meta["some key"] == x or not y in Tags"#);
    let copy = filter.clone();
    assert!(!format!("{copy:?}").is_empty());
    assert_eq!(
        copy.to_string(),
        r#"(Service.Meta["some key"] == "x" or not Tags contains "y")"#
    );
    let reparsed = parse(&copy.to_string());
    assert_eq!(reparsed.to_string(), copy.to_string());
}

#[test]
fn filter_error_is_a_std_error() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    if let Err(err) = Filter::parse("a ==") {
        assert_error(&err);
    }
}
