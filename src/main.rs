//! The `weft` command line (its subcommands are in `cli`).

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    // Before any thread starts: the malloc arena cap covers only threads
    // started after it (see `tune_allocator`).
    weft::runtime::tune_allocator();
    let cli = cli::Cli::parse();
    // Ctrl-C, SIGTERM, SIGHUP: remove the unfinished output and exit 130/143/129.
    if let Err(e) = weft::interrupt::install() {
        eprintln!("weft: cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }
    // Output piped into a reader that stops early (`weft gaps IN | head -1`):
    // the print fails with EPIPE; stop quietly (unwinding removes any
    // temporary output), as Unix tools do, instead of a panic message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !broken_pipe(info.payload()) {
            default_hook(info)
        }
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cli::run(cli))) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
        Err(p) if broken_pipe(&*p) => ExitCode::SUCCESS,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// A panic of `println!` / `eprintln!` on a closed pipe.
fn broken_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let msg = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
    msg.is_some_and(|m| m.starts_with("failed printing to") && m.contains("Broken pipe"))
}
