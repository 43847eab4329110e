//! `lendvm`: the command line of the lendvm VMM. See `lendvm --help`.
//!
//! Arguments are taken as the OS gives them (`args_os`: file names are
//! bytes, not necessarily UTF-8); everything else is in the library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(lendvm::main(std::env::args_os().skip(1).collect()))
}
