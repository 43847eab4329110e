//! ELF64 guest images: parsed and checked before any VM exists (copied
//! into a VM's bound memory by `ElfImage::load`, in `boot.rs`).
//!
//! Every check a malformed image can fail is here, so a bad image is a
//! clear error (naming what is wrong) and never a half-loaded VM.

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
/// The Xen PVH entry note (`XEN_ELFNOTE_PHYS32_ENTRY`).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// At most this many program headers (real images have a handful).
const MAX_PHDRS: usize = 256;
/// A segment larger than this is absurd for a guest image.
const MAX_SEGMENT: u64 = 64 << 30;

/// Why an image cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Not an ELF file at all.
    #[error("not an ELF file (bad magic)")]
    NotElf,
    /// Neither an ELF image nor a Linux bzImage.
    #[error("not an ELF file or a Linux bzImage (no \\x7fELF magic, no HdrS header)")]
    UnknownFormat,
    /// ELF, but not what lendvm runs.
    #[error("unsupported ELF image: {0}")]
    Unsupported(String),
    /// A Linux bzImage, but not one lendvm can boot.
    #[error("unsupported bzImage: {0}")]
    BzImage(String),
    /// The file ends before a structure it declares.
    #[error("truncated image: {0}")]
    Truncated(String),
    /// A segment is malformed.
    #[error("segment {index}: {why}")]
    BadSegment {
        /// Program header index.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// Two loadable segments overlap in guest memory.
    #[error("segments {a} and {b} overlap in guest memory")]
    Overlap {
        /// First segment index.
        a: usize,
        /// Second segment index.
        b: usize,
    },
    /// Copying into guest memory failed (e.g. a segment outside bound memory).
    #[error("segment {index} at {addr:#x} (+{size:#x}) cannot be loaded: {why}")]
    Place {
        /// Program header index.
        index: usize,
        /// Guest physical address.
        addr: u64,
        /// Memory size.
        size: u64,
        /// The VM's reason.
        why: String,
    },
}

/// One loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Program header index.
    pub index: usize,
    /// Guest physical load address (`p_paddr`).
    pub guest_addr: u64,
    /// Offset of its bytes in the file.
    pub file_offset: u64,
    /// Bytes taken from the file.
    pub file_size: u64,
    /// Bytes in memory (the rest is zero-filled).
    pub mem_size: u64,
}

/// A checked ELF64 x86-64 image.
#[derive(Debug, Clone)]
pub struct ElfImage<'a> {
    bytes: &'a [u8],
    /// `e_entry`: the native (64-bit) entry point.
    pub entry: u64,
    /// Loadable segments in file order.
    pub segments: Vec<Segment>,
    /// The PVH 32-bit entry point, if the image carries the Xen note.
    pub pvh_entry: Option<u64>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

/// `bytes[start..start + len]`, or a `Truncated` error naming `what`.
fn slice<'a>(bytes: &'a [u8], start: u64, len: u64, what: &str) -> Result<&'a [u8], LoadError> {
    let end = start.checked_add(len);
    match end {
        Some(end) if end <= bytes.len() as u64 => Ok(&bytes[start as usize..end as usize]),
        _ => Err(LoadError::Truncated(format!(
            "{what} at [{start:#x}, +{len:#x}) lies past the end of the {:#x}-byte file",
            bytes.len()
        ))),
    }
}

