//! What commands show, as text for people and JSON for programs: plans and apply reports
//! (`plan`), service status (`status`) and hosts (`hosts`). Every JSON document carries
//! `"version": 1`, and fields are only ever added within a version.
//!
//! Pure: a value in, a `String` out. Colour is a parameter (the caller knows whether stdout is
//! a terminal). Printing is the command layer's job, never this module's.

pub mod adopt;
pub mod export;
pub mod history;
pub mod hosts;
pub mod jobs;
pub mod notify;
pub mod plan;
pub mod status;

pub use plan::{apply_json, apply_text, plan_json, plan_text};

/// ANSI colour on or off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}
