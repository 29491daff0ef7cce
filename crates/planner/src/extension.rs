//! The extension backend's decisions: which of the operator's commands to run, with which
//! argument vector, environment and standard input. Running them is the daemon's
//! (`flanneld/src/extension.rs`); nothing here starts a process.
//!
//! As in Flannel (since v0.28.2): a command is split on whitespace (Go's `strings.Fields`),
//! `$VAR` and `${VAR}` in every word are replaced from flanneld's environment plus the
//! command's own variables (Go's `os.Expand`), and the words are executed directly, without a
//! shell. The command's environment is flanneld's plus its own variables.
//!
//! - `PreStartupCommand`: before the lease is acquired; its output becomes our `BackendData`
//!   as a JSON string.
//! - `PostStartupCommand`: once the lease is held; `NETWORK`, `SUBNET`, `IPV6SUBNET`,
//!   `PUBLIC_IP`, `PUBLIC_IPV6` (Go's spellings of absent values: `0.0.0.0/0`, `::/0`,
//!   `<nil>`).
//! - `SubnetAddCommand` / `SubnetRemoveCommand`: per extension peer, with `SUBNET` and
//!   `PUBLIC_IP` of the peer and the peer's `BackendData` string and a newline on stdin.
//!
//! Unlike Flannel, a command that fails is run again on the next pass ([`plan`] asks for it
//! until it succeeds) instead of ending flanneld (pre/post start-up) or being forgotten
//! (add/remove); a peer's add command runs once per change of its lease, not again on every
//! renewal.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use flannel_model::{gojson, Lease, RawJson, SubnetKey};
use ipnet::Ipv4Net;

/// `BackendType` of our lease and of the peers the commands are run for.
pub const BACKEND_TYPE: &str = "extension";

/// How long one command may run before it is killed (and counted as failed).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The four commands of the `Backend` object, as written (empty: not configured).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    pub pre_startup: String,
    pub post_startup: String,
    pub subnet_add: String,
    pub subnet_remove: String,
}

/// Which command an [`Invocation`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    PreStartup,
    PostStartup,
    SubnetAdd,
    SubnetRemove,
}

impl Hook {
    /// The option's name, for logs.
    pub fn option(self) -> &'static str {
        match self {
            Hook::PreStartup => "PreStartupCommand",
            Hook::PostStartup => "PostStartupCommand",
            Hook::SubnetAdd => "SubnetAddCommand",
            Hook::SubnetRemove => "SubnetRemoveCommand",
        }
    }
}

/// One command to run: executed as `program args…` (no shell), with flanneld's environment
/// plus `env`, `stdin` written to its standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub hook: Hook,
    /// The command as configured, for logs.
    pub command: String,
    pub program: String,
    pub args: Vec<String>,
    /// Variables added to flanneld's environment, in Go's order.
    pub env: Vec<(String, String)>,
    pub stdin: String,
    /// The peer a subnet command is for.
    pub peer: Option<Peer>,
}

/// What the commands need of one extension peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
    /// Its `BackendData` JSON string, decoded ("" when it has none).
    pub data: String,
}

impl Peer {
    /// The peer a lease describes; `Err` (to be logged, the lease then ignored as Flannel
    /// does) when it is not an extension lease or its `BackendData` is not a JSON string.
    pub fn from_lease(lease: &Lease) -> Result<Peer, String> {
        if lease.attrs.backend_type != BACKEND_TYPE {
            return Err(format!(
                "Ignoring non-extension subnet: type={}",
                lease.attrs.backend_type
            ));
        }
        let data = match &lease.attrs.backend_data {
            None => String::new(),
            Some(raw) if raw.as_str() == "null" => String::new(),
            Some(raw) => gojson::unquote(raw.as_str()).ok_or_else(|| {
                format!(
                    "failed to unmarshal BackendData: {} is not a JSON string",
                    raw.as_str()
                )
            })?,
        };
        Ok(Peer {
            subnet: lease.subnet.ipv4,
            public_ip: lease.attrs.public_ip,
            data,
        })
    }
}

/// What the runtime is built from (`RuntimeSpec::Extension`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionSpec {
    pub commands: Commands,
    /// `Network`.
    pub network: Option<Ipv4Net>,
    /// Our `PublicIP` (the interface's address, as Flannel's extension advertises).
    pub public_ip: Ipv4Addr,
    /// Our `PublicIPv6`, when IPv6 is on.
    pub public_ipv6: Option<Ipv6Addr>,
    /// Longest a command may run.
    pub timeout: Duration,
}

impl ExtensionSpec {
    /// `PreStartupCommand`, if configured: no variables of its own, an empty line on stdin.
    pub fn pre_startup(&self, environ: &dyn Fn(&str) -> Option<String>) -> Option<Invocation> {
        invocation(
            Hook::PreStartup,
            &self.commands.pre_startup,
            Vec::new(),
            String::new(),
            None,
            environ,
        )
    }

