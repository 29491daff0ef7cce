//! The devices flanneld creates, as plain data: [`LinkSpec`], one variant per link kind.
//!
//! Each kind says when an existing device can be kept (only its MTU, MAC and state adjusted)
//! and when it must be deleted and created again; the kernel crate keeps each kind's netlink
//! encoding and decoding in a file of its own (`flannel_kernel::link::<kind>`), the way
//! rtnetlink keeps one builder per link kind. A new kind (wireguard, xfrm) is one variant
//! here, one struct with its `compatible_with`, and one file there.

use std::net::{IpAddr, Ipv4Addr};

use flannel_model::backend_data::MacAddr;

/// A device flanneld wants (or found), by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSpec {
    /// `ip link add … type vxlan …`.
    Vxlan(VxlanLink),
    /// `ip link add … type ipip …`.
    Ipip(IpipLink),
    /// `ip link add … type wireguard` (key and peers are set over generic netlink).
    Wireguard(WireguardLink),
}

impl LinkSpec {
    /// The device name.
    pub fn name(&self) -> &str {
        match self {
            LinkSpec::Vxlan(l) => &l.name,
            LinkSpec::Ipip(l) => &l.name,
            LinkSpec::Wireguard(l) => &l.name,
        }
    }

    /// The link kind as `ip link` names it (`vxlan`, `ipip`).
    pub fn kind(&self) -> &'static str {
        match self {
            LinkSpec::Vxlan(_) => "vxlan",
            LinkSpec::Ipip(_) => "ipip",
            LinkSpec::Wireguard(_) => "wireguard",
        }
    }

    /// The device MTU.
    pub fn mtu(&self) -> u32 {
        match self {
            LinkSpec::Vxlan(l) => l.mtu,
            LinkSpec::Ipip(l) => l.mtu,
            LinkSpec::Wireguard(l) => l.mtu,
        }
    }

    /// The device's hardware address, for kinds that have one.
    pub fn mac(&self) -> Option<MacAddr> {
        match self {
            LinkSpec::Vxlan(l) => Some(l.mac),
            LinkSpec::Ipip(_) => None,
            LinkSpec::Wireguard(_) => None,
        }
    }

    /// Administratively up.
    pub fn up(&self) -> bool {
        match self {
            LinkSpec::Vxlan(l) => l.up,
            LinkSpec::Ipip(l) => l.up,
            LinkSpec::Wireguard(l) => l.up,
        }
    }

    /// True when the `observed` device can be kept and only its MTU/MAC/state adjusted; false
    /// means it must be deleted and created again (another kind, or settings the kernel cannot
    /// change in place).
    pub fn compatible_with(&self, observed: &LinkSpec) -> bool {
        match (self, observed) {
            (LinkSpec::Vxlan(want), LinkSpec::Vxlan(have)) => want.compatible_with(have),
            (LinkSpec::Ipip(want), LinkSpec::Ipip(have)) => want.compatible_with(have),
            // A wireguard link has no settings fixed at creation: key, port and peers are
            // set on the live device.
            (LinkSpec::Wireguard(_), LinkSpec::Wireguard(_)) => true,
            _ => false,
        }
    }

    /// True when a device of this name but of another kind must be left alone and reported
    /// instead of replaced (Flannel refuses to delete a user's device named `flannel.ipip`;
    /// a vxlan device in the way is replaced).
    pub fn refuses_foreign(&self) -> bool {
        matches!(self, LinkSpec::Ipip(_))
    }

    /// True when a compatible `observed` device differs in what an update sets (MTU, MAC, up).
    pub fn needs_update(&self, observed: &LinkSpec) -> bool {
        observed.mtu() != self.mtu() || observed.mac() != self.mac() || !observed.up()
    }

    /// The vxlan settings, when this is a vxlan device.
    pub fn as_vxlan(&self) -> Option<&VxlanLink> {
        match self {
            LinkSpec::Vxlan(l) => Some(l),
            _ => None,
        }
    }

    /// The vxlan settings, mutable (tests and fixtures adjust them).
    pub fn as_vxlan_mut(&mut self) -> Option<&mut VxlanLink> {
        match self {
            LinkSpec::Vxlan(l) => Some(l),
            _ => None,
        }
    }
}

impl From<VxlanLink> for LinkSpec {
    fn from(l: VxlanLink) -> Self {
        LinkSpec::Vxlan(l)
    }
}

impl From<IpipLink> for LinkSpec {
    fn from(l: IpipLink) -> Self {
        LinkSpec::Ipip(l)
    }
}

/// An IP-in-IP tunnel as flanneld wants it (`ip link add flannel.ipip type ipip local <addr>`):
/// any remote, so one device carries the traffic of every peer (the route's gateway names
/// the outer destination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipLink {
    pub name: String,
    /// Outer source address (`local`): the external interface's address.
    pub local: Ipv4Addr,
    /// Outer destination (`remote`); `0.0.0.0` is `any`.
    pub remote: Ipv4Addr,
    pub mtu: u32,
    /// Administratively up (desired: always).
    pub up: bool,
}

impl From<WireguardLink> for LinkSpec {
    fn from(l: WireguardLink) -> Self {
        LinkSpec::Wireguard(l)
    }
}

