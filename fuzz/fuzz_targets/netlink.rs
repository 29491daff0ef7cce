//! rtnetlink messages from the kernel: bytes parsed by netlink-packet-route as the daemon's
//! sockets parse them, then every decoder of flannel-kernel ([`flannel_kernel::fuzzing`]: the
//! observer's dump decoding, the monitor's events, the on-demand miss listener).
//!
//! Checks: no panic; the decoders agree on the same message, for messages the kernel can send
//! (each attribute at most once): a removed route, address, neighbour or FDB entry is reported
//! by the monitor as the same object the observer reads from it (so a reconcile repairs what
//! the event named); a blackhole is one for both; an entry is never both learned and
//! permanent; a managed link keeps the cached name.
#![no_main]

use std::collections::HashMap;
use std::mem::discriminant;

use flannel_kernel::fuzzing::decode;
use flannel_kernel::KernelEvent;
use libfuzzer_sys::fuzz_target;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::route::RouteAttribute;
use netlink_packet_route::RouteNetlinkMessage as M;

/// Each attribute kind at most once (the kernel never repeats one in these messages).
fn unique<T>(attrs: &[T]) -> bool {
    attrs.iter().enumerate().all(|(i, a)| {
        attrs[..i]
            .iter()
            .all(|b| discriminant(a) != discriminant(b))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = NetlinkMessage::<M>::deserialize(data) else {
        return;
    };
    // The devices of the namespace the seeds come from (fuzz/capture_netlink_seeds.py).
    let mut names: HashMap<u32, String> = [(1, "lo"), (2, "veth1"), (3, "veth0"), (4, "flannel.1")]
        .into_iter()
        .map(|(i, n)| (i, n.to_string()))
        .collect();
    let before = names.clone();
    let d = decode(&msg, &mut names);
    assert!(!(d.neigh.is_some() && d.learned_neigh.is_some()), "{d:?}");
    assert!(!(d.fdb.is_some() && d.learned_fdb.is_some()), "{d:?}");

    let NetlinkPayload::InnerMessage(inner) = &msg.payload else {
        return;
    };
    match inner {
        M::NewLink(l) | M::DelLink(l) | M::GetLink(l) | M::SetLink(l) => {
            if let Some(link) = &d.link {
                assert_eq!(
                    Some(link.name()),
                    before.get(&l.header.index).map(String::as_str)
                );
            }
        }
        M::DelRoute(r) if unique(&r.attributes) => {
            let via = r
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Via(_)));
            let event_blackhole = match &d.event {
                Some(KernelEvent::BlackholeRemoved { dst }) => Some(*dst),
                _ => None,
            };
            assert_eq!(event_blackhole, d.blackhole, "{d:?}");
            if let Some(route) = &d.route {
                let Some(KernelEvent::RouteRemoved { dst, gateway, dev }) = &d.event else {
                    panic!("observed {route:?} but the monitor reports {:?}", d.event);
                };
                assert_eq!(*dst, route.dst);
                assert_eq!(dev.as_ref(), Some(&route.dev));
                if !via {
                    assert_eq!(*gateway, route.gateway);
                }
            }
        }
        M::DelAddress(a) if unique(&a.attributes) => {
            if let Some(addr) = &d.addr {
                assert_eq!(
                    d.event,
                    Some(KernelEvent::AddrRemoved {
                        dev: Some(addr.dev.clone()),
                        net: addr.net
                    })
                );
            }
        }
        M::DelNeighbour(n) if unique(&n.attributes) => {
            if let Some(neigh) = &d.neigh {
                assert_eq!(
                    d.event,
                    Some(KernelEvent::NeighRemoved {
                        dev: Some(neigh.dev.clone()),
                        ip: neigh.ip
                    })
                );
            }
            if let Some(fdb) = &d.fdb {
                assert_eq!(
                    d.event,
                    Some(KernelEvent::FdbRemoved {
                        dev: Some(fdb.dev.clone()),
                        mac: fdb.mac,
                        dst: Some(fdb.dst),
                    })
                );
            }
        }
        _ => {}
    }
});
