//! Looking inside another process: its mappings (`/proc/PID/maps`,
//! `smaps`), its memory (`/proc/PID/mem`), and a scanner that finds any
//! 8-byte word of a secret at any byte offset of a buffer.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// One line of `/proc/PID/maps` (and the VmFlags of its smaps entry).
#[derive(Debug, Clone)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub path: String,
    pub flags: Vec<String>,
}

impl Mapping {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// A mapping of guest memory: a guest memory file's kernel-facing
    /// mapping or a host view (memfd `lendvm-guest-mem`, a guest_memfd).
    pub fn is_guest_memory(&self) -> bool {
        self.path.contains("lendvm-guest-mem") || self.path.contains("kvm-gmem")
    }

    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

impl std::fmt::Display for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:x}-{:x} {} {} [{}]",
            self.start,
            self.end,
            self.perms,
            self.path,
            self.flags.join(" ")
        )
    }
}

/// The mappings of process `pid`, from its smaps (every header line with
/// the VmFlags that follow it).
pub fn mappings(pid: u32) -> Vec<Mapping> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(m) = out.last_mut() {
                m.flags = flags.split_whitespace().map(String::from).collect();
            }
            continue;
        }
        let mut parts = line.split_whitespace();
        let Some((start, end)) = parts.next().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        let perms = parts.next().unwrap_or("").to_string();
        // offset, device, inode, then the path (which may hold spaces).
        let path = parts.skip(3).collect::<Vec<_>>().join(" ");
        out.push(Mapping {
            start,
            end,
            perms,
            path,
            flags: Vec::new(),
        });
    }
    out
}

/// Finds 8-byte words of secrets at any byte offset. A bitmap of each
/// word's low three bytes filters first (so the scan stays fast in a debug
/// build), the exact sets decide.
pub struct Scanner {
    filter: Vec<u64>,
    /// Per secret: word -> its index in the secret.
    secrets: Vec<(&'static str, HashMap<u64, usize>)>,
}

/// What a scan found.
#[derive(Debug, Default, Clone)]
pub struct Found {
    /// Hits per secret, in the order the secrets were given.
    pub hits: Vec<usize>,
    /// Bytes scanned.
    pub bytes: u64,
    /// Pages that could not be read.
    pub unreadable_pages: u64,
    /// The first hits: (address, secret, index of the word in it).
    pub examples: Vec<(u64, &'static str, usize)>,
}

const FILTER_BITS: usize = 1 << 24;

impl Scanner {
    pub fn new(secrets: &[(&'static str, &[u8])]) -> Scanner {
        let mut filter = vec![0u64; FILTER_BITS / 64];
        let secrets = secrets
            .iter()
            .map(|(name, bytes)| {
                let words: HashMap<u64, usize> = bytes
                    .chunks_exact(8)
                    .enumerate()
                    .map(|(i, c)| (u64::from_le_bytes(c.try_into().unwrap_or([0; 8])), i))
                    .collect();
                for w in words.keys() {
                    let k = (*w & 0xff_ffff) as usize;
                    filter[k / 64] |= 1 << (k % 64);
                }
                (*name, words)
            })
            .collect();
        Scanner { filter, secrets }
    }

    /// Count the secret words starting at every byte offset of `buf`,
    /// whose first byte is at address `base`.
    pub fn scan(&self, buf: &[u8], base: u64, found: &mut Found) {
        found.hits.resize(self.secrets.len(), 0);
        found.bytes += buf.len() as u64;
        if buf.len() < 8 {
            return;
        }
        let zero = [0u8; 4096];
        let last = buf.len() - 7;
        let mut page = 0;
        while page < buf.len() {
            let end = (page + 4096).min(buf.len());
            // memcmp: a zero page can only start words in its last 7 bytes
            // (those run into the next page).
            let first = if buf[page..end] == zero[..end - page] {
                end.saturating_sub(7).max(page)
            } else {
                page
            };
            for i in first..end.min(last) {
                let k = usize::from(buf[i])
                    | usize::from(buf[i + 1]) << 8
                    | usize::from(buf[i + 2]) << 16;
                if self.filter[k / 64] & (1 << (k % 64)) == 0 {
                    continue;
                }
                let mut w = [0u8; 8];
                w.copy_from_slice(&buf[i..i + 8]);
                let w = u64::from_le_bytes(w);
                for (n, (name, set)) in self.secrets.iter().enumerate() {
                    if let Some(&index) = set.get(&w) {
                        found.hits[n] += 1;
                        if found.examples.len() < 16 {
                            found.examples.push((base + i as u64, name, index));
                        }
                    }
                }
            }
            page = end;
        }
    }

    /// Scan `[m.start, m.end)` of a process through its `/proc/PID/mem`,
    /// a MiB at a time, page by page where a MiB cannot be read.
    pub fn scan_mapping(&self, mem: &File, m: &Mapping, found: &mut Found) {
        const STEP: u64 = 1 << 20;
        let mut buf = vec![0u8; STEP as usize];
        let mut at = m.start;
        // Keep 7 bytes of the previous piece so words across pieces count.
        let mut carry: Vec<u8> = Vec::new();
        while at < m.end {
            let n = (m.end - at).min(STEP) as usize;
            let piece = match mem.read_exact_at(&mut buf[..n], at) {
                Ok(()) => buf[..n].to_vec(),
                Err(_) => {
                    let mut v = Vec::with_capacity(n);
                    let mut page = [0u8; 4096];
                    for p in (0..n).step_by(4096) {
                        match mem.read_exact_at(&mut page, at + p as u64) {
                            Ok(()) => v.extend_from_slice(&page),
                            Err(_) => {
                                found.unreadable_pages += 1;
                                v.extend_from_slice(&[0u8; 4096]);
                            }
                        }
                    }
                    v
                }
            };
            let mut joined = std::mem::take(&mut carry);
            let base = at - joined.len() as u64;
            joined.extend_from_slice(&piece);
            self.scan(&joined, base, found);
            found.bytes -= joined.len() as u64 - piece.len() as u64;
            carry = joined[joined.len().saturating_sub(7)..].to_vec();
            at += n as u64;
        }
    }

    /// Scan a whole file (a core dump).
    pub fn scan_file(&self, path: &std::path::Path) -> Found {
        let mut found = Found::default();
        let bytes = std::fs::read(path).unwrap();
        self.scan(&bytes, 0, &mut found);
        found
    }
}
