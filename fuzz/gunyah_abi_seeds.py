#!/usr/bin/env python3
"""Write the seed corpus of the `gunyah_abi` fuzz target (seeds/gunyah_abi/).

Each seed is a short scenario, encoded the way `arbitrary` 1.x decodes the
target's `Op` (fuzz_targets/gunyah_abi/ops.rs): integers little-endian, an
enum as a u32 whose variant is (x * variants) >> 32, bool/Option as one
byte, a Vec as (1, element)* then 0. Keep the variant lists below in the
order of ops.rs; run this again after changing it.

Usage: python3 gunyah_abi_seeds.py [out_dir]
"""

import os
import struct
import sys


def u8(v):
    return struct.pack("<B", v & 0xFF)


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def i8(v):
    return struct.pack("<b", v)


def i16(v):
    return struct.pack("<h", v)


def boolean(v):
    return u8(1 if v else 0)


def option(v, enc):
    return boolean(False) if v is None else boolean(True) + enc(v)


def vec(items, enc=u8):
    return b"".join(b"\x01" + enc(i) for i in items) + b"\x00"


def variant(names, name):
    k, n = names.index(name), len(names)
    return u32(0 if k == 0 else -(-(k << 32) // n))


FD = ["File", "NotOpen", "MinusOne", "Negative", "Event", "Regular", "Std", "Raw"]
ADDR = ["Low", "Ram", "Mmio", "System", "High", "NearTop", "Unaligned", "Raw"]
LEN = ["Pages", "Mib", "Whole", "Bytes", "NearTop", "Raw"]
MAPFLAGS = ["Valid", "Raw"]
FILEFLAGS = ["None", "Cloexec", "HugePage", "Both", "Raw"]
FILESIZE = ["Pages", "Mib", "Zero", "Bytes", "Huge"]
RESERVED = ["Zero", "One"]
VCPUID = ["Small", "Reserved", "Limit", "Raw"]
ARG = ["Vcpu", "Irqfd", "Ioevent", "Bytes"]
FNTYPE = ["Vcpu", "Irqfd", "Ioeventfd", "Raw"]
ARGSIZE = ["Natural", "Raw"]
PTR = ["Buffer", "GuardEnd", "Near", "Null", "Small", "Kernel", "Raw"]
REG = ["X", "Pc", "Sp", "Set", "Raw"]
RESUME = ["Handled", "Fault", "Retry", "Raw"]
OP = ["CreateVm", "CreateMem", "CreateGuestMemfd", "CloseFile", "WriteFile",
      "MapMem", "AddFunction", "RemoveFunction", "SetDtb", "SetFw",
      "SetBootContext", "Start", "Run", "DropVcpu", "DropVm", "UserMem",
      "Quickstart"]

ARG_ENC = {"u8": u8, "u16": u16, "u32": u32, "u64": u64, "i8": i8, "i16": i16}


def enum(names, kinds):
    """An encoder for an enum: `kinds` maps a variant to its fields' encoders."""
    def enc(name, *vals):
        fields = kinds.get(name, [])
        assert len(fields) == len(vals), (name, vals)
        return variant(names, name) + b"".join(f(v) for f, v in zip(fields, vals))
    return enc


fd = enum(FD, {"File": [u8], "NotOpen": [u16], "Negative": [u32], "Std": [u8], "Raw": [u32]})
addr = enum(ADDR, {"Low": [u16], "Ram": [u16], "Mmio": [u16], "System": [i8], "High": [u16],
                   "NearTop": [u8], "Unaligned": [u16, u16], "Raw": [u64]})
length = enum(LEN, {"Pages": [u8], "Mib": [u8], "Bytes": [u16], "NearTop": [u8], "Raw": [u64]})
fileflags = enum(FILEFLAGS, {"Raw": [u64]})
filesize = enum(FILESIZE, {"Pages": [u8], "Mib": [u8], "Bytes": [u32], "Huge": [u8]})
reg = enum(REG, {"X": [u8], "Pc": [u8], "Sp": [u8], "Set": [u8, u8], "Raw": [u32]})
resume = enum(RESUME, {"Raw": [u8]})
vcpuid = enum(VCPUID, {"Small": [u8], "Raw": [u32]})
fntype = enum(FNTYPE, {"Raw": [u32]})
argsize = enum(ARGSIZE, {"Raw": [u16]})
ptr = enum(PTR, {"Near": [i16], "Small": [u16], "Kernel": [u64], "Raw": [u64]})


def flags_valid(access, perms, unmap=False):
    return variant(MAPFLAGS, "Valid") + u8(access) + u8(perms) + boolean(unmap)


def flags_raw(v):
    return variant(MAPFLAGS, "Raw") + u32(v)


def reserved_zero():
    return variant(RESERVED, "Zero")


def arg_vcpu(id_enc):
    return variant(ARG, "Vcpu") + id_enc


def arg_irqfd(fd_enc, label, raw_label, flags):
    return variant(ARG, "Irqfd") + fd_enc + u8(label) + option(raw_label, u32) + u8(flags)


def arg_ioevent(datamatch, addr_enc, ln, fd_enc, flags):
    return variant(ARG, "Ioevent") + u64(datamatch) + addr_enc + u8(ln) + fd_enc + u8(flags)


def arg_bytes(bs):
    return variant(ARG, "Bytes") + vec(bs)


def desc(type_enc, arg_enc, size_enc, ptr_enc):
    return type_enc + arg_enc + size_enc + ptr_enc


def op(name, *fields):
    return variant(OP, name) + b"".join(fields)


def create_vm(slot, vm_type=None, compat=False):
    return op("CreateVm", u8(slot), option(vm_type, u64), boolean(compat))


def create_mem(slot, flags_enc, size_enc, compat=False, reserved=None):
    return op("CreateMem", u8(slot), flags_enc, size_enc, reserved or reserved_zero(), boolean(compat))


def create_guest_memfd(slot, vm, pages, private):
    return op("CreateGuestMemfd", u8(slot), u8(vm), u8(pages), boolean(private))


def close_file(slot):
    return op("CloseFile", u8(slot))


def map_mem(vm, fd_enc, guest_enc, offset_enc, size_enc, flags_enc, upstream=False):
    return op("MapMem", u8(vm), fd_enc, guest_enc, offset_enc, size_enc, flags_enc, boolean(upstream))


def add_fn(vm, d):
    return op("AddFunction", u8(vm), d)


def remove_fn(vm, d):
    return op("RemoveFunction", u8(vm), d)


def set_dtb(vm, addr_enc, size_enc):
    return op("SetDtb", u8(vm), addr_enc, size_enc)


def set_fw(vm, addr_enc, size_enc):
    return op("SetFw", u8(vm), addr_enc, size_enc)


def boot_ctx(vm, reg_enc, value, reserved=None):
    return op("SetBootContext", u8(vm), reg_enc, option(reserved, u32), u64(value))


def start(vm):
    return op("Start", u8(vm))


def run(vm, vcpu=0, free=False, resume_enc=None, data=bytes(8), garbage=0):
    return op("Run", u8(vm), u8(vcpu), u8(0 if free else 1), resume_enc or resume("Handled"),
              bytes(data), u64(garbage))


def drop_vcpu(vm, vcpu):
    return op("DropVcpu", u8(vm), u8(vcpu))


def drop_vm(slot):
    return op("DropVm", u8(slot))


def user_mem(vm, label, perms, guest_enc, pages, shape=0, lend=False, raw_flags=None):
    return op("UserMem", u8(vm), u8(label), u8(perms), option(raw_flags, u32), guest_enc,
              u8(pages), u8(shape), boolean(lend))


def quickstart(vm, slot, lend, code):
    return op("Quickstart", u8(vm), u8(slot), boolean(lend), vec(code))


# x86-64 snippets for the guest (CPL3, identity-mapped, RIP = 2 GiB).
MMIO_READ = bytes([0xA1]) + u64(0xC000_0000)          # mov eax, [0xc0000000]
MMIO_WRITE = bytes([0xB8]) + u32(0x1234_5678) + bytes([0xA3]) + u64(0xC000_0008)
UNBOUND_READ = bytes([0xA1]) + u64(0x1_0000_0000)     # mov eax, [4 GiB]: page fault
EXIT_42 = bytes([0xB8]) + u32(42) + bytes([0xE7, 0xF4])  # mov eax, 42; out 0xf4, eax
SPIN = bytes([0xEB, 0xFE])                             # jmp $
CONSOLE = bytes([0xB0, 0x41, 0xE6, 0xE9]) + SPIN       # mov al, 'A'; out 0xe9, al

SEEDS = {
    # Boots, then an MMIO read answered with data, then exits.
    "boot-mmio-read": quickstart(0, 0, True, MMIO_READ + EXIT_42)
    + run(0, free=True) + run(0, free=True, data=b"\x11\x22\x33\x44\0\0\0\0") + run(0, free=True)
    + run(0),
    # Share binding; an MMIO write, then RETRY and FAULT resumes.
    "boot-mmio-write": quickstart(0, 1, False, MMIO_WRITE + MMIO_WRITE)
    + run(0, free=True) + run(0, free=True, resume_enc=resume("Retry"))
    + run(0, free=True, resume_enc=resume("Fault")) + run(0, free=True),
    # A page fault on unbound memory; a bad resume action, then FAULT.
    "boot-page-fault": quickstart(1, 2, True, UNBOUND_READ)
    + run(1, free=True) + run(1, free=True, resume_enc=resume("Raw", 9))
    + run(1, free=True, resume_enc=resume("Fault")) + run(1, free=True),
    # The exit port: STATUS EXITED, then a system-down vCPU leaves the page alone.
    "boot-exit": quickstart(0, 0, False, EXIT_42) + run(0, free=True) + run(0, free=True) + run(0)
    + start(0),
    # A guest that spins: the watchdog interrupts it (EINTR); immediate_exit.
    "boot-spin": quickstart(0, 0, True, CONSOLE) + run(0, free=True) + run(0) + run(0, free=True),
    # Zero bytes at RIP and a second vCPU; remove one and run it (ENODEV).
    "boot-two-vcpus": quickstart(0, 0, True, b"")
    + add_fn(0, desc(fntype("Vcpu"), arg_vcpu(vcpuid("Small", 1)), argsize("Natural"), ptr("Buffer")))
    + run(0, 1, free=True)
    + remove_fn(0, desc(fntype("Vcpu"), arg_vcpu(vcpuid("Small", 0)), argsize("Natural"), ptr("Buffer")))
    + run(0, 0, free=True) + run(0, 1, free=True),
    # START refusals: no DTB; DTB outside any binding; after a failed START.
    "start-refusals": start(0) + start(0)
    + set_dtb(1, addr("High", 0), length("Pages", 1)) + start(1) + set_dtb(1, addr("High", 0), length("Pages", 1))
    + boot_ctx(1, reg("Pc", 0), 0x1000),
    # MAP_MEM add and the four UNMAP cases, in the Android encoding.
    "map-unmap-split": create_mem(0, fileflags("Cloexec"), filesize("Mib", 9))
    + map_mem(0, fd("File", 0), addr("Ram", 0), length("Pages", 0), length("Whole"), flags_valid(2, 7))
    + map_mem(0, fd("File", 0), addr("Ram", 16), length("Pages", 16), length("Pages", 16), flags_valid(2, 7, True))
    + map_mem(0, fd("File", 0), addr("Ram", 0), length("Pages", 0), length("Pages", 4), flags_valid(2, 7, True))
    + map_mem(0, fd("File", 0), addr("Ram", 12), length("Pages", 12), length("Pages", 4), flags_valid(2, 7, True))
    + map_mem(0, fd("File", 0), addr("Ram", 4), length("Pages", 4), length("Pages", 8), flags_valid(2, 7, True))
    + map_mem(1, fd("File", 0), addr("Ram", 0), length("Pages", 0), length("Pages", 4), flags_valid(1, 7)),
    # The upstream encoding, and wrong-flag removals (ENOENT).
    "map-upstream": map_mem(0, fd("File", 1), addr("Low", 0), length("Pages", 0), length("Mib", 1),
                            flags_raw(0x2 | 0x70), True)
    + map_mem(0, fd("File", 1), addr("Low", 0), length("Pages", 0), length("Mib", 1), flags_raw(0x1 | 0x70 | 0x100), True)
    + map_mem(0, fd("File", 1), addr("Low", 0), length("Pages", 0), length("Mib", 1), flags_raw(0x2 | 0x70 | 0x100), True)
    + map_mem(0, fd("File", 1), addr("Low", 0), length("Pages", 0), length("Mib", 1), flags_raw(0x3 | 0x10), True),
    # Descriptor numbers: not open, -1, huge, an eventfd, a regular file,
    # a closed file still bound, another VM's guest_memfd.
    "map-descriptors": map_mem(0, fd("NotOpen", 7), addr("Ram", 0), length("Pages", 0), length("Pages", 1), flags_valid(1, 7))
    + map_mem(0, fd("MinusOne"), addr("Ram", 0), length("Pages", 0), length("Pages", 1), flags_valid(1, 7))
    + map_mem(0, fd("Negative", 5), addr("Ram", 0), length("Pages", 0), length("Pages", 1), flags_valid(1, 7))
    + map_mem(0, fd("Event"), addr("Ram", 0), length("Pages", 0), length("Pages", 1), flags_valid(1, 7))
    + map_mem(0, fd("Regular"), addr("Ram", 0), length("Pages", 0), length("Pages", 1), flags_valid(1, 7))
    + map_mem(0, fd("File", 2), addr("Ram", 0), length("Pages", 0), length("Pages", 1), flags_valid(1, 7))
    + close_file(2)
    + map_mem(0, fd("File", 2), addr("Ram", 8), length("Pages", 8), length("Pages", 1), flags_valid(1, 7))
    + create_guest_memfd(3, 1, 15, False)
    + map_mem(0, fd("File", 3), addr("High", 0), length("Pages", 0), length("Pages", 1), flags_valid(1, 7))
    + map_mem(1, fd("File", 3), addr("High", 0), length("Pages", 0), length("Pages", 1), flags_valid(1, 7)),
    # Functions through the argument page, its guard and wild pointers.
    "functions": add_fn(0, desc(fntype("Irqfd"), arg_irqfd(fd("Event"), 3, None, 1), argsize("Natural"), ptr("Buffer")))
    + add_fn(0, desc(fntype("Irqfd"), arg_irqfd(fd("Event"), 3, None, 0), argsize("Natural"), ptr("Buffer")))
    + add_fn(0, desc(fntype("Irqfd"), arg_irqfd(fd("Regular"), 4, None, 0), argsize("Natural"), ptr("Buffer")))
    + add_fn(0, desc(fntype("Ioeventfd"), arg_ioevent(7, addr("Mmio", 2), 4, fd("Event"), 1), argsize("Natural"), ptr("GuardEnd")))
    + add_fn(0, desc(fntype("Ioeventfd"), arg_ioevent(7, addr("Mmio", 2), 4, fd("Event"), 1), argsize("Raw", 40), ptr("GuardEnd")))
    + add_fn(0, desc(fntype("Ioeventfd"), arg_ioevent(0, addr("Mmio", 2), 3, fd("NotOpen", 1), 0), argsize("Natural"), ptr("Buffer")))
    + remove_fn(0, desc(fntype("Ioeventfd"), arg_ioevent(7, addr("Mmio", 2), 4, fd("Event"), 1), argsize("Natural"), ptr("Buffer")))
    + remove_fn(0, desc(fntype("Irqfd"), arg_irqfd(fd("NotOpen", 0), 3, None, 0), argsize("Natural"), ptr("Buffer")))
    + add_fn(0, desc(fntype("Vcpu"), arg_vcpu(vcpuid("Reserved")), argsize("Natural"), ptr("Buffer")))
    + add_fn(0, desc(fntype("Vcpu"), arg_vcpu(vcpuid("Small", 2)), argsize("Natural"), ptr("Null")))
    + add_fn(0, desc(fntype("Vcpu"), arg_vcpu(vcpuid("Small", 2)), argsize("Raw", 257), ptr("Kernel", 0)))
    + add_fn(0, desc(fntype("Raw", 9), arg_bytes(b"\x01\x02\x03\x04"), argsize("Natural"), ptr("Near", -2)))
    + add_fn(0, desc(fntype("Vcpu"), arg_vcpu(vcpuid("Small", 2)), argsize("Natural"), ptr("Raw", 0x7FFF_0000_1000))),
    # Boot context in both profiles, then after START.
    "boot-context": create_vm(1, None, True) + boot_ctx(1, reg("X", 20), 5) + boot_ctx(1, reg("Sp", 1), 5)
    + boot_ctx(0, reg("X", 20), 5) + boot_ctx(0, reg("Sp", 1), 5) + boot_ctx(0, reg("Raw", 1 << 16), 5)
    + boot_ctx(0, reg("Pc", 0), 5, reserved=1) + create_vm(0, 7)
    + set_dtb(1, addr("Raw", 0xFFFF_FFFF_FFFF_F000), length("Pages", 2))
    + set_fw(1, addr("Ram", 3), length("Pages", 2)),
    # Legacy user regions over the harness's memory: share, lend, label
    # taken, overlap with a binding, unaligned.
    "user-regions": user_mem(0, 1, 3, addr("High", 0), 2) + user_mem(0, 2, 7, addr("High", 16), 3, lend=True)
    + user_mem(0, 1, 3, addr("High", 64), 1) + user_mem(0, 3, 3, addr("High", 17), 1)
    + user_mem(0, 4, 3, addr("High", 128), 2, shape=3, lend=True) + user_mem(0, 5, 0, addr("High", 256), 1)
    + map_mem(0, fd("File", 0), addr("High", 0), length("Pages", 0), length("Pages", 1), flags_valid(2, 7))
    + drop_vm(0),
    # Compat files and VMs: START with the DTB in the platform's MMIO range.
    "compat": create_vm(0, None, True) + create_mem(0, fileflags("None"), filesize("Mib", 1), compat=True)
    + map_mem(0, fd("File", 0), addr("Low", 0), length("Pages", 0), length("Whole"), flags_valid(1, 7))
    + set_dtb(0, addr("Low", 0), length("Pages", 1)) + start(0)
    + create_mem(1, fileflags("Raw", 8), filesize("Bytes", 4097)) + create_mem(2, fileflags("Both"), filesize("Huge", 7)),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "seeds", "gunyah_abi")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
