//! Catalog of known Edge TPU models.
//!
//! Not implemented yet: the catalog manifest and `models fetch` are planned work. This crate never
//! holds model binaries; models are fetched into a cache directory.
#![forbid(unsafe_code)]
