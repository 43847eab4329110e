//! Command-line parsing: a pure function from the arguments (as the OS
//! gives them: bytes, not necessarily UTF-8) to a typed [`Command`], so the
//! fuzz target `cli_args` can drive it. `lexopt` splits the arguments (a
//! few hundred lines, no start-up cost); the meaning of each option is
//! here. Every option is explained in [`crate::help::HELP`].
//!
//! A [`UsageError`] is one line that names the problem and the numbers;
//! nothing has been done when it is returned.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub use crate::help::HELP;

const PAGE: u64 = 4096;

/// How guest RAM is given to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMode {
    /// Lent from a host-mappable guest_memfd.
    Lend,
    /// Shared from a host-mappable guest_memfd.
    Share,
    /// Lent from a private guest_memfd.
    Private,
}

/// `--memory`: a checked guest RAM range (`at + size` does not wrap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySpec {
    /// Bytes: non-zero, a multiple of 4 KiB.
    pub size: u64,
    /// Share or lend.
    pub mode: MemoryMode,
    /// Guest physical address: page-aligned.
    pub at: u64,
}

impl Default for MemorySpec {
    fn default() -> Self {
        MemorySpec {
            size: 64 << 20,
            mode: MemoryMode::Lend,
            at: 0,
        }
    }
}

impl MemorySpec {
    /// The guest range, or `None` if it passes the end of the address
    /// space (only for a spec not made by [`parse`], which refuses it).
    pub fn range(&self) -> Option<std::ops::Range<u64>> {
        Some(self.at..self.at.checked_add(self.size)?)
    }
}

/// Where the guest's serial console goes (`--serial`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SerialSpec {
    /// Standard output (and standard input feeds COM1).
    #[default]
    Stdio,
    /// A file, created or truncated.
    File(PathBuf),
    /// Discarded.
    Off,
}

/// `lendvm run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// `--image`.
    pub image: Option<PathBuf>,
    /// `--kernel`.
    pub kernel: Option<PathBuf>,
    /// `--initrd`.
    pub initrd: Option<PathBuf>,
    /// `--cmdline`.
    pub cmdline: Option<String>,
    /// `--serial`.
    pub serial: SerialSpec,
    /// `--memory`.
    pub memory: MemorySpec,
    /// `--vcpus`: at least 1 (the host's limit is checked when KVM is open).
    pub vcpus: u32,
    /// `--json`.
    pub json: bool,
    /// `--no-irqchip`.
    pub no_irqchip: bool,
}

impl Default for RunArgs {
    fn default() -> Self {
        RunArgs {
            image: None,
            kernel: None,
            initrd: None,
            cmdline: None,
            serial: SerialSpec::default(),
            memory: MemorySpec::default(),
            vcpus: 1,
            json: false,
            no_irqchip: false,
        }
    }
}

impl RunArgs {
    /// The image or kernel to boot, if any (without one, `run` is the demo).
    pub fn guest(&self) -> Option<&std::path::Path> {
        self.image.as_deref().or(self.kernel.as_deref())
    }
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Boot a guest (or the demo).
    Run(RunArgs),
    /// Print host capabilities and decisions (`--json`: as JSON).
    Info {
        /// One JSON object instead of text.
        json: bool,
    },
    /// Print help.
    Help,
}

/// A usage error: one line saying what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// An argument as it can be shown in a one-line message: quoted, with
/// control characters and bytes that are not UTF-8 escaped.
pub fn shown(arg: &OsStr) -> String {
    format!("{arg:?}")
}

/// An option's name as typed: as it is, unless it holds control
/// characters (a newline, a terminal escape), then quoted and escaped.
fn shown_opt(name: &str) -> String {
    if name.chars().any(char::is_control) {
        format!("{name:?}")
    } else {
        name.to_string()
    }
}

/// Parse a size: a number with an optional K, M or G suffix (powers of
/// 1024); decimal or 0x hexadecimal.
pub fn parse_size(s: &str) -> Result<u64, UsageError> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = parse_number(digits).ok_or_else(|| UsageError(format!("{s:?} is not a size")))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| UsageError(format!("size {s:?} does not fit in 64 bits")))
}

/// A decimal or 0x-hexadecimal number (no sign, no spaces).
fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()
        }
        None if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
}

