//! Benchmarks live here; the load generator arrives with its own issue.
