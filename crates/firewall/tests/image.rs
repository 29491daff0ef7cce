//! The image's iptables: `deploy/iptables-wrapper` run against fake `iptables-*-save`,
//! `update-alternatives` and backend tools in a temp dir (nothing touches the machine's
//! tables or alternatives), and a static check of `deploy/Dockerfile`'s steps. There is no
//! container engine here; these are what can be checked without one.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOOLS: [&str; 6] = [
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake machine: `sbin/` with both backends' tools and the alternatives' links, `bin/` with
/// `update-alternatives`, `wrap/` with the wrapper and its six links (as in the image).
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    /// `legacy` / `nft`: what that backend's `iptables-save` prints (IPv4; IPv6 prints `v6_*`).
    fn new(legacy: &str, nft: &str, v6_legacy: &str, v6_nft: &str) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["sbin", "bin", "wrap", "tmp"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        let sbin = root.join("sbin");
        for (family, mode, dump) in [
            ("iptables", "legacy", legacy),
            ("iptables", "nft", nft),
            ("ip6tables", "legacy", v6_legacy),
            ("ip6tables", "nft", v6_nft),
        ] {
            let data = root.join(format!("{family}-{mode}.dump"));
            std::fs::write(&data, dump).unwrap();
            script(
                &sbin.join(format!("{family}-{mode}-save")),
                &format!(
                    "[ -e '{slow}' ] && sleep 0.2\ncat '{data}'",
                    slow = root.join("slow").display(),
                    data = data.display()
                ),
            );
            for suffix in ["", "-restore"] {
                let tool = format!("{family}-{mode}{suffix}");
                script(&sbin.join(&tool), &format!("echo \"{tool} $*\""));
            }
        }
        for tool in TOOLS {
            script(&sbin.join(tool), &format!("echo \"alternative {tool} $*\""));
        }
        script(
            &root.join("bin/update-alternatives"),
            &format!(
                "[ -e '{fail}' ] && exit 2\necho \"$*\" >> '{log}'",
                fail = root.join("alternatives-fail").display(),
                log = root.join("alternatives.log").display()
            ),
        );
        let wrapper = root.join("wrap/iptables-wrapper");
        std::fs::copy(repo_file("deploy/iptables-wrapper"), &wrapper).unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        for tool in TOOLS {
            std::os::unix::fs::symlink("iptables-wrapper", root.join("wrap").join(tool)).unwrap();
        }
        Fake { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Run `wrap/<tool> args` as the image's PATH would find it.
    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let path = format!("{}:/usr/bin:/bin", self.path("bin").display());
        Command::new(self.path("wrap").join(tool))
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("IPTABLES_WRAPPER_SBIN", self.path("sbin"))
            .env("TMPDIR", self.path("tmp"))
            .output()
            .unwrap()
    }

    fn alternatives(&self) -> String {
        std::fs::read_to_string(self.path("alternatives.log")).unwrap_or_default()
    }

    fn links_left(&self) -> Vec<&'static str> {
        TOOLS
            .into_iter()
            .filter(|t| self.path("wrap").join(t).symlink_metadata().is_ok())
            .collect()
    }
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What kube-proxy leaves in iptables-save: a few chains and many `-A` rules.
fn kube_proxy_rules(n: usize) -> String {
    let mut out = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n");
    for i in 0..n {
        out.push_str(&format!(
            "-A KUBE-SERVICES -d 198.18.{i}.1/32 -p tcp -j KUBE-SVC-{i}\n"
        ));
    }
    out.push_str("COMMIT\n");
    out
}

#[test]
fn legacy_is_selected_when_kube_proxys_rules_are_there() {
    let fake = Fake::new(&kube_proxy_rules(12), &kube_proxy_rules(2), "", "");
    let out = fake.run("iptables-restore", &["--noflush", "--wait"]);
    assert_eq!(
        stdout(&out),
        "iptables-legacy-restore --noflush --wait\n",
        "the first call runs the selected backend's own tool"
    );
    let sbin = fake.path("sbin");
    assert_eq!(
        fake.alternatives(),
        format!(
            "--set iptables {s}/iptables-legacy\n--set ip6tables {s}/ip6tables-legacy\n",
            s = sbin.display()
        )
    );
    assert!(
        fake.links_left().is_empty(),
        "links left: {:?}",
        fake.links_left()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("using iptables-legacy"));
}