/// Parse `size=…,mode=…,at=…` and check the range it makes.
pub fn parse_memory(spec: &str) -> Result<MemorySpec, UsageError> {
    let mut m = MemorySpec::default();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return usage(format!(
                "--memory: {part:?} is not KEY=VALUE (keys: size, mode, at)"
            ));
        };
        match key {
            "size" => {
                m.size = parse_size(value).map_err(|e| UsageError(format!("--memory: {e}")))?
            }
            "mode" => {
                m.mode = match value {
                    "lend" => MemoryMode::Lend,
                    "share" => MemoryMode::Share,
                    "private" => MemoryMode::Private,
                    _ => {
                        return usage(format!(
                            "--memory: mode {value:?} is not lend, share or private"
                        ));
                    }
                }
            }
            "at" => {
                m.at = parse_number(value)
                    .ok_or_else(|| UsageError(format!("--memory: {value:?} is not an address")))?
            }
            _ => {
                return usage(format!(
                    "--memory: unknown key {key:?} (keys: size, mode, at)"
                ));
            }
        }
    }
    if m.size == 0 || m.size % PAGE != 0 {
        return usage(format!(
            "--memory: size {:#x} must be a non-zero multiple of 4 KiB",
            m.size
        ));
    }
    if m.at % PAGE != 0 {
        return usage(format!("--memory: address {:#x} is not page-aligned", m.at));
    }
    if m.range().is_none() {
        return usage(format!(
            "--memory: guest RAM [{:#x}, +{:#x}) passes the end of the 64-bit address space",
            m.at, m.size
        ));
    }
    Ok(m)
}

/// One argument as lexopt split it, owned (lexopt's borrows its parser).
enum Arg {
    Short(char),
    Long(String),
    Value(OsString),
}

impl Arg {
    fn name(&self) -> String {
        match self {
            Arg::Short(c) => shown_opt(&format!("-{c}")),
            Arg::Long(l) => shown_opt(&format!("--{l}")),
            Arg::Value(v) => shown(v),
        }
    }
}

fn next(p: &mut lexopt::Parser) -> Result<Option<Arg>, UsageError> {
    Ok(match p.next().map_err(lexopt_error)? {
        None => None,
        Some(lexopt::Arg::Short(c)) => Some(Arg::Short(c)),
        Some(lexopt::Arg::Long(l)) => Some(Arg::Long(l.to_string())),
        Some(lexopt::Arg::Value(v)) => Some(Arg::Value(v)),
    })
}

/// lexopt's errors, in this command's words.
fn lexopt_error(e: lexopt::Error) -> UsageError {
    UsageError(match e {
        lexopt::Error::MissingValue { option: Some(o) } => {
            format!("{} needs a value", shown_opt(&o))
        }
        lexopt::Error::UnexpectedValue { option, value } => {
            format!(
                "{} takes no value, got {}",
                shown_opt(&option),
                shown(&value)
            )
        }
        lexopt::Error::UnexpectedOption(o) => format!("unknown option {}", shown_opt(&o)),
        lexopt::Error::UnexpectedArgument(v) => format!("unexpected argument {}", shown(&v)),
        other => shown_opt(&other.to_string()),
    })
}

/// The value of the option just read: `--opt VALUE` or `--opt=VALUE`.
fn value(p: &mut lexopt::Parser, opt: &str, what: &str) -> Result<OsString, UsageError> {
    p.value()
        .map_err(|_| UsageError(format!("{opt} needs {what}")))
}

fn text(v: OsString, opt: &str) -> Result<String, UsageError> {
    v.into_string()
        .map_err(|v| UsageError(format!("{opt}: {} is not valid UTF-8", shown(&v))))
}

fn path(v: OsString, opt: &str) -> Result<PathBuf, UsageError> {
    if v.is_empty() {
        return usage(format!("{opt} needs a path, got an empty one"));
    }
    Ok(PathBuf::from(v))
}

fn serial(v: OsString) -> Result<SerialSpec, UsageError> {
    match v.as_bytes() {
        b"stdio" => Ok(SerialSpec::Stdio),
        b"off" => Ok(SerialSpec::Off),
        b"file=" => usage("--serial: file= needs a path, got an empty one"),
        [b'f', b'i', b'l', b'e', b'=', file @ ..] => {
            Ok(SerialSpec::File(PathBuf::from(OsStr::from_bytes(file))))
        }
        _ => usage(format!(
            "--serial: {} is not stdio, file=PATH or off",
            shown(&v)
        )),
    }
}

