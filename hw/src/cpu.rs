//! CPU pinning for poll-mode workers (core_affinity).

/// Pins the calling thread to CPU `core`. Returns false if the core does
/// not exist or the kernel refused (e.g. outside the process's cpuset).
pub fn pin_current_thread(core: usize) -> bool {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.id == core)
        .is_some_and(core_affinity::set_for_current)
}

/// The CPUs this process may run on.
pub fn available_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}
