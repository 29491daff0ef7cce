//! The peer table of a userspace device: each peer's configuration and its boringtun tunnel,
//! found by public key (configuration), by session index (incoming data), and by allowed IP
//! (outgoing packets, and checking an incoming packet's source).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use boringtun::noise::Tunn;
use boringtun::x25519::{PublicKey, StaticSecret};
use flannel_model::WgKey;
use flannel_planner::wireguard::{DeviceConfig, DeviceOp, WgPeer};
use ipnet::IpNet;

/// One peer: its configuration and its tunnel.
pub struct Peer {
    /// As configured.
    pub cfg: WgPeer,
    /// The index boringtun puts in the top 24 bits of our session indices.
    pub index: u32,
    /// The protocol state.
    pub tunn: Mutex<Tunn>,
    /// Where its packets go (the configured endpoint; updated when it roams).
    pub endpoint: Mutex<Option<SocketAddr>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("cfg", &self.cfg)
            .field("index", &self.index)
            .finish()
    }
}

impl Peer {
    /// Whether `src` is inside this peer's allowed IPs.
    pub fn allows(&self, src: IpAddr) -> bool {
        self.cfg.allowed_ips.iter().any(|n| n.contains(&src))
    }
}

/// The device's peers.
pub struct PeerTable {
    private: StaticSecret,
    public: PublicKey,
    listen_port: u16,
    by_key: BTreeMap<WgKey, Arc<Peer>>,
    by_index: BTreeMap<u32, Arc<Peer>>,
    next_index: u32,
}

impl std::fmt::Debug for PeerTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTable")
            .field("public", &WgKey(self.public.to_bytes()))
            .field("listen_port", &self.listen_port)
            .field("peers", &self.by_key.len())
            .finish()
    }
}

impl PeerTable {
    /// An empty table for a device with this private key and port.
    pub fn new(private_key: [u8; 32], listen_port: u16) -> PeerTable {
        let private = StaticSecret::from(private_key);
        let public = PublicKey::from(&private);
        PeerTable {
            private,
            public,
            listen_port,
            by_key: BTreeMap::new(),
            by_index: BTreeMap::new(),
            next_index: 1,
        }
    }

    /// Our static keys (for answering handshake initiations from unknown senders).
    pub fn static_keys(&self) -> (&StaticSecret, &PublicKey) {
        (&self.private, &self.public)
    }

    /// The device as `wg show` would describe it.
    pub fn config(&self, name: &str) -> DeviceConfig {
        DeviceConfig {
            name: name.to_owned(),
            public_key: Some(WgKey(self.public.to_bytes())),
            listen_port: self.listen_port,
            peers: self
                .by_key
                .iter()
                .map(|(k, p)| (*k, p.cfg.clone()))
                .collect(),
        }
    }

    /// Carry out the planner's ops. The key and port are fixed when the device opens (a
    /// `SetDevice` only confirms them); a changed peer gets a fresh tunnel (a new handshake).
    pub fn apply(&mut self, ops: &[DeviceOp]) {
        for op in ops {
            match op {
                DeviceOp::SetDevice { .. } => {}
                DeviceOp::RemovePeer(k) => {
                    if let Some(p) = self.by_key.remove(k) {
                        self.by_index.remove(&p.index);
                    }
                }
                DeviceOp::SetPeer(cfg) => {
                    if let Some(old) = self.by_key.remove(&cfg.public_key) {
                        self.by_index.remove(&old.index);
                    }
                    let index = self.next_index;
                    // 24 bits of index; wrapping after 16 million reconfigurations is harmless
                    // (the old peer entries are gone by then).
                    self.next_index = (self.next_index + 1) & 0x00ff_ffff;
                    let tunn = Tunn::new(
                        self.private.clone(),
                        PublicKey::from(cfg.public_key.0),
                        cfg.psk.map(|k| k.0),
                        (cfg.keepalive > 0).then_some(cfg.keepalive),
                        index,
                        None,
                    );
                    let peer = Arc::new(Peer {
                        cfg: cfg.clone(),
                        index,
                        tunn: Mutex::new(tunn),
                        endpoint: Mutex::new(cfg.endpoint),
                    });
                    self.by_index.insert(index, Arc::clone(&peer));
                    self.by_key.insert(cfg.public_key, peer);
                }
            }
        }
    }

    /// The peer whose allowed IPs hold `dst` (longest prefix wins).
    pub fn route(&self, dst: IpAddr) -> Option<Arc<Peer>> {
        self.by_key
            .values()
            .filter_map(|p| {
                p.cfg
                    .allowed_ips
                    .iter()
                    .filter(|n| n.contains(&dst))
                    .map(IpNet::prefix_len)
                    .max()
                    .map(|len| (len, p))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, p)| Arc::clone(p))
    }

    /// The peer a session index (the receiver index of a response, cookie or data message)
    /// belongs to.
    pub fn by_session(&self, receiver_idx: u32) -> Option<Arc<Peer>> {
        self.by_index.get(&(receiver_idx >> 8)).cloned()
    }

    /// The peer with this public key.
    pub fn by_key(&self, key: &WgKey) -> Option<Arc<Peer>> {
        self.by_key.get(key).cloned()
    }

    /// Every peer (for the timers).
    pub fn all(&self) -> Vec<Arc<Peer>> {
        self.by_key.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn peer(k: u8, nets: &[&str]) -> WgPeer {
        WgPeer {
            public_key: WgKey([k; 32]),
            endpoint: Some(SocketAddr::new(IpAddr::from([192, 0, 2, k]), 51820)),
            allowed_ips: nets
                .iter()
                .map(|n| n.parse().expect("net"))
                .collect::<BTreeSet<_>>(),
            keepalive: 0,
            psk: None,
        }
    }

    #[test]
    fn ops_change_the_table_and_config_reads_them_back() {
        let mut t = PeerTable::new([1; 32], 51820);
        t.apply(&[
            DeviceOp::SetPeer(peer(2, &["198.18.2.0/24"])),
            DeviceOp::SetPeer(peer(3, &["198.18.0.0/16"])),
        ]);
        let cfg = t.config("flannel-wg");
        assert_eq!(cfg.peers.len(), 2);
        assert_eq!(cfg.listen_port, 51820);
        // Longest prefix wins.
        let dst = IpAddr::from([198, 18, 2, 9]);
        assert_eq!(t.route(dst).map(|p| p.cfg.public_key), Some(WgKey([2; 32])));
        let other = IpAddr::from([198, 18, 7, 9]);
        assert_eq!(
            t.route(other).map(|p| p.cfg.public_key),
            Some(WgKey([3; 32]))
        );
        assert!(t.route(IpAddr::from([203, 0, 113, 1])).is_none());
        let idx = t.by_key(&WgKey([2; 32])).expect("peer").index;
        assert!(t.by_session(idx << 8 | 5).is_some());
        t.apply(&[DeviceOp::RemovePeer(WgKey([2; 32]))]);
        assert!(t.by_session(idx << 8).is_none());
        assert_eq!(t.route(dst).map(|p| p.cfg.public_key), Some(WgKey([3; 32])));
        // A re-set peer gets a new index (a fresh tunnel).
        t.apply(&[DeviceOp::SetPeer(peer(3, &["198.18.3.0/24"]))]);
        assert!(t.route(other).is_none());
        assert_eq!(t.all().len(), 1);
    }
}
