//! The HTTP side of the fake apiserver: routing, query parsing, list (with pagination),
//! watch streams (history replay, bookmarks, 410 Gone, timeouts), GET and PATCH, and the byte
//! accounting per kind of response.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::objects;
use super::patch::PatchKind;
use super::store::{event_line, Failure, Shared, State};
use super::RequestRecord;

/// Longest PATCH body accepted.
const MAX_BODY: usize = 1 << 20;
/// Watch length when the client gives no `timeoutSeconds` (the apiserver picks 30–60 min).
const DEFAULT_WATCH_TIMEOUT_S: u64 = 1800;

/// Where a response's body bytes are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    Full,
    Metadata,
    Get,
    Other,
}

fn count(st: &mut State, counter: Counter, n: usize) {
    let n = n as u64;
    match counter {
        Counter::Full => st.bytes.full_objects += n,
        Counter::Metadata => st.bytes.metadata_only += n,
        Counter::Get => st.bytes.gets += n,
        Counter::Other => st.bytes.other += n,
    }
}

/// Decoded query parameters (last one wins).
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query(pairs)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the client asked for `PartialObjectMetadata(List)` (kube-rs's `*_metadata` calls).
fn wants_metadata(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

/// A JSON response, its body counted under `counter`.
fn json_response(shared: &Shared, counter: Counter, code: u16, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    count(&mut shared.lock(), counter, bytes.len());
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from(bytes),
    )
        .into_response()
}

fn failure(shared: &Shared, counter: Counter, (code, body): Failure) -> Response {
    json_response(shared, counter, code, &body)
}

/// The one handler: logs the request, then routes it.
pub(crate) async fn handle(AxState(shared): AxState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let metadata = wants_metadata(&parts.headers);
    shared.lock().requests.push(RequestRecord {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().unwrap_or("").to_string(),
        accept: parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    });
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["api", "v1", "nodes"]) => {
            if query.flag("watch") {
                watch_nodes(shared, &query, metadata)
            } else {
                list_nodes(&shared, &query, metadata)
            }
        }
        (&Method::GET, ["api", "v1", "nodes", name] | ["api", "v1", "nodes", name, "status"]) => {
            let node = shared.lock().nodes.get(*name).cloned();
            match node {
                Some(n) if metadata => {
                    json_response(&shared, Counter::Get, 200, &objects::partial_metadata(&n))
                }
                Some(n) => json_response(&shared, Counter::Get, 200, &n),
                None => json_response(
                    &shared,
                    Counter::Get,
                    404,
                    &objects::not_found("nodes", name),
                ),
            }
        }
        (&Method::PATCH, ["api", "v1", "nodes", name, rest @ ..]) if rest.len() <= 1 => {
            let status_sub = match rest {
                [] => false,
                ["status"] => true,
                _ => return not_routed(&shared),
            };
            let manager = query
                .get("fieldManager")
                .map(str::to_string)
                .or_else(|| {
                    parts
                        .headers
                        .get(header::USER_AGENT)
                        .and_then(|v| v.to_str().ok())
                        .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
                })
                .unwrap_or_else(|| "unknown".to_string());
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let Some(kind) = PatchKind::from_content_type(content_type) else {
                let msg = format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type:?}");
                return json_response(
                    &shared,
                    Counter::Other,
                    415,
                    &objects::status(415, "UnsupportedMediaType", &msg, None),
                );
            };
            let body = match axum::body::to_bytes(body, MAX_BODY).await {
                Ok(b) => b,
                Err(e) => {
                    let s = objects::status(400, "BadRequest", &format!("reading body: {e}"), None);
                    return json_response(&shared, Counter::Other, 400, &s);
                }
            };
            let patch: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    let s = objects::status(
                        400,
                        "BadRequest",
                        &format!("error decoding patch: {e}"),
                        None,
                    );
                    return json_response(&shared, Counter::Other, 400, &s);
                }
            };
            let result =
                shared.mutate(|st| st.patch_node(name, kind, &patch, status_sub, &manager));
            match result {
                Ok(node) if metadata => json_response(
                    &shared,
                    Counter::Other,
                    200,
                    &objects::partial_metadata(&node),
                ),
                Ok(node) => json_response(&shared, Counter::Other, 200, &node),
                Err(f) => failure(&shared, Counter::Other, f),
            }
        }
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods", name]) => {
            let pod = shared
                .lock()
                .pods
                .get(&(ns.to_string(), name.to_string()))
                .cloned();
            match pod {
                Some(p) => json_response(&shared, Counter::Get, 200, &p),
                None => json_response(
                    &shared,
                    Counter::Get,
                    404,
                    &objects::not_found("pods", name),
                ),
            }
        }
        _ => not_routed(&shared),
    }
}

