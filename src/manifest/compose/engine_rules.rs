//! Rules the engine applies to values when it creates a container, checked where the values
//! are written instead: the image reference grammar, IP addresses, the smallest memory limit
//! and CPU share, and ulimits. A repository `validate` accepts must not be refused by the
//! engine later, halfway through an apply.
//!
//! Plain functions from text or numbers to an error phrase; no I/O. The phrases quote what is
//! wrong, and the file's `Diag` masks any secret in them ("secrets stay masked").

// Address types only: `core` has no I/O ("the planning core is pure"); `std::net` re-exports them
// next to sockets, which the core may not name.
use ::core::net::IpAddr;

/// The engine refuses a memory limit or reservation below 6 MiB (`linuxMinMemory`).
pub const MIN_MEMORY_BYTES: i64 = 6 << 20;
/// The engine refuses fewer CPUs than 0.01 (`--cpus` and `NanoCPUs`).
pub const MIN_NANO_CPUS: i64 = 10_000_000;

/// Why `s` is not an image reference as the engine reads it (Docker's reference grammar:
/// `[host[:port]/]path[:tag][@digest]`, lowercase path components joined by `.`, `_`, `__` or
/// dashes, a tag of at most 128 word characters, `.` and `-`, a `sha256:` digest of 64 hex
/// digits), or `None` when it is one.
pub fn image_reference_problem(s: &str) -> Option<&'static str> {
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let ok = match d.split_once(':') {
            Some(("sha256", hex)) => is_hex(hex, 64),
            Some(("sha384", hex)) => is_hex(hex, 96),
            Some(("sha512", hex)) => is_hex(hex, 128),
            _ => false,
        };
        if !ok {
            return Some("a digest is `sha256:` and 64 lowercase hex digits");
        }
    }
    // A tag follows the last `:` after the last `/` (a `:` before it is a registry's port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let mut chars = t.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !first_ok || !rest_ok || t.len() > 128 {
            return Some(
                "a tag is 1 to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
            );
        }
    }
    if name.is_empty() {
        return Some("no repository name");
    }
    if name.len() > 255 {
        return Some("the repository name is longer than 255 characters");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part names a registry when there are more and it looks like a host name.
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains(['.', ':'])
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase())
        {
            if !is_registry(first) {
                return Some("invalid registry host (expected `host[:port]`)");
            }
            parts.remove(0);
        }
    }
    for p in parts {
        if !is_path_component(p) {
            return Some(if p.chars().any(|c| c.is_ascii_uppercase()) {
                "the repository name must be lowercase"
            } else {
                "a repository path is lowercase letters and digits, joined by `.`, `_`, `__` or dashes"
            });
        }
    }
    None
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `host[:port]`: DNS labels of letters, digits and inner dashes joined by dots, an IPv4
/// address, or an IPv6 address in brackets.
fn is_registry(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<::core::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(p) => ("", Some(p)),
                None => return false,
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    port_ok && ((host.is_empty() && s.starts_with('[')) || host.split('.').all(label))
}

/// `[a-z0-9]+` groups joined by one `.`, one or two `_`, or any number of `-`.
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `s` is an IP address (IPv4, or IPv6 with or without brackets).
pub fn is_ip(s: &str) -> bool {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    inner.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "library/busybox:latest",
            "convoy-test/busybox:1",
            "registry.example/app:1.2",
            "registry.example:5000/team/app_x__y.z-w--v:v1.0_rc-1",
            "localhost/app",
            "localhost:5000/app",
            "[::1]:5000/app",
            "MyRegistry/app",
            "192.168.0.1:5000/a/b/c",
            &format!("app@sha256:{}", "a".repeat(64)),
            &format!("app:1@sha256:{}", "0123456789abcdef".repeat(4)),
        ] {
            assert_eq!(image_reference_problem(ok), None, "{ok}");
        }
        for bad in [
            "Busybox",
            "busybox:",
            "busybox:-1",
            "busybox:.1",
            "busybox:a b",
            "app/Upper",
            "-app",
            "app-",
            "a..b",
            "a___b",
            "a//b",
            "/app",
            "app/",
            "reg..example/app",
            "-reg.example/app",
            "reg.example:port/app",
            ":tag",
            "app@sha256:abc",
            &format!("app@sha256:{}", "A".repeat(64)),
            &format!("app@md5:{}", "a".repeat(32)),
            &format!("app:{}", "t".repeat(129)),
            "app with space",
        ] {
            assert!(image_reference_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn ip_addresses() {
        for ok in ["10.0.0.1", "::1", "[::1]", "fe80::1", "0.0.0.0"] {
            assert!(is_ip(ok), "{ok}");
        }
        for bad in ["", "host", "10.0.0", "10.0.0.256", "[10.0.0.1", "::g"] {
            assert!(!is_ip(bad), "{bad}");
        }
    }
}
