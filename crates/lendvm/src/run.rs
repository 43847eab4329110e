//! `lendvm run --image / --kernel`: boot a user's image.
//!
//! Native ELF images enter lendvm's native mode with RAM lent page by page.
//! Kernels (a bzImage, or an ELF with the PVH note) boot with the standard
//! protocols: RAM is a VM-owned guest_memfd laid out like every x86 VMM's
//! (below the 32-bit MMIO hole, the rest above 4 GiB: DESIGN D12), bound
//! once as lend (or share); lendvm writes the kernel and boot structures
//! through its host view, then hands the lend-bound RAM to the guest whole
//! (`Vm::lend_now`), so every RAM slot is installed exactly once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmm::boot::{BootArgs, BootLayout, KernelImage};
use vmm::loader::{ElfImage, LoadError};
use vmm::placement::{self, PlaceError};
use vmm::{
    Access, BindRequest, Console, Device, Exit, GuestAddress, GuestMem, Mode, Perms, ResumeAction,
    Status, Vm, VmOptions,
};

use crate::cli::{MemoryMode, MemorySpec, RunArgs, SerialSpec};
use crate::inputs::{self, Input, InputError};
use crate::report::{BindingRow, Ending, Report};
use crate::stop::Stop;

const PAGE: u64 = 4096;

/// Why a run failed before or while the guest ran.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command line asks for something that cannot be: exit status 2.
    #[error("{0}")]
    Usage(String),
    /// An input file cannot be used.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The serial log cannot be created.
    #[error(
        "{}: cannot create the serial log: {source}",
        crate::inputs::shown(path)
    )]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The image is malformed or does not fit.
    #[error("{}: {source}", crate::inputs::shown(path))]
    Image {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: LoadError,
    },
    /// The kernel, initrd or command line cannot be placed in guest RAM.
    #[error("{}: {source}", crate::inputs::shown(path))]
    Place {
        /// The kernel.
        path: PathBuf,
        /// What does not fit.
        source: PlaceError,
    },
    /// The image and the options do not go together.
    #[error("{}: {why}", crate::inputs::shown(path))]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What does not go.
        why: String,
    },
    /// The VM manager refused something.
    #[error(transparent)]
    Vm(#[from] vmm::Error),
    /// A vCPU thread panicked (a bug in lendvm): the run has no result.
    #[error("a vCPU thread panicked")]
    VcpuPanicked,
}

impl RunError {
    /// A usage error (exit status 2) rather than a failure (1).
    pub fn is_usage(&self) -> bool {
        matches!(self, RunError::Usage(_))
    }
}

fn console(spec: &SerialSpec) -> Result<Console, RunError> {
    Ok(match spec {
        SerialSpec::Stdio => Console::Stdout,
        SerialSpec::Off => Console::Off,
        SerialSpec::File(path) => {
            let f = std::fs::File::create(path).map_err(|source| RunError::Create {
                path: path.clone(),
                source,
            })?;
            Console::File(Arc::new(Mutex::new(f)))
        }
    })
}

/// Refuse more vCPUs than this host's KVM runs in one VM (with both
/// numbers), before anything is read or created. Without a usable
/// /dev/kvm there is nothing to compare with: the run fails later, when it
/// needs the device, after the checks of its files.
fn check_vcpus(dev: Option<&Device>, vcpus: u32) -> Result<(), RunError> {
    let Some(caps) = dev.map(Device::capabilities) else {
        return Ok(());
    };
    let asked = vcpus as usize;
    if asked > caps.max_vcpus || asked > caps.max_vcpu_id {
        return Err(RunError::Usage(format!(
            "--vcpus {vcpus}: this host's KVM runs at most {} vCPUs per VM (ids below {})",
            caps.max_vcpus.min(caps.max_vcpu_id),
            caps.max_vcpu_id
        )));
    }
    Ok(())
}

