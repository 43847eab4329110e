//! The errno of every [`Error`] variant, pinned: the SPEC names them and
//! callers (the Gunyah ABI, tests) depend on them.

use super::*;
use crate::vcpu::{Crash, Status};

/// A number per variant, from a match without a wildcard: a new variant
/// does not compile until it is numbered here, and then the table below
/// misses it until it gets a row.
fn variant(e: &Error) -> usize {
    use Error::*;
    match e {
        Binding(_) => 0,
        Memory(_) => 1,
        Kvm { .. } => 2,
        BadFd(_) => 3,
        WrongFdKind { .. } => 4,
        Overflow { .. } => 5,
        Interrupted => 6,
        NoSlots { .. } => 7,
        Fault { .. } => 8,
        HostLacks { .. } => 9,
        KvmApiVersion { .. } => 10,
        NoIrqchip => 11,
        AccessVcpuStopped { .. } => 12,
        OnlyBeforeStart { .. } => 13,
        NoSuchXRegister { .. } => 14,
        NoSuchRegisterIndex { .. } => 15,
        UnknownRegisterSet { .. } => 16,
        NoDtb => 17,
        Empty { .. } => 18,
        SmpBootWithoutIrqchip { .. } => 19,
        NoNativeRegion => 20,
        DtbPerms { .. } => 21,
        ForeignGuestMem { .. } => 22,
        VcpuIdOutOfRange { .. } => 23,
        IrqfdLabelOutOfRange { .. } => 24,
        IoeventfdLength { .. } => 25,
        Wraps { .. } => 26,
        DatamatchWithoutLength => 27,
        UnknownFlags { .. } => 28,
        NoPermissions { .. } => 29,
        NotPageAligned { .. } => 30,
        UnknownVmType { .. } => 31,
        ReservedNotZero { .. } => 32,
        DtbInPlatformMmio { .. } => 33,
        DtbNotExecutable { .. } => 34,
        ArgSize { .. } => 35,
        ArgTooLarge { .. } => 36,
        BadResumeAction { .. } => 37,
        GuestWrite { .. } => 38,
        NoLowRam => 39,
        Place(_) => 40,
        Load(_) => 41,
        NoPvhNote => 42,
        TooManyMapEntries { .. } => 43,
        BzImageLoad { .. } => 44,
        NoRoomToUnpack { .. } => 45,
        LendShared { .. } => 46,
        HostAccessTooLong { .. } => 47,
        HostRegion { .. } => 48,
        HostMap { .. } => 49,
        AccessWidth { .. } => 50,
        VcpuExists { .. } => 51,
        IrqfdLabelTaken { .. } => 52,
        IoeventfdExists { .. } => 53,
        RegionLabelTaken { .. } => 54,
        Overlaps { .. } => 55,
        NoVcpu { .. } => 56,
        NoIrqfd { .. } => 57,
        NoIoeventfd { .. } => 58,
        UnknownFunction { .. } => 59,
        NotBound { .. } => 60,
        NotBoundForLend { .. } => 61,
        DtbOutsideBinding { .. } => 62,
        NothingToUnmap => 63,
        FixedAfterStart { .. } => 64,
        HostViewOverLend { .. } => 65,
        HostViewOverDtb { .. } => 66,
        SlotOccupied { .. } => 67,
        VcpuRemoved { .. } => 68,
        NotStarted => 69,
        Stopped { .. } => 70,
        StartFailedEarlier { .. } => 71,
        IrqfdEventfdShared { .. } => 72,
    }
}
const VARIANTS: usize = 73;

