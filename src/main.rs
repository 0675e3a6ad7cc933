//! The `loyalty-bot` binary: parses the command line and hands over to the library (`startup`
//! for `serve`, `chat` for the terminal conversation, `commands` for the rest).

use clap::Parser;
use loyalty_bot::cli::Cli;
use std::process::ExitCode;

/// sled allocates and frees a node copy per write; glibc's allocator showed up in the
/// profile (`_int_malloc`, `malloc_consolidate`), mimalloc keeps per-thread free lists.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // clap answers --help and --version itself, and exits 2 on a usage mistake.
    let cli = Cli::parse();
    match loyalty_bot::commands::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", loyalty_bot::commands::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
