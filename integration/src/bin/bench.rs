//! `inkless-bench`: produce/consume benchmark against a Kafka-compatible
//! broker. Prints a table and one `RESULT_JSON {...}` line on stdout;
//! progress and diagnostics go to stderr.

use clap::Parser;
use inkless_integration::bench::{config::Args, run::run};

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("inkless-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            print!("{}", report.table());
            println!("RESULT_JSON {}", report.json());
            // Tasks were joined or aborted; don't wait for stragglers.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("inkless-bench: {e:#}");
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            std::process::ExitCode::FAILURE
        }
    }
}
