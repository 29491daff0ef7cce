//! flanneld's command line as a library, so that `flannelctl status` and `flannelctl doctor`
//! read exactly the flags (same names, same `FLANNELD_*` environment) the daemon reads.

pub mod cli;
