//! Foreign errors (tonic, hyper) as an operator reads them: the message, then each cause once,
//! joined with `: ` — never their `Debug` form (`tonic::transport::Error(Transport, …)`).

use std::error::Error;

/// `head: cause: cause …` for the causes under `cause`, skipping empty ones, tonic's bare
/// `transport error`, and any whose text is already part of what was said.
pub fn with_causes(head: &str, mut cause: Option<&(dyn Error + 'static)>) -> String {
    let mut text = head.to_owned();
    while let Some(e) = cause {
        let part = e.to_string();
        if !part.is_empty() && part != "transport error" && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

/// `err` and its causes (see [`with_causes`]).
pub fn chain(err: &(dyn Error + 'static)) -> String {
    with_causes(&err.to_string(), err.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct E {
        text: &'static str,
        #[source]
        inner: Option<Box<E>>,
    }

    fn e(text: &'static str, inner: Option<E>) -> E {
        E {
            text,
            inner: inner.map(Box::new),
        }
    }

    #[test]
    fn each_cause_once_without_debug_noise() {
        let io = e("Connection refused (os error 111)", None);
        let err = e(
            "client error (Connect)",
            Some(e("tcp connect error", Some(io))),
        );
        assert_eq!(
            chain(&err),
            "client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
        // A cause repeating its parent's text, and tonic's bare wrapper, are left out.
        let err = e(
            "tcp connect error",
            Some(e("transport error", Some(e("tcp connect error", None)))),
        );
        assert_eq!(chain(&err), "tcp connect error");
        assert_eq!(with_causes("", Some(&e("x", None))), "x");
    }
}
