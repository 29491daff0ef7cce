//! Helpers shared by the etcd store tests (each test binary includes this module).
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use flannel_model::{LeaseAttrs, SubnetKey};
use flannel_registry::{StoreError, WatchBatch};
use futures_util::{Stream, StreamExt};

pub const PREFIX: &str = "/coreos.com/network";
/// Bound on every wait for something that should happen (generous: the CI machine is slow).
pub const WAIT: Duration = Duration::from_secs(30);

pub fn key(cidr: &str) -> SubnetKey {
    SubnetKey {
        ipv4: cidr.parse().unwrap(),
        ipv6: None,
    }
}

pub fn attrs(public_ip: &str) -> LeaseAttrs {
    let json = format!(
        r#"{{"PublicIP":"{public_ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}}}"#
    );
    LeaseAttrs::from_json(json.as_bytes()).unwrap()
}

pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

pub async fn next_batch(
    stream: &mut (impl Stream<Item = WatchBatch> + Unpin),
    what: &str,
) -> WatchBatch {
    within(what, stream.next())
        .await
        .expect("the watch stream never ends")
}

/// Retry a store operation until it succeeds (etcd coming back after a restart).
pub async fn eventually<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    within(what, async {
        loop {
            match op().await {
                Ok(v) => return v,
                Err(e) => {
                    assert!(e.is_transient(), "{what}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await
}
