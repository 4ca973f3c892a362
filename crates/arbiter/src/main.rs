//! `arbiter`: the one binary. It parses the command line (`cli`), runs the command against
//! the store through the library crates, and maps every failure to its documented exit
//! code (`exit`).

mod cli;
mod exit;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The process guard of `arbiter lock` is this binary re-executed; it must start
    // before anything else (no runtime, no argument parsing).
    #[cfg(unix)]
    if let Some(code) = arbiter_process::guard_main(&args) {
        std::process::exit(code);
    }
    std::process::exit(cli::main(args));
}
