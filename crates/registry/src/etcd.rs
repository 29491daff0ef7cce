//! The etcd v3 store: Flannel's keys and values in etcd, through `etcd-client`.
//!
//! Keys are `<prefix>/config` (network configuration) and `<prefix>/subnets/<subnet key>`
//! (one per lease, value = lease JSON, attached to an etcd lease of the lease TTL; a key without
//! an etcd lease is a reservation). This file owns the connection (lazy, TLS, auth), the
//! request timeout and error mapping, and the one-shot operations; [`watch`] owns the
//! reconnecting lease watch and [`decode`] the pure key/value decoding.

mod decode;
mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use flannel_model::lease::go_path_join;
use flannel_model::{LeaseAttrs, SubnetKey};
use futures_util::{Stream, StreamExt};

use crate::store::{StoreError, StoredLease, SubnetStore, WatchBatch};

/// At most this many lease `TimeToLive` queries are in flight at once while listing.
const TTL_QUERY_CONCURRENCY: usize = 16;

/// Flannel's warning when no client certificate is configured.
const NO_CERT_WARNING: &str =
    "no certificate provided: connecting to etcd with http. This is insecure";

/// How to reach etcd (Flannel's `--etcd-*` flags).
#[derive(Clone)]
pub struct EtcdConfig {
    /// Client URLs, `http://host:port` or `https://host:port` (or bare `host:port`: TLS when a
    /// client certificate is configured, plain otherwise).
    pub endpoints: Vec<String>,
    /// Key prefix, e.g. `/coreos.com/network` (joined with Go's `path.Join` rules, so a
    /// trailing `/` is ignored).
    pub prefix: String,
    /// Client private key (PEM). TLS client authentication needs both this and `certfile`.
    pub keyfile: Option<PathBuf>,
    /// Client certificate (PEM).
    pub certfile: Option<PathBuf>,
    /// CA bundle (PEM) to verify the server with.
    pub cafile: Option<PathBuf>,
    /// etcd user name (authentication is used when this is set).
    pub username: Option<String>,
    /// etcd password. Never logged or printed.
    pub password: Option<String>,
    /// Bound on every request (including connecting and authenticating).
    pub request_timeout: Duration,
}

impl Default for EtcdConfig {
    /// Flannel's defaults: `http://127.0.0.1:4001,http://127.0.0.1:2379`, `/coreos.com/network`,
    /// plus a 10 s request timeout (Flannel has none and waits forever).
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec![
                "http://127.0.0.1:4001".into(),
                "http://127.0.0.1:2379".into(),
            ],
            prefix: "/coreos.com/network".into(),
            keyfile: None,
            certfile: None,
            cafile: None,
            username: None,
            password: None,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("keyfile", &self.keyfile)
            .field("certfile", &self.certfile)
            .field("cafile", &self.cafile)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A [`SubnetStore`] on etcd v3. Cheap to clone (all clones share one connection).
///
/// Connecting is lazy: [`EtcdStore::connect`] only checks the configuration; the connection
/// is made (and re-made after failures) by the requests, each bounded by the request timeout.
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.shared.endpoints)
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

/// State shared by the store's clones and its watch streams.
struct Shared {
    endpoints: Vec<String>,
    /// Endpoints joined by `,`, for error messages.
    endpoints_label: String,
    /// The prefix as configured (keys are built with Go's `path.Join` rules).
    prefix: String,
    config_key: String,
    /// `<prefix>/subnets/`
    subnets_dir: String,
    timeout: Duration,
    /// Contains the password: never log it.
    options: ConnectOptions,
    /// One client per endpoint; `None` until first use and after a connection failure.
    clients: tokio::sync::Mutex<Vec<Option<Client>>>,
    /// Index of the endpoint that answered last (requests go there first).
    current: AtomicUsize,
}

