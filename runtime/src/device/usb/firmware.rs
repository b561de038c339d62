//! Where the USB Accelerator's firmware image is found on this machine.
//!
//! The runtime does not ship the firmware: a path given by the caller (`--firmware PATH`) wins,
//! then the environment variable [`ENV_VAR`], then [`FILE_NAME`] in the per-user data directory
//! ([`data_dir`]), where `edgetpu firmware fetch` puts it.

use crate::{Error, ErrorKind, Result};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// sha256 of the single-endpoint firmware image (the one the runtime downloads by default).
pub const SINGLE_EP_SHA256: &str = "3b07311b174b81fd14fd2c887f40d646c0ebf2f140cc5ee5cf8befa0f3e3dc7f";
/// Length in bytes of the single-endpoint firmware image.
pub const SINGLE_EP_LEN: usize = 10783;
/// File name of the single-endpoint firmware image.
pub const FILE_NAME: &str = "apex_latest_single_ep.bin";
/// Environment variable naming the firmware file.
pub const ENV_VAR: &str = "EDGETPU_FIRMWARE";

/// What to do when the firmware is missing.
const HOW_TO_GET_IT: &str = "name it with UsbOptions::firmware or EDGETPU_FIRMWARE, or put it in the data directory";

/// The per-user data directory of the runtime: `$XDG_DATA_HOME/edgetpu` when `XDG_DATA_HOME`
/// is an absolute path, else `$HOME/.local/share/edgetpu`; `None` when neither is set.
pub fn data_dir() -> Option<PathBuf> {
    data_dir_from(std::env::var_os("XDG_DATA_HOME").as_deref(), std::env::var_os("HOME").as_deref())
}

/// [`data_dir`] from the given values of `XDG_DATA_HOME` and `HOME`.
pub fn data_dir_from(xdg_data_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    if let Some(xdg) = xdg_data_home.map(Path::new).filter(|p| p.is_absolute()) {
        return Some(xdg.join("edgetpu"));
    }
    let home = home.filter(|h| !h.is_empty())?;
    Some(Path::new(home).join(".local/share/edgetpu"))
}

/// The firmware file to use: `explicit` when given, else the file named by `EDGETPU_FIRMWARE`,
/// else [`FILE_NAME`] in [`data_dir`]. The file must exist; its content is not checked here.
///
/// A missing file is an error of kind [`ErrorKind::NotFound`] naming the path it looked at and
/// saying how to get the firmware.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    locate_from(explicit, std::env::var_os(ENV_VAR).as_deref(), data_dir().as_deref())
}

/// [`locate`] with the value of `EDGETPU_FIRMWARE` and the data directory given.
pub fn locate_from(explicit: Option<&Path>, env: Option<&OsStr>, data_dir: Option<&Path>) -> Result<PathBuf> {
    let (path, origin) = if let Some(p) = explicit {
        (p.to_path_buf(), "given with --firmware")
    } else if let Some(p) = env.filter(|v| !v.is_empty()) {
        (PathBuf::from(p), "named by EDGETPU_FIRMWARE")
    } else if let Some(dir) = data_dir {
        (dir.join(FILE_NAME), "the default location")
    } else {
        return Err(Error::usb(
            "Edge TPU firmware",
            ErrorKind::NotFound,
            format!("no firmware path: HOME and XDG_DATA_HOME are unset; {HOW_TO_GET_IT}"),
        ));
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(Error::usb(
            "Edge TPU firmware",
            ErrorKind::NotFound,
            format!("{} ({origin}) is not a file; {HOW_TO_GET_IT}", path.display()),
        )),
        Err(e) => {
            let kind = match e.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Io,
            };
            Err(Error::usb("Edge TPU firmware", kind, format!("{} ({origin}): {e}; {HOW_TO_GET_IT}", path.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgetpu-fwpath-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn data_dir_prefers_an_absolute_xdg_data_home() {
        let d = data_dir_from(Some(OsStr::new("/x/data")), Some(OsStr::new("/home/u")));
        assert_eq!(d, Some(PathBuf::from("/x/data/edgetpu")));
        let d = data_dir_from(Some(OsStr::new("relative")), Some(OsStr::new("/home/u")));
        assert_eq!(d, Some(PathBuf::from("/home/u/.local/share/edgetpu")));
        assert_eq!(
            data_dir_from(None, Some(OsStr::new("/home/u"))),
            Some(PathBuf::from("/home/u/.local/share/edgetpu"))
        );
        assert_eq!(data_dir_from(None, Some(OsStr::new(""))), None);
        assert_eq!(data_dir_from(None, None), None);
    }

    #[test]
    fn explicit_then_env_then_data_dir() {
        let dir = temp_dir("order");
        let a = dir.join("a.bin");
        let b = dir.join("b.bin");
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        std::fs::write(dir.join(FILE_NAME), b"c").unwrap();
        assert_eq!(locate_from(Some(&a), Some(b.as_os_str()), Some(&dir)).unwrap(), a);
        assert_eq!(locate_from(None, Some(b.as_os_str()), Some(&dir)).unwrap(), b);
        assert_eq!(locate_from(None, Some(OsStr::new("")), Some(&dir)).unwrap(), dir.join(FILE_NAME));
        assert_eq!(locate_from(None, None, Some(&dir)).unwrap(), dir.join(FILE_NAME));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_is_not_found_and_says_what_to_do() {
        let dir = temp_dir("missing");
        let missing = dir.join("nope.bin");
        // An explicit path that does not exist is an error, not a reason to look elsewhere.
        std::fs::write(dir.join(FILE_NAME), b"c").unwrap();
        let e = locate_from(Some(&missing), None, Some(&dir)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let text = e.to_string();
        assert!(text.contains("nope.bin") && text.contains("--firmware"), "{text}");
        assert!(text.contains("EDGETPU_FIRMWARE") && !text.contains("edgetpu firmware fetch"), "{text}");

        let empty = temp_dir("empty");
        let e = locate_from(None, None, Some(&empty)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains(FILE_NAME), "{e}");
        // A directory is not a firmware file.
        let e = locate_from(Some(&dir), None, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("is not a file"), "{e}");
        assert_eq!(locate_from(None, None, None).unwrap_err().kind(), ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&empty).unwrap();
    }
}