/// Parse the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Command, UsageError> {
    let mut p = lexopt::Parser::from_args(args);
    let first = match next(&mut p)? {
        None => return Ok(Command::Run(RunArgs::default())),
        Some(Arg::Value(v)) => match v.as_bytes() {
            b"run" => None,
            b"info" => return parse_info(&mut p),
            b"help" => return Ok(Command::Help),
            _ => {
                return usage(format!(
                    "unknown command {} (commands: run, info, help)",
                    shown(&v)
                ));
            }
        },
        // Options without a command are `run` options.
        Some(opt) => Some(opt),
    };
    parse_run(&mut p, first)
}

fn parse_info(p: &mut lexopt::Parser) -> Result<Command, UsageError> {
    let mut json = false;
    while let Some(arg) = next(p)? {
        match arg {
            Arg::Short('h') => return Ok(Command::Help),
            Arg::Long(l) if l == "help" => return Ok(Command::Help),
            Arg::Long(l) if l == "json" => json = true,
            other => return usage(format!("`info` takes only --json, got {}", other.name())),
        }
    }
    Ok(Command::Info { json })
}

fn parse_run(p: &mut lexopt::Parser, first: Option<Arg>) -> Result<Command, UsageError> {
    let mut run = RunArgs::default();
    // Options that only a guest image uses: the demo builds its own VM.
    let mut guest_only: Option<&'static str> = None;
    let mut pending = first;
    loop {
        let arg = match pending.take() {
            Some(a) => a,
            None => match next(p)? {
                Some(a) => a,
                None => break,
            },
        };
        let long = match arg {
            Arg::Short('h') => return Ok(Command::Help),
            Arg::Long(l) => l,
            Arg::Short(c) => {
                return usage(format!("unknown option {}", shown_opt(&format!("-{c}"))));
            }
            Arg::Value(v) => {
                return usage(format!(
                    "unexpected argument {}: `run` takes only options",
                    shown(&v)
                ));
            }
        };
        match long.as_str() {
            "help" => return Ok(Command::Help),
            "image" => run.image = Some(path(value(p, "--image", "a path")?, "--image")?),
            "kernel" => run.kernel = Some(path(value(p, "--kernel", "a path")?, "--kernel")?),
            "initrd" => run.initrd = Some(path(value(p, "--initrd", "a path")?, "--initrd")?),
            "cmdline" => {
                run.cmdline = Some(text(value(p, "--cmdline", "a command line")?, "--cmdline")?)
            }
            "serial" => {
                run.serial = serial(value(p, "--serial", "stdio, file=PATH or off")?)?;
                guest_only = Some("--serial");
            }
            "memory" => {
                let v = text(value(p, "--memory", "a memory spec")?, "--memory")?;
                run.memory = parse_memory(&v)?;
                guest_only = Some("--memory");
            }
            "vcpus" => {
                let v = text(value(p, "--vcpus", "a number")?, "--vcpus")?;
                run.vcpus = v.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                    UsageError(format!(
                        "--vcpus: {v:?} is not a number from 1 to {}",
                        u32::MAX
                    ))
                })?;
                guest_only = Some("--vcpus");
            }
            "json" => run.json = true,
            "no-irqchip" => {
                run.no_irqchip = true;
                guest_only = Some("--no-irqchip");
            }
            _ => {
                return usage(format!(
                    "unknown option {}",
                    shown_opt(&format!("--{long}"))
                ));
            }
        }
    }
    if run.image.is_some() && run.kernel.is_some() {
        return usage("--image and --kernel name the same thing: give one");
    }
    if run.guest().is_none() {
        if run.initrd.is_some() || run.cmdline.is_some() {
            return usage("--initrd and --cmdline need --kernel (or a PVH --image)");
        }
        if let Some(opt) = guest_only {
            return usage(format!(
                "{opt} needs --image or --kernel (the demo sets up its own VM)"
            ));
        }
    }
    Ok(Command::Run(run))
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
