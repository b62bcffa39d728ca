//! glibc's allocator: one arena for the whole agent.
//!
//! glibc gives every thread that allocates an arena of its own (up to 8 per core),
//! and each keeps its freed pages. The agent's few threads (runtime, blocking pool,
//! service and patch checks) allocate little and rarely at the same time, so
//! separate arenas buy no speed and cost a few hundred KiB of resident memory on
//! every endpoint (measured with agentbench: docs/BENCHMARKS.md).

/// Limits malloc to one arena. Call first thing in `main`, before other threads.
pub fn tune_allocator() {
    // SAFETY: mallopt only sets an allocator parameter; called before any thread
    // is started, so nothing allocates concurrently.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