/// Boot `--image` or `--kernel` to its end (or to a stop `stop` asks for).
pub fn run(args: &RunArgs, stop: &Stop) -> Result<Report, RunError> {
    let started = Instant::now();
    let (path, via_kernel) = match (&args.image, &args.kernel) {
        (Some(p), None) => (p.as_path(), false),
        (None, Some(p)) => (p.as_path(), true),
        _ => {
            return Err(RunError::Usage(
                "give exactly one of --image and --kernel".into(),
            ));
        }
    };
    // Every check that needs no file content, before any is read.
    let ram = args.memory.size;
    let what = if via_kernel { "kernel" } else { "image" };
    let mut files = vec![inputs::check_image(path, what)?];
    if let Some(initrd) = &args.initrd {
        files.push(inputs::check(initrd, "initrd", ram)?);
    }
    if let SerialSpec::File(out) = &args.serial {
        inputs::check_output(out, &files).map_err(RunError::Usage)?;
    }
    let dev = Device::open();
    check_vcpus(dev.as_ref().ok(), args.vcpus)?;
    let bytes = files[0].read_image(ram)?;
    let initrd = files.get(1).map(Input::read).transpose()?;
    let image = vmm::boot::detect(&bytes).map_err(|source| RunError::Image {
        path: path.into(),
        source,
    })?;
    let unsupported = |why: &str| RunError::Unsupported {
        path: path.into(),
        why: why.into(),
    };
    match image {
        KernelImage::Elf(elf) if elf.pvh_entry.is_none() => {
            if via_kernel {
                return Err(unsupported(
                    "not a kernel: the ELF has no PVH entry note (use --image for native images)",
                ));
            }
            if args.initrd.is_some() || args.cmdline.is_some() {
                return Err(unsupported(
                    "a native image takes no --initrd or --cmdline (it has no PVH note)",
                ));
            }
            check_fits(path, &elf, &args.memory)?;
            let console = console(&args.serial)?;
            run_native(&dev?, args, path, &elf, console, stop, started)
        }
        image => {
            let writable = kernel_ram(path, &image, &args.memory, initrd.is_some())?;
            let console = console(&args.serial)?;
            let boot = Boot {
                image,
                initrd: initrd.as_deref(),
                writable,
            };
            run_standard(&dev?, args, boot, console, stop, started)
        }
    }
}

/// Guest RAM pieces: (guest range, host-writable?). `ram` are the RAM
/// ranges (one for native images; below and above the MMIO hole for
/// kernels, DESIGN D12). The pages lendvm must write (an image, a kernel
/// and its boot structures) are host-mappable; in private mode the rest is
/// a private guest_memfd.
fn ram_pieces(
    mode: MemoryMode,
    ram: &[std::ops::Range<u64>],
    writable: std::ops::Range<u64>,
) -> Vec<(std::ops::Range<u64>, bool)> {
    if mode != MemoryMode::Private {
        return ram.iter().map(|r| (r.clone(), true)).collect();
    }
    let lo = writable.start & !(PAGE - 1);
    let hi = writable.end.div_ceil(PAGE).saturating_mul(PAGE);
    ram.iter()
        .flat_map(|r| {
            let (a, b) = (lo.clamp(r.start, r.end), hi.clamp(r.start, r.end));
            [(r.start..a, false), (a..b, true), (b..r.end, false)]
        })
        .filter(|(r, _)| r.start < r.end)
        .collect()
}

/// Make and bind guest RAM; returns the files and report rows.
fn bind_ram(
    vm: &Vm,
    mem: &MemorySpec,
    ram: &[std::ops::Range<u64>],
    writable: std::ops::Range<u64>,
    access: Access,
) -> Result<(Vec<GuestMem>, Vec<BindingRow>), RunError> {
    let mut files = Vec::new();
    let mut rows = Vec::new();
    for (range, host) in ram_pieces(mem.mode, ram, writable) {
        let mode = if host {
            Mode::HostMappable
        } else {
            Mode::Private
        };
        let file = vm.create_guest_memfd(range.end - range.start, mode)?;
        // Private pieces can only be lent.
        let access = if host { access } else { Access::Lend };
        vm.bind(&BindRequest::new(
            &file,
            GuestAddress(range.start),
            0,
            range.end - range.start,
            access,
            Perms::RWX,
        ))?;
        rows.push(BindingRow {
            what: if host { "RAM" } else { "RAM (private)" },
            guest_addr: range.start,
            size: range.end - range.start,
            file: if host {
                "guest_memfd"
            } else {
                "guest_memfd (private)"
            },
            access,
            perms: Perms::RWX.to_string(),
        });
        files.push(file);
    }
    Ok((files, rows))
}

