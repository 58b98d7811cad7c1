//! The `portal-invites` command: see `portal-invites --help`.

fn main() -> std::process::ExitCode {
    portal_invites::cli::main()
}
