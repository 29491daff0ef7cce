//! The routes flanneld installed on devices it does not own (host-gw routes, DirectRouting
//! routes on the external interface). Only routes listed here may be deleted there, so a route
//! an operator added is never touched, while our own stale routes are removed even across
//! restarts.
//!
//! Kept next to `--subnet-file` (`<subnet-file>.routes`), so several flanneld instances on one
//! machine never share it. One route per line: `198.18.2.0/24 via 192.0.2.2 dev eth0 [onlink]`.
//! Written atomically like `subnet.env`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flannel_planner::state::Route;

/// The on-disk list of routes we own on foreign devices.
#[derive(Debug)]
pub struct RouteJournal {
    path: PathBuf,
    routes: BTreeSet<Route>,
}

impl RouteJournal {
    /// The journal belonging to `subnet_file`.
    pub fn path_for(subnet_file: &Path) -> PathBuf {
        let mut name = subnet_file
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "subnet.env".into());
        name.push(".routes");
        subnet_file.with_file_name(name)
    }

    /// Load it (a missing file is an empty journal; unparsable lines are skipped with a warning).
    pub fn load(path: PathBuf) -> Self {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let routes = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                let r = parse(l);
                if r.is_none() {
                    tracing::warn!(line = l, path = %path.display(), "ignoring an unreadable route journal line");
                }
                r
            })
            .collect();
        RouteJournal { path, routes }
    }

    /// Routes recorded as ours.
    pub fn routes(&self) -> &BTreeSet<Route> {
        &self.routes
    }

    /// Replace the recorded set (written only when it changed).
    pub fn store(&mut self, routes: BTreeSet<Route>) -> Result<()> {
        if routes == self.routes {
            return Ok(());
        }
        let text: String = routes.iter().map(|r| format!("{r}\n")).collect();
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        tmp.write_all(text.as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.routes = routes;
        Ok(())
    }
}

fn parse(line: &str) -> Option<Route> {
    let mut words = line.split_whitespace();
    let dst = words.next()?.parse().ok()?;
    let (mut gateway, mut dev, mut onlink) = (None, None, false);
    while let Some(w) = words.next() {
        match w {
            "via" => gateway = Some(words.next()?.parse().ok()?),
            "dev" => dev = Some(words.next()?.to_owned()),
            "onlink" => onlink = true,
            _ => return None,
        }
    }
    Some(Route {
        dst,
        gateway,
        dev: dev?,
        onlink,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lives_next_to_the_subnet_file() {
        assert_eq!(
            RouteJournal::path_for(Path::new("/run/flannel/subnet.env")),
            PathBuf::from("/run/flannel/subnet.env.routes")
        );
        assert_eq!(
            RouteJournal::path_for(Path::new("/run/flannel/net2.env")),
            PathBuf::from("/run/flannel/net2.env.routes")
        );
    }

    #[test]
    fn round_trips_and_survives_garbage() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("x/subnet.env.routes");
        let mut j = RouteJournal::load(path.clone());
        assert!(j.routes().is_empty());
        let routes: BTreeSet<Route> = [
            "198.18.2.0/24 via 192.0.2.2 dev eth0",
            "198.18.3.0/24 via 198.18.3.0 dev flannel.1 onlink",
        ]
        .iter()
        .map(|l| parse(l).expect("parses"))
        .collect();
        j.store(routes.clone()).expect("store");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "198.18.2.0/24 via 192.0.2.2 dev eth0\n198.18.3.0/24 via 198.18.3.0 dev flannel.1 onlink\n"
        );
        std::fs::write(&path, format!("{text}not a route\n")).expect("write");
        assert_eq!(RouteJournal::load(path).routes(), &routes);
    }
}
