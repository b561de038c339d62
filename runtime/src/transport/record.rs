//! Record and replay of USB sessions (JSON lines). Being written.
