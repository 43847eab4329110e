//! Port I/O: lendvm's built-in devices. The console and exit ports of the
//! native ABI are always there (console output goes out a line at a time
//! per vCPU, and whatever is left when the VM stops); boot paths add legacy devices (a UART, the
//! i8042 reset line). Ports nobody handles are counted and ignored (DESIGN
//! D9): reads return all ones, writes are dropped.

use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::native_abi::{CONSOLE_PORT, EXIT_PORT};
use crate::vcpu::{ExitInfo, Status, exit_kind};

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
    /// Write guest console bytes.
    pub fn write(&self, bytes: &[u8]) {
        match self {
            Console::Stdout => {
                let mut out = std::io::stdout().lock();
                // A console that cannot be written (closed stdout) must not
                // stop the guest.
                let _ = out.write_all(bytes);
                let _ = out.flush();
            }
            Console::Buffer(b) => b
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(bytes),
            Console::File(f) => {
                let _ = f.lock().unwrap_or_else(|p| p.into_inner()).write_all(bytes);
            }
            Console::Off => {}
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
            self.console.write(&line);
        }
    }

    pub(crate) fn write(&mut self, vcpu: u32, port: u16, data: &[u8]) -> PortOutcome {
        match port {
            CONSOLE_PORT => {
                let line = self.lines.entry(vcpu).or_default();
                line.extend_from_slice(data);
                if data.contains(&b'\n') || line.len() >= 4096 {
                    self.console.write(line);
                    line.clear();
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
