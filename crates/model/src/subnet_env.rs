//! `/run/flannel/subnet.env`, the file the `flannel` CNI plugin reads.
//!
//! Exact order and format of Flannel's `WriteSubnetFile`:
//! ```text
//! FLANNEL_NETWORK=10.244.0.0/16
//! FLANNEL_SUBNET=10.244.1.1/24
//! FLANNEL_IPV6_NETWORK=2001:cafe:42::/56
//! FLANNEL_IPV6_SUBNET=2001:cafe:42::1/64
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=true
//! ```
//!
//! # Rendering ([`SubnetEnv::render`])
//!
//! One `KEY=value\n` line per `Some` field, in the order above. Go writes the two IPv4 lines
//! when IPv4 is enabled, the two IPv6 lines when IPv6 is enabled, and **always** the MTU and
//! IPMASQ lines (the CNI plugin refuses a file without them), so flanneld must fill `mtu` and
//! `ipmasq`. IPv6 addresses are printed like Flannel's `ip.IP6.String()`.
//!
//! # Reading back ([`SubnetEnv::parse`], [`SubnetEnv::read`])
//!
//! flanneld reads its previous file with `godotenv.Read` (v1.5.1) and this parser follows
//! that library: blank lines and `#` comments skipped, optional `export `, `KEY=value` or
//! `KEY: value`, single/double quotes, ` #` trailing comments, `$VAR` expansion from earlier
//! keys, CRLF line ends; a syntax error makes the whole file unreadable (every field `None`),
//! as Flannel then ignores the file. Each `FLANNEL_*NETWORK`/`FLANNEL_*SUBNET` value is split on
//! `,` and every piece parsed as a CIDR; exactly one valid piece must remain, else the field is
//! `None` (Flannel: "more than 1 entry found" / "no subnet found"). A piece of the wrong family
//! also yields `None` (Go would panic for an IPv6 `FLANNEL_SUBNET`, or silently map an IPv4
//! `FLANNEL_IPV6_SUBNET` into IPv6). Addresses are kept as written (`10.244.1.1/24`); Flannel
//! uses the network (`.trunc()`). `FLANNEL_MTU` is a decimal `u32`, `FLANNEL_IPMASQ` is `true`
//! exactly when the value is `true`, as the CNI plugin reads it.
//!
//! # Writing ([`SubnetEnv::write_atomic`])
//!
//! Like Flannel (`os.MkdirAll(dir, 0755)` + `renameio.WriteFile(…, 0644, IgnoreUmask)`): the
//! parent directory is created, the text goes to a temporary file in the same directory which
//! gets mode 0644 with `fchmod` (so the umask does not matter), is fsynced and renamed over the
//! target; the directory is then fsynced. A reader sees the old or the new file, never a part.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use ipnet::{Ipv4Net, Ipv6Net};
use regex::{Captures, Regex};

use crate::goip::{self, GoCidr};

/// The contents of `subnet.env`. Subnets are kept as written (`10.244.1.1/24`: the first
/// usable address with the subnet's prefix length).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubnetEnv {
    /// `FLANNEL_NETWORK`: the IPv4 `Network`.
    pub network: Option<Ipv4Net>,
    /// `FLANNEL_SUBNET`: first usable address of our IPv4 subnet, with its prefix.
    pub subnet: Option<Ipv4Net>,
    /// `FLANNEL_IPV6_NETWORK`: the `IPv6Network`.
    pub ipv6_network: Option<Ipv6Net>,
    /// `FLANNEL_IPV6_SUBNET`: first usable address of our IPv6 subnet, with its prefix.
    pub ipv6_subnet: Option<Ipv6Net>,
    /// `FLANNEL_MTU`: the pod MTU (always written by flanneld).
    pub mtu: Option<u32>,
    /// `FLANNEL_IPMASQ`: the value of `--ip-masq` (always written by flanneld).
    pub ipmasq: Option<bool>,
}

/// Reading or writing `subnet.env` failed. Each message names the file and includes the I/O
/// error, which is therefore not also exposed as `source()` (an `{:#}` chain would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum SubnetEnvError {
    /// The file exists but could not be read.
    #[error("reading {path}: {cause}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// Creating the directory, writing, syncing or renaming failed.
    #[error("writing {path}: {cause}")]
    Write {
        /// The target file.
        path: std::path::PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
}

