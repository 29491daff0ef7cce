//! External interface selection: which host interface (and which of its addresses) flanneld
//! uses for inter-host traffic, as Flannel decides it (`pkg/ipmatch/match.go`, `pkg/ip/iface.go`
//! and the selection loop in `main.go`).
//!
//! This module is the pure decision: [`HostInterfaces`] (plain facts about links, addresses
//! and default routes), [`select_external_interface`] and its error texts, unit-tested with
//! hand-built facts. Gathering the facts over rtnetlink is [`crate::iface`]'s job; decoding
//! the messages is [`crate::decode`]'s.
//!
//! Rules (reference §1.1):
//! - `--iface` values are tried in order, then `--iface-regex` values, then `--iface-can-reach`;
//!   the first that yields an interface wins; when all fail the error is
//!   `Failed to find interface to use that matches the interfaces and/or regexes provided`.
//! - An `--iface` value that parses as an IP address selects the interface owning that address
//!   (and that exact address); otherwise it is an interface name.
//! - A regex is matched against each interface's usable addresses first (interfaces in index
//!   order), then against interface names.
//! - `--iface-can-reach` uses the kernel's answer for `ip route get <ip>`: output interface and
//!   preferred source address.
//! - Without any `--iface*`: `--public-ip` (then `--public-ipv6`) must be a *local* address and
//!   selects its interface; otherwise the interface of the first default route in the main table
//!   (dual-stack requires the v4 and v6 default routes on the same interface). Failures here are
//!   `Failed to find any valid interface to use: <reason>`.
//! - When the address is not fixed by the rule, the first *usable* address of the interface is
//!   taken: global- or link-local unicast, not deprecated, sorted global before link-local,
//!   permanent before dynamic, non-temporary before temporary (stable otherwise).
//! - `ExtAddr` is `--public-ip` if given, else the interface address (same for v6).
//!
//! Deliberate differences from Flannel (all in cases where Flannel crashes or returns nonsense):
//! - dual-stack `--iface <IPv6>` without `--public-ipv6` uses the interface owning that IPv6
//!   address (Flannel dereferences a nil interface and panics);
//! - dual-stack regex matching never carries an IPv4 match over from a previous interface;
//! - `--iface-can-reach` puts an IPv6 preferred source into the IPv6 slot (Flannel stores it as
//!   the IPv4 interface address);
//! - without `--iface*`, `--public-ip` is only used as the lookup key when IPv4 is enabled and
//!   `--public-ipv6` only when IPv6 is enabled (Flannel looks a v6 address up in v4 mode and
//!   fails);
//! - an invalid regex is reported (with the regex and the parser's reason) among the failed
//!   attempts; like Flannel it only fails the run when nothing else matches.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use regex::Regex;

/// One network interface as seen by the kernel (`RTM_NEWLINK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFacts {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU (0 when the kernel did not report one).
    pub mtu: u32,
    /// Administratively up (`IFF_UP`). Informational: selection does not look at it, as in Flannel.
    pub up: bool,
}

/// One interface address (`RTM_NEWADDR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrFacts {
    /// Index of the interface holding the address.
    pub index: u32,
    /// The local address (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// `IFA_F_PERMANENT`: configured address with infinite lifetime.
    pub permanent: bool,
    /// `IFA_F_DEPRECATED`: preferred lifetime expired; never chosen.
    pub deprecated: bool,
    /// `IFA_F_TEMPORARY` (same bit as `IFA_F_SECONDARY`, so IPv4 secondary addresses count as
    /// temporary, exactly as in Flannel's sort).
    pub temporary: bool,
}

/// Plain facts about the host's interfaces, addresses and main-table default routes, in kernel
/// dump order (Flannel iterates interfaces in that order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInterfaces {
    /// All links.
    pub links: Vec<LinkFacts>,
    /// All addresses of all families.
    pub addrs: Vec<AddrFacts>,
    /// Output interface index of each IPv4 default route of the main table, in dump order
    /// (0 when the route has no single output interface, e.g. multipath or blackhole).
    pub default_routes_v4: Vec<u32>,
    /// Same for IPv6 default routes.
    pub default_routes_v6: Vec<u32>,
}

/// The kernel's answer to `RTM_GETROUTE` for one destination (`ip route get <ip>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteGetAnswer {
    /// Output interface index (0 when the answer has none).
    pub oif: u32,
    /// Preferred source address (`RTA_PREFSRC`), if any.
    pub prefsrc: Option<IpAddr>,
    /// Next hop (`RTA_GATEWAY`); `None` means the destination is on-link (same L2 segment),
    /// which is what vxlan DirectRouting asks.
    pub gateway: Option<IpAddr>,
}

/// What the operator asked for (flags `--iface`, `--iface-regex`, `--iface-can-reach`,
/// `--public-ip`, `--public-ipv6`) plus the IP families enabled by the network config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceRequest {
    /// `--iface` values (names or IP addresses), in order.
    pub ifaces: Vec<String>,
    /// `--iface-regex` values, in order.
    pub iface_regexes: Vec<String>,
    /// `--iface-can-reach` destination.
    pub iface_can_reach: Option<IpAddr>,
    /// `--public-ip` (or the node-public-ip annotation in kube mode).
    pub public_ip: Option<Ipv4Addr>,
    /// `--public-ipv6` (or the node-public-ipv6 annotation in kube mode).
    pub public_ipv6: Option<Ipv6Addr>,
    /// `EnableIPv4` from the network config.
    pub ipv4: bool,
    /// `EnableIPv6` from the network config.
    pub ipv6: bool,
}

/// The chosen external interface (Flannel's `backend.ExternalInterface`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalInterface {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Interface MTU (never 0).
    pub mtu: u32,
    /// IPv4 address on the interface used for inter-host traffic.
    pub iface_addr: Option<Ipv4Addr>,
    /// IPv6 address on the interface used for inter-host traffic.
    pub iface_v6_addr: Option<Ipv6Addr>,
    /// IPv4 address advertised to peers (`--public-ip`, else `iface_addr`).
    pub ext_addr: Option<Ipv4Addr>,
    /// IPv6 address advertised to peers (`--public-ipv6`, else `iface_v6_addr`).
    pub ext_v6_addr: Option<Ipv6Addr>,
}

