//! `convoy logs`: the logs of every matching replica on every host, merged in time order, each
//! line prefixed with `host/stack-service-slot`; with `-f` it follows, picks up replicas that
//! start, and says when one stops.
//!
//! The engine is always asked for timestamps, which are the merge key (and shown only with
//! `--timestamps`). Without `-f` every log is read to its end and the lines are sorted, so the
//! order is exact; while following, lines wait in a short window (`HOLD`) and leave it in time
//! order, so lines from hosts whose answers arrive within that window come out in order. An
//! unreachable host is named on stderr and the others go on; the exit code is then 1.
//!
//! The container's own lines are printed as they are (they are the container's); nothing this
//! command adds (prefixes, notes, engine errors) may carry a secret, so notes go through
//! `logging::mask_known`. It never changes anything on a host.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use futures_util::{StreamExt, TryStreamExt};

use super::logging::mask_known;
use super::{emit, load_repo, style, Outcome};
use crate::cli::LogsArgs;
use crate::infra::docker::{Engine, ListedContainer, LogLine, LogRange};
use crate::infra::fleet::{ConnectOptions, Fleet};
use crate::model::observed::RunState;
use crate::reconcile::Loaded;

/// How long a followed line may wait for older lines from other replicas.
const HOLD: Duration = Duration::from_millis(200);
/// How often the fleet is listed for replicas that started while following.
const POLL: Duration = Duration::from_secs(1);
/// Logs read at once (each is one request over the host's connection).
const READ_CONCURRENCY: usize = 32;
/// Output is written in pieces of about this size.
const FLUSH_BYTES: usize = 64 * 1024;

/// `STACK[/SERVICE[/SLOT]]`, each part optional from the right.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Selector {
    pub stack: Option<String>,
    pub service: Option<String>,
    pub slot: Option<String>,
}

impl Selector {
    pub fn parse(text: Option<&str>) -> Result<Selector> {
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return Ok(Selector::default());
        };
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            bail!("`{text}` is not STACK, STACK/SERVICE or STACK/SERVICE/SLOT");
        }
        Ok(Selector {
            stack: parts.first().map(|s| s.to_string()),
            service: parts.get(1).map(|s| s.to_string()),
            slot: parts.get(2).map(|s| s.to_string()),
        })
    }

    pub fn matches(&self, c: &ListedContainer) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.stack, &c.stack) && is(&self.service, &c.service) && is(&self.slot, &c.slot)
    }
}

/// Connects only `hosts` of the fleet (all when empty), so that `--host` waits for no other.
/// An unknown host name is an error.
pub(super) async fn connect_selected(
    loaded: &Loaded,
    hosts: &[String],
    state_dir: &Path,
) -> Result<Fleet> {
    let mut desired = loaded.desired.clone();
    if !hosts.is_empty() {
        for h in hosts {
            if !desired.hosts.contains_key(h) {
                let known: Vec<&str> = desired.hosts.keys().map(String::as_str).collect();
                bail!("no host `{h}` in the fleet (hosts: {})", known.join(", "));
            }
        }
        desired.hosts.retain(|name, _| hosts.contains(name));
    }
    let opts = ConnectOptions::for_command(state_dir, &desired.settings);
    Ok(Fleet::connect(&desired, &opts).await)
}

/// Every host's containers of `fleet` that `sel` matches, in host then name order, and the
/// hosts that could not be listed with the reason.
pub(super) async fn list_matching(
    engines: &BTreeMap<String, Engine>,
    fleet: &str,
    sel: &Selector,
) -> (Vec<(String, ListedContainer)>, BTreeMap<String, String>) {
    let lists = futures_util::future::join_all(
        engines
            .iter()
            .map(|(name, e)| async move { (name.clone(), e.list_owned(fleet).await) }),
    )
    .await;
    let mut found = Vec::new();
    let mut failed = BTreeMap::new();
    for (host, r) in lists {
        match r {
            Ok(list) => {
                let mut mine: Vec<ListedContainer> =
                    list.into_iter().filter(|c| sel.matches(c)).collect();
                mine.sort_by(|a, b| a.name.cmp(&b.name));
                found.extend(mine.into_iter().map(|c| (host.clone(), c)));
            }
            Err(e) => {
                failed.insert(host, e.to_string());
            }
        }
    }
    (found, failed)
}

