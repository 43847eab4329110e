//! The command-line parser (`lendvm::cli::parse`) on arbitrary arguments
//! (bytes, not necessarily UTF-8; real options and values come from the
//! seeds and the dictionary). It must never panic, a usage error must be one
//! non-empty line, and a parsed `run` must hold every promise its type
//! makes (a checked RAM range, at least one vCPU, one image at most,
//! guest-only options only with an image).

#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use lendvm::cli::{Command, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // One argument per NUL-separated piece: arguments cannot hold a NUL,
    // and the seeds (`seeds/cli_args`) and the dictionary
    // (`cli_args.dict`) stay readable.
    let args: Vec<OsString> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == 0)
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect()
    };
    match parse(args.clone()) {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty(), "{args:?}: empty message");
            // One line, safe on a terminal: no newline, no escape.
            assert!(
                !msg.chars().any(char::is_control),
                "{args:?}: {msg:?} holds a control character"
            );
        }
        Ok(Command::Run(r)) => {
            let m = r.memory;
            let range = m.range().expect("a parsed RAM range does not wrap");
            assert!(range.start < range.end, "{args:?}: {m:?}");
            assert!(m.size % 4096 == 0 && m.at % 4096 == 0, "{args:?}: {m:?}");
            assert!(r.vcpus >= 1, "{args:?}");
            assert!(!(r.image.is_some() && r.kernel.is_some()), "{args:?}");
            for p in [&r.image, &r.kernel, &r.initrd].into_iter().flatten() {
                assert!(!p.as_os_str().is_empty(), "{args:?}: empty path");
            }
            if r.guest().is_none() {
                let default = lendvm::cli::RunArgs::default();
                assert!(r.initrd.is_none() && r.cmdline.is_none(), "{args:?}");
                assert_eq!(
                    (r.memory, r.vcpus, &r.serial, r.no_irqchip),
                    (
                        default.memory,
                        default.vcpus,
                        &default.serial,
                        default.no_irqchip
                    ),
                    "{args:?}: a guest-only option passed for the demo"
                );
            }
        }
        Ok(Command::Info { .. } | Command::Help) => {}
    }
});
