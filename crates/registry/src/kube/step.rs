//! What a node event source yields to the node watch ([`super::watch`]), whichever source
//! it is (kube-rs's full-object watcher, or [`super::metawatch`]'s metadata-only one).

use std::collections::BTreeMap;

use kube::runtime::watcher;

use super::annotations::NodeInfo;

/// A node as one watch event shows it.
pub(crate) enum Seen {
    /// The whole node.
    Full(NodeInfo),
    /// Its name and annotations only.
    Meta {
        name: String,
        annotations: BTreeMap<String, String>,
    },
}

impl Seen {
    pub(crate) fn name(&self) -> &str {
        match self {
            Seen::Full(n) => &n.name,
            Seen::Meta { name, .. } => name,
        }
    }
}

/// One step of the underlying watcher, whatever the mode.
pub(crate) enum Step {
    Init,
    InitItem(Seen),
    InitDone,
    Apply(Seen),
    Delete(String),
    Error(watcher::Error),
    Ended,
}
