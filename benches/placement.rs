//! Benchmark placeholder: filled in by the placement benchmark work.

fn main() {}