fn one_of_each() -> Vec<(Error, i32)> {
    use Error::*;
    use libc::*;
    let r = 0x1000..0x3000;
    vec![
        (Binding(binding::Error::NoPermission), EINVAL),
        (Memory(gmem::Error::BadSize(3)), EINVAL),
        (
            Kvm {
                op: "KVM_RUN",
                source: std::io::Error::from_raw_os_error(EFAULT),
            },
            EFAULT,
        ),
        (BadFd(-1), EBADF),
        (
            WrongFdKind {
                fd: 3,
                wanted: "an eventfd",
            },
            EINVAL,
        ),
        (
            Overflow {
                what: "DTB",
                addr: u64::MAX,
                size: 2,
            },
            EOVERFLOW,
        ),
        (Interrupted, EINTR),
        (NoSlots { needed: 2, free: 1 }, ENOSPC),
        (Fault { addr: 8, len: 16 }, EFAULT),
        (
            HostLacks {
                what: "irqfd",
                cap: kvm_ioctls::Cap::Irqfd,
            },
            EOPNOTSUPP,
        ),
        (KvmApiVersion { found: 11 }, EOPNOTSUPP),
        (NoIrqchip, EOPNOTSUPP),
        (IrqfdEventfdShared { label: 2 }, EOPNOTSUPP),
        (AccessVcpuStopped { exit_reason: 5 }, EOPNOTSUPP),
        (
            OnlyBeforeStart {
                what: "moving the MMIO window",
            },
            EINVAL,
        ),
        (
            NoSuchXRegister {
                index: 16,
                count: 16,
            },
            EINVAL,
        ),
        (NoSuchRegisterIndex { set: 1, index: 1 }, EINVAL),
        (UnknownRegisterSet { reg: 0x300 }, EINVAL),
        (NoDtb, EINVAL),
        (Empty { what: "DTB" }, EINVAL),
        (SmpBootWithoutIrqchip { vcpus: 2 }, EINVAL),
        (NoNativeRegion, EINVAL),
        (
            DtbPerms {
                perms: Perms::new(true, true, false),
            },
            EINVAL,
        ),
        (ForeignGuestMem { file: FileId(1) }, EINVAL),
        (VcpuIdOutOfRange { id: 9, limit: 8 }, EINVAL),
        (
            IrqfdLabelOutOfRange {
                label: 24,
                labels: 24,
            },
            EINVAL,
        ),
        (IoeventfdLength { len: 3 }, EINVAL),
        (
            Wraps {
                what: "ioeventfd range",
                addr: u64::MAX,
                size: 8,
            },
            EINVAL,
        ),
        (DatamatchWithoutLength, EINVAL),
        (
            UnknownFlags {
                what: "irqfd",
                flags: 2,
                known: "LEVEL (0x1)",
            },
            EINVAL,
        ),
        (
            NoPermissions {
                what: "user region",
            },
            EINVAL,
        ),
        (
            NotPageAligned {
                what: "user region size",
                value: 0x10,
            },
            EINVAL,
        ),
        (UnknownVmType { vm_type: 1 }, EINVAL),
        (
            ReservedNotZero {
                what: "CREATE_GUEST_MEM",
                index: Some(2),
                value: 1,
            },
            EINVAL,
        ),
        (
            DtbInPlatformMmio {
                addr: 0x1000,
                mmio: r.clone(),
            },
            EINVAL,
        ),
        (DtbNotExecutable { addr: 0x1000 }, EINVAL),
        (
            ArgSize {
                what: "vCPU",
                size: 8,
                want: 4,
            },
            EINVAL,
        ),
        (
            ArgTooLarge {
                size: 257,
                limit: 256,
            },
            EINVAL,
        ),
        (BadResumeAction { action: 3 }, EINVAL),
        (
            GuestWrite {
                what: "initrd",
                gpa: 0x1000,
                source: Box::new(NotBound { gpa: 0x1000 }),
            },
            EINVAL,
        ),
        (NoLowRam, EINVAL),
        (Place(PlaceError::EmptyInitrd), EINVAL),
        (Load(LoadError::NotElf), EINVAL),
        (NoPvhNote, EINVAL),
        (
            TooManyMapEntries {
                entries: 200,
                max: 128,
                table: "the zero page",
            },
            EINVAL,
        ),
        (
            BzImageLoad {
                source: linux_loader::loader::Error::MemoryOverflow,
            },
            EINVAL,
        ),
        (
            NoRoomToUnpack {
                needs: 0x200_0000,
                ram_end: 0x10_0000,
            },
            EINVAL,
        ),
        (LendShared { range: r.clone() }, EINVAL),
        (HostAccessTooLong { len: u64::MAX }, EINVAL),
        (HostRegion { gpa: 0x1000 }, EINVAL),
        (
            HostMap {
                source: vm_memory::GuestRegionCollectionError::NoMemoryRegion,
            },
            EINVAL,
        ),
        (AccessWidth { len: 3 }, EINVAL),
        (VcpuExists { id: 0 }, EEXIST),
        (IrqfdLabelTaken { label: 1 }, EEXIST),
        (
            IoeventfdExists {
                addr: 0x8000,
                len: 8,
                datamatch: Some(7),
            },
            EEXIST,
        ),
        (RegionLabelTaken { label: 1 }, EEXIST),
        (
            Overlaps {
                what: "user region",
                range: r.clone(),
                other: "a binding",
                other_range: 0..0x2000,
            },
            EEXIST,
        ),
        (NoVcpu { id: 500 }, ENOENT),
        (NoIrqfd { label: 3 }, ENOENT),
        (
            NoIoeventfd {
                addr: 0x8000,
                len: 8,
            },
            ENOENT,
        ),
        (UnknownFunction { kind: 9 }, ENOENT),
        (NotBound { gpa: 0x1000 }, ENOENT),
        (
            NotBoundForLend {
                gpa: 0x2000,
                range: r.clone(),
            },
            ENOENT,
        ),
        (DtbOutsideBinding { range: r.clone() }, ENOENT),
        (NothingToUnmap, ENOENT),
        (FixedAfterStart { what: "DTB" }, EBUSY),
        (HostViewOverLend { range: r.clone() }, EBUSY),
        (HostViewOverDtb { range: r.clone() }, EBUSY),
        (
            SlotOccupied {
                range: r.clone(),
                slot: 4,
                slot_range: 0..0x2000,
            },
            EBUSY,
        ),
        (VcpuRemoved { id: 1 }, ENODEV),
        (NotStarted, ENODEV),
        (
            Stopped {
                status: Status::Crashed(Crash::TripleFault),
            },
            ENODEV,
        ),
        (
            StartFailedEarlier {
                reason: "no DTB location was set (SET_DTB_CONFIG)".into(),
            },
            ENODEV,
        ),
    ]
}

