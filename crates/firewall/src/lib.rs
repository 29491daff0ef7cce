//! Firewall rules.
