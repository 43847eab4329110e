//! `lendvm --help`: every command and option, and what the exit status
//! means. Kept beside the parser (`cli.rs`), whose tests check that every
//! option it accepts is explained here.

/// `lendvm --help`.
pub const HELP: &str = "\
lendvm - a virtual machine monitor for Linux KVM whose guests get memory
only through bindings of guest memory files, shared with the host or lent
to the guest (the host loses access until it takes the memory back).

USAGE:
    lendvm                   run the built-in demo (same as `lendvm run`)
    lendvm run [OPTIONS]     boot a guest; without --image or --kernel, the
                             built-in demo (which takes only --json)
    lendvm info [--json]     host capabilities, how lendvm settles the open
                             questions on KVM (D1-D12), who enforces what,
                             and the demand-paging chunk size rule
    lendvm help              this text (also -h, --help)

RUN OPTIONS (`--opt VALUE` and `--opt=VALUE` both work; the last of a
repeated option wins):
    --kernel PATH      A Linux kernel: a bzImage (boot protocol 2.12 or later,
                       booted with the 64-bit protocol) or an ELF vmlinux with
                       the Xen PVH note (booted with the PVH protocol, as
                       Firecracker, cloud-hypervisor and QEMU do).
    --initrd PATH      An initrd/initramfs for the kernel, placed at the top
                       of low RAM (PVH: module 0). Must not be empty.
    --cmdline STR      The kernel command line (default: console=ttyS0); text
                       (UTF-8), at most what the kernel's header allows.
    --image PATH       Any ELF64 x86-64 image. With the PVH note it boots like
                       --kernel. Without it lendvm enters it in its native
                       mode: 64-bit long mode at CPL3 with page tables that
                       identity-map guest physical memory, RDI = vCPU id.
                       Native guests write bytes to port 0xe9 for the console
                       and a 32-bit code to port 0xf4 to stop.
    --memory SPEC      Guest RAM as size=SIZE[,mode=MODE][,at=ADDR]
                       SIZE: bytes, or with K, M or G (powers of 1024); a
                       non-zero multiple of 4 KiB.
                       MODE: lend (default; a host-mappable guest_memfd lent to
                       the guest: native images borrow it page by page on
                       first touch, kernels get it whole at start, after
                       lendvm wrote the kernel and boot structures into it),
                       share (the host keeps access), or private (a guest_memfd
                       the kernel itself keeps from the host; the pages lendvm
                       must write the image or kernel into stay host-mappable).
                       ADDR: guest physical address, page-aligned (default 0;
                       kernels need 0); ADDR + SIZE must not pass 2^64.
                       Default: size=64M,mode=lend,at=0.
    --vcpus N          Number of vCPUs, each on its own thread (default 1; at
                       most what this host's KVM allows per VM, see `lendvm
                       info`). Kernels start on vCPU 0 and wake the others.
    --serial WHERE     The guest console (COM1 at port 0x3f8, and the native
                       console port): stdio (default; standard input feeds
                       COM1), file=PATH (created or truncated; never one of
                       the input files), or off.
    --no-irqchip       Boot a kernel without KVM's in-kernel interrupt controller,
                       for guests that take no interrupts (e.g. firmware-like or
                       test guests). Linux needs the controller. On this
                       project's hosts KVM's controller costs about 15 ms when
                       the VM is torn down (measured); without it COM1 raises
                       no interrupts and only vCPU 0 can run.
    --json             Print the final report as one JSON object.

Input files (--image, --kernel, --initrd) must be regular files no larger
than the guest RAM asked for; they are checked before they are read. An ELF
image or kernel is read only up to the end of its last segment (debug
information after it is skipped), and that part is what must fit.

Devices: COM1 (a 16550 UART, interrupt line 4), the i8042 reset line (a
write of 0xfe to port 0x64 stops the VM), and a boot-complete probe: the
first write of any byte to I/O port 0xee records the guest-reported boot
time in the report. Other ports are counted and ignored. When the guest's
console is standard output, lendvm's report goes to standard error.

With neither --image nor --kernel, `run` boots lendvm's demo guest and
shows a VM borrowing, sharing and giving back memory: a shared page both
sides write, lent RAM the host cannot read (and gets back zeroed), a
private-file region, an address bound only after the guest's page fault,
and an ioeventfd doorbell.

Stopping: SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the vCPUs, tear the VM
down and print the report, whose status names the signal; a second signal
ends lendvm at once. When the console's reader goes away (a closed pipe),
the VM is stopped the same way.

Exit status: the guest's exit code (low 8 bits) when it stops on its own
(0 for a reset); 1 if it crashed or lendvm failed (including unusable
input files); 2 for a usage error (the command line is wrong, or asks for
more than the host offers); 128 + N when signal N stopped the run (130
SIGINT, 143 SIGTERM, 129 SIGHUP); 141 (128 + SIGPIPE) when the console's
reader went away.
";
