//! Giving memory back to the system between the steps of a run. glibc's allocator keeps
//! pages a step freed for its own reuse, so without this a run's resident memory after its
//! largest step stays at that step's peak, and each later step's peak is added on top of it.

/// Returns the allocator's free pages to the system (glibc's `malloc_trim`); does nothing on
/// other C libraries.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases pages the allocator holds free; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
