//! The host side of the holding cell (`guests/holding-cell`): a test guest
//! that obeys commands over an MMIO mailbox, so tests and the demo can make
//! a real guest read, write, fill, checksum and touch its memory.

pub use guest_abi::holding_cell as protocol;

use protocol::*;
use vmm::{Error, Exit, ResumeAction, Vcpu};

/// Why a command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    /// The vCPU stopped with an exit that is not the mailbox protocol (a
    /// page fault, an MMIO access elsewhere, a status). Handle it, set the
    /// resume action, and call [`Cell::finish`] to let the command go on.
    #[error("the guest stopped with {0:?}")]
    Exit(Exit),
    /// Running the vCPU failed.
    #[error(transparent)]
    Vm(#[from] Error),
    /// The guest broke the mailbox protocol.
    #[error("mailbox protocol: {0}")]
    Protocol(String),
}

/// A mailbox access of this vCPU's cell.
enum Mailbox {
    Read(u64),
    Write(u64, u64),
}

/// Drives one vCPU of a holding-cell guest.
pub struct Cell<'v> {
    vcpu: &'v mut Vcpu,
    mailbox: u64,
    greeted: bool,
}

impl<'v> Cell<'v> {
    /// Drive `vcpu` (the VM must be started).
    pub fn new(vcpu: &'v mut Vcpu) -> Cell<'v> {
        let mailbox = MAILBOX_BASE + u64::from(vcpu.id()) * MAILBOX_STRIDE;
        Cell {
            vcpu,
            mailbox,
            greeted: false,
        }
    }

    /// The vCPU, e.g. to set a resume action after a [`CellError::Exit`].
    pub fn vcpu(&mut self) -> &mut Vcpu {
        self.vcpu
    }

    /// Run until the guest accesses its mailbox.
    fn next(&mut self) -> Result<Mailbox, CellError> {
        match self.vcpu.run()? {
            Exit::Mmio {
                phys_addr,
                data,
                len: 8,
                is_write,
            } if phys_addr >= self.mailbox && phys_addr < self.mailbox + MAILBOX_STRIDE => {
                let reg = phys_addr - self.mailbox;
                Ok(if is_write {
                    Mailbox::Write(reg, u64::from_le_bytes(data))
                } else {
                    Mailbox::Read(reg)
                })
            }
            other => Err(CellError::Exit(other)),
        }
    }

    fn answer(&mut self, value: u64) {
        self.vcpu.set_mmio_data(&value.to_le_bytes());
        self.vcpu.set_resume(ResumeAction::Handled);
    }

    fn expect_read(&mut self, want: u64) -> Result<(), CellError> {
        if !self.greeted {
            match self.next()? {
                Mailbox::Write(REG_HELLO, id) if id == u64::from(self.vcpu.id()) => {
                    self.greeted = true
                }
                _ => {
                    return Err(CellError::Protocol(
                        "the guest did not say hello first".into(),
                    ));
                }
            }
        }
        match self.next()? {
            Mailbox::Read(reg) if reg == want => Ok(()),
            Mailbox::Read(reg) => Err(CellError::Protocol(format!(
                "guest read register {reg:#x}, expected {want:#x}"
            ))),
            Mailbox::Write(reg, v) => Err(CellError::Protocol(format!(
                "guest wrote {v:#x} to register {reg:#x}, expected a read of {want:#x}"
            ))),
        }
    }

    /// Hand the guest a command and its arguments; the guest is then
    /// executing it. Follow with [`Cell::finish`].
    pub fn send(&mut self, cmd: u64, args: &[u64]) -> Result<(), CellError> {
        self.expect_read(REG_CMD)?;
        self.answer(cmd);
        for (i, &a) in args.iter().enumerate() {
            self.expect_read(REG_ARG0 + 8 * i as u64)?;
            self.answer(a);
        }
        Ok(())
    }

    /// Run the command to its result.
    pub fn finish(&mut self) -> Result<u64, CellError> {
        match self.next()? {
            Mailbox::Write(REG_RESULT, v) => Ok(v),
            Mailbox::Write(reg, v) => Err(CellError::Protocol(format!(
                "guest wrote {v:#x} to register {reg:#x}, expected its result"
            ))),
            Mailbox::Read(reg) => Err(CellError::Protocol(format!(
                "guest read register {reg:#x} while a result was due"
            ))),
        }
    }

    /// Send a command and run it to its result.
    pub fn command(&mut self, cmd: u64, args: &[u64]) -> Result<u64, CellError> {
        self.send(cmd, args)?;
        self.finish()
    }

    /// `CMD_PING`.
    pub fn ping(&mut self) -> Result<u64, CellError> {
        self.command(CMD_PING, &[])
    }

    /// `CMD_READ` of `len` bytes.
    pub fn read(&mut self, addr: u64, len: u64) -> Result<u64, CellError> {
        self.command(CMD_READ, &[addr, len])
    }

    /// `CMD_WRITE` of `len` bytes.
    pub fn write(&mut self, addr: u64, value: u64, len: u64) -> Result<u64, CellError> {
        self.command(CMD_WRITE, &[addr, value, len])
    }

    /// `CMD_FILL`.
    pub fn fill(&mut self, addr: u64, len: u64, byte: u8) -> Result<u64, CellError> {
        self.command(CMD_FILL, &[addr, len, u64::from(byte)])
    }

    /// `CMD_CHECKSUM` (FNV-1a, see [`fnv1a`]).
    pub fn checksum(&mut self, addr: u64, len: u64) -> Result<u64, CellError> {
        self.command(CMD_CHECKSUM, &[addr, len])
    }

    /// [`CMD_STORE16`]: one 16-byte SSE store of `high:low` at `addr`.
    pub fn store16(&mut self, addr: u64, low: u64, high: u64) -> Result<u64, CellError> {
        self.command(CMD_STORE16, &[addr, low, high])
    }

    /// [`CMD_LOAD16`]: one 16-byte SSE load at `addr`, as (low, high)
    /// (two loads, one per half).
    pub fn load16(&mut self, addr: u64) -> Result<(u64, u64), CellError> {
        Ok((
            self.command(CMD_LOAD16, &[addr, 0])?,
            self.command(CMD_LOAD16, &[addr, 1])?,
        ))
    }

    /// [`CMD_REP_STOSB`].
    pub fn rep_stosb(&mut self, addr: u64, len: u64, byte: u8) -> Result<u64, CellError> {
        self.command(CMD_REP_STOSB, &[addr, len, u64::from(byte)])
    }

    /// [`CMD_REP_MOVSB`].
    pub fn rep_movsb(&mut self, dst: u64, src: u64, len: u64) -> Result<u64, CellError> {
        self.command(CMD_REP_MOVSB, &[dst, src, len])
    }

    /// [`CMD_XADD`]: returns the old value.
    pub fn xadd(&mut self, addr: u64, value: u64) -> Result<u64, CellError> {
        self.command(CMD_XADD, &[addr, value])
    }

    /// [`CMD_MARKER`]: the guest stores the marker stream of `seed`;
    /// returns the hash of what it stored.
    pub fn marker(&mut self, addr: u64, len: u64, seed: u64) -> Result<u64, CellError> {
        self.command(CMD_MARKER, &[addr, len, seed])
    }

    /// `CMD_EXIT`: the VM ends with `code`; returns the exit it produced.
    pub fn exit(&mut self, code: u32) -> Result<Exit, CellError> {
        self.send(CMD_EXIT, &[u64::from(code)])?;
        Ok(self.vcpu.run()?)
    }
}

/// The 64-bit FNV-1a hash the guest's `CMD_CHECKSUM` computes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The `len` bytes the guest's [`CMD_MARKER`] stores for `seed`.
pub fn marker_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len / 8)
        .flat_map(|_| marker_next(&mut state).to_le_bytes())
        .collect()
}