impl EtcdStore {
    /// Check the configuration (endpoint URLs, TLS files) and prepare a lazily connected
    /// store. Does not contact etcd, so it neither fails nor waits when etcd is down.
    pub fn connect(cfg: EtcdConfig) -> Result<EtcdStore, StoreError> {
        if cfg.endpoints.is_empty() {
            return Err(StoreError::Setup("no etcd endpoints given".into()));
        }
        for endpoint in &cfg.endpoints {
            validate_endpoint(endpoint)?;
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(cfg.request_timeout)
            .with_timeout(cfg.request_timeout)
            // Detect dead connections under long-lived watches (pings only while a stream is
            // open: etcd refuses pings on idle connections).
            .with_keep_alive(Duration::from_secs(10), cfg.request_timeout)
            .with_keep_alive_while_idle(false)
            // Fail fast (and reconnect) instead of waiting on a member that lost its leader;
            // Flannel's watches ask for this too.
            .with_require_leader(true)
            .with_auto_token_refresh(true);
        if let Some(tls) = tls_options(&cfg)? {
            options = options.with_tls(tls);
        }
        if let Some(user) = &cfg.username {
            options = options.with_user(user.clone(), cfg.password.clone().unwrap_or_default());
        }
        let prefix = cfg.prefix;
        let endpoint_count = cfg.endpoints.len();
        Ok(EtcdStore {
            shared: Arc::new(Shared {
                endpoints_label: cfg.endpoints.join(","),
                endpoints: cfg.endpoints,
                config_key: go_path_join(&[&prefix, "config"]),
                subnets_dir: format!("{}/", go_path_join(&[&prefix, "subnets"])),
                prefix,
                timeout: cfg.request_timeout,
                options,
                clients: tokio::sync::Mutex::new(vec![None; endpoint_count]),
                current: AtomicUsize::new(0),
            }),
        })
    }

    /// The key prefix as configured.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The key of the network config, `<prefix>/config`.
    pub fn config_key(&self) -> &str {
        &self.shared.config_key
    }
}

/// Whether the connection uses TLS, and what to tell the operator about it (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TlsPlan {
    tls: bool,
    /// Warnings to log, in order.
    warnings: Vec<String>,
}

/// The URL scheme decides, as in the Go etcd client: `https://` → TLS, `http://` → plain, no
/// scheme → TLS only with a client certificate. The client certificate is used only when both
/// key and certificate are given. Flannel's "insecure" warning is logged only when the
/// connection really is plain (Flannel logs it whenever no client certificate is given, also
/// over TLS); files that a plain connection does not use are named in a warning.
fn plan_tls(cfg: &EtcdConfig) -> Result<TlsPlan, StoreError> {
    let identity = cfg.keyfile.is_some() && cfg.certfile.is_some();
    let https = cfg
        .endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    let http = cfg
        .endpoints
        .iter()
        .filter(|e| e.starts_with("http://"))
        .count();
    let bare = cfg.endpoints.len() - https - http;
    let tls = https > 0 || (bare > 0 && identity);
    let mut warnings = Vec::new();
    if !tls {
        if identity {
            warnings.push(
                "etcd endpoints use http://: the client certificate is not used (use https:// endpoints for TLS)".to_owned(),
            );
        } else {
            warnings.push(NO_CERT_WARNING.to_owned());
        }
        if let Some(ca) = &cfg.cafile {
            warnings.push(format!(
                "etcd endpoints use http://: the CA file {} is not used (use https:// endpoints for TLS)",
                ca.display()
            ));
        }
        return Ok(TlsPlan { tls, warnings });
    }
    if http > 0 {
        return Err(StoreError::Setup(format!(
            "etcd endpoints mix http:// and TLS endpoints ({}): use one scheme",
            cfg.endpoints.join(",")
        )));
    }
    if !identity && (cfg.keyfile.is_some() || cfg.certfile.is_some()) {
        warnings.push(
            "only one of --etcd-keyfile and --etcd-certfile is given: connecting to etcd over TLS without a client certificate".to_owned(),
        );
    }
    Ok(TlsPlan { tls, warnings })
}

/// The TLS options for [`plan_tls`]'s decision (reading the PEM files), logging its warnings.
fn tls_options(cfg: &EtcdConfig) -> Result<Option<etcd_client::TlsOptions>, StoreError> {
    let plan = plan_tls(cfg)?;
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    if !plan.tls {
        return Ok(None);
    }
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &cfg.cafile {
        let pem = read_pem(ca, "CA file")?;
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(pem));
    }
    if let (Some(key), Some(cert)) = (&cfg.keyfile, &cfg.certfile) {
        let cert_pem = read_pem(cert, "certificate file")?;
        let key_pem = read_pem(key, "key file")?;
        tls = tls.identity(etcd_client::Identity::from_pem(cert_pem, key_pem));
    } else {
        tracing::info!("connecting to etcd over TLS without a client certificate");
    }
    Ok(Some(tls))
}

fn read_pem(path: &std::path::Path, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path)
        .map_err(|e| StoreError::Setup(format!("reading etcd {what} {}: {e}", path.display())))
}

