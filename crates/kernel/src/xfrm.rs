//! XFRM (IPsec) policies and SAs over `NETLINK_XFRM`, for the ipsec backend: the messages for
//! the planner's [`Policy`] and [`Sa`] (pure, golden-tested), their decoding from dumps, and
//! [`Xfrm`], the connection that dumps, updates and deletes them.
//!
//! A policy is written as Flannel's netlink library writes it: selector `src`/`dst` with
//! prefix lengths (any protocol, any port), infinite lifetimes, priority 0, action allow, one
//! template (ESP, tunnel mode, the outer addresses, reqid, every algorithm allowed).

use std::net::{IpAddr, Ipv4Addr};

use futures_util::StreamExt;
use ipnet::Ipv4Net;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_xfrm::policy::{DelGetMessage as PolicyId, ModifyMessage as PolicyInfo};
use netlink_packet_xfrm::state::{
    DelGetMessage as SaIdMessage, GetDumpMessage, ModifyMessage as SaInfo,
};
use netlink_packet_xfrm::{
    Address, Selector, UserPolicyId, UserPolicyInfo, UserSaId, UserTemplate, XfrmAttrs,
    XfrmMessage, AF_INET, IPPROTO_ESP, XFRM_MODE_TUNNEL, XFRM_POLICY_FWD, XFRM_POLICY_IN,
    XFRM_POLICY_OUT,
};
use netlink_proto::ConnectionHandle;
use netlink_sys::{protocols::NETLINK_XFRM, SocketAddr};
use tokio::task::JoinHandle;

use flannel_planner::ipsec::{Dir, Policy, Sa};

/// What went wrong talking XFRM netlink.
#[derive(Debug, thiserror::Error)]
pub enum XfrmError {
    /// The socket could not be opened.
    #[error("opening an xfrm netlink socket: {0}")]
    Connect(std::io::Error),
    /// The connection is gone.
    #[error("`{cmd}`: the xfrm netlink connection closed")]
    Closed {
        /// The equivalent `ip xfrm` command.
        cmd: String,
    },
    /// The kernel refused.
    #[error("`{cmd}`: {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// The equivalent `ip xfrm` command.
        cmd: String,
        /// The positive errno.
        errno: i32,
    },
}

impl XfrmError {
    /// "Not there" (`ENOENT`, `ESRCH`): success for a delete.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            XfrmError::Kernel { errno, .. } if *errno == libc::ENOENT || *errno == libc::ESRCH
        )
    }
}

fn dir_code(dir: Dir) -> u8 {
    match dir {
        Dir::In => XFRM_POLICY_IN,
        Dir::Out => XFRM_POLICY_OUT,
        Dir::Fwd => XFRM_POLICY_FWD,
    }
}

fn selector(p: &Policy) -> Selector {
    let mut sel = Selector::default();
    sel.source_prefix(&IpAddr::V4(p.src.network()), p.src.prefix_len());
    sel.destination_prefix(&IpAddr::V4(p.dst.network()), p.dst.prefix_len());
    // A 0.0.0.0/0 side still names the family.
    sel.family = AF_INET;
    sel
}

/// `ip xfrm policy update …`: add the policy or replace the one with its key.
pub fn update_policy_msg(p: &Policy) -> XfrmMessage {
    let mut tmpl = UserTemplate::default();
    tmpl.source(&IpAddr::V4(p.tmpl_src));
    tmpl.destination(&IpAddr::V4(p.tmpl_dst));
    tmpl.protocol(IPPROTO_ESP);
    tmpl.mode(XFRM_MODE_TUNNEL);
    tmpl.reqid(p.reqid);
    XfrmMessage::UpdatePolicy(PolicyInfo {
        user_policy_info: UserPolicyInfo {
            selector: selector(p),
            direction: dir_code(p.dir),
            ..UserPolicyInfo::default()
        },
        nlas: vec![XfrmAttrs::Template(vec![tmpl])],
    })
}

/// `ip xfrm policy delete …`: by direction and selector.
pub fn delete_policy_msg(p: &Policy) -> XfrmMessage {
    XfrmMessage::DeletePolicy(PolicyId {
        user_policy_id: UserPolicyId {
            selector: selector(p),
            index: 0,
            direction: dir_code(p.dir),
        },
        nlas: Vec::new(),
    })
}