#[test]
fn nft_is_selected_when_it_holds_more_rules_counting_ipv6() {
    // IPv4 alone would say legacy (3 > 2); IPv6 tips it to nft.
    let fake = Fake::new(
        &kube_proxy_rules(3),
        &kube_proxy_rules(2),
        "",
        &kube_proxy_rules(4),
    );
    assert_eq!(
        stdout(&fake.run("ip6tables", &["-S"])),
        "ip6tables-nft -S\n"
    );
    assert!(fake.alternatives().contains("--set iptables "));
    assert!(fake.alternatives().ends_with("/ip6tables-nft\n"));
}

#[test]
fn nft_is_the_choice_on_an_empty_node() {
    let fake = Fake::new("", "", "", "");
    assert_eq!(
        stdout(&fake.run("iptables", &["--version"])),
        "iptables-nft --version\n"
    );
    assert!(fake.alternatives().contains("/iptables-nft\n"));
}

#[test]
fn the_kubelets_hint_chain_beats_rule_counts() {
    let hint = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
    let fake = Fake::new(hint, &kube_proxy_rules(20), "", "");
    assert_eq!(
        stdout(&fake.run("iptables-wrapper", &["detect"])),
        "legacy\n"
    );
    assert!(fake.alternatives().is_empty(), "detect selects nothing");
    assert_eq!(
        stdout(&fake.run("iptables-save", &[])),
        hint,
        "iptables-save runs iptables-legacy-save"
    );
}

#[test]
fn concurrent_first_calls_select_once_and_the_other_runs_the_alternative() {
    let fake = Fake::new(&kube_proxy_rules(5), "", "", "");
    // Make deciding slow, so both calls are running before the links go away.
    std::fs::write(fake.path("slow"), "").unwrap();
    let path = format!("{}:/usr/bin:/bin", fake.path("bin").display());
    let spawn = || {
        Command::new(fake.path("wrap/iptables"))
            .arg("--version")
            .env_clear()
            .env("PATH", &path)
            .env("IPTABLES_WRAPPER_SBIN", fake.path("sbin"))
            .env("TMPDIR", fake.path("tmp"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut outs: Vec<String> = [a, b]
        .into_iter()
        .map(|c| stdout(&c.wait_with_output().unwrap()))
        .collect();
    outs.sort();
    assert_eq!(
        outs,
        [
            "alternative iptables --version\n",
            "iptables-legacy --version\n"
        ]
    );
    assert_eq!(
        fake.alternatives().lines().count(),
        2,
        "{}",
        fake.alternatives()
    );
    assert!(fake.links_left().is_empty());
}

#[test]
fn without_alternatives_the_selected_tool_still_runs_and_the_links_stay() {
    let fake = Fake::new(&kube_proxy_rules(5), "", "", "");
    std::fs::write(fake.path("alternatives-fail"), "").unwrap();
    assert_eq!(
        stdout(&fake.run("iptables", &["-t", "nat", "-S"])),
        "iptables-legacy -t nat -S\n"
    );
    assert_eq!(fake.links_left(), TOOLS.to_vec());
}

#[test]
fn an_unknown_name_is_refused() {
    let fake = Fake::new("", "", "", "");
    std::os::unix::fs::symlink("iptables-wrapper", fake.path("wrap/ebtables")).unwrap();
    let out = fake.run("ebtables", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown tool ebtables"));
    assert!(fake.alternatives().is_empty());
}

// ------------------------------------------------------------------------------------------
// deploy/Dockerfile
// ------------------------------------------------------------------------------------------

/// Dockerfile instructions with continuation lines joined and comments dropped:
/// (INSTRUCTION, arguments).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instr, args) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((
            instr.to_uppercase(),
            args.split_whitespace().collect::<Vec<_>>().join(" "),
        ));
        current.clear();
    }
    out
}

