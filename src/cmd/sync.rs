//! `convoy sync --daemon URL [--allow-prune] [--force]`: asks a running daemon for a pass now
//! (`POST /api/v1/sync`) and prints one line. Exit 0 accepted, 2 unreachable, refused (a
//! `--force` that no sync window allows, `manual_sync: false`) or without `--daemon` (a
//! one-shot apply is `convoy apply`).
//!
//! It only asks: what the pass does is the daemon's, seen with `convoy status --daemon`.

use anyhow::Result;
use hyper::http::Method;

use super::client::{explain, unavailable, Client};
use super::{emit_line, Outcome};
use crate::cli::DaemonClientArgs;

pub async fn run(args: &DaemonClientArgs, allow_prune: bool, force: bool) -> Result<Outcome> {
    let Some(url) = &args.daemon else {
        eprintln!(
            "error: `convoy sync` asks a running daemon for a pass: give --daemon URL \
             (http://127.0.0.1:7878); to apply the repository without a daemon, run `convoy apply`"
        );
        return Ok(Outcome::Invalid);
    };
    let client = match Client::new(url, args.api_token_file.as_deref(), args.ca_file.as_deref()) {
        Ok(c) => c,
        Err(e) => return Ok(unavailable(&e.to_string())),
    };
    let path = match (allow_prune, force) {
        (true, true) => "/api/v1/sync?allow_prune=true&force=true",
        (true, false) => "/api/v1/sync?allow_prune=true",
        (false, true) => "/api/v1/sync?force=true",
        (false, false) => "/api/v1/sync",
    };
    let reply = match client.request(Method::POST, path).await {
        Ok(r) => r,
        Err(e) => return Ok(unavailable(&e.to_string())),
    };
    if reply.status != 202 {
        return Ok(unavailable(&explain(&client, &reply)));
    }
    emit_line(&format!(
        "sync requested from {}{}",
        client.url(),
        match (allow_prune, force) {
            (true, true) => " (deletions allowed and sync windows overridden for the held commit)",
            (true, false) => " (deletions allowed for the held commit)",
            (false, true) => " (sync windows overridden for the held commit)",
            (false, false) => "",
        }
    ));
    Ok(Outcome::Accepted)
}