/// `ip xfrm state delete …`: by destination, SPI and protocol.
pub fn delete_sa_msg(sa: &Sa) -> XfrmMessage {
    let mut id = UserSaId {
        spi: sa.spi,
        proto: IPPROTO_ESP,
        ..UserSaId::default()
    };
    id.destination(&IpAddr::V4(sa.dst));
    id.family = AF_INET;
    XfrmMessage::DeleteSa(SaIdMessage {
        user_sa_id: id,
        nlas: Vec::new(),
    })
}

fn v4(a: &Address) -> Ipv4Addr {
    a.to_ipv4()
}

/// A dumped policy as the planner sees it, when it is one the ipsec backend could have
/// written: IPv4, one ESP tunnel template. Others (`None`) are never touched.
pub fn decode_policy(m: &PolicyInfo) -> Option<Policy> {
    let info = &m.user_policy_info;
    let sel = &info.selector;
    if sel.family != AF_INET {
        return None;
    }
    let dir = match info.direction {
        XFRM_POLICY_IN => Dir::In,
        XFRM_POLICY_OUT => Dir::Out,
        XFRM_POLICY_FWD => Dir::Fwd,
        _ => return None,
    };
    let tmpls: Vec<&UserTemplate> = m
        .nlas
        .iter()
        .filter_map(|a| match a {
            XfrmAttrs::Template(t) => Some(t),
            _ => None,
        })
        .flatten()
        .collect();
    let [t] = tmpls.as_slice() else {
        return None;
    };
    if t.family != AF_INET || t.id.proto != IPPROTO_ESP || t.mode != XFRM_MODE_TUNNEL {
        return None;
    }
    Some(Policy {
        dir,
        src: Ipv4Net::new(v4(&sel.saddr), sel.prefixlen_s).ok()?.trunc(),
        dst: Ipv4Net::new(v4(&sel.daddr), sel.prefixlen_d).ok()?.trunc(),
        tmpl_src: v4(&t.saddr),
        tmpl_dst: v4(&t.id.daddr),
        reqid: t.reqid,
    })
}

/// A dumped SA, when it is an IPv4 ESP one.
pub fn decode_sa(m: &SaInfo) -> Option<Sa> {
    let info = &m.user_sa_info;
    if info.family != AF_INET || info.id.proto != IPPROTO_ESP {
        return None;
    }
    Some(Sa {
        src: v4(&info.saddr),
        dst: v4(&info.id.daddr),
        spi: info.id.spi,
        reqid: info.reqid,
    })
}

/// The `ip xfrm state` text of an SA (for errors and logs).
pub fn sa_text(sa: &Sa) -> String {
    format!(
        "src {} dst {} proto esp spi 0x{:08x} reqid {}",
        sa.src, sa.dst, sa.spi, sa.reqid
    )
}

/// One `NETLINK_XFRM` connection, spawned on the current tokio runtime (network namespace:
/// the calling thread's).
pub struct Xfrm {
    conn: ConnectionHandle<XfrmMessage>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Xfrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xfrm").finish_non_exhaustive()
    }
}

impl Drop for Xfrm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Xfrm {
    /// Open the connection (inside a tokio runtime).
    pub fn connect() -> Result<Xfrm, XfrmError> {
        let (mut conn, handle, _) = netlink_proto::new_connection::<XfrmMessage>(NETLINK_XFRM)
            .map_err(XfrmError::Connect)?;
        conn.set_forward_ack(true);
        Ok(Xfrm {
            conn: handle,
            task: tokio::spawn(conn),
        })
    }

