//! Pure helpers of the etcd store: etcd key/value → [`StoredLease`],
//! TTL → expiration, and which client errors mean "etcd unavailable".

use std::time::{Duration, SystemTime};

use flannel_model::{Lease, LeaseAttrs, SubnetKey};

use crate::store::StoredLease;

/// gRPC status codes (stable numbers from the gRPC specification).
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

/// `now + ttl` seconds; a lease that etcd reports as gone or expiring (`ttl <= 0`) expires now.
pub fn expiration(now: SystemTime, ttl_secs: i64) -> SystemTime {
    if ttl_secs <= 0 {
        return now;
    }
    now.checked_add(Duration::from_secs(ttl_secs.unsigned_abs()))
        .unwrap_or(now)
}

/// Decode one key/value under `<prefix>/subnets/`. `ttl` is the remaining TTL of the key's etcd
/// lease (`None` when not known); lease id 0 is a reservation and has no expiration. The error
/// explains why the entry is not a lease (bad key or bad value).
pub fn stored_lease(
    prefix: &str,
    key: &[u8],
    value: &[u8],
    lease_id: i64,
    mod_revision: i64,
    ttl: Option<i64>,
    now: SystemTime,
) -> Result<StoredLease, String> {
    let subnet = subnet_key(prefix, key)?;
    let attrs = LeaseAttrs::from_json(value)
        .map_err(|e| format!("{}: {e}", String::from_utf8_lossy(key)))?;
    let expiration = if lease_id == 0 {
        None
    } else {
        // A lease id whose TTL could not be read is treated as expiring now.
        Some(expiration(now, ttl.unwrap_or(-1)))
    };
    Ok(StoredLease {
        lease: Lease {
            subnet,
            attrs,
            expiration,
        },
        lease_id,
        mod_revision,
    })
}

/// Parse the subnet part of an etcd key.
pub fn subnet_key(prefix: &str, key: &[u8]) -> Result<SubnetKey, String> {
    let text = std::str::from_utf8(key)
        .map_err(|_| format!("{:?}: key is not UTF-8", String::from_utf8_lossy(key)))?;
    SubnetKey::from_key_path(text, prefix).map_err(|e| format!("{text}: {e}"))
}

/// Whether a client error means etcd could not be reached or did not answer (as opposed to
/// etcd answering with an error).
pub fn is_unavailable(err: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match err {
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::LeaseKeepAliveError(_) => true,
        E::GRpcStatus(status) => status_is_unavailable(i32::from(status.code()), status.message()),
        _ => false,
    }
}

/// [`is_unavailable`] for a gRPC status given as code number and message.
fn status_is_unavailable(code: i32, message: &str) -> bool {
    match code {
        GRPC_CANCELLED | GRPC_DEADLINE_EXCEEDED | GRPC_UNAVAILABLE => true,
        GRPC_UNKNOWN => looks_like_transport_failure(message),
        _ => false,
    }
}

/// Errors from the transport (not from etcd) that tonic reports with code `Unknown`.
fn looks_like_transport_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "transport error",
        "connection",
        "connect error",
        "broken pipe",
        "h2 protocol error",
        "error trying to connect",
        "service was not ready",
        "operation timed out",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// An etcd client error as an operator reads it: the gRPC message (or the code's description)
/// and the causes behind it, e.g. `tcp connect error: Connection refused (os error 111)`,
/// instead of tonic's `code: …, source: tonic::transport::Error(Transport, ConnectError(…))`.
pub fn error_text(err: &etcd_client::Error) -> String {
    use etcd_client::Error as E;
    match err {
        E::GRpcStatus(status) => {
            let head = if status.message().is_empty() {
                status.code().description()
            } else {
                status.message()
            };
            crate::error_text::with_causes(head, std::error::Error::source(status))
        }
        E::TransportError(e) => crate::error_text::chain(e),
        other => other.to_string(),
    }
}

/// Whether the error happened while connecting, so that the request was certainly not sent
/// (safe to try another endpoint, even for a transaction).
pub fn is_connect_failure(err: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match err {
        E::TransportError(_) => true,
        E::GRpcStatus(status) => {
            i32::from(status.code()) == GRPC_UNAVAILABLE && {
                let text = format!("{} {:?}", status.message(), status);
                message_is_connect_failure(&text)
            }
        }
        _ => false,
    }
}

