//! How Loft's processes ask the C allocator to hold memory.

/// Allocator arenas a process may use.
///
/// glibc gives threads that allocate at once their own arenas, up to eight per
/// core, and each arena keeps what was freed in it for reuse. Loft's threads (FUSE
/// workers, the runtime's workers and blocking pool, the server's request tasks)
/// pass chunk-sized buffers (up to 4 MiB) between them, so freed chunks pile up in
/// many arenas. Writing 2 GiB into a mount, uploading it and reading it back cold
/// (2 cores): with glibc's default the mount peaked at 89–92 MiB of RSS in the cold
/// read and the server at 165 MiB; with two arenas 43–49 MiB and 112 MiB, at the
/// same throughput.
const ARENAS: i32 = 2;

/// Caps the allocator's arenas; call before the process starts its threads.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tunable of glibc's allocator; M_ARENA_MAX
    // takes effect for arenas created later and may be set at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}