impl SubnetEnv {
    /// The value Flannel writes as `FLANNEL_SUBNET` for a leased subnet: the network address
    /// plus one, with the subnet's prefix (`10.244.1.0/24` → `10.244.1.1/24`).
    pub fn first_usable_v4(subnet: Ipv4Net) -> Ipv4Net {
        let addr = Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1));
        Ipv4Net::new(addr, subnet.prefix_len()).unwrap_or(subnet)
    }

    /// The value Flannel writes as `FLANNEL_IPV6_SUBNET` (`fd00:0:0:1::/64` → `fd00:0:0:1::1/64`).
    pub fn first_usable_v6(subnet: Ipv6Net) -> Ipv6Net {
        let addr = std::net::Ipv6Addr::from(u128::from(subnet.network()).wrapping_add(1));
        Ipv6Net::new(addr, subnet.prefix_len()).unwrap_or(subnet)
    }

    /// The file text, byte-identical to Flannel's `WriteSubnetFile` for the same values.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        if let Some(n) = self.network {
            let _ = writeln!(out, "FLANNEL_NETWORK={n}");
        }
        if let Some(n) = self.subnet {
            let _ = writeln!(out, "FLANNEL_SUBNET={n}");
        }
        if let Some(n) = self.ipv6_network {
            let _ = writeln!(out, "FLANNEL_IPV6_NETWORK={}", fmt_v6(n));
        }
        if let Some(n) = self.ipv6_subnet {
            let _ = writeln!(out, "FLANNEL_IPV6_SUBNET={}", fmt_v6(n));
        }
        if let Some(m) = self.mtu {
            let _ = writeln!(out, "FLANNEL_MTU={m}");
        }
        if let Some(b) = self.ipmasq {
            let _ = writeln!(out, "FLANNEL_IPMASQ={b}");
        }
        out
    }

    /// Parses the file text leniently, as flanneld reads its previous file (see module docs).
    pub fn parse(text: &str) -> SubnetEnv {
        let Some(vars) = dotenv_parse(text.as_bytes()) else {
            return SubnetEnv::default();
        };
        let single = |key: &str| -> Option<GoCidr> {
            let value = vars.get(key)?;
            let mut valid = value.split(',').filter_map(goip::parse_cidr);
            match (valid.next(), valid.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        };
        let v4 = |key: &str| match single(key)? {
            GoCidr::V4(a, len) => Ipv4Net::new(a, len).ok(),
            GoCidr::V6(..) => None,
        };
        let v6 = |key: &str| match single(key)? {
            GoCidr::V6(a, len) => Ipv6Net::new(a, len).ok(),
            GoCidr::V4(..) => None,
        };
        let mtu = vars.get("FLANNEL_MTU").and_then(|v| {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            v.parse::<u32>().ok()
        });
        SubnetEnv {
            network: v4("FLANNEL_NETWORK"),
            subnet: v4("FLANNEL_SUBNET"),
            ipv6_network: v6("FLANNEL_IPV6_NETWORK"),
            ipv6_subnet: v6("FLANNEL_IPV6_SUBNET"),
            mtu,
            ipmasq: vars.get("FLANNEL_IPMASQ").map(|v| v == "true"),
        }
    }

    /// Reads and parses the file; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<SubnetEnv>, SubnetEnvError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(SubnetEnv::parse(&String::from_utf8_lossy(&bytes)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(cause) => Err(SubnetEnvError::Read {
                path: path.to_path_buf(),
                cause,
            }),
        }
    }

    /// Writes [`render`](Self::render)'s text to `path` atomically with mode 0644, creating the
    /// parent directory (mode 0755, minus umask, like Go's `MkdirAll`) if needed.
    pub fn write_atomic(&self, path: &Path) -> Result<(), SubnetEnvError> {
        let err = |cause| SubnetEnvError::Write {
            path: path.to_path_buf(),
            cause,
        };
        let dir: PathBuf = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(err)?;
        let prefix = format!(
            ".{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempfile_in(&dir)
            .map_err(err)?;
        tmp.write_all(self.render().as_bytes()).map_err(err)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        Ok(())
    }
}

fn fmt_v6(n: Ipv6Net) -> String {
    format!("{}/{}", goip::ipv6_to_string(n.addr()), n.prefix_len())
}

// ---------------------------------------------------------------------------------------------
// godotenv v1.5.1 parser
// ---------------------------------------------------------------------------------------------

