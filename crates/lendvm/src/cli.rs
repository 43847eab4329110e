//! Command-line parsing. Hand-written (no parser crate) to keep start-up
//! small; every option is in [`HELP`].

use std::path::PathBuf;

/// `lendvm --help`.
pub const HELP: &str = "\
lendvm - a virtual machine monitor for Linux KVM whose guests get memory
only through bindings of guest memory files, shared with the host or lent
to the guest (the host loses access until it takes the memory back).

USAGE:
    lendvm                   run the built-in demo (same as `lendvm run`)
    lendvm run [OPTIONS]     boot a guest; without --image, the built-in demo
    lendvm info [--json]     host capabilities, how lendvm settles the open
                             questions on KVM (D1-D10), and who enforces what
    lendvm help              this text (also -h, --help)

RUN OPTIONS:
    --image PATH       An ELF64 x86-64 guest image. lendvm loads its segments
                       into guest RAM and enters it in lendvm's native mode:
                       64-bit long mode at CPL3 with page tables that
                       identity-map guest physical memory, RDI = vCPU id.
                       The guest writes bytes to port 0xe9 for the console
                       and a 32-bit code to port 0xf4 to stop.
    --memory SPEC      Guest RAM as size=SIZE[,mode=MODE][,at=ADDR]
                       SIZE: bytes, or with K, M or G (powers of 1024).
                       MODE: lend (default; a host-mappable guest_memfd the
                       guest borrows page by page on first touch), share (the
                       host keeps access), or private (a guest_memfd the
                       kernel itself keeps from the host).
                       ADDR: guest physical address (default 0).
                       Default: size=64M,mode=lend,at=0.
    --vcpus N          Number of vCPUs, each on its own thread (default 1).
    --json             Print the final report as one JSON object.

With no --image, `run` boots lendvm's demo guest and shows a VM borrowing,
sharing and giving back memory: a shared page both sides write, lent RAM the
host cannot read, a private-file region, an address bound only after the
guest's page fault, and an ioeventfd doorbell.

Exit status: the guest's exit code (low 8 bits) when it stops on its own,
1 if it crashed or lendvm failed, 2 for a usage error.
";

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

/// `--memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySpec {
    /// Bytes.
    pub size: u64,
    /// Share or lend.
    pub mode: MemoryMode,
    /// Guest physical address.
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

/// `lendvm run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunArgs {
    /// `--image`.
    pub image: Option<PathBuf>,
    /// `--memory`.
    pub memory: MemorySpec,
    /// `--vcpus`.
    pub vcpus: u32,
    /// `--json`.
    pub json: bool,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Boot a guest.
    Run(RunArgs),
    /// Print host capabilities and decisions (`--json`: as JSON).
    Info {
        /// One JSON object instead of text.
        json: bool,
    },
    /// Print help.
    Help,
}

/// A usage error: the message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// Parse a size: a number with an optional K, M or G suffix (powers of
/// 1024); decimal or 0x hexadecimal.
pub fn parse_size(s: &str) -> Result<u64, UsageError> {
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n = parse_number(digits).ok_or_else(|| UsageError(format!("`{s}` is not a size")))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| UsageError(format!("size `{s}` does not fit in 64 bits")))
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parse `size=…,mode=…,at=…`.
pub fn parse_memory(spec: &str) -> Result<MemorySpec, UsageError> {
    let mut m = MemorySpec::default();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return usage(format!(
                "--memory: `{part}` is not KEY=VALUE (keys: size, mode, at)"
            ));
        };
        match key {
            "size" => m.size = parse_size(value)?,
            "mode" => {
                m.mode = match value {
                    "lend" => MemoryMode::Lend,
                    "share" => MemoryMode::Share,
                    "private" => MemoryMode::Private,
                    _ => {
                        return usage(format!(
                            "--memory: mode `{value}` is not lend, share or private"
                        ));
                    }
                }
            }
            "at" => {
                m.at = parse_number(value)
                    .ok_or_else(|| UsageError(format!("--memory: `{value}` is not an address")))?
            }
            _ => {
                return usage(format!(
                    "--memory: unknown key `{key}` (keys: size, mode, at)"
                ));
            }
        }
    }
    if m.size == 0 || m.size % 4096 != 0 {
        return usage(format!(
            "--memory: size {:#x} must be a non-zero multiple of 4 KiB",
            m.size
        ));
    }
    if m.at % 4096 != 0 {
        return usage(format!("--memory: address {:#x} is not page-aligned", m.at));
    }
    Ok(m)
}