/// Names an unreachable host on stderr, masked.
pub(super) fn note_unreachable(host: &str, reason: &str) {
    eprintln!(
        "convoy: host `{host}` is unreachable: {}",
        mask_known(reason)
    );
}

pub async fn run(args: &LogsArgs, state_dir: &Path) -> Result<Outcome> {
    let sel = Selector::parse(args.target.as_deref())?;
    let now = now_ns();
    let since = args
        .since
        .as_deref()
        .map(|s| parse_time(s, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| parse_time(s, now))
        .transpose()?;
    let Some(loaded) = load_repo(&args.repo)? else {
        return Ok(Outcome::Invalid);
    };
    let fleet = connect_selected(&loaded, &args.hosts, state_dir).await?;
    let result = logs(&fleet, &loaded, args, &sel, Bounds { since, until }).await;
    fleet.close().await;
    result
}

#[derive(Debug, Clone, Copy)]
struct Bounds {
    since: Option<i128>,
    until: Option<i128>,
}

impl Bounds {
    fn holds(&self, ns: i128) -> bool {
        self.since.is_none_or(|s| ns >= s) && self.until.is_none_or(|u| ns < u)
    }
}

/// One replica's log being read: where it is and how its lines are shown.
#[derive(Debug, Clone)]
struct Source {
    host: String,
    id: String,
    prefix: String,
}

async fn logs(
    fleet: &Fleet,
    loaded: &Loaded,
    args: &LogsArgs,
    sel: &Selector,
    bounds: Bounds,
) -> Result<Outcome> {
    let mut unreachable = false;
    for (host, e) in &fleet.failed {
        note_unreachable(host, &e.reason);
        unreachable = true;
    }
    let (found, failed) = list_matching(&fleet.engines, &loaded.desired.fleet, sel).await;
    for (host, reason) in &failed {
        note_unreachable(host, reason);
        unreachable = true;
    }
    if found.is_empty() && !unreachable {
        if let Some(stack) = &sel.stack {
            if !loaded.desired.stacks.contains_key(stack) {
                let known: Vec<&str> = loaded.desired.stacks.keys().map(String::as_str).collect();
                eprintln!(
                    "error: no stack `{stack}` in the repository and no container of it runs (stacks: {})",
                    known.join(", ")
                );
                return Ok(Outcome::Invalid);
            }
        }
        eprintln!("convoy: no replica matches");
    }
    let mut printer = Printer::new(args.timestamps);
    for (host, c) in &found {
        printer.width = printer.width.max(host.len() + 1 + c.name.len());
    }
    let started = now_ns();
    // Read every log to its end, in parallel, and merge by time.
    let range = LogRange {
        follow: false,
        since: bounds.since.map_or(0, floor_secs),
        until: bounds.until.map_or(0, ceil_secs),
        tail: args.tail,
    };
    let reads = futures_util::stream::iter(found.iter().enumerate().map(|(i, (host, c))| {
        let engine = fleet.engines[host].clone();
        async move {
            let lines: Result<Vec<LogLine>, _> = engine.log_lines(&c.id, range).try_collect().await;
            (i, lines)
        }
    }))
    .buffer_unordered(READ_CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    let mut merged: Vec<(i128, usize, usize, LogLine)> = Vec::new();
    let mut last_seen: HashMap<String, i128> = HashMap::new();
    let mut read_failed: BTreeSet<String> = BTreeSet::new();
    for (i, lines) in reads {
        let (host, c) = &found[i];
        match lines {
            Ok(lines) => {
                for (n, line) in lines.into_iter().enumerate() {
                    let ns = line_ns(&line);
                    if !bounds.holds(ns) {
                        continue;
                    }
                    let last = last_seen.entry(c.id.clone()).or_insert(ns);
                    *last = (*last).max(ns);
                    merged.push((ns, i, n, line));
                }
            }
            Err(e) => {
                if read_failed.insert(host.clone()) {
                    note_unreachable(host, &e.to_string());
                }
                unreachable = true;
            }
        }
    }
    // Stable in (time, replica order, line order): equal timestamps keep each log's order.
    merged.sort_by_key(|a| (a.0, a.1, a.2));
    let sources: Vec<Source> = found
        .iter()
        .map(|(host, c)| Source {
            host: host.clone(),
            id: c.id.clone(),
            prefix: format!("{host}/{}", c.name),
        })
        .collect();
    for (_, i, _, line) in &merged {
        printer.line(&sources[*i], line);
    }
    printer.flush();
    if args.follow {
        let running: Vec<(Source, Option<i128>)> = found
            .iter()
            .zip(&sources)
            .filter(|((host, c), _)| c.running && !read_failed.contains(host))
            .map(|((_, c), s)| (s.clone(), last_seen.get(&c.id).copied()))
            .collect();
        let known: HashMap<String, Source> =
            sources.iter().map(|s| (s.id.clone(), s.clone())).collect();
        let follow = Follow {
            fleet,
            fleet_id: &loaded.desired.fleet,
            sel,
            bounds,
            started,
        };
        if follow.run(&mut printer, running, known, last_seen).await {
            unreachable = true;
        }
    }
    Ok(if unreachable {
        Outcome::SomeUnreachable
    } else {
        Outcome::AllReachable
    })
}

/// A followed line waiting in the window: (time, arrival order, arrival, replica ID, line),
/// smallest time first.
type Held = Reverse<(i128, u64, Instant, String, LogLine)>;

/// What a follower task reports.
enum Event {
    Line(String, LogLine),
    Ended(String, Option<String>),
}

struct Follow<'a> {
    fleet: &'a Fleet,
    fleet_id: &'a str,
    sel: &'a Selector,
    bounds: Bounds,
    /// When the first read began (this machine's clock): a replica with no line then is
    /// followed from here.
    started: i128,
}

impl Follow<'_> {
    /// Follows until interrupted (or, with `--until`, until every follower has ended after
    /// that time). Returns whether some host could not be read.
    async fn run(
        &self,
        printer: &mut Printer,
        running: Vec<(Source, Option<i128>)>,
        mut known: HashMap<String, Source>,
        printed: HashMap<String, i128>,
    ) -> bool {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(4096);
        let mut tasks = tokio::task::JoinSet::new();
        let mut active: BTreeSet<String> = BTreeSet::new();
        // The last line printed of each replica: a restarted one goes on after it.
        let mut last: HashMap<String, i128> = printed;
        let mut down: BTreeSet<String> = BTreeSet::new();
        let mut unreachable = false;
        for (src, seen) in running {
            // Lines already printed are skipped by time: the engine's `since` is in seconds.
            let from = seen.map_or(self.bounds.since.unwrap_or(0).max(self.started), |s| s + 1);
            last.insert(src.id.clone(), from - 1);
            active.insert(src.id.clone());
            self.spawn(&mut tasks, &tx, src, from);
        }
        let mut buffer: BinaryHeap<Held> = BinaryHeap::new();
        let mut seq: u64 = 0;
        let mut poll = tokio::time::interval(POLL);
        let mut drain = tokio::time::interval(Duration::from_millis(50));
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                _ = &mut ctrl_c => break,
                Some(ev) = rx.recv() => match ev {
                    Event::Line(id, line) => {
                        let ns = line_ns(&line);
                        let floor = last.get(&id).copied().unwrap_or(i128::MIN);
                        if ns <= floor || !self.bounds.holds(ns) {
                            continue;
                        }
                        last.insert(id.clone(), ns);
                        seq += 1;
                        buffer.push(Reverse((ns, seq, Instant::now(), id, line)));
                    }
                    Event::Ended(id, error) => {
                        active.remove(&id);
                        let Some(src) = known.get(&id) else { continue };
                        match error {
                            Some(reason) => {
                                if down.insert(src.host.clone()) {
                                    note_unreachable(&src.host, &reason);
                                }
                                unreachable = true;
                            }
                            None => {
                                let engine = &self.fleet.engines[&src.host];
                                match engine.status(&id).await {
                                    // The host went away, not the container.
                                    Err(e) => {
                                        if down.insert(src.host.clone()) {
                                            note_unreachable(&src.host, &e.to_string());
                                        }
                                        unreachable = true;
                                    }
                                    Ok(status) => {
                                        if status.is_none_or(|s| s.state != RunState::Running) {
                                            // Whatever is buffered came before the stop.
                                            release(&mut buffer, printer, &known, None);
                                            printer.note(src, status.map(|s| s.exit_code));
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
                _ = poll.tick() => {
                    if stdout_gone() {
                        // `convoy logs -f | head`: the reader has what it wanted.
                        break;
                    }
                    let (found, failed) = list_matching(&self.fleet.engines, self.fleet_id, self.sel).await;
                    for (host, reason) in &failed {
                        if down.insert(host.clone()) {
                            note_unreachable(host, reason);
                        }
                        unreachable = true;
                    }
                    for (host, c) in found {
                        down.remove(&host);
                        if !c.running || active.contains(&c.id) {
                            continue;
                        }
                        // New: from its start; seen before (restarted): after its last line.
                        let from = match last.get(&c.id) {
                            Some(l) => l + 1,
                            None => self.bounds.since.unwrap_or(0),
                        };
                        last.entry(c.id.clone()).or_insert(from - 1);
                        let src = known.entry(c.id.clone()).or_insert_with(|| Source {
                            host: host.clone(),
                            id: c.id.clone(),
                            prefix: format!("{host}/{}", c.name),
                        }).clone();
                        printer.width = printer.width.max(src.prefix.len());
                        active.insert(c.id.clone());
                        self.spawn(&mut tasks, &tx, src, from);
                    }
                    if self.bounds.until.is_some_and(|u| now_ns() >= u) && active.is_empty() {
                        break;
                    }
                }
                _ = drain.tick() => {
                    release(&mut buffer, printer, &known, Some(HOLD));
                }
            }
        }
        release(&mut buffer, printer, &known, None);
        tasks.abort_all();
        unreachable
    }

    fn spawn(
        &self,
        tasks: &mut tokio::task::JoinSet<()>,
        tx: &tokio::sync::mpsc::Sender<Event>,
        src: Source,
        from: i128,
    ) {
        let engine = self.fleet.engines[&src.host].clone();
        let tx = tx.clone();
        let range = LogRange {
            follow: true,
            since: floor_secs(from),
            until: self.bounds.until.map_or(0, ceil_secs),
            tail: None,
        };
        tasks.spawn(async move {
            let mut lines = Box::pin(engine.log_lines(&src.id, range));
            let mut error = None;
            while let Some(item) = lines.next().await {
                match item {
                    Ok(line) => {
                        if tx.send(Event::Line(src.id.clone(), line)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            let _ = tx.send(Event::Ended(src.id.clone(), error)).await;
        });
    }
}

/// Prints buffered lines in time order: those that waited `hold` at the head, or all.
fn release(
    buffer: &mut BinaryHeap<Held>,
    printer: &mut Printer,
    known: &HashMap<String, Source>,
    hold: Option<Duration>,
) {
    while let Some(Reverse((_, _, arrived, _, _))) = buffer.peek() {
        if hold.is_some_and(|h| arrived.elapsed() < h) {
            break;
        }
        let Some(Reverse((_, _, _, id, line))) = buffer.pop() else {
            break;
        };
        if let Some(src) = known.get(&id) {
            printer.line(src, &line);
        }
    }
    printer.flush();
}

/// Formats lines with their prefix, coloured per replica on a terminal.
struct Printer {
    timestamps: bool,
    colour: bool,
    width: usize,
    colours: HashMap<String, &'static str>,
    out: String,
}

const PALETTE: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

impl Printer {
    fn new(timestamps: bool) -> Printer {
        Printer {
            timestamps,
            colour: style().colour,
            width: 0,
            colours: HashMap::new(),
            out: String::new(),
        }
    }

    fn prefix(&mut self, src: &Source) -> String {
        let padded = format!("{:<w$}", src.prefix, w = self.width);
        if !self.colour {
            return padded;
        }
        let n = self.colours.len();
        let code = *self
            .colours
            .entry(src.prefix.clone())
            .or_insert(PALETTE[n % PALETTE.len()]);
        format!("\x1b[{code}m{padded}\x1b[0m")
    }

    fn line(&mut self, src: &Source, line: &LogLine) {
        let prefix = self.prefix(src);
        self.out.push_str(&prefix);
        self.out.push_str(" | ");
        if self.timestamps {
            self.out.push_str(&line.time);
            self.out.push(' ');
        }
        self.out.push_str(&line.text);
        self.out.push('\n');
        if self.out.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// "host/name exited with code N", in the stream, as `docker compose logs -f` says it.
    fn note(&mut self, src: &Source, code: Option<i64>) {
        let prefix = self.prefix(src);
        match code {
            Some(c) => self
                .out
                .push_str(&format!("{} exited with code {c}\n", prefix.trim_end())),
            None => self
                .out
                .push_str(&format!("{} is gone\n", prefix.trim_end())),
        }
        self.flush();
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            emit(&std::mem::take(&mut self.out));
        }
    }
}

/// Whether stdout is a pipe whose reader has gone: nothing written can arrive any more, so a
/// follow ends instead of running unseen (SIGPIPE is ignored by Rust programs).
fn stdout_gone() -> bool {
    let mut fds = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one pollfd we own, a zero timeout.
    let n = unsafe { libc::poll(&mut fds, 1, 0) };
    n > 0 && fds.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

fn line_ns(line: &LogLine) -> i128 {
    parse_rfc3339(&line.time).unwrap_or(0)
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn floor_secs(ns: i128) -> i64 {
    ns.div_euclid(1_000_000_000).max(0) as i64
}

fn ceil_secs(ns: i128) -> i64 {
    (ns + 999_999_999).div_euclid(1_000_000_000).max(0) as i64
}

/// `--since`/`--until`: a duration ago (`90s`, `10m`, `2h`, `1d`, `1h30m`, a bare number of
/// seconds) or an RFC 3339 time, as nanoseconds since the epoch.
fn parse_time(text: &str, now: i128) -> Result<i128> {
    if let Some(ns) = parse_rfc3339(text) {
        return Ok(ns);
    }
    if let Some(d) = parse_duration(text) {
        return Ok(now - d as i128);
    }
    bail!("`{text}` is neither a duration (10m, 2h, 30s) nor an RFC 3339 time")
}

fn parse_duration(text: &str) -> Option<u128> {
    if let Ok(secs) = text.parse::<u64>() {
        return Some(secs as u128 * 1_000_000_000);
    }
    let mut total: u128 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    Some(total)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` → nanoseconds since the epoch.
fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let f = &frac[..digits.min(9)];
        nanos = format!("{f:0<9}").parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = rest.get(1..)?;
            let (oh, om) = o.split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_and_durations_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:01.5Z"),
            Some(951_868_801_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2000-03-01T01:00:01.5+01:00"),
            parse_rfc3339("2000-03-01T00:00:01.5Z")
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        let now = 100_000_000_000_000;
        assert_eq!(parse_time("10m", now).unwrap(), now - 600_000_000_000);
        assert_eq!(parse_time("1h30m", now).unwrap(), now - 5_400_000_000_000);
        assert_eq!(parse_time("5", now).unwrap(), now - 5_000_000_000);
        assert!(parse_time("10x", now).is_err());
    }

    #[test]
    fn selectors_match_stack_service_and_slot() {
        let c = ListedContainer {
            id: "i".into(),
            name: "web-app-2".into(),
            stack: "web".into(),
            service: "app".into(),
            slot: "2".into(),
            running: true,
        };
        assert!(Selector::parse(None).unwrap().matches(&c));
        assert!(Selector::parse(Some("web")).unwrap().matches(&c));
        assert!(Selector::parse(Some("web/app/2")).unwrap().matches(&c));
        assert!(!Selector::parse(Some("web/app/1")).unwrap().matches(&c));
        assert!(!Selector::parse(Some("web/db")).unwrap().matches(&c));
        assert!(Selector::parse(Some("a/b/c/d")).is_err());
        assert!(Selector::parse(Some("a//c")).is_err());
    }
}
