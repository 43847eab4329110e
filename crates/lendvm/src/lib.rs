//! The lendvm command line as a library: `main.rs` is a thin shell around
//! [`main`], and the parser ([`cli::parse`]) is public so the fuzz targets
//! and tests can call it. See `lendvm --help`.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod demo;
mod help;
pub mod info;
pub mod inputs;
pub mod report;
pub mod run;
pub mod stop;

use std::ffi::OsString;
use std::io::Write;

use cli::Command;
use report::Report;
use stop::Stop;

/// Write to standard output; a closed output (e.g. `| head`) is not an
/// error worth a panic.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Print the report: to standard error when the guest's console is
/// standard output, so the two do not mix.
fn print_report(report: &Report, json: bool, to_stderr: bool) {
    let text = if json {
        format!("{}\n", report.json())
    } else {
        report.text()
    };
    if to_stderr {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    } else {
        out(&text);
    }
}

/// One line on standard error: `lendvm: <what went wrong>`.
fn fail(what: &dyn std::fmt::Display) {
    let line = format!("lendvm: {what}").replace('\n', " ");
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Run the command line `args` (without the program name); returns the
/// process's exit status (see `lendvm --help`).
pub fn main(args: Vec<OsString>) -> u8 {
    let command = match cli::parse(args) {
        Ok(c) => c,
        Err(e) => {
            fail(&format_args!("{e} (see lendvm --help)"));
            return 2;
        }
    };
    match command {
        Command::Help => {
            out(cli::HELP);
            0
        }
        Command::Info { json } => {
            let dev = vmm::Device::open();
            let caps = dev
                .as_ref()
                .map(|d| d.capabilities())
                .map_err(|e| vmm::full_message(e));
            if json {
                out(&format!("{}\n", info::json(caps)));
            } else {
                out(&info::render(caps));
            }
            0
        }
        Command::Run(args) => {
            // Before any other thread exists: see `stop`.
            let stop = Stop::install().unwrap_or_else(|e| {
                fail(&format_args!(
                    "cannot take over SIGINT/SIGTERM/SIGHUP ({e}); they will end lendvm without a report"
                ));
                Stop::new()
            });
            let guest = args.guest().is_some();
            let result = if guest {
                run::run(&args, &stop).map_err(|e| (e.is_usage(), vmm::full_message(&e)))
            } else {
                demo::run(&stop).map_err(|e| (false, vmm::full_message(&e)))
            };
            match result {
                Ok(report) => {
                    print_report(
                        &report,
                        args.json,
                        guest && args.serial == cli::SerialSpec::Stdio,
                    );
                    report.status.exit_status(report.all_ok())
                }
                Err((true, e)) => {
                    fail(&format_args!("{e} (see lendvm --help)"));
                    2
                }
                Err((false, e)) => {
                    fail(&e);
                    1
                }
            }
        }
    }
}
