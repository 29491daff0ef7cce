//! The `flannel` CNI plugin binary: one invocation per process (see [`flannel_cni::plugin`]).

use std::io::Write;

fn main() {
    let env: Vec<_> = std::env::vars_os().collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = flannel_cni::plugin::run(
        &env,
        &mut std::io::stdin().lock(),
        &mut out,
        &mut std::io::stderr().lock(),
    );
    let _ = out.flush();
    std::process::exit(code);
}
