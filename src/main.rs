//! The `convoy` binary: parses arguments, runs the command, and owns the exit-code policy.

mod manifest;
mod spec;
mod ssh;

fn main() {
    std::process::exit(0);
}
