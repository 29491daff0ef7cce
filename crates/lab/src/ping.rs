//! Reading `ping`'s summary (iputils), pure.

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
        assert_eq!(
            parse_ping(text),
            Some(PingStats {
                sent: 3,
                received: 3,
                rtt_avg_ms: Some(0.213)
            })
        );
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
        assert_eq!(
            parse_ping(none),
            Some(PingStats {
                sent: 3,
                received: 0,
                rtt_avg_ms: None
            })
        );
    }

    #[test]
    fn no_summary_is_none() {
        assert_eq!(parse_ping("ping: connect: Network is unreachable\n"), None);
        assert_eq!(parse_ping(""), None);
        assert_eq!(parse_ping("x packets transmitted, 3 received\n"), None);
    }
}
