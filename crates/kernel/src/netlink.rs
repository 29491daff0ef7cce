//! [`Kernel`]: the long-lived rtnetlink connection flanneld programs the kernel through, and
//! the three request shapes the observer and applier use on it: dumps, single lookups, and
//! batches of acknowledged changes.
//!
//! Changes are sent in batches: many netlink messages in one `sendmsg`, each with `NLM_F_ACK`.
//! The kernel handles the messages of one datagram in order and answers each with exactly one
//! `NLMSG_ERROR` (errno 0 for success), so the n-th answer belongs to the n-th message. The
//! connection therefore forwards acknowledgements to the caller (`set_forward_ack`), which
//! also lets a request whose connection died be reported instead of counted as done.

use std::net::IpAddr;

use futures_util::StreamExt;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_proto::ConnectionHandle;
use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, SocketAddr};
use tokio::task::JoinHandle;

use crate::error::{source_errno, KernelError};
use crate::iface::{route_get, IfaceError, RouteGetAnswer};

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`, then doubles it).
/// Acknowledgements of one batch wait here until the connection task reads them.
const RX_BUF_BYTES: usize = 1 << 20;

/// How often a dump the kernel marked inconsistent (`NLM_F_DUMP_INTR`: the table changed
/// while it was being read) is tried again before its result is used as it is.
const DUMP_ATTEMPTS: usize = 3;

/// One rtnetlink connection, spawned on the current tokio runtime, used for every
/// observation and change. Cheap to share by reference; dropping it closes the sockets.
pub struct Kernel {
    /// Acknowledged changes, dumps and lookups (acks forwarded, see the module docs).
    conn: ConnectionHandle<RouteNetlinkMessage>,
    /// A plain rtnetlink handle on its own socket for the `iface` queries.
    rtnl: rtnetlink::Handle,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").finish_non_exhaustive()
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Kernel {
    /// Open the connection. Must be called inside a tokio runtime (the socket tasks are
    /// spawned on it); the network namespace is the calling thread's.
    pub fn connect() -> Result<Kernel, KernelError> {
        let (mut conn, handle, _unsolicited) =
            netlink_proto::new_connection::<RouteNetlinkMessage>(NETLINK_ROUTE)
                .map_err(KernelError::Connect)?;
        conn.set_forward_ack(true);
        let sock = conn.socket_mut().socket_mut();
        sock.set_rx_buf_sz(RX_BUF_BYTES)
            .map_err(KernelError::Connect)?;
        // Error answers carry only the request's header, not the whole request.
        sock.set_cap_ack(true).map_err(KernelError::Connect)?;
        let (rtnl_conn, rtnl, _) = rtnetlink::new_connection().map_err(KernelError::Connect)?;
        let tasks = vec![tokio::spawn(conn), tokio::spawn(rtnl_conn)];
        Ok(Kernel {
            conn: handle,
            rtnl,
            tasks,
        })
    }

    /// A plain rtnetlink handle (its own socket) for queries such as
    /// [`crate::iface::gather_host_interfaces`]; rtnetlink's request builders work on it.
    pub fn rtnetlink(&self) -> &rtnetlink::Handle {
        &self.rtnl
    }

    /// `ip route get <dst>`: which interface the kernel would use (for DirectRouting).
    pub async fn route_get(&self, dst: IpAddr) -> Result<RouteGetAnswer, IfaceError> {
        route_get(&self.rtnl, dst).await
    }

    /// Every message of a dump. Retries (a few times) when the kernel says the dump was
    /// interrupted by a concurrent change.
    pub(crate) async fn dump(
        &self,
        what: &'static str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        let mut attempt = 1;
        loop {
            let (out, interrupted) = self
                .dump_once(msg.clone())
                .await
                .map_err(|source| KernelError::Dump { what, source })?;
            if !interrupted || attempt >= DUMP_ATTEMPTS {
                if interrupted {
                    tracing::warn!(what, "dump was interrupted and may be inconsistent");
                }
                return Ok(out);
            }
            attempt += 1;
        }
    }

    async fn dump_once(
        &self,
        msg: RouteNetlinkMessage,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool), rtnetlink::Error> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut answers = self
            .conn
            .request(req, SocketAddr::new(0, 0))
            .map_err(|_| rtnetlink::Error::RequestFailed)?;
        let mut out = Vec::new();
        let mut interrupted = false;
        while let Some(m) = answers.next().await {
            interrupted |= m.header.flags & NLM_F_DUMP_INTR != 0;
            match m.payload {
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(rtnetlink::Error::NetlinkError(e))
                }
                NetlinkPayload::Error(_) | NetlinkPayload::Done(_) | NetlinkPayload::Noop => {}
                other => {
                    return Err(rtnetlink::Error::UnexpectedMessage(NetlinkMessage::new(
                        m.header, other,
                    )))
                }
            }
        }
        Ok((out, interrupted))
    }

    /// `ip link show dev <name>`: the link, or `None` when there is no such device.
    pub(crate) async fn get_link(&self, name: &str) -> Result<Option<LinkMessage>, KernelError> {
        self.get_link_raw(name)
            .await
            .map_err(|source| KernelError::LinkLookup {
                name: name.to_owned(),
                source,
            })
    }

    /// [`Kernel::get_link`] with the bare (cloneable) rtnetlink error.
    pub(crate) async fn get_link_raw(
        &self,
        name: &str,
    ) -> Result<Option<LinkMessage>, rtnetlink::Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetLink(msg));
        req.header.flags = NLM_F_REQUEST;
        let mut answers = self
            .conn
            .request(req, SocketAddr::new(0, 0))
            .map_err(|_| rtnetlink::Error::RequestFailed)?;
        while let Some(m) = answers.next().await {
            match m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    return Ok(Some(link))
                }
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    let err = rtnetlink::Error::NetlinkError(e);
                    return match source_errno(&err) {
                        Some(libc::ENODEV) => Ok(None),
                        _ => Err(err),
                    };
                }
                _ => {}
            }
        }
        Err(rtnetlink::Error::RequestFailed)
    }

    /// The ifindex of `name`, or `None` when there is no such device.
    pub(crate) async fn link_index(&self, name: &str) -> Result<Option<u32>, KernelError> {
        Ok(self.get_link(name).await?.map(|l| l.header.index))
    }

    /// Send `msgs` (each with its extra `NLM_F_*` flags) in one datagram and return one
    /// result per message, in order. Messages the kernel did not answer (the connection
    /// closed) get `RequestFailed`.
    pub(crate) async fn batch(
        &self,
        msgs: Vec<(RouteNetlinkMessage, u16)>,
    ) -> Vec<Result<(), rtnetlink::Error>> {
        let n = msgs.len();
        let reqs = msgs.into_iter().map(|(m, flags)| {
            let mut req = NetlinkMessage::from(m);
            req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
            req
        });
        let mut results = Vec::with_capacity(n);
        if let Ok(mut answers) = self.conn.request_batch(reqs, SocketAddr::new(0, 0)) {
            // One NLMSG_ERROR per message, in message order (see the module docs).
            while let Some(m) = answers.next().await {
                if let NetlinkPayload::Error(e) = m.payload {
                    results.push(match e.code {
                        None => Ok(()),
                        Some(_) => Err(rtnetlink::Error::NetlinkError(e)),
                    });
                }
            }
        }
        results.truncate(n);
        results.resize_with(n, || Err(rtnetlink::Error::RequestFailed));
        results
    }

    /// One acknowledged change.
    pub(crate) async fn ack(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), rtnetlink::Error> {
        self.batch(vec![(msg, flags)])
            .await
            .pop()
            .unwrap_or(Err(rtnetlink::Error::RequestFailed))
    }
}
