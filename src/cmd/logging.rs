//! Logging on stderr: the level filter that `-v`/`-vv` and `RUST_LOG` choose, and the writer
//! every log line goes through, which masks each known secret value ("secrets stay masked").
//!
//! The writer masks what was formatted, so it holds for every layer, every target (bollard's
//! dumps of create bodies and inspect responses included) and both formats, whatever the code
//! that logged did. It masks the values `reconcile` has registered (`reconcile::known_secrets`)
//! in the forms a log line can carry them: as they are, JSON-escaped (request bodies, `--log-format
//! json`), `Debug`-escaped (`?` fields, `Bytes`), and those escapes of each other. It must not
//! decide what is secret (the manifest does), drop a line, or split one line into two writes.
//!
//! The cost: every log line is scanned for every form of every known value, so a line costs
//! time in proportion to its length times the number of forms (a few per value, more for values
//! with quotes, backslashes or control characters). Every non-empty value is masked wherever it
//! occurs, also inside unrelated words: a short value such as `abcd` masks `abcd` in any line.
//! Values the manifest does not collect (it leaves out ones shorter than four characters) are
//! not known here either.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;
use crate::reconcile::known_secrets;

/// What replaces a secret value in a log line, as in every other output.
const MASK: &[u8] = b"(secret)";

/// Installs the process's subscriber: Convoy's own level from `-v` (info) or `-vv` (debug),
/// other crates at warn, `RUST_LOG` instead of both when set (`RUST_LOG=bollard=debug`), and
/// every line through `MaskedStderr`.
pub fn init(verbose: u8, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_directives(verbose)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MaskedStderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The filter without `RUST_LOG`: third-party debug output (bollard dumps whole request and
/// response bodies) is off unless asked for by target.
pub fn default_directives(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn",
        1 => "warn,convoy=info",
        _ => "warn,convoy=debug",
    }
}

/// `text` with every known secret value masked, for what reaches stderr outside the log
/// writer (the last error line of `main`).
pub fn mask_known(text: &str) -> String {
    let masked = mask_bytes(text.as_bytes(), &current_forms());
    String::from_utf8(masked).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
}

/// Makes one `MaskingWriter` over stderr per log event.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskingWriter<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter::new(io::stderr(), current_forms())
    }
}

/// Collects what is written, and writes it on to `inner` masked: complete lines on `flush`,
/// everything on drop. Nothing reaches `inner` before it is masked whole, so a value split over
/// two `write` calls is still found (tracing writes one event per writer, then drops it).
pub struct MaskingWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
    forms: Arc<Vec<Vec<u8>>>,
}

impl<W: Write> MaskingWriter<W> {
    /// A writer masking `forms` (longest first, as `forms_of_all` gives them).
    pub fn new(inner: W, forms: Arc<Vec<Vec<u8>>>) -> MaskingWriter<W> {
        MaskingWriter {
            inner,
            pending: Vec::new(),
            forms,
        }
    }

