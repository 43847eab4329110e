//! `lendvm`: the command line of the lendvm VMM. See `lendvm --help`.

#![deny(clippy::undocumented_unsafe_blocks)]

mod cli;
mod demo;
mod info;
mod report;
mod run;

use std::io::Write;
use std::process::ExitCode;

use cli::Command;
use report::Report;

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

fn exit_code(report: &Report) -> ExitCode {
    match report.status {
        vmm::Status::Exited(e) if report.all_ok() => ExitCode::from(e.code() as u8),
        _ => ExitCode::FAILURE,
    }
}

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lendvm: {e}\nRun `lendvm --help` for the options.");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            out(cli::HELP);
            ExitCode::SUCCESS
        }
        Command::Info { json } => {
            let dev = vmm::Device::open();
            let caps = dev
                .as_ref()
                .map(|d| d.capabilities())
                .map_err(|e| e.to_string());
            if json {
                out(&format!("{}\n", info::json(caps)));
            } else {
                out(&info::render(caps));
            }
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            let guest = args.image.is_some() || args.kernel.is_some();
            let result = if guest {
                run::run(&args).map_err(|e| e.to_string())
            } else {
                demo::run().map_err(|e| e.to_string())
            };
            match result {
                Ok(report) => {
                    print_report(
                        &report,
                        args.json,
                        guest && args.serial == cli::SerialSpec::Stdio,
                    );
                    exit_code(&report)
                }
                Err(e) => {
                    eprintln!("lendvm: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
