//! Host facts and kernel programming over netlink.