    /// Masks and writes the first `upto` pending bytes in one `write_all`.
    fn write_out(&mut self, upto: usize) -> io::Result<()> {
        if upto == 0 {
            return Ok(());
        }
        let rest = self.pending.split_off(upto);
        let masked = mask_bytes(&self.pending, &self.forms);
        self.pending = rest;
        self.inner.write_all(&masked)
    }
}

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// Writes the complete lines; a partial line waits for the rest of it (or the drop).
    fn flush(&mut self) -> io::Result<()> {
        let upto = self
            .pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        self.write_out(upto)?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for MaskingWriter<W> {
    fn drop(&mut self) {
        let all = self.pending.len();
        // Nowhere to report a failed write of a log line: stderr is where it would go.
        let _ = self.write_out(all).and_then(|()| self.inner.flush());
    }
}

/// The forms of the registered values, recomputed only when a value was added.
fn current_forms() -> Arc<Vec<Vec<u8>>> {
    type Cache = Option<(Arc<BTreeSet<String>>, Arc<Vec<Vec<u8>>>)>;
    static CACHE: Mutex<Cache> = Mutex::new(None);
    let known = known_secrets();
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((set, forms)) = cache.as_ref() {
        if Arc::ptr_eq(set, &known) {
            return forms.clone();
        }
    }
    let forms = Arc::new(forms_of_all(&known));
    *cache = Some((known, forms.clone()));
    forms
}

/// Every form of every non-empty value, longest first, so that a value containing another is
/// masked whole.
pub fn forms_of_all(values: &BTreeSet<String>) -> Vec<Vec<u8>> {
    let all: BTreeSet<Vec<u8>> = values
        .iter()
        .filter(|v| !v.is_empty())
        .flat_map(|v| forms_of(v))
        .collect();
    let mut forms: Vec<Vec<u8>> = all.into_iter().collect();
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms
}

/// How escapes nest in a log line: a JSON body inside bollard's `Bytes` dump inside a JSON log
/// line is three deep.
const ESCAPE_DEPTH: usize = 3;

/// One way a log line can escape a value.
type Escape = fn(&[u8]) -> Vec<u8>;

const ESCAPES: [Escape; 3] = [json_escape, str_debug_escape, bytes_debug_escape];

/// `value` as it is and as up to `ESCAPE_DEPTH` nested escapes of it can show it.
fn forms_of(value: &str) -> BTreeSet<Vec<u8>> {
    let mut all = BTreeSet::from([value.as_bytes().to_vec()]);
    let mut last = all.clone();
    for _ in 0..ESCAPE_DEPTH {
        let next: BTreeSet<Vec<u8>> = last
            .iter()
            .flat_map(|f| ESCAPES.iter().map(move |e| e(f)))
            .filter(|f| !all.contains(f))
            .collect();
        if next.is_empty() {
            break;
        }
        all.extend(next.iter().cloned());
        last = next;
    }
    all
}

/// Inside a JSON string (`serde_json`'s escapes, quotes left off).
fn json_escape(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let quoted = serde_json::to_string(text.as_ref()).unwrap_or_default();
    inner_of_quotes(quoted.as_bytes())
}

/// Inside a `{:?}` of a `str` (quotes left off).
fn str_debug_escape(raw: &[u8]) -> Vec<u8> {
    inner_of_quotes(format!("{:?}", String::from_utf8_lossy(raw)).as_bytes())
}

/// Inside a `{:?}` of `bytes::Bytes` (`b"..."`, which bollard logs request bodies as).
fn bytes_debug_escape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', b]),
            0 => out.extend_from_slice(b"\\0"),
            0x20..0x7f => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out
}

fn inner_of_quotes(quoted: &[u8]) -> Vec<u8> {
    quoted
        .strip_prefix(b"\"")
        .and_then(|q| q.strip_suffix(b"\""))
        .unwrap_or(quoted)
        .to_vec()
}