impl ExternalInterface {
    /// The planner's view of this interface (what backends are built from).
    pub fn underlay(&self) -> flannel_planner::backend::Underlay {
        flannel_planner::backend::Underlay {
            name: self.name.clone(),
            index: self.index,
            mtu: self.mtu,
            iface_addr: self.iface_addr,
            iface_v6_addr: self.iface_v6_addr,
            public_ip: self.ext_addr,
            public_ipv6: self.ext_v6_addr,
        }
    }
}

/// Why one lookup (one `--iface`, one `--iface-regex`, the can-reach probe, or the default
/// lookup) found no interface. Texts follow Flannel's so logs stay familiar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No interface owns the given IPv4 address.
    #[error("error looking up interface {spec}: no interface with given IP found")]
    NoInterfaceWithIp {
        /// The address as given.
        spec: String,
    },
    /// No interface owns the given IPv6 address.
    #[error("error looking up v6 interface {spec}: no interface with given IPv6 found")]
    NoInterfaceWithIp6 {
        /// The address as given.
        spec: String,
    },
    /// Dual-stack: `--public-ipv6` lives on another interface than the IPv4 address.
    #[error("v6 interface {v6} must be the same with v4 interface {v4}")]
    V6InterfaceMismatch {
        /// Interface owning the IPv6 address.
        v6: String,
        /// Interface owning the IPv4 address.
        v4: String,
    },
    /// No interface has this name.
    #[error("error looking up interface {name}: no such network interface")]
    NoInterfaceWithName {
        /// The name as given.
        name: String,
    },
    /// `--iface-regex` is not a valid regular expression.
    #[error("could not compile the IP address regex '{regex}': {reason}")]
    BadRegex {
        /// The regex as given.
        regex: String,
        /// The regex parser's explanation.
        reason: String,
    },
    /// `--iface-regex` matched neither an address nor a name.
    #[error(
        "could not match pattern {regex} to any of the available network interfaces ({available})"
    )]
    RegexNoMatch {
        /// The regex as given.
        regex: String,
        /// `name:[addr addr]` for each interface, comma separated.
        available: String,
    },
    /// `--iface-can-reach` did not give a usable interface.
    #[error("failed to get ifcanreach based interface: {reason}")]
    CanReach {
        /// Why (route lookup failed or its interface is unknown).
        reason: String,
    },
    /// No usable IPv4 default route.
    #[error("failed to get default interface: {reason}")]
    DefaultRoute {
        /// Why.
        reason: String,
    },
    /// No usable IPv6 default route.
    #[error("failed to get default v6 interface: {reason}")]
    DefaultRouteV6 {
        /// Why.
        reason: String,
    },
    /// Dual-stack: the default routes use different interfaces.
    #[error(
        "v6 default route interface {v6} must be the same with v4 default route interface {v4}"
    )]
    DefaultRouteMismatch {
        /// Interface of the IPv6 default route.
        v6: String,
        /// Interface of the IPv4 default route.
        v4: String,
    },
    /// The chosen interface has no usable IPv4 address.
    #[error("failed to find IPv4 address for interface {name}")]
    NoIpv4Address {
        /// Interface name.
        name: String,
    },
    /// The chosen interface has no usable IPv6 address.
    #[error("failed to find IPv6 address for interface {name}")]
    NoIpv6Address {
        /// Interface name.
        name: String,
    },
    /// The chosen interface reports MTU 0.
    #[error("failed to determine MTU for {addr} interface")]
    ZeroMtu {
        /// The interface address (`<nil>` when none), as Flannel prints it.
        addr: String,
    },
}

/// Errors of external interface selection and of the netlink queries behind it.
#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    /// Neither IPv4 nor IPv6 is enabled.
    #[error("none defined stack")]
    NoIpFamily,
    /// No `--iface*` given and the default (or `--public-ip`) lookup failed.
    #[error("Failed to find any valid interface to use: {0}")]
    NoValidInterface(LookupError),
    /// Every `--iface`, `--iface-regex` and `--iface-can-reach` attempt failed.
    #[error(
        "Failed to find interface to use that matches the interfaces and/or regexes provided{}",
        FmtAttempts(.attempts)
    )]
    NoMatch {
        /// One `"<flag> <value>: <reason>"` line per failed attempt, in order.
        attempts: Vec<String>,
    },
    /// Opening the rtnetlink socket failed.
    #[error("cannot open rtnetlink socket: {0}")]
    Connection(std::io::Error),
    /// A netlink dump failed.
    #[error("netlink {what} dump failed: {source}")]
    Dump {
        /// What was being dumped (links, addresses, IPv4 routes, IPv6 routes).
        what: &'static str,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// `RTM_GETROUTE` for one destination failed (e.g. network unreachable).
    #[error("couldn't lookup route to {dst}: {source}")]
    RouteGet {
        /// The destination.
        dst: IpAddr,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// `RTM_GETROUTE` returned no route.
    #[error("couldn't lookup route to {dst}: no route returned")]
    RouteGetEmpty {
        /// The destination.
        dst: IpAddr,
    },
}

/// Formats the failed attempts after the fixed `NoMatch` text.
struct FmtAttempts<'a>(&'a Vec<String>);

impl fmt::Display for FmtAttempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        write!(f, " (tried: {})", self.0.join("; "))
    }
}

/// Enabled IP families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    V4,
    V6,
    Dual,
}

impl Stack {
    fn has_v4(self) -> bool {
        self != Stack::V6
    }
    fn has_v6(self) -> bool {
        self != Stack::V4
    }
}

