//! Benchmark placeholder: filled in by the fleet benchmark work.

fn main() {}