    /// `PostStartupCommand` for our lease, if configured.
    pub fn post_startup(
        &self,
        own: &SubnetKey,
        environ: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Invocation> {
        let env = vec![
            (
                "NETWORK".to_owned(),
                self.network
                    .map_or_else(|| "0.0.0.0/0".to_owned(), |n| n.to_string()),
            ),
            ("SUBNET".to_owned(), own.ipv4.to_string()),
            (
                "IPV6SUBNET".to_owned(),
                own.ipv6
                    .map_or_else(|| "::/0".to_owned(), |n| n.to_string()),
            ),
            ("PUBLIC_IP".to_owned(), self.public_ip.to_string()),
            (
                "PUBLIC_IPV6".to_owned(),
                // Go prints its nil *IP6 as `<nil>`.
                self.public_ipv6
                    .map_or_else(|| "<nil>".to_owned(), |a| a.to_string()),
            ),
        ];
        invocation(
            Hook::PostStartup,
            &self.commands.post_startup,
            env,
            String::new(),
            None,
            environ,
        )
    }

    /// `SubnetAddCommand` or `SubnetRemoveCommand` for `peer`, if configured.
    pub fn subnet(
        &self,
        hook: Hook,
        peer: &Peer,
        environ: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Invocation> {
        let command = match hook {
            Hook::SubnetRemove => &self.commands.subnet_remove,
            _ => &self.commands.subnet_add,
        };
        let env = vec![
            ("SUBNET".to_owned(), peer.subnet.to_string()),
            ("PUBLIC_IP".to_owned(), peer.public_ip.to_string()),
        ];
        invocation(
            hook,
            command,
            env,
            peer.data.clone(),
            Some(peer.clone()),
            environ,
        )
    }
}

/// The commands' progress, as the runtime records it: whether the post start-up command has
/// succeeded, and each peer the add command has been run for (true: it succeeded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub post_startup_done: bool,
    pub added: BTreeMap<Ipv4Net, (Peer, bool)>,
}

impl Progress {
    /// Record the end of `inv`.
    pub fn record(&mut self, inv: &Invocation, ok: bool) {
        match (inv.hook, &inv.peer) {
            (Hook::PostStartup, _) => self.post_startup_done |= ok,
            (Hook::SubnetAdd, Some(p)) => {
                self.added.insert(p.subnet, (p.clone(), ok));
            }
            (Hook::SubnetRemove, Some(p)) if ok => {
                self.added.remove(&p.subnet);
            }
            _ => {}
        }
    }
}

/// The commands one pass runs, in order, for the extension peers `peers`: the post start-up
/// command until it has succeeded (nothing else before it), then the remove command for
/// every peer gone since its add command ran, then the add command for every peer whose add
/// has not succeeded for its current lease. A peer whose lease changed gets the add command
/// again (as Flannel runs it for every lease event), not a remove first.
///
/// Without a configured command the step counts as done: the progress records it as such.
pub fn plan(
    spec: &ExtensionSpec,
    own: &SubnetKey,
    peers: &BTreeMap<Ipv4Net, Peer>,
    progress: &mut Progress,
    environ: &dyn Fn(&str) -> Option<String>,
) -> Vec<Invocation> {
    if !progress.post_startup_done {
        match spec.post_startup(own, environ) {
            Some(inv) => return vec![inv],
            None => progress.post_startup_done = true,
        }
    }
    let mut out = Vec::new();
    let mut unconfigured = Vec::new();
    for (subnet, (peer, _)) in &progress.added {
        if !peers.contains_key(subnet) {
            match spec.subnet(Hook::SubnetRemove, peer, environ) {
                Some(inv) => out.push(inv),
                None => unconfigured.push(*subnet),
            }
        }
    }
    for subnet in unconfigured {
        progress.added.remove(&subnet);
    }
    for (subnet, peer) in peers {
        if progress.added.get(subnet) == Some(&(peer.clone(), true)) {
            continue;
        }
        match spec.subnet(Hook::SubnetAdd, peer, environ) {
            Some(inv) => out.push(inv),
            None => {
                progress.added.insert(*subnet, (peer.clone(), true));
            }
        }
    }
    out
}

/// `BackendData` from the pre start-up command's output: the output, trimmed, as a JSON
/// string (encoded as Go's `json.Marshal` encodes one).
pub fn backend_data(output: &str) -> RawJson {
    RawJson::from_value(&serde_json::Value::String(output.trim().to_owned()))
}

fn invocation(
    hook: Hook,
    command: &str,
    env: Vec<(String, String)>,
    stdin: String,
    peer: Option<Peer>,
    environ: &dyn Fn(&str) -> Option<String>,
) -> Option<Invocation> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| environ(name))
            .unwrap_or_default()
    };
    let mut words = command.split_whitespace().map(|w| expand(w, &lookup));
    let program = words.next()?;
    let args = words.collect();
    Some(Invocation {
        hook,
        command: command.to_owned(),
        program,
        args,
        env,
        stdin: format!("{stdin}\n"),
        peer,
    })
}

/// Go's `os.Expand`: `$NAME` (letters, digits, `_`), `${NAME}`, and the one-character shell
/// specials (`$1`, `$@`, `${?}`, …) replaced by `lookup`; a `$` followed by nothing usable is
/// kept; the bad syntax `${}` and an unclosed `${` are dropped.
pub fn expand(s: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut j = 0;
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            out.push_str(&s[i..j]);
            let (name, width) = shell_name(&s[j + 1..]);
            match (name, width) {
                ("", w) if w > 0 => {}
                ("", _) => out.push('$'),
                (name, _) => out.push_str(&lookup(name)),
            }
            j += width;
            i = j + 1;
        }
        j += 1;
    }
    out.push_str(&s[i.min(s.len())..]);
    out
}

fn is_shell_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn is_alnum(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// The variable name at the start of `s` (just after a `$`) and how many bytes it spans.
fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_shell_special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        return match b.iter().skip(1).position(|&c| c == b'}') {
            Some(0) => ("", 2),
            Some(p) => (&s[1..p + 1], p + 2),
            None => ("", 1),
        };
    }
    if is_shell_special(b[0]) {
        return (&s[0..1], 1);
    }
    let n = b.iter().take_while(|&&c| is_alnum(c)).count();
    (&s[..n], n)
}

#[cfg(test)]
mod tests;
