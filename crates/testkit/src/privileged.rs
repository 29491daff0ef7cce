//! Tests that need root must not silently pass without it (the sandbox crate's guard, so the
//! sandbox's own tests, the lab's and these follow one rule).

pub use flannel_sandbox::privileged::require_root;