/// Check that the image fits in guest RAM, below its last page (which
/// holds the boot information the native ABI hands over in RSI).
fn check_fits(path: &Path, elf: &ElfImage<'_>, mem: &MemorySpec) -> Result<(), RunError> {
    let ram = mem.range().ok_or_else(|| {
        RunError::Usage(format!(
            "--memory: guest RAM [{:#x}, +{:#x}) passes the end of the 64-bit address space",
            mem.at, mem.size
        ))
    })?;
    let usable = ram.start..ram.end.saturating_sub(PAGE);
    for s in &elf.segments {
        // The loader refused segments that wrap.
        let end = s.guest_addr.checked_add(s.mem_size);
        if s.guest_addr < usable.start || end.is_none_or(|e| e > usable.end) {
            return Err(RunError::Image {
                path: path.into(),
                source: LoadError::BadSegment {
                    index: s.index,
                    why: format!(
                        "[{:#x}, +{:#x}) lies outside guest RAM [{:#x}, {:#x}) (see --memory)",
                        s.guest_addr, s.mem_size, usable.start, usable.end
                    ),
                },
            });
        }
    }
    Ok(())
}

fn run_native(
    dev: &Device,
    args: &RunArgs,
    path: &Path,
    elf: &ElfImage<'_>,
    console: Console,
    stop: &Stop,
    started: Instant,
) -> Result<Report, RunError> {
    let mem = args.memory;
    // Everything the image needs is checked: now make the VM. Native guests
    // get no interrupts from lendvm, so no interrupt controller.
    let vm = dev.create_vm_with(VmOptions {
        irqchip: false,
        ..VmOptions::default()
    })?;
    vm.set_console(console.clone());
    vm.add_legacy_devices(console, None)?;
    let access = if mem.mode == MemoryMode::Share {
        Access::Share
    } else {
        Access::Lend
    };
    // check_fits: at + size does not wrap.
    let ram = mem.at..mem.at + mem.size;
    let (_files, rows) = bind_ram(&vm, &mem, std::slice::from_ref(&ram), elf.span(), access)?;
    elf.load(&vm).map_err(|source| RunError::Image {
        path: path.into(),
        source,
    })?;
    // check_fits: at + size does not wrap and size >= one page.
    vm.set_dtb_config(GuestAddress(mem.at + mem.size - PAGE), PAGE)?;
    // The native ABI's vCPU count (native_abi: RDX).
    vm.set_boot_reg(vmm::BootReg::Gpr(2), u64::from(args.vcpus))?;
    finish(&vm, args, rows, None, stop, started, Fallback::Fault)
}

/// What a standard boot loads.
struct Boot<'a> {
    image: KernelImage<'a>,
    initrd: Option<&'a [u8]>,
    /// The RAM lendvm writes (boot structures and kernel), from 0.
    writable: std::ops::Range<u64>,
}

/// The RAM a standard boot writes, checked against the RAM asked for with
/// arithmetic that cannot wrap (a PVH segment near 2^64 is refused here,
/// not after the VM exists).
fn kernel_ram(
    path: &Path,
    image: &KernelImage<'_>,
    mem: &MemorySpec,
    initrd: bool,
) -> Result<std::ops::Range<u64>, RunError> {
    let unsupported = |why: String| RunError::Unsupported {
        path: path.into(),
        why,
    };
    let place = |source| RunError::Place {
        path: path.into(),
        source,
    };
    if mem.at != 0 {
        return Err(unsupported(
            "kernels need guest RAM at address 0 (--memory at=0)".into(),
        ));
    }
    if mem.mode == MemoryMode::Private && initrd {
        return Err(unsupported(
            "mode=private cannot take an --initrd: lendvm cannot write it into private memory"
                .into(),
        ));
    }
    // What lendvm must write: boot structures from 0, then the kernel.
    let kernel_end = match image {
        KernelImage::Elf(elf) => elf.span().end,
        KernelImage::BzImage(bytes) => {
            let hdr = vmm::boot::bzimage_header(bytes).map_err(|source| RunError::Image {
                path: path.into(),
                source,
            })?;
            placement::bzimage_extent(hdr.init_size, bytes.len() as u64)
                .map_err(place)?
                .end
        }
    };
    let end = placement::boot_ram_end(kernel_end).map_err(place)?;
    // DESIGN D12: RAM below the MMIO hole first, the rest above 4 GiB; the
    // kernel and its boot structures must lie in the low part.
    let low = placement::ram_layout(mem.size)
        .map_err(place)?
        .first()
        .map_or(0, |r| r.end);
    if end > low {
        return Err(unsupported(format!(
            "the kernel needs RAM up to {end:#x}; --memory gives {:#x} below the MMIO hole at {:#x}",
            mem.size.min(low),
            placement::MMIO_HOLE.start
        )));
    }
    Ok(0..end)
}

