//! The `sops` section of an encrypted file (the keys the data key is encrypted to, the MAC and
//! which values are encrypted), read from a YAML/JSON node or from a dotenv file's flattened
//! `sops_*` lines into one `Metadata`.
//!
//! Pure. Only one key group is supported: Shamir secret sharing over several groups is refused
//! with a reason rather than half-implemented.

use regex::Regex;

use super::MasterKey;

/// A small tree of the metadata's values, whatever the file's format.
#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    Str(String),
    List(Vec<Meta>),
    Map(Vec<(String, Meta)>),
}

impl Meta {
    fn get(&self, key: &str) -> Option<&Meta> {
        match self {
            Meta::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Meta::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn list(&self, key: &str) -> &[Meta] {
        match self.get(key) {
            Some(Meta::List(items)) => items,
            _ => &[],
        }
    }
}

/// Which values of the document are encrypted (SOPS allows one rule per file).
#[derive(Debug, Clone)]
pub enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Regex),
    EncryptedRegex(Regex),
}

impl Rule {
    /// SOPS's `shouldBeEncrypted` for a value at `path` (map keys from the root; list items
    /// add nothing).
    pub fn encrypted(&self, path: &[&str]) -> bool {
        match self {
            Rule::UnencryptedSuffix(s) => !path.iter().any(|p| p.ends_with(s.as_str())),
            Rule::EncryptedSuffix(s) => path.iter().any(|p| p.ends_with(s.as_str())),
            Rule::UnencryptedRegex(r) => !path.iter().any(|p| r.is_match(p)),
            Rule::EncryptedRegex(r) => path.iter().any(|p| r.is_match(p)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metadata {
    /// The one key group: the data key is encrypted to each of these.
    pub keys: Vec<MasterKey>,
    /// `lastmodified` as SOPS formats it for the MAC's additional data (RFC 3339, seconds).
    pub last_modified: String,
    /// The encrypted MAC.
    pub mac: String,
    pub rule: Rule,
    pub mac_only_encrypted: bool,
}

/// Reads the metadata; `Err` is a reason for the whole file.
pub fn read(meta: &Meta) -> Result<Metadata, String> {
    let mac = meta
        .str("mac")
        .filter(|m| !m.is_empty())
        .ok_or("the `sops` metadata has no `mac`")?
        .to_string();
    let last_modified = go_rfc3339(
        meta.str("lastmodified")
            .ok_or("the `sops` metadata has no `lastmodified`")?,
    )?;
    let groups = meta.list("key_groups");
    let keys = match groups {
        [] => keys_of(meta),
        [one] => keys_of(one),
        more => {
            return Err(format!(
                "the file's data key is split over {} key groups (Shamir secret sharing), which Convoy does not support; re-encrypt it with one key group",
                more.len()
            ))
        }
    };
    if meta
        .str("shamir_threshold")
        .is_some_and(|t| t != "0" && t != "1")
        && groups.len() > 1
    {
        return Err("Shamir secret sharing is not supported".into());
    }
    if keys.is_empty() {
        return Err("the `sops` metadata names no key the data key is encrypted to".into());
    }
    let mut rules = Vec::new();
    for name in [
        "unencrypted_suffix",
        "encrypted_suffix",
        "unencrypted_regex",
        "encrypted_regex",
        "unencrypted_comment_regex",
        "encrypted_comment_regex",
    ] {
        if let Some(v) = meta.str(name).filter(|v| !v.is_empty()) {
            rules.push((name, v));
        }
    }
    let regex = |r: &str| {
        Regex::new(r).map_err(|e| format!("`{r}` is not a valid regular expression: {e}"))
    };
    let rule = match rules.as_slice() {
        [] => Rule::UnencryptedSuffix("_unencrypted".into()),
        [("unencrypted_suffix", v)] => Rule::UnencryptedSuffix(v.to_string()),
        [("encrypted_suffix", v)] => Rule::EncryptedSuffix(v.to_string()),
        [("unencrypted_regex", v)] => Rule::UnencryptedRegex(regex(v)?),
        [("encrypted_regex", v)] => Rule::EncryptedRegex(regex(v)?),
        [(name, _)] => {
            return Err(format!(
                "`{name}` (encryption chosen by comments) is not supported; use a suffix or a key regex"
            ))
        }
        _ => return Err("the `sops` metadata sets more than one encryption rule".into()),
    };
    let mac_only_encrypted = matches!(meta.str("mac_only_encrypted"), Some("true" | "True"));
    Ok(Metadata {
        keys,
        last_modified,
        mac,
        rule,
        mac_only_encrypted,
    })
}

fn keys_of(group: &Meta) -> Vec<MasterKey> {
    let mut keys = Vec::new();
    for k in group.list("age") {
        keys.push(MasterKey::Age {
            recipient: k.str("recipient").unwrap_or_default().to_string(),
            enc: k.str("enc").unwrap_or_default().to_string(),
        });
    }
    for k in group.list("pgp") {
        keys.push(MasterKey::Pgp {
            fingerprint: k.str("fp").unwrap_or_default().to_string(),
            enc: k.str("enc").unwrap_or_default().to_string(),
        });
    }
    for (kind, id) in [
        ("kms", "arn"),
        ("gcp_kms", "resource_id"),
        ("azure_kv", "vault_url"),
        ("hc_vault", "vault_address"),
        ("hckms", "key_id"),
    ] {
        for k in group.list(kind) {
            keys.push(MasterKey::Other {
                kind: kind.to_string(),
                id: k.str(id).unwrap_or_default().to_string(),
            });
        }
    }
    keys
}

/// `time.Parse(RFC3339)` then `Format(RFC3339)`, as SOPS does before using `lastmodified` as
/// the MAC's additional data: fractional seconds dropped, a zero offset written `Z`.
fn go_rfc3339(s: &str) -> Result<String, String> {
    let bad = || format!("`lastmodified` is not an RFC 3339 time: `{s}`");
    if s.len() < 20 || !s.is_char_boundary(19) {
        return Err(bad());
    }
    let (head, mut rest) = s.split_at(19);
    let b = head.as_bytes();
    let shape = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b'T' || *c == b't',
        13 | 16 => *c == b':',
        _ => c.is_ascii_digit(),
    });
    if !shape {
        return Err(bad());
    }
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &frac[digits..];
    }
    let zone = match rest {
        "Z" | "z" | "+00:00" | "-00:00" => "Z".to_string(),
        z if z.len() == 6
            && (z.starts_with('+') || z.starts_with('-'))
            && z.as_bytes()[3] == b':' =>
        {
            z.to_string()
        }
        _ => return Err(bad()),
    };
    let mut head = head.to_string();
    head.replace_range(10..11, "T");
    Ok(format!("{head}{zone}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lastmodified_is_formatted_as_go_does() {
        assert_eq!(
            go_rfc3339("2026-05-22T20:16:23Z").unwrap(),
            "2026-05-22T20:16:23Z"
        );
        assert_eq!(
            go_rfc3339("2026-05-22T20:16:23.123456Z").unwrap(),
            "2026-05-22T20:16:23Z"
        );
        assert_eq!(
            go_rfc3339("2026-05-22T20:16:23+02:00").unwrap(),
            "2026-05-22T20:16:23+02:00"
        );
        assert_eq!(
            go_rfc3339("2026-05-22T20:16:23+00:00").unwrap(),
            "2026-05-22T20:16:23Z"
        );
        assert!(go_rfc3339("yesterday").is_err());
    }

    #[test]
    fn the_default_rule_leaves_unencrypted_suffixes_alone() {
        let meta = Meta::Map(vec![
            ("mac".into(), Meta::Str("ENC[x]".into())),
            (
                "lastmodified".into(),
                Meta::Str("2026-05-22T20:16:23Z".into()),
            ),
            (
                "age".into(),
                Meta::List(vec![Meta::Map(vec![
                    ("recipient".into(), Meta::Str("age1x".into())),
                    ("enc".into(), Meta::Str("e".into())),
                ])]),
            ),
        ]);
        let m = read(&meta).unwrap();
        assert!(m.rule.encrypted(&["a", "b"]));
        assert!(!m.rule.encrypted(&["a_unencrypted", "b"]));
        assert_eq!(m.keys.len(), 1);
    }

    #[test]
    fn several_key_groups_are_refused_with_the_reason() {
        let group = Meta::Map(vec![(
            "pgp".into(),
            Meta::List(vec![Meta::Map(vec![("fp".into(), Meta::Str("F".into()))])]),
        )]);
        let meta = Meta::Map(vec![
            ("mac".into(), Meta::Str("ENC[x]".into())),
            (
                "lastmodified".into(),
                Meta::Str("2026-05-22T20:16:23Z".into()),
            ),
            ("key_groups".into(), Meta::List(vec![group.clone(), group])),
            ("shamir_threshold".into(), Meta::Str("2".into())),
        ]);
        let e = read(&meta).unwrap_err();
        assert!(e.contains("Shamir"), "{e}");
    }
}