fn validate_endpoint(endpoint: &str) -> Result<(), StoreError> {
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    if !(with_scheme.starts_with("http://") || with_scheme.starts_with("https://")) {
        return Err(StoreError::Setup(format!(
            "etcd endpoint {endpoint:?}: only http:// and https:// are supported"
        )));
    }
    let rest = with_scheme
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or_default();
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(StoreError::Setup(format!(
            "etcd endpoint {endpoint:?} has no host"
        )));
    }
    Ok(())
}

impl Shared {
    fn unavailable(&self, message: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            endpoints: self.endpoints_label.clone(),
            message: message.into(),
        }
    }

    /// Map a client error: connection-type failures become [`StoreError::Unavailable`].
    fn map_err(&self, op: &'static str, err: &etcd_client::Error) -> StoreError {
        if decode::is_unavailable(err) {
            self.unavailable(format!("{op}: {}", decode::error_text(err)))
        } else {
            StoreError::Request {
                op,
                message: decode::error_text(err),
            }
        }
    }

    /// The client for endpoint `idx`, creating it if needed (which authenticates when a user
    /// is set).
    async fn client(&self, idx: usize) -> Result<Client, etcd_client::Error> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(idx).and_then(Option::as_ref) {
            return Ok(client.clone());
        }
        let endpoint = self
            .endpoints
            .get(idx)
            .map(String::as_str)
            .unwrap_or_default();
        let client = Client::connect([endpoint], Some(self.options.clone())).await?;
        if let Some(slot) = clients.get_mut(idx) {
            *slot = Some(client.clone());
        }
        Ok(client)
    }

    /// Forget endpoint `idx`'s client (all of them for `None`) so the next request builds a
    /// fresh connection.
    async fn reset_client(&self, idx: Option<usize>) {
        let mut clients = self.clients.lock().await;
        match idx {
            Some(idx) => {
                if let Some(slot) = clients.get_mut(idx) {
                    *slot = None;
                }
            }
            None => clients.iter_mut().for_each(|slot| *slot = None),
        }
    }

    /// Run one request, bounded by the request timeout. It goes to the endpoint that answered
    /// last; when that one cannot even be connected to (so the request was not sent), the
    /// next endpoints are tried in turn. Errors after sending are not retried here (a
    /// repeated transaction could report a lost race that we won).
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let count = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        let attempts = async {
            let mut failure = None;
            for i in 0..count {
                let idx = (first + i) % count;
                let result = match self.client(idx).await {
                    Ok(client) => f(client).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(value) => {
                        self.current.store(idx, Ordering::Relaxed);
                        return Ok(value);
                    }
                    Err(err) => {
                        let unavailable = decode::is_unavailable(&err);
                        if unavailable {
                            self.reset_client(Some(idx)).await;
                        }
                        let retry = decode::is_connect_failure(&err);
                        failure = Some(self.map_err(op, &err));
                        if !retry {
                            break;
                        }
                    }
                }
            }
            Err(failure.unwrap_or_else(|| self.unavailable(format!("{op}: no endpoint tried"))))
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(result) => result,
            Err(_) => {
                self.reset_client(None).await;
                Err(self.unavailable(format!("{op}: no answer within {:?}", self.timeout)))
            }
        }
    }

    /// Remaining TTL (seconds) of each of the given etcd leases, queried concurrently.
    /// Lease 0 is not queried.
    async fn ttls(
        &self,
        op: &'static str,
        lease_ids: Vec<i64>,
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let mut ids = lease_ids;
        ids.retain(|id| *id != 0);
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.run(op, |client| {
            let ids = ids.clone();
            async move {
                let results: Vec<_> = futures_util::stream::iter(ids)
                    .map(|id| {
                        let mut client = client.clone();
                        async move {
                            client
                                .lease_time_to_live(id, None)
                                .await
                                .map(|r| (id, r.ttl()))
                        }
                    })
                    .buffer_unordered(TTL_QUERY_CONCURRENCY)
                    .collect()
                    .await;
                results.into_iter().collect::<Result<HashMap<_, _>, _>>()
            }
        })
        .await
    }

    async fn list(&self) -> Result<(Vec<StoredLease>, i64), StoreError> {
        let dir = self.subnets_dir.clone();
        let resp = self
            .run("list leases", |mut client| {
                let dir = dir.clone();
                async move { client.get(dir, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let ttls = self
            .ttls(
                "list leases (lease TTLs)",
                resp.kvs().iter().map(|kv| kv.lease()).collect(),
            )
            .await?;
        let now = SystemTime::now();
        let mut leases = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let ttl = ttls.get(&kv.lease()).copied();
            match decode::stored_lease(
                &self.prefix,
                kv.key(),
                kv.value(),
                kv.lease(),
                kv.mod_revision(),
                ttl,
                now,
            ) {
                Ok(lease) => leases.push(lease),
                Err(e) => tracing::warn!("Ignoring bad subnet node: {e}"),
            }
        }
        Ok((leases, revision))
    }

    fn key_of(&self, key: &SubnetKey) -> String {
        key.key_path(&self.prefix)
    }

    /// `10.5.34.0-24` for messages.
    fn short_key(&self, key: &SubnetKey) -> String {
        let path = self.key_of(key);
        match path.strip_prefix(&self.subnets_dir) {
            Some(short) => short.to_string(),
            None => path,
        }
    }

    /// Grant an etcd lease of `ttl` (at least 1 s); `None` → `(0, None)`.
    async fn grant(
        &self,
        op: &'static str,
        ttl: Option<Duration>,
    ) -> Result<(i64, Option<i64>), StoreError> {
        let Some(ttl) = ttl else {
            return Ok((0, None));
        };
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let resp = self
            .run(op, |mut client| async move {
                client.lease_grant(secs, None).await
            })
            .await?;
        Ok((resp.id(), Some(resp.ttl())))
    }

    /// Best-effort revoke of a lease we granted but could not use.
    async fn revoke_quietly(&self, lease_id: i64) {
        if lease_id == 0 {
            return;
        }
        if let Err(e) = self
            .run("revoke lease", |mut client| async move {
                client.lease_revoke(lease_id).await
            })
            .await
        {
            tracing::error!("revoking unused etcd lease {lease_id:x}: {e}");
        }
    }
}

fn expiration_after(granted_ttl: Option<i64>, now: SystemTime) -> Option<SystemTime> {
    granted_ttl.map(|ttl| decode::expiration(now, ttl))
}

impl SubnetStore for EtcdStore {
    async fn get_network_config(&self) -> Result<String, StoreError> {
        let shared = &self.shared;
        let key = shared.config_key.clone();
        let resp = shared
            .run("get config", |mut client| {
                let key = key.clone();
                async move { client.get(key, None).await }
            })
            .await?;
        match resp.kvs().first() {
            Some(kv) => Ok(String::from_utf8_lossy(kv.value()).into_owned()),
            None => Err(StoreError::ConfigNotFound {
                key: shared.config_key.clone(),
            }),
        }
    }

    async fn list_leases(&self) -> Result<(Vec<StoredLease>, i64), StoreError> {
        self.shared.list().await
    }

    async fn get_lease(&self, key: &SubnetKey) -> Result<Option<StoredLease>, StoreError> {
        let shared = &self.shared;
        let path = shared.key_of(key);
        let resp = shared
            .run("get lease", |mut client| {
                let path = path.clone();
                async move { client.get(path, None).await }
            })
            .await?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(None);
        };
        let ttls = shared
            .ttls("get lease (lease TTL)", vec![kv.lease()])
            .await?;
        let ttl = ttls.get(&kv.lease()).copied();
        decode::stored_lease(
            &shared.prefix,
            kv.key(),
            kv.value(),
            kv.lease(),
            kv.mod_revision(),
            ttl,
            SystemTime::now(),
        )
        .map(Some)
        .map_err(|e| StoreError::Request {
            op: "get lease",
            message: e,
        })
    }

    async fn create_lease(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> Result<StoredLease, StoreError> {
        let shared = &self.shared;
        let path = shared.key_of(key);
        let value = attrs.to_json();
        let now = SystemTime::now();
        let (lease_id, granted) = shared.grant("create lease (grant)", ttl).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(path.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                path,
                value,
                Some(PutOptions::new().with_lease(lease_id)),
            )]);
        let resp = match shared
            .run("create lease", |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                shared.revoke_quietly(lease_id).await;
                return Err(e);
            }
        };
        if !resp.succeeded() {
            shared.revoke_quietly(lease_id).await;
            return Err(StoreError::AlreadyExists(shared.short_key(key)));
        }
        let mod_revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok(StoredLease {
            lease: flannel_model::Lease {
                subnet: *key,
                attrs: attrs.clone(),
                expiration: expiration_after(granted, now),
            },
            lease_id,
            mod_revision,
        })
    }

    async fn put_lease(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> Result<StoredLease, StoreError> {
        let shared = &self.shared;
        let path = shared.key_of(key);
        let value = attrs.to_json();
        let now = SystemTime::now();
        let (lease_id, granted) = shared.grant("put lease (grant)", ttl).await?;
        let put = shared
            .run("put lease", |mut client| {
                let (path, value) = (path.clone(), value.clone());
                async move {
                    let options = PutOptions::new().with_lease(lease_id);
                    client.put(path, value, Some(options)).await
                }
            })
            .await;
        let resp = match put {
            Ok(resp) => resp,
            Err(e) => {
                shared.revoke_quietly(lease_id).await;
                return Err(e);
            }
        };
        let mod_revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok(StoredLease {
            lease: flannel_model::Lease {
                subnet: *key,
                attrs: attrs.clone(),
                expiration: expiration_after(granted, now),
            },
            lease_id,
            mod_revision,
        })
    }

    /// One keep-alive round on a `LeaseKeepAlive` stream. Lease id 0 (a reservation) has
    /// nothing to refresh and gives `Ok(None)`, as does a lease etcd no longer knows.
    async fn keep_alive(&self, lease_id: i64) -> Result<Option<Duration>, StoreError> {
        if lease_id == 0 {
            return Ok(None);
        }
        let result = self
            .shared
            .run("keep lease alive", |mut client| async move {
                match client.lease_keep_alive(lease_id).await {
                    // etcd-client reads the first answer itself (to learn whether the lease
                    // exists) without exposing its TTL: ask once more on the same stream.
                    Ok((mut keeper, mut stream)) => {
                        keeper.keep_alive().await?;
                        match stream.message().await? {
                            Some(resp) => Ok(Some(resp.ttl())),
                            None => Err(etcd_client::Error::LeaseKeepAliveError(
                                "keep-alive stream closed".into(),
                            )),
                        }
                    }
                    Err(etcd_client::Error::LeaseKeepAliveError(msg))
                        if msg.contains("lease not found") =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(match result {
            Some(ttl) if ttl > 0 => Some(Duration::from_secs(ttl.unsigned_abs())),
            _ => None,
        })
    }

    async fn delete_lease(&self, key: &SubnetKey) -> Result<(), StoreError> {
        let path = self.shared.key_of(key);
        self.shared
            .run("delete lease", |mut client| {
                let path = path.clone();
                async move { client.delete(path, None).await }
            })
            .await
            .map(|_| ())
    }

    fn watch_leases(&self) -> impl Stream<Item = WatchBatch> + Send + 'static {
        watch::lease_watch(self.shared.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoints: &[&str], key: bool, cert: bool, ca: bool) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            keyfile: key.then(|| PathBuf::from("/k.pem")),
            certfile: cert.then(|| PathBuf::from("/c.pem")),
            cafile: ca.then(|| PathBuf::from("/ca.pem")),
            ..EtcdConfig::default()
        }
    }

    fn plan(c: &EtcdConfig) -> TlsPlan {
        plan_tls(c).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Issue 16.7: `https://` without a client certificate is TLS, not "http. This is
    /// insecure".
    #[test]
    fn the_insecure_warning_is_only_for_plain_connections() {
        let p = plan(&cfg(&["https://192.0.2.1:2379"], false, false, true));
        assert!(p.tls);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let p = plan(&cfg(&["http://192.0.2.1:2379"], false, false, false));
        assert!(!p.tls);
        assert_eq!(p.warnings, vec![NO_CERT_WARNING.to_owned()]);
        // Bare endpoints: TLS with a client certificate.
        let p = plan(&cfg(&["192.0.2.1:2379"], true, true, false));
        assert!(p.tls && p.warnings.is_empty(), "{p:?}");
        // Files a plain connection ignores are named.
        let p = plan(&cfg(&["http://192.0.2.1:2379"], true, true, true));
        assert!(!p.tls);
        assert!(p.warnings[0].contains("client certificate is not used"));
        assert!(p.warnings[1].contains("the CA file /ca.pem is not used"));
        let p = plan(&cfg(&["https://192.0.2.1:2379"], true, false, false));
        assert!(p.tls);
        assert!(p.warnings[0].contains("only one of --etcd-keyfile and --etcd-certfile"));
        assert!(plan_tls(&cfg(
            &["https://192.0.2.1:2379", "http://192.0.2.2:2379"],
            false,
            false,
            false
        ))
        .is_err());
    }
}
