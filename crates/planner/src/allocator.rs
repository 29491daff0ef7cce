//! Subnet allocation.
