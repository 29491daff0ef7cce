//! Pure decisions: subnet allocation, desired kernel state and diffs. No I/O here.
pub mod allocator;
