//! `lendvm run --image / --kernel`: boot a user's image.
//!
//! Native ELF images enter lendvm's native mode with RAM lent page by page.
//! Kernels (a bzImage, or an ELF with the PVH note) boot with the standard
//! protocols: RAM is a VM-owned guest_memfd bound at 0, lendvm writes the
//! kernel and boot structures through a share binding, then (mode lend)
//! swaps it for a lend binding that gives the guest all of it at start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use binding::{Access, Perms};
use gmem::Mode;
use vmm::boot::{BootArgs, BootLayout, KernelImage};
use vmm::loader::{ElfImage, LoadError};
use vmm::{
    BindRequest, Console, Device, Exit, GuestAddress, GuestMem, ResumeAction, Status, Vm, VmOptions,
};

use crate::cli::{MemoryMode, MemorySpec, RunArgs, SerialSpec};
use crate::report::{BindingRow, Report};

const PAGE: u64 = 4096;
const HUGE: u64 = 2 << 20;

/// Why a run failed before or while the guest ran.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file could not be read or created.
    #[error("{}: cannot {doing} it: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// "read" or "create".
        doing: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The image is malformed or does not fit.
    #[error("{}: {source}", path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: LoadError,
    },
    /// The image and the options do not go together.
    #[error("{}: {why}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What does not go.
        why: String,
    },
    /// The VM manager refused something.
    #[error(transparent)]
    Vm(#[from] vmm::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, RunError> {
    std::fs::read(path).map_err(|source| RunError::File {
        path: path.into(),
        doing: "read",
        source,
    })
}

fn console(spec: &SerialSpec) -> Result<Console, RunError> {
    Ok(match spec {
        SerialSpec::Stdio => Console::Stdout,
        SerialSpec::Off => Console::Off,
        SerialSpec::File(path) => {
            let f = std::fs::File::create(path).map_err(|source| RunError::File {
                path: path.clone(),
                doing: "create",
                source,
            })?;
            Console::File(Arc::new(Mutex::new(f)))
        }
    })
}

/// Boot `--image` or `--kernel` to its end.
pub fn run(args: &RunArgs) -> Result<Report, RunError> {
    let started = Instant::now();
    let (path, via_kernel) = match (&args.image, &args.kernel) {
        (Some(p), None) => (p.as_path(), false),
        (None, Some(p)) => (p.as_path(), true),
        _ => unreachable!("the command line parser gives exactly one image"),
    };
    let bytes = read(path)?;
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
            run_native(args, path, &elf, started)
        }
        image => run_standard(args, path, image, started),
    }
}

/// Guest RAM pieces: (guest range, host-writable?). The pages lendvm must
/// write (an image, a kernel and its boot structures) are host-mappable; in
/// private mode the rest is a private guest_memfd.
fn ram_pieces(
    mem: &MemorySpec,
    writable: std::ops::Range<u64>,
) -> Vec<(std::ops::Range<u64>, bool)> {
    let ram = mem.at..mem.at + mem.size;
    if mem.mode != MemoryMode::Private {
        return vec![(ram, true)];
    }
    let lo = (writable.start & !(PAGE - 1)).max(ram.start);
    let hi = writable
        .end
        .div_ceil(PAGE)
        .saturating_mul(PAGE)
        .min(ram.end);
    [(ram.start..lo, false), (lo..hi, true), (hi..ram.end, false)]
        .into_iter()
        .filter(|(r, _)| r.start < r.end)
        .collect()
}

