//! The process allocator's settings.
//!
//! glibc gives each thread that allocates under contention an arena of its
//! own (up to 8 per core) and keeps what is freed in an arena for reuse
//! there. A worker's tasks run on many blocking threads and free hundreds
//! of MiB at the end of each task, so memory freed by one task sat in
//! arenas other tasks' threads did not use: story 1 at scale 0.002 on
//! workers limited to 1.5 GiB peaked at 1.8 GiB of RSS while the pool
//! accounted under 0.6 GiB, and ran slower. Capping the arenas at the
//! worker's cores (at least two) keeps freed memory where the next task
//! allocates: the same run peaked at 0.7 GiB and finished 8% sooner.

/// Caps malloc's arenas; call before the runtime starts its threads.
pub fn limit_arenas(cores: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called
    // before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, cores.clamp(2, 64) as libc::c_int);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = cores;
}
