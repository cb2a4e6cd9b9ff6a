//! The parts of the `baobab` binary other crates need: the `baobab.toml` parser, reached by
//! the fuzz targets (`fuzz/`). Everything else of the binary stays in `main.rs`'s modules.

pub mod config;
