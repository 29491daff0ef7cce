//! Connecting to the Kubernetes API and finding out which node we run on.
//!
//! This file owns:
//! - building a [`kube::Client`] the way Flannel's `clientcmd.BuildConfigFromFlags` does
//!   ([`connect`]): `--kubeconfig-file` when given (its server replaced by `--kube-api-url` when
//!   that is set too), else `--kube-api-url` alone (no credentials), else the in-cluster
//!   config (service-account token and CA, `KUBERNETES_SERVICE_HOST/PORT`);
//! - our node's name ([`node_name`]): `NODE_NAME`, else the pod `POD_NAMESPACE/POD_NAME`'s
//!   `spec.nodeName`, with Flannel's error texts;
//! - naming the API server in every failure to reach it ([`Unreachable`]): hyper's own text is
//!   `client error (Connect)`, without the URL or the cause.

use std::path::{Path, PathBuf};

use super::objects::Pod;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tower::BoxError;

/// Where the API server is and how to authenticate (`--kube-api-url`, `--kubeconfig-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// `--kube-api-url`: the API server's URL (empty: from the kubeconfig or in-cluster).
    pub api_url: Option<String>,
    /// `--kubeconfig-file`: a kubeconfig to load (empty: in-cluster config).
    pub kubeconfig: Option<PathBuf>,
}

/// Why no client could be built or no node name found.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--kube-api-url` is not a URL.
    #[error("invalid --kube-api-url {url:?}: {reason}")]
    BadUrl {
        /// The flag's value.
        url: String,
        /// Why it did not parse.
        reason: String,
    },
    /// The kubeconfig file could not be read or used.
    #[error("failed to load kubeconfig {path}: {cause}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        cause: kube::config::KubeconfigError,
    },
    /// Neither flag was given and we do not run in a pod.
    #[error(
        "no --kube-api-url or --kubeconfig-file given and the in-cluster config is not \
         available ({0}); run flanneld in a pod with a service account, or pass one of the flags"
    )]
    InCluster(kube::config::InClusterError),
    /// The HTTP client could not be set up (e.g. TLS).
    #[error("failed to create a Kubernetes client: {0}")]
    Client(kube::Error),
    /// `NODE_NAME` is unset and so is one of `POD_NAME` / `POD_NAMESPACE`.
    #[error("env variables POD_NAME and POD_NAMESPACE must be set")]
    PodEnv,
    /// Reading our pod failed.
    #[error("error retrieving pod spec for '{namespace}/{name}': {cause}")]
    PodLookup {
        /// `POD_NAMESPACE`.
        namespace: String,
        /// `POD_NAME`.
        name: String,
        /// The API error.
        cause: kube::Error,
    },
    /// Our pod has no `spec.nodeName`.
    #[error("node name not present in pod spec '{namespace}/{name}'")]
    NoNodeName {
        /// `POD_NAMESPACE`.
        namespace: String,
        /// `POD_NAME`.
        name: String,
    },
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|v| !v.is_empty())
}

