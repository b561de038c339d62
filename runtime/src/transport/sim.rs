//! The transfer-level simulator of a Coral USB Accelerator. Being written.
