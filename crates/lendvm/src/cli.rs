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
    --kernel PATH      A Linux kernel: a bzImage (boot protocol 2.12 or later,
                       booted with the 64-bit protocol) or an ELF vmlinux with
                       the Xen PVH note (booted with the PVH protocol, as
                       Firecracker, cloud-hypervisor and QEMU do).
    --initrd PATH      An initrd/initramfs for the kernel, placed at the top
                       of low RAM (PVH: module 0).
    --cmdline STR      The kernel command line (default: console=ttyS0).
    --image PATH       Any ELF64 x86-64 image. With the PVH note it boots like
                       --kernel. Without it lendvm enters it in its native
                       mode: 64-bit long mode at CPL3 with page tables that
                       identity-map guest physical memory, RDI = vCPU id.
                       Native guests write bytes to port 0xe9 for the console
                       and a 32-bit code to port 0xf4 to stop.
    --memory SPEC      Guest RAM as size=SIZE[,mode=MODE][,at=ADDR]
                       SIZE: bytes, or with K, M or G (powers of 1024).
                       MODE: lend (default; a host-mappable guest_memfd lent to
                       the guest: native images borrow it page by page on
                       first touch, kernels get it whole at start after lendvm
                       wrote the boot structures through a share binding),
                       share (the host keeps access), or private (a guest_memfd
                       the kernel itself keeps from the host; the pages lendvm
                       must write the image or kernel into stay host-mappable).
                       ADDR: guest physical address (default 0; kernels need 0).
                       Default: size=64M,mode=lend,at=0.
    --vcpus N          Number of vCPUs, each on its own thread (default 1).
                       Kernels start on vCPU 0 and wake the others themselves.
    --serial WHERE     The guest console (COM1 at port 0x3f8, and the native
                       console port): stdio (default; standard input feeds
                       COM1), file=PATH, or off.
    --no-irqchip       Boot a kernel without KVM's in-kernel interrupt controller,
                       for guests that take no interrupts (e.g. firmware-like or
                       test guests). Linux needs the controller. On this
                       project's hosts KVM's controller costs about 15 ms when
                       the VM is torn down (measured); without it COM1 raises
                       no interrupts and only vCPU 0 can run.
    --json             Print the final report as one JSON object.

Devices: COM1 (a 16550 UART, interrupt line 4), the i8042 reset line (a
write of 0xfe to port 0x64 stops the VM), and a boot-complete probe: the
first write of any byte to I/O port 0xee records the guest-reported boot
time in the report. Other ports are counted and ignored. When the guest's
console is standard output, lendvm's report goes to standard error.

With neither --image nor --kernel, `run` boots lendvm's demo guest and shows a VM borrowing,
sharing and giving back memory: a shared page both sides write, lent RAM the
host cannot read, a private-file region, an address bound only after the
guest's page fault, and an ioeventfd doorbell.

Exit status: the guest's exit code (low 8 bits) when it stops on its own
(0 for a reset), 1 if it crashed or lendvm failed, 2 for a usage error.
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// `--vcpus`.
    pub vcpus: u32,
    /// `--json`.
    pub json: bool,
    /// `--no-irqchip`.
    pub no_irqchip: bool,
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
            "--kernel" => run.kernel = Some(PathBuf::from(value("a path")?)),
            "--initrd" => run.initrd = Some(PathBuf::from(value("a path")?)),
            "--cmdline" => run.cmdline = Some(value("a command line")?),
            "--serial" => {
                let v = value("stdio, file=PATH or off")?;
                run.serial = match v.as_str() {
                    "stdio" => SerialSpec::Stdio,
                    "off" => SerialSpec::Off,
                    f if f.starts_with("file=") && f.len() > 5 => {
                        SerialSpec::File(PathBuf::from(&f[5..]))
                    }
                    _ => return usage(format!("--serial: `{v}` is not stdio, file=PATH or off")),
                };
            }
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
            "--no-irqchip" if inline.is_none() => run.no_irqchip = true,
            _ => return usage(format!("unknown option `{arg}` (see lendvm --help)")),
        }
    }
    if run.image.is_some() && run.kernel.is_some() {
        return usage("--image and --kernel name the same thing: give one");
    }
    if run.image.is_none()
        && run.kernel.is_none()
        && (run.initrd.is_some() || run.cmdline.is_some())
    {
        return usage("--initrd and --cmdline need --kernel (or a PVH --image)");
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
        let Command::Run(k) = p(&[
            "run",
            "--kernel",
            "vmlinuz",
            "--initrd",
            "initrd.img",
            "--cmdline",
            "console=ttyS0 quiet",
            "--serial",
            "file=/tmp/out",
        ])
        .unwrap() else {
            panic!("not a run")
        };
        assert_eq!(k.cmdline.as_deref(), Some("console=ttyS0 quiet"));
        assert_eq!(k.serial, SerialSpec::File("/tmp/out".into()));
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
            (
                &["run", "--serial", "tty"][..],
                "not stdio, file=PATH or off",
            ),
            (&["run", "--cmdline", "quiet"][..], "need --kernel"),
            (&["run", "--image", "a", "--kernel", "b"][..], "give one"),
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
        for opt in [
            "--image",
            "--kernel",
            "--initrd",
            "--cmdline",
            "--serial",
            "--memory",
            "--vcpus",
            "--json",
            "info",
            "run",
            "0xee",
        ] {
            assert!(HELP.contains(opt), "{opt}");
        }
        assert_eq!(p(&["--help"]).unwrap(), Command::Help);
        assert_eq!(p(&["run", "-h"]).unwrap(), Command::Help);
    }
}
