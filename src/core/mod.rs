//! The pure planning core: placement (`schedule`), field-level drift (`drift`), the diff
//! (`plan`), and `pass`, the one function that turns a desired state, an observation, what a
//! daemon remembers of its hosts and the commit into a `Plan`.
//!
//! Architecture invariant: the planning core is pure. Nothing here does I/O, reads a clock,
//! draws a random number, uses tokio or iterates a `HashMap` where order shows; time, when it
//! matters, comes in as an argument. The tidy test holds it to that.

pub mod drift;
mod drift_more;
pub mod files;
pub mod frozen;
pub mod guard;
pub mod jobs;
pub mod pass;
pub mod plan;
pub mod proxy;
pub mod schedule;
#[cfg(test)]
pub mod testkit;
pub mod windows;
