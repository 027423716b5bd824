//! SOPS's dotenv store: `KEY=value` lines (a `\n` in a value written as the two characters),
//! the metadata flattened into `sops_*` lines (`sops_pgp__list_0__map_fp=…`), every value
//! encrypted with its key as the path.
//!
//! Pure. The decrypted text keeps every line where it was (the `sops_*` lines become empty),
//! so the env-file reader's errors point at the same line of the encrypted file. Comments stay
//! (SOPS encrypts them with the key path `:` and leaves them out of the MAC; one that does not
//! open is kept as written, as SOPS keeps it). [`as_printed`] turns that text into exactly what
//! `sops --decrypt` prints, for a file delivered whole (a secret's or config's `file:`).
//! A file without a `sops_mac` line is not a SOPS file here (`Ok(None)`).

use super::cipher::{self, Plain};
use super::metadata::{self, Meta};
use super::{check_mac, data_key, new_mac, KeySource, Located, Opened};

pub fn decrypt(text: &str, keys: &dyn KeySource) -> Result<Opened, Located> {
    enum Line<'a> {
        Blank,
        /// The text after `#`.
        Comment(&'a str),
        Entry {
            key: &'a str,
            value: String,
        },
        Malformed,
    }
    let mut lines = Vec::new();
    let mut meta: Vec<(&str, String, usize)> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        if raw.is_empty() {
            lines.push(Line::Blank);
            continue;
        }
        if let Some(comment) = raw.strip_prefix('#') {
            lines.push(Line::Comment(comment));
            continue;
        }
        let Some((key, value)) = raw.split_once('=') else {
            lines.push(Line::Malformed);
            continue;
        };
        let value = value.replace("\\n", "\n");
        match key.strip_prefix("sops_") {
            Some(name) => {
                meta.push((name, value, i + 1));
                lines.push(Line::Blank);
            }
            None => lines.push(Line::Entry { key, value }),
        }
    }
    let Some(mac_line) = meta.iter().find(|(k, _, _)| *k == "mac").map(|m| m.2) else {
        return Ok(None);
    };
    let meta = metadata::read(&unflatten(&meta)).map_err(|m| (mac_line, m))?;
    let key = data_key(&meta, keys)?;
    let mut mac = new_mac(&meta);
    let mut secrets = Vec::new();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let (k, value) = match line {
            Line::Blank => {
                out.push(String::new());
                continue;
            }
            Line::Comment(text) => {
                // Top-level comments have the empty key path; never in the MAC.
                let opened = (meta.rule.encrypted(&[]) && cipher::is_enc(text))
                    .then(|| cipher::decrypt(text, &key, ":").ok())
                    .flatten();
                match opened {
                    Some(plain) => out.push(format!("#{}", plain.text().replace('\n', "\\n"))),
                    None => out.push(format!("#{text}")),
                }
                continue;
            }
            Line::Malformed => return Err((i + 1, "not a `KEY=value` line".into())),
            Line::Entry { key, value } => (key, value),
        };
        let encrypted = meta.rule.encrypted(&[k]);
        let plain = if !encrypted || value.is_empty() {
            Plain::Str(value)
        } else if cipher::is_enc(&value) {
            let opened = cipher::decrypt(&value, &key, &format!("{k}:"))
                .map_err(|e| (i + 1, format!("`{}`: {e}", k.trim())))?;
            secrets.push(opened.text());
            opened
        } else {
            return Err((
                i + 1,
                format!("`{}` is written in clear where SOPS encrypts", k.trim()),
            ));
        };
        if !meta.mac_only_encrypted || encrypted {
            use sha2::Digest;
            mac.update(plain.mac_bytes());
        }
        out.push(format!("{k}={}", plain.text().replace('\n', "\\n")));
    }
    check_mac(&meta, &key, mac, mac_line)?;
    Ok(Some((out.join("\n"), secrets)))
}

/// The line-kept text of [`decrypt`] as `sops --decrypt` prints the file: its entries and
/// comments in order, each ended by a newline, without the empty lines (SOPS skips them when it
/// reads a dotenv file, and the metadata's lines are empty here).
pub fn as_printed(line_kept: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line_kept.len());
    for line in line_kept.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

/// One step of a flattened key: `__map_name` or `__list_N`.
enum Step {
    Map(String),
    List(usize),
}

/// SOPS's `tokenize`: `pgp__list_0__map_fp` is `pgp`, item 0, `fp`.
fn tokenize(path: &str) -> Vec<Step> {
    const MAP: &str = "__map_";
    const LIST: &str = "__list_";
    let push = |steps: &mut Vec<Step>, seg: &str, list: bool| {
        steps.push(if list {
            Step::List(seg.parse().unwrap_or(0))
        } else {
            Step::Map(seg.to_string())
        })
    };
    let mut steps = Vec::new();
    let (mut list, mut start, mut i) = (false, 0, 0);
    while i < path.len() {
        let tail = &path[i..];
        let sep = if tail.starts_with(MAP) {
            Some((false, MAP.len()))
        } else if tail.starts_with(LIST) {
            Some((true, LIST.len()))
        } else {
            None
        };
        match sep {
            Some((is_list, len)) => {
                push(&mut steps, &path[start..i], list);
                list = is_list;
                i += len;
                start = i;
            }
            None => i += tail.chars().next().map_or(1, char::len_utf8),
        }
    }
    push(&mut steps, &path[start..], list);
    steps
}

/// The flattened `sops_*` lines as a tree.
fn unflatten(lines: &[(&str, String, usize)]) -> Meta {
    let mut root = Meta::Map(Vec::new());
    for (key, value, _) in lines {
        let steps = tokenize(key);
        insert(&mut root, &steps, value);
    }
    root
}

fn insert(node: &mut Meta, steps: &[Step], value: &str) {
    let Some((first, rest)) = steps.split_first() else {
        *node = Meta::Str(value.to_string());
        return;
    };
    let child = match (first, &mut *node) {
        (Step::Map(name), Meta::Map(entries)) => {
            match entries.iter().position(|(k, _)| k == name) {
                Some(i) => &mut entries[i].1,
                None => {
                    entries.push((name.clone(), empty_for(rest)));
                    &mut entries.last_mut().expect("just pushed").1
                }
            }
        }
        (Step::List(i), Meta::List(items)) => {
            // Indices come in order in SOPS's output; a gap is filled so none is lost.
            while items.len() <= *i.min(&1024) {
                items.push(empty_for(rest));
            }
            &mut items[*i.min(&1024)]
        }
        _ => return,
    };
    insert(child, rest, value);
}

fn empty_for(rest: &[Step]) -> Meta {
    match rest.first() {
        Some(Step::List(_)) => Meta::List(Vec::new()),
        Some(Step::Map(_)) => Meta::Map(Vec::new()),
        None => Meta::Str(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_metadata_reads_back_as_a_tree() {
        let lines = vec![
            ("pgp__list_0__map_fp", "F1".to_string(), 1),
            ("pgp__list_0__map_enc", "E1".to_string(), 2),
            ("pgp__list_1__map_fp", "F2".to_string(), 3),
            ("mac", "M".to_string(), 4),
        ];
        let tree = unflatten(&lines);
        let Meta::Map(entries) = tree else { panic!() };
        assert_eq!(entries[0].0, "pgp");
        let Meta::List(items) = &entries[0].1 else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0],
            Meta::Map(vec![
                ("fp".into(), Meta::Str("F1".into())),
                ("enc".into(), Meta::Str("E1".into()))
            ])
        );
        assert_eq!(entries[1], ("mac".into(), Meta::Str("M".into())));
    }
}