/// `text` with each of `forms` (longest first) replaced by `(secret)`.
fn mask_bytes(text: &[u8], forms: &[Vec<u8>]) -> Vec<u8> {
    let mut out = text.to_vec();
    for form in forms {
        if form.is_empty() || !contains(&out, form) {
            continue;
        }
        let mut next = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(form) {
                next.extend_from_slice(MASK);
                i += form.len();
            } else {
                next.push(out[i]);
                i += 1;
            }
        }
        out = next;
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(values: &[&str]) -> Arc<Vec<Vec<u8>>> {
        Arc::new(forms_of_all(
            &values.iter().map(|v| v.to_string()).collect(),
        ))
    }

    /// Writes `parts` one `write` call each through a writer masking `values`, then drops it.
    fn through(values: &[&str], parts: &[&str]) -> String {
        let mut out = Vec::new();
        {
            let mut w = MaskingWriter::new(&mut out, forms(values));
            for p in parts {
                w.write_all(p.as_bytes()).unwrap();
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_value_is_masked_wherever_it_occurs() {
        assert_eq!(
            through(&["hunter2-x"], &["a hunter2-x b hunter2-x\n"]),
            "a (secret) b (secret)\n"
        );
    }

    #[test]
    fn a_value_split_over_two_writes_is_masked() {
        assert_eq!(
            through(&["hunter2-x"], &["pw=hun", "ter2-x\n"]),
            "pw=(secret)\n"
        );
        // Across a flush, too: the partial line waits for its end.
        let mut out = Vec::new();
        {
            let mut w = MaskingWriter::new(&mut out, forms(&["hunter2-x"]));
            w.write_all(b"one\npw=hun").unwrap();
            w.flush().unwrap();
            w.write_all(b"ter2-x\n").unwrap();
            w.flush().unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "one\npw=(secret)\n");
    }

    #[test]
    fn a_flush_writes_complete_lines_and_the_drop_the_rest() {
        let mut out = Vec::new();
        let mut w = MaskingWriter::new(&mut out, forms(&["secret-x"]));
        w.write_all(b"line one\nline two").unwrap();
        w.flush().unwrap();
        drop(w);
        assert_eq!(String::from_utf8(out).unwrap(), "line one\nline two");
    }

    #[test]
    fn a_value_containing_another_is_masked_whole() {
        assert_eq!(
            through(&["abcd", "abcd-efgh"], &["x abcd-efgh y abcd\n"]),
            "x (secret) y (secret)\n"
        );
    }

    #[test]
    fn every_non_empty_value_is_masked_and_nothing_else() {
        assert_eq!(through(&["", "tok1"], &["tok1 tok2\n"]), "(secret) tok2\n");
        assert_eq!(through(&[], &["nothing known\n"]), "nothing known\n");
    }

    #[test]
    fn a_value_with_quotes_or_backslashes_is_masked_in_json_logs() {
        let value = r#"pa"ss\wd-1"#;
        // As `--log-format json` writes a field holding it.
        let line = format!("{}\n", serde_json::json!({ "fields": { "body": value } }));
        assert!(line.contains(r#"pa\"ss\\wd-1"#), "{line}");
        let masked = through(&[value], &[&line]);
        assert!(!masked.contains("wd-1"), "{masked}");
        let doc: serde_json::Value = serde_json::from_str(&masked).unwrap();
        assert_eq!(doc["fields"]["body"], "(secret)");
    }

    #[test]
    fn a_value_inside_a_logged_json_body_is_masked_in_both_formats() {
        let value = "tok\"en\\-2";
        // bollard logs a create body, JSON already, as the message.
        let body = serde_json::json!({ "Env": [format!("API_TOKEN={value}")] }).to_string();
        let text_line = format!("DEBUG bollard::docker: {body}\n");
        let json_line = format!("{}\n", serde_json::json!({ "fields": { "message": body } }));
        // And its trace of the request as `Bytes`, inside a JSON log line.
        let bytes_dump = format!("{:?}", bytes::Bytes::from(body.clone()));
        let json_bytes_line = format!(
            "{}\n",
            serde_json::json!({ "fields": { "message": bytes_dump } })
        );
        for line in [text_line, json_line, json_bytes_line] {
            let masked = through(&[value], &[&line]);
            assert!(!masked.contains("en\\"), "{line} became {masked}");
            assert!(masked.contains("API_TOKEN=(secret)"), "{masked}");
        }
    }

    #[test]
    fn a_value_in_debug_output_is_masked() {
        let value = "line1\nline2\t\"q\"";
        let line = format!("env={:?}\n", vec![value]);
        let masked = through(&[value], &[&line]);
        assert_eq!(masked, "env=[\"(secret)\"]\n");
    }

    #[test]
    fn non_ascii_values_are_masked_in_every_escape() {
        let value = "pässwörd-ü";
        let bytes_dump = format!("{:?}\n", bytes::Bytes::from(value));
        assert_eq!(through(&[value], &[&bytes_dump]), "b\"(secret)\"\n");
        assert_eq!(through(&[value], &[&format!("{value}\n")]), "(secret)\n");
    }

    /// A log destination the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_subscriber_writes_every_target_masked_in_both_formats() {
        let value = r#"db"pw\-7"#;
        for json in [false, true] {
            let out = Shared::default();
            let (sink, masks) = (out.clone(), forms(&[value]));
            let make = move || MaskingWriter::new(sink.clone(), masks.clone());
            let builder = tracing_subscriber::fmt()
                .with_writer(make)
                .with_ansi(false)
                .with_max_level(tracing::Level::TRACE);
            let log = || {
                let env = vec![format!("DB_PASSWORD={value}")];
                tracing::debug!(target: "bollard::docker", "{}", serde_json::json!({ "Env": env }));
                tracing::info!(env = ?env, secret = %value, "created");
            };
            if json {
                tracing::subscriber::with_default(builder.json().finish(), log);
            } else {
                tracing::subscriber::with_default(builder.finish(), log);
            }
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            assert_eq!(text.lines().count(), 2, "{text}");
            assert!(!text.contains("pw\\"), "json={json}: {text}");
            assert_eq!(text.matches("(secret)").count(), 3, "json={json}: {text}");
        }
    }

    #[test]
    fn third_party_crates_stay_at_warn_unless_asked_for() {
        assert_eq!(default_directives(0), "warn");
        assert_eq!(default_directives(1), "warn,convoy=info");
        assert_eq!(default_directives(2), "warn,convoy=debug");
        assert_eq!(default_directives(3), "warn,convoy=debug");
    }
}