/// A wireguard device as flanneld wants it (`ip link add flannel-wg mtu 1440 type wireguard`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardLink {
    pub name: String,
    pub mtu: u32,
    /// Administratively up (desired: always).
    pub up: bool,
}

impl IpipLink {
    /// True when an existing device can be kept: same `local`, remote `any` (Flannel
    /// re-creates the device otherwise).
    pub fn compatible_with(&self, observed: &IpipLink) -> bool {
        self.local == observed.local && self.remote == observed.remote
    }
}

/// A vxlan device as flanneld wants it (`ip link add flannel.1 type vxlan …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanLink {
    pub name: String,
    pub vni: u32,
    /// ifindex of the underlay device (`dev`).
    pub underlay_index: u32,
    /// Underlay source address (`local`).
    pub local: IpAddr,
    /// UDP destination port; 0 lets the kernel use its default (8472).
    pub port: u16,
    pub gbp: bool,
    pub learning: bool,
    /// Kernel miss notifications (the on-demand vxlan mode).
    pub l2miss: bool,
    pub l3miss: bool,
    pub mtu: u32,
    pub mac: MacAddr,
    /// Administratively up (desired: always).
    pub up: bool,
}

impl VxlanLink {
    /// True when an existing device can be kept and only its MTU/MAC adjusted; false means it
    /// must be deleted and created again (Flannel's `vxlanLinksIncompat`).
    pub fn compatible_with(&self, observed: &VxlanLink) -> bool {
        self.vni == observed.vni
            && self.underlay_index == observed.underlay_index
            && self.local == observed.local
            && effective_port(self.port) == effective_port(observed.port)
            && self.gbp == observed.gbp
            && self.learning == observed.learning
            && self.l2miss == observed.l2miss
            && self.l3miss == observed.l3miss
    }
}

/// The kernel's default vxlan port when none is given.
pub const DEFAULT_VXLAN_PORT: u16 = 8472;

fn effective_port(port: u16) -> u16 {
    if port == 0 {
        DEFAULT_VXLAN_PORT
    } else {
        port
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn vxlan() -> VxlanLink {
        VxlanLink {
            name: "flannel.1".into(),
            vni: 1,
            underlay_index: 2,
            local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            port: 0,
            gbp: false,
            learning: false,
            l2miss: false,
            l3miss: false,
            mtu: 1450,
            mac: MacAddr([0x0e, 0, 0, 0, 0, 1]),
            up: true,
        }
    }

    #[test]
    fn vxlan_compatibility_ignores_what_an_update_sets() {
        let want = LinkSpec::from(vxlan());
        let mut have = vxlan();
        have.mtu = 1400;
        have.mac = MacAddr([0x0e, 9, 9, 9, 9, 9]);
        have.up = false;
        have.port = DEFAULT_VXLAN_PORT;
        let have = LinkSpec::from(have);
        assert!(want.compatible_with(&have), "port 0 is the kernel's 8472");
        assert!(want.needs_update(&have));
        assert!(!want.needs_update(&want));
        for change in [
            |l: &mut VxlanLink| l.vni = 7,
            |l: &mut VxlanLink| l.underlay_index = 3,
            |l: &mut VxlanLink| l.local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)),
            |l: &mut VxlanLink| l.port = 4789,
            |l: &mut VxlanLink| l.gbp = true,
            |l: &mut VxlanLink| l.learning = true,
            |l: &mut VxlanLink| l.l2miss = true,
            |l: &mut VxlanLink| l.l3miss = true,
        ] {
            let mut other = vxlan();
            change(&mut other);
            assert!(!want.compatible_with(&LinkSpec::from(other)));
        }
        assert_eq!(
            (want.name(), want.kind(), want.mtu()),
            ("flannel.1", "vxlan", 1450)
        );
        assert!(!want.refuses_foreign());
    }

    fn ipip() -> IpipLink {
        IpipLink {
            name: "flannel.ipip".into(),
            local: Ipv4Addr::new(192, 0, 2, 1),
            remote: Ipv4Addr::UNSPECIFIED,
            mtu: 1480,
            up: true,
        }
    }

    #[test]
    fn ipip_is_recreated_only_for_another_local_or_a_remote() {
        let want = LinkSpec::from(ipip());
        let mut have = ipip();
        have.mtu = 1500;
        have.up = false;
        let have = LinkSpec::from(have);
        assert!(want.compatible_with(&have));
        assert!(want.needs_update(&have));
        assert!(!want.needs_update(&want));
        assert_eq!(want.mac(), None);
        for change in [
            |l: &mut IpipLink| l.local = Ipv4Addr::new(192, 0, 2, 9),
            |l: &mut IpipLink| l.remote = Ipv4Addr::new(192, 0, 2, 2),
        ] {
            let mut other = ipip();
            change(&mut other);
            assert!(!want.compatible_with(&LinkSpec::from(other)));
        }
        assert!(!want.compatible_with(&LinkSpec::from(vxlan())));
        assert!(!LinkSpec::from(vxlan()).compatible_with(&want));
        assert!(want.refuses_foreign());
        assert_eq!(
            (want.name(), want.kind(), want.mtu(), want.as_vxlan()),
            ("flannel.ipip", "ipip", 1480, None)
        );
    }
}
