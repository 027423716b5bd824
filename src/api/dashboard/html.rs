//! The dashboard's HTML building blocks: escaping, the page shell (with its one stylesheet and
//! one script, both served from this origin), the login page, and the small pages (diff,
//! commit, "not served"). The live part of the main page is `view.rs`.
//!
//! Every value that comes from outside (host and service names, commit messages, errors, log
//! lines, diff text) goes through `esc`, and attribute values are always double-quoted; this
//! module must not build markup from unescaped input, inline scripts or inline styles (the
//! Content-Security-Policy forbids both).

use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A commit as shown: its first 12 characters.
pub fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

/// Whether `s` is a plausible commit id or working-files key (a path segment of our links).
pub fn is_commit_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The link to a commit's page (its history entries, and its plan when it is the newest).
pub fn commit_link(commit: &str) -> String {
    if commit.is_empty() {
        return "–".to_string();
    }
    if !is_commit_id(commit) {
        return format!("<code>{}</code>", esc(commit));
    }
    format!(
        "<a class=\"commit\" href=\"/commit/{c}\"><code>{s}</code></a>",
        c = esc(commit),
        s = esc(&short(commit))
    )
}

/// A whole page: `title`, the header with the navigation (when logged in), and `body`.
pub fn page(title: &str, nav: Option<&str>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{t} · Convoy</title>\
         <link rel=\"icon\" href=\"/dash/icon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/dash/style.css\">\
         <script src=\"/dash/app.js\" defer></script></head><body>\
         <a class=\"skip\" href=\"#content\">Skip to content</a>\
         <header class=\"top\"><a class=\"brand\" href=\"/\">Convoy</a>",
        t = esc(title)
    );
    if let Some(csrf) = nav {
        let _ = write!(
            out,
            "<nav aria-label=\"Views\"><a href=\"/\">Fleet</a><a href=\"/diff\">Diff</a>\
             <a href=\"/history\">History</a></nav>\
             <span id=\"conn\" class=\"conn\" role=\"status\" aria-live=\"polite\"></span>\
             <form method=\"post\" action=\"/logout\" class=\"inline\">{}\
             <button type=\"submit\" class=\"link\">Log out</button></form>",
            csrf_input(csrf)
        );
    }
    let _ = writeln!(
        out,
        "</header><main id=\"content\" tabindex=\"-1\">{body}</main></body></html>"
    );
    out
}

/// The hidden form field that carries the session's CSRF token (empty for bearer clients).
pub fn csrf_input(csrf: &str) -> String {
    if csrf.is_empty() {
        return String::new();
    }
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// The login form; `error` says why the last attempt failed.
pub fn login(error: Option<&str>) -> String {
    let mut body = String::from(
        "<section class=\"card login\"><h1>Log in</h1>\
         <p>Give the daemon's API token (the content of its <code>--api-token-file</code>).</p>",
    );
    if let Some(e) = error {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    body.push_str(
        "<form method=\"post\" action=\"/login\">\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" \
         required autofocus>\
         <button type=\"submit\">Log in</button></form></section>",
    );
    page("Log in", None, &body)
}

/// The page said when the dashboard is not served, and why.
pub fn not_served(why: &str) -> String {
    page(
        "Not served",
        None,
        &format!(
            "<section class=\"card\"><h1>The dashboard is not served</h1><p>{}</p></section>",
            esc(why)
        ),
    )
}

/// `convoy diff`'s text as a block, each line classed by its sign (colour only; the text is
/// exactly what the command prints).
pub fn diff_block(text: &str) -> String {
    let mut out = String::from("<pre class=\"diff\">");
    for line in text.lines() {
        let class = match line.trim_start().chars().next() {
            Some('+') => "add",
            Some('-') => "del",
            Some('~') => "chg",
            Some('!') => "warn",
            Some('?') => "pend",
            _ => "",
        };
        if class.is_empty() {
            let _ = writeln!(out, "{}", esc(line));
        } else {
            let _ = writeln!(out, "<span class=\"{class}\">{}</span>", esc(line));
        }
    }
    out.push_str("</pre>");
    out
}

/// Bytes as people read them (`1.5 GiB`).
pub fn bytes(n: i64) -> String {
    if n <= 0 {
        return "–".into();
    }
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(
            esc("<script>alert(\"x\")</script> & 'y'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(esc("plain-name_1.2"), "plain-name_1.2");
        assert_eq!(esc("é ☃"), "é ☃");
    }

    #[test]
    fn commit_links_take_only_plain_ids() {
        let c = "0123456789abcdef0123";
        assert_eq!(
            commit_link(c),
            "<a class=\"commit\" href=\"/commit/0123456789abcdef0123\"><code>0123456789ab</code></a>"
        );
        let evil = "\"><script>x</script>";
        let l = commit_link(evil);
        assert!(!l.contains("<script>") && !l.contains("href"), "{l}");
        assert_eq!(commit_link(""), "–");
    }

    #[test]
    fn the_diff_is_the_text_escaped_and_classed() {
        let d = diff_block("fleet `f` at c\n\nhost a\n  + web-app-1 (missing)\n  - <old>\n");
        assert!(
            d.contains("<span class=\"add\">  + web-app-1 (missing)</span>"),
            "{d}"
        );
        assert!(
            d.contains("<span class=\"del\">  - &lt;old&gt;</span>"),
            "{d}"
        );
        assert!(d.contains("fleet `f` at c\n"));
    }

    #[test]
    fn pages_load_only_their_own_assets() {
        let p = page("x<y", Some("tok"), "<p>body</p>");
        assert!(p.contains("<title>x&lt;y · Convoy</title>"));
        assert!(p.contains("value=\"tok\""));
        assert!(!p.contains("http:") && !p.contains("https:") && !p.contains("//cdn"));
        assert!(!p.contains("<script>"), "no inline script: {p}");
        assert!(!p.contains("style=\""), "no inline style");
        assert_eq!(bytes(0), "–");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }
}
