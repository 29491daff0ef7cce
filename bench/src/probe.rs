//! A control for the propagation benchmark: a thread in flanneld's namespace that times, every
//! 20 ms, the same five rtnetlink dumps flanneld's reconcile pass makes (links, addresses, IPv4
//! routes, neighbours, FDB). Some of these take the kernel-wide RTNL lock, which any
//! process on the machine creating or deleting devices or namespaces holds; when a slow
//! propagation sample overlaps a slow probe, the time went to the kernel, not to flanneld.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use flannel_sandbox::netns;

/// Pause between two probes.
const PERIOD: Duration = Duration::from_millis(20);

/// One timed round of dumps: when it started and how long it took.
pub type ProbeSample = (Instant, Duration);

/// The running probe thread.
#[derive(Debug)]
pub struct Probe {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<ProbeSample>>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Probe {
    /// Start probing inside namespace `ns`.
    pub fn start(ns: &str) -> Result<Probe> {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop2, samples2, ns) = (stop.clone(), samples.clone(), ns.to_owned());
        let thread = std::thread::Builder::new()
            .name("rtnl-probe".into())
            .spawn(move || -> Result<()> {
                netns::enter(&ns)?;
                let mut socket = Socket::new(NETLINK_ROUTE).context("opening a netlink socket")?;
                socket.bind_auto().context("binding the probe socket")?;
                let timeout = TimeVal::new(5, 0);
                setsockopt(&socket, sockopt::ReceiveTimeout, &timeout).context("SO_RCVTIMEO")?;
                let mut seq = 0u32;
                while !stop2.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    for req in requests() {
                        seq += 1;
                        dump(&socket, req, seq)?;
                    }
                    samples2
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((started, started.elapsed()));
                    std::thread::sleep(PERIOD);
                }
                Ok(())
            })
            .context("starting the probe thread")?;
        Ok(Probe {
            stop,
            samples,
            thread: Some(thread),
        })
    }

    /// Stop probing and return the samples.
    pub fn stop(mut self) -> Result<Vec<ProbeSample>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow!("the probe thread panicked"))??;
        }
        let samples =
            std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(samples)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn requests() -> [RouteNetlinkMessage; 5] {
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    let mut fdb = NeighbourMessage::default();
    fdb.header.family = AddressFamily::Bridge;
    [
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        RouteNetlinkMessage::GetRoute(route),
        RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        RouteNetlinkMessage::GetNeighbour(fdb),
    ]
}

/// Send one dump request and read until its `NLMSG_DONE`.
fn dump(socket: &Socket, req: RouteNetlinkMessage, seq: u32) -> Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(req));
    msg.finalize();
    let mut out = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut out);
    socket.send(&out, 0).context("sending a dump request")?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let mut slice: &mut [u8] = &mut buf[..];
        let n = socket.recv(&mut slice, 0).context("reading a dump")?;
        let mut rest = &buf[..n.min(buf.len())];
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len < 16 || len > rest.len() {
                break;
            }
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            let msg_seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
            if msg_seq == seq {
                match kind {
                    // NLMSG_DONE
                    3 => return Ok(()),
                    // NLMSG_ERROR
                    2 => bail!("a dump request failed"),
                    _ => {}
                }
            }
            rest = &rest[((len + 3) & !3).min(rest.len())..];
        }
    }
}

/// How many of the slow windows (`[from, to]`) overlap a probe that took longer than `slow`.
pub fn overlapping(
    windows: &[(Instant, Instant)],
    probes: &[ProbeSample],
    slow: Duration,
) -> usize {
    windows
        .iter()
        .filter(|(from, to)| {
            probes
                .iter()
                .any(|(start, took)| *took > slow && *start <= *to && *start + *took >= *from)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_counts_windows_that_share_time_with_a_slow_probe() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let probes = vec![(t, ms(2)), (t + ms(100), ms(50)), (t + ms(300), ms(1))];
        let windows = vec![
            (t + ms(120), t + ms(130)), // inside the slow probe
            (t + ms(90), t + ms(101)),  // overlaps its start
            (t + ms(10), t + ms(20)),   // only fast probes around
            (t + ms(299), t + ms(310)), // overlaps a fast probe
        ];
        assert_eq!(overlapping(&windows, &probes, ms(10)), 2);
        assert_eq!(overlapping(&windows, &probes, ms(60)), 0);
    }
}