fn not_routed(shared: &Shared) -> Response {
    let s = objects::status(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(
            json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}),
        ),
    );
    json_response(shared, Counter::Other, 404, &s)
}

/// `metadata.name=X` from a field selector (other selectors are ignored).
fn name_selector(query: &Query) -> Option<String> {
    query.get("fieldSelector").and_then(|fs| {
        fs.split(',').find_map(|term| {
            let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
            (k.trim() == "metadata.name").then(|| v.trim().to_string())
        })
    })
}

fn expired(message: String) -> Failure {
    (410, objects::status(410, "Expired", &message, None))
}

fn list_nodes(shared: &Shared, query: &Query, metadata: bool) -> Response {
    let counter = if metadata {
        Counter::Metadata
    } else {
        Counter::Full
    };
    let result = (|| -> Result<Value, Failure> {
        let st = shared.lock();
        let name = name_selector(query);
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let (list_rv, after) = match query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let parsed = token
                    .strip_prefix("v1:")
                    .and_then(|t| t.split_once(':'))
                    .and_then(|(rv, last)| Some((rv.parse::<u64>().ok()?, last.to_string())));
                let Some((rv, last)) = parsed else {
                    return Err((
                        400,
                        objects::status(400, "BadRequest", "continue key is not valid", None),
                    ));
                };
                if rv < st.oldest_rv {
                    return Err(expired(
                        "The provided continue parameter is too old to display a consistent \
                         list result. You can start a new list without the continue parameter, \
                         or use the continue token in this response to retrieve the remainder \
                         of the results. Continuing with the provided token results in an \
                         inconsistent list - objects that were created, modified, or deleted \
                         between the time the first chunk was returned and now may show up in \
                         the list."
                            .to_string(),
                    ));
                }
                (rv, Some(last))
            }
            None => {
                if let Some(rv) = query
                    .get("resourceVersion")
                    .and_then(|r| r.parse::<u64>().ok())
                {
                    if query.get("resourceVersionMatch") == Some("Exact") && rv < st.oldest_rv {
                        return Err(expired(format!(
                            "too old resource version: {rv} ({})",
                            st.oldest_rv
                        )));
                    }
                }
                (st.rv, None)
            }
        };
        let matching = st
            .nodes
            .iter()
            .filter(|(n, _)| after.as_ref().is_none_or(|a| n.as_str() > a.as_str()))
            .filter(|(n, _)| name.as_ref().is_none_or(|want| want == *n));
        let mut items = Vec::new();
        let mut last = None;
        let mut remaining = 0usize;
        for (n, obj) in matching {
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
                continue;
            }
            items.push(objects::list_item(obj, metadata));
            last = Some(n.clone());
        }
        let mut meta = json!({"resourceVersion": list_rv.to_string()});
        if remaining > 0 {
            if let (Some(l), Some(m)) = (last, meta.as_object_mut()) {
                m.insert("continue".into(), json!(format!("v1:{list_rv}:{l}")));
                m.insert("remainingItemCount".into(), json!(remaining));
            }
        }
        let (kind, api_version) = if metadata {
            ("PartialObjectMetadataList", "meta.k8s.io/v1")
        } else {
            ("NodeList", "v1")
        };
        Ok(json!({"kind": kind, "apiVersion": api_version, "metadata": meta, "items": items}))
    })();
    match result {
        Ok(list) => json_response(shared, counter, 200, &list),
        Err(f) => failure(shared, counter, f),
    }
}

/// Keeps the table of open watches right however the stream ends.
struct OpenWatch(Arc<Shared>, u64);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.lock().watch_positions.remove(&self.1);
    }
}

/// One open watch stream.
struct Watch {
    shared: Arc<Shared>,
    rx: tokio::sync::watch::Receiver<u64>,
    cursor: u64,
    metadata: bool,
    bookmarks: bool,
    name: Option<String>,
    deadline: Instant,
    next_bookmark: Instant,
    /// Chunks to send, each with the resourceVersion the stream is at once it is sent.
    pending: VecDeque<(Bytes, u64)>,
    break_gen: u64,
    expire_gen: u64,
    bookmark_gen: u64,
    finished: bool,
    open: OpenWatch,
}

