//! One test (or a few) per SPEC rule of the binding engine: file creation
//! (GM-1, GM-2), lifetime and references (GM-LT-1, GM-LT-4), MAP_MEM add
//! (B-ADD-2..11, DESIGN D3/D6), remove (B-RM-1..6), access (B-AC-3), VM
//! teardown, and plans. Every refused call is also checked to leave the
//! registry exactly as it was.

use binding::{
    Access, Alignment, BindingInfo, Bindings, Change, Error, FileId, FileInfo, FileRules,
    HUGE_PAGE_SIZE, MapRequest, PAGE_SIZE, Perms, Plan, RemoveCase, VmId, errno, file_flags,
    map_flags,
};
use uapi::{
    GUNYAH_MEM_ACCESS_MASK, GUNYAH_MEM_ALLOW_EXEC, GUNYAH_MEM_ALLOW_READ, GUNYAH_MEM_ALLOW_RWX,
    GUNYAH_MEM_ALLOW_WRITE, GUNYAH_MEM_DEFAULT_ACCESS, GUNYAH_MEM_FORCE_LEND,
    GUNYAH_MEM_FORCE_SHARE, GUNYAH_MEM_UNMAP, gunyah_map_mem_args,
};

const P: u64 = PAGE_SIZE;
const H: u64 = HUGE_PAGE_SIZE;
const LEND_RWX: u32 = GUNYAH_MEM_FORCE_LEND | GUNYAH_MEM_ALLOW_RWX;
const SHARE_RWX: u32 = GUNYAH_MEM_FORCE_SHARE | GUNYAH_MEM_ALLOW_RWX;
const GPA: u64 = 0x4000_0000;

// ----- helpers -----

fn args(guest_addr: u64, file: FileId, offset: u64, size: u64, flags: u32) -> gunyah_map_mem_args {
    gunyah_map_mem_args {
        guest_addr,
        flags,
        guest_mem_fd: file.0,
        offset,
        size,
    }
}

fn unmap(a: gunyah_map_mem_args) -> gunyah_map_mem_args {
    gunyah_map_mem_args {
        flags: a.flags | GUNYAH_MEM_UNMAP,
        ..a
    }
}

fn binding(guest_addr: u64, file: FileId, offset: u64, size: u64, flags: u32) -> BindingInfo {
    BindingInfo {
        guest_addr,
        size,
        file,
        offset,
        flags,
    }
}

/// Everything a caller can observe about a registry.
#[derive(Debug, PartialEq)]
struct Snapshot {
    vms: Vec<(VmId, bool, Vec<BindingInfo>)>,
    files: Vec<(FileId, Option<FileInfo>)>,
}

/// A registry that remembers every id it handed out, so a snapshot covers
/// all of them (including destroyed VMs and closed files).
struct World {
    reg: Bindings,
    vms: Vec<VmId>,
    files: Vec<FileId>,
}

impl World {
    fn new() -> World {
        World {
            reg: Bindings::new(),
            vms: Vec::new(),
            files: Vec::new(),
        }
    }

    fn vm(&mut self) -> VmId {
        let vm = self.reg.create_vm();
        self.vms.push(vm);
        vm
    }

    fn file(&mut self, size: u64, flags: u64) -> FileId {
        let f = self.reg.create_file(size, flags).expect("create_file");
        self.files.push(f);
        f
    }

    fn file_with(&mut self, size: u64, flags: u64, rules: FileRules) -> FileId {
        let f = self
            .reg
            .create_file_with(size, flags, rules)
            .expect("create_file_with");
        self.files.push(f);
        f
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            vms: self
                .vms
                .iter()
                .map(|&v| (v, self.reg.vm_exists(v), self.reg.bindings(v)))
                .collect(),
            files: self
                .files
                .iter()
                .map(|&f| (f, self.reg.file_info(f)))
                .collect(),
        }
    }

    fn map(&mut self, vm: VmId, a: gunyah_map_mem_args) -> Plan {
        self.reg
            .map_mem(vm, &a)
            .unwrap_or_else(|e| panic!("map_mem({a:x?}) refused: {e}"))
    }

    /// MAP_MEM must fail with `errno` and change nothing.
    fn refused(&mut self, vm: VmId, a: gunyah_map_mem_args, errno: i32) -> Error {
        let before = self.snapshot();
        let err = self
            .reg
            .map_mem(vm, &a)
            .expect_err(&format!("map_mem({a:x?}) accepted"));
        assert_eq!(err.errno(), errno, "map_mem({a:x?}): {err}");
        assert_eq!(
            self.snapshot(),
            before,
            "map_mem({a:x?}) changed the registry"
        );
        err
    }

    /// create_file must fail with EINVAL and change nothing.
    fn file_refused(&mut self, size: u64, flags: u64) -> Error {
        let before = self.snapshot();
        let err = self
            .reg
            .create_file(size, flags)
            .expect_err(&format!("create_file({size:#x}, {flags:#x}) accepted"));
        assert_eq!(err.errno(), libc::EINVAL, "{err}");
        assert_eq!(self.snapshot(), before);
        err
    }

    fn refs(&self, f: FileId) -> u32 {
        self.reg.file_info(f).expect("file record").refs
    }
}

/// A world with one VM and one 64-page file.
fn world() -> (World, VmId, FileId) {
    let mut w = World::new();
    let vm = w.vm();
    let f = w.file(64 * P, 0);
    (w, vm, f)
}

/// A VM with an 8-page lend binding at GPA backed by file pages 8..16.
fn bound_world() -> (World, VmId, FileId, BindingInfo) {
    let (mut w, vm, f) = world();
    let b = w.map(vm, args(GPA, f, 8 * P, 8 * P, LEND_RWX)).added[0];
    (w, vm, f, b)
}

fn unknown_map_bits() -> Vec<u32> {
    let known = GUNYAH_MEM_ALLOW_RWX | GUNYAH_MEM_ACCESS_MASK | GUNYAH_MEM_UNMAP;
    (0..32)
        .map(|b| 1u32 << b)
        .filter(|b| b & known == 0)
        .collect()
}

mod add_arguments;
mod add_ranges;
mod lifetime;
mod remove;
