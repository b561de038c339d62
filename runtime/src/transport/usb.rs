//! The USB backend on rusb. Being written.