fn run_standard(
    dev: &Device,
    args: &RunArgs,
    boot: Boot<'_>,
    console: Console,
    stop: &Stop,
    started: Instant,
) -> Result<Report, RunError> {
    let mem = args.memory;
    let cmdline = args.cmdline.as_deref().unwrap_or("console=ttyS0");
    let input: Option<Box<dyn std::io::Read + Send>> = match args.serial {
        SerialSpec::Stdio => Some(Box::new(std::io::stdin())),
        _ => None,
    };
    let vm = dev.create_vm_with(VmOptions {
        irqchip: !args.no_irqchip,
        native: false,
    })?;
    vm.set_console(console.clone());
    let access = if mem.mode == MemoryMode::Share {
        Access::Share
    } else {
        Access::Lend
    };
    // kernel_ram checked the layout.
    let ram = placement::ram_layout(mem.size).map_err(|source| RunError::Place {
        path: PathBuf::from("--memory"),
        source,
    })?;
    // Lend bindings install nothing yet, and the host may still write
    // their pages (DESIGN D2): lendvm writes the kernel and its boot
    // structures straight into them.
    let (_files, rows) = bind_ram(&vm, &mem, &ram, boot.writable.clone(), access)?;
    let boot_args = BootArgs {
        cmdline,
        initrd: boot.initrd,
    };
    let layout = match &boot.image {
        KernelImage::Elf(elf) => vmm::boot::prepare_pvh(&vm, elf, &boot_args)?,
        KernelImage::BzImage(bytes) => vmm::boot::prepare_linux(&vm, bytes, &boot_args)?,
    };
    // Kernels touch all their RAM soon: give it now, each binding in one
    // memslot, installed once.
    for row in rows.iter().filter(|r| r.access == Access::Lend) {
        vm.lend_now(GuestAddress(row.guest_addr), row.size)?;
    }
    // After the memory: COM1's irqfd creates the interrupt controller, and
    // memslot changes after that wait for KVM (see vmm::VmOptions).
    vm.add_legacy_devices(console, input)?;
    finish(
        &vm,
        args,
        rows,
        Some(layout),
        stop,
        started,
        Fallback::AllOnes,
    )
}

/// What a guest gets for an access no device answers.
#[derive(Clone, Copy)]
enum Fallback {
    /// A page fault (native images: lendvm's own guests expect it).
    Fault,
    /// Reads return all ones and writes are dropped, as on a PC bus
    /// without the device (standard guests probe for hardware).
    AllOnes,
}

fn finish(
    vm: &Vm,
    args: &RunArgs,
    rows: Vec<BindingRow>,
    layout: Option<BootLayout>,
    stop: &Stop,
    started: Instant,
    fallback: Fallback,
) -> Result<Report, RunError> {
    let vcpus = (0..args.vcpus)
        .map(|id| vm.add_vcpu(id))
        .collect::<Result<Vec<_>, _>>()?;
    vm.start()?;
    let status = run_vcpus(vm, vcpus, stop, fallback);
    // The kickers hold the vCPUs: let them go, so the VM can be torn down.
    stop.unwatch_all();
    let status = status?;
    let mut checks = Vec::new();
    if let Some(l) = layout {
        checks.push(crate::report::Check::new(
            "boot",
            true,
            format!(
                "{:?}, kernel [{:#x}, {:#x}), {} memory map entries{}",
                l.mode,
                l.kernel.start,
                l.kernel.end,
                l.memory_map.len(),
                l.initrd.map_or(String::new(), |r| format!(
                    ", initrd [{:#x}, {:#x})",
                    r.start, r.end
                ))
            ),
        ));
    }
    Ok(Report {
        bindings: rows,
        metrics: vm.metrics(),
        status,
        first_touch: None,
        checks,
        elapsed: started.elapsed(),
        console: String::new(),
        demo: None,
    })
}

