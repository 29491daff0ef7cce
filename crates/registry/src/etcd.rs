//! etcd v3 store.