/// Parse the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let mut args = args.into_iter().peekable();
    let command = match args.peek().map(String::as_str) {
        None => {
            return Ok(Command::Run(RunArgs {
                vcpus: 1,
                ..RunArgs::default()
            }));
        }
        Some("run") => {
            args.next();
            "run"
        }
        Some("info") => {
            args.next();
            "info"
        }
        Some("help" | "-h" | "--help") => return Ok(Command::Help),
        Some(a) if a.starts_with('-') => "run",
        Some(other) => {
            return usage(format!(
                "unknown command `{other}` (commands: run, info, help)"
            ));
        }
    };
    if command == "info" {
        let mut json = false;
        for a in args {
            match a.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--json" => json = true,
                _ => return usage(format!("`info` takes only --json, got `{a}`")),
            }
        }
        return Ok(Command::Info { json });
    }
    let mut run = RunArgs {
        vcpus: 1,
        ..RunArgs::default()
    };
    while let Some(arg) = args.next() {
        // Accept both `--opt value` and `--opt=value`.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| UsageError(format!("{name} needs {what}")))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--image" => run.image = Some(PathBuf::from(value("a path")?)),
            "--memory" => run.memory = parse_memory(&value("a memory spec")?)?,
            "--vcpus" => {
                let v = value("a number")?;
                run.vcpus = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| {
                        UsageError(format!("--vcpus: `{v}` is not a number from 1 to 64"))
                    })?;
            }
            "--json" if inline.is_none() => run.json = true,
            _ => return usage(format!("unknown option `{arg}` (see lendvm --help)")),
        }
    }
    Ok(Command::Run(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn no_arguments_run_the_demo() {
        assert_eq!(
            p(&[]).unwrap(),
            Command::Run(RunArgs {
                vcpus: 1,
                ..RunArgs::default()
            })
        );
        assert_eq!(p(&["run"]).unwrap(), p(&[]).unwrap());
    }

    #[test]
    fn run_options_parse_in_both_spellings() {
        let Command::Run(r) = p(&[
            "run",
            "--image",
            "g.elf",
            "--memory=size=512M,mode=private,at=0x100000",
            "--vcpus",
            "2",
            "--json",
        ])
        .unwrap() else {
            panic!("not a run")
        };
        assert_eq!(r.image.as_deref(), Some(std::path::Path::new("g.elf")));
        assert_eq!(
            r.memory,
            MemorySpec {
                size: 512 << 20,
                mode: MemoryMode::Private,
                at: 0x10_0000
            }
        );
        assert_eq!((r.vcpus, r.json), (2, true));
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("0x1000").unwrap(), 4096);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        for (args, want) in [
            (&["bogus"][..], "unknown command"),
            (&["run", "--vcpus", "0"][..], "--vcpus"),
            (&["run", "--vcpus"][..], "needs a number"),
            (&["run", "--memory", "size=1000"][..], "multiple of 4 KiB"),
            (
                &["run", "--memory", "mode=steal"][..],
                "not lend, share or private",
            ),
            (&["run", "--memory", "colour=red"][..], "unknown key"),
            (&["run", "--frobnicate"][..], "unknown option"),
            (&["info", "x"][..], "only --json"),
        ] {
            let err = p(args).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{args:?}: {err:?} should mention {want:?}"
            );
        }
    }

    #[test]
    fn help_mentions_every_option() {
        for opt in ["--image", "--memory", "--vcpus", "--json", "info", "run"] {
            assert!(HELP.contains(opt), "{opt}");
        }
        assert_eq!(p(&["--help"]).unwrap(), Command::Help);
        assert_eq!(p(&["run", "-h"]).unwrap(), Command::Help);
    }
}
