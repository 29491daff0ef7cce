//! Gathering the host facts external interface selection needs, over rtnetlink:
//! [`gather_host_interfaces`] (links, addresses, default routes), [`route_get`]
//! (`ip route get`) and [`discover_external_interface`], which opens its own connection,
//! gathers and asks [`crate::select`] to decide.
//!
//! The selection rules are documented in [`crate::select`]; its types are re-exported here.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;

use crate::decode::{addr_facts, default_route_oifs, link_facts, route_ip};
pub use crate::select::{
    select_external_interface, usable_addrs, AddrFacts, ExternalInterface, HostInterfaces,
    IfaceError, IfaceRequest, LinkFacts, LookupError, RouteGetAnswer,
};

/// Dumps links, addresses and main-table default routes (both families) over `handle`.
pub async fn gather_host_interfaces(
    handle: &rtnetlink::Handle,
) -> Result<HostInterfaces, IfaceError> {
    let links: Vec<LinkMessage> =
        handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| IfaceError::Dump {
                what: "link",
                source,
            })?;
    let addrs: Vec<AddressMessage> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|source| IfaceError::Dump {
            what: "address",
            source,
        })?;
    let routes_v4 = dump_routes(handle, AddressFamily::Inet, "IPv4 route").await?;
    let routes_v6 = dump_routes(handle, AddressFamily::Inet6, "IPv6 route").await?;

    Ok(HostInterfaces {
        links: links.iter().map(link_facts).collect(),
        addrs: addrs.iter().filter_map(addr_facts).collect(),
        default_routes_v4: default_route_oifs(&routes_v4),
        default_routes_v6: default_route_oifs(&routes_v6),
    })
}

async fn dump_routes(
    handle: &rtnetlink::Handle,
    family: AddressFamily,
    what: &'static str,
) -> Result<Vec<RouteMessage>, IfaceError> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    handle
        .route()
        .get(msg)
        .execute()
        .try_collect()
        .await
        .map_err(|source| IfaceError::Dump { what, source })
}

/// Asks the kernel which route it would use for `dst` (`ip route get <dst>`).
pub async fn route_get(
    handle: &rtnetlink::Handle,
    dst: IpAddr,
) -> Result<RouteGetAnswer, IfaceError> {
    let mut msg = RouteMessage::default();
    // Same header as `ip route get`: everything zero except family and destination length.
    msg.header.address_family = match dst {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
    msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
    msg.header.protocol = RouteProtocol::Unspec;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unspec;
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    let answers: Vec<RouteMessage> = handle
        .route()
        .get(msg)
        .execute()
        .try_collect()
        .await
        .map_err(|source| IfaceError::RouteGet { dst, source })?;
    let first = answers.first().ok_or(IfaceError::RouteGetEmpty { dst })?;
    let mut answer = RouteGetAnswer {
        oif: 0,
        prefsrc: None,
        gateway: None,
    };
    for attr in &first.attributes {
        match attr {
            RouteAttribute::Oif(i) => answer.oif = *i,
            RouteAttribute::PrefSource(a) => answer.prefsrc = route_ip(a),
            RouteAttribute::Gateway(a) => answer.gateway = route_ip(a),
            _ => {}
        }
    }
    Ok(answer)
}

/// Opens a private rtnetlink connection (spawned on the current tokio runtime), gathers the host
/// facts, resolves `--iface-can-reach` if asked, and selects the external interface.
pub async fn discover_external_interface(
    req: &IfaceRequest,
) -> Result<ExternalInterface, IfaceError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(IfaceError::Connection)?;
    let task = tokio::spawn(conn);
    let result = async {
        let facts = gather_host_interfaces(&handle).await?;
        let can_reach = match req.iface_can_reach {
            Some(dst) => match route_get(&handle, dst).await {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!("--iface-can-reach: {e}");
                    None
                }
            },
            None => None,
        };
        select_external_interface(req, &facts, can_reach)
    }
    .await;
    task.abort();
    result
}
