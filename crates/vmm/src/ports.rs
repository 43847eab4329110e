//! Port I/O: lendvm's built-in devices. The console and exit ports of the
//! native ABI are always there (console output goes out a line at a time
//! per vCPU, and whatever is left when the VM stops); boot paths add legacy devices (a UART, the
//! i8042 reset line). Ports nobody handles are counted and ignored (DESIGN
//! D9): reads return all ones, writes are dropped.

use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::native_abi::{CONSOLE_PORT, EXIT_PORT};
use crate::vcpu::exit::{ExitInfo, Status, exit_kind};

/// The status of a VM stopped because its console's reader went away: a
/// guest nobody can hear any more would otherwise run (and print into the
/// void) forever. Kind [`exit_kind::FORCE_STOPPED`], reason `EPIPE`.
pub fn console_closed() -> Status {
    Status::Exited(ExitInfo {
        kind: exit_kind::FORCE_STOPPED,
        reason: u64::from(libc::EPIPE.unsigned_abs()).to_le_bytes(),
        reason_size: 4,
    })
}

/// The console's reader went away (`EPIPE` on standard output or on a
/// FIFO given as the serial file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleClosed;

fn closed(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Where console output (the native console port, a UART) goes.
#[derive(Clone, Default)]
pub enum Console {
    /// The process's standard output.
    #[default]
    Stdout,
    /// An in-memory buffer the caller can read (tests, reports).
    Buffer(Arc<Mutex<Vec<u8>>>),
    /// A file (opened by the caller).
    File(Arc<Mutex<std::fs::File>>),
    /// Discarded.
    Off,
}

impl Console {
    /// Write guest console bytes. Fails only when the reader is gone
    /// (`EPIPE`): the caller then stops the VM ([`console_closed`]). Other
    /// failures (a full disk) lose the bytes, not the VM.
    pub fn write(&self, bytes: &[u8]) -> Result<(), ConsoleClosed> {
        let result = match self {
            Console::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Console::Buffer(b) => {
                b.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(bytes);
                Ok(())
            }
            Console::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).write_all(bytes),
            Console::Off => Ok(()),
        };
        match result {
            Err(e) if closed(&e) => Err(ConsoleClosed),
            _ => Ok(()),
        }
    }
}

/// A device on the port bus.
pub trait PortDevice: Send {
    /// The ports it answers.
    fn ports(&self) -> Range<u16>;
    /// A guest read of `data.len()` bytes from `port`.
    fn read(&mut self, port: u16, data: &mut [u8]);
    /// A guest write; `Some(status)` ends the VM (e.g. a reset request).
    fn write(&mut self, port: u16, data: &[u8]) -> Option<Status>;
}

/// What a port access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortOutcome {
    /// A device handled it.
    Handled,
    /// Nobody answers this port.
    Unknown,
    /// The guest asked to stop.
    Stop(Status),
}

/// The port bus of one VM.
pub(crate) struct Ports {
    console: Console,
    /// Console bytes per vCPU until a line is complete, so lines of vCPUs
    /// writing at once do not interleave byte by byte.
    lines: std::collections::BTreeMap<u32, Vec<u8>>,
    devices: Vec<Box<dyn PortDevice>>,
}

impl Ports {
    pub(crate) fn new() -> Ports {
        Ports {
            console: Console::Stdout,
            lines: std::collections::BTreeMap::new(),
            devices: Vec::new(),
        }
    }

    pub(crate) fn set_console(&mut self, console: Console) {
        self.console = console;
    }

    pub(crate) fn add(&mut self, device: Box<dyn PortDevice>) {
        self.devices.push(device);
    }

    /// Write out every unfinished console line (the VM stopped).
    pub(crate) fn flush(&mut self) {
        for (_, line) in std::mem::take(&mut self.lines) {
            // The VM is stopping anyway.
            let _ = self.console.write(&line);
        }
    }

    pub(crate) fn write(&mut self, vcpu: u32, port: u16, data: &[u8]) -> PortOutcome {
        match port {
            CONSOLE_PORT => {
                let line = self.lines.entry(vcpu).or_default();
                line.extend_from_slice(data);
                if data.contains(&b'\n') || line.len() >= 4096 {
                    let written = self.console.write(line);
                    line.clear();
                    if written.is_err() {
                        return PortOutcome::Stop(console_closed());
                    }
                }
                PortOutcome::Handled
            }
            EXIT_PORT => {
                let mut reason = [0u8; 8];
                reason[..data.len().min(8)].copy_from_slice(&data[..data.len().min(8)]);
                PortOutcome::Stop(Status::Exited(ExitInfo {
                    kind: exit_kind::VM_EXIT,
                    reason,
                    reason_size: data.len().min(8) as u32,
                }))
            }
            _ => match self.devices.iter_mut().find(|d| d.ports().contains(&port)) {
                Some(d) => d
                    .write(port, data)
                    .map_or(PortOutcome::Handled, PortOutcome::Stop),
                None => PortOutcome::Unknown,
            },
        }
    }

    pub(crate) fn read(&mut self, port: u16, data: &mut [u8]) -> PortOutcome {
        match self.devices.iter_mut().find(|d| d.ports().contains(&port)) {
            Some(d) => {
                d.read(port, data);
                PortOutcome::Handled
            }
            None => {
                data.fill(0xff);
                PortOutcome::Unknown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose read end is closed: writes fail with EPIPE (Rust
    /// ignores SIGPIPE, so no signal kills the test).
    fn widowed_pipe() -> std::fs::File {
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
        drop(read);
        write
    }

    // Issue 9 item 6: a closed console stops the VM instead of letting it
    // print into the void forever.
    #[test]
    fn a_console_line_into_a_closed_pipe_stops_the_vm() {
        let mut ports = Ports::new();
        ports.set_console(Console::File(Arc::new(Mutex::new(widowed_pipe()))));
        assert_eq!(ports.write(0, CONSOLE_PORT, b"x"), PortOutcome::Handled);
        assert_eq!(
            ports.write(0, CONSOLE_PORT, b"\n"),
            PortOutcome::Stop(console_closed())
        );
        let Status::Exited(e) = console_closed() else {
            panic!("not an exit")
        };
        assert_eq!(
            (e.kind, e.code()),
            (exit_kind::FORCE_STOPPED, libc::EPIPE as u64)
        );
    }

    #[test]
    fn other_consoles_keep_the_vm_running() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut ports = Ports::new();
        ports.set_console(Console::Buffer(out.clone()));
        assert_eq!(ports.write(0, CONSOLE_PORT, b"hi\n"), PortOutcome::Handled);
        assert_eq!(out.lock().unwrap().as_slice(), b"hi\n");
        assert_eq!(Console::Off.write(b"x"), Ok(()));
    }
}
