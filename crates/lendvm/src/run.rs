//! `lendvm run --image`: boot a user's ELF image in lendvm's native mode.

use std::path::{Path, PathBuf};
use std::time::Instant;

use binding::{Access, Perms};
use gmem::Mode;
use vmm::loader::{ElfImage, LoadError};
use vmm::{Console, Device, Exit, ResumeAction, Status, Vm, VmOptions};

use crate::cli::{MemoryMode, MemorySpec, RunArgs};
use crate::report::{BindingRow, Report};

const PAGE: u64 = 4096;

/// Why a run failed before or while the guest ran.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The image file could not be read.
    #[error("{}: cannot read the image: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
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
    /// The image needs a boot path lendvm does not offer for it.
    #[error("{}: {why}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// The VM manager refused something.
    #[error(transparent)]
    Vm(#[from] vmm::Error),
}

/// Guest RAM pieces: (guest range, host-writable?) — the image's pages must
/// be host-writable to load them, the rest can be private.
fn ram_pieces(mem: &MemorySpec, image: std::ops::Range<u64>) -> Vec<(std::ops::Range<u64>, bool)> {
    let ram = mem.at..mem.at + mem.size;
    if mem.mode != MemoryMode::Private {
        return vec![(ram, true)];
    }
    let lo = (image.start & !(PAGE - 1)).max(ram.start);
    let hi = image.end.div_ceil(PAGE).saturating_mul(PAGE).min(ram.end);
    [(ram.start..lo, false), (lo..hi, true), (hi..ram.end, false)]
        .into_iter()
        .filter(|(r, _)| r.start < r.end)
        .collect()
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

/// Run `args.image` to its end.
pub fn run_image(args: &RunArgs, path: &Path) -> Result<Report, RunError> {
    let started = Instant::now();
    let bytes = std::fs::read(path).map_err(|source| RunError::Read {
        path: path.into(),
        source,
    })?;
    let elf = ElfImage::parse(&bytes).map_err(|source| RunError::Image {
        path: path.into(),
        source,
    })?;
    if elf.pvh_entry.is_some() {
        return Err(RunError::Unsupported {
            path: path.into(),
            why: "the image carries a PVH entry note; lendvm enters images in its native 64-bit mode only".into(),
        });
    }
    let mem = args.memory;
    check_fits(path, &elf, &mem)?;
    // Everything the image needs is checked: now make the VM.
    let dev = Device::open()?;
    // Native guests get no interrupts from lendvm: skip the controller,
    // which only delays start-up (see VmOptions).
    let vm = dev.create_vm_with(VmOptions { irqchip: false })?;
    vm.set_console(Console::Stdout);
    let access = if mem.mode == MemoryMode::Share {
        Access::Share
    } else {
        Access::Lend
    };
    let mut rows = Vec::new();
    let mut files = Vec::new();
    for (range, writable) in ram_pieces(&mem, elf.span()) {
        let mode = if writable {
            Mode::HostMappable
        } else {
            Mode::Private
        };
        let file = vm.create_guest_memfd(range.end - range.start, mode)?;
        vm.bind(
            &file,
            range.start,
            0,
            range.end - range.start,
            access,
            Perms::RWX,
        )?;
        rows.push(BindingRow {
            what: if writable { "RAM" } else { "RAM (private)" },
            guest_addr: range.start,
            size: range.end - range.start,
            file: if writable {
                "guest_memfd"
            } else {
                "guest_memfd (private)"
            },
            access,
            perms: Perms::RWX.to_string(),
        });
        files.push(file);
    }
    elf.load(&vm).map_err(|source| RunError::Image {
        path: path.into(),
        source,
    })?;
    vm.set_dtb_config(&uapi::gunyah_vm_dtb_config {
        guest_phys_addr: mem.at + mem.size - PAGE,
        size: PAGE,
    })?;
    let vcpus = (0..args.vcpus)
        .map(|id| vm.add_vcpu(id))
        .collect::<Result<Vec<_>, _>>()?;
    vm.start()?;
    let status = run_vcpus(&vm, vcpus)?;
    Ok(Report {
        bindings: rows,
        metrics: vm.metrics(),
        status,
        first_touch: None,
        checks: Vec::new(),
        elapsed: started.elapsed(),
        console: String::new(),
    })
}

/// Run every vCPU on its own thread until the VM stops. lendvm has no
/// devices for user images beyond the console: MMIO and page faults are
/// reflected into the guest as faults (DESIGN D7).
pub fn run_vcpus(vm: &Vm, vcpus: Vec<vmm::Vcpu>) -> Result<Status, vmm::Error> {
    let kickers: Vec<vmm::Kicker> = vcpus.iter().map(|v| v.kicker()).collect();
    let results: Vec<Result<Status, vmm::Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = vcpus
            .into_iter()
            .map(|mut vcpu| {
                let kickers = &kickers;
                s.spawn(move || {
                    let result = drive(&mut vcpu);
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

fn drive(vcpu: &mut vmm::Vcpu) -> Result<Status, vmm::Error> {
    loop {
        match vcpu.run()? {
            Exit::Status(status) => return Ok(status),
            Exit::Mmio { .. } | Exit::PageFault { .. } => vcpu.set_resume(ResumeAction::Fault),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ram_keeps_the_image_pages_host_writable() {
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
