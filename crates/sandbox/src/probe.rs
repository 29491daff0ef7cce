//! Probes: HTTP GET (from inside a namespace) and `ping` (iputils) with its summary parsed.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::error::{Result, SandboxError};
use crate::netns;

/// A minimal HTTP/1.1 GET of `path` on `addr` (connect within 1 s, read and write within 2 s):
/// (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let what = format!("GET http://{addr}{path}");
    let io = |e| SandboxError::io(what.clone(), e);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(io)?;
    parse_http_response(&response)
        .ok_or_else(|| SandboxError::unexpected(what, format!("no HTTP status in {response:?}")))
}

/// [`http_get`] from inside namespace `ns` (a short-lived thread joins it).
pub fn http_get_in(ns: &str, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    netns::in_netns(ns, || http_get(addr, path))?
}

/// (status code, body) of an HTTP/1.x response.
pub fn parse_http_response(text: &str) -> Option<(u16, String)> {
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// What one `ping -c N -q` run reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingStats {
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub received: u32,
    /// Average round-trip time in milliseconds (absent when nothing came back).
    pub rtt_avg_ms: Option<f64>,
}

impl PingStats {
    /// Every request was answered (and at least one was sent).
    pub fn all_received(&self) -> bool {
        self.sent > 0 && self.received == self.sent
    }
}

/// `ip netns exec <ns> ping -n -q -c <count> -i <interval> -W <1 × time scale> <dst>` (IPv4 or IPv6).
pub fn ping_command(ns: &str, dst: IpAddr, count: u32, interval: Duration) -> Command {
    let count = count.to_string();
    let interval = format!("{:.3}", interval.as_secs_f64());
    let dst = dst.to_string();
    // How long ping waits for the last reply: 1 s, stretched under emulation (a late reply
    // is then counted, not lost).
    let wait = crate::cmd::time_scale().to_string();
    netns::in_ns(
        ns,
        &[
            "ping", "-n", "-q", "-c", &count, "-i", &interval, "-W", &wait, &dst,
        ],
    )
}

/// Parses iputils `ping` output:
///
/// ```text
/// 3 packets transmitted, 3 received, 0% packet loss, time 402ms
/// rtt min/avg/max/mdev = 0.050/0.080/0.100/0.020 ms
/// ```
///
/// `None` when there is no "packets transmitted" line (ping failed before sending).
pub fn parse_ping(text: &str) -> Option<PingStats> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut parts = line.split(',');
    let sent = first_number(parts.next()?)?;
    let received = first_number(parts.next()?)?;
    let rtt_avg_ms = text
        .lines()
        .find(|l| l.starts_with("rtt ") || l.starts_with("round-trip "))
        .and_then(|l| l.split_once('=')?.1.trim().split('/').nth(1)?.parse().ok());
    Some(PingStats {
        sent,
        received,
        rtt_avg_ms,
    })
}

fn first_number(text: &str) -> Option<u32> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn full_success() {
        let text = "PING 198.18.2.2 (198.18.2.2) 56(84) bytes of data.\n\n\
                    --- 198.18.2.2 ping statistics ---\n\
                    3 packets transmitted, 3 received, 0% packet loss, time 402ms\n\
                    rtt min/avg/max/mdev = 0.050/0.213/0.400/0.020 ms\n";
        let stats = parse_ping(text).unwrap();
        assert_eq!(
            stats,
            PingStats {
                sent: 3,
                received: 3,
                rtt_avg_ms: Some(0.213)
            }
        );
        assert!(stats.all_received());
    }

    #[test]
    fn partial_and_total_loss() {
        let partial = "3 packets transmitted, 1 received, 66.6667% packet loss, time 2030ms\n\
                       rtt min/avg/max/mdev = 1.500/1.500/1.500/0.000 ms\n";
        assert_eq!(
            parse_ping(partial),
            Some(PingStats {
                sent: 3,
                received: 1,
                rtt_avg_ms: Some(1.5)
            })
        );
        let none = "PING 198.18.9.2 (198.18.9.2) 56(84) bytes of data.\n\n\
                    --- 198.18.9.2 ping statistics ---\n\
                    3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2046ms\n\
                    pipe 3\n";
        let stats = parse_ping(none).unwrap();
        assert_eq!((stats.sent, stats.received, stats.rtt_avg_ms), (3, 0, None));
        assert!(!stats.all_received());
    }

    #[test]
    fn no_summary_is_none() {
        assert_eq!(parse_ping("ping: connect: Network is unreachable\n"), None);
        assert_eq!(parse_ping(""), None);
        assert_eq!(parse_ping("x packets transmitted, 3 received\n"), None);
    }

    #[test]
    fn http_responses() {
        assert_eq!(
            parse_http_response("HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\nnot ready"),
            Some((503, "not ready".to_owned()))
        );
        assert_eq!(parse_http_response(""), None);
    }

    #[test]
    fn ping_command_line() {
        let cmd = ping_command(
            "ns1",
            "2001:db8::1".parse().unwrap(),
            3,
            Duration::from_millis(200),
        );
        assert_eq!(
            crate::cmd::describe(&cmd),
            "ip netns exec ns1 ping -n -q -c 3 -i 0.200 -W 1 2001:db8::1"
        );
    }
}