#[test]
fn every_variant_keeps_the_errno_the_spec_names() {
    let table = one_of_each();
    let mut seen = [false; VARIANTS];
    for (e, want) in &table {
        assert_eq!(e.errno(), *want, "{e:?}");
        assert_eq!(e.to_ret(), -*want, "{e:?}");
        assert!(!e.to_string().is_empty(), "{e:?}");
        seen[variant(e)] = true;
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|&i| !seen[i]).collect();
    assert!(missing.is_empty(), "variants without a row: {missing:?}");
}

#[test]
fn messages_name_the_facts_their_fields_carry() {
    let e = Error::SlotOccupied {
        range: 0x1000..0x3000,
        slot: 4,
        slot_range: 0..0x2000,
    };
    assert_eq!(
        e.to_string(),
        "guest range [0x1000, 0x3000) is already installed in KVM slot 4 [0x0, 0x2000)"
    );
    let e = Error::NoSuchXRegister {
        index: 40,
        count: 32,
    };
    assert!(
        e.to_string()
            .starts_with("register X40 does not exist: this VM takes X0..X31 ")
    );
    let e = Error::ReservedNotZero {
        what: "CREATE_GUEST_MEM",
        index: Some(2),
        value: 0x10,
    };
    assert_eq!(
        e.to_string(),
        "CREATE_GUEST_MEM reserved word 2 is 0x10: reserved words must be 0"
    );
    let e = Error::IoeventfdExists {
        addr: 0x8000,
        len: 0,
        datamatch: None,
    };
    assert_eq!(
        e.to_string(),
        "an ioeventfd at 0x8000 (length 0, any value) already covers this one"
    );
}

// A source is kept out of the message and added once by `full_message`,
// which leaves out sources a message already quotes.
#[test]
fn full_message_adds_each_source_once() {
    let e = Error::GuestWrite {
        what: "initrd",
        gpa: 0x2000,
        source: Box::new(Error::NotBound { gpa: 0x2000 }),
    };
    assert_eq!(e.to_string(), "cannot write the initrd at 0x2000");
    assert_eq!(
        full_message(&e),
        "cannot write the initrd at 0x2000: guest address 0x2000 is not bound to any guest memory file"
    );
    let quoted = Error::Kvm {
        op: "KVM_RUN",
        source: std::io::Error::from_raw_os_error(libc::EFAULT),
    };
    assert_eq!(full_message(&quoted), quoted.to_string());
}
