//! Legacy PC devices that standard guests use: the COM1 16550 UART
//! (vm-superio), the i8042 reset line, and lendvm's boot-complete probe.

use std::io::{Read, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use vm_superio::serial::NoEvents;
use vm_superio::{I8042Device, Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::ports::{Console, ConsoleClosed, PortDevice, console_closed};
use crate::vcpu::exit::{ExitInfo, Status, exit_kind};

/// COM1's I/O ports.
pub const COM1: Range<u16> = 0x3f8..0x400;
/// COM1's interrupt line (IOAPIC / PIC input 4).
pub const COM1_IRQ: u32 = 4;
/// The i8042 data (0x60) and command/status (0x64) ports.
pub const I8042: Range<u16> = 0x60..0x65;
/// Writing any byte here records the guest-reported boot-complete time
/// (the first write counts). Unused by PC hardware; a VMM without the probe
/// ignores the write.
pub const BOOT_COMPLETE_PORT: u16 = 0xee;

/// Raises the UART's interrupt through an irqfd, when the VM has one.
struct IrqTrigger(Option<EventFd>);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), std::io::Error> {
        match &self.0 {
            Some(e) => e.write(1),
            None => Ok(()),
        }
    }
}

/// Console bytes from the UART, written as they come.
struct ConsoleWriter(Console);

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.write(buf) {
            Ok(()) => Ok(buf.len()),
            Err(ConsoleClosed) => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Uart = Serial<IrqTrigger, NoEvents, ConsoleWriter>;

/// COM1, shared with the thread feeding it input.
struct Com1(Arc<Mutex<Uart>>);

impl PortDevice for Com1 {
    fn ports(&self) -> Range<u16> {
        COM1
    }

    fn read(&mut self, port: u16, data: &mut [u8]) {
        let v = lock(&self.0).read((port - COM1.start) as u8);
        data.fill(0);
        data[0] = v;
    }

    fn write(&mut self, port: u16, data: &[u8]) -> Option<Status> {
        // An interrupt that cannot be raised (no controller, a full eventfd)
        // only loses the interrupt, not the byte. A console whose reader
        // went away stops the VM.
        match lock(&self.0).write((port - COM1.start) as u8, data[0]) {
            Err(vm_superio::serial::Error::IOError(e))
                if e.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                Some(console_closed())
            }
            _ => None,
        }
    }
}

/// Marks that the guest pulsed the i8042 reset line.
struct ResetFlag(Arc<AtomicBool>);

impl Trigger for ResetFlag {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// The i8042 keyboard controller, for its reset line (`out 0x64, 0xfe`):
/// the VM stops with STATUS / EXITED, kind RESET.
struct I8042 {
    device: I8042Device<ResetFlag>,
    reset: Arc<AtomicBool>,
}

impl PortDevice for I8042 {
    fn ports(&self) -> Range<u16> {
        I8042
    }

    fn read(&mut self, port: u16, data: &mut [u8]) {
        let v = self.device.read((port - I8042.start) as u8);
        data.fill(0);
        data[0] = v;
    }

    fn write(&mut self, port: u16, data: &[u8]) -> Option<Status> {
        let _ = self.device.write((port - I8042.start) as u8, data[0]);
        self.reset
            .swap(false, Ordering::SeqCst)
            .then_some(Status::Exited(ExitInfo {
                kind: exit_kind::RESET,
                reason: [0; 8],
                reason_size: 0,
            }))
    }
}

/// Records when the guest said it finished booting.
struct BootProbe {
    since: Instant,
    at: Arc<OnceLock<Duration>>,
}

impl PortDevice for BootProbe {
    fn ports(&self) -> Range<u16> {
        BOOT_COMPLETE_PORT..BOOT_COMPLETE_PORT + 1
    }

    fn read(&mut self, _port: u16, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _port: u16, _data: &[u8]) -> Option<Status> {
        let _ = self.at.set(self.since.elapsed());
        None
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Build COM1 (output to `serial`, input from `input` if given, interrupt
/// through `irq` if given), the i8042 and the boot probe (timing from
/// `since` into `boot_done`): the legacy devices of one VM.
pub(crate) fn legacy(
    serial: Console,
    input: Option<Box<dyn Read + Send>>,
    irq: Option<EventFd>,
    since: Instant,
    boot_done: Arc<OnceLock<Duration>>,
) -> Vec<Box<dyn PortDevice>> {
    let com1 = Arc::new(Mutex::new(Serial::new(
        IrqTrigger(irq),
        ConsoleWriter(serial),
    )));
    if let Some(input) = input {
        feed_com1(com1.clone(), input);
    }
    let reset = Arc::new(AtomicBool::new(false));
    vec![
        Box::new(Com1(com1)),
        Box::new(I8042 {
            device: I8042Device::new(ResetFlag(reset.clone())),
            reset,
        }),
        Box::new(BootProbe {
            since,
            at: boot_done,
        }),
    ]
}

/// Feed `input` to COM1's receive FIFO until it ends (a background thread).
fn feed_com1(com1: Arc<Mutex<Uart>>, mut input: Box<dyn Read + Send>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut at = 0;
            while at < n {
                // The FIFO holds 64 bytes: wait for the guest to drain it.
                match lock(&com1).enqueue_raw_bytes(&buf[at..n]) {
                    Ok(k) if k > 0 => at += k,
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uart_writes_bytes_and_reports_its_transmitter_empty() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut devices = legacy(
            Console::Buffer(out.clone()),
            None,
            None,
            Instant::now(),
            Arc::default(),
        );
        let com1 = devices.iter_mut().find(|d| d.ports() == COM1).unwrap();
        let mut lsr = [0u8];
        com1.read(0x3fd, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "THR empty");
        for b in b"hi\n" {
            com1.write(0x3f8, &[*b]);
        }
        assert_eq!(out.lock().unwrap().as_slice(), b"hi\n");
    }

    // Issue 9 item 6: COM1 output into a closed pipe stops the VM.
    #[test]
    fn com1_into_a_closed_pipe_stops_the_vm() {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors were just created and are owned here.
        let (read, write) = unsafe {
            use std::os::fd::FromRawFd;
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        };
        let mut devices = legacy(
            Console::File(Arc::new(Mutex::new(write))),
            None,
            None,
            Instant::now(),
            Arc::default(),
        );
        let com1 = devices.iter_mut().find(|d| d.ports() == COM1).unwrap();
        assert_eq!(com1.write(0x3f8, b"a"), None);
        drop(read);
        assert_eq!(com1.write(0x3f8, b"b"), Some(console_closed()));
    }

    #[test]
    fn i8042_reset_stops_the_vm_and_other_writes_do_not() {
        let mut devices = legacy(Console::Off, None, None, Instant::now(), Arc::default());
        let kbd = devices.iter_mut().find(|d| d.ports() == I8042).unwrap();
        assert_eq!(kbd.write(0x64, &[0x20]), None);
        assert_eq!(kbd.write(0x60, &[0xfe]), None);
        let st = kbd.write(0x64, &[0xfe]).unwrap();
        assert!(matches!(st, Status::Exited(e) if e.kind == exit_kind::RESET));
    }

    #[test]
    fn the_boot_probe_keeps_the_first_time() {
        let at = Arc::new(OnceLock::new());
        let mut p = BootProbe {
            since: Instant::now(),
            at: at.clone(),
        };
        p.write(BOOT_COMPLETE_PORT, &[1]);
        let first = *at.get().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        p.write(BOOT_COMPLETE_PORT, &[1]);
        assert_eq!(*at.get().unwrap(), first);
    }
}