impl<'a> ElfImage<'a> {
    /// Parse and check an image.
    pub fn parse(bytes: &'a [u8]) -> Result<ElfImage<'a>, LoadError> {
        if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
            return Err(LoadError::NotElf);
        }
        let ehdr = slice(bytes, 0, 64, "ELF header")?;
        if ehdr[4] != 2 {
            return Err(LoadError::Unsupported("not a 64-bit ELF (EI_CLASS)".into()));
        }
        if ehdr[5] != 1 {
            return Err(LoadError::Unsupported("not little-endian (EI_DATA)".into()));
        }
        let e_type = u16_at(ehdr, 16);
        if e_type != ET_EXEC && e_type != ET_DYN {
            return Err(LoadError::Unsupported(format!(
                "ELF type {e_type} is not an executable"
            )));
        }
        let machine = u16_at(ehdr, 18);
        if machine != EM_X86_64 {
            return Err(LoadError::Unsupported(format!(
                "machine {machine} is not x86-64 ({EM_X86_64})"
            )));
        }
        let entry = u64_at(ehdr, 24);
        let phoff = u64_at(ehdr, 32);
        let phentsize = u16_at(ehdr, 54) as u64;
        let phnum = u16_at(ehdr, 56) as usize;
        if phnum == 0 {
            return Err(LoadError::Unsupported("no program headers".into()));
        }
        if phnum > MAX_PHDRS || phentsize < 56 {
            return Err(LoadError::Unsupported(format!(
                "{phnum} program headers of {phentsize} bytes"
            )));
        }
        let table = slice(
            bytes,
            phoff,
            phentsize * phnum as u64,
            "program header table",
        )?;
        let mut segments = Vec::new();
        let mut pvh_entry = None;
        for index in 0..phnum {
            let ph = &table[index * phentsize as usize..];
            let p_type = u32_at(ph, 0);
            let offset = u64_at(ph, 8);
            let paddr = u64_at(ph, 24);
            let filesz = u64_at(ph, 32);
            let memsz = u64_at(ph, 40);
            let bad = |why: String| Err(LoadError::BadSegment { index, why });
            match p_type {
                PT_LOAD => {
                    if filesz > memsz {
                        return bad(format!(
                            "file size {filesz:#x} exceeds memory size {memsz:#x}"
                        ));
                    }
                    if memsz > MAX_SEGMENT {
                        return bad(format!(
                            "memory size {memsz:#x} is absurd (limit {MAX_SEGMENT:#x})"
                        ));
                    }
                    if paddr.checked_add(memsz).is_none() {
                        return bad(format!("[{paddr:#x}, +{memsz:#x}) wraps the address space"));
                    }
                    slice(bytes, offset, filesz, &format!("segment {index}"))?;
                    if memsz > 0 {
                        segments.push(Segment {
                            index,
                            guest_addr: paddr,
                            file_offset: offset,
                            file_size: filesz,
                            mem_size: memsz,
                        });
                    }
                }
                PT_NOTE => {
                    let notes = slice(bytes, offset, filesz, &format!("note segment {index}"))?;
                    if let Some(e) = find_pvh_note(notes) {
                        pvh_entry = Some(e);
                    }
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(LoadError::Unsupported("no loadable segment".into()));
        }
        for (i, a) in segments.iter().enumerate() {
            for b in &segments[i + 1..] {
                if a.guest_addr < b.guest_addr + b.mem_size
                    && b.guest_addr < a.guest_addr + a.mem_size
                {
                    return Err(LoadError::Overlap {
                        a: a.index,
                        b: b.index,
                    });
                }
            }
        }
        Ok(ElfImage {
            bytes,
            entry,
            segments,
            pvh_entry,
        })
    }

    /// The file bytes of segment `s` (one of [`ElfImage::segments`], whose
    /// file range `parse` checked; any other segment gets what of its range
    /// the file holds).
    pub fn segment_bytes(&self, s: &Segment) -> &'a [u8] {
        let start = usize::try_from(s.file_offset).unwrap_or(usize::MAX);
        let end = s
            .file_offset
            .checked_add(s.file_size)
            .and_then(|e| usize::try_from(e).ok())
            .unwrap_or(usize::MAX);
        let end = end.min(self.bytes.len());
        self.bytes.get(start.min(end)..end).unwrap_or(&[])
    }

    /// The guest range the image occupies (lowest to highest segment byte).
    pub fn span(&self) -> std::ops::Range<u64> {
        let lo = self
            .segments
            .iter()
            .map(|s| s.guest_addr)
            .min()
            .unwrap_or(0);
        let hi = self
            .segments
            .iter()
            .map(|s| s.guest_addr + s.mem_size)
            .max()
            .unwrap_or(0);
        lo..hi
    }
}

/// Bytes at the start of an ELF64 file that hold its header.
pub const ELF_HEADER_LEN: u64 = 64;

/// The checked ELF header fields the prefix functions need:
/// (phoff, phentsize, phnum).
fn program_header_table(ehdr: &[u8]) -> Result<(u64, u64, usize), LoadError> {
    if ehdr.len() < 4 || &ehdr[..4] != b"\x7fELF" {
        return Err(LoadError::NotElf);
    }
    let ehdr = slice(ehdr, 0, ELF_HEADER_LEN, "ELF header")?;
    if ehdr[4] != 2 {
        return Err(LoadError::Unsupported("not a 64-bit ELF (EI_CLASS)".into()));
    }
    let phoff = u64_at(ehdr, 32);
    let phentsize = u16_at(ehdr, 54) as u64;
    let phnum = u16_at(ehdr, 56) as usize;
    if phnum == 0 || phnum > MAX_PHDRS || phentsize < 56 {
        return Err(LoadError::Unsupported(format!(
            "{phnum} program headers of {phentsize} bytes"
        )));
    }
    Ok((phoff, phentsize, phnum))
}

/// How many leading bytes of an ELF file hold its header and program
/// header table (`ehdr`: the file's first [`ELF_HEADER_LEN`] bytes).
pub fn headers_len(ehdr: &[u8]) -> Result<u64, LoadError> {
    let (phoff, phentsize, phnum) = program_header_table(ehdr)?;
    phoff
        .checked_add(phentsize * phnum as u64)
        .map(|end| end.max(ELF_HEADER_LEN))
        .ok_or_else(|| LoadError::Truncated("the program header table wraps".into()))
}

/// How many leading bytes of an ELF file [`ElfImage::parse`] reads: up to
/// the end of the last loadable or note segment. Section headers and
/// debug information, which linkers put after them, are never needed, so
/// a vmlinux with debug symbols loads from a prefix of itself. `head`
/// holds at least [`headers_len`] bytes of the file.
pub fn loadable_len(head: &[u8]) -> Result<u64, LoadError> {
    let (phoff, phentsize, phnum) = program_header_table(head)?;
    let table = slice(
        head,
        phoff,
        phentsize * phnum as u64,
        "program header table",
    )?;
    let mut end = phoff + phentsize * phnum as u64;
    for index in 0..phnum {
        let ph = &table[index * phentsize as usize..];
        if matches!(u32_at(ph, 0), PT_LOAD | PT_NOTE) {
            let (offset, filesz) = (u64_at(ph, 8), u64_at(ph, 32));
            let seg_end = offset.checked_add(filesz).ok_or(LoadError::BadSegment {
                index,
                why: format!("file range [{offset:#x}, +{filesz:#x}) wraps"),
            })?;
            end = end.max(seg_end);
        }
    }
    Ok(end.max(ELF_HEADER_LEN))
}

/// The PHYS32_ENTRY value of a "Xen" note in a note segment, if any.
fn find_pvh_note(mut notes: &[u8]) -> Option<u64> {
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0) as usize;
        let descsz = u32_at(notes, 4) as usize;
        let kind = u32_at(notes, 8);
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = 12 + namesz.div_ceil(4) * 4;
        let desc_end = desc_start.checked_add(descsz)?;
        if desc_end > notes.len() || name_end > notes.len() {
            return None;
        }
        let name = &notes[12..name_end];
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name.strip_suffix(&[0]).unwrap_or(name) == b"Xen" {
            let desc = &notes[desc_start..desc_end];
            return match desc.len() {
                4 => Some(u64::from(u32_at(desc, 0))),
                8.. => Some(u64_at(desc, 0)),
                _ => None,
            };
        }
        notes = &notes[(desc_start + descsz.div_ceil(4) * 4).min(notes.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given program headers (type, offset, paddr,
    /// filesz, memsz) and `extra` bytes after the headers.
    fn elf(phdrs: &[(u32, u64, u64, u64, u64)], extra: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for &(t, off, paddr, filesz, memsz) in phdrs {
            let mut ph = vec![0u8; 56];
            ph[0..4].copy_from_slice(&t.to_le_bytes());
            ph[8..16].copy_from_slice(&off.to_le_bytes());
            ph[16..24].copy_from_slice(&paddr.to_le_bytes());
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&filesz.to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            b.extend(ph);
        }
        b.extend_from_slice(extra);
        b
    }

    // A file with debug information after its segments: the prefix up to
    // the last segment parses exactly like the whole file.
    #[test]
    fn the_loadable_prefix_ends_with_the_last_segment() {
        let code_at = 64 + 2 * 56;
        let mut file = elf(
            &[
                (PT_LOAD, code_at, 0x10_0000, 0x20, 0x1000),
                (6, 0, 0, 0, 0), // PT_PHDR: not read
            ],
            &[0x90; 0x20],
        );
        file.extend(vec![0xdb; 4096]); // "debug information"
        assert_eq!(headers_len(&file[..64]).unwrap(), code_at);
        let n = loadable_len(&file[..code_at as usize]).unwrap();
        assert_eq!(n, code_at + 0x20);
        let whole = ElfImage::parse(&file).unwrap();
        let prefix = ElfImage::parse(&file[..n as usize]).unwrap();
        assert_eq!(prefix.segments, whole.segments);
        assert_eq!(prefix.entry, whole.entry);
        // Malformed headers are refused, never mis-sized.
        assert_eq!(headers_len(b"\x7fEL"), Err(LoadError::NotElf));
        assert!(loadable_len(&file[..64]).is_err(), "table not in the head");
        let wraps = elf(&[(PT_LOAD, u64::MAX, 0, 2, 2)], &[]);
        assert!(matches!(
            loadable_len(&wraps),
            Err(LoadError::BadSegment { index: 0, .. })
        ));
    }

    #[test]
    fn a_well_formed_image_parses() {
        let hdr = 64 + 56 * 2;
        let mut note = Vec::new();
        note.extend(4u32.to_le_bytes());
        note.extend(4u32.to_le_bytes());
        note.extend(XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
        note.extend(b"Xen\0");
        note.extend(0x1234u32.to_le_bytes());
        let mut extra = vec![0x90u8; 16];
        extra.extend(&note);
        let img = elf(
            &[
                (PT_LOAD, hdr, 0x10_0000, 16, 0x2000),
                (PT_NOTE, hdr + 16, 0, note.len() as u64, 0),
            ],
            &extra,
        );
        let e = ElfImage::parse(&img).unwrap();
        assert_eq!(e.entry, 0x10_0000);
        assert_eq!(e.segments.len(), 1);
        assert_eq!(e.span(), 0x10_0000..0x10_2000);
        assert_eq!(e.pvh_entry, Some(0x1234));
    }

    #[test]
    fn malformed_images_are_refused_with_a_reason() {
        let hdr = 64 + 56;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"MZ\x90\0".to_vec(), "bad magic"),
            (
                elf(&[(PT_LOAD, hdr, 0x1000, 0x100, 0x100)], &[0; 16]),
                "past the end",
            ),
            (
                elf(&[(PT_LOAD, hdr, 0x1000, 32, 16)], &[0; 32]),
                "exceeds memory size",
            ),
            (elf(&[(PT_LOAD, hdr, 0x1000, 0, 1 << 40)], &[]), "absurd"),
            (elf(&[(PT_LOAD, hdr, u64::MAX - 8, 0, 16)], &[]), "wraps"),
            (elf(&[(6, 0, 0, 0, 0)], &[]), "no loadable segment"),
            (elf(&[], &[]), "no program headers"),
        ];
        for (img, want) in cases {
            let err = ElfImage::parse(&img).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
        let hdr2 = 64 + 56 * 2;
        let overlap = elf(
            &[
                (PT_LOAD, hdr2, 0x1000, 0, 0x2000),
                (PT_LOAD, hdr2, 0x2000, 0, 0x1000),
            ],
            &[],
        );
        assert_eq!(
            ElfImage::parse(&overlap).unwrap_err(),
            LoadError::Overlap { a: 0, b: 1 }
        );
        // Truncated header.
        assert!(matches!(
            ElfImage::parse(b"\x7fELF\x02\x01"),
            Err(LoadError::Truncated(_))
        ));
        // Wrong machine.
        let mut arm = elf(&[(PT_LOAD, hdr, 0x1000, 0, 16)], &[]);
        arm[18] = 183;
        assert!(
            ElfImage::parse(&arm)
                .unwrap_err()
                .to_string()
                .contains("not x86-64")
        );
    }

    #[test]
    fn the_holding_cell_image_is_a_native_elf() {
        let e = ElfImage::parse(test_guests::images::HOLDING_CELL).unwrap();
        assert_eq!(e.pvh_entry, None);
        assert!(e.span().start >= 0x10_0000 && e.span().end <= 0x30_0000);
        assert!(e.span().contains(&e.entry));
    }
}