/// Run every vCPU on its own thread until the VM stops or `stop` asks.
fn run_vcpus(
    vm: &Vm,
    vcpus: Vec<vmm::Vcpu>,
    stop: &Stop,
    fallback: Fallback,
) -> Result<Ending, RunError> {
    let kickers: Vec<vmm::Kicker> = vcpus.iter().map(|v| v.kicker()).collect();
    for k in &kickers {
        stop.watch(k.clone());
    }
    let results: Vec<Result<Status, RunError>> = std::thread::scope(|s| {
        let handles: Vec<_> = vcpus
            .into_iter()
            .map(|mut vcpu| {
                let kickers = &kickers;
                s.spawn(move || {
                    let result = drive(&mut vcpu, fallback);
                    if result.is_err() {
                        // One vCPU failed: stop the others, or they run on.
                        kickers.iter().for_each(vmm::Kicker::kick);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_or(Err(RunError::VcpuPanicked), |r| r.map_err(RunError::Vm))
            })
            .collect()
    });
    // A guest that stopped by itself wins over a signal that came as it did.
    let stopped_by_guest = results.iter().any(Result::is_ok);
    // Report the error that stopped the VM, not the interruptions it caused.
    if let Some(e) = results
        .into_iter()
        .filter_map(Result::err)
        .find(|e| !matches!(e, RunError::Vm(vmm::Error::Interrupted)))
    {
        return Err(e);
    }
    Ok(match (vm.status(), stop.signal()) {
        (Some(status), _) if stopped_by_guest => Ending::Vm(status),
        (_, Some(signal)) => Ending::Signal(signal),
        (status, None) => Ending::Vm(status.unwrap_or(Status::LoadFailed)),
    })
}

fn drive(vcpu: &mut vmm::Vcpu, fallback: Fallback) -> Result<Status, vmm::Error> {
    loop {
        match (vcpu.run()?, fallback) {
            (Exit::Status(status), _) => return Ok(status),
            (Exit::Mmio { .. }, Fallback::AllOnes) => {
                vcpu.set_mmio_data(&[0xff; 8]);
                vcpu.set_resume(ResumeAction::Handled);
            }
            (Exit::Mmio { .. } | Exit::PageFault { .. }, _) => vcpu.set_resume(ResumeAction::Fault),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ram_keeps_the_written_pages_host_mappable() {
        let whole: std::ops::Range<u64> = 0..16 << 20;
        let ram = std::slice::from_ref(&whole);
        let pieces = ram_pieces(MemoryMode::Private, ram, 0x10_0100..0x12_0080);
        assert_eq!(
            pieces,
            vec![
                (0..0x10_0000, false),
                (0x10_0000..0x12_1000, true),
                (0x12_1000..16 << 20, false)
            ]
        );
        assert_eq!(
            ram_pieces(MemoryMode::Lend, ram, 0x10_0000..0x11_0000),
            vec![(0..16 << 20, true)]
        );
    }

    // DESIGN D12: the ranges on both sides of the MMIO hole are pieces of
    // their own; only the written part is host-mappable in private mode.
    #[test]
    fn pieces_follow_the_ram_layout_around_the_mmio_hole() {
        const G: u64 = 1 << 30;
        let ram = placement::ram_layout(5 * G).unwrap();
        assert_eq!(
            ram_pieces(MemoryMode::Lend, &ram, 0..0x40_0000),
            vec![(0..3 * G, true), (4 * G..6 * G, true)]
        );
        assert_eq!(
            ram_pieces(MemoryMode::Private, &ram, 0..0x40_0000),
            vec![
                (0..0x40_0000, true),
                (0x40_0000..3 * G, false),
                (4 * G..6 * G, false)
            ]
        );
    }
}
