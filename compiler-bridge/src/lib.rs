//! Bridge to Google's `edgetpu_compiler`.
//!
//! Not implemented yet: finding and running the compiler, parsing its log, and the offline
//! op-support check are planned work. The crate exists so that the workspace layout is final.
#![forbid(unsafe_code)]
