//! What threads that work behind the requests share: a lower priority, and
//! giving the memory they freed back to the system.

/// Lowers the calling thread's priority below the writer and the gRPC
/// threads (Linux schedules threads by their own nice value); elsewhere a
/// no-op. `what` names the thread in the warning when it cannot.
pub(crate) fn lower_priority(what: &str) {
    #[cfg(target_os = "linux")]
    {
        /// Below the writer and the gRPC threads (nice 0).
        const NICE: i32 = 10;
        // SAFETY: gettid has no preconditions; setpriority on our own thread
        // id only changes this thread's nice value, and a failure (say, no
        // permission) leaves it as it was.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) };
        if result != 0 {
            tracing::warn!("cannot lower the {what}'s priority; it competes with the writer as an equal");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = what;
}

/// Hands the free pages inside the heap back to the system. glibc gives back
/// only the top of its heap by itself, so after a big structure made of many
/// small nodes is dropped, its pages stay resident until this is called.
pub(crate) fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free
    // chunks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
