//! The `dossier` binary: everything lives in `dossier-cli`.
fn main() -> std::process::ExitCode {
    dossier_cli::main()
}
