//! The dashboard's login sessions: a random session id (256 bits from the kernel) in an
//! HttpOnly, SameSite=Strict cookie, and beside it a per-session CSRF token that every form
//! carries back. The API token itself never leaves the login request.
//!
//! Sessions live in memory only (a restart logs everyone out), are bounded in number (the
//! oldest goes when a new one would exceed it) and expire both after a while idle and at an
//! absolute age. Ids are kept as SHA-256 digests and looked up by digest, and CSRF tokens are
//! compared in constant time, so neither leaks through timing. This module must not log an id
//! or a token.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie that carries the session id.
pub const COOKIE: &str = "convoy_session";
/// Sessions held at once; a new login past it ends the oldest.
pub const MAX_SESSIONS: usize = 64;
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(2 * 3600);
/// A session ends this long after login, used or not.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// A session as the handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The CSRF token its forms carry.
    pub csrf: String,
}

struct Entry {
    csrf: String,
    created: Instant,
    used: Instant,
}

/// The sessions of one API server.
pub struct Sessions {
    inner: Mutex<BTreeMap<[u8; 32], Entry>>,
    idle: Duration,
    max_age: Duration,
    max: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(IDLE, MAX_AGE, MAX_SESSIONS)
    }
}

impl Sessions {
    pub fn new(idle: Duration, max_age: Duration, max: usize) -> Sessions {
        Sessions {
            inner: Mutex::new(BTreeMap::new()),
            idle,
            max_age,
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<[u8; 32], Entry>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session: its id (for the cookie) and its CSRF token. `None` when the kernel gives
    /// no randomness (then nobody logs in, rather than with a guessable id).
    pub fn create(&self) -> Option<(String, Session)> {
        self.create_at(Instant::now())
    }

    fn create_at(&self, now: Instant) -> Option<(String, Session)> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let mut map = self.lock();
        self.expire(&mut map, now);
        while map.len() >= self.max {
            let oldest = map
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| *k)
                .expect("the map is not empty");
            map.remove(&oldest);
        }
        map.insert(
            digest(&id),
            Entry {
                csrf: csrf.clone(),
                created: now,
                used: now,
            },
        );
        Some((id, Session { csrf }))
    }

    /// The live session of `id`, marked as used now.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.lock();
        self.expire(&mut map, now);
        let e = map.get_mut(&digest(id))?;
        e.used = now;
        Some(Session {
            csrf: e.csrf.clone(),
        })
    }

    /// Ends the session of `id` (logout).
    pub fn remove(&self, id: &str) {
        self.lock().remove(&digest(id));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self, map: &mut BTreeMap<[u8; 32], Entry>, now: Instant) {
        map.retain(|_, e| {
            now.saturating_duration_since(e.used) < self.idle
                && now.saturating_duration_since(e.created) < self.max_age
        });
    }
}

impl Session {
    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        bool::from(digest(given).ct_eq(&digest(&self.csrf)))
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// 32 random bytes from the kernel, as hex.
fn random_hex() -> Option<String> {
    let mut buf = [0u8; 32];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`, which outlives
        // the call; getrandom writes at most that many bytes.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        filled += n as usize;
    }
    Some(hex::encode(buf))
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .map(str::trim)
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that holds `id`; `secure` when served over TLS.
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        MAX_AGE.as_secs()
    )
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_found_only_by_themselves() {
        let s = Sessions::default();
        let (a, sa) = s.create().unwrap();
        let (b, sb) = s.create().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(sa.csrf, sb.csrf);
        assert_ne!(sa.csrf, a, "the CSRF token is not the id");
        assert_eq!(s.get(&a), Some(sa.clone()));
        assert_eq!(s.get(&b), Some(sb));
        assert_eq!(s.get("nope"), None);
        assert_eq!(s.get(&a[..63]), None);
        s.remove(&a);
        assert_eq!(s.get(&a), None);
        assert!(s.get(&b).is_some());
    }

    #[test]
    fn sessions_expire_idle_and_at_their_age() {
        let s = Sessions::new(Duration::from_secs(10), Duration::from_secs(30), 8);
        let t0 = Instant::now();
        let (id, _) = s.create_at(t0).unwrap();
        assert!(s.get_at(&id, t0 + Duration::from_secs(9)).is_some());
        // Used at 9 s: alive at 18 s, idle past 10 s at 20 s.
        assert!(s.get_at(&id, t0 + Duration::from_secs(18)).is_some());
        assert!(s.get_at(&id, t0 + Duration::from_secs(27)).is_some());
        // Used all along, but past its age.
        assert!(s.get_at(&id, t0 + Duration::from_secs(31)).is_none());
        let (id, _) = s.create_at(t0).unwrap();
        assert!(s.get_at(&id, t0 + Duration::from_secs(11)).is_none());
        assert!(s.is_empty());
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_goes() {
        let s = Sessions::new(IDLE, MAX_AGE, 3);
        let t0 = Instant::now();
        let ids: Vec<String> = (0..4)
            .map(|i| s.create_at(t0 + Duration::from_secs(i)).unwrap().0)
            .collect();
        assert_eq!(s.len(), 3);
        let now = t0 + Duration::from_secs(5);
        assert!(s.get_at(&ids[0], now).is_none());
        for id in &ids[1..] {
            assert!(s.get_at(id, now).is_some());
        }
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let s = Sessions::default();
        let (_, session) = s.create().unwrap();
        assert!(session.csrf_matches(&session.csrf));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&session.csrf[..10]));
        assert!(!session.csrf_matches(&format!("{}x", session.csrf)));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let c = set_cookie("abc", false);
        assert!(c.starts_with("convoy_session=abc;"), "{c}");
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
        assert!(!c.contains("Secure"));
        assert!(set_cookie("abc", true).contains("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert_eq!(cookie_value("a=b; convoy_session=xyz; c=d"), Some("xyz"));
        assert_eq!(cookie_value("convoy_session="), None);
        assert_eq!(cookie_value("other=1"), None);
    }
}