fn parse_url<U>(url: &str) -> Result<U, ClientError>
where
    U: std::str::FromStr,
    U::Err: std::fmt::Display,
{
    url.parse::<U>().map_err(|e| ClientError::BadUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

async fn load_kubeconfig(path: &Path) -> Result<Config, ClientError> {
    let err = |cause| ClientError::Kubeconfig {
        path: path.to_owned(),
        cause,
    };
    let file = Kubeconfig::read_from(path).map_err(err)?;
    Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(err)
}

/// The client configuration for `opts`, following Flannel's precedence (module docs).
pub async fn client_config(opts: &ClientOptions) -> Result<Config, ClientError> {
    let url = nonempty(opts.api_url.as_deref());
    let kubeconfig = opts
        .kubeconfig
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty());
    match (url, kubeconfig) {
        (url, Some(path)) => {
            let mut config = load_kubeconfig(path).await?;
            if let Some(url) = url {
                config.cluster_url = parse_url(url)?;
            }
            Ok(config)
        }
        (Some(url), None) => Ok(Config::new(parse_url(url)?)),
        (None, None) => Config::incluster().map_err(ClientError::InCluster),
    }
}

/// A failure to reach the API server (connecting, TLS, a timeout), naming the server and
/// every cause: `Kubernetes API https://192.0.2.1:6443/: client error (Connect): tcp connect
/// error: Connection refused (os error 111)`.
#[derive(Debug, thiserror::Error)]
#[error("Kubernetes API {url}: {cause}")]
pub struct Unreachable {
    /// The API server's URL.
    pub url: String,
    /// What failed, with its causes.
    pub cause: String,
}

/// `err` as an [`Unreachable`] for `url`; kube's own errors pass unchanged (kube matches on
/// them).
fn name_the_server(url: &str, err: BoxError) -> BoxError {
    if err.is::<kube::Error>() || err.is::<Unreachable>() {
        return err;
    }
    Box::new(Unreachable {
        url: url.to_owned(),
        cause: crate::error_text::chain(&*err),
    })
}

/// A client for `opts` (see [`client_config`]). Must run inside a tokio runtime.
pub async fn connect(opts: &ClientOptions) -> Result<Client, ClientError> {
    let config = client_config(opts).await?;
    let url = config.cluster_url.to_string();
    tracing::info!(url = %url, "using the Kubernetes API");
    let builder = ClientBuilder::try_from(config).map_err(ClientError::Client)?;
    let layer = tower::layer::layer_fn(move |service| {
        let url = url.clone();
        tower::ServiceExt::map_err(service, move |e: BoxError| name_the_server(&url, e))
    });
    Ok(builder.with_layer(&layer).build())
}

/// Our node's name from the environment: `NODE_NAME`, else `POD_NAME` in `POD_NAMESPACE` →
/// its `spec.nodeName` (one GET of the pod).
pub async fn node_name(client: &Client) -> Result<String, ClientError> {
    let var = |k: &str| std::env::var(k).ok();
    node_name_from(
        client,
        var("NODE_NAME").as_deref(),
        var("POD_NAME").as_deref(),
        var("POD_NAMESPACE").as_deref(),
    )
    .await
}

/// [`node_name`] with the three environment values passed in (empty counts as unset).
pub async fn node_name_from(
    client: &Client,
    node_name: Option<&str>,
    pod_name: Option<&str>,
    pod_namespace: Option<&str>,
) -> Result<String, ClientError> {
    if let Some(n) = nonempty(node_name) {
        return Ok(n.to_owned());
    }
    let (Some(name), Some(namespace)) = (nonempty(pod_name), nonempty(pod_namespace)) else {
        return Err(ClientError::PodEnv);
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods
        .get(name)
        .await
        .map_err(|cause| ClientError::PodLookup {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            cause,
        })?;
    pod.spec
        .and_then(|s| s.node_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ClientError::NoNodeName {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_their_cause_once() {
        let err = ClientError::PodLookup {
            namespace: "kube-flannel".into(),
            name: "kube-flannel-ds-x".into(),
            cause: kube::Error::LinesCodecMaxLineLengthExceeded,
        };
        assert_eq!(
            err.to_string(),
            "error retrieving pod spec for 'kube-flannel/kube-flannel-ds-x': \
             Error finding newline character"
        );
        assert!(std::error::Error::source(&err).is_none());
        let err = Unreachable {
            url: "https://192.0.2.1:6443/".into(),
            cause: "client error (Connect): tcp connect error".into(),
        };
        assert_eq!(
            err.to_string(),
            "Kubernetes API https://192.0.2.1:6443/: client error (Connect): tcp connect error"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_api_server_and_the_cause() {
        // A port nothing listens on, on loopback.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let client = connect(&ClientOptions {
            api_url: Some(url.clone()),
            kubeconfig: None,
        })
        .await
        .unwrap();
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let text = pods.get("x").await.unwrap_err().to_string();
        assert!(
            text.contains(&format!("Kubernetes API {url}/: client error (Connect)")),
            "{text}"
        );
        assert!(text.contains("Connection refused"), "{text}");
        assert!(
            !text.contains("Os {") && !text.contains("ConnectError("),
            "{text}"
        );
    }
}
