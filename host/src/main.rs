use std::process::ExitCode;

fn main() -> ExitCode {
    caulk::cli::run()
}
