//! Tests that need root must not silently pass without it.

/// Returns `true` when the test may go on. Without root: panics under `CI=true` (so CI cannot
/// go green without running the test), otherwise prints why and returns `false`.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{test} needs root (CAP_NET_ADMIN) and CI=true: refusing to skip");
    }
    eprintln!("skipping {test}: needs root (set CI=true to make this a failure)");
    false
}
