//! Flannel's masquerade and forward rules, for iptables and nftables.
//!
//! - [`rules`] (pure): renders the rules, the `iptables-restore --noflush` payloads and the
//!   `nft -f` scripts, and parses `iptables -S` listings. Golden-tested byte for byte against
//!   Flannel's e2e dumps.
//! - [`driver`] (I/O): one [`FirewallDriver`] per front end ([`driver::iptables`],
//!   [`driver::nftables`]): observe, re-apply only on drift, tear down a previous network,
//!   remove everything; [`driver::select`] maps a [`Mode`] to its driver.
//! - [`apply`]: [`Firewall`], the daemon's handle: random-fully decision, one writer at a
//!   time, cleanup of the other mode, the periodic resync loop.
//! - [`exec`]: running the tools with a time limit; [`error`]: [`FirewallError`].

pub mod apply;
pub mod driver;
pub mod error;
pub mod exec;
pub mod rules;

pub use apply::{Firewall, FirewallConfig};
pub use driver::iptables::Capabilities;
pub use driver::{FirewallDriver, Mode, Outcome};
pub use error::FirewallError;
pub use exec::Binaries;
pub use rules::{Family, FamilyRules, ForwardParams, MasqParams, RuleError, RuleSet};