impl Watch {
    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            if let Some(m) = meta.as_object_mut() {
                m.insert(
                    "annotations".into(),
                    json!({"k8s.io/initial-events-end": "true"}),
                );
            }
        }
        let (kind, api_version) = if self.metadata {
            ("PartialObjectMetadata", "meta.k8s.io/v1")
        } else {
            ("Node", "v1")
        };
        let obj = json!({"kind": kind, "apiVersion": api_version, "metadata": meta});
        event_line("BOOKMARK", &obj, false)
    }

    /// The next chunk of the stream, `None` when it ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some((chunk, at)) = self.pending.pop_front() {
                let counter = if self.metadata {
                    Counter::Metadata
                } else {
                    Counter::Full
                };
                let mut st = self.shared.lock();
                count(&mut st, counter, chunk.len());
                st.watch_positions.insert(self.open.1, at);
                return Some(chunk);
            }
            if self.finished {
                return None;
            }
            self.rx.borrow_and_update();
            let now = Instant::now();
            {
                let shared = Arc::clone(&self.shared);
                let st = shared.lock();
                if st.shutdown || st.break_gen != self.break_gen {
                    return None;
                }
                if st.expire_gen != self.expire_gen || self.cursor < st.oldest_rv {
                    let msg = format!(
                        "too old resource version: {} ({})",
                        self.cursor, st.oldest_rv
                    );
                    let status = objects::status(410, "Expired", &msg, None);
                    self.pending
                        .push_back((event_line("ERROR", &status, false), self.cursor));
                    self.finished = true;
                    continue;
                }
                let start = st.history.partition_point(|e| e.rv <= self.cursor);
                for ev in st.history.range(start..) {
                    if self.name.as_ref().is_none_or(|n| *n == ev.name) {
                        self.pending.push_back((ev.line(self.metadata), ev.rv));
                    }
                }
                self.cursor = self.cursor.max(st.rv);
                if self.bookmarks && st.bookmark_gen != self.bookmark_gen {
                    self.bookmark_gen = st.bookmark_gen;
                    self.pending
                        .push_back((self.bookmark(self.cursor, false), self.cursor));
                }
                if self.bookmarks && now >= self.next_bookmark {
                    self.next_bookmark = now + st.bookmark_interval;
                    self.pending
                        .push_back((self.bookmark(self.cursor, false), self.cursor));
                }
                if now >= self.deadline {
                    self.finished = true;
                }
                if self.pending.is_empty() {
                    // Nothing (left) to send: the stream is at the current resourceVersion.
                    let mut st = st;
                    st.watch_positions.insert(self.open.1, self.cursor);
                }
            }
            if !self.pending.is_empty() || self.finished {
                continue;
            }
            let wake = if self.bookmarks {
                self.next_bookmark.min(self.deadline)
            } else {
                self.deadline
            };
            tokio::select! {
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

fn watch_nodes(shared: Arc<Shared>, query: &Query, metadata: bool) -> Response {
    let rx = shared.tick.subscribe();
    let now = Instant::now();
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(DEFAULT_WATCH_TIMEOUT_S);
    let bookmarks = query.flag("allowWatchBookmarks");
    let name = name_selector(query);
    let requested_rv = query.get("resourceVersion").filter(|r| !r.is_empty());
    let send_initial = query.flag("sendInitialEvents");
    let mut watch = {
        let mut st = shared.lock();
        st.next_watch_id += 1;
        let id = st.next_watch_id;
        let synthetic = send_initial || matches!(requested_rv, None | Some("0"));
        let cursor = if synthetic {
            st.rv
        } else {
            // An unparsable resourceVersion is treated as expired, forcing a relist.
            requested_rv
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut pending = VecDeque::new();
        if synthetic {
            for (n, obj) in &st.nodes {
                if name.as_ref().is_none_or(|want| want == n) {
                    pending.push_back((event_line("ADDED", obj, metadata), cursor));
                }
            }
        }
        let watch = Watch {
            shared: Arc::clone(&shared),
            rx,
            cursor,
            metadata,
            bookmarks,
            name,
            deadline: now + std::time::Duration::from_secs(timeout),
            next_bookmark: now + st.bookmark_interval,
            pending,
            break_gen: st.break_gen,
            expire_gen: st.expire_gen,
            bookmark_gen: st.bookmark_gen,
            finished: false,
            open: OpenWatch(Arc::clone(&shared), id),
        };
        let at = cursor.min(st.rv);
        st.watch_positions.insert(id, at);
        drop(st);
        watch
    };
    if send_initial && bookmarks {
        let b = watch.bookmark(watch.cursor, true);
        watch.pending.push_back((b, watch.cursor));
    }
    let stream = futures_util::stream::unfold(watch, |mut w| async move {
        w.next().await.map(|chunk| (Ok::<_, Infallible>(chunk), w))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some(
            "&watch=true&fieldSelector=metadata.name%3Dn1&labelSelector=a+b&x=%zz",
        ));
        assert!(q.flag("watch"));
        assert_eq!(q.get("fieldSelector"), Some("metadata.name=n1"));
        assert_eq!(name_selector(&q).as_deref(), Some("n1"));
        assert_eq!(q.get("labelSelector"), Some("a b"));
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(q.get("missing"), None);
    }
}
