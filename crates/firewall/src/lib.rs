//! Flannel's masquerade and forward rules, for iptables and nftables.
//!
//! - [`rules`] (pure): renders the rules, the `iptables-restore --noflush` payloads and the
//!   `nft -f` scripts, and parses `iptables -S` listings. Golden-tested byte for byte against
//!   Flannel's e2e dumps.
//! - [`apply`] (I/O): [`Firewall`] runs the tools, re-applies only on drift, cleans up the other
//!   mode and runs the periodic resync loop.

pub mod apply;
pub mod rules;

pub use apply::{Binaries, Capabilities, Firewall, FirewallConfig, FirewallError, Mode, Outcome};
pub use rules::{Family, FamilyRules, ForwardParams, MasqParams, RuleError, RuleSet};
