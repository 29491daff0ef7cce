//! Text output (pure): aligned tables, the progress line and the all-pairs matrix.

use std::fmt::Write as _;

use crate::matrix::{Matrix, PairResult, PairStatus};

/// A table with a header row; columns are left-aligned, two spaces apart, every line indented
/// by two spaces and without trailing blanks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are blank, extra cells are dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rendered table, one `\n`-terminated line per row.
    pub fn render(&self) -> String {
        let cols = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(cols).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let empty = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::from("  ");
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).unwrap_or(&empty);
                line.push_str(cell);
                if i + 1 < cols {
                    let pad = width - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The progress line for step `index` (from 1) of `total`: `[3/9] starting flanneld on h2…`.
pub fn progress_line(index: usize, total: usize, what: &str) -> String {
    format!("[{index}/{total}] {what}…")
}

/// The text of one matrix cell.
pub fn cell(pair: &PairResult) -> String {
    match pair.status {
        PairStatus::Ok => {
            let rtt = pair
                .rtt_ms
                .map(|r| format!(" {r:.2} ms"))
                .unwrap_or_default();
            let lossy = if pair.received < pair.sent { "*" } else { "" };
            format!("ok{rtt}{lossy}")
        }
        PairStatus::Fail => "FAIL".to_owned(),
        PairStatus::Skipped => "n/a".to_owned(),
    }
}

/// The all-pairs matrix (rows: from, columns: to; `-` on the diagonal) followed by a summary
/// and one line per pair that lost replies, failed or was not expected to work.
pub fn matrix(m: &Matrix) -> String {
    let mut headers = vec!["from \\ to"];
    headers.extend(m.pods.iter().map(String::as_str));
    let mut table = Table::new(&headers);
    for from in &m.pods {
        let mut row = vec![from.clone()];
        for to in &m.pods {
            row.push(match m.pair(from, to) {
                Some(p) => cell(p),
                None => "-".to_owned(),
            });
        }
        table.row(row);
    }
    let mut out = table.render();
    out.push('\n');
    out.push_str(&summary(m));
    out
}

/// The lines under the matrix: counts, then the pairs worth a note.
pub fn summary(m: &Matrix) -> String {
    let mut out = String::new();
    let counts = m.counts();
    let _ = write!(
        out,
        "  {} of {} pairs ok",
        counts.ok,
        counts.ok + counts.failed
    );
    if counts.failed > 0 {
        let _ = write!(out, ", {} FAILED", counts.failed);
    }
    if counts.skipped > 0 {
        let _ = write!(out, ", {} not expected to work", counts.skipped);
    }
    out.push('\n');
    for p in &m.pairs {
        let arrow = format!("{} ({}) -> {} ({})", p.from, p.from_ip, p.to, p.to_ip);
        match p.status {
            PairStatus::Ok if p.received < p.sent => {
                let _ = writeln!(out, "  * {arrow}: {} of {} replies", p.received, p.sent);
            }
            PairStatus::Fail => {
                let why = p
                    .detail
                    .clone()
                    .unwrap_or_else(|| format!("{} of {} replies", p.received, p.sent));
                let _ = writeln!(out, "  FAIL {arrow}: {why}");
            }
            _ => {}
        }
    }
    if counts.skipped > 0 {
        if let Some(reason) = m
            .pairs
            .iter()
            .find(|p| p.status == PairStatus::Skipped)
            .and_then(|p| p.detail.as_deref())
        {
            let _ = writeln!(out, "  n/a: {reason}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn tables_align_and_trim() {
        let mut t = Table::new(&["HOST", "PUBLIC IP", "MTU"]);
        t.row(vec!["h1".into(), "192.0.2.1".into(), "1450".into()]);
        t.row(vec!["h10".into(), "192.0.2.10".into()]);
        assert_eq!(
            t.render(),
            "  HOST  PUBLIC IP   MTU\n  h1    192.0.2.1   1450\n  h10   192.0.2.10\n"
        );
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line(3, 9, "starting flanneld on h2"),
            "[3/9] starting flanneld on h2…"
        );
    }

    fn pair(
        from: &str,
        to: &str,
        status: PairStatus,
        received: u32,
        rtt: Option<f64>,
    ) -> PairResult {
        let ip = |name: &str| match name {
            "h1-p1" => Ipv4Addr::new(198, 18, 1, 2),
            "h2-p1" => Ipv4Addr::new(198, 18, 2, 2),
            _ => Ipv4Addr::new(198, 18, 3, 2),
        };
        PairResult {
            from: from.into(),
            to: to.into(),
            from_ip: ip(from),
            to_ip: ip(to),
            status,
            sent: 3,
            received,
            rtt_ms: rtt,
            detail: None,
        }
    }

    #[test]
    fn matrix_golden() {
        let m = Matrix {
            pods: vec!["h1-p1".into(), "h2-p1".into(), "h3-p1".into()],
            pairs: vec![
                pair("h1-p1", "h2-p1", PairStatus::Ok, 3, Some(0.2134)),
                pair("h1-p1", "h3-p1", PairStatus::Ok, 2, Some(0.31)),
                pair("h2-p1", "h1-p1", PairStatus::Ok, 3, Some(0.05)),
                pair("h2-p1", "h3-p1", PairStatus::Fail, 0, None),
                pair("h3-p1", "h1-p1", PairStatus::Ok, 3, Some(12.0)),
                pair("h3-p1", "h2-p1", PairStatus::Ok, 3, Some(0.199)),
            ],
        };
        let expected = concat!(
            "  from \\ to  h1-p1        h2-p1       h3-p1\n",
            "  h1-p1      -            ok 0.21 ms  ok 0.31 ms*\n",
            "  h2-p1      ok 0.05 ms   -           FAIL\n",
            "  h3-p1      ok 12.00 ms  ok 0.20 ms  -\n",
            "\n",
            "  5 of 6 pairs ok, 1 FAILED\n",
            "  * h1-p1 (198.18.1.2) -> h3-p1 (198.18.3.2): 2 of 3 replies\n",
            "  FAIL h2-p1 (198.18.2.2) -> h3-p1 (198.18.3.2): 0 of 3 replies\n",
        );
        assert_eq!(matrix(&m), expected);
    }

    #[test]
    fn skipped_pairs_are_explained() {
        let mut p = pair("h1-p1", "h2-p1", PairStatus::Skipped, 0, None);
        p.sent = 0;
        p.detail = Some("the alloc backend programs no routes between hosts".into());
        let m = Matrix {
            pods: vec!["h1-p1".into(), "h2-p1".into()],
            pairs: vec![p],
        };
        let text = matrix(&m);
        assert!(text.contains("  h1-p1      -      n/a\n"), "{text}");
        assert!(
            text.contains("0 of 0 pairs ok, 1 not expected to work\n"),
            "{text}"
        );
        assert!(
            text.ends_with("  n/a: the alloc backend programs no routes between hosts\n"),
            "{text}"
        );
    }
}
