//! Tests that need root must not silently pass without it.

/// Whether `CI=true` (CI must not go green by skipping).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Returns `true` when the test may go on. Without root: panics under `CI=true` (so CI cannot
/// go green without running the test), otherwise prints why and returns `false`.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if ci() {
        panic!("{test} needs root (CAP_NET_ADMIN) and CI=true: refusing to skip");
    }
    eprintln!("skipping {test}: needs root (set CI=true to make this a failure)");
    false
}