/// godotenv's `isSpace`: whitespace that is not a line break.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

/// Decodes the char at the start of `b` (U+FFFD and length 1 for an invalid byte).
fn first_char(b: &[u8]) -> (char, usize) {
    let end = b.len().min(4);
    for n in 1..=end {
        if let Ok(s) = std::str::from_utf8(&b[..n]) {
            if let Some(c) = s.chars().next() {
                return (c, n);
            }
        }
    }
    ('\u{FFFD}', 1)
}

/// Go `bytes.TrimLeftFunc`.
fn trim_left(mut b: &[u8], f: impl Fn(char) -> bool) -> &[u8] {
    while !b.is_empty() {
        let (c, n) = first_char(b);
        if !f(c) {
            break;
        }
        b = &b[n..];
    }
    b
}

/// Go `bytes.IndexFunc`.
fn index_func(b: &[u8], f: impl Fn(char) -> bool) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        let (c, n) = first_char(&b[i..]);
        if f(c) {
            return Some(i);
        }
        i += n;
    }
    None
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// godotenv `parseBytes`; `None` on a syntax error.
fn dotenv_parse(src: &[u8]) -> Option<HashMap<String, String>> {
    let text = lossy(src).replace("\r\n", "\n");
    let mut out = HashMap::new();
    let mut cutset: &[u8] = text.as_bytes();
    while let Some(stmt) = statement_start(cutset) {
        let (key, rest) = locate_key_name(stmt)?;
        let (value, rest) = extract_var_value(rest, &out)?;
        out.insert(key, value);
        cutset = rest;
    }
    Some(out)
}

fn statement_start(mut src: &[u8]) -> Option<&[u8]> {
    loop {
        let pos = index_func(src, |c| !c.is_whitespace())?;
        src = &src[pos..];
        if src[0] != b'#' {
            return Some(src);
        }
        let pos = src.iter().position(|&b| b == b'\n')?;
        src = &src[pos..];
    }
}

fn locate_key_name(src: &[u8]) -> Option<(String, &[u8])> {
    let mut src = trim_left(src, is_space);
    if let Some(trimmed) = src.strip_prefix(b"export") {
        if index_func(trimmed, is_space) == Some(0) {
            src = trim_left(trimmed, is_space);
        }
    }
    let mut key: &[u8] = &[];
    let mut offset = 0;
    for (i, &byte) in src.iter().enumerate() {
        // godotenv ranges over bytes and looks at each as a rune (Latin-1).
        let c = char::from(byte);
        if is_space(c) {
            continue;
        }
        match byte {
            b'=' | b':' => {
                key = &src[..i];
                offset = i + 1;
                break;
            }
            b'_' => {}
            _ if c.is_alphabetic() || c.is_numeric() || c == '.' => {}
            _ => return None,
        }
    }
    if src.is_empty() {
        return None;
    }
    let key = lossy(key).trim_end_matches(char::is_whitespace).to_string();
    Some((key, trim_left(&src[offset..], is_space)))
}

fn extract_var_value<'a>(
    src: &'a [u8],
    vars: &HashMap<String, String>,
) -> Option<(String, &'a [u8])> {
    let quote = match src.first() {
        Some(&q @ (b'"' | b'\'')) => q,
        _ => {
            let end_of_line = match src.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => i,
                None if src.is_empty() => return Some((String::new(), &[])),
                None => src.len(),
            };
            let line: Vec<char> = lossy(&src[..end_of_line]).chars().collect();
            let mut end = line.len();
            if end == 0 {
                return Some((String::new(), &src[end_of_line..]));
            }
            for i in (1..end).rev() {
                if line[i] == '#' && is_space(line[i - 1]) {
                    end = i;
                    break;
                }
            }
            let value: String = line[..end].iter().collect();
            let value = value.trim_matches(is_space);
            return Some((expand_variables(value, vars), &src[end_of_line..]));
        }
    };
    for i in 1..src.len() {
        if src[i] != quote || src[i - 1] == b'\\' {
            continue;
        }
        let inner = lossy(&src[..i]);
        let q = char::from(quote);
        let mut value = inner.trim_end_matches(q).trim_start_matches(q).to_string();
        if quote == b'"' {
            value = expand_variables(&expand_escapes(&value), vars);
        }
        return Some((value, &src[i + 1..]));
    }
    None
}

