//! The files a run reads (image, kernel, initrd) and writes (the serial
//! log), checked before anything is read or written.
//!
//! An input is `stat`ed first: it must be a regular file (a FIFO would
//! block, `/dev/zero` never ends), not empty, and no larger than the guest
//! RAM asked for (it has to fit there); only then is it opened, and the
//! read is bounded by the size seen, so a file that grows meanwhile cannot
//! make lendvm read more. A 2 GiB sparse initrd for 64 MiB of RAM is
//! refused by the `stat`, without reading a byte. An ELF image or kernel is
//! the exception: only its headers and segments are read (a vmlinux with
//! debug information is mostly sections nothing loads), so the rule
//! applies to that prefix ([`Input::read_image`]).

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use vmm::loader;

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
    /// An ELF whose loadable part alone is larger than guest RAM.
    #[error(
        "{}: the {what}'s segments end at byte {size} ({size:#x}) of its {file_size} bytes, more than the {ram} bytes ({ram:#x}) of guest RAM asked for (see --memory)",
        shown(path)
    )]
    SegmentsTooLarge {
        /// The file.
        path: PathBuf,
        /// What it was to be.
        what: &'static str,
        /// Bytes up to the end of its last segment.
        size: u64,
        /// The whole file.
        file_size: u64,
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
    let input = check_image(path, what)?;
    if input.size > ram {
        return Err(input.too_large(input.size, ram));
    }
    Ok(input)
}

/// [`check`] for an image or kernel, without the size rule: whether the
/// file fits depends on its format ([`Input::read_image`]).
pub fn check_image(path: &Path, what: &'static str) -> Result<Input, InputError> {
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
    Ok(input)
}

impl Input {
    /// Read the whole file, at most the size [`check`] saw: a file that
    /// was swapped or that grew or shrank since is refused.
    pub fn read(&self) -> Result<Vec<u8>, InputError> {
        let mut file = self.open()?;
        let mut bytes = Vec::new();
        self.read_upto(&mut file, &mut bytes, self.size)?;
        self.expect_end(&mut file)?;
        Ok(bytes)
    }

    /// Read an image or kernel for `ram` bytes of guest RAM. An ELF file is
    /// read up to the end of its last segment, which must fit in RAM (the
    /// section headers and debug information after it are never needed);
    /// anything else (a bzImage) is read whole and must fit itself. An ELF
    /// whose headers the loader refuses is read whole, within the same
    /// rule, so that the loader can say what is wrong with it.
    pub fn read_image(&self, ram: u64) -> Result<Vec<u8>, InputError> {
        let mut file = self.open()?;
        let mut bytes = Vec::new();
        let head = loader::ELF_HEADER_LEN.min(self.size);
        self.read_upto(&mut file, &mut bytes, head)?;
        let prefix = loader::headers_len(&bytes).ok().and_then(|headers| {
            self.read_upto(&mut file, &mut bytes, headers.min(self.size))
                .ok()?;
            loader::loadable_len(&bytes).ok()
        });
        match prefix {
            Some(n) if n <= self.size => {
                if n > ram {
                    return Err(InputError::SegmentsTooLarge {
                        path: self.path.clone(),
                        what: self.what,
                        size: n,
                        file_size: self.size,
                        ram,
                    });
                }
                self.read_upto(&mut file, &mut bytes, n)?;
                bytes.truncate(n as usize);
                Ok(bytes)
            }
            _ => {
                if self.size > ram {
                    return Err(self.too_large(self.size, ram));
                }
                self.read_upto(&mut file, &mut bytes, self.size)?;
                self.expect_end(&mut file)?;
                Ok(bytes)
            }
        }
    }

    fn too_large(&self, size: u64, ram: u64) -> InputError {
        InputError::TooLarge {
            path: self.path.clone(),
            what: self.what,
            size,
            ram,
        }
    }

    fn io(&self, source: std::io::Error) -> InputError {
        InputError::Io {
            path: self.path.clone(),
            what: self.what,
            doing: "read",
            source,
        }
    }

    fn changed(&self) -> InputError {
        InputError::Changed {
            path: self.path.clone(),
            what: self.what,
            was: self.size,
        }
    }

    /// Open the file checked, refusing a different file under its name.
    fn open(&self) -> Result<File, InputError> {
        // O_NONBLOCK: should a FIFO have replaced the file since the
        // check, opening it must not wait for a writer.
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        let meta = file.metadata().map_err(|e| self.io(e))?;
        if !meta.file_type().is_file() || (meta.dev(), meta.ino()) != self.id {
            return Err(self.changed());
        }
        Ok(file)
    }

    /// Read on until `bytes` holds `upto` bytes of the file (no more);
    /// a file that ends first shrank since the check.
    fn read_upto(&self, file: &mut File, bytes: &mut Vec<u8>, upto: u64) -> Result<(), InputError> {
        let have = bytes.len() as u64;
        if upto <= have {
            return Ok(());
        }
        let more = usize::try_from(upto - have).map_err(|_| self.changed())?;
        bytes.try_reserve_exact(more).map_err(|_| {
            self.io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("cannot allocate {more} bytes to read it into"),
            ))
        })?;
        file.by_ref()
            .take(upto - have)
            .read_to_end(bytes)
            .map_err(|e| self.io(e))?;
        if (bytes.len() as u64) < upto {
            return Err(self.changed());
        }
        Ok(())
    }

    /// The file must end where the check saw it end.
    fn expect_end(&self, file: &mut File) -> Result<(), InputError> {
        let mut one = [0u8; 1];
        match file.read(&mut one) {
            Ok(0) => Ok(()),
            Ok(_) => Err(self.changed()),
            Err(e) => Err(self.io(e)),
        }
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

    /// A small ELF with one PT_LOAD of `code`, then `tail` bytes that no
    /// segment covers (debug information, say).
    fn elf_with(code: &[u8], tail: usize) -> Vec<u8> {
        let mut b = testkit::elf_image(code, 0x10_0000, false);
        b.extend(std::iter::repeat_n(0xdb, tail));
        b
    }

    // An ELF with debug information larger than RAM loads from the prefix
    // its segments need; the rule applies to that prefix; other formats
    // (and ELFs the loader will refuse) still must fit whole.
    #[test]
    fn an_elf_is_read_up_to_its_last_segment_and_that_must_fit() {
        let file = elf_with(&[0x90; 100], 10_000);
        let p = temp("debug.elf", &file);
        let i = check_image(&p, "kernel").unwrap();
        let got = i.read_image(4096).unwrap();
        assert_eq!(got, &file[..220]);
        let err = i.read_image(200).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("the kernel's segments end at byte 220 (0xdc) of its 10220 bytes, more than the 200 bytes (0xc8) of guest RAM asked for (see --memory)"),
            "{err}"
        );
        let mut bad = file.clone();
        bad[56] = 0; // no program headers: read whole, within the rule
        std::fs::write(&p, &bad).unwrap();
        let i = check_image(&p, "kernel").unwrap();
        assert!(matches!(
            i.read_image(4096),
            Err(InputError::TooLarge { size: 10_220, .. })
        ));
        assert_eq!(i.read_image(1 << 20).unwrap(), bad);
        // A file that shrinks below its segments after the check.
        std::fs::write(&p, &file).unwrap();
        let i = check_image(&p, "kernel").unwrap();
        std::fs::write(&p, &file[..150]).unwrap();
        assert!(matches!(
            i.read_image(4096),
            Err(InputError::Changed { .. })
        ));
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
