//! The VICI messages the ipsec backend sends charon (strongSwan's `vici` plugin), as Flannel
//! sends them through goStrongswanVici: `load-shared`, `load-conn`, `unload-conn` and (not
//! in Flannel) `terminate`. The wire format and the socket are `rsvici`'s and `serde_vici`'s;
//! this module owns the message contents, golden-tested.
//!
//! Flannel's library writes every field of its structs that has no `omitempty`, empty or
//! not: the auth rounds carry `id = ""` and the IKE config `rekey_time = ""`. They are
//! written here the same way, so charon configures a tunnel exactly as for a Go Flannel
//! peer.

use std::collections::BTreeMap;
use std::path::Path;

use flannel_planner::ipsec::{Connection, IKE_PROPOSAL, REQID};
use serde::{Deserialize, Serialize};

/// Where charon listens (Flannel's `unix:///var/run/charon.vici`).
pub const SOCKET: &str = "/var/run/charon.vici";

/// `load-shared`: a key and the identities it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadShared<'a> {
    /// `IKE`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The key.
    pub data: &'a str,
    /// The identities (a public IP).
    pub owners: Vec<String>,
}

impl<'a> LoadShared<'a> {
    /// Flannel's: the PSK for one public IP.
    pub fn psk(psk: &'a str, owner: std::net::Ipv4Addr) -> Self {
        LoadShared {
            kind: "IKE",
            data: psk,
            owners: vec![owner.to_string()],
        }
    }
}

/// One authentication round (`local`, `remote`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Auth {
    /// Flannel writes an empty id.
    pub id: &'static str,
    /// `psk`.
    pub auth: &'static str,
}

/// A CHILD_SA config (goStrongswanVici's `ChildSAConf`, the fields Flannel sets or that have
/// no `omitempty`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Child {
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub esp_proposals: Vec<String>,
    pub start_action: &'static str,
    pub close_action: &'static str,
    pub reqid: String,
    pub rekey_time: &'static str,
    pub mode: &'static str,
    pub policies: &'static str,
    pub dpd_action: &'static str,
}

/// An IKE_SA config (goStrongswanVici's `IKEConf`, likewise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ike {
    pub local_addrs: Vec<String>,
    pub remote_addrs: Vec<String>,
    pub proposals: Vec<String>,
    pub version: &'static str,
    pub encap: &'static str,
    pub keyingtries: &'static str,
    pub rekey_time: &'static str,
    pub local: Auth,
    pub remote: Auth,
    pub children: BTreeMap<String, Child>,
}

/// `load-conn`: one connection, by name.
pub type LoadConn = BTreeMap<String, Ike>;

/// Flannel's connection for a planned tunnel (`LoadConnection`).
pub fn load_conn(c: &Connection, esp_proposal: &str, udp_encap: bool) -> LoadConn {
    let child = Child {
        local_ts: vec![c.local_ts.to_string()],
        remote_ts: vec![c.remote_ts.to_string()],
        esp_proposals: vec![esp_proposal.to_owned()],
        start_action: "start",
        close_action: "trap",
        reqid: REQID.to_string(),
        rekey_time: "1h",
        mode: "tunnel",
        policies: "no",
        dpd_action: "restart",
    };
    let psk = Auth {
        id: "",
        auth: "psk",
    };
    let ike = Ike {
        local_addrs: vec![c.local_addr.to_string()],
        remote_addrs: vec![c.remote_addr.to_string()],
        proposals: vec![IKE_PROPOSAL.to_owned()],
        version: "2",
        // Go's strconv.FormatBool, which charon reads as a boolean.
        encap: if udp_encap { "true" } else { "false" },
        keyingtries: "0",
        rekey_time: "",
        local: psk.clone(),
        remote: psk,
        children: BTreeMap::from([(c.child.clone(), child)]),
    };
    BTreeMap::from([(c.name.clone(), ike)])
}

/// `unload-conn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnloadConn<'a> {
    pub name: &'a str,
}

/// `terminate` of a connection's IKE_SA, without waiting for the (gone) peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Terminate<'a> {
    pub ike: &'a str,
    pub force: &'static str,
    pub timeout: &'static str,
}

