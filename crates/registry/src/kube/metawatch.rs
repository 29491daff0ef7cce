//! The event source of the metadata-only node watch ([`super::watch::WatchMode::MetadataThenGet`]).
//!
//! kube-rs's `watcher` would list node *metadata* first; the watch then has to fetch every
//! managed node in full anyway, so the start-up would cost a metadata list plus a full list.
//! This source lists full nodes the first time (paginated), so starting costs exactly what
//! a full-object informer's start costs, and watches only metadata from that list's
//! resourceVersion. A re-list (after `410 Gone`) lists metadata only: most nodes are
//! unchanged by then, and the watch fetches just those whose annotations changed. Bookmarks
//! keep the resume point fresh; a watch that ends (the server's timeout) is reopened from the
//! last resourceVersion seen.

use std::collections::VecDeque;
use std::future::Future;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use kube::api::{ListParams, ObjectList, PartialObjectMeta, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::Api;

use super::objects::{node_info, Node};
use super::step::{Seen, Step};

/// Page size of lists (what kube-rs's watcher uses).
const PAGE_SIZE: u32 = 500;
/// Server-side timeout of one watch request; the watch is reopened after it.
const WATCH_TIMEOUT_SECS: u32 = 290;

type MetaEvents = BoxStream<'static, kube::Result<WatchEvent<PartialObjectMeta<Node>>>>;

enum Phase {
    /// A (re-)list is due.
    List,
    /// Handing out the items of a finished list, then `InitDone`.
    Items { items: VecDeque<Seen>, rv: String },
    /// Watching metadata from `rv` (`events` is `None` until the watch is open).
    Watch {
        rv: String,
        events: Option<MetaEvents>,
    },
}

/// Full list first, then metadata watch and metadata re-lists (module docs).
pub(super) struct MetaWatch {
    api: Api<Node>,
    phase: Phase,
    listed: bool,
}

impl MetaWatch {
    pub(super) fn new(api: Api<Node>) -> MetaWatch {
        MetaWatch {
            api,
            phase: Phase::List,
            listed: false,
        }
    }

    /// The next step, in the order the watch's state machine expects: `Init`, `InitItem`s,
    /// `InitDone`, then `Apply`/`Delete`; `Error` on failures (after which the same phase is
    /// tried again, except that a `410 Gone` leads to a re-list).
    pub(super) async fn next(&mut self) -> Step {
        loop {
            match &mut self.phase {
                Phase::List => {
                    let listed = if self.listed {
                        list_metadata(&self.api)
                            .await
                            .map(|(items, rv)| (items.into_iter().map(seen_meta).collect(), rv))
                    } else {
                        list_full(&self.api).await.map(|(items, rv)| {
                            (items.iter().map(|n| Seen::Full(node_info(n))).collect(), rv)
                        })
                    };
                    match listed {
                        Ok((items, rv)) => {
                            self.listed = true;
                            self.phase = Phase::Items { items, rv };
                            return Step::Init;
                        }
                        Err(e) => return Step::Error(watcher::Error::InitialListFailed(e)),
                    }
                }
                Phase::Items { items, rv } => match items.pop_front() {
                    Some(seen) => return Step::InitItem(seen),
                    None => {
                        let rv = std::mem::take(rv);
                        self.phase = Phase::Watch { rv, events: None };
                        return Step::InitDone;
                    }
                },
                Phase::Watch { rv, events } => {
                    let stream = match events {
                        Some(s) => s,
                        None => {
                            // Bookmarks are on by default.
                            let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
                            match self.api.watch_metadata(&params, rv).await {
                                Ok(s) => events.insert(s.boxed()),
                                Err(e) => return Step::Error(watcher::Error::WatchStartFailed(e)),
                            }
                        }
                    };
                    match stream.next().await {
                        None => *events = None, // the server's timeout: reopen from `rv`
                        Some(Err(e)) => {
                            *events = None;
                            return Step::Error(watcher::Error::WatchFailed(e));
                        }
                        Some(Ok(WatchEvent::Added(m) | WatchEvent::Modified(m))) => {
                            note_rv(rv, &m);
                            return Step::Apply(seen_meta(m));
                        }
                        Some(Ok(WatchEvent::Deleted(m))) => {
                            note_rv(rv, &m);
                            return Step::Delete(m.metadata.name.unwrap_or_default());
                        }
                        Some(Ok(WatchEvent::Bookmark(b))) => {
                            *rv = b.metadata.resource_version;
                        }
                        Some(Ok(WatchEvent::Error(status))) => {
                            if status.code == 410 {
                                self.phase = Phase::List;
                            } else {
                                *events = None;
                            }
                            return Step::Error(watcher::Error::WatchError(status));
                        }
                    }
                }
            }
        }
    }
}

/// Every node in full, paginated; with the list's resourceVersion.
pub(super) async fn list_full(api: &Api<Node>) -> kube::Result<(Vec<Node>, String)> {
    list_pages(|params| {
        let api = api.clone();
        async move { api.list(&params).await }
    })
    .await
}

/// Every node's metadata, paginated; with the list's resourceVersion.
async fn list_metadata(api: &Api<Node>) -> kube::Result<(Vec<PartialObjectMeta<Node>>, String)> {
    list_pages(|params| {
        let api = api.clone();
        async move { api.list_metadata(&params).await }
    })
    .await
}

/// All pages of a list (`PAGE_SIZE` items each, following `continue`), and the
/// resourceVersion the list was taken at.
async fn list_pages<T, F, Fut>(mut page: F) -> kube::Result<(Vec<T>, String)>
where
    T: Clone, // required by ObjectList
    F: FnMut(ListParams) -> Fut,
    Fut: Future<Output = kube::Result<ObjectList<T>>>,
{
    let mut items = Vec::new();
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        let list = page(params.clone()).await?;
        items.extend(list.items);
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok((items, list.metadata.resource_version.unwrap_or_default())),
        }
    }
}

fn note_rv(rv: &mut String, m: &PartialObjectMeta<Node>) {
    if let Some(v) = &m.metadata.resource_version {
        rv.clone_from(v);
    }
}

fn seen_meta(m: PartialObjectMeta<Node>) -> Seen {
    Seen::Meta {
        name: m.metadata.name.unwrap_or_default(),
        annotations: m.metadata.annotations.unwrap_or_default(),
    }
}
