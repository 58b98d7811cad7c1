//! The `portal-invites` command: see `portal-invites --help`.

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers across
/// threads, where glibc's malloc spent a fifth of the CPU in the benchmark (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portal_invites::cli::main()
}