impl<'a> Terminate<'a> {
    /// Terminate the IKE_SA of connection `ike` and return at once.
    pub fn now(ike: &'a str) -> Self {
        Terminate {
            ike,
            force: "yes",
            timeout: "-1",
        }
    }
}

/// charon's answer to a command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Answer {
    /// `yes` or `no`.
    #[serde(default)]
    pub success: bool,
    /// Why not.
    #[serde(default)]
    pub errmsg: Option<String>,
}

/// A failed VICI command.
#[derive(Debug, thiserror::Error)]
pub enum ViciError {
    /// The socket could not be reached.
    #[error("connecting to charon at {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed (charon went away, garbage).
    #[error("{cmd}: {source}")]
    Transport {
        cmd: &'static str,
        #[source]
        source: rsvici::Error,
    },
    /// charon said no.
    #[error("{cmd} {what}: {}", errmsg.as_deref().unwrap_or("failed"))]
    Refused {
        cmd: &'static str,
        what: String,
        errmsg: Option<String>,
    },
}

/// A connection to charon's VICI socket.
pub struct Vici {
    client: rsvici::Client,
}

impl std::fmt::Debug for Vici {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vici").finish_non_exhaustive()
    }
}

impl Vici {
    /// Connect to the socket at `path`.
    pub async fn connect(path: &Path) -> Result<Vici, ViciError> {
        let client = rsvici::unix::connect(path)
            .await
            .map_err(|source| ViciError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Vici { client })
    }

    async fn command<T: Serialize>(
        &mut self,
        cmd: &'static str,
        what: String,
        msg: T,
    ) -> Result<(), ViciError> {
        let answer: Answer = self
            .client
            .request(cmd, msg)
            .await
            .map_err(|source| ViciError::Transport { cmd, source })?;
        if answer.success {
            Ok(())
        } else {
            Err(ViciError::Refused {
                cmd,
                what,
                errmsg: answer.errmsg,
            })
        }
    }

    /// Load the PSK for `owner`.
    pub async fn load_shared(
        &mut self,
        psk: &str,
        owner: std::net::Ipv4Addr,
    ) -> Result<(), ViciError> {
        self.command(
            "load-shared",
            owner.to_string(),
            LoadShared::psk(psk, owner),
        )
        .await
    }

    /// Load (or replace) a connection.
    pub async fn load_conn(
        &mut self,
        c: &Connection,
        esp_proposal: &str,
        udp_encap: bool,
    ) -> Result<(), ViciError> {
        self.command(
            "load-conn",
            c.name.clone(),
            load_conn(c, esp_proposal, udp_encap),
        )
        .await
    }

    /// Unload a connection by name.
    pub async fn unload_conn(&mut self, name: &str) -> Result<(), ViciError> {
        self.command("unload-conn", name.to_owned(), UnloadConn { name })
            .await
    }

