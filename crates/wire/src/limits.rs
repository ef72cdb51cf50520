//! Consul's limits on what a registration may store, enforced where anything is stored
//! (catalogd, on every write path) and respected where registrations are built (taskrun).
//! Without them one service with a 30 MiB meta value makes every catalog answer 30 MiB.

/// Most meta pairs on a node or service (Consul's `metaMaxKeyPairs`).
pub const META_MAX_PAIRS: usize = 64;
/// Longest meta key (Consul's `metaKeyMaxLength`).
pub const META_KEY_MAX: usize = 128;
/// Longest meta value (Consul's `metaValueMaxLength`).
pub const META_VALUE_MAX: usize = 512;
/// Most tags on a service. Consul sets none; cairn bounds them so one registration cannot
/// grow every catalog answer without limit (Traefik- and Fabio-style tag sets stay far below).
pub const TAGS_MAX: usize = 128;
/// Longest tag.
pub const TAG_MAX: usize = 1024;

/// Whether Consul accepts `key` as a meta key: letters, digits, `_` and `-`, at most
/// [`META_KEY_MAX`] bytes, outside the reserved `consul-` namespace.
pub fn valid_meta_key(key: &str) -> bool {
    meta_key_problem(key).is_none()
}

fn meta_key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        Some("Key cannot be blank".into())
    } else if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Some("Key contains invalid characters".into())
    } else if key.len() > META_KEY_MAX {
        Some(format!(
            "Key is too long (limit: {META_KEY_MAX} characters)"
        ))
    } else if key.starts_with("consul-") {
        Some("Key prefix 'consul-' is reserved for internal use".into())
    } else {
        None
    }
}

/// Consul's `validateMetadata` (node and service meta share it, and its text says "Node").
/// A value too long to be stored is shown cut in the error, not echoed whole.
pub fn validate_meta<'a>(
    meta: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    check_meta(meta, meta_key_problem)
}

/// The size limits of [`validate_meta`] alone, for catalog writes: Consul's catalog endpoint
/// stores keys its agent would refuse (its own node carries `consul-network-segment`, sync
/// tools copy such nodes), but nothing bigger than these limits belongs in the catalog.
pub fn validate_meta_size<'a>(
    meta: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    check_meta(meta, |k| {
        (k.len() > META_KEY_MAX)
            .then(|| format!("Key is too long (limit: {META_KEY_MAX} characters)"))
    })
}

/// The pair count, then each pair: its key by `key_problem`, its value by size.
fn check_meta<'a>(
    meta: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
    key_problem: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    if meta.len() > META_MAX_PAIRS {
        return Err(format!(
            "Node metadata cannot contain more than {META_MAX_PAIRS} key/value pairs"
        ));
    }
    for (k, v) in meta {
        let why = key_problem(k).or_else(|| {
            (v.len() > META_VALUE_MAX)
                .then(|| format!("Value is too long (limit: {META_VALUE_MAX} characters)"))
        });
        if let Some(why) = why {
            return Err(format!(
                "Couldn't load metadata pair ('{}', '{}'): {why}",
                shown(k),
                shown(v)
            ));
        }
    }
    Ok(())
}

/// Tags within [`TAGS_MAX`] and [`TAG_MAX`].
pub fn validate_tags(tags: &[String]) -> Result<(), String> {
    if tags.len() > TAGS_MAX {
        return Err(format!(
            "{} tags; a service may have at most {TAGS_MAX}",
            tags.len()
        ));
    }
    match tags.iter().position(|t| t.len() > TAG_MAX) {
        Some(i) => Err(format!(
            "tag {i} is {} bytes long; at most {TAG_MAX} are allowed",
            tags[i].len()
        )),
        None => Ok(()),
    }
}

/// At most 64 characters of `s`, marked when cut.
fn shown(s: &str) -> String {
    const SHOWN: usize = 64;
    match s.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn meta_is_held_to_consuls_limits() {
        let cases: Vec<(BTreeMap<String, String>, Result<(), String>)> = vec![
            (meta(&[("env", "prod".into())]), Ok(())),
            (meta(&[("k", "v".repeat(512))]), Ok(())),
            (
                meta(&[("k", "v".repeat(513))]),
                Err(format!(
                    "Couldn't load metadata pair ('k', '{}...'): Value is too long (limit: 512 \
                     characters)",
                    "v".repeat(64)
                )),
            ),
            (
                meta(&[("consul-x", "1".into())]),
                Err(
                    "Couldn't load metadata pair ('consul-x', '1'): Key prefix 'consul-' is \
                     reserved for internal use"
                        .into(),
                ),
            ),
            (
                meta(&[("a b", "1".into())]),
                Err(
                    "Couldn't load metadata pair ('a b', '1'): Key contains invalid characters"
                        .into(),
                ),
            ),
            (
                (0..65).map(|i| (format!("k{i}"), "v".into())).collect(),
                Err("Node metadata cannot contain more than 64 key/value pairs".into()),
            ),
        ];
        for (m, want) in cases {
            assert_eq!(validate_meta(m.iter()), want, "{m:?}");
        }
    }

    #[test]
    fn catalog_writes_check_sizes_only() {
        let internal = meta(&[("consul-network-segment", String::new())]);
        assert_eq!(validate_meta_size(internal.iter()), Ok(()));
        assert!(validate_meta(internal.iter()).is_err());
        let long_key = meta(&[(&"k".repeat(129), "v".into())]);
        assert!(
            validate_meta_size(long_key.iter())
                .unwrap_err()
                .ends_with("Key is too long (limit: 128 characters)")
        );
        let long_value = meta(&[("k", "v".repeat(513))]);
        assert!(validate_meta_size(long_value.iter()).is_err());
    }

    #[test]
    fn tags_are_bounded() {
        assert_eq!(validate_tags(&vec!["t".into(); 128]), Ok(()));
        assert_eq!(
            validate_tags(&vec!["t".into(); 129]),
            Err("129 tags; a service may have at most 128".into())
        );
        assert_eq!(
            validate_tags(&["ok".into(), "x".repeat(1025)]),
            Err("tag 1 is 1025 bytes long; at most 1024 are allowed".into())
        );
    }
}