    async fn request(
        &self,
        cmd: &str,
        msg: XfrmMessage,
        flags: u16,
    ) -> Result<Vec<XfrmMessage>, XfrmError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags;
        let closed = || XfrmError::Closed {
            cmd: cmd.to_owned(),
        };
        let mut answers = self
            .conn
            .request(req, SocketAddr::new(0, 0))
            .map_err(|_| closed())?;
        let mut out = Vec::new();
        while let Some(m) = answers.next().await {
            match m.payload {
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                NetlinkPayload::Error(e) => match e.code {
                    Some(code) => {
                        return Err(XfrmError::Kernel {
                            cmd: cmd.to_owned(),
                            errno: code.get().abs(),
                        })
                    }
                    // The acknowledgement of a change.
                    None => return Ok(out),
                },
                NetlinkPayload::Done(_) => return Ok(out),
                _ => {}
            }
        }
        if flags & NLM_F_DUMP != 0 {
            Ok(out)
        } else {
            Err(closed())
        }
    }

    /// `ip xfrm policy`: the policies the backend could have written (see [`decode_policy`]).
    pub async fn policies(&self) -> Result<Vec<Policy>, XfrmError> {
        let msg = XfrmMessage::GetPolicy(PolicyId::default());
        let all = self.request("ip xfrm policy", msg, NLM_F_DUMP).await?;
        Ok(all
            .iter()
            .filter_map(|m| match m {
                XfrmMessage::AddPolicy(p) => decode_policy(p),
                _ => None,
            })
            .collect())
    }

    /// `ip xfrm state`: the IPv4 ESP SAs.
    pub async fn sas(&self) -> Result<Vec<Sa>, XfrmError> {
        let msg = XfrmMessage::GetDumpSa(GetDumpMessage::default());
        let all = self.request("ip xfrm state", msg, NLM_F_DUMP).await?;
        Ok(all
            .iter()
            .filter_map(|m| match m {
                XfrmMessage::AddSa(s) => decode_sa(s),
                _ => None,
            })
            .collect())
    }

    /// Add the policy or replace the one with its key.
    pub async fn update_policy(&self, p: &Policy) -> Result<(), XfrmError> {
        let cmd = format!("ip xfrm policy update {p}");
        self.request(&cmd, update_policy_msg(p), NLM_F_ACK)
            .await
            .map(drop)
    }

    /// Delete the policy with its key; one that is already gone is success.
    pub async fn delete_policy(&self, p: &Policy) -> Result<(), XfrmError> {
        let cmd = format!(
            "ip xfrm policy delete src {} dst {} dir {}",
            p.src,
            p.dst,
            p.dir.as_str()
        );
        match self.request(&cmd, delete_policy_msg(p), NLM_F_ACK).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Delete the SA; one that is already gone is success.
    pub async fn delete_sa(&self, sa: &Sa) -> Result<(), XfrmError> {
        let cmd = format!("ip xfrm state delete {}", sa_text(sa));
        match self.request(&cmd, delete_sa_msg(sa), NLM_F_ACK).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{
        Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable,
    };

    fn out_policy() -> Policy {
        Policy {
            dir: Dir::Out,
            src: "198.18.1.0/24".parse().expect("net"),
            dst: "198.18.2.0/24".parse().expect("net"),
            tmpl_src: Ipv4Addr::new(192, 0, 2, 1),
            tmpl_dst: Ipv4Addr::new(192, 0, 2, 2),
            reqid: 11,
        }
    }

    fn payload(m: &XfrmMessage) -> Vec<u8> {
        let mut buf = vec![0; NetlinkSerializable::buffer_len(m)];
        m.serialize(&mut buf);
        buf
    }

    /// An IPv4 address in a 16-byte `xfrm_address_t`.
    fn addr(b: &mut Vec<u8>, ip: [u8; 4]) {
        b.extend(ip);
        b.extend([0; 12]);
    }

    /// `struct xfrm_selector` for `src/24 → dst/24`, any protocol.
    fn sel(b: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4]) {
        addr(b, dst);
        addr(b, src);
        b.extend([0; 8]); // dport, dport_mask, sport, sport_mask
        b.extend(2u16.to_ne_bytes()); // family AF_INET
        b.extend([24, 24, 0]); // prefixlen_d, prefixlen_s, proto
        b.extend([0; 3]); // padding to the int
        b.extend(0i32.to_ne_bytes()); // ifindex
        b.extend(0u32.to_ne_bytes()); // user
    }

    #[test]
    fn update_policy_golden() {
        let m = update_policy_msg(&out_policy());
        assert_eq!(m.message_type(), 0x19, "XFRM_MSG_UPDPOLICY");
        let mut want = Vec::new();
        // struct xfrm_userpolicy_info
        sel(&mut want, [198, 18, 1, 0], [198, 18, 2, 0]);
        for _ in 0..4 {
            want.extend(u64::MAX.to_ne_bytes()); // byte and packet limits: XFRM_INF
        }
        want.extend([0; 32]); // expiry times
        want.extend([0; 32]); // struct xfrm_lifetime_cur
        want.extend(0u32.to_ne_bytes()); // priority
        want.extend(0u32.to_ne_bytes()); // index
        want.extend([1, 0, 0, 0]); // dir OUT, action ALLOW, flags, share
        want.extend([0; 4]); // padding to 8 bytes
        assert_eq!(want.len(), 168);
        // XFRMA_TMPL with one struct xfrm_user_tmpl
        want.extend((4u16 + 64).to_ne_bytes());
        want.extend(5u16.to_ne_bytes());
        addr(&mut want, [192, 0, 2, 2]); // id.daddr
        want.extend([0; 4]); // id.spi
        want.extend([50, 0, 0, 0]); // id.proto ESP + padding
        want.extend(2u16.to_ne_bytes()); // family
        want.extend([0; 2]);
        addr(&mut want, [192, 0, 2, 1]); // saddr
        want.extend(11u32.to_ne_bytes()); // reqid
        want.extend([1, 0, 0, 0]); // mode tunnel, share, optional, padding
        for _ in 0..3 {
            want.extend(u32::MAX.to_ne_bytes()); // aalgos, ealgos, calgos
        }
        assert_eq!(payload(&m), want);
    }

    #[test]
    fn delete_policy_golden() {
        let p = Policy {
            dir: Dir::Fwd,
            src: "198.18.2.0/24".parse().expect("net"),
            dst: "198.18.1.0/24".parse().expect("net"),
            ..out_policy()
        };
        let m = delete_policy_msg(&p);
        assert_eq!(m.message_type(), 0x14, "XFRM_MSG_DELPOLICY");
        let mut want = Vec::new();
        sel(&mut want, [198, 18, 2, 0], [198, 18, 1, 0]);
        want.extend(0u32.to_ne_bytes()); // index
        want.extend([2, 0, 0, 0]); // dir FWD + padding
        assert_eq!(payload(&m), want);
    }

    #[test]
    fn delete_sa_golden() {
        let sa = Sa {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 0, 2, 2),
            spi: 0xc102_0304,
            reqid: 11,
        };
        let m = delete_sa_msg(&sa);
        assert_eq!(m.message_type(), 0x11, "XFRM_MSG_DELSA");
        let mut want = Vec::new();
        addr(&mut want, [192, 0, 2, 2]);
        want.extend([0xc1, 0x02, 0x03, 0x04]); // spi, network order
        want.extend(2u16.to_ne_bytes());
        want.extend([50, 0]); // proto ESP + padding
        assert_eq!(payload(&m), want);
        assert_eq!(
            sa_text(&sa),
            "src 192.0.2.1 dst 192.0.2.2 proto esp spi 0xc1020304 reqid 11"
        );
    }

    #[test]
    fn a_written_policy_decodes_back_and_foreign_ones_are_ignored() {
        let p = out_policy();
        let XfrmMessage::UpdatePolicy(body) = update_policy_msg(&p) else {
            panic!("not an update");
        };
        // As a dump answers it: XFRM_MSG_NEWPOLICY with the same body.
        let mut buf = vec![0; body.buffer_len()];
        body.emit(&mut buf);
        let mut header = NetlinkHeader::default();
        header.message_type = 0x10 + 3;
        let XfrmMessage::AddPolicy(parsed) =
            XfrmMessage::deserialize(&header, &buf).expect("parses")
        else {
            panic!("not a NEWPOLICY");
        };
        assert_eq!(decode_policy(&parsed), Some(p));

        let mut transport = parsed.clone();
        if let XfrmAttrs::Template(t) = &mut transport.nlas[0] {
            t[0].mode = 0;
        }
        assert_eq!(decode_policy(&transport), None, "transport mode");
        let mut two = parsed.clone();
        two.nlas.push(parsed.nlas[0].clone());
        assert_eq!(decode_policy(&two), None, "two templates");
        let mut bare = parsed;
        bare.nlas.clear();
        assert_eq!(decode_policy(&bare), None, "no template");
    }
}