/// The texts tonic/hyper use for failures to establish a connection.
fn message_is_connect_failure(text: &str) -> bool {
    [
        "tcp connect error",
        "error trying to connect",
        "ConnectError",
        "dns error",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Whether an error says the requested revision has been compacted away.
pub fn is_compacted(message: &str) -> bool {
    message.contains("required revision has been compacted")
}

/// Whether etcd lost its data since we last looked (wiped, or restored from an old backup):
/// its cluster ID is not the one we saw, or its revision `now` is below `delivered`, the
/// last revision the watch has delivered (which etcd never goes below otherwise).
pub fn data_lost(
    known_cluster: Option<u64>,
    cluster: u64,
    delivered: i64,
    now: i64,
) -> Option<String> {
    match known_cluster {
        Some(known) if known != cluster => Some(format!(
            "its cluster ID changed from {known:x} to {cluster:x}"
        )),
        _ if now < delivered => Some(format!("its revision went back from {delivered} to {now}")),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn data_loss_is_a_new_cluster_or_a_revision_going_back() {
        assert_eq!(data_lost(None, 7, 40, 40), None);
        assert_eq!(data_lost(Some(7), 7, 40, 41), None);
        assert_eq!(
            data_lost(Some(7), 7, 40, 3).as_deref(),
            Some("its revision went back from 40 to 3")
        );
        assert_eq!(
            data_lost(Some(7), 8, 40, 90).as_deref(),
            Some("its cluster ID changed from 7 to 8")
        );
        assert_eq!(
            data_lost(None, 8, 40, 3).as_deref(),
            Some("its revision went back from 40 to 3")
        );
    }

    #[test]
    fn expiration_from_ttl() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(expiration(now, 86_400), now + Duration::from_secs(86_400));
        assert_eq!(expiration(now, 0), now);
        assert_eq!(expiration(now, -1), now);
    }

    #[test]
    fn unavailable_classification() {
        assert!(status_is_unavailable(
            GRPC_UNAVAILABLE,
            "etcdserver: no leader"
        ));
        assert!(status_is_unavailable(GRPC_DEADLINE_EXCEEDED, "timeout"));
        assert!(status_is_unavailable(GRPC_UNKNOWN, "transport error"));
        assert!(!status_is_unavailable(
            GRPC_UNKNOWN,
            "etcdserver: something else"
        ));
        // InvalidArgument and PermissionDenied: etcd answered.
        assert!(!status_is_unavailable(3, "etcdserver: key is not provided"));
        assert!(!status_is_unavailable(7, "etcdserver: permission denied"));
        assert!(is_unavailable(&etcd_client::Error::WatchError(
            "stream closed".into()
        )));
        assert!(!is_unavailable(&etcd_client::Error::InvalidArgs(
            "empty endpoints".into()
        )));
    }

    #[test]
    fn connect_failures_are_recognised() {
        assert!(message_is_connect_failure(
            "tcp connect error ConnectError(\"tcp connect error\", 127.0.0.1:4001, Os { code: 111 })"
        ));
        assert!(!message_is_connect_failure("etcdserver: no leader"));
        assert!(!message_is_connect_failure(
            "h2 protocol error: stream reset"
        ));
        let not_status = etcd_client::Error::WatchError("closed".into());
        assert!(!is_connect_failure(&not_status));
    }

    #[test]
    fn compaction_message() {
        assert!(is_compacted(
            "etcdserver: mvcc: required revision has been compacted"
        ));
        assert!(!is_compacted("etcdserver: no leader"));
    }

    #[tokio::test]
    async fn a_refused_connection_reads_as_text_not_debug() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let err = match etcd_client::Client::connect([url.as_str()], None).await {
            Err(e) => e,
            Ok(mut client) => client.get("x", None).await.unwrap_err(),
        };
        let text = error_text(&err);
        assert!(text.contains("Connection refused"), "{text}");
        for debug in ["tonic::", "Os {", "ConnectError(", "source:"] {
            assert!(!text.contains(debug), "{text}");
        }
        assert!(is_connect_failure(&err), "{text}");
    }
}