    /// Terminate a connection's IKE_SA (and its CHILD_SAs) without waiting.
    pub async fn terminate(&mut self, name: &str) -> Result<(), ViciError> {
        self.command("terminate", name.to_owned(), Terminate::now(name))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flannel_planner::ipsec::Local;
    use std::net::Ipv4Addr;

    /// VICI message elements (strongSwan's `src/libcharon/plugins/vici/README.md`).
    struct Msg(Vec<u8>);

    impl Msg {
        fn name(&mut self, t: u8, name: &str) -> &mut Self {
            self.0.push(t);
            self.0.push(u8::try_from(name.len()).expect("short"));
            self.0.extend(name.as_bytes());
            self
        }
        fn value(&mut self, v: &str) {
            self.0
                .extend(u16::try_from(v.len()).expect("short").to_be_bytes());
            self.0.extend(v.as_bytes());
        }
        fn kv(&mut self, k: &str, v: &str) -> &mut Self {
            self.name(3, k).value(v);
            self
        }
        fn section(&mut self, k: &str) -> &mut Self {
            self.name(1, k)
        }
        fn end(&mut self) -> &mut Self {
            self.0.push(2);
            self
        }
        fn list(&mut self, k: &str, items: &[&str]) -> &mut Self {
            self.name(4, k);
            for i in items {
                self.0.push(5);
                self.value(i);
            }
            self.0.push(6);
            self
        }
    }

    fn conn() -> Connection {
        Connection::new(
            &Local {
                subnet: "198.18.1.0/24".parse().expect("net"),
                public_ip: Ipv4Addr::new(192, 0, 2, 1),
            },
            "198.18.2.0/24".parse().expect("net"),
            Ipv4Addr::new(192, 0, 2, 2),
        )
    }

    #[test]
    fn load_conn_golden() {
        let bytes = serde_vici::to_vec(&load_conn(
            &conn(),
            "aes128gcm16-sha256-prfsha256-ecp256",
            false,
        ))
        .expect("encodes");
        let mut m = Msg(Vec::new());
        m.section("192.0.2.1-198.18.1.0/24-198.18.2.0/24-192.0.2.2")
            .list("local_addrs", &["192.0.2.1"])
            .list("remote_addrs", &["192.0.2.2"])
            .list("proposals", &["aes256-sha256-modp4096"])
            .kv("version", "2")
            .kv("encap", "false")
            .kv("keyingtries", "0")
            .kv("rekey_time", "")
            .section("local")
            .kv("id", "")
            .kv("auth", "psk")
            .end()
            .section("remote")
            .kv("id", "")
            .kv("auth", "psk")
            .end()
            .section("children")
            .section("198.18.1.0/24-198.18.2.0/24")
            .list("local_ts", &["198.18.1.0/24"])
            .list("remote_ts", &["198.18.2.0/24"])
            .list("esp_proposals", &["aes128gcm16-sha256-prfsha256-ecp256"])
            .kv("start_action", "start")
            .kv("close_action", "trap")
            .kv("reqid", "11")
            .kv("rekey_time", "1h")
            .kv("mode", "tunnel")
            .kv("policies", "no")
            .kv("dpd_action", "restart")
            .end()
            .end()
            .end();
        assert_eq!(bytes, m.0);
    }

    #[test]
    fn udp_encap_and_the_proposal_reach_the_connection() {
        let c = load_conn(&conn(), "aes256gcm16-ecp384", true);
        let ike = c.values().next().expect("one");
        assert_eq!(ike.encap, "true");
        let child = ike.children.values().next().expect("one child");
        assert_eq!(child.esp_proposals, ["aes256gcm16-ecp384"]);
    }

    #[test]
    fn load_shared_unload_and_terminate_golden() {
        let psk = "k".repeat(96);
        let bytes = serde_vici::to_vec(&LoadShared::psk(&psk, Ipv4Addr::new(192, 0, 2, 2)))
            .expect("encodes");
        let mut m = Msg(Vec::new());
        m.kv("type", "IKE")
            .kv("data", &psk)
            .list("owners", &["192.0.2.2"]);
        assert_eq!(bytes, m.0);

        let bytes = serde_vici::to_vec(&UnloadConn { name: "a-b" }).expect("encodes");
        let mut m = Msg(Vec::new());
        m.kv("name", "a-b");
        assert_eq!(bytes, m.0);

        let bytes = serde_vici::to_vec(&Terminate::now("a-b")).expect("encodes");
        let mut m = Msg(Vec::new());
        m.kv("ike", "a-b").kv("force", "yes").kv("timeout", "-1");
        assert_eq!(bytes, m.0);
    }

    #[test]
    fn answers_decode() {
        let mut m = Msg(Vec::new());
        m.kv("success", "no").kv("errmsg", "unknown connection");
        let a: Answer = serde_vici::from_slice(&m.0).expect("decodes");
        assert_eq!(
            a,
            Answer {
                success: false,
                errmsg: Some("unknown connection".into())
            }
        );
        let mut m = Msg(Vec::new());
        m.kv("success", "yes");
        let a: Answer = serde_vici::from_slice(&m.0).expect("decodes");
        assert!(a.success);
    }
}
