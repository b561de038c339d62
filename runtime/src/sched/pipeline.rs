//! Pipelines: being written.