/// Make and bind guest RAM; returns the files and report rows.
fn bind_ram(
    vm: &Vm,
    mem: &MemorySpec,
    writable: std::ops::Range<u64>,
    access: Access,
) -> Result<(Vec<GuestMem>, Vec<BindingRow>), RunError> {
    let mut files = Vec::new();
    let mut rows = Vec::new();
    for (range, host) in ram_pieces(mem, writable) {
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
    let usable = mem.at..mem.at + mem.size - PAGE;
    for s in &elf.segments {
        if s.guest_addr < usable.start || s.guest_addr + s.mem_size > usable.end {
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
    args: &RunArgs,
    path: &Path,
    elf: &ElfImage<'_>,
    started: Instant,
) -> Result<Report, RunError> {
    let mem = args.memory;
    check_fits(path, elf, &mem)?;
    let console = console(&args.serial)?;
    // Everything the image needs is checked: now make the VM. Native guests
    // get no interrupts from lendvm, so no interrupt controller.
    let dev = Device::open()?;
    let vm = dev.create_vm_with(VmOptions { irqchip: false })?;
    vm.set_console(console.clone());
    vm.add_legacy_devices(console, None)?;
    let access = if mem.mode == MemoryMode::Share {
        Access::Share
    } else {
        Access::Lend
    };
    let (_files, rows) = bind_ram(&vm, &mem, elf.span(), access)?;
    elf.load(&vm).map_err(|source| RunError::Image {
        path: path.into(),
        source,
    })?;
    vm.set_dtb_config(GuestAddress(mem.at + mem.size - PAGE), PAGE)?;
    // The native ABI's vCPU count (native_abi: RDX).
    vm.set_boot_reg(vmm::BootReg::Gpr(2), u64::from(args.vcpus))?;
    finish(&vm, args, rows, None, started, Fallback::Fault)
}

fn run_standard(
    args: &RunArgs,
    path: &Path,
    image: KernelImage<'_>,
    started: Instant,
) -> Result<Report, RunError> {
    let mem = args.memory;
    let unsupported = |why: String| RunError::Unsupported {
        path: path.into(),
        why,
    };
    if mem.at != 0 {
        return Err(unsupported(
            "kernels need guest RAM at address 0 (--memory at=0)".into(),
        ));
    }
    let initrd = args.initrd.as_deref().map(read).transpose()?;
    let cmdline = args.cmdline.as_deref().unwrap_or("console=ttyS0");
    // What lendvm must write: boot structures from 0, the kernel, and (for
    // private RAM, where it cannot place one above the kernel) no initrd.
    let kernel_end = match &image {
        KernelImage::Elf(elf) => elf.span().end,
        KernelImage::BzImage(bytes) => {
            let hdr = vmm::boot::bzimage_header(bytes).map_err(|source| RunError::Image {
                path: path.into(),
                source,
            })?;
            vmm::boot::HIMEM_START + u64::from(hdr.init_size).max(bytes.len() as u64)
        }
    };
    if mem.mode == MemoryMode::Private && initrd.is_some() {
        return Err(unsupported(
            "mode=private cannot take an --initrd: lendvm cannot write it into private memory"
                .into(),
        ));
    }
    let writable = 0..kernel_end.div_ceil(HUGE) * HUGE;
    if writable.end > mem.size {
        return Err(unsupported(format!(
            "the kernel needs RAM up to {:#x}; --memory gives {:#x}",
            writable.end, mem.size
        )));
    }
    let console = console(&args.serial)?;
    let input: Option<Box<dyn std::io::Read + Send>> = match args.serial {
        SerialSpec::Stdio => Some(Box::new(std::io::stdin())),
        _ => None,
    };
    let dev = Device::open()?;
    let vm = dev.create_vm_with(VmOptions {
        irqchip: !args.no_irqchip,
    })?;
    // Kernels touch all their RAM soon: lend it whole at start.
    vm.set_demand_paging(false)?;
    vm.set_console(console.clone());
    // Bind for the host to write first (share), then give it for real.
    let (files, mut rows) = bind_ram(&vm, &mem, writable.clone(), Access::Share)?;
    let boot = BootArgs {
        cmdline,
        initrd: initrd.as_deref(),
    };
    let layout = match &image {
        KernelImage::Elf(elf) => vmm::boot::prepare_pvh(&vm, elf, &boot)?,
        KernelImage::BzImage(bytes) => vmm::boot::prepare_linux(&vm, bytes, &boot)?,
    };
    if mem.mode != MemoryMode::Share {
        for (file, row) in files.iter().zip(rows.iter_mut()) {
            if row.access == Access::Share {
                vm.unbind(&BindRequest::new(
                    file,
                    GuestAddress(row.guest_addr),
                    0,
                    row.size,
                    Access::Share,
                    Perms::RWX,
                ))?;
                vm.bind(&BindRequest::new(
                    file,
                    GuestAddress(row.guest_addr),
                    0,
                    row.size,
                    Access::Lend,
                    Perms::RWX,
                ))?;
                row.access = Access::Lend;
            }
        }
    }
    // After the memory: COM1's irqfd creates the interrupt controller, and
    // memslot changes after that wait for KVM (see vmm::VmOptions).
    vm.add_legacy_devices(console, input)?;
    finish(&vm, args, rows, Some(layout), started, Fallback::AllOnes)
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
    started: Instant,
    fallback: Fallback,
) -> Result<Report, RunError> {
    let vcpus = (0..args.vcpus)
        .map(|id| vm.add_vcpu(id))
        .collect::<Result<Vec<_>, _>>()?;
    vm.start()?;
    let status = run_vcpus(vm, vcpus, fallback)?;
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
    })
}

/// Run every vCPU on its own thread until the VM stops.
fn run_vcpus(vm: &Vm, vcpus: Vec<vmm::Vcpu>, fallback: Fallback) -> Result<Status, vmm::Error> {
    let kickers: Vec<vmm::Kicker> = vcpus.iter().map(|v| v.kicker()).collect();
    let results: Vec<Result<Status, vmm::Error>> = std::thread::scope(|s| {
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
                    .unwrap_or_else(|_| Err(vmm::Error::Invalid("a vCPU thread panicked".into())))
            })
            .collect()
    });
    // Report the error that stopped the VM, not the interruptions it caused.
    if let Some(e) = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .find(|e| !matches!(e, vmm::Error::Interrupted))
    {
        return Err(vmm::Error::Invalid(e.to_string()));
    }
    Ok(vm.status().unwrap_or(Status::LoadFailed))
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
        let mem = MemorySpec {
            size: 16 << 20,
            mode: MemoryMode::Private,
            at: 0,
        };
        let pieces = ram_pieces(&mem, 0x10_0100..0x12_0080);
        assert_eq!(
            pieces,
            vec![
                (0..0x10_0000, false),
                (0x10_0000..0x12_1000, true),
                (0x12_1000..16 << 20, false)
            ]
        );
        let lend = MemorySpec {
            mode: MemoryMode::Lend,
            ..mem
        };
        assert_eq!(
            ram_pieces(&lend, 0x10_0000..0x11_0000),
            vec![(0..16 << 20, true)]
        );
    }
}
