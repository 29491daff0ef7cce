//! etcd fixture (see crate docs).
