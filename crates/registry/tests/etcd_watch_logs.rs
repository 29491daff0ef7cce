//! The etcd watch's logging during an outage, checked on captured log text: one warning per
//! outage, a line when it resumes, and never the password. Its own test binary, because
//! capturing needs the process-wide tracing subscriber.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{attrs, eventually, key, next_batch, PREFIX};
use flannel_registry::etcd::{EtcdConfig, EtcdStore};
use flannel_registry::{SubnetStore, WatchBatch, WatchEvent};
use flannel_testkit::etcd::EtcdServer;
use futures_util::StreamExt;

/// Log lines captured by the process-wide subscriber.
#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn watch_outage_is_logged_once_and_password_never() {
    let Some(mut etcd) =
        EtcdServer::start_or_skip("watch_outage_is_logged_once_and_password_never")
    else {
        return;
    };
    const PASSWORD: &str = "pw-that-must-not-leak";
    etcd.etcdctl(&["user", "add", &format!("root:{PASSWORD}")])
        .unwrap();
    etcd.etcdctl(&["auth", "enable"]).unwrap();

    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Process-wide, and the only test in this binary: a thread-local subscriber (set_default)
    // loses events when other tests in the process register the same callsites first.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = EtcdStore::connect(EtcdConfig {
            endpoints: vec![etcd.endpoint()],
            prefix: PREFIX.into(),
            username: Some("root".into()),
            password: Some(PASSWORD.into()),
            request_timeout: Duration::from_secs(10),
            ..EtcdConfig::default()
        })
        .unwrap();
        let mut watch = Box::pin(store.watch_leases());
        assert!(matches!(
            next_batch(&mut watch, "snapshot").await,
            WatchBatch::Snapshot { .. }
        ));

        etcd.stop().unwrap();
        // Several failed reconnects (backoff 100 ms, 200 ms, ...) while etcd is down.
        assert!(tokio::time::timeout(Duration::from_secs(3), watch.next())
            .await
            .is_err());
        etcd.restart().unwrap();
        // etcd forgot the auth token: the store must authenticate again by itself.
        let k = key("10.5.80.0/24");
        let a = attrs("192.0.2.1");
        let put = eventually("put after restart", || store.put_lease(&k, &a, None)).await;
        match next_batch(&mut watch, "event after restart").await {
            WatchBatch::Events { events, .. } => assert_eq!(events, vec![WatchEvent::Put(put)]),
            other => panic!("expected the put, got {other:?}"),
        }
    });
    let text = logs.text();
    let warnings = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("etcd watch"))
        .count();
    assert_eq!(warnings, 1, "one warning per outage:\n{text}");
    // (How many reconnects fail during the outage depends on machine load; however many,
    // only the first is a warning: the count above.)
    assert!(text.contains("resumed"), "{text}");
    assert!(
        !text.contains(PASSWORD),
        "the password leaked into the logs:\n{text}"
    );
}
