//! Named crash points for the crash tests. With the cargo feature `failpoints`,
//! `HASHDIR_FAILPOINT=name:n` makes the n-th pass through `name` kill the process with SIGKILL,
//! exactly as an outside kill at that moment would. Without the feature `hit` is empty and
//! compiles to nothing.

/// Every failpoint the engine has, so the tests can prove each one is reached and survived.
#[cfg(any(test, feature = "testing"))]
pub const ALL: &[&str] = &[
    "commit.half_frame",
    "commit.frame_written",
    "commit.durable",
    "log.switched",
    "flush.entry",
    "flush.written",
    "flush.published",
    "merge.entry",
    "merge.step_written",
    "merge.step_published",
    "merge.written",
    "merge.published",
    "merge.deltas_written",
    "merge.deltas_published",
    "publish.synced",
    "publish.root_torn",
    "publish.root_written",
    "gc.marked",
    "gc.reclaimed",
    "recovery.replaying",
    "recovery.replayed",
    "recovery.merge_resumed",
];

/// The armed failpoint and the pass that fires it, from `HASHDIR_FAILPOINT`.
#[cfg(feature = "failpoints")]
fn spec() -> Option<&'static (String, u64)> {
    static ARMED: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("HASHDIR_FAILPOINT").ok()?;
            let (n, at) = spec.split_once(':').unwrap_or((&spec, "1"));
            Some((n.to_string(), at.parse().unwrap_or(1)))
        })
        .as_ref()
}

/// Whether `name` is the armed failpoint: for work done only to set a failpoint up (a torn
/// write), which would otherwise slow every test build down.
#[cfg(feature = "failpoints")]
pub fn armed(name: &'static str) -> bool {
    spec().is_some_and(|(n, _)| n == name)
}

#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PASSES: AtomicU64 = AtomicU64::new(0);
    debug_assert!(ALL.contains(&name), "failpoint {name} is not listed in ALL");
    let Some((armed_name, at)) = spec() else {
        return;
    };
    if armed_name == name && PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *at {
        // The kill(1) command keeps this crate's unsafe code inside ffi/ and store/.
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

/// Entries a merge step writes at most, from `HASHDIR_MERGE_STEP` (so that the small tables
/// of the crash tests are merged in many steps); None without the feature.
#[cfg(feature = "failpoints")]
pub fn merge_step() -> Option<u64> {
    static STEP: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *STEP.get_or_init(|| std::env::var("HASHDIR_MERGE_STEP").ok()?.parse().ok())
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn merge_step() -> Option<u64> {
    None
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn armed(_name: &'static str) -> bool {
    false
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &'static str) {}
