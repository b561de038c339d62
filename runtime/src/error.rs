//! Errors of the runtime: one enum, each variant naming the thing that failed, and a coarse
//! [`ErrorKind`] for callers (and the CLI) that decide what to do or what to advise.

use std::fmt;
use std::path::PathBuf;

/// Result alias of the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Coarse classification of an [`Error`], stable across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file or device does not exist.
    NotFound,
    /// The process may not open a file or device.
    PermissionDenied,
    /// A model file is malformed: the flatbuffer, the Edge TPU package or a value in them.
    InvalidModel,
    /// Valid input that this runtime cannot run (yet), e.g. a too new package or a multi-chip model.
    Unsupported,
    /// A caller-supplied value (input size, tensor index, option) is wrong, or an op met a value
    /// it cannot compute with (such as an integer division by zero).
    InvalidArgument,
    /// Any other I/O failure.
    Io,
    /// A device is held by another process or driver.
    Busy,
    /// A device went away (unplugged, reset, re-enumerated).
    Disconnected,
    /// A device did not answer in time.
    Timeout,
    /// A device answered something the protocol does not allow (or refused a request).
    Protocol,
    /// A device reported an error of its own (a fatal-error interrupt, a failed firmware download).
    DeviceFault,
}

/// Which kind of device an [`Error::Device`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceKind {
    /// A Coral USB Accelerator (or a simulated one).
    Usb,
    /// A PCIe Edge TPU: M.2 or Mini-PCIe card, Dev Board (or a simulated one).
    Pci,
    /// No one device: the runtime's scheduler (no device to run on, shutting down).
    Runtime,
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Usb => "USB",
            DeviceKind::Pci => "PCIe",
            DeviceKind::Runtime => "runtime",
        })
    }
}

/// Where in a model file an error was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Absolute byte offset in the model file (or in the buffer it was loaded from).
    pub offset: usize,
    /// The field or structure being read, e.g. `subgraphs[0].tensors[3].buffer`.
    pub field: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {} ({})", self.offset, self.field)
    }
}

/// Error of the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or mapping a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The model file is malformed.
    #[error("invalid model{}: at {location}: {reason}", source_name(.path))]
    InvalidModel {
        /// The model file, when it was opened by path.
        path: Option<PathBuf>,
        /// Where the problem is.
        location: Location,
        /// What is wrong, and where helpful what to do.
        reason: String,
    },
    /// The model is valid but this runtime cannot run it.
    #[error("unsupported model{}: {reason}", source_name(.path))]
    Unsupported {
        /// The model file, when it was opened by path.
        path: Option<PathBuf>,
        /// What is not supported, and what to do about it.
        reason: String,
    },
    /// A caller-supplied value is wrong, or an op cannot compute with the values it was given.
    #[error("{reason}")]
    InvalidArgument {
        /// What is wrong and what to do.
        reason: String,
    },
    /// Talking to a device failed.
    #[error("{device}: {reason}")]
    Device {
        /// The device (selection string or USB path and id).
        device: String,
        /// USB, PCIe or the runtime as a whole.
        device_kind: DeviceKind,
        /// What kind of failure.
        kind: ErrorKind,
        /// What happened.
        reason: String,
    },
}

fn source_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" {}", p.display()),
        None => String::new(),
    }
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Io,
            },
            Error::InvalidModel { .. } => ErrorKind::InvalidModel,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::Device { kind, .. } => *kind,
        }
    }

    /// The kind of device a device error is about; `None` for other errors.
    pub fn device_kind(&self) -> Option<DeviceKind> {
        match self {
            Error::Device { device_kind, .. } => Some(*device_kind),
            _ => None,
        }
    }

    /// The location in the model file, for [`ErrorKind::InvalidModel`] errors.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::InvalidModel { location, .. } => Some(location),
            _ => None,
        }
    }

    /// Attaches the model path (if the model has one) to an error made while parsing bytes.
    pub(crate) fn with_path(mut self, model_path: Option<&std::path::Path>) -> Self {
        match (&mut self, model_path) {
            (Error::InvalidModel { path, .. } | Error::Unsupported { path, .. }, Some(p)) if path.is_none() => {
                *path = Some(p.to_path_buf());
            }
            _ => {}
        }
        self
    }

    pub(crate) fn invalid(offset: usize, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidModel { path: None, location: Location { offset, field: field.into() }, reason: reason.into() }
    }

    pub(crate) fn argument(reason: impl Into<String>) -> Self {
        Error::InvalidArgument { reason: reason.into() }
    }

    pub(crate) fn device(
        device_kind: DeviceKind,
        device: impl Into<String>,
        kind: ErrorKind,
        reason: impl Into<String>,
    ) -> Self {
        Error::Device { device: device.into(), device_kind, kind, reason: reason.into() }
    }

    pub(crate) fn usb(device: impl Into<String>, kind: ErrorKind, reason: impl Into<String>) -> Self {
        Self::device(DeviceKind::Usb, device, kind, reason)
    }

    pub(crate) fn pci(device: impl Into<String>, kind: ErrorKind, reason: impl Into<String>) -> Self {
        Self::device(DeviceKind::Pci, device, kind, reason)
    }

    pub(crate) fn runtime(kind: ErrorKind, reason: impl Into<String>) -> Self {
        Self::device(DeviceKind::Runtime, "runtime", kind, reason)
    }

    pub(crate) fn unsupported(reason: impl Into<String>) -> Self {
        Error::Unsupported { path: None, reason: reason.into() }
    }
}
