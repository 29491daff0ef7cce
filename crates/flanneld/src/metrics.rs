//! flanneld's Prometheus metrics, served as `/metrics` on the health listener
//! (`--healthz-ip:--healthz-port`). [`Metrics`] owns the registry and one typed handle per
//! metric; the daemon, the datapath loop and the backend runtimes get a clone and count.
//! docs/observability.md lists every metric with its meaning.
//!
//! The text is OpenMetrics (what `prometheus-client` writes; Prometheus reads it): counters
//! are named `<name>_total`, and the text ends with `# EOF`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::process_metrics::ProcessCollector;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpResultLabels {
    op: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    direction: String,
    reason: String,
}

/// The registry and the handles. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    peers: Family<BackendLabel, Gauge>,
    lease_expiry: Gauge<f64, std::sync::atomic::AtomicU64>,
    repairs: Family<KindLabel, Counter>,
    kernel_ops: Family<OpResultLabels, Counter>,
    reconcile: Histogram,
    registry_errors: Family<OpLabel, Counter>,
    lease_events: Family<TypeLabel, Counter>,
    udp: UdpStats,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered, at zero (the lease expiry absent until a lease is held).
    pub fn new() -> Metrics {
        let udp = UdpStats::default();
        let mut registry = Registry::default();
        let peers = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "flannel_peers",
            "Peers whose entries this node programs, by backend",
            peers.clone(),
        );
        let lease_expiry = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let repairs = Family::<KindLabel, Counter>::default();
        registry.register(
            "flannel_kernel_repairs",
            "Kernel entries re-added or corrected because they drifted from what flanneld had programmed",
            repairs.clone(),
        );
        let kernel_ops = Family::<OpResultLabels, Counter>::default();
        registry.register(
            "flannel_kernel_ops",
            "Kernel operations applied, by operation and result (ok or error)",
            kernel_ops.clone(),
        );
        let reconcile = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "flannel_reconcile_duration_seconds",
            "Time of one reconcile pass (observe, plan, apply)",
            reconcile.clone(),
        );
        let registry_errors = Family::<OpLabel, Counter>::default();
        registry.register(
            "flannel_registry_errors",
            "Failed calls to the subnet registry (etcd or the Kubernetes API), by operation",
            registry_errors.clone(),
        );
        let lease_events = Family::<TypeLabel, Counter>::default();
        registry.register(
            "flannel_lease_events",
            "Lease events received: peer added or removed, own lease renewed or re-acquired",
            lease_events.clone(),
        );
        registry.register_collector(Box::new(LeaseExpiry(lease_expiry.clone())));
        registry.register_collector(Box::new(udp.clone()));
        registry.register_collector(Box::new(ProcessCollector));
        Metrics(Arc::new(Inner {
            registry,
            peers,
            lease_expiry,
            repairs,
            kernel_ops,
            reconcile,
            registry_errors,
            lease_events,
            udp,
        }))
    }

    /// The number of peers the `backend` programs now.
    pub fn set_peers(&self, backend: &str, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.0
            .peers
            .get_or_create(&BackendLabel {
                backend: backend.to_owned(),
            })
            .set(n);
    }

    /// When our lease expires; `None` for a reservation or a Kubernetes podCIDR (no TTL): the
    /// gauge is then absent.
    pub fn set_lease_expiry(&self, expiry: Option<SystemTime>) {
        let v = expiry.map_or(0.0, |t| {
            t.duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
        });
        self.0.lease_expiry.set(v);
    }

    /// One kernel entry of `kind` (`route`, `neigh`, `fdb`, `link`, `address`) repaired.
    pub fn repaired(&self, kind: &str) {
        self.0
            .repairs
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// `n` kernel operations `op` with `result` (`ok` or `error`).
    pub fn kernel_ops(&self, op: &str, result: &str, n: u64) {
        self.0
            .kernel_ops
            .get_or_create(&OpResultLabels {
                op: op.to_owned(),
                result: result.to_owned(),
            })
            .inc_by(n);
    }

    /// One reconcile pass took `took`.
    pub fn reconciled(&self, took: Duration) {
        self.0.reconcile.observe(took.as_secs_f64());
    }

    /// A registry call `op` failed.
    pub fn registry_error(&self, op: &str) {
        self.0
            .registry_errors
            .get_or_create(&OpLabel { op: op.to_owned() })
            .inc();
    }

    /// `n` lease events of type `ty` (`added`, `removed`, `renewed`, `reacquired`).
    pub fn lease_events(&self, ty: &str, n: u64) {
        self.0
            .lease_events
            .get_or_create(&TypeLabel {
                r#type: ty.to_owned(),
            })
            .inc_by(n);
    }

    /// Export the udp datapath's live counters from now on.
    pub fn watch_udp(&self, stats: flannel_udp::Stats) {
        self.0.udp.set(stats);
    }

    /// The whole text, as `/metrics` serves it.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; a collector's error would only cut the text short.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.0.registry) {
            tracing::warn!(error = %e, "encoding the metrics failed");
        }
        out
    }
}