static ESCAPE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\.").expect("invariant: the escape regex is valid"));
static UNESCAPE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\([^$])").expect("invariant: the unescape regex is valid"));
static EXPAND_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(\\)?(\$)(\()?\{?([A-Z0-9_]+)?\}?").expect("invariant: the expand regex is valid")
});

fn expand_escapes(s: &str) -> String {
    let out = ESCAPE_RE.replace_all(s, |c: &Captures<'_>| match &c[0] {
        "\\n" => "\n".to_string(),
        "\\r" => "\r".to_string(),
        other => other.to_string(),
    });
    UNESCAPE_RE.replace_all(&out, "${1}").into_owned()
}

fn expand_variables(v: &str, vars: &HashMap<String, String>) -> String {
    EXPAND_RE
        .replace_all(v, |c: &Captures<'_>| {
            let whole = &c[0];
            if c.get(1).is_some() {
                // `\$X` → `$X` (godotenv drops the backslash).
                whole[1..].to_string()
            } else if let Some(name) = c.get(4) {
                vars.get(name.as_str()).cloned().unwrap_or_default()
            } else {
                whole.to_string()
            }
        })
        .into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn dual() -> SubnetEnv {
        SubnetEnv {
            network: Some(v4("10.244.0.0/16")),
            subnet: Some(v4("10.244.1.1/24")),
            ipv6_network: Some(v6("2001:cafe:42::/56")),
            ipv6_subnet: Some(v6("2001:cafe:42::1/64")),
            mtu: Some(1450),
            ipmasq: Some(true),
        }
    }

    #[test]
    fn first_usable() {
        assert_eq!(
            SubnetEnv::first_usable_v4(v4("10.244.1.0/24")),
            v4("10.244.1.1/24")
        );
        assert_eq!(
            SubnetEnv::first_usable_v4(v4("10.244.1.128/25")),
            v4("10.244.1.129/25")
        );
        assert_eq!(
            SubnetEnv::first_usable_v6(v6("2001:cafe:42::/64")),
            v6("2001:cafe:42::1/64")
        );
        assert_eq!(
            SubnetEnv::first_usable_v6(v6("fd00:0:0:1::/64")),
            v6("fd00:0:0:1::1/64")
        );
    }

    #[test]
    fn render_golden_v4() {
        let env = SubnetEnv {
            network: Some(v4("10.244.0.0/16")),
            subnet: Some(SubnetEnv::first_usable_v4(v4("10.244.1.0/24"))),
            mtu: Some(1450),
            ipmasq: Some(true),
            ..SubnetEnv::default()
        };
        assert_eq!(
            env.render(),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        );
    }

    #[test]
    fn render_golden_dual_and_v6_only() {
        assert_eq!(
            dual().render(),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n\
             FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\n\
             FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        );
        let v6only = SubnetEnv {
            network: None,
            subnet: None,
            mtu: Some(1430),
            ipmasq: Some(false),
            ..dual()
        };
        assert_eq!(
            v6only.render(),
            "FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\n\
             FLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n"
        );
        assert_eq!(SubnetEnv::default().render(), "");
    }

    #[test]
    fn parse_own_output() {
        assert_eq!(SubnetEnv::parse(&dual().render()), dual());
    }

    #[test]
    fn parse_godotenv_forms() {
        let text = "# written by flanneld\n\n  export FLANNEL_NETWORK = \"10.244.0.0/16\"\r\n\
                    FLANNEL_SUBNET: '10.244.1.1/24'  # our subnet\n\
                    FLANNEL_IPV6_NETWORK=2001:cafe:42::/56 # comment\n\
                    FLANNEL_IPV6_SUBNET=\"2001:cafe:42::1/64\"\n\
                    FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true";
        assert_eq!(SubnetEnv::parse(text), dual());
    }

    #[test]
    fn parse_multiple_values_is_absent() {
        let env = SubnetEnv::parse(
            "FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24,junk\n",
        );
        assert_eq!(env.network, None, "two valid entries → absent");
        assert_eq!(
            env.subnet,
            Some(v4("10.244.1.1/24")),
            "one valid entry is used"
        );
    }

    #[test]
    fn parse_bad_values() {
        let env = SubnetEnv::parse(
            "FLANNEL_NETWORK=10.244.0.0\nFLANNEL_SUBNET=fd00::1/64\nFLANNEL_IPV6_SUBNET=10.0.0.1/24\n\
             FLANNEL_MTU=-1\nFLANNEL_IPMASQ=yes\n",
        );
        assert_eq!(
            env,
            SubnetEnv {
                ipmasq: Some(false),
                ..SubnetEnv::default()
            }
        );
        assert_eq!(SubnetEnv::parse("FLANNEL_MTU=+1450").mtu, None);
        assert_eq!(SubnetEnv::parse("FLANNEL_MTU=1450").mtu, Some(1450));
        assert_eq!(SubnetEnv::parse("").mtu, None);
    }

    #[test]
    fn parse_syntax_error_ignores_file() {
        // godotenv fails the whole file: Flannel then has no previous subnet.
        assert_eq!(
            SubnetEnv::parse("FLANNEL_SUBNET=10.244.1.1/24\nbad line here\n"),
            SubnetEnv::default()
        );
        assert_eq!(
            SubnetEnv::parse("FLANNEL_SUBNET=\"10.244.1.1/24\n"),
            SubnetEnv::default()
        );
        assert_eq!(
            SubnetEnv::parse("FLANNEL-SUBNET=10.244.1.1/24\n"),
            SubnetEnv::default()
        );
    }

    #[test]
    fn parse_later_key_wins_and_expansion() {
        let env = SubnetEnv::parse(
            "NET=10.244.0.0/16\nFLANNEL_NETWORK=${NET}\nFLANNEL_SUBNET=10.0.0.1/8\nFLANNEL_SUBNET=10.244.1.1/24\n",
        );
        assert_eq!(env.network, Some(v4("10.244.0.0/16")));
        assert_eq!(env.subnet, Some(v4("10.244.1.1/24")));
        // Single quotes: no expansion.
        assert_eq!(
            SubnetEnv::parse("N=10.244.0.0/16\nFLANNEL_NETWORK='$N'").network,
            None
        );
    }

    #[test]
    fn godotenv_details() {
        let p = |s: &str| dotenv_parse(s.as_bytes());
        let m = p("A=1\nB = two words # c\nC=\"x\\ny\"\nD='it\\'s'\nE=a#b\nF=\nG=\"\\$A and $A\"\nexport H=h\n").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x\ny");
        assert_eq!(m["D"], "it\\'s");
        assert_eq!(m["E"], "a#b");
        assert_eq!(m["F"], "");
        assert_eq!(m["G"], "$A and 1");
        assert_eq!(m["H"], "h");
        assert!(p("A=\"unterminated").is_none());
        assert!(p("export ").is_none());
        assert_eq!(p("# only a comment").unwrap().len(), 0);
    }

    #[test]
    fn read_missing_and_present() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnet.env");
        assert!(SubnetEnv::read(&path).unwrap().is_none());
        std::fs::write(&path, dual().render()).unwrap();
        assert_eq!(SubnetEnv::read(&path).unwrap(), Some(dual()));
        // A directory cannot be read as the file.
        assert!(matches!(
            SubnetEnv::read(dir.path()),
            Err(SubnetEnvError::Read { .. })
        ));
    }

    #[test]
    fn write_atomic_mode_dir_content_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/flannel/subnet.env");
        dual().write_atomic(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), dual().render());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        assert!(std::fs::metadata(dir.path().join("run/flannel"))
            .unwrap()
            .is_dir());

        let v4only = SubnetEnv {
            ipv6_network: None,
            ipv6_subnet: None,
            ..dual()
        };
        v4only.write_atomic(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), v4only.render());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("run/flannel"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("subnet.env")]);
    }

    #[test]
    fn write_atomic_fixes_existing_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subnet.env");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        dual().write_atomic(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), dual().render());
    }

    #[test]
    fn write_atomic_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let err = dual()
            .write_atomic(&blocker.join("subnet.env"))
            .unwrap_err();
        assert!(matches!(err, SubnetEnvError::Write { .. }));
        assert!(err
            .to_string()
            .starts_with(&format!("writing {}", blocker.join("subnet.env").display())));
    }

    #[test]
    fn errors_name_the_file_and_say_the_cause_once() {
        // A path below a regular file cannot be created: ENOTDIR.
        let path = Path::new("/dev/null/flannel/subnet.env");
        let err = SubnetEnv::default()
            .write_atomic(path)
            .expect_err("not a directory");
        assert!(
            err.to_string()
                .starts_with("writing /dev/null/flannel/subnet.env: "),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_none(), "{err}");
    }
}
