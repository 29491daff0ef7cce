//! Decoding JSON objects the way Go's `encoding/json` does: a struct field matches a key
//! exactly or, failing that, case-insensitively; unknown keys are ignored.