/// The udp datapath's counters, filled in once its runtime starts.
#[derive(Debug, Clone, Default)]
struct UdpStats(Arc<Mutex<Option<flannel_udp::Stats>>>);

impl UdpStats {
    fn set(&self, stats: flannel_udp::Stats) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(stats);
    }
}

impl Collector for UdpStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return Ok(());
        };
        let s = stats.snapshot();
        let drops = Family::<DropLabels, Counter>::default();
        for (direction, counters) in [("out", &s.outbound), ("in", &s.inbound)] {
            for (reason, n) in counters.drops() {
                drops
                    .get_or_create(&DropLabels {
                        direction: direction.to_owned(),
                        reason: reason.to_owned(),
                    })
                    .inc_by(n);
            }
        }
        let m = encoder.encode_descriptor(
            "flannel_udp_dropped_packets",
            "Packets the udp datapath dropped, by direction and reason",
            None,
            drops.metric_type(),
        )?;
        drops.encode(m)?;
        for (name, help, v) in [
            (
                "flannel_udp_forwarded_packets",
                "Packets the udp datapath sent to a peer",
                s.outbound.forwarded,
            ),
            (
                "flannel_udp_delivered_packets",
                "Packets the udp datapath wrote to the TUN device",
                s.inbound.delivered,
            ),
            (
                "flannel_udp_io_errors",
                "Packets the udp datapath meant to send or write that the OS refused",
                s.io_errors,
            ),
        ] {
            let c = ConstCounter::new(v);
            let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(m)?;
        }
        Ok(())
    }
}

/// `flannel_lease_expiry_timestamp_seconds`, only while a lease with a TTL is held.
#[derive(Debug)]
struct LeaseExpiry(Gauge<f64, std::sync::atomic::AtomicU64>);

impl Collector for LeaseExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.0.get() == 0.0 {
            return Ok(());
        }
        let m = encoder.encode_descriptor(
            "flannel_lease_expiry_timestamp_seconds",
            "When this node's lease expires (Unix time); absent for a lease without TTL",
            None,
            self.0.metric_type(),
        )?;
        self.0.encode(m)
    }
}

impl flannel_registry::ManagerObserver for Metrics {
    fn lease_renewed(&self, expiration: SystemTime) {
        self.set_lease_expiry(Some(expiration));
        self.lease_events("renewed", 1);
    }

    fn store_error(&self, op: &'static str) {
        self.registry_error(op);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> prometheus_parse::Scrape {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        prometheus_parse::Scrape::parse(lines).expect("Prometheus text")
    }

    fn value(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn the_text_names_every_metric_and_parses() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(
            !text.contains("flannel_lease_expiry_timestamp_seconds"),
            "no lease yet: {text}"
        );
        m.set_peers("vxlan", 3);
        m.set_lease_expiry(Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
        m.repaired("route");
        m.repaired("route");
        m.kernel_ops("replace_route", "ok", 4);
        m.kernel_ops("replace_fdb", "error", 1);
        m.reconciled(Duration::from_millis(3));
        m.registry_error("renew");
        m.lease_events("added", 2);
        let text = m.encode();
        for line in [
            "# TYPE flannel_peers gauge",
            "flannel_peers{backend=\"vxlan\"} 3",
            "# TYPE flannel_kernel_repairs counter",
            "flannel_kernel_repairs_total{kind=\"route\"} 2",
            "flannel_kernel_ops_total{op=\"replace_route\",result=\"ok\"} 4",
            "flannel_kernel_ops_total{op=\"replace_fdb\",result=\"error\"} 1",
            "flannel_reconcile_duration_seconds_count 1",
            "flannel_registry_errors_total{op=\"renew\"} 1",
            "flannel_lease_events_total{type=\"added\"} 2",
            "flannel_lease_expiry_timestamp_seconds 2000000000.0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let scrape = parse(&text);
        assert_eq!(
            value(&scrape, "flannel_peers", Some(("backend", "vxlan"))),
            3.0
        );
        assert_eq!(
            value(
                &scrape,
                "flannel_kernel_repairs_total",
                Some(("kind", "route"))
            ),
            2.0
        );
        assert!(value(&scrape, "process_resident_memory_bytes", None) > 0.0);
        assert!(value(&scrape, "process_open_fds", None) > 0.0);
    }

    #[test]
    fn a_lease_without_ttl_has_no_expiry() {
        let m = Metrics::new();
        m.set_lease_expiry(Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
        assert!(m
            .encode()
            .contains("flannel_lease_expiry_timestamp_seconds 2"));
        m.set_lease_expiry(None);
        assert!(!m
            .encode()
            .contains("flannel_lease_expiry_timestamp_seconds"));
    }

    #[test]
    fn udp_drops_are_exported_by_reason() {
        let m = Metrics::new();
        assert!(!m.encode().contains("flannel_udp"));
        m.watch_udp(flannel_udp::Stats::new());
        let text = m.encode();
        assert!(
            text.lines().any(|l| l
                == "flannel_udp_dropped_packets_total{direction=\"in\",reason=\"unknown_peer\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("flannel_udp_forwarded_packets_total 0"),
            "{text}"
        );
        parse(&text);
    }
}