/// One lookup as Flannel's `LookupExtIface` performs it.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    /// Interface name or IP address; empty means "default route".
    NameOrIp(&'a str),
    /// Regex over addresses then names.
    Regex(&'a str),
    /// `ip route get` answer for this destination.
    CanReach(IpAddr),
    /// Default route interface.
    Default,
}

/// Chooses the external interface from `facts` as Flannel does (see the module docs).
///
/// `can_reach` is the kernel's route answer for `req.iface_can_reach`; pass `None` when the
/// lookup failed (the can-reach attempt then fails).
pub fn select_external_interface(
    req: &IfaceRequest,
    facts: &HostInterfaces,
    can_reach: Option<RouteGetAnswer>,
) -> Result<ExternalInterface, IfaceError> {
    let stack = match (req.ipv4, req.ipv6) {
        (true, false) => Stack::V4,
        (false, true) => Stack::V6,
        (true, true) => Stack::Dual,
        (false, false) => return Err(IfaceError::NoIpFamily),
    };
    let sel = Selector {
        req,
        facts,
        stack,
        can_reach,
    };

    if req.ifaces.is_empty() && req.iface_regexes.is_empty() && req.iface_can_reach.is_none() {
        let key = match (req.public_ip, req.public_ipv6) {
            (Some(ip), _) if stack.has_v4() => Some(ip.to_string()),
            (_, Some(ip6)) if stack.has_v6() => Some(ip6.to_string()),
            _ => None,
        };
        let target = match &key {
            Some(k) => Target::NameOrIp(k),
            None => Target::Default,
        };
        return sel.lookup(target).map_err(IfaceError::NoValidInterface);
    }

    let mut attempts = Vec::new();
    let candidates = req
        .ifaces
        .iter()
        .map(|i| ("--iface", i.clone(), Target::NameOrIp(i)))
        .chain(
            req.iface_regexes
                .iter()
                .map(|r| ("--iface-regex", r.clone(), Target::Regex(r))),
        )
        .chain(
            req.iface_can_reach
                .map(|ip| ("--iface-can-reach", ip.to_string(), Target::CanReach(ip))),
        );
    for (flag, value, target) in candidates {
        match sel.lookup(target) {
            Ok(ext) => return Ok(ext),
            Err(e) => {
                tracing::info!("Could not find valid interface matching {flag} {value}: {e}");
                attempts.push(format!("{flag} {value}: {e}"));
            }
        }
    }
    Err(IfaceError::NoMatch { attempts })
}

/// The facts plus the request, for one selection.
struct Selector<'a> {
    req: &'a IfaceRequest,
    facts: &'a HostInterfaces,
    stack: Stack,
    can_reach: Option<RouteGetAnswer>,
}