#[test]
fn dockerfile_builds_both_binaries_and_ships_both_iptables_backends_with_the_wrapper() {
    let text = std::fs::read_to_string(repo_file("deploy/Dockerfile")).unwrap();
    assert!(
        text.contains("docker build -f deploy/Dockerfile -t "),
        "the one-command build is documented in the Dockerfile"
    );
    let steps = instructions(&text);
    let froms: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].0 == "FROM").collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {steps:?}"
    );
    let (build, runtime) = steps.split_at(froms[1]);
    assert!(build[0].1.ends_with("AS build"), "{:?}", build[0]);

    // Build stage: the packages it names exist in this workspace, built from the lock file.
    let cargo = build
        .iter()
        .find(|(i, a)| i == "RUN" && a.contains("cargo build"))
        .expect("a cargo build step");
    assert!(cargo.1.contains("--release --locked"), "{cargo:?}");
    for (pkg, manifest) in [
        ("flanneld", "crates/flanneld/Cargo.toml"),
        ("flannel-cni", "crates/cni-plugin/Cargo.toml"),
    ] {
        assert!(cargo.1.contains(&format!("-p {pkg}")), "{cargo:?}");
        let toml = std::fs::read_to_string(repo_file(manifest)).unwrap();
        assert!(toml.contains(&format!("name = \"{pkg}\"")), "{manifest}");
    }
    assert!(build
        .iter()
        .any(|(i, a)| i == "RUN" && a.contains("protobuf-compiler")));

    // Runtime stage: both backends, checked at build time; the wrapper ahead of /usr/sbin.
    let run_all: String = runtime
        .iter()
        .filter(|(i, _)| i == "RUN")
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for pkg in ["iptables", "nftables", "iproute2"] {
        assert!(
            run_all.contains(&format!(" {pkg} ")),
            "{pkg} installed: {run_all}"
        );
    }
    for bin in [
        "iptables-legacy",
        "iptables-nft",
        "ip6tables-legacy",
        "ip6tables-nft",
    ] {
        assert!(
            run_all.contains(&format!("test -x /usr/sbin/{bin}")),
            "{bin} checked"
        );
    }
    assert!(runtime.iter().any(
        |(i, a)| i == "COPY" && a == "deploy/iptables-wrapper /usr/local/sbin/iptables-wrapper"
    ));
    let links = runtime
        .iter()
        .find(|(i, a)| i == "RUN" && a.contains("ln -s iptables-wrapper"))
        .expect("the wrapper's links");
    for tool in TOOLS {
        assert!(
            links
                .1
                .split(|c: char| c.is_whitespace() || c == ';')
                .any(|w| w == tool),
            "{tool} linked"
        );
    }
    assert!(links.1.contains("\"/usr/local/sbin/$tool\""), "{links:?}");
    let path = runtime
        .iter()
        .find(|(i, a)| i == "ENV" && a.starts_with("PATH="))
        .expect("ENV PATH");
    let dirs: Vec<&str> = path.1["PATH=".len()..].split(':').collect();
    let pos = |d: &str| dirs.iter().position(|x| *x == d).unwrap();
    assert!(pos("/usr/local/sbin") < pos("/usr/sbin"), "{path:?}");

    // What the manifest runs is what the image holds.
    for (from, to) in [
        ("/out/flanneld", "/opt/bin/flanneld"),
        ("/out/flannel", "/opt/bin/flannel"),
    ] {
        assert!(runtime
            .iter()
            .any(|(i, a)| i == "COPY" && *a == format!("--from=build {from} {to}")));
    }
    let manifest = std::fs::read_to_string(repo_file("deploy/kube-flannel-rs.yml")).unwrap();
    assert!(manifest.contains("- /opt/bin/flanneld"));
    assert!(manifest.contains("/opt/bin/flannel"));

    // The build context leaves out the target directory.
    let ignore = std::fs::read_to_string(repo_file("deploy/Dockerfile.dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}

#[test]
fn dockerfile_instruction_parser_joins_continuations() {
    let steps = instructions("# c\nFROM a AS b\nRUN x \\\n    && y\n\nenv K=v\n");
    assert_eq!(
        steps,
        vec![
            ("FROM".to_owned(), "a AS b".to_owned()),
            ("RUN".to_owned(), "x && y".to_owned()),
            ("ENV".to_owned(), "K=v".to_owned()),
        ]
    );
}
