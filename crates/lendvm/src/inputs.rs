//! The files a run reads (image, kernel, initrd) and writes (the serial
//! log), checked before anything is read or written.
//!
//! An input is `stat`ed first: it must be a regular file (a FIFO would
//! block, `/dev/zero` never ends), not empty, and no larger than the guest
//! RAM asked for (it has to fit there); only then is it opened, and the
//! read is bounded by the size seen, so a file that grows meanwhile cannot
//! make lendvm read more. A 2 GiB sparse initrd for 64 MiB of RAM is
//! refused by the `stat`, without reading a byte.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A path as it can be shown in a one-line message: as it is when it is
/// UTF-8 without control characters, else quoted with those bytes escaped.
pub fn shown(path: &Path) -> String {
    match path.to_str() {
        Some(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => format!("{:?}", path.as_os_str()),
    }
}

/// Why an input or output file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// `stat`, `open` or `read` failed.
    #[error("{}: cannot {doing} the {what}: {source}", shown(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// "image", "kernel", "initrd" or "serial log".
        what: &'static str,
        /// "read" or "create".
        doing: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// Not a regular file.
    #[error("{}: the {what} must be a regular file, this is a {kind}", shown(path))]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it was to be.
        what: &'static str,
        /// What it is.
        kind: &'static str,
    },
    /// A zero-byte file.
    #[error("{}: the {what} is empty (0 bytes)", shown(path))]
    Empty {
        /// The file.
        path: PathBuf,
        /// What it was to be.
        what: &'static str,
    },
    /// Larger than guest RAM.
    #[error(
        "{}: the {what} is {size} bytes ({size:#x}), more than the {ram} bytes ({ram:#x}) of guest RAM asked for (see --memory)",
        shown(path)
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What it was to be.
        what: &'static str,
        /// Its size.
        size: u64,
        /// Guest RAM.
        ram: u64,
    },
    /// The file changed between the check and the read.
    #[error(
        "{}: the {what} changed while lendvm read it (it was {was} bytes)",
        shown(path)
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// What it was to be.
        what: &'static str,
        /// Its size when checked.
        was: u64,
    },
}

/// An input file that passed the checks.
#[derive(Debug, Clone)]
pub struct Input {
    /// As given on the command line.
    pub path: PathBuf,
    /// "image", "kernel" or "initrd".
    pub what: &'static str,
    /// Bytes.
    pub size: u64,
    /// `(st_dev, st_ino)`: which file it is, whatever the name.
    pub id: (u64, u64),
}

fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Check an input by `stat` (following symbolic links): a regular,
/// non-empty file of at most `ram` bytes.
pub fn check(path: &Path, what: &'static str, ram: u64) -> Result<Input, InputError> {
    let meta = std::fs::metadata(path).map_err(|source| InputError::Io {
        path: path.into(),
        what,
        doing: "read",
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(InputError::NotRegular {
            path: path.into(),
            what,
            kind: kind(&meta),
        });
    }
    let input = Input {
        path: path.into(),
        what,
        size: meta.len(),
        id: (meta.dev(), meta.ino()),
    };
    if input.size == 0 {
        return Err(InputError::Empty {
            path: path.into(),
            what,
        });
    }
    if input.size > ram {
        return Err(InputError::TooLarge {
            path: path.into(),
            what,
            size: input.size,
            ram,
        });
    }
    Ok(input)
}

impl Input {
    /// Read the whole file, at most the size [`check`] saw: a file that
    /// was swapped or that grew or shrank since is refused.
    pub fn read(&self) -> Result<Vec<u8>, InputError> {
        let io = |source| InputError::Io {
            path: self.path.clone(),
            what: self.what,
            doing: "read",
            source,
        };
        let changed = || InputError::Changed {
            path: self.path.clone(),
            what: self.what,
            was: self.size,
        };
        // O_NONBLOCK: should a FIFO have replaced the file since the
        // check, opening it must not wait for a writer.
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.file_type().is_file() || (meta.dev(), meta.ino()) != self.id {
            return Err(changed());
        }
        let size = usize::try_from(self.size).map_err(|_| changed())?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(size).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("cannot allocate {size} bytes to read it into"),
            ))
        })?;
        // One byte more than expected tells a grown file from the rest.
        file.take(self.size + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() != size {
            return Err(changed());
        }
        Ok(bytes)
    }
}

/// Refuse an output file (`--serial file=PATH`) that is one of the inputs
/// (by `(st_dev, st_ino)`, so through any symbolic or hard link): creating
/// it would truncate the input. A path that does not exist yet is no input.
pub fn check_output(path: &Path, inputs: &[Input]) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let id = (meta.dev(), meta.ino());
    match inputs.iter().find(|i| i.id == id) {
        Some(i) => Err(format!(
            "--serial file={}: that file is the {} ({}); lendvm will not overwrite an input",
            shown(path),
            i.what,
            shown(&i.path)
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("lendvm-inputs-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn a_regular_file_that_fits_is_read_whole() {
        let p = temp("ok", b"0123456789");
        let i = check(&p, "initrd", 4096).unwrap();
        assert_eq!(i.size, 10);
        assert_eq!(i.read().unwrap(), b"0123456789");
        std::fs::remove_file(p).unwrap();
    }

    // Issue 9 item 2.
    #[test]
    fn special_empty_and_oversized_files_are_refused_before_reading() {
        let err = check(Path::new("/dev/zero"), "image", 1 << 20).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/zero: the image must be a regular file, this is a character device"
        );
        let err = check(Path::new("/tmp"), "kernel", 1 << 20).unwrap_err();
        assert!(err.to_string().contains("this is a directory"), "{err}");
        let empty = temp("empty", b"");
        let err = check(&empty, "initrd", 1 << 20).unwrap_err();
        assert!(
            err.to_string().ends_with("the initrd is empty (0 bytes)"),
            "{err}"
        );
        let big = temp("big", &[7; 8193]);
        let err = check(&big, "image", 8192).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("the image is 8193 bytes (0x2001), more than the 8192 bytes (0x2000) of guest RAM asked for (see --memory)"),
            "{err}"
        );
        std::fs::remove_file(empty).unwrap();
        std::fs::remove_file(big).unwrap();
    }

    #[test]
    fn a_file_that_grows_after_the_check_is_refused_not_read_on() {
        let p = temp("grows", b"abc");
        let i = check(&p, "initrd", 4096).unwrap();
        std::fs::write(&p, b"abcdef").unwrap();
        assert!(matches!(i.read(), Err(InputError::Changed { was: 3, .. })));
        std::fs::remove_file(p).unwrap();
    }

    // Issue 9 item 5.
    #[test]
    fn an_output_that_is_an_input_through_a_link_is_refused() {
        let p = temp("in", b"kernel");
        let link = p.with_extension("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let hard = p.with_extension("hard");
        let _ = std::fs::remove_file(&hard);
        std::fs::hard_link(&p, &hard).unwrap();
        let i = check(&p, "kernel", 4096).unwrap();
        for out in [&p, &link, &hard] {
            let err = check_output(out, std::slice::from_ref(&i)).unwrap_err();
            assert!(err.contains("that file is the kernel"), "{err}");
        }
        assert!(check_output(&p.with_extension("new"), &[i]).is_ok());
        for f in [p, link, hard] {
            std::fs::remove_file(f).unwrap();
        }
    }
}