impl Selector<'_> {
    /// Flannel's `LookupExtIface` for one target.
    fn lookup(&self, target: Target<'_>) -> Result<ExternalInterface, LookupError> {
        let stack = self.stack;
        let mut v4: Option<Ipv4Addr> = None;
        let mut v6: Option<Ipv6Addr> = None;

        let link: &LinkFacts = match target {
            Target::NameOrIp("") | Target::Default => self.default_link()?,
            Target::NameOrIp(spec) => match spec.parse::<IpAddr>() {
                Ok(ip) => self.link_by_ip_spec(spec, ip, &mut v4, &mut v6)?,
                Err(_) => {
                    self.link_by_name(spec)
                        .ok_or_else(|| LookupError::NoInterfaceWithName {
                            name: spec.to_string(),
                        })?
                }
            },
            Target::Regex(pattern) => self.link_by_regex(pattern, &mut v4, &mut v6)?,
            Target::CanReach(dst) => {
                let answer = self.can_reach.ok_or_else(|| LookupError::CanReach {
                    reason: format!("couldn't lookup route to {dst}"),
                })?;
                let link = self
                    .link_by_index(answer.oif)
                    .ok_or_else(|| LookupError::CanReach {
                        reason: format!(
                            "couldn't lookup interface: no network interface with index {}",
                            answer.oif
                        ),
                    })?;
                match answer.prefsrc {
                    Some(IpAddr::V4(a)) => v4 = Some(a),
                    Some(IpAddr::V6(a)) => v6 = Some(a),
                    None => {}
                }
                link
            }
        };

        if stack.has_v4() && v4.is_none() {
            v4 = Some(
                self.usable_v4(link.index)
                    .into_iter()
                    .find_map(|a| match a {
                        IpAddr::V4(a) => Some(a),
                        IpAddr::V6(_) => None,
                    })
                    .ok_or_else(|| LookupError::NoIpv4Address {
                        name: link.name.clone(),
                    })?,
            );
        }
        if stack.has_v6() && v6.is_none() {
            v6 = Some(
                self.usable_v6(link.index)
                    .into_iter()
                    .find_map(|a| match a {
                        IpAddr::V6(a) => Some(a),
                        IpAddr::V4(_) => None,
                    })
                    .ok_or_else(|| LookupError::NoIpv6Address {
                        name: link.name.clone(),
                    })?,
            );
        }
        if let Some(a) = v4 {
            tracing::info!("Using interface with name {} and address {a}", link.name);
        }
        if let Some(a) = v6 {
            tracing::info!("Using interface with name {} and v6 address {a}", link.name);
        }
        if link.mtu == 0 {
            return Err(LookupError::ZeroMtu {
                addr: v4.map_or_else(|| "<nil>".to_string(), |a| a.to_string()),
            });
        }

        let ext_addr = self
            .req
            .public_ip
            .or(if stack.has_v4() { v4 } else { None });
        let ext_v6_addr = self
            .req
            .public_ipv6
            .or(if stack.has_v6() { v6 } else { None });
        Ok(ExternalInterface {
            index: link.index,
            name: link.name.clone(),
            mtu: link.mtu,
            iface_addr: v4,
            iface_v6_addr: v6,
            ext_addr,
            ext_v6_addr,
        })
    }

    /// `--iface <ip>` (or the public IP without `--iface`): the interface owning the address.
    fn link_by_ip_spec(
        &self,
        spec: &str,
        ip: IpAddr,
        v4: &mut Option<Ipv4Addr>,
        v6: &mut Option<Ipv6Addr>,
    ) -> Result<&LinkFacts, LookupError> {
        let no_v4 = || LookupError::NoInterfaceWithIp {
            spec: spec.to_string(),
        };
        let no_v6 = |s: &str| LookupError::NoInterfaceWithIp6 {
            spec: s.to_string(),
        };
        match (self.stack, ip) {
            (Stack::V4, IpAddr::V4(a)) => {
                *v4 = Some(a);
                self.link_owning(ip).ok_or_else(no_v4)
            }
            (Stack::V4, IpAddr::V6(_)) => Err(no_v4()),
            (Stack::V6, IpAddr::V6(a)) => {
                *v6 = Some(a);
                self.link_owning(ip).ok_or_else(|| no_v6(spec))
            }
            (Stack::V6, IpAddr::V4(_)) => Err(no_v6(spec)),
            (Stack::Dual, _) => {
                let mut link = None;
                if let IpAddr::V4(a) = ip {
                    link = Some(self.link_owning(ip).ok_or_else(no_v4)?);
                    *v4 = Some(a);
                }
                if let Some(p6) = self.req.public_ipv6 {
                    let l6 = self
                        .link_owning(IpAddr::V6(p6))
                        .ok_or_else(|| no_v6(&p6.to_string()))?;
                    *v6 = Some(p6);
                    match link {
                        Some(l4) if l4.name != l6.name => {
                            return Err(LookupError::V6InterfaceMismatch {
                                v6: l6.name.clone(),
                                v4: l4.name.clone(),
                            })
                        }
                        Some(_) => {}
                        None => link = Some(l6),
                    }
                } else if let IpAddr::V6(a) = ip {
                    // Flannel panics here (nil interface); use the owner of the address.
                    link = Some(self.link_owning(ip).ok_or_else(|| no_v6(spec))?);
                    *v6 = Some(a);
                }
                link.ok_or_else(no_v4)
            }
        }
    }

    /// `--iface-regex`: addresses first (per interface, in dump order), then names.
    fn link_by_regex(
        &self,
        pattern: &str,
        v4: &mut Option<Ipv4Addr>,
        v6: &mut Option<Ipv6Addr>,
    ) -> Result<&LinkFacts, LookupError> {
        let re = Regex::new(pattern).map_err(|e| LookupError::BadRegex {
            regex: pattern.to_string(),
            reason: e.to_string(),
        })?;
        let first_match =
            |ips: &[IpAddr]| ips.iter().copied().find(|ip| re.is_match(&ip.to_string()));

        for link in &self.facts.links {
            let ips4 = self.usable_v4(link.index);
            let ips6 = self.usable_v6(link.index);
            match self.stack {
                Stack::V4 => {
                    if let Some(IpAddr::V4(a)) = first_match(&ips4) {
                        *v4 = Some(a);
                        return Ok(link);
                    }
                }
                Stack::V6 => {
                    if let Some(IpAddr::V6(a)) = first_match(&ips6) {
                        *v6 = Some(a);
                        return Ok(link);
                    }
                }
                Stack::Dual => {
                    if let (Some(IpAddr::V4(a)), Some(IpAddr::V6(b))) =
                        (first_match(&ips4), first_match(&ips6))
                    {
                        *v4 = Some(a);
                        *v6 = Some(b);
                        return Ok(link);
                    }
                }
            }
        }

        if let Some(link) = self.facts.links.iter().find(|l| re.is_match(&l.name)) {
            return Ok(link);
        }

        let available = self
            .facts
            .links
            .iter()
            .map(|l| {
                let ips = if self.stack == Stack::V6 {
                    self.usable_v6(l.index)
                } else {
                    self.usable_v4(l.index)
                };
                let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
                format!("{}:[{}]", l.name, ips.join(" "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        Err(LookupError::RegexNoMatch {
            regex: pattern.to_string(),
            available,
        })
    }

    /// No `--iface*`: the interface of the first main-table default route.
    fn default_link(&self) -> Result<&LinkFacts, LookupError> {
        tracing::info!("Determining IP address of default interface");
        let v4 = || {
            self.default_route_link(&self.facts.default_routes_v4, "")
                .map_err(|reason| LookupError::DefaultRoute { reason })
        };
        let v6 = || {
            self.default_route_link(&self.facts.default_routes_v6, " v6")
                .map_err(|reason| LookupError::DefaultRouteV6 { reason })
        };
        match self.stack {
            Stack::V4 => v4(),
            Stack::V6 => v6(),
            Stack::Dual => {
                let l4 = v4()?;
                let l6 = v6()?;
                if l4.name != l6.name {
                    return Err(LookupError::DefaultRouteMismatch {
                        v6: l6.name.clone(),
                        v4: l4.name.clone(),
                    });
                }
                Ok(l4)
            }
        }
    }

    fn default_route_link(&self, routes: &[u32], fam: &str) -> Result<&LinkFacts, String> {
        let Some(&oif) = routes.first() else {
            return Err(format!("unable to find default{fam} route"));
        };
        if oif == 0 {
            return Err(format!(
                "found default{fam} route but could not determine interface"
            ));
        }
        self.link_by_index(oif)
            .ok_or_else(|| format!("no network interface with index {oif}"))
    }

    fn link_by_index(&self, index: u32) -> Option<&LinkFacts> {
        self.facts.links.iter().find(|l| l.index == index)
    }

    fn link_by_name(&self, name: &str) -> Option<&LinkFacts> {
        self.facts.links.iter().find(|l| l.name == name)
    }

    /// First interface (in dump order) holding `ip`, whatever the address' kind or flags.
    fn link_owning(&self, ip: IpAddr) -> Option<&LinkFacts> {
        self.facts.links.iter().find(|l| {
            self.facts
                .addrs
                .iter()
                .any(|a| a.index == l.index && a.addr == ip)
        })
    }

    fn usable_v4(&self, index: u32) -> Vec<IpAddr> {
        usable_addrs(self.facts, index, false)
    }

    fn usable_v6(&self, index: u32) -> Vec<IpAddr> {
        usable_addrs(self.facts, index, true)
    }
}

/// Usable addresses of one interface and family, in Flannel's preference order: global or
/// link-local unicast and not deprecated; global before link-local, permanent before dynamic,
/// non-temporary before temporary; otherwise dump order.
pub fn usable_addrs(facts: &HostInterfaces, index: u32, v6: bool) -> Vec<IpAddr> {
    let mut addrs: Vec<&AddrFacts> = facts
        .addrs
        .iter()
        .filter(|a| a.index == index && a.addr.is_ipv6() == v6)
        .filter(|a| !a.deprecated && (is_global_unicast(a.addr) || is_link_local_unicast(a.addr)))
        .collect();
    // Stable sort: equal keys keep dump order.
    addrs.sort_by_key(|a| (is_link_local_unicast(a.addr), !a.permanent, a.temporary));
    addrs.into_iter().map(|a| a.addr).collect()
}

/// Go's `net.IP.IsLinkLocalUnicast`: 169.254.0.0/16 or fe80::/10.
fn is_link_local_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Go's `net.IP.IsGlobalUnicast`: not unspecified, loopback, multicast, link-local or (v4)
/// limited broadcast. Private ranges count as global.
fn is_global_unicast(ip: IpAddr) -> bool {
    if is_link_local_unicast(ip) {
        return false;
    }
    match ip {
        IpAddr::V4(a) => {
            !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast())
        }
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_loopback() || a.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, mtu: u32) -> LinkFacts {
        LinkFacts {
            index,
            name: name.to_string(),
            mtu,
            up: true,
        }
    }

    fn addr(index: u32, a: &str) -> AddrFacts {
        AddrFacts {
            index,
            addr: a.parse().expect("test address"),
            prefix_len: 24,
            permanent: true,
            deprecated: false,
            temporary: false,
        }
    }

    /// lo(1), eth0(2, 1500, default routes), eth1(3, 9000), wg0(4, MTU 0).
    fn host() -> HostInterfaces {
        HostInterfaces {
            links: vec![
                link(1, "lo", 65536),
                link(2, "eth0", 1500),
                link(3, "eth1", 9000),
                link(4, "wg0", 0),
            ],
            addrs: vec![
                addr(1, "127.0.0.1"),
                addr(1, "::1"),
                addr(2, "192.0.2.10"),
                addr(2, "fe80::10"),
                addr(2, "2001:db8::10"),
                addr(3, "198.51.100.10"),
                addr(3, "2001:db8:1::10"),
                addr(4, "203.0.113.1"),
            ],
            default_routes_v4: vec![2],
            default_routes_v6: vec![2],
        }
    }

    fn v4() -> IfaceRequest {
        IfaceRequest {
            ipv4: true,
            ..Default::default()
        }
    }

    fn dual() -> IfaceRequest {
        IfaceRequest {
            ipv4: true,
            ipv6: true,
            ..Default::default()
        }
    }

    fn ip4(s: &str) -> Ipv4Addr {
        s.parse().expect("test v4")
    }

    fn ip6(s: &str) -> Ipv6Addr {
        s.parse().expect("test v6")
    }

    fn select(req: &IfaceRequest) -> Result<ExternalInterface, IfaceError> {
        select_external_interface(req, &host(), None)
    }

    #[test]
    fn default_route_interface_v4() {
        let ext = select(&v4()).expect("default");
        assert_eq!(
            ext,
            ExternalInterface {
                index: 2,
                name: "eth0".into(),
                mtu: 1500,
                iface_addr: Some(ip4("192.0.2.10")),
                iface_v6_addr: None,
                ext_addr: Some(ip4("192.0.2.10")),
                ext_v6_addr: None,
            }
        );
    }

    #[test]
    fn default_route_takes_first_route() {
        let mut h = host();
        h.default_routes_v4 = vec![3, 2];
        let ext = select_external_interface(&v4(), &h, None).expect("default");
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.mtu, 9000);
    }

    #[test]
    fn no_default_route_error_text() {
        let mut h = host();
        h.default_routes_v4.clear();
        let err = select_external_interface(&v4(), &h, None).expect_err("no route");
        assert_eq!(
            err.to_string(),
            "Failed to find any valid interface to use: failed to get default interface: unable to find default route"
        );
    }

    #[test]
    fn default_route_without_interface_error_text() {
        let mut h = host();
        h.default_routes_v4 = vec![0];
        let err = select_external_interface(&v4(), &h, None).expect_err("oif 0");
        assert_eq!(
            err.to_string(),
            "Failed to find any valid interface to use: failed to get default interface: found default route but could not determine interface"
        );
    }

    #[test]
    fn default_route_v6_only() {
        let req = IfaceRequest {
            ipv6: true,
            ..Default::default()
        };
        let ext = select(&req).expect("v6");
        assert_eq!(ext.name, "eth0");
        assert_eq!(ext.iface_addr, None);
        assert_eq!(ext.ext_addr, None);
        // Global before link-local although the link-local address is listed first.
        assert_eq!(ext.iface_v6_addr, Some(ip6("2001:db8::10")));
        assert_eq!(ext.ext_v6_addr, Some(ip6("2001:db8::10")));

        let mut h = host();
        h.default_routes_v6.clear();
        let err = select_external_interface(&req, &h, None).expect_err("no v6 route");
        assert_eq!(
            err.to_string(),
            "Failed to find any valid interface to use: failed to get default v6 interface: unable to find default v6 route"
        );
    }

    /// IPv6-only with `--public-ipv6` and no `--iface`: the owner of that address, no IPv4
    /// looked up (`--public-ip` is not a lookup key then, as in Flannel).
    #[test]
    fn v6_only_public_ipv6_picks_its_interface() {
        let req = IfaceRequest {
            ipv6: true,
            public_ip: Some(ip4("192.0.2.10")),
            public_ipv6: Some(ip6("2001:db8:1::10")),
            ..Default::default()
        };
        let ext = select(&req).expect("v6 owner");
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.iface_addr, None);
        assert_eq!(ext.iface_v6_addr, Some(ip6("2001:db8:1::10")));
        assert_eq!(ext.ext_v6_addr, Some(ip6("2001:db8:1::10")));
    }

    #[test]
    fn dual_stack_default_same_interface() {
        let ext = select(&dual()).expect("dual");
        assert_eq!(ext.name, "eth0");
        assert_eq!(ext.iface_addr, Some(ip4("192.0.2.10")));
        assert_eq!(ext.iface_v6_addr, Some(ip6("2001:db8::10")));
        assert_eq!(ext.ext_v6_addr, Some(ip6("2001:db8::10")));
    }

    #[test]
    fn dual_stack_default_mismatch_error_text() {
        let mut h = host();
        h.default_routes_v6 = vec![3];
        let err = select_external_interface(&dual(), &h, None).expect_err("mismatch");
        assert_eq!(
            err.to_string(),
            "Failed to find any valid interface to use: v6 default route interface eth1 must be the same with v4 default route interface eth0"
        );
    }

    #[test]
    fn no_ip_family() {
        let err = select(&IfaceRequest::default()).expect_err("none");
        assert!(matches!(err, IfaceError::NoIpFamily));
        assert_eq!(err.to_string(), "none defined stack");
    }

    #[test]
    fn iface_by_name() {
        let req = IfaceRequest {
            ifaces: vec!["eth1".into()],
            ..v4()
        };
        let ext = select(&req).expect("eth1");
        assert_eq!(ext.index, 3);
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.mtu, 9000);
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.10")));
        assert_eq!(ext.ext_addr, Some(ip4("198.51.100.10")));
    }

    #[test]
    fn iface_by_ip() {
        let req = IfaceRequest {
            ifaces: vec!["198.51.100.10".into()],
            ..v4()
        };
        let ext = select(&req).expect("by ip");
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.10")));
    }

    #[test]
    fn iface_by_ip_uses_that_exact_address() {
        let mut h = host();
        h.addrs.push(addr(3, "198.51.100.11"));
        let req = IfaceRequest {
            ifaces: vec!["198.51.100.11".into()],
            ..v4()
        };
        let ext = select_external_interface(&req, &h, None).expect("by ip");
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.11")));
    }

    #[test]
    fn iface_by_ip_accepts_any_local_address_even_loopback() {
        let req = IfaceRequest {
            ifaces: vec!["127.0.0.1".into()],
            ..v4()
        };
        let ext = select(&req).expect("lo by ip");
        assert_eq!(ext.name, "lo");
        assert_eq!(ext.iface_addr, Some(ip4("127.0.0.1")));
    }

    #[test]
    fn iface_by_name_without_usable_address() {
        let req = IfaceRequest {
            ifaces: vec!["lo".into()],
            ..v4()
        };
        let err = select(&req).expect_err("lo has no usable address");
        assert_eq!(
            err.to_string(),
            "Failed to find interface to use that matches the interfaces and/or regexes provided \
             (tried: --iface lo: failed to find IPv4 address for interface lo)"
        );
    }

    #[test]
    fn ifaces_tried_in_order() {
        let req = IfaceRequest {
            ifaces: vec!["nosuch0".into(), "eth1".into(), "eth0".into()],
            ..v4()
        };
        assert_eq!(select(&req).expect("second").name, "eth1");
    }

    #[test]
    fn empty_iface_value_means_default_route() {
        let req = IfaceRequest {
            ifaces: vec![String::new()],
            ..v4()
        };
        assert_eq!(select(&req).expect("default").name, "eth0");
    }

    #[test]
    fn no_match_error_text_and_attempts() {
        let req = IfaceRequest {
            ifaces: vec!["nosuch0".into(), "203.0.113.99".into()],
            ..v4()
        };
        let err = select(&req).expect_err("nothing");
        let IfaceError::NoMatch { attempts } = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(
            attempts,
            &vec![
                "--iface nosuch0: error looking up interface nosuch0: no such network interface"
                    .to_string(),
                "--iface 203.0.113.99: error looking up interface 203.0.113.99: no interface with given IP found"
                    .to_string(),
            ]
        );
        assert!(err.to_string().starts_with(
            "Failed to find interface to use that matches the interfaces and/or regexes provided ("
        ));
    }

    #[test]
    fn no_match_without_attempts_is_exact_flannel_text() {
        let err = IfaceError::NoMatch { attempts: vec![] };
        assert_eq!(
            err.to_string(),
            "Failed to find interface to use that matches the interfaces and/or regexes provided"
        );
    }

    #[test]
    fn regex_matches_ip() {
        let req = IfaceRequest {
            iface_regexes: vec![r"^198\.51\.".into()],
            ..v4()
        };
        let ext = select(&req).expect("regex ip");
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.10")));
    }

    #[test]
    fn regex_matches_ips_before_names() {
        // "eth1" matches a name, but eth0's address matches too and addresses win.
        let req = IfaceRequest {
            iface_regexes: vec![r"eth1|192\.0\.2\.".into()],
            ..v4()
        };
        assert_eq!(select(&req).expect("regex").name, "eth0");
    }

    #[test]
    fn regex_matches_name() {
        let req = IfaceRequest {
            iface_regexes: vec!["^eth1$".into()],
            ..v4()
        };
        let ext = select(&req).expect("regex name");
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.10")));
    }

    #[test]
    fn regex_is_unanchored_like_go() {
        let req = IfaceRequest {
            iface_regexes: vec!["th1".into()],
            ..v4()
        };
        assert_eq!(select(&req).expect("partial").name, "eth1");
    }

    #[test]
    fn regex_no_match_error_text() {
        let req = IfaceRequest {
            iface_regexes: vec!["^bond".into()],
            ..v4()
        };
        let IfaceError::NoMatch { attempts } = select(&req).expect_err("no match") else {
            panic!("expected NoMatch");
        };
        assert_eq!(
            attempts,
            vec!["--iface-regex ^bond: could not match pattern ^bond to any of the available \
                  network interfaces (lo:[], eth0:[192.0.2.10], eth1:[198.51.100.10], wg0:[203.0.113.1])"
                .to_string()]
        );
    }

    #[test]
    fn invalid_regex_is_reported_and_next_regex_tried() {
        let req = IfaceRequest {
            iface_regexes: vec!["(".into()],
            ..v4()
        };
        let IfaceError::NoMatch { attempts } = select(&req).expect_err("bad regex") else {
            panic!("expected NoMatch");
        };
        assert_eq!(attempts.len(), 1);
        assert!(
            attempts[0]
                .starts_with("--iface-regex (: could not compile the IP address regex '(': "),
            "{attempts:?}"
        );

        let req = IfaceRequest {
            iface_regexes: vec!["(".into(), "eth1".into()],
            ..v4()
        };
        assert_eq!(select(&req).expect("second regex").name, "eth1");
    }

    #[test]
    fn dual_stack_regex_needs_both_families_on_one_interface() {
        // Matches eth0's v4 address only; eth1 has both families matching "1".
        let req = IfaceRequest {
            iface_regexes: vec![r"^192\.0\.2\.10$|^2001:db8:1::".into()],
            ..dual()
        };
        // eth0: v4 matches, v6 does not; eth1: v4 does not. No IP match; names do not match.
        let IfaceError::NoMatch { attempts } = select(&req).expect_err("no iface") else {
            panic!("expected NoMatch");
        };
        assert!(
            attempts[0].contains("could not match pattern"),
            "{attempts:?}"
        );

        let req = IfaceRequest {
            iface_regexes: vec![r"^198\.|^2001:db8:1::".into()],
            ..dual()
        };
        let ext = select(&req).expect("eth1 both");
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.10")));
        assert_eq!(ext.iface_v6_addr, Some(ip6("2001:db8:1::10")));
    }

    #[test]
    fn ifaces_before_regexes_before_can_reach() {
        let answer = RouteGetAnswer {
            oif: 2,
            prefsrc: Some("192.0.2.10".parse().expect("ip")),
            gateway: None,
        };
        let req = IfaceRequest {
            ifaces: vec!["eth1".into()],
            iface_regexes: vec!["eth0".into()],
            iface_can_reach: Some("192.0.2.77".parse().expect("ip")),
            ..v4()
        };
        let h = host();
        assert_eq!(
            select_external_interface(&req, &h, Some(answer))
                .expect("iface")
                .name,
            "eth1"
        );
        let req = IfaceRequest {
            ifaces: vec!["nosuch".into()],
            iface_regexes: vec!["eth1".into()],
            ..req
        };
        assert_eq!(
            select_external_interface(&req, &h, Some(answer))
                .expect("regex")
                .name,
            "eth1"
        );
        let req = IfaceRequest {
            iface_regexes: vec!["nosuch".into()],
            ..req
        };
        assert_eq!(
            select_external_interface(&req, &h, Some(answer))
                .expect("can reach")
                .name,
            "eth0"
        );
    }

    #[test]
    fn can_reach_uses_oif_and_prefsrc() {
        let mut h = host();
        h.addrs.push(addr(3, "198.51.100.20"));
        let req = IfaceRequest {
            iface_can_reach: Some("198.51.100.77".parse().expect("ip")),
            ..v4()
        };
        let answer = RouteGetAnswer {
            oif: 3,
            prefsrc: Some("198.51.100.20".parse().expect("ip")),
            gateway: None,
        };
        let ext = select_external_interface(&req, &h, Some(answer)).expect("can reach");
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.20")));

        // No preferred source: the interface's first usable address.
        let answer = RouteGetAnswer {
            oif: 3,
            prefsrc: None,
            gateway: None,
        };
        let ext = select_external_interface(&req, &h, Some(answer)).expect("can reach");
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.10")));
    }

    #[test]
    fn can_reach_failures() {
        let req = IfaceRequest {
            iface_can_reach: Some("198.51.100.77".parse().expect("ip")),
            ..v4()
        };
        let IfaceError::NoMatch { attempts } =
            select_external_interface(&req, &host(), None).expect_err("no answer")
        else {
            panic!("expected NoMatch");
        };
        assert_eq!(
            attempts,
            vec![
                "--iface-can-reach 198.51.100.77: failed to get ifcanreach based interface: \
                  couldn't lookup route to 198.51.100.77"
                    .to_string()
            ]
        );
        let answer = RouteGetAnswer {
            oif: 42,
            prefsrc: None,
            gateway: None,
        };
        let IfaceError::NoMatch { attempts } =
            select_external_interface(&req, &host(), Some(answer)).expect_err("unknown oif")
        else {
            panic!("expected NoMatch");
        };
        assert!(
            attempts[0].ends_with("no network interface with index 42"),
            "{attempts:?}"
        );
    }

    #[test]
    fn public_ip_without_iface_selects_owner() {
        let req = IfaceRequest {
            public_ip: Some(ip4("198.51.100.10")),
            ..v4()
        };
        let ext = select(&req).expect("owner");
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.10")));
        assert_eq!(ext.ext_addr, Some(ip4("198.51.100.10")));
    }

    #[test]
    fn public_ip_without_iface_must_be_local() {
        let req = IfaceRequest {
            public_ip: Some(ip4("203.0.113.99")),
            ..v4()
        };
        let err = select(&req).expect_err("not local");
        assert_eq!(
            err.to_string(),
            "Failed to find any valid interface to use: error looking up interface 203.0.113.99: \
             no interface with given IP found"
        );
    }

    #[test]
    fn public_ip_with_iface_is_only_advertised() {
        let req = IfaceRequest {
            ifaces: vec!["eth0".into()],
            public_ip: Some(ip4("203.0.113.99")),
            ..v4()
        };
        let ext = select(&req).expect("nat");
        assert_eq!(ext.name, "eth0");
        assert_eq!(ext.iface_addr, Some(ip4("192.0.2.10")));
        assert_eq!(ext.ext_addr, Some(ip4("203.0.113.99")));
    }

    #[test]
    fn public_ipv6_ignored_as_lookup_key_in_v4_mode_but_advertised() {
        let req = IfaceRequest {
            public_ipv6: Some(ip6("2001:db8:ffff::1")),
            ..v4()
        };
        let ext = select(&req).expect("default route");
        assert_eq!(ext.name, "eth0");
        assert_eq!(ext.ext_v6_addr, Some(ip6("2001:db8:ffff::1")));
    }

    #[test]
    fn dual_stack_public_ips_must_share_interface() {
        let req = IfaceRequest {
            public_ip: Some(ip4("192.0.2.10")),
            public_ipv6: Some(ip6("2001:db8:1::10")),
            ..dual()
        };
        let err = select(&req).expect_err("mismatch");
        assert_eq!(
            err.to_string(),
            "Failed to find any valid interface to use: v6 interface eth1 must be the same with v4 interface eth0"
        );

        let req = IfaceRequest {
            public_ip: Some(ip4("192.0.2.10")),
            public_ipv6: Some(ip6("2001:db8::10")),
            ..dual()
        };
        let ext = select(&req).expect("same");
        assert_eq!(ext.name, "eth0");
        assert_eq!(ext.iface_v6_addr, Some(ip6("2001:db8::10")));
    }

    #[test]
    fn dual_stack_only_public_ipv6_picks_its_interface() {
        let req = IfaceRequest {
            public_ipv6: Some(ip6("2001:db8:1::10")),
            ..dual()
        };
        let ext = select(&req).expect("v6 owner");
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.10")));
        assert_eq!(ext.iface_v6_addr, Some(ip6("2001:db8:1::10")));
    }

    #[test]
    fn dual_stack_iface_v6_address_without_public_ipv6() {
        let req = IfaceRequest {
            ifaces: vec!["2001:db8:1::10".into()],
            ..dual()
        };
        let ext = select(&req).expect("v6 owner");
        assert_eq!(ext.name, "eth1");
        assert_eq!(ext.iface_addr, Some(ip4("198.51.100.10")));
        assert_eq!(ext.iface_v6_addr, Some(ip6("2001:db8:1::10")));
    }

    #[test]
    fn v6_address_in_v4_mode_is_not_found() {
        let req = IfaceRequest {
            ifaces: vec!["2001:db8::10".into()],
            ..v4()
        };
        let IfaceError::NoMatch { attempts } = select(&req).expect_err("wrong family") else {
            panic!("expected NoMatch");
        };
        assert!(
            attempts[0].ends_with("no interface with given IP found"),
            "{attempts:?}"
        );
    }

    #[test]
    fn zero_mtu_error_text() {
        let req = IfaceRequest {
            ifaces: vec!["wg0".into()],
            ..v4()
        };
        let IfaceError::NoMatch { attempts } = select(&req).expect_err("mtu 0") else {
            panic!("expected NoMatch");
        };
        assert_eq!(
            attempts,
            vec!["--iface wg0: failed to determine MTU for 203.0.113.1 interface".to_string()]
        );
    }

    #[test]
    fn address_preference_order() {
        let mut h = host();
        h.addrs.retain(|a| a.index != 2);
        let mut push = |a: &str, permanent: bool, deprecated: bool, temporary: bool| {
            h.addrs.push(AddrFacts {
                permanent,
                deprecated,
                temporary,
                ..addr(2, a)
            })
        };
        push("169.254.1.1", true, false, false);
        push("10.0.0.2", false, false, false);
        push("10.0.0.1", true, false, true);
        push("10.0.0.4", true, true, false);
        push("127.0.0.2", true, false, false);
        push("224.0.0.9", true, false, false);
        push("10.0.0.3", true, false, false);
        push("10.0.0.5", true, false, false);
        let got = usable_addrs(&h, 2, false);
        let want: Vec<IpAddr> = [
            "10.0.0.3",
            "10.0.0.5",
            "10.0.0.1",
            "10.0.0.2",
            "169.254.1.1",
        ]
        .iter()
        .map(|s| s.parse().expect("ip"))
        .collect();
        assert_eq!(got, want);
        assert_eq!(
            select_external_interface(&v4(), &h, None)
                .expect("default")
                .iface_addr,
            Some(ip4("10.0.0.3"))
        );
    }

    #[test]
    fn link_local_v4_used_when_nothing_else() {
        let mut h = host();
        h.addrs.retain(|a| a.index != 2);
        h.addrs.push(addr(2, "169.254.7.7"));
        let ext = select_external_interface(&v4(), &h, None).expect("link-local");
        assert_eq!(ext.iface_addr, Some(ip4("169.254.7.7")));
    }

    #[test]
    fn default_interface_without_address_error_text() {
        let mut h = host();
        h.addrs.retain(|a| a.index != 2 || a.addr.is_ipv6());
        let err = select_external_interface(&v4(), &h, None).expect_err("no v4");
        assert_eq!(
            err.to_string(),
            "Failed to find any valid interface to use: failed to find IPv4 address for interface eth0"
        );
        let mut h = host();
        h.addrs.retain(|a| {
            a.index != 2 || a.addr.is_ipv4() || a.addr == "fe80::10".parse::<IpAddr>().expect("ip")
        });
        // Link-local v6 is still usable.
        let ext = select_external_interface(&dual(), &h, None).expect("link-local v6");
        assert_eq!(ext.iface_v6_addr, Some(ip6("fe80::10")));
        h.addrs.retain(|a| a.index != 2 || a.addr.is_ipv4());
        let err = select_external_interface(&dual(), &h, None).expect_err("no v6");
        assert_eq!(
            err.to_string(),
            "Failed to find any valid interface to use: failed to find IPv6 address for interface eth0"
        );
    }

    #[test]
    fn go_unicast_classification() {
        let g = |s: &str| is_global_unicast(s.parse().expect("ip"));
        assert!(g("10.1.2.3"));
        assert!(g("192.0.2.1"));
        assert!(!g("127.0.0.1"));
        assert!(!g("0.0.0.0"));
        assert!(!g("255.255.255.255"));
        assert!(!g("239.1.1.1"));
        assert!(!g("169.254.0.1"));
        assert!(g("2001:db8::1"));
        assert!(!g("fe80::1"));
        assert!(!g("febf::1"));
        assert!(g("fec0::1"));
        assert!(!g("ff02::1"));
        assert!(!g("::1"));
        assert!(!g("::"));
        assert!(is_link_local_unicast("febf::1".parse().expect("ip")));
    }
}
